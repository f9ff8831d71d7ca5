"""The parsed-shard format, the same for every backend (parquet): ``sentence_id`` (str), ``doc_id``
(str), ``source`` (``file:line`` of the sentence or paragraph), ``words`` (list of str), ``heads``
(list of int: 1-based index of each word's parent, 0 = root), ``relations`` (list of str: the
dependency relation of each word)."""

from __future__ import annotations

PARSED_COLUMNS = ["sentence_id", "doc_id", "source", "words", "heads", "relations"]
