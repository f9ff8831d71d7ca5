"""Attention-head UAS probe (Clark et al. 2019, as ported by Chen et al. 2024): see docs/method.md,
"UAS probe".

For one masked-LM checkpoint and one gold CoNLL-U treebank, every attention head of every layer is
read as a dependency parser, in two directions:

* ``dependent_to_parent``: the predicted parent of word i is argmax_j W[i, j]
  (the dependent attends to its parent);
* ``parent_to_dependent``: the predicted parent of word i is argmax_j W[j, i]
  (the parent attends to its dependent);

where W is the *word-level* attention of that head: attention *to* a word is the SUM over its pieces
(columns), attention *from* a word is the MEAN over its pieces (rows); [CLS]/[SEP] (all special
tokens) are dropped and the diagonal is zeroed. Ties in an argmax go to the lowest word index.

Scores, per (layer, head, direction, relation): ``correct``/``count`` = ``accuracy`` (fraction of
words of that relation whose predicted parent is the gold parent) and ``soft_score`` (mean word-level
attention weight on the gold parent in that direction: W[i, parent] resp. W[parent, i]). Layers and
heads are numbered from 0. Relation "all" pools every scored word.

The summary has, for ``method == "attention"``: the best (layer, head, direction) per relation and
for "all" (the paper's UAS; ties go to the lowest layer, then head, then dependent_to_parent), and a
"mean" row (mean of the per-relation best accuracies over relations with at least
``min_relation_count`` words); for ``method == "offset"`` the same rows for the fixed-offset
baselines (predicted parent of word i = word i + offset, offsets -3..+3 without 0; an offset that
falls outside the sentence is simply wrong, unlike Clark et al.'s clamping to the sentence edge).

Which words are scored: every word with a parent word (the root has none), minus
* labelled treebanks (UD): words whose relation is in ``excluded_relations`` (default root, punct);
  the relation is the UD deprel with its subtype stripped (``nmod:poss`` -> ``nmod``), so relations
  are the universal ones and subtype-rich treebanks pool their counts;
* unlabelled treebanks (every DEPREL is ``_``, e.g. the NLTK WSJ sample with PTB tags in XPOS):
  words whose XPOS is a punctuation tag (``punct_tags``); only relation "all" is scored.
Sentences longer than ``max_pieces`` pieces (with [CLS]/[SEP]), or with a word that the tokenizer
maps to no piece at all, are skipped and counted (``n_skipped_too_long``, ``n_skipped_unaligned``).
The offset baselines are computed on exactly the scored words, so they are comparable.

Scoring "authors" (``probe.scoring: authors``) reproduces the authors' attention_depparse_probe.py
and the truncation of their extract_attention_pt.py, on the same word-level maps:

* every word is scored, the root and punctuation too, under its relation as written (subtypes
  kept); a head predicts only words of the sentence (their argmax + 1: the ROOT, index 0, is never
  predicted), so every root word is a miss;
* a sentence longer than ``max_pieces`` is cut (``truncate``), not skipped: attention scores, and
  predicts, only the words whose pieces all fit; the offsets score every word;
* their "poss" special case (``poss_limits``);
* a relation a predictor gets right on every word scores 0 (``authors_accuracy``);
* offsets -3..+2 (0 included), the prediction clamped to the root and the last word;
* ties go to the highest (layer, head, direction) and offset (their ``sorted(...)[-1]``);
* "mean" is over their Table 1's relations: not root or punct, at least ``min_relation_count``
  words in the treebank.

Speed: sentences are tokenized in one call, sorted by length and batched, the encoder (without the
MLM head, which the probe does not need) runs under ``torch.inference_mode`` on the GPU when there is
one, and word pooling is two batched matmuls over all layers and heads at once (W = Mean @ A @ Sum,
with a 0/1 piece->word matrix; pooling costs ~pieces^3 per sentence, so a batch is pooled in chunks
of similar length); argmaxes and the per-relation tallies (a float64 matmul with a one-hot relation
matrix) stay on the device, and only the (layers x heads x 2 x relations) tallies come back.
Matmuls rather than scatter-adds keep GPU results deterministic.

Outputs (parquet, written atomically), one pair per checkpoint:

* scores: ``step, checkpoint, treebank, method, layer, head, direction, offset, relation, correct,
  count, accuracy, soft_score``; ``method`` "attention" rows (every layer x head x direction x
  relation, "all" included; ``offset`` null) and "offset" rows (every offset x relation; ``layer``,
  ``head``, ``direction``, ``soft_score`` null).
* summary: ``step, checkpoint, treebank, method, relation, layer, head, direction, offset, correct,
  count, accuracy, soft_score, max_soft_score, n_relations, n_sentences, n_skipped_too_long,
  n_skipped_unaligned, max_pieces, min_relation_count``; per method one row per relation, one for
  "all" and (labelled treebanks) one for "mean" (``n_relations`` relations averaged; ``correct``
  null). ``soft_score`` is the chosen head's, ``max_soft_score`` the best soft score of any head.
  ``n_sentences`` counts the sentences probed, the ``n_skipped_*`` columns those left out.

``gather`` stacks such tables (any number of steps of one run) into one, sorted by step.
``checkpoint`` and ``treebank`` hold base names only, so outputs do not depend on where files are.

The modules, in the order the probe runs them: ``sentences`` (reading the treebank, which words are
scored), ``alignment`` (pieces to words), ``scoring`` (the heads as parsers, on the device),
``tables`` (scores, offsets, summary, gather) and ``cli``. Only ``scoring`` and ``cli`` import torch,
and only inside functions.

CLI::

    sasbert probe score --checkpoint DIR [DIR|GLOB ...] --treebank FILE \\
        --out-scores X.parquet --out-summary Y.parquet [--cache-dir D] [--step N ...] [--max-pieces 128] ...
    sasbert probe gather --inputs A.parquet B.parquet ... --out Z.parquet
"""
