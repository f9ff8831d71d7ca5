"""Stage 1, corpus: read the training corpus and split it into shards of units.

A unit is what the parse stage takes one at a time: for the ``conllu`` backend one sentence's
CoNLL-U block, for the raw-text backends one paragraph. Shards are contiguous runs of units, so
gathering shards in order gives the corpus in its original order whatever the number of shards.

Shard format (parquet): ``unit_id`` (int, position in the corpus), ``doc_id`` (str),
``source`` (``file:line`` where the unit starts), ``text`` (the unit).
"""

from __future__ import annotations

import logging
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


def text_units(path: str | Path, min_words: int = 1) -> Iterator[dict]:
    """Yield one unit per paragraph line; a blank line starts a new document."""
    name = Path(path).name
    doc = 0
    for number, line in read_lines(path):
        text = " ".join(line.split())
        if not text:
            doc += 1
            continue
        if len(text.split()) >= min_words:
            yield {"doc_id": f"{name}#{doc}", "source": f"{path}:{number}", "text": text}


def read_units(paths: list[str], kind: str, max_units: int | None = None) -> pd.DataFrame:
    reader = conllu_units if kind == "conllu" else text_units
    rows = []
    for path in paths:
        for unit in reader(path):
            rows.append(unit)
            if max_units is not None and len(rows) >= max_units:
                break
        if max_units is not None and len(rows) >= max_units:
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


def run(args) -> None:
    units = read_units(args.inputs, args.kind, args.max_units)
    log.info("read %d units from %d file(s)", len(units), len(args.inputs))
    write_shards(units, args.out)
