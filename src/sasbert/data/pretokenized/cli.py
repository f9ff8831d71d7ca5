"""``sasbert pretokenized fetch|prepare|check``: the pre-tokenized corpora's command line."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from sasbert.atomic import write_text
from sasbert.data.pretokenized.alignment import ALIGNMENTS, alignment_report, check_alignment
from sasbert.data.pretokenized.files import fetch, sample_files, source_files
from sasbert.data.pretokenized.prepare import prepare
from sasbert.errors import InputError
from sasbert.options import add_option_flags
from sasbert.options import default as schema_default
from sasbert.options import resolve as resolve_options

log = logging.getLogger(__name__)


SOURCE_FLAGS = [
    ("--repo", {"option": "pretokenized.hub.repo"}, "a hub dataset repo (owner/name)"),
    ("--revision", {"option": "pretokenized.hub.revision"}, "its revision"),
    ("--train-files", {"nargs": "+", "option": "pretokenized.data_files.train"}, "local train files (globs)"),
    (
        "--validation-files",
        {"nargs": "+", "option": "pretokenized.data_files.validation"},
        "local validation files (globs)",
    ),
    ("--path", {"option": "pretokenized.path"}, "a save_to_disk DatasetDict folder"),
    ("--heads-alignment", {"option": "pretokenized.heads_alignment", "choices": list(ALIGNMENTS)}, ""),
    ("--out-of-range", {"option": "pretokenized.out_of_range", "choices": ["error", "drop"]}, ""),
]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="pretokenized_command", required=True, metavar="COMMAND")
    fe = sub.add_parser("fetch", help="fetch a hub dataset's split files into the HF cache, once")
    add_option_flags(fe, "corpus", SOURCE_FLAGS[:2])
    fe.add_argument("--offline", action="store_true", help="only check that the HF cache holds them")
    fe.add_argument("--out", required=True, help="fetch manifest JSON: each split's files in the cache")

    pr = sub.add_parser("prepare", help="check every row, convert heads, write Arrow files pretraining memory-maps")
    add_option_flags(pr, "corpus", SOURCE_FLAGS)
    pr.add_argument("--fetched", help="a hub dataset's fetch manifest (from fetch)")
    pr.add_argument("--vocab", required=True, help="the vocab.txt of the rows' pieces")
    pr.add_argument(
        "--tokenizer-options",
        metavar="JSON",
        required=True,
        help="the config's tokenizer section (seq_len, lowercase, validation_blocks) as JSON",
    )
    pr.add_argument("--out-dataset", required=True, help="output folder: manifest.json, train.arrow, validation.arrow")
    pr.add_argument("--out-tokenizer", required=True, help="output folder: the tokenizer (HF format)")

    ch = sub.add_parser(
        "check",
        help="fraction of arcs whose ends are word-initial pieces under each heads_alignment",
        description="For a sample of train rows, the fraction of arcs whose two ends are word-initial "
        "pieces (not ## continuations, not special) under each heads_alignment: the right alignment "
        "puts (nearly) every arc on word-initial pieces. A hub dataset downloads only the files sampled.",
    )
    add_option_flags(ch, "corpus", SOURCE_FLAGS[:5])
    ch.add_argument("--vocab", required=True, help="the vocab.txt of the rows' pieces")
    ch.add_argument(
        "--lowercase",
        action=argparse.BooleanOptionalAction,
        default=schema_default("tokenizer", "lowercase"),
        help="lowercase as the vocab does (default: tokenizer.lowercase's)",
    )
    ch.add_argument("--files", type=int, default=3, help="train files sampled, spread over the split")
    ch.add_argument("--rows", type=int, default=300, help="rows read from each file, spread over it")
    ch.add_argument("--offline", action="store_true", help="read the HF cache only")
    ch.add_argument("--out", help="also write the counts as JSON")


def source_options(args) -> dict:
    options = resolve_options(args, "corpus")
    given = [k for k in ("hub", "data_files", "path") if k in options.get("pretokenized", {})]
    if len(given) != 1:
        raise InputError("corpus.pretokenized: give exactly one of hub (--repo), data_files and path")
    return options


def run(args) -> None:
    options = source_options(args)
    source = options["pretokenized"]
    if args.pretokenized_command == "fetch":
        if "hub" not in source:
            raise InputError("pretokenized fetch: corpus.pretokenized.hub (--repo) is needed")
        write_text(json.dumps(fetch(source["hub"], download=not args.offline), indent=2) + "\n", args.out)
    elif args.pretokenized_command == "prepare":
        try:
            tokenizer_options = json.loads(args.tokenizer_options)
        except json.JSONDecodeError as err:
            raise InputError(f"--tokenizer-options: not JSON ({err.msg})") from None
        files = source_files(options, args.fetched)
        described = (
            {k: v for k, v in json.loads(Path(args.fetched).read_text()).items() if k != "files"}
            if "hub" in source
            else {k: v for k, v in source.items() if k in ("data_files", "path")}
        )
        prepare(
            files, source, tokenizer_options, args.vocab, Path(args.out_dataset), Path(args.out_tokenizer), described
        )
    else:
        from sasbert.data.tokenization import load_tokenizer

        tokenizer = load_tokenizer(args.vocab, args.lowercase)
        files = sample_files(options, args.files, download=not args.offline)
        result = check_alignment(files, tokenizer, args.rows)
        text, best = alignment_report(result)
        print(text)
        if args.out:
            write_text(json.dumps({**result, "best": best, "files": [Path(f).name for f in files]}, indent=2), args.out)
