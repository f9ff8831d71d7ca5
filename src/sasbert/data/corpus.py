"""Stage 1, corpus: read the training corpus and split it into shards of units.

A unit is what the parse stage takes one at a time: for the ``conllu`` backend one sentence's
CoNLL-U block, for the raw-text backends one paragraph. Shards are contiguous runs of units, so
gathering shards in order gives the corpus in its original order whatever the number of shards.

Shard format (parquet): ``unit_id`` (int, position in the corpus), ``doc_id`` (str),
``source`` (``file:line`` where the unit starts), ``text`` (the unit).

Text inputs are plain or .gz files (or globs of them, expanded in sorted order), one paragraph per
line, a blank line between documents; or a HF ``datasets`` dataset (``HFDataset``, config
``corpus.hf_dataset``): a hub name with config and split when the machine is online, a packaged
builder (``json``, ``text``, ``parquet``, ``csv``, ``arrow``) with local ``data_files``, or a folder
written by ``save_to_disk``. Each row of the dataset is one document, and each line of its text
column one paragraph (the ``text`` builder makes a row of every line, so there every paragraph is
a document; ``json`` or ``parquet`` files with one document per record keep documents whole).
Cleaning (``TextCleaning``, config ``corpus.text_cleaning``)
applies per line, in this order: Unicode normalisation (NFC/NFKC), whitespace collapsed, heading-like
lines dropped (at most ``heading_max_words`` words and ending in ``.`` or in no punctuation at all,
e.g. Wikipedia's "Early life."), lines under ``min_words`` words dropped, exact repeats of an earlier
kept line dropped, and the corpus stops at the line that reaches ``max_words`` words (that line kept
whole).
"""

from __future__ import annotations

import argparse
import logging
import unicodedata
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from sasbert.atomic import write_parquet
from sasbert.errors import InputError
from sasbert.options import add_option_flags
from sasbert.options import defaults as schema_defaults
from sasbert.options import resolve as resolve_options
from sasbert.textio import blocks, expand_paths, read_lines

log = logging.getLogger(__name__)


def conllu_units(path: str | Path) -> Iterator[dict]:
    """Yield one unit per sentence block of a CoNLL-U file (blocks end at a blank line)."""
    doc_id = f"{Path(path).name}#0"
    for start, block in blocks(path):
        for number, line in enumerate(block, start):
            if line.startswith("# newdoc"):
                doc_id = line.split("=", 1)[1].strip() if "=" in line else f"{Path(path).name}#{number}"
        yield {"doc_id": doc_id, "source": f"{path}:{start}", "text": "\n".join(block)}


CLEANING_DEFAULTS = schema_defaults("corpus")["text_cleaning"]
HF_DEFAULTS = schema_defaults("corpus", "hf_dataset")


@dataclass
class TextCleaning:
    """How raw text lines are cleaned (config ``corpus.text_cleaning``, whose schema defaults keep
    every line)."""

    min_words: int = CLEANING_DEFAULTS["min_words"]
    normalize: str | None = CLEANING_DEFAULTS["normalize"]  # "NFC", "NFKC" or None
    drop_headings: bool = CLEANING_DEFAULTS["drop_headings"]
    heading_max_words: int = CLEANING_DEFAULTS["heading_max_words"]
    dedup: bool = CLEANING_DEFAULTS["dedup"]
    max_words: int | None = CLEANING_DEFAULTS["max_words"]

    def __post_init__(self):
        if self.normalize is not None and self.normalize not in ("NFC", "NFKC"):
            raise InputError(f"corpus.text_cleaning.normalize: {self.normalize!r} is not NFC, NFKC or null")


_SENTENCE_END = tuple(".!?:;,\"'”’)]")


def is_heading(text: str, max_words: int = CLEANING_DEFAULTS["heading_max_words"]) -> bool:
    """A short line ending in "." or in no punctuation at all (a section title)."""
    if len(text.split()) > max_words:
        return False
    return text.endswith(".") or not text.endswith(_SENTENCE_END)


def clean_paragraphs(lines: Iterable[tuple[str, str]], cleaning: TextCleaning) -> Iterator[tuple[str, str | None]]:
    """Yield (source, cleaned text) for each kept line, and (source, None) for a blank line."""
    for source, line in lines:
        if cleaning.normalize:
            line = unicodedata.normalize(cleaning.normalize, line)
        text = " ".join(line.split())
        if not text:
            yield source, None
            continue
        if cleaning.drop_headings and is_heading(text, cleaning.heading_max_words):
            continue
        if len(text.split()) >= cleaning.min_words:
            yield source, text


