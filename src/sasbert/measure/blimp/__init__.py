"""BLiMP accuracy of masked-LM checkpoints by pseudo-log-likelihood (PLL).

PLL (Salazar et al. 2020): mask each non-special piece of a sentence in turn and sum
log p(original piece | the rest). A BLiMP pair is *correct* when PLL(good) > PLL(bad) strictly
(a tie, e.g. two identical sentences, counts as wrong).

Variants
--------
``original``
    only the scored piece is masked.
``within_word_l2r`` (Kauf & Ivanova 2023)
    while scoring a piece, the *later* pieces of the same word are masked too (earlier pieces of the
    word stay visible), so a multi-piece word cannot be "read off" its own continuation.
    A word is what the fast tokenizer's ``word_ids()`` calls one: for BERT's pre-tokenizer that is a
    whitespace-separated token with punctuation split off (``can't`` -> ``can`` ``'`` ``t``). This is
    exactly what minicons (the authors' reference implementation) does.

"Non-special" pieces are those with a word id (i.e. not [CLS]/[SEP]/[PAD]); [UNK] is scored, as in
minicons.

Speed
-----
All masked copies of all (deduplicated) sentences are built at once, sorted by length into batches of
``batch_size`` rows (little padding), and run under ``torch.inference_mode``. Only the hidden state at
the masked position goes through the MLM prediction head (``model.cls`` for BERT): for small models
with a 30K vocabulary the head over every position is most of the work of a naive scorer.

Accuracy levels (summary table)
-------------------------------
* ``paradigm``: fraction of the paradigm's pairs that are correct.
* ``phenomenon``: mean of the accuracies of its paradigms (``linguistics_term`` groups; the released
  data has 13 such values, the paper speaks of 12 phenomena).
* ``overall``: mean over paradigms (the BLiMP convention).
With equal pairs per paradigm (the full set, or a subset with n <= 1000) macro and micro agree.

Subsets
-------
``pairs_per_paradigm = n`` keeps n pairs of each paradigm, chosen by a generator seeded with
``(subset_seed, crc32(UID))`` -- independent of which other paradigms are present -- and kept in file
order; ``None`` keeps all.

The modules: ``scoring`` (PLL and the causal score, the only one that runs a model), ``tables``
(pairs, summary with intervals, gather) and ``cli``; the pairs are read by ``sasbert.data.blimp_pairs``.

Tables
------
pairs:   step, UID, pairID, linguistics_term, sentence_good, sentence_bad, pll_good, pll_bad, correct
summary: step, variant, level, name, phenomenon, accuracy, n_pairs, n_paradigms
         (level in paradigm | phenomenon | overall; ``phenomenon`` is the paradigm's group for paradigm
         rows, the name itself for phenomenon rows, "" for the overall row)
"""
