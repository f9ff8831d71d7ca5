"""Corpus report: one table row per corpus with what the corpus and parse stages produced.

``sasbert corpus-report --corpus results/corpus/<c>/shard-*.parquet --parsed results/parse/<c>/...
[--benchmarks results/benchmarks/parse/<c>/*.tsv] [--stats results/tokenize/<c>/stats.json]
--backend spacy --out report.csv`` writes (CSV, and prints as a table): ``corpus``, ``backend``,
``shards``, ``documents``, ``units`` (paragraphs or CoNLL-U blocks), ``sentences``, ``words``,
``words_per_sentence``, ``root_fraction`` (share of words that are a sentence root), and when given:
``parse_seconds`` (sum of the parse jobs' wall seconds from Snakemake's benchmark files),
``parse_words_per_s`` (words / those seconds: per-job speed, model loading included), ``pieces``
and ``labelled_fraction`` (tokenize stats).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pandas as pd

from sasbert.atomic import write_text
from sasbert.data.parsers.parsed_shard import PARSED_COLUMNS
from sasbert.tables import read_table

log = logging.getLogger(__name__)


CORPUS_COLUMNS = ["unit_id", "doc_id", "source", "text"]


def _read(paths: list[str], required: list[str], what: str) -> pd.DataFrame:
    frames = [read_table(path, required, what) for path in paths]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=required)


def report(
    corpus_shards: list[str],
    parsed_shards: list[str],
    name: str = "corpus",
    backend: str = "",
    benchmarks: list[str] | None = None,
    stats: str | None = None,
) -> pd.DataFrame:
    units = _read(corpus_shards, CORPUS_COLUMNS, "corpus shard")
    parsed = _read(parsed_shards, PARSED_COLUMNS, "parsed shard")
    n_words = int(parsed["words"].map(len).sum()) if len(parsed) else 0
    roots = int(parsed["heads"].map(lambda h: sum(1 for x in h if x == 0)).sum()) if len(parsed) else 0
    row = {
        "corpus": name,
        "backend": backend,
        "shards": len(parsed_shards),
        "documents": int(units["doc_id"].nunique()) if len(units) else 0,
        "units": len(units),
        "sentences": len(parsed),
        "words": n_words,
        "words_per_sentence": n_words / len(parsed) if len(parsed) else float("nan"),
        "root_fraction": roots / n_words if n_words else float("nan"),
    }
    if benchmarks:
        seconds = sum(float(pd.read_csv(path, sep="\t")["s"].sum()) for path in benchmarks)
        row["parse_seconds"] = seconds
        row["parse_words_per_s"] = n_words / seconds if seconds else float("nan")
    if stats:
        data = json.loads(Path(stats).read_text())
        row["pieces"] = data.get("pieces")
        row["labelled_fraction"] = data.get("labelled_fraction")
    return pd.DataFrame([row])


def add_arguments(parser) -> None:
    parser.add_argument("--corpus", nargs="+", required=True, help="corpus shards (parquet)")
    parser.add_argument("--parsed", nargs="+", required=True, help="parsed shards (parquet)")
    parser.add_argument("--name", default="corpus")
    parser.add_argument("--backend", default="")
    parser.add_argument("--benchmarks", nargs="*", default=None, help="Snakemake benchmark TSVs of the parse jobs")
    parser.add_argument("--stats", default=None, help="tokenize stats.json")
    parser.add_argument("--out", default=None, help="write the table as CSV here")


def run(args) -> None:
    table = report(args.corpus, args.parsed, args.name, args.backend, args.benchmarks, args.stats)
    print(table.T.to_string(header=False))
    if args.out:
        write_text(table.to_csv(index=False), args.out)
