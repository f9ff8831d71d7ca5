"""The ``conllu`` backend: gold parses read from CoNLL-U units (one sentence block each).

Multiword-token ranges (``3-4``) and empty nodes (``8.1``) are skipped: words are the integer-id
lines, as the UD guidelines define the basic tree. Every tree is checked by the project's one
CoNLL-U reader (``sasbert.data.treebank``): heads in range, one root, no cycle.
"""

from __future__ import annotations

import pandas as pd

from sasbert.data.parsers.parsed_shard import PARSED_COLUMNS
from sasbert.data.treebank import read_sentence
from sasbert.errors import InputError

FLAGS: list = []  # no options


def parse_conllu_unit(text: str, source: str) -> dict:
    """One CoNLL-U sentence block (from ``source``, ``file:line``) as words, heads and relations,
    checked by the project's one CoNLL-U reader (``sasbert.data.treebank``)."""
    file, _, start = source.rpartition(":")
    sentence = read_sentence(text.split("\n"), file, int(start))
    if sentence is None:
        raise InputError(f"{source}: sentence has no words")
    return {
        "sentence_id": sentence.metadata.get("sent_id") or source,
        "words": list(sentence.words),
        "heads": list(sentence.heads),
        "relations": [rel or "_" for rel in sentence.deprels],
    }


def parse_shard(units: pd.DataFrame, options: dict | None = None, threads: int = 1) -> pd.DataFrame:
    """The gold parse of each unit (no options; one thread)."""
    rows = []
    for unit in units.itertuples(index=False):
        parsed = parse_conllu_unit(unit.text, unit.source)
        rows.append({**parsed, "doc_id": unit.doc_id, "source": unit.source})
    return pd.DataFrame(rows, columns=PARSED_COLUMNS)


def parse_gold(gold: list[dict], options: dict | None = None, threads: int = 1) -> list[dict]:
    """The gold itself: parse-quality's check that scoring gold against gold gives 100%."""
    return gold


def describe_model(options: dict | None = None) -> None:
    return None
