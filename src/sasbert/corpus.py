"""Stage 1, corpus: read the training corpus and split it into shards of units.

A unit is what the parse stage takes one at a time: for the ``conllu`` backend one sentence's
CoNLL-U block, for the raw-text backends one paragraph. Shards are contiguous runs of units, so
gathering shards in order gives the corpus in its original order whatever the number of shards.

Shard format (parquet): ``unit_id`` (int, position in the corpus), ``doc_id`` (str),
``source`` (``file:line`` where the unit starts), ``text`` (the unit).

Text inputs are plain or .gz files (or globs of them, expanded in sorted order), one paragraph per
line, a blank line between documents. Cleaning (``TextCleaning``, config ``corpus.text_cleaning``)
applies per line, in this order: Unicode normalisation (NFC/NFKC), whitespace collapsed, heading-like
lines dropped (at most ``heading_max_words`` words and ending in ``.`` or in no punctuation at all,
e.g. Wikipedia's "Early life."), lines under ``min_words`` words dropped, exact repeats of an earlier
kept line dropped, and the corpus stops at the line that reaches ``max_words`` words (that line kept
whole).
"""

from __future__ import annotations

import glob
import logging
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pandas as pd

from sasbert.atomic import write_parquet
from sasbert.errors import InputError
from sasbert.textio import read_lines

log = logging.getLogger(__name__)


def conllu_units(path: str | Path) -> Iterator[dict]:
    """Yield one unit per sentence block of a CoNLL-U file (blocks end at a blank line)."""
    doc_id = f"{Path(path).name}#0"
    block: list[str] = []
    start = 0
    for number, line in read_lines(path):
        if line.strip():
            if not block:
                start = number
            if line.startswith("# newdoc"):
                doc_id = line.split("=", 1)[1].strip() if "=" in line else f"{Path(path).name}#{number}"
            block.append(line)
        elif block:
            yield {"doc_id": doc_id, "source": f"{path}:{start}", "text": "\n".join(block)}
            block = []
    if block:
        yield {"doc_id": doc_id, "source": f"{path}:{start}", "text": "\n".join(block)}


@dataclass
class TextCleaning:
    """How raw text lines are cleaned (config ``corpus.text_cleaning``); defaults keep every line."""

    min_words: int = 1
    normalize: str | None = None  # "NFC", "NFKC" or None
    drop_headings: bool = False
    heading_max_words: int = 6
    dedup: bool = False
    max_words: int | None = None

    def __post_init__(self):
        if self.normalize is not None and self.normalize not in ("NFC", "NFKC"):
            raise InputError(f"corpus.text_cleaning.normalize: {self.normalize!r} is not NFC, NFKC or null")


_SENTENCE_END = tuple(".!?:;,\"'”’)]")


def is_heading(text: str, max_words: int = 6) -> bool:
    """A short line ending in "." or in no punctuation at all (a section title)."""
    if len(text.split()) > max_words:
        return False
    return text.endswith(".") or not text.endswith(_SENTENCE_END)


def text_units(path: str | Path, min_words: int = 1, cleaning: TextCleaning | None = None) -> Iterator[dict]:
    """Yield one unit per paragraph line; a blank line starts a new document."""
    cleaning = cleaning or TextCleaning(min_words=min_words)
    name = Path(path).name
    doc = 0
    for number, line in read_lines(path):
        if cleaning.normalize:
            line = unicodedata.normalize(cleaning.normalize, line)
        text = " ".join(line.split())
        if not text:
            doc += 1
            continue
        if cleaning.drop_headings and is_heading(text, cleaning.heading_max_words):
            continue
        if len(text.split()) >= cleaning.min_words:
            yield {"doc_id": f"{name}#{doc}", "source": f"{path}:{number}", "text": text}


def expand_inputs(patterns: list[str]) -> list[str]:
    """Plain paths as given; a pattern with * ? or [ expands to its sorted matches (none: an error)."""
    paths = []
    for pattern in patterns:
        if any(c in pattern for c in "*?["):
            matches = sorted(glob.glob(pattern, recursive=True))
            if not matches:
                raise InputError(f"{pattern}: the pattern matches no file")
            paths.extend(matches)
        else:
            paths.append(pattern)
    return paths


def read_units(
    paths: list[str], kind: str, max_units: int | None = None, cleaning: TextCleaning | None = None
) -> pd.DataFrame:
    cleaning = cleaning or TextCleaning()
    paths = expand_inputs(paths)
    rows = []
    seen: set[str] = set()
    words = 0

    def full() -> bool:
        if max_units is not None and len(rows) >= max_units:
            return True
        return kind != "conllu" and cleaning.max_words is not None and words >= cleaning.max_words

    for path in paths:
        units = conllu_units(path) if kind == "conllu" else text_units(path, cleaning=cleaning)
        for unit in units:
            if kind != "conllu":
                if cleaning.dedup:
                    if unit["text"] in seen:
                        continue
                    seen.add(unit["text"])
                words += len(unit["text"].split())
            rows.append(unit)
            if full():
                break
        if full():
            break
    if not rows:
        raise InputError(f"corpus is empty: no {'sentences' if kind == 'conllu' else 'text'} in {', '.join(paths)}")
    frame = pd.DataFrame(rows, columns=["doc_id", "source", "text"])
    frame.insert(0, "unit_id", range(len(frame)))
    return frame


def shard_bounds(n_units: int, n_shards: int) -> list[tuple[int, int]]:
    """Contiguous, near-equal [start, end) ranges; shards may be empty when n_shards > n_units."""
    edges = [i * n_units // n_shards for i in range(n_shards + 1)]
    return list(zip(edges[:-1], edges[1:]))


def write_shards(units: pd.DataFrame, outputs: list[str]) -> None:
    for (start, end), out in zip(shard_bounds(len(units), len(outputs)), outputs):
        write_parquet(units.iloc[start:end], out)
        log.info("wrote %s (%d units)", out, end - start)


def add_arguments(parser) -> None:
    parser.add_argument("--kind", choices=["conllu", "text"], required=True, help="input format")
    parser.add_argument("--inputs", nargs="+", required=True, help="CoNLL-U or text files (plain or .gz)")
    parser.add_argument("--max-units", type=int, default=None, help="keep the first N sentences/paragraphs")
    parser.add_argument("--out", nargs="+", required=True, help="one parquet path per shard")
    parser.add_argument("--min-words", type=int, default=1, help="text: drop lines with fewer words")
    parser.add_argument("--normalize", choices=["NFC", "NFKC"], default=None, help="text: Unicode normalisation")
    parser.add_argument("--drop-headings", action="store_true", help="text: drop heading-like lines")
    parser.add_argument("--heading-max-words", type=int, default=6, help="text: longest line taken as a heading")
    parser.add_argument("--dedup", action="store_true", help="text: drop exact repeats of an earlier line")
    parser.add_argument("--max-words", type=int, default=None, help="text: stop after the first N words")


def run(args) -> None:
    cleaning = TextCleaning(
        min_words=args.min_words,
        normalize=args.normalize,
        drop_headings=args.drop_headings,
        heading_max_words=args.heading_max_words,
        dedup=args.dedup,
        max_words=args.max_words,
    )
    units = read_units(args.inputs, args.kind, args.max_units, cleaning)
    log.info("read %d units from %d file(s)", len(units), len(args.inputs))
    write_shards(units, args.out)
