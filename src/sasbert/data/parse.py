"""Stage 2, parse: corpus shards -> dependency-parsed shards.

``sasbert parse --backend NAME --shard S --out O`` parses one shard with one of the backends that
``sasbert.data.parsers.registry.PARSERS`` lists (``conllu``: gold parses; ``stanza``; ``spacy``),
each a module of ``sasbert.data.parsers``, loaded by name: the parse job's code is this module and
its backend's (docs/extending.md). Every backend writes the parsed-shard format of
``sasbert.data.parsers.parsed_shard`` (docs/outputs.md).
"""

from __future__ import annotations

import logging

import pandas as pd

from sasbert.atomic import write_parquet
from sasbert.data.parsers.registry import PARSERS, backend_module
from sasbert.options import add_option_flags
from sasbert.options import resolve as resolve_options

log = logging.getLogger(__name__)


def add_arguments(parser) -> None:
    parser.add_argument("--backend", choices=list(PARSERS), required=True, help=backends_help())
    parser.add_argument("--shard", required=True, help="corpus shard (parquet) from the corpus stage")
    parser.add_argument("--out", required=True, help="parsed shard (parquet)")
    parser.add_argument(
        "--threads", type=int, default=1, help="spaCy: processes (n_process); stanza: torch threads on the CPU"
    )
    add_backend_arguments(parser)


def backends_help() -> str:
    return "; ".join(f"{name}: {spec.summary}" for name, spec in PARSERS.items())


def add_backend_arguments(parser) -> None:
    """Every backend's flags (its module's FLAGS), shared with parse-quality: --options takes the
    config's corpus section (or just a backend's part of it) as JSON."""
    add_option_flags(parser, "corpus", [flag for name in PARSERS for flag in backend_module(name).FLAGS])


def backend_options(args, backend: str) -> dict:
    """The options of ``backend`` (its corpus.<options> subsection; {} without one) as the flags,
    --options and the schema give them."""
    section = PARSERS[backend].options
    return resolve_options(args, "corpus")[section] if section else {}


def run(args) -> None:
    units = pd.read_parquet(args.shard)
    parsed = backend_module(args.backend).parse_shard(units, backend_options(args, args.backend), args.threads)
    write_parquet(parsed, args.out)
    log.info("parsed %d sentences, %d words -> %s", len(parsed), int(parsed["words"].map(len).sum()), args.out)
