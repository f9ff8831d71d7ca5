"""Command line: ``sasbert <stage> [options]`` (also ``python -m sasbert``).

Each stage module defines ``add_arguments(parser)`` and ``run(args)``; modules are imported only
when their stage runs, so ``sasbert corpus --help`` does not pay for importing torch.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from sasbert.errors import OutputError, StageError, write_failure
from sasbert.measure.registry import MEASURES

# stage name -> (module, one-line help)
STAGES = {
    "corpus": ("sasbert.data.corpus", "read a corpus (CoNLL-U or raw text, cleaned) into shards"),
    "parse": (
        "sasbert.data.parse",
        "dependency-parse corpus shards with one of the parser backends (see its --backend)",
    ),
    "stanza-models": (
        "sasbert.data.stanza_models",
        "check (or fetch, when online) the stanza models of the stanza backend",
    ),
    "parse-quality": ("sasbert.data.parse_quality", "UAS/LAS of a parse backend against a gold CoNLL-U treebank"),
    "corpus-report": (
        "sasbert.data.corpus_report",
        "table of documents, sentences, words and parse speed of a parsed corpus",
    ),
    "tokenize": ("sasbert.data.tokenization", "train/load a WordPiece vocab, map heads to pieces, pack blocks"),
    "pretokenized": (
        "sasbert.data.pretokenized.cli",
        "pre-tokenized, pre-parsed corpora: fetch from the hub, check and prepare for pretraining, check heads' alignment",
    ),
    "pretrain": ("sasbert.train.pretrain", "MLM pretraining with the SAS regularizer"),
    "series-fetch": ("sasbert.hub", "download hub checkpoints (hub:<repo>@<revision>) into the HF cache, once"),
    # the per-checkpoint measures: probe, blimp, ... (one command each, from their registry)
    **{name: (f"sasbert.{measure.cli}", measure.help) for name, measure in MEASURES.items()},
    "glue": ("sasbert.measure.glue.cli", "GLUE fine-tuning of checkpoints, scored on the validation splits"),
    "phases": ("sasbert.analysis.cli", "all-runs tables (gather) and phase-transition onsets (detect)"),
    "figures": ("sasbert.analysis.figures.cli", "figures 1-5 (PNG + PDF) from the gathered tables alone"),
}


def _stage_module(name: str):
    return importlib.import_module(STAGES[name][0])


def build_parser(argv: list[str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sasbert", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="stage", required=True, metavar="STAGE")
    # Only the chosen stage's module is imported (it may pull in torch).
    chosen = next((a for a in argv if a in STAGES), None)
    for name, (_, help_text) in STAGES.items():
        stage_parser = sub.add_parser(name, help=help_text, description=help_text)
        if name == chosen:
            _stage_module(name).add_arguments(stage_parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser(argv).parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        _stage_module(args.stage).run(args)
    except StageError as err:
        print(f"sasbert {args.stage}: error: {err}", file=sys.stderr)
        return err.exit_code
    except OSError as err:
        reason = write_failure(err)
        if reason is None:
            raise
        where = f"{err.filename}: " if err.filename else ""
        print(f"sasbert {args.stage}: error: {where}cannot write ({reason})", file=sys.stderr)
        return OutputError.exit_code
    return 0