def text_units(path: str | Path, cleaning: TextCleaning | None = None) -> Iterator[dict]:
    """Yield one unit per paragraph line; a blank line starts a new document."""
    cleaning = cleaning or TextCleaning()
    name = Path(path).name
    doc = 0
    lines = ((f"{path}:{number}", line) for number, line in read_lines(path))
    for source, text in clean_paragraphs(lines, cleaning):
        if text is None:
            doc += 1
        else:
            yield {"doc_id": f"{name}#{doc}", "source": source, "text": text}


@dataclass
class HFDataset:
    """A HF ``datasets`` corpus (config ``corpus.hf_dataset``; errors name its keys)."""

    path: str  # hub name, packaged builder (json, text, parquet, ...) or a save_to_disk folder
    name: str | None = HF_DEFAULTS["name"]  # the dataset's config name (e.g. 20231101.en)
    split: str = HF_DEFAULTS["split"]
    text_column: str = HF_DEFAULTS["text_column"]
    data_files: list[str] | None = HF_DEFAULTS["data_files"]  # local files (globs expanded) for a packaged builder
    revision: str | None = HF_DEFAULTS["revision"]
    streaming: bool = HF_DEFAULTS["streaming"]  # iterate without downloading the whole split first

    @property
    def label(self) -> str:
        """How sources and doc ids name the dataset: path, config name, split."""
        return f"{self.path}{'/' + self.name if self.name else ''}[{self.split}]"

    def load(self):
        """The split as a (possibly streaming) dataset; any loading failure is an InputError."""
        import datasets

        key = "corpus.hf_dataset"
        folder = Path(self.path)
        try:
            if folder.is_dir() and any((folder / f).exists() for f in ("dataset_dict.json", "state.json")):
                # a saved DatasetDict is split by `split`; a saved single Dataset is used whole
                dataset = datasets.load_from_disk(str(folder))
                if isinstance(dataset, datasets.DatasetDict):
                    if self.split not in dataset:
                        raise InputError(
                            f"{key}.split: {self.path} has no split {self.split!r} (it has {', '.join(dataset)})"
                        )
                    dataset = dataset[self.split]
            else:
                files = expand_paths(self.data_files) if self.data_files else None
                for file in files or []:
                    if not Path(file).is_file():
                        raise InputError(f"{key}.data_files: {file}: no such file")
                dataset = datasets.load_dataset(
                    self.path,
                    self.name,
                    split=self.split,
                    data_files=files,
                    revision=self.revision,
                    streaming=self.streaming,
                )
        except InputError:
            raise
        except Exception as err:  # datasets raises many types (FileNotFoundError, ValueError, ConnectionError...)
            raise InputError(
                f"{key}: cannot load {self.path!r} (name={self.name!r}, split={self.split!r}): "
                f"{type(err).__name__}: {err}. A hub dataset needs a machine that is online (or the HF cache "
                "filled beforehand); offline, give local data_files or a save_to_disk folder"
            ) from err
        columns = dataset.column_names
        if columns is not None and self.text_column not in columns:
            raise InputError(
                f"{key}.text_column: {self.label} has no column {self.text_column!r} (it has {', '.join(columns)})"
            )
        return dataset


def hf_units(spec: HFDataset, cleaning: TextCleaning | None = None) -> Iterator[dict]:
    """Yield one unit per non-blank line of each row's text; each row is one document."""
    cleaning = cleaning or TextCleaning()
    rows = iter(spec.load())
    row_number = 0
    while True:
        try:
            row = next(rows)
        except StopIteration:
            return
        except Exception as err:  # a malformed file or a dropped connection, met while reading
            raise InputError(
                f"corpus.hf_dataset: {spec.label}: reading failed at row {row_number} (rows are read in batches): "
                f"{type(err).__name__}: {err}"
            ) from err
        if spec.text_column not in row:  # a streaming dataset may not know its columns up front
            raise InputError(
                f"corpus.hf_dataset.text_column: {spec.label} has no column {spec.text_column!r} "
                f"(it has {', '.join(row)})"
            )
        text = row[spec.text_column]
        if text is not None and not isinstance(text, str):
            raise InputError(
                f"corpus.hf_dataset.text_column: {spec.label} row {row_number}: column {spec.text_column!r} "
                f"holds {type(text).__name__}, not text"
            )
        lines = ((f"{spec.label}:{row_number}.{k}", line) for k, line in enumerate((text or "").split("\n")))
        for source, paragraph in clean_paragraphs(lines, cleaning):
            if paragraph is not None:
                yield {"doc_id": f"{spec.label}#{row_number}", "source": source, "text": paragraph}
        row_number += 1


