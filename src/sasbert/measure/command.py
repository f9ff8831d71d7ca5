"""``sasbert <measure> score``: the command of a per-checkpoint measure, made from its registry entry.

A measure module defines two functions and gets its command from ``score_command``::

    def prepare(options: dict, data: dict[str, Path], device) -> tuple[state, dict]:
        # read what every checkpoint is scored against (once per job); return it and what of it
        # belongs in a cached score's identity (e.g. ``hub.content_id`` of a file)
    def score(path: Path, step: int, state, options: dict, device) -> dict[str, DataFrame]:
        # one checkpoint's tables (``measure.tables``), each with a ``step`` column

    add_arguments, run = score_command("<name>", prepare, score)

The command takes what every measure's rule passes (``workflow/rules/measures.smk``): the
checkpoints (``--checkpoint``, ``--step``), one flag per data input of the entry (``--<key>``), the
config section (``--options``, and one flag per scalar option of the section's schema but an
optional measure's switch ``enabled``, which is the workflow's), the
per-checkpoint cache (``--cache-dir``, ``checkpoints.score_series``), ``--device``, ``--threads``
and one ``--out-<table>`` per table. An ``every_steps`` option thins the series
(``checkpoints.thin_series``). A cached score's identity is the measure module's code, its options
(less the data paths, ``checkpoints.SELECTION_OPTIONS`` and ``enabled``) and what ``prepare``
returns.

This module reads the registry, but the registry is not in a measure's code fingerprint (the rules
and the identity exclude it): adding a measure does not rescore the others.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable
from pathlib import Path

from sasbert.errors import InputError

log = logging.getLogger(__name__)

# not code that a measure's scores depend on (see the module docstring)
NOT_SCORING_CODE = ("measure.registry",)

_PARSERS = {"integer": int, "number": float, "string": str}


def _value_parser(types: list[str]):
    """argparse type for an option of these schema types; 'null'/'none' gives None where allowed."""
    base = next((_PARSERS[t] for t in types if t in _PARSERS), str)

    def parse(text: str):
        if "null" in types and text.lower() in ("null", "none"):
            return None
        if "boolean" in types and text.lower() in ("true", "false"):
            return text.lower() == "true"
        try:
            return base(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {' or '.join(types)}, got {text!r}") from None

    return parse


def schema_flags(section: str, skip=()) -> list:
    """One ``add_option_flags`` flag per scalar option of a config section (lists and objects are
    set through --options)."""
    from sasbert.config import _resolve
    from sasbert.options import section_schema

    schema = section_schema(section)
    flags = []
    for key, spec in schema.get("properties", {}).items():
        if "$ref" in spec:  # a shared definition ($defs: positive_int, ...), overridden by the option's own keys
            spec = {**_resolve(spec["$ref"], schema), **{k: v for k, v in spec.items() if k != "$ref"}}
        types = spec.get("type", "string")
        types = [types] if isinstance(types, str) else list(types)
        if key in skip or not set(types) <= {"integer", "number", "string", "boolean", "null"}:
            continue
        keywords = {"type": _value_parser(types), "option": key}
        if "enum" in spec:
            keywords["metavar"] = "{" + ",".join(str(v) for v in spec["enum"]) + "}"
        flags.append((f"--{key.replace('_', '-')}", keywords, spec.get("description", "").split(". ")[0]))
    return flags


def score_command(name: str, prepare: Callable, score: Callable) -> tuple[Callable, Callable]:
    """(add_arguments, run) of the measure ``name``'s command (see the module docstring)."""
    from sasbert.measure.registry import ENABLED, MEASURES

    measure = MEASURES[name]
    module = score.__module__.removeprefix("sasbert.")

    def add_arguments(parser: argparse.ArgumentParser) -> None:
        from sasbert.options import add_option_flags

        sub = parser.add_subparsers(dest=f"{name}_command", required=True, metavar="COMMAND")
        sc = sub.add_parser("score", help=measure.help, description=f"{measure.help}, over a checkpoint series.")
        sc.add_argument(
            "--checkpoint",
            nargs="+",
            required=True,
            metavar="DIR",
            help="HF checkpoint dir(s), glob(s) or hub:<repo>@<revision> spec(s); the step is read "
            "from the name (step-400, checkpoint-500, step_20k, ...) unless --step is given",
        )
        sc.add_argument("--step", type=int, nargs="+", help="step(s), one per checkpoint")
        for key in measure.inputs:
            sc.add_argument(measure.input_flag(key), required=True, dest=key, help=f"the config's {name}.{key}")
        for table in measure.tables:
            sc.add_argument(measure.out_flag(table), required=True, dest=f"out_{table}", help=f"{table} parquet")
        sc.add_argument(
            "--cache-dir",
            default=None,
            help="keep each checkpoint's tables here with what they were computed from, and reuse "
            "those computed from the same (resume a job stopped part-way through a series)",
        )
        sc.add_argument("--device", default="auto", help="auto (cuda if available), cpu, cuda, cuda:1, ...")
        sc.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
        add_option_flags(sc, name, schema_flags(name, skip=(*measure.inputs, ENABLED)))

    def run(args: argparse.Namespace) -> None:
        from sasbert.atomic import write_parquet
        from sasbert.code_identity import code_fingerprint
        from sasbert.measure.checkpoints import (
            SELECTION_OPTIONS,
            resolve_checkpoints,
            resolve_device,
            score_series,
            thin_series,
        )
        from sasbert.options import resolve as resolve_options

        options = resolve_options(args, name)
        if args.threads < 0:
            raise InputError(f"--threads must be >= 0 (got {args.threads})")
        outputs = [Path(getattr(args, f"out_{table}")).resolve() for table in measure.tables]
        if len(set(outputs)) < len(outputs):
            raise InputError(f"{', '.join(measure.out_flag(t) for t in measure.tables)}: two name the same file")
        series = resolve_checkpoints(args.checkpoint, args.step)
        if "every_steps" in options:
            series = thin_series(series, options["every_steps"])
        device = resolve_device(args.device)
        if args.threads > 0:
            import torch

            torch.set_num_threads(args.threads)
        data = {key: Path(getattr(args, key)) for key in measure.inputs}
        for key, path in data.items():
            if not path.exists():
                raise InputError(f"{path}: not found ({measure.input_flag(key)})")
        state, data_identity = prepare(options, data, device)
        identity = {
            "code": code_fingerprint(module, exclude=NOT_SCORING_CODE),
            # not the switch `enabled` (the workflow's, which only a scoring job with it on runs)
            "options": {k: v for k, v in options.items() if k not in (*SELECTION_OPTIONS, *measure.inputs, ENABLED)},
            **data_identity,
        }
        log.info("%s: %d checkpoint(s)", name, len(series))

        def score_one(path: Path, step: int) -> dict:
            tables = score(path, step, state, options, device)
            missing = [t for t in measure.tables if t not in tables]
            if missing:
                raise RuntimeError(f"{module}.score returned no {', '.join(missing)} table")
            return tables

        tables = score_series(series, score_one, measure.tables, args.cache_dir, log, identity)
        for table, path in zip(measure.tables, outputs):
            write_parquet(tables[table], path)

    return add_arguments, run
