"""GLUE fine-tuning of checkpoints: the paper's third measure of model quality, beside UAS and BLiMP.

Each job fine-tunes one checkpoint on one task with one fine-tuning seed (HF ``Trainer`` with
``run_glue``'s conventions: max length 128, lr 2e-5, batch 32, 3 epochs, linear decay, no warmup,
AdamW; all in the config's ``glue`` section) and scores it on the task's **validation** split(s):
GLUE's test labels are private, so every number here is a validation score, as in most papers
that fine-tune many checkpoints. Inputs are padded per batch instead of to 128 (run_glue's
``pad_to_max_length``): the attention mask makes the result the same, only faster.

Tasks and metrics (GLUE's, as the ``glue`` metric of HF ``evaluate`` computes them with sklearn and
scipy; ``metric_value`` computes the same with numpy, and the tests check it against both):

=====  ===================================  ======================================
task   columns                              metrics
=====  ===================================  ======================================
cola   sentence                             matthews_correlation
sst2   sentence                             accuracy
mrpc   sentence1, sentence2                 f1 (positive class 1), accuracy
qqp    question1, question2                 f1, accuracy
stsb   sentence1, sentence2 (float label)   pearson, spearman (a regression head)
mnli   premise, hypothesis (3 labels)       accuracy on validation_matched and validation_mismatched
qnli   question, sentence                   accuracy
rte    sentence1, sentence2                 accuracy
wnli   sentence1, sentence2                 accuracy
=====  ===================================  ======================================

**The GLUE average** is BERT's (Devlin et al. 2019, Table 1): the mean of nine numbers, WNLI left
out: CoLA's Matthews correlation, SST-2's accuracy, MRPC's and QQP's F1, STS-B's Spearman
correlation, MNLI's matched and mismatched accuracies (two entries), QNLI's and RTE's accuracy
(``AVERAGE_ENTRIES``; BERT-base's published numbers give its 79.6, BERT-large's its 82.1). It is the
row ``task glue, metric average`` when all nine entries exist for a checkpoint and fine-tuning
seed; with fewer tasks configured, the mean of the entries there are is ``metric partial_average``
(``n_examples`` counts its entries' examples), so a subset is never mistaken for the benchmark.
Scores are fractions (0.84, not 84).

**Intervals**: every score has a 95% percentile interval from ``bootstrap_samples`` resamples of
its validation examples (the predictions fixed); the average's is the normal combination of its
entries' (half-width sqrt(sum h_i^2) / k: the entries' validation sets are independent; a single
entry's own interval).

Data (``prepare``, the workflow's local rule ``glue_data``): a task's data come from the hub
dataset (``nyu-mll/glue``: its parquet files are fetched into the HF cache, which is what the
local rule does on a login node with the internet, and read from the cache offline), from local
files (csv, tsv, json, jsonl or parquet, one per split, with the task's GLUE columns and
``label``), from a ``save_to_disk`` folder, or, for an acceptability task in CoLA's format, from
BLiMP's minimal pairs (``blimp_acceptability``). Each becomes one checked ``DatasetDict``
(``train`` and the task's validation splits, columns ``idx``, the text columns and ``label``)
saved to disk, which the fine-tuning jobs read offline.

The modules: ``tasks`` (the tasks and their data), ``finetune`` (one checkpoint, task and seed; the
only one that imports torch), ``metrics`` (metrics, intervals, the average, the tables) and ``cli``.

Tables (one pair per job; ``gather`` stacks them into ``tables/glue.parquet``)::

    metrics:      run, seed, step, task, split, metric, value, ci_low, ci_high, n_examples, finetune_seed
    predictions:  run, seed, step, task, split, finetune_seed, idx, label, prediction
    summary:      run, seed, step, task, split, metric, mean, sd, min, max, n_finetune_seeds
"""