def read_units(
    paths: list[str] | None,
    kind: str,
    max_units: int | None = None,
    cleaning: TextCleaning | None = None,
    hf_dataset: HFDataset | None = None,
) -> pd.DataFrame:
    """The corpus as a table of units: ``kind`` is ``conllu``, ``text`` (files) or ``hf`` (``hf_dataset``)."""
    cleaning = cleaning or TextCleaning()
    if kind == "hf":
        if hf_dataset is None:
            raise InputError("corpus.hf_dataset: required for a HF datasets corpus")
        sources = [hf_units(hf_dataset, cleaning)]
        described = hf_dataset.label
    else:
        paths = expand_paths(paths or [])
        sources = (conllu_units(p) if kind == "conllu" else text_units(p, cleaning=cleaning) for p in paths)
        described = ", ".join(paths)
    rows = []
    seen: set[str] = set()
    words = 0

    def full() -> bool:
        if max_units is not None and len(rows) >= max_units:
            return True
        return kind != "conllu" and cleaning.max_words is not None and words >= cleaning.max_words

    for units in sources:
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
        raise InputError(f"corpus is empty: no {'sentences' if kind == 'conllu' else 'text'} in {described}")
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
    parser.add_argument("--kind", choices=["conllu", "text", "hf"], required=True, help="input format")
    parser.add_argument("--inputs", nargs="+", default=None, help="CoNLL-U or text files (plain or .gz)")
    parser.add_argument("--out", nargs="+", required=True, help="one parquet path per shard")
    switch = {"action": argparse.BooleanOptionalAction}
    add_option_flags(
        parser,
        "corpus",
        [
            ("--max-units", {"type": int}, "keep the first N sentences/paragraphs"),
            ("--min-words", {"type": int, "option": "text_cleaning.min_words"}, "text: drop lines with fewer words"),
            ("--normalize", {"choices": ["NFC", "NFKC"], "option": "text_cleaning.normalize"}, "text: Unicode form"),
            ("--drop-headings", {**switch, "option": "text_cleaning.drop_headings"}, "text: drop heading-like lines"),
            (
                "--heading-max-words",
                {"type": int, "option": "text_cleaning.heading_max_words"},
                "text: longest line taken as a heading",
            ),
            ("--dedup", {**switch, "option": "text_cleaning.dedup"}, "text: drop exact repeats of an earlier line"),
            ("--max-words", {"type": int, "option": "text_cleaning.max_words"}, "text: stop after the first N words"),
            (
                "--hf-path",
                {"option": "hf_dataset.path"},
                "HF dataset: hub name, packaged builder (json, text, ...) or save_to_disk folder",
            ),
            ("--hf-name", {"option": "hf_dataset.name"}, "HF dataset: config name"),
            ("--hf-split", {"option": "hf_dataset.split"}, "HF dataset: split"),
            ("--hf-text-column", {"option": "hf_dataset.text_column"}, "HF dataset: text column"),
            (
                "--hf-data-files",
                {"nargs": "+", "option": "hf_dataset.data_files"},
                "HF dataset: local files (or globs) for a packaged builder",
            ),
            ("--hf-revision", {"option": "hf_dataset.revision"}, "HF dataset: revision"),
            ("--hf-streaming", {**switch, "option": "hf_dataset.streaming"}, "HF dataset: stream, not download"),
        ],
    )


def run(args) -> None:
    opts = resolve_options(args, "corpus")
    cleaning = TextCleaning(**opts["text_cleaning"])
    hf_dataset = None
    if args.kind == "hf":
        if not (opts.get("hf_dataset") or {}).get("path"):
            raise InputError("corpus.hf_dataset.path: --hf-path is required with --kind hf")
        hf_dataset = HFDataset(**opts["hf_dataset"])
    elif not args.inputs:
        raise InputError(f"--inputs is required with --kind {args.kind}")
    units = read_units(args.inputs, args.kind, opts["max_units"], cleaning, hf_dataset)
    log.info("read %d units from %s", len(units), hf_dataset.label if hf_dataset else f"{len(args.inputs)} file(s)")
    write_shards(units, args.out)
