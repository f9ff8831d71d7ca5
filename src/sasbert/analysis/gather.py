"""Stage 7, the gathered all-runs tables (``sasbert phases gather``).

Reads tables only (no checkpoints, no torch), so figures can be redrawn from a ``results/`` folder
copied from a cluster.

The per-run x seed tables of the other stages are stacked into tidy all-runs tables with ``run`` and
``seed`` columns, one file each (``--out``; the workflow writes them to ``results/tables/``):

* ``runs.parquet``: one row per configured run, then per series (``sasbert.analysis.runs``).
* ``train.parquet``: ``run, seed, step, mlm_loss, sas, lambda, lr, grad_norm, n_steps`` (from
  ``metrics/steps.parquet``: every optimizer step, ``n_steps`` 1; a run x seed with more than
  ``max_train_rows`` steps is averaged over blocks of ``n_steps`` consecutive steps, ``step``,
  ``lambda`` and ``lr`` being the block's last, so paper-length runs stay small).
* ``loss.parquet``: ``run, seed, step, val_mlm_loss`` (every checkpoint, ``metrics/eval.parquet``).
* one table per gathered table of each registered per-checkpoint measure
  (``sasbert.measure.registry``), shaped by the measure's ``all_runs`` module: ``uas.parquet`` and
  ``heads.parquet`` from the probe (``sasbert.measure.probe.all_runs``), ``blimp.parquet`` from
  BLiMP (``run, seed`` + its summary's columns ``step, variant, level, name, phenomenon, accuracy,
  ci_low, ci_high, n_pairs, n_paradigms``; ci: the 95% interval), ``context.parquet`` from the
  context measure (its summaries stacked as they are: ``run, seed, step, checkpoint, window, loss,
  accuracy, n_masked, n_sentences, gap``; ``window`` -1 = the full context). An optional measure
  (``enabled: false`` in its config section) gives none of its flags and gets none of its tables.

A run's own rows only: a release run's tables start at its start step k. ``curves.stitch`` prepends the
parent's rows before k (same seed), which is the model's real history; phases and the release
figures use stitched curves.

CLI::


    sasbert phases gather --runs JSON|--config config.yaml [--seeds 0 1]
        --steps S.parquet... --eval E.parquet... --probe-summary P.parquet... --probe-scores Q.parquet...
        --blimp-summary B.parquet... (one per run x seed, runs in order, seeds within each run;
        a flag --<measure>-<table> per gathered table of each registered measure)
        --out runs.parquet train.parquet loss.parquet uas.parquet heads.parquet blimp.parquet
        [--allow-missing] [--max-train-rows 20000]
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from sasbert.analysis.runs import runs_table
from sasbert.atomic import write_parquet
from sasbert.errors import InputError
from sasbert.measure import registry
from sasbert.measure.registry import AllRunsTable
from sasbert.tables import read_table

log = logging.getLogger(__name__)


TRAIN_COLUMNS = ["run", "seed", "step", "mlm_loss", "sas", "lambda", "lr", "grad_norm", "n_steps"]


MAX_TRAIN_ROWS = 20000


LOSS_COLUMNS = ["run", "seed", "step", "val_mlm_loss"]


# The all-runs tables of the registered measures: (measure, its table) -> all-runs table, with the
# AllRunsTable of each (its measure's ALL_RUNS, imported by name: sasbert.measure.registry).
def _measure_sources() -> dict[str, tuple[str, AllRunsTable]]:
    sources = {}
    for measure, table, all_runs in registry.gathered_tables():
        shapes = importlib.import_module(f"sasbert.{measure.all_runs}").ALL_RUNS if measure.all_runs else {}
        shape = shapes.get(table) or AllRunsTable(required=["step"], what=f"{measure.name} {table}")
        sources[f"{measure.name}_{table}"] = (all_runs, shape)
    return sources


# The per-run x seed inputs of ``gather``: CLI option -> (all-runs table, how it is shaped). A series
# has no training tables: only TRAINED_ONLY's inputs are per trained run x seed alone.
SOURCES = {
    "steps": ("train", AllRunsTable(required=["step", "mlm_loss"], what="pretrain steps", columns=TRAIN_COLUMNS[2:])),
    "eval": ("loss", AllRunsTable(required=["step", "val_mlm_loss"], what="pretrain eval", columns=LOSS_COLUMNS[2:])),
    **_measure_sources(),
}


TRAINED_ONLY = ("steps", "eval")


TABLES = ("runs", *dict.fromkeys(table for table, _ in SOURCES.values()))


# the inputs of the optional measures: a config that switches one off gives none of its inputs
OPTIONAL_SOURCES = tuple(f"{m.name}_{table}" for m, table, _ in registry.gathered_tables() if m.optional)


def tables_made(given: Sequence[str]) -> tuple[str, ...]:
    """The all-runs tables ``gather`` writes when the inputs ``given`` (keys of ``SOURCES``) are
    given: every table but those of optional measures whose inputs are not."""
    left_out = {SOURCES[key][0] for key in OPTIONAL_SOURCES if key not in given}
    return tuple(table for table in TABLES if table not in left_out)


# the all-runs tables whose columns are fixed (the others have those their inputs have)
COLUMNS = {table: ["run", "seed", *shape.columns] for table, shape in SOURCES.values() if shape.columns is not None}


def _repeated_weights(hub_series: Sequence[dict], fetched: Sequence[str | Path]) -> dict:
    """{(series, step): the checkpoint whose weights it repeats} from the series-fetch manifests."""
    from sasbert.measure import checkpoints

    if len(fetched) != len(hub_series):
        raise InputError(f"--fetched: {len(fetched)} manifest(s) for {len(hub_series)} hub series")
    repeats = {}
    for one, path in zip(hub_series, fetched):
        steps = dict(checkpoints.series_checkpoints(one["hub"], one.get("steps")))
        try:
            rows = json.loads(Path(path).read_text())
        except (OSError, ValueError) as err:
            raise InputError(f"{path}: cannot read the series-fetch manifest ({err})") from None
        for row in rows:
            if row.get("same_weights_as") and row["checkpoint"] in steps:
                repeats[(one["name"], steps[row["checkpoint"]])] = row["same_weights_as"]
    return repeats


def _block_average(steps: pd.DataFrame, max_rows: int) -> pd.DataFrame:
    """Per-step training metrics, averaged over blocks of consecutive steps when there are more
    than ``max_rows`` of them (``n_steps`` = steps per row)."""
    steps = steps.sort_values("step").reset_index(drop=True)
    for col in TRAIN_COLUMNS[3:-1]:
        if col not in steps.columns:
            steps[col] = np.nan
    if len(steps) <= max_rows:
        return steps.assign(n_steps=1)
    block = int(math.ceil(len(steps) / max_rows))
    groups = steps.groupby(np.arange(len(steps)) // block)
    return pd.DataFrame(
        {
            "step": groups["step"].last(),
            "mlm_loss": groups["mlm_loss"].mean(),
            "sas": groups["sas"].mean(),
            "lambda": groups["lambda"].last(),
            "lr": groups["lr"].last(),
            "grad_norm": groups["grad_norm"].mean(),
            "n_steps": groups["step"].count(),
        }
    ).reset_index(drop=True)


def gather_tables(
    files: dict[str, Sequence[str | Path]],
    runs: Sequence[dict],
    seeds: Sequence[int],
    allow_missing: bool = False,
    max_train_rows: int = MAX_TRAIN_ROWS,
    series: Sequence[dict] = (),
    fetched: Sequence[str | Path] = (),
) -> dict[str, pd.DataFrame]:
    """Stack every run x seed's tables into the all-runs tables named in ``TABLES``.

    ``files`` maps each key of ``SOURCES`` to one path per run x seed, runs in config order and
    seeds within each run (what the workflow's ``expand(..., run=RUNS, seed=SEEDS)`` lists), and
    then, except for the training tables (``TRAINED_ONLY``), one per series (at its own seed). A
    missing file is an error unless ``allow_missing`` (then it is skipped with a warning: e.g. a
    results folder copied before every job finished). An optional measure's key absent from
    ``files`` (None) leaves its tables out (``tables_made``). ``fetched``: the ``series-fetch`` manifest
    of each hub series, in config order; a checkpoint whose weights repeat an earlier one's gets
    that one in ``uas.same_weights_as``."""
    runs_df = runs_table(runs, series)
    trained = [(run["name"], int(seed)) for run in runs for seed in seeds]
    measured = trained + [(one["name"], int(one.get("seed", 0))) for one in series]
    unknown = sorted(set(files) - set(SOURCES))
    if unknown:
        raise InputError(f"unknown input kind(s): {', '.join(unknown)}")
    sources = {
        key: source for key, source in SOURCES.items() if key not in OPTIONAL_SOURCES or files.get(key) is not None
    }
    for key in sources:
        given = files.get(key) or []
        expected = trained if key in TRAINED_ONLY else measured
        if len(given) != len(expected):
            raise InputError(
                f"--{key.replace('_', '-')}: {len(given)} file(s) for {len(expected)} run x seed pair(s) "
                "(one per run x seed, runs in config order, seeds within each run"
                + (", then one per series)" if key not in TRAINED_ONLY else ")")
            )
    made = tables_made([key for key in SOURCES if key in sources])
    frames: dict[str, list[pd.DataFrame]] = {name: [] for name in made[1:]}
    columns = {name: cols for name, cols in COLUMNS.items() if name in frames}
    missing = []
    for key, (name, shape) in sources.items():
        for (run, seed), path in zip(trained if key in TRAINED_ONLY else measured, files.get(key) or []):
            path = Path(path)
            if not path.is_file():
                missing.append(str(path))
                continue
            df = read_table(path, shape.required, shape.what)
            if shape.rows is not None:
                df = shape.rows(df)
            elif name == "train":
                df = _block_average(df, max_train_rows)
            frames[name].append(df.assign(run=run, seed=seed))
    if missing:
        if not allow_missing:
            shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
            raise InputError(f"missing input table(s): {shown} (use --allow-missing to skip them)")
        for path in missing:
            log.warning("skipped (not found): %s", path)
    for name, found in frames.items():  # a table without fixed columns: those its inputs have
        if name not in columns:
            seen = dict.fromkeys(["run", "seed", "step"])
            for df in found:
                seen.update(dict.fromkeys(df.columns))
            columns[name] = list(seen)
    repeats = _repeated_weights([one for one in series if "hub" in one], fetched)
    if repeats:  # a hub series' checkpoint that repeats an earlier one's weights
        for name, found in frames.items():
            if "same_weights_as" in columns[name]:
                frames[name] = [
                    df.assign(same_weights_as=[repeats.get((run, step)) for run, step in zip(df["run"], df["step"])])
                    for df in found
                ]
    out = {"runs": runs_df}
    for name, cols in columns.items():
        if frames[name]:
            df = pd.concat(frames[name], ignore_index=True)
            for col in cols:
                if col not in df.columns:
                    df[col] = np.nan
            df = df[cols]
        else:
            df = pd.DataFrame({c: pd.Series(dtype="float64") for c in cols})
            for col in ("run", "treebank", "direction", "variant", "level", "name", "phenomenon"):
                if col in df.columns:
                    df[col] = df[col].astype("object")
        sort = [
            c
            for c in ("run", "seed", "step", "treebank", "variant", "level", "name", "layer", "head", "direction")
            if c in cols
        ]
        df["_order"] = df["run"].map(dict(zip(runs_df["run"], runs_df["order"])))
        df = df.sort_values(["_order", *sort[1:]], kind="stable").drop(columns="_order")
        out[name] = df.reset_index(drop=True)
    return out


# CLI


def add_arguments(parser: argparse.ArgumentParser) -> None:
    for key, (_, shape) in SOURCES.items():
        what = shape.what
        parser.add_argument(
            f"--{key.replace('_', '-')}",
            nargs="*",
            default=None,
            metavar="PARQUET",
            help=f"the {what} table of each run x seed (runs in config order, seeds within each run"
            + (")" if key in TRAINED_ONLY else ", then each series)")
            + ("; not given: no such table (an optional measure)" if key in OPTIONAL_SOURCES else ""),
        )
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--runs", help="the config's runs list as JSON")
    src.add_argument("--config", help="a workflow config YAML (its runs and seeds)")
    parser.add_argument("--seeds", type=int, nargs="+", help="seeds (required with --runs)")
    parser.add_argument("--series", help="with --runs: the config's series list as JSON (external checkpoint series)")
    parser.add_argument(
        "--fetched", nargs="*", default=[], metavar="JSON", help="the series-fetch manifest of each hub series"
    )
    parser.add_argument(
        "--out",
        nargs="+",
        required=True,
        metavar="PARQUET",
        help=f"the gathered tables, one file named <table>.parquet for each of {', '.join(TABLES)}",
    )
    parser.add_argument(
        "--allow-missing",
        action="store_true",
        help="skip run x seed tables that do not exist (warn) instead of failing",
    )
    parser.add_argument(
        "--max-train-rows",
        type=int,
        default=MAX_TRAIN_ROWS,
        help="longer per-step training tables are averaged over blocks of steps",
    )


def _load_config_runs(path: str) -> tuple[list[dict], list[int], list[dict]]:
    """A config's runs, seeds and series."""
    import yaml

    try:
        config = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as err:
        raise InputError(f"{path}: cannot read the config ({err})") from None
    if not isinstance(config, dict) or "runs" not in config or "seeds" not in config:
        raise InputError(f"{path}: a config needs 'runs' and 'seeds'")
    return config["runs"], [int(s) for s in config["seeds"]], config.get("series") or []


def run(args: argparse.Namespace) -> None:
    if args.config:
        runs, seeds, series = _load_config_runs(args.config)
        seeds = args.seeds or seeds
    else:
        try:
            runs = json.loads(args.runs)
            series = json.loads(args.series) if args.series else []
        except json.JSONDecodeError as err:
            raise InputError(f"--runs/--series: not JSON ({err})") from None
        if not args.seeds:
            raise InputError("--seeds is required with --runs")
        seeds = args.seeds
    if args.max_train_rows < 1:
        raise InputError("--max-train-rows must be >= 1")
    files = {key: getattr(args, key) for key in SOURCES}
    made = tables_made([key for key, given in files.items() if given is not None])
    outputs = {Path(path).name.removesuffix(".parquet"): Path(path) for path in args.out}
    if sorted(outputs) != sorted(made) or len(outputs) != len(args.out):
        raise InputError(f"--out: give one file named <table>.parquet for each of {', '.join(made)}")
    tables = gather_tables(files, runs, seeds, args.allow_missing, args.max_train_rows, series, args.fetched)
    for name, df in tables.items():
        write_parquet(df, outputs[name])
        log.info("%s: %d rows", name, len(df))
