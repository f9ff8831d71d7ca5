"""Data stage: corpora, parsers, treebanks, BLiMP pairs, tokenization and pre-tokenized corpora."""
