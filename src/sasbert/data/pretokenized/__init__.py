"""Pre-tokenized, pre-parsed corpora (``corpus.backend: pretokenized``): rows of pieces that carry
their dependency heads already, as the authors released their training data
(``angie-chen55/bert_pretraining_data``: BookCorpus + Wikipedia in bert-base-uncased pieces, rows of
512; Wikipedia rows parsed, BookCorpus rows all -1). No corpus, parse or tokenize job runs.

The schema (one row = one training block): ``input_ids``, ``attention_mask`` and ``heads`` (-1 = no
arc), lists of integers of length ``tokenizer.seq_len``; ``token_type_ids`` and ``relns`` may be
there too (the authors' int8 columns). Pretraining does not read them: a row with token types other
than 0 is counted, and the prepare log warns, because the model here is given none.

The modules: ``files`` (local or hub files), ``rows`` (checking rows), ``alignment`` (heads'
alignment), ``prepare`` (the prepared dataset) and ``cli``.

Commands (``sasbert pretokenized ...``):
- ``fetch``: a hub dataset's split files into the HF cache (the workflow's local rule
  ``pretokenized_fetch``; offline it only checks the cache), and a manifest of them.
- ``prepare``: checks every row of every file (columns, integer types, row length, heads and ids in
  range; an error names the file, row and column), converts ``heads`` into the pipeline's
  convention, and writes the train rows and ``tokenizer.validation_blocks`` validation rows spread
  evenly over the validation split as Arrow files, which pretraining memory-maps (one pass over the
  data, batch by batch: nothing the size of the corpus is ever in memory), a manifest pretraining
  reads and the tokenizer (from ``tokenizer.vocab``).
- ``check``: for a sample of rows, the fraction of arcs whose two ends are word-initial pieces (not
  ``##`` continuations, not special) under each alignment, to settle ``heads_alignment``.

Alignment (``heads_alignment``) -> (dependent offset d, parent offset v): the entry ``heads[j] = h``
is the arc from the piece at position ``j + d`` to the piece at position ``h + v``:
- ``input_ids`` (0, 0): heads aligned with input_ids, values positions in the row; the pipeline's
  own convention (``sasbert.data.tokenization``: positions count [CLS]).
- ``after_cls`` (1, 0): ``heads[t-1]`` belongs to the piece at t, its value a position in the row;
  what the authors' regularizer reads (query t with ``heads[:, :511]`` at t - 1, the value as key).
- ``after_cls_both`` (1, 1): as after_cls, with the value counted after [CLS] too.

Conversion into the pipeline's convention (``heads[t] = p``: the piece at t has its parent at p,
-1 elsewhere): an arc is kept when both ends are inside the row, distinct, and neither is [CLS],
[SEP], [PAD] or a position the attention mask hides. The others are dropped (and counted): the
method's arcs join word pieces (docs/method.md, "Head mapping policy"), and under the right
alignment none of them should occur; the authors' code kept them (a -1 entry read a zero, values
past 511 were clamped to 511).
"""
