"""Stage 7, phases: gathered all-runs tables, and onsets found on the per-checkpoint curves.

docs/method.md, "Phases", made operational. Everything here reads tables only (no checkpoints, no
torch), so figures can be redrawn from a ``results/`` folder copied from a cluster.

Gathered tables (``sasbert phases gather``)
-------------------------------------------
The per-run x seed tables of the other stages are stacked into tidy all-runs tables with ``run`` and
``seed`` columns, one file each (``--out``; the workflow writes them to ``results/tables/``):

* ``runs.parquet``: one row per configured run, in config order, then one per series (checkpoints
  trained elsewhere, ``kind`` external): ``run, order, kind, lambda, lambda_schedule, parent,
  start_step, release_step, label, tokens_per_step`` (a series' own, where the config gives it; a
  trained run's, train.batch_size x tokenizer.seq_len, from the workflow).
  A run's ``kind`` comes from the lambda
  schedule, never from the name: ``baseline`` (constant 0), ``sas_plus`` (constant < 0, promotes
  SAS), ``sas_minus`` (constant > 0, suppresses SAS), ``release`` (stages ending in 0 after a
  nonzero weight: SAS-(k), or SAS+(k) when that weight is negative), ``other`` (any other staged
  schedule). ``lambda`` is the constant, or for a release run the weight before the release;
  ``lambda_schedule`` the schedule as JSON; ``parent``/``start_step`` the run it resumes from and
  at which step (``start_step`` 0 otherwise); ``release_step`` (k) the step from which lambda is 0
  (release runs only); ``label`` a short legend text.
* ``train.parquet``: ``run, seed, step, mlm_loss, sas, lambda, lr, grad_norm, n_steps`` (from
  ``metrics/steps.parquet``: every optimizer step, ``n_steps`` 1; a run x seed with more than
  ``max_train_rows`` steps is averaged over blocks of ``n_steps`` consecutive steps, ``step``,
  ``lambda`` and ``lr`` being the block's last, so paper-length runs stay small).
* ``loss.parquet``: ``run, seed, step, val_mlm_loss`` (every checkpoint, ``metrics/eval.parquet``).
* ``uas.parquet``: ``run, seed, step, treebank, uas, uas_low, uas_high (its 95% interval), layer, head, direction, soft_score,
  max_soft_score, uas_mean, offset_uas, offset, n_sentences`` (every checkpoint; from the probe's
  summary: ``uas`` is the "all" best-head accuracy, i.e. the UAS of our figures, and ``layer, head,
  direction, soft_score`` are that head's; ``uas_mean`` the "mean" row (mean of per-relation best
  heads; null for unlabelled treebanks); ``offset_uas``/``offset`` the best fixed-offset baseline).
* ``heads.parquet``: ``run, seed, step, treebank, layer, head, direction, accuracy, soft_score,
  count`` (the probe's per-head scores for relation "all").
* ``blimp.parquet``: ``run, seed`` + the BLiMP summary columns ``step, variant, level, name,
  phenomenon, accuracy, ci_low, ci_high, n_pairs, n_paradigms`` (ci: the 95% interval).

A run's own rows only: a release run's tables start at its start step k. ``stitch`` prepends the
parent's rows before k (same seed), which is the model's real history; phases and the release
figures use stitched curves.

Onsets (``sasbert phases detect``)
----------------------------------
On one curve y(step) of one run x seed, sampled at its (irregular) checkpoints:

1. **Smoothing**: a centred triangular moving average over ``smoothing_window`` checkpoints (an odd number of
   points, not steps; 1 = none). Near the ends the window shrinks symmetrically, so the first and
   last points are left as they are (a one-sided window would bend a trend at the edges).
2. **Finite differences in step**: velocity v = dy/dstep of the smoothed curve and acceleration
   a = dv/dstep of the velocity smoothed with the same window (a second difference amplifies noise
   far more than a first), both by ``numpy.gradient`` (second-order central differences that
   account for uneven spacing; one-sided at the ends). The first and last checkpoint's velocity
   is one-sided, and so is the acceleration at the two first and two last checkpoints: these are
   no candidates for the acceleration events below.
3. **Events** (steps below ``min_step`` are not candidates, see below):
   * ``breakthrough`` (metric ``uas``): the step of maximal UAS velocity;
   * ``structure_onset`` (``uas``): the step of maximal UAS acceleration strictly before the
     breakthrough;
   * ``capabilities_onset`` (``uas``): the step of minimal UAS acceleration (growth stops) strictly
     after the breakthrough;
   * ``loss_drop`` (``val_mlm_loss``): the step of maximal negative velocity of the held-out loss
     after its first plateau (see "The loss drop" below);
   * ``blimp_jump`` (``blimp``): the step of maximal velocity of overall BLiMP accuracy;
   * ``glue_jump`` (``glue``, only where GLUE was run): the step of maximal velocity of the GLUE
     score (``glue_score``: BERT's GLUE average, or the mean of the tasks run), found exactly as
     the BLiMP jump (``jump_events``: the same no-transition rule and 95% interval test).
4. **No transition** (a curve must say so rather than invent one): with sigma the curve's noise,
   estimated from the raw points as 1.4826 * MAD(second differences) / sqrt(6) (robust to the one
   transition; a second difference of i.i.d. noise has variance 6 sigma^2), and *rise* the largest
   increase of the smoothed curve from any point to any later one (for the loss: the largest
   decrease), a curve shows a transition when it has at least ``min_points`` checkpoints and

       rise >= threshold = max(min_rise, noise_factor * sigma).

   ``min_rise`` is in the curve's units (accuracy for UAS/BLiMP, nats for the loss). Otherwise
   every event of the curve is reported with ``detected = False``, null step and value, and a
   ``reason``. The velocity events are searched among checkpoints with two neighbours (the
   ends' velocity is one-sided); a curve that is steepest at the first or last of them is a monotone
   trend through the sampled window, not a transition inside it (the steady decline of the loss
   after warmup; a UAS still rising when training stops): its breakthrough, loss drop or BLiMP
   jump is undetected, with that reason. An onset is also undetected when no candidate lies
   between the breakthrough and the first (structure onset) or last (capabilities onset) usable
   checkpoint: it happened before or after what was sampled.

``min_step`` (all curves) and ``loss_min_step`` (the loss only) exclude early checkpoints from the
candidates and from the rise; derivatives are still computed on the whole curve. The early
unigram-learning drop of the MLM loss (the first few hundred steps, during LR warmup) is always the
steepest part of the loss curve in raw steps, so the workflow searches the loss drop from the end of
warmup on (``loss_min_step`` defaults to ``train.warmup_steps`` there).

The loss drop
-------------
A held-out loss falls fastest right after warmup and then ever more slowly: in raw steps its
steepest point is the start of a decelerating trend, never a "sudden drop". The paper's drop is the
loss falling faster *again* after a plateau. Operationally, among the candidates with two
neighbours (rate r = -velocity of the smoothed loss):

* the **plateau** is the first candidate where r stops decreasing (r[i] <= r[i + 1]);
* the **drop** is the candidate of maximal r after the plateau;
* it is reported when the smoothed loss falls below the plateau's tangent line (its level and rate
  continued) by at least the threshold, ``rise`` being that largest excess. A loss that only slows
  down stays above every tangent line (it is convex) and has no drop; noise on a steady decline
  makes excesses of the order of the noise, below the threshold.

Phases table: ``run, seed, kind, metric, event, detected, step, value, smoothed_value, velocity,
acceleration, rise, noise, threshold, n_points, reason`` -- one row per run x seed x event (five
events, six with a GLUE table), ``value`` the raw curve value at ``step``, ``velocity``/``acceleration`` the smoothed
curve's derivatives there (per step, per step^2).

CLI::

    sasbert phases gather --runs JSON|--config config.yaml [--seeds 0 1]
        --steps S.parquet... --eval E.parquet... --probe-summary P.parquet... --probe-scores Q.parquet...
        --blimp-summary B.parquet... (one per run x seed, runs in order, seeds within each run)
        --out runs.parquet train.parquet loss.parquet uas.parquet heads.parquet blimp.parquet
        [--allow-missing] [--max-train-rows 20000]
    sasbert phases detect --runs runs.parquet --loss loss.parquet --uas uas.parquet
        --blimp blimp.parquet --out phases.parquet [--csv phases.csv]
        [--smoothing-window 3] [--min-rise 0.02] [--noise-factor 5] [--min-points 5]
        [--min-step 0] [--loss-min-step 0] [--treebank NAME] [--blimp-variant NAME]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from sasbert.atomic import atomic_path, write_parquet
from sasbert.errors import InputError
from sasbert.measure.blimp import SUMMARY_COLUMNS as BLIMP_SUMMARY_COLUMNS
from sasbert.options import add_option_flags
from sasbert.options import defaults as schema_defaults
from sasbert.options import resolve as resolve_options
from sasbert.schedules import final_lambda
from sasbert.tables import read_table

log = logging.getLogger(__name__)

KINDS = ("baseline", "sas_plus", "sas_minus", "release", "other", "external")
EVENTS = ("structure_onset", "breakthrough", "capabilities_onset", "loss_drop", "blimp_jump")
EVENT_METRIC = {
    "structure_onset": "uas",
    "breakthrough": "uas",
    "capabilities_onset": "uas",
    "loss_drop": "val_mlm_loss",
    "blimp_jump": "blimp",
    "glue_jump": "glue",  # only where GLUE was run (detect's glue table)
}
RUN_COLUMNS = [
    "run",
    "order",
    "kind",
    "lambda",
    "lambda_schedule",
    "parent",
    "start_step",
    "release_step",
    "label",
    "tokens_per_step",
]
TRAIN_COLUMNS = ["run", "seed", "step", "mlm_loss", "sas", "lambda", "lr", "grad_norm", "n_steps"]
MAX_TRAIN_ROWS = 20000
LOSS_COLUMNS = ["run", "seed", "step", "val_mlm_loss"]
UAS_COLUMNS = [
    "run",
    "seed",
    "step",
    "treebank",
    "uas",
    "uas_low",
    "uas_high",
    "layer",
    "head",
    "direction",
    "soft_score",
    "max_soft_score",
    "reachable",
    "same_weights_as",
    "uas_mean",
    "offset_uas",
    "offset",
    "n_sentences",
]
HEAD_COLUMNS = ["run", "seed", "step", "treebank", "layer", "head", "direction", "accuracy", "soft_score", "count"]
BLIMP_COLUMNS = ["run", "seed", *BLIMP_SUMMARY_COLUMNS]
INTERVAL_COLUMNS = ("ci_low", "ci_high")  # 95% intervals: absent from tables written before them
PHASE_COLUMNS = [
    "run",
    "seed",
    "kind",
    "metric",
    "event",
    "detected",
    "step",
    "value",
    "smoothed_value",
    "velocity",
    "acceleration",
    "rise",
    "noise",
    "threshold",
    "n_points",
    "reason",
]
TABLES = ("runs", "train", "loss", "uas", "heads", "blimp")


# ----------------------------------------------------------------------------------------------
# Runs


def describe_run(run: dict, order: int = 0) -> dict:
    """One ``runs`` row for a config run ``{name, lambda, resume_from?}`` (see module docstring)."""
    name = run["name"]
    schedule = run["lambda"]
    parent = run.get("resume_from") or None
    start_step = int(parent["step"]) if parent else 0
    release_step = None
    if isinstance(schedule, (int, float)) and not isinstance(schedule, bool):
        value = float(schedule)
        kind = "baseline" if value == 0 else ("sas_plus" if value < 0 else "sas_minus")
    elif isinstance(schedule, list) and schedule:
        final = final_lambda(schedule)
        nonzero = [i for i, s in enumerate(schedule) if float(s["value"]) != 0]
        if not nonzero:
            kind, value = "baseline", 0.0
        elif final == 0.0:
            last = schedule[nonzero[-1]]
            kind, value, release_step = "release", float(last["value"]), int(last["until_step"])
        else:
            kind, value = "other", final
    else:
        raise InputError(f"runs[{order}] ({name}): lambda must be a number or a list of stages")
    if kind == "baseline":
        label = f"{name} (λ=0)"
    elif kind == "sas_plus":
        label = f"{name} (SAS+, λ={value:g})"
    elif kind == "sas_minus":
        label = f"{name} (SAS−, λ={value:g})"
    elif kind == "release":
        label = f"{name} (SAS{'−' if value > 0 else '+'}({release_step}))"
    else:
        label = f"{name} (staged λ)"
    return {
        "run": name,
        "order": order,
        "kind": kind,
        "lambda": value,
        "lambda_schedule": json.dumps(schedule),
        "parent": parent["run"] if parent else None,
        "start_step": start_step,
        "release_step": release_step,
        "label": label,
        "tokens_per_step": run.get("tokens_per_step"),
    }


def describe_series(series: dict, order: int) -> dict:
    """One ``runs`` row for a config series (checkpoints trained elsewhere): kind ``external``."""
    return {
        "run": series["name"],
        "order": order,
        "kind": "external",
        "lambda": np.nan,
        "lambda_schedule": None,
        "parent": None,
        "start_step": 0,
        "release_step": None,
        "label": f"{series['name']} (external)",
        "tokens_per_step": series.get("tokens_per_step"),
    }


def runs_table(runs: Sequence[dict], series: Sequence[dict] = ()) -> pd.DataFrame:
    """The ``runs`` table of a config's ``runs`` (kinds from lambda, in config order) and then its
    ``series`` (kind external)."""
    names = [r.get("name") for r in [*runs, *series]]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise InputError(f"runs: duplicate run or series name(s) {', '.join(dup)}")
    rows = [describe_run(run, i) for i, run in enumerate(runs)]
    rows += [describe_series(one, len(runs) + i) for i, one in enumerate(series)]
    df = pd.DataFrame(rows, columns=RUN_COLUMNS)
    df["start_step"] = df["start_step"].astype("int64")
    df["release_step"] = df["release_step"].astype("Int64")
    df["tokens_per_step"] = df["tokens_per_step"].astype("Int64")
    return df


# ----------------------------------------------------------------------------------------------
# Gathering the per-run tables


def _uas_rows(summary: pd.DataFrame) -> pd.DataFrame:
    """One row per (step, treebank) from a probe summary table."""
    att = summary[summary["method"] == "attention"]
    if "ci_low" not in att.columns:  # tables written before intervals were added
        att = att.assign(ci_low=np.nan, ci_high=np.nan)
    if "reachable" not in att.columns:  # tables written before causal LMs were probed
        att = att.assign(reachable=np.nan)
    best = att[att["relation"] == "all"][
        [
            "step",
            "treebank",
            "accuracy",
            "ci_low",
            "ci_high",
            "layer",
            "head",
            "direction",
            "soft_score",
            "max_soft_score",
            "reachable",
            "n_sentences",
        ]
    ]
    best = best.rename(columns={"accuracy": "uas", "ci_low": "uas_low", "ci_high": "uas_high"})
    mean = att[att["relation"] == "mean"][["step", "treebank", "accuracy"]].rename(columns={"accuracy": "uas_mean"})
    off = summary[(summary["method"] == "offset") & (summary["relation"] == "all")]
    off = off[["step", "treebank", "accuracy", "offset"]].rename(columns={"accuracy": "offset_uas"})
    out = best.merge(mean, on=["step", "treebank"], how="left").merge(off, on=["step", "treebank"], how="left")
    return out


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


# The per-run x seed inputs of ``gather``: CLI option -> (table, columns it must have, what it is).
# A series has no training tables: only TRAINED_ONLY's inputs are per trained run x seed alone.
SOURCES = {
    "steps": ("train", ["step", "mlm_loss"], "pretrain steps"),
    "eval": ("loss", ["step", "val_mlm_loss"], "pretrain eval"),
    "probe_summary": (
        "uas",
        ["step", "treebank", "method", "relation", "accuracy", "layer", "head", "direction"],
        "probe summary",
    ),
    "probe_scores": (
        "heads",
        ["step", "treebank", "method", "relation", "layer", "head", "direction", "accuracy"],
        "probe scores",
    ),
    "blimp_summary": ("blimp", [c for c in BLIMP_COLUMNS[2:] if c not in INTERVAL_COLUMNS], "BLiMP summary"),
}
TRAINED_ONLY = ("steps", "eval")


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
    results folder copied before every job finished). ``fetched``: the ``series-fetch`` manifest
    of each hub series, in config order; a checkpoint whose weights repeat an earlier one's gets
    that one in ``uas.same_weights_as``."""
    runs_df = runs_table(runs, series)
    trained = [(run["name"], int(seed)) for run in runs for seed in seeds]
    measured = trained + [(one["name"], int(one.get("seed", 0))) for one in series]
    unknown = sorted(set(files) - set(SOURCES))
    if unknown:
        raise InputError(f"unknown input kind(s): {', '.join(unknown)}")
    for key in SOURCES:
        given = files.get(key) or []
        expected = trained if key in TRAINED_ONLY else measured
        if len(given) != len(expected):
            raise InputError(
                f"--{key.replace('_', '-')}: {len(given)} file(s) for {len(expected)} run x seed pair(s) "
                "(one per run x seed, runs in config order, seeds within each run"
                + (", then one per series)" if key not in TRAINED_ONLY else ")")
            )
    sources = {key: (table, required, what) for key, (table, required, what) in SOURCES.items()}
    frames: dict[str, list[pd.DataFrame]] = {table: [] for table, _, _ in sources.values()}
    missing = []
    for key, (name, required, what) in sources.items():
        for (run, seed), path in zip(trained if key in TRAINED_ONLY else measured, files.get(key) or []):
            path = Path(path)
            if not path.is_file():
                missing.append(str(path))
                continue
            df = read_table(path, required, what)
            if name == "uas":
                df = _uas_rows(df)
            elif name == "heads":
                df = df[(df["method"] == "attention") & (df["relation"] == "all")]
            elif name == "train":
                df = _block_average(df, max_train_rows)
            frames[name].append(df.assign(run=run, seed=seed))
    if missing:
        if not allow_missing:
            shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
            raise InputError(f"missing input table(s): {shown} (use --allow-missing to skip them)")
        for path in missing:
            log.warning("skipped (not found): %s", path)
    columns = {
        "train": TRAIN_COLUMNS,
        "loss": LOSS_COLUMNS,
        "uas": UAS_COLUMNS,
        "heads": HEAD_COLUMNS,
        "blimp": BLIMP_COLUMNS,
    }
    repeats = _repeated_weights([one for one in series if "hub" in one], fetched)
    if frames["uas"] and repeats:
        frames["uas"] = [
            df.assign(same_weights_as=[repeats.get((run, step)) for run, step in zip(df["run"], df["step"])])
            for df in frames["uas"]
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


# ----------------------------------------------------------------------------------------------
# Stitching release runs onto their parents


def stitch(table: pd.DataFrame, runs: pd.DataFrame) -> pd.DataFrame:
    """``table`` (with ``run, seed, step``) where every run that resumes from a parent gets the
    parent's rows (same seed) with step < its start step prepended, recursively. Adds a column
    ``segment``: "own" or "parent"."""
    info = runs.set_index("run")
    pieces = []
    own = table.assign(segment="own")
    by_run = {run: df for run, df in own.groupby("run", sort=False)}
    for run, df in by_run.items():
        pieces.append(df)
        chain_run, start = run, None
        seen = {run}
        while chain_run in info.index and isinstance(info.at[chain_run, "parent"], str):
            parent = info.at[chain_run, "parent"]
            cut = int(info.at[chain_run, "start_step"])
            start = cut if start is None else min(start, cut)
            if parent in seen or parent not in by_run:
                break
            seen.add(parent)
            prev = by_run[parent]
            prev = prev[(prev["step"] < start) & prev["seed"].isin(df["seed"].unique())]
            pieces.append(prev.assign(run=run, segment="parent"))
            chain_run = parent
    if not pieces:
        return own
    out = pd.concat(pieces, ignore_index=True)
    return out.sort_values(["run", "seed", "step"], kind="stable").reset_index(drop=True)


# ----------------------------------------------------------------------------------------------
# Curves


DEFAULTS = schema_defaults("phases")  # the config schema's: defaults live there only


@dataclasses.dataclass(frozen=True)
class PhaseOptions:
    """Detection settings (see the module docstring): the config's ``phases`` section."""

    smoothing_window: int = DEFAULTS["smoothing_window"]
    min_rise: float = DEFAULTS["min_rise"]
    noise_factor: float = DEFAULTS["noise_factor"]
    min_points: int = DEFAULTS["min_points"]
    min_step: int = DEFAULTS["min_step"]
    loss_min_step: int | None = DEFAULTS["loss_min_step"]  # None: no loss-only limit (the workflow sets warmup)

    def check(self) -> None:
        if self.smoothing_window < 1 or self.smoothing_window % 2 == 0:
            raise InputError(f"smoothing window must be an odd number >= 1 (got {self.smoothing_window})")
        if self.min_rise < 0 or self.noise_factor < 0:
            raise InputError("min_rise and noise_factor must be >= 0")
        if self.min_points < 3:
            raise InputError(f"min_points must be >= 3 (got {self.min_points})")
        if self.min_step < 0 or (self.loss_min_step or 0) < 0:
            raise InputError("min_step and loss_min_step must be >= 0")


def smooth(y: np.ndarray, window: int) -> np.ndarray:
    """Centred triangular moving average over ``window`` (odd) points, weights 1, 2, ..., h+1, ...,
    2, 1 (h = window // 2; window 3 is the binomial [1, 2, 1] / 4); near the ends the window shrinks
    symmetrically, so the first and last points are kept as they are."""
    y = np.asarray(y, dtype=float)
    half = window // 2
    n = len(y)
    if half == 0 or n < 3:
        return y.copy()
    out = np.empty_like(y)
    for i in range(n):
        h = min(half, i, n - 1 - i)
        weights = (h + 1) - np.abs(np.arange(-h, h + 1))
        out[i] = float(np.dot(weights, y[i - h : i + h + 1]) / weights.sum())
    return out


def derivatives(steps: np.ndarray, y: np.ndarray, window: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Velocity dy/dstep and acceleration in step (``numpy.gradient``, uneven spacing); the
    velocity is smoothed with the same ``window`` before it is differentiated again (a second
    difference amplifies noise far more than a first)."""
    steps = np.asarray(steps, dtype=float)
    if len(steps) < 2:
        return np.full(len(steps), np.nan), np.full(len(steps), np.nan)
    edge = 2 if len(steps) >= 3 else 1
    v = np.gradient(y, steps, edge_order=edge)
    a = np.gradient(smooth(v, window), steps, edge_order=edge)
    return v, a


def noise_sigma(y: np.ndarray) -> float:
    """Robust point noise: 1.4826 * MAD of second differences / sqrt(6)."""
    y = np.asarray(y, dtype=float)
    if len(y) < 3:
        return float("nan")
    d2 = y[2:] - 2 * y[1:-1] + y[:-2]
    return float(1.4826 * np.median(np.abs(d2 - np.median(d2))) / math.sqrt(6))


def largest_rise(y: np.ndarray) -> float:
    """The largest y[j] - y[i] with i <= j (0 for a curve that never rises)."""
    y = np.asarray(y, dtype=float)
    if len(y) == 0:
        return 0.0
    return float(np.max(y - np.minimum.accumulate(y)))


@dataclasses.dataclass
class Curve:
    steps: np.ndarray
    raw: np.ndarray
    smoothed: np.ndarray
    velocity: np.ndarray
    acceleration: np.ndarray
    candidate: np.ndarray  # bool: may hold an event
    rise: float
    noise: float
    threshold: float
    detected: bool
    reason: str

    @property
    def n_candidates(self) -> int:
        return int(self.candidate.sum())


def analyse_curve(
    steps: Sequence[float], y: Sequence[float], options: PhaseOptions, direction: int = 1, min_step: int = 0
) -> Curve:
    """Smooth, differentiate and test for a transition. ``direction`` +1: a rise (UAS, BLiMP);
    -1: a drop (loss)."""
    steps = np.asarray(steps, dtype=float)
    y = np.asarray(y, dtype=float)
    ok = np.isfinite(steps) & np.isfinite(y)
    steps, y = steps[ok], y[ok]
    order = np.argsort(steps, kind="stable")
    steps, y = steps[order], y[order]
    if len(np.unique(steps)) != len(steps):
        raise InputError("a curve has two values at the same step (duplicate rows in a table?)")
    ys = smooth(y, options.smoothing_window)
    v, a = derivatives(steps, ys, options.smoothing_window)
    candidate = steps >= min_step
    n = int(candidate.sum())
    noise = noise_sigma(y[candidate]) if n >= 3 else float("nan")
    rise = largest_rise(direction * ys[candidate])
    threshold = max(options.min_rise, options.noise_factor * noise) if math.isfinite(noise) else float("nan")
    if n < options.min_points:
        detected = False
        reason = f"too few checkpoints ({n} < min_points {options.min_points})"
    elif rise < threshold:
        detected = False
        what = "rise" if direction > 0 else "drop"
        reason = (
            f"no transition: largest {what} {rise:.4g} < threshold {threshold:.4g} "
            f"(max(min_rise {options.min_rise:g}, {options.noise_factor:g} x noise {noise:.3g}))"
        )
    else:
        detected, reason = True, ""
    return Curve(steps, y, ys, v, a, candidate, rise, noise, threshold, detected, reason)


def _event_row(curve: Curve, event: str, index: int | None, reason: str = "") -> dict:
    row = {
        "metric": EVENT_METRIC[event],
        "event": event,
        "rise": curve.rise,
        "noise": curve.noise,
        "threshold": curve.threshold,
        "n_points": int(curve.candidate.sum()),
    }
    if index is None:
        row.update(
            detected=False,
            step=np.nan,
            value=np.nan,
            smoothed_value=np.nan,
            velocity=np.nan,
            acceleration=np.nan,
            reason=reason or curve.reason,
        )
    else:
        row.update(
            detected=True,
            step=float(curve.steps[index]),
            value=float(curve.raw[index]),
            smoothed_value=float(curve.smoothed[index]),
            velocity=float(curve.velocity[index]),
            acceleration=float(curve.acceleration[index]),
            reason="",
        )
    return row


def _argbest(values: np.ndarray, mask: np.ndarray, sign: int) -> int | None:
    idx = np.flatnonzero(mask & np.isfinite(values))
    if len(idx) == 0:
        return None
    return int(idx[np.argmax(sign * values[idx])])


def _steepest(curve: Curve, sign: int, what: str, from_start: bool = False) -> tuple[int | None, str]:
    """Index of the steepest candidate with two neighbours (sign +1: rise, -1: drop), or None and
    why: at the first or last such checkpoint the curve is only a monotone trend through the
    sampled window (the change began before it, or goes on after it), not a transition in it.

    ``from_start``: when the window begins at step 0, the first candidate counts too: nothing can
    have begun before the initialisation. UAS uses it (a rise straight from the random init, as
    SAS+ makes, is acquisition); the loss does not (its first drop is unigram learning, which is
    why its window starts after warmup)."""
    # The first and last checkpoint's velocity is a one-sided extrapolation: not comparable.
    interior = curve.candidate.copy()
    interior[[0, -1]] = False
    index = _argbest(curve.velocity, interior, sign)
    if index is None:
        return None, "no candidate checkpoint with two neighbours"
    candidates = np.flatnonzero(interior)
    step = f"{curve.steps[index]:g}"
    starts_at_init = from_start and curve.candidate[0] and curve.steps[0] == 0
    if index == candidates[0] and not starts_at_init:
        return None, (
            f"steepest {what} at the first candidate checkpoint (step {step}): a trend "
            "that began before, no transition inside the sampled steps"
        )
    if index == candidates[-1]:
        return None, (
            f"steepest {what} at the last usable checkpoint (step {step}): still changing "
            "when sampling ended, no transition inside the sampled steps"
        )
    return index, ""


def uas_events(steps, uas, options: PhaseOptions) -> list[dict]:
    """Structure onset, breakthrough and capabilities onset of one UAS curve."""
    names = ("structure_onset", "breakthrough", "capabilities_onset")
    curve = analyse_curve(steps, uas, options, +1, options.min_step)
    if curve.detected and curve.steps[0] == 0:
        # Acquisition takes UAS above where the random initialisation left it; climbing back out of
        # a dip below it (what SAS- does once its heads stop avoiding the arcs) is not a transition.
        above = float(np.max(curve.smoothed[curve.candidate]) - curve.smoothed[0])
        if above < curve.threshold:
            curve.detected = False
            curve.reason = (
                f"no transition: UAS rises at most {above:.4g} above its value at step 0 "
                f"(< threshold {curve.threshold:.4g}); a recovery from a dip is not acquisition"
            )
    if not curve.detected:
        return [_event_row(curve, e, None) for e in names]
    ib, why = _steepest(curve, +1, "rise", from_start=True)
    if ib is None:
        return [_event_row(curve, e, None, why) for e in names]
    positions = np.arange(len(curve.steps))
    # The velocity at the first and last points is one-sided, and so is the acceleration at the
    # two first and two last points (a central difference of an edge velocity): not candidates.
    inner = (positions >= 2) & (positions <= len(positions) - 3)
    # The rise around the breakthrough: the contiguous checkpoints with positive velocity, plus one
    # on each side (where growth starts / stops on a coarse grid). Noise on a plateau far from
    # the transition is no candidate.
    lo = ib
    while lo > 0 and curve.velocity[lo - 1] > 0:
        lo -= 1
    hi = ib
    while hi < len(positions) - 1 and curve.velocity[hi + 1] > 0:
        hi += 1
    rising = (positions >= lo - 1) & (positions <= hi + 1)
    before = curve.candidate & inner & rising & (positions < ib)
    after = curve.candidate & inner & rising & (positions > ib)
    io = _argbest(curve.acceleration, before, +1)
    ic = _argbest(curve.acceleration, after, -1)
    return [
        _event_row(
            curve, "structure_onset", io, "breakthrough too close to the first checkpoint: the onset was not sampled"
        ),
        _event_row(curve, "breakthrough", ib),
        _event_row(
            curve,
            "capabilities_onset",
            ic,
            "breakthrough too close to the last checkpoint: UAS still rising when sampling ended",
        ),
    ]


def loss_events(steps, loss, options: PhaseOptions) -> list[dict]:
    """The loss drop of one held-out loss curve: its steepest fall after its first plateau (see
    "The loss drop" in the module docstring)."""
    curve = analyse_curve(steps, loss, options, -1, max(options.min_step, options.loss_min_step or 0))
    if curve.n_candidates < options.min_points:
        return [_event_row(curve, "loss_drop", None)]
    rate = -curve.velocity
    interior = np.flatnonzero(curve.candidate[1:-1]) + 1  # two neighbours: a two-sided velocity
    plateau = next((i for i, j in zip(interior, interior[1:]) if rate[i] <= rate[j]), None)
    if plateau is None:
        curve.rise, curve.detected = 0.0, False
        curve.reason = (
            "no loss drop: the held-out loss only slows down over the candidate "
            "checkpoints (a decelerating trend, no plateau followed by a faster fall)"
        )
        return [_event_row(curve, "loss_drop", None)]
    after = interior[interior > plateau]
    tangent = curve.smoothed[plateau] + curve.velocity[plateau] * (curve.steps - curve.steps[plateau])
    curve.rise = float(np.max(tangent[after] - curve.smoothed[after]))
    if not curve.rise >= curve.threshold:
        curve.detected = False
        curve.reason = (
            f"no loss drop: after its plateau at step {curve.steps[plateau]:g} the loss falls at "
            f"most {curve.rise:.4g} below the plateau's trend (< threshold {curve.threshold:.4g})"
        )
        return [_event_row(curve, "loss_drop", None)]
    index = int(after[np.argmax(rate[after])])
    if index == interior[-1]:
        return [
            _event_row(
                curve,
                "loss_drop",
                None,
                f"steepest drop at the last usable checkpoint (step {curve.steps[index]:g}): still "
                "falling faster when sampling ended, no transition inside the sampled steps",
            )
        ]
    curve.detected = True
    return [_event_row(curve, "loss_drop", index)]


def jump_events(event: str, steps, score, options: PhaseOptions, interval_width=None) -> list[dict]:
    """The jump (maximal velocity) of one score curve: the BLiMP jump of overall BLiMP accuracy,
    the GLUE jump of the GLUE score. A rise no larger than the score's own 95% interval (its median
    width over the checkpoints) is noise, not a jump."""
    curve = analyse_curve(steps, score, options, +1, options.min_step)
    width = (
        float(np.nanmedian(interval_width)) if interval_width is not None and np.isfinite(interval_width).any() else 0.0
    )
    if curve.detected and curve.rise <= width:
        curve.detected = False
        curve.reason = f"no transition: largest rise {curve.rise:.4g} is within the 95% interval (width {width:.4g})"
    if not curve.detected:
        return [_event_row(curve, event, None)]
    index, why = _steepest(curve, +1, "rise")
    return [_event_row(curve, event, index, why)]


def blimp_events(steps, accuracy, options: PhaseOptions, interval_width=None) -> list[dict]:
    """The BLiMP jump of one overall BLiMP accuracy curve (``jump_events``)."""
    return jump_events("blimp_jump", steps, accuracy, options, interval_width)


def glue_score(glue: pd.DataFrame) -> pd.DataFrame:
    """``run, seed, step, score, ci_low, ci_high`` of the GLUE score each run x seed's GLUE jump is
    found on: BERT's GLUE average (``glue`` rows, metric ``average``) where the run has all its
    tasks, else the mean of the tasks it has (``partial_average``), each the mean over the
    fine-tuning seeds (its interval too)."""
    columns = ["run", "seed", "step", "score", "ci_low", "ci_high"]
    rows = glue[(glue["task"] == "glue") & glue["metric"].isin(["average", "partial_average"])]
    if rows.empty:
        return pd.DataFrame({c: pd.Series(dtype="float64") for c in columns})
    full = rows.groupby(["run", "seed"])["metric"].transform(lambda m: (m == "average").any())
    rows = rows[(rows["metric"] == "average") == full]
    out = rows.groupby(["run", "seed", "step"], as_index=False)[["value", "ci_low", "ci_high"]].mean()
    return out.rename(columns={"value": "score"})[columns]


def _no_data(event: str, what: str) -> dict:
    return {
        "metric": EVENT_METRIC[event],
        "event": event,
        "detected": False,
        "step": np.nan,
        "value": np.nan,
        "smoothed_value": np.nan,
        "velocity": np.nan,
        "acceleration": np.nan,
        "rise": np.nan,
        "noise": np.nan,
        "threshold": np.nan,
        "n_points": 0,
        "reason": f"no {what} rows for this run and seed",
    }


def select_treebank(uas: pd.DataFrame, treebank: str | None = None) -> pd.DataFrame:
    """The rows of one treebank (``treebank`` or, by default, the first in sorted order)."""
    if uas.empty:
        return uas
    names = sorted(uas["treebank"].dropna().unique())
    if treebank is None:
        if len(names) > 1:
            log.warning("UAS of several treebanks (%s): using %s", ", ".join(names), names[0])
        treebank = names[0] if names else None
    elif treebank not in names:
        raise InputError(f"treebank {treebank!r} not in the UAS table (has: {', '.join(names)})")
    return uas[uas["treebank"] == treebank] if treebank is not None else uas


def blimp_overall(blimp: pd.DataFrame, variant: str | None = None) -> pd.DataFrame:
    """``run, seed, step, accuracy, ci_low, ci_high`` of the overall BLiMP rows of one variant
    (default: the first)."""
    rows = blimp[blimp["level"] == "overall"]
    if "ci_low" not in rows.columns:  # tables written before intervals were added
        rows = rows.assign(ci_low=np.nan, ci_high=np.nan)
    columns = ["run", "seed", "step", "accuracy", "ci_low", "ci_high"]
    if rows.empty:
        return rows[columns]
    variants = sorted(rows["variant"].dropna().unique())
    if variant is None:
        # each run x seed's first variant: a causal series (causal_logprob) beside masked runs
        # (original) keeps its curve
        first = rows.groupby(["run", "seed"])["variant"].transform("min")
        if rows.groupby(["run", "seed"])["variant"].nunique().max() > 1:
            log.warning("BLiMP variants %s: using each run's first", ", ".join(variants))
        return rows[rows["variant"] == first][columns]
    if variant not in variants:
        raise InputError(f"BLiMP variant {variant!r} not in the table (has: {', '.join(variants)})")
    return rows[rows["variant"] == variant][columns]


def detect(
    runs: pd.DataFrame,
    loss: pd.DataFrame,
    uas: pd.DataFrame,
    blimp: pd.DataFrame,
    options: PhaseOptions = PhaseOptions(),
    treebank: str | None = None,
    blimp_variant: str | None = None,
    glue: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """The phases table over every run x seed present in any of the tables (release runs are
    analysed on their stitched curves); with a GLUE table, each run x seed's GLUE jump too."""
    options.check()
    uas = select_treebank(uas, treebank)
    overall = blimp_overall(blimp, blimp_variant)
    curves = {
        "loss": stitch(loss[["run", "seed", "step", "val_mlm_loss"]], runs),
        "uas": stitch(uas[["run", "seed", "step", "uas"]], runs),
        "blimp": stitch(overall, runs),
    }
    if glue is not None:
        curves["glue"] = stitch(glue_score(glue), runs)
    kind = dict(zip(runs["run"], runs["kind"]))
    order = dict(zip(runs["run"], runs["order"]))
    pairs = set()
    for df in curves.values():
        pairs |= set(zip(df["run"], df["seed"].astype(int)))
    unknown = sorted({r for r, _ in pairs if r not in kind})
    if unknown:
        raise InputError(f"run(s) {', '.join(unknown)} in the tables but not in the runs table")
    rows = []
    for run, seed in sorted(pairs, key=lambda p: (order[p[0]], p[1])):

        def curve(name, column, run=run, seed=seed):
            df = curves[name]
            return df[(df["run"] == run) & (df["seed"] == seed)].sort_values("step")[["step", column]]

        u = curve("uas", "uas")
        events = (
            uas_events(u["step"], u["uas"], options)
            if len(u)
            else [_no_data(e, "UAS") for e in ("structure_onset", "breakthrough", "capabilities_onset")]
        )
        lo = curve("loss", "val_mlm_loss")
        events += loss_events(lo["step"], lo["val_mlm_loss"], options) if len(lo) else [_no_data("loss_drop", "loss")]
        b = curves["blimp"]
        b = b[(b["run"] == run) & (b["seed"] == seed)].sort_values("step")
        events += (
            blimp_events(b["step"], b["accuracy"], options, (b["ci_high"] - b["ci_low"]).to_numpy(float))
            if len(b)
            else [_no_data("blimp_jump", "BLiMP")]
        )
        if glue is not None:
            g = curves["glue"]
            g = g[(g["run"] == run) & (g["seed"] == seed)].sort_values("step")
            events += (
                jump_events("glue_jump", g["step"], g["score"], options, (g["ci_high"] - g["ci_low"]).to_numpy(float))
                if len(g)
                else [_no_data("glue_jump", "GLUE")]
            )
        for ev in events:
            rows.append({"run": run, "seed": int(seed), "kind": kind[run], **ev})
    out = pd.DataFrame(rows, columns=PHASE_COLUMNS)
    out["detected"] = out["detected"].astype(bool)
    out["n_points"] = out["n_points"].astype("int64")
    return out


# ----------------------------------------------------------------------------------------------
# CLI


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="phases_command", required=True, metavar="COMMAND")
    ga = sub.add_parser(
        "gather",
        help="stack every run x seed's tables into all-runs tables (results/tables/)",
        description="Stack the pretrain, probe and BLiMP tables of every run x seed under a results "
        "folder into tidy all-runs tables with run and seed columns.",
    )
    for key, (_, _, what) in SOURCES.items():
        ga.add_argument(
            f"--{key.replace('_', '-')}",
            nargs="*",
            default=[],
            metavar="PARQUET",
            help=f"the {what} table of each run x seed (runs in config order, seeds within each run"
            + (")" if key in TRAINED_ONLY else ", then each series)"),
        )
    src = ga.add_mutually_exclusive_group(required=True)
    src.add_argument("--runs", help="the config's runs list as JSON")
    src.add_argument("--config", help="a workflow config YAML (its runs and seeds)")
    ga.add_argument("--seeds", type=int, nargs="+", help="seeds (required with --runs)")
    ga.add_argument("--series", help="with --runs: the config's series list as JSON (external checkpoint series)")
    ga.add_argument(
        "--fetched", nargs="*", default=[], metavar="JSON", help="the series-fetch manifest of each hub series"
    )
    ga.add_argument(
        "--out",
        nargs="+",
        required=True,
        metavar="PARQUET",
        help=f"the gathered tables, one file named <table>.parquet for each of {', '.join(TABLES)}",
    )
    ga.add_argument(
        "--allow-missing",
        action="store_true",
        help="skip run x seed tables that do not exist (warn) instead of failing",
    )
    ga.add_argument(
        "--max-train-rows",
        type=int,
        default=MAX_TRAIN_ROWS,
        help="longer per-step training tables are averaged over blocks of steps",
    )

    de = sub.add_parser(
        "detect",
        help="structure/capabilities onsets, breakthrough, loss drop, BLiMP jump",
        description="Find the phase-transition events of every run x seed in gathered tables.",
    )
    de.add_argument("--runs", required=True, help="runs.parquet (from gather)")
    de.add_argument("--loss", required=True, help="loss.parquet")
    de.add_argument("--uas", required=True, help="uas.parquet")
    de.add_argument("--blimp", required=True, help="blimp.parquet")
    de.add_argument("--glue", help="glue.parquet (sasbert glue gather): adds each run's GLUE jump")
    de.add_argument("--out", required=True, help="phases parquet")
    de.add_argument("--csv", help="also write the table as CSV (for the report)")
    add_option_flags(
        de,
        "phases",
        [
            ("--smoothing-window", {"type": int}, "centred moving average over this many checkpoints (odd; 1 = none)"),
            ("--min-rise", {"type": float}, "smallest rise (drop for the loss) that counts as a transition"),
            ("--noise-factor", {"type": float}, "a transition must also rise by this many noise sigmas"),
            ("--min-points", {"type": int}, "curves with fewer checkpoints report no transition"),
            ("--min-step", {"type": int}, "ignore earlier checkpoints"),
            ("--loss-min-step", {"type": int}, "ignore earlier checkpoints for the loss drop (e.g. the LR warmup)"),
        ],
    )
    de.add_argument("--treebank", help="UAS treebank (default: the only/first one)")
    de.add_argument("--blimp-variant", help="BLiMP variant (default: the only/first one)")


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
    if args.phases_command == "gather":
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
        outputs = {Path(path).name.removesuffix(".parquet"): Path(path) for path in args.out}
        if sorted(outputs) != sorted(TABLES) or len(outputs) != len(args.out):
            raise InputError(f"--out: give one file named <table>.parquet for each of {', '.join(TABLES)}")
        files = {key: getattr(args, key) for key in SOURCES}
        tables = gather_tables(files, runs, seeds, args.allow_missing, args.max_train_rows, series, args.fetched)
        for name, df in tables.items():
            write_parquet(df, outputs[name])
            log.info("%s: %d rows", name, len(df))
        return
    detection = PhaseOptions(**resolve_options(args, "phases"))
    table = detect(
        read_table(args.runs),
        read_table(args.loss),
        read_table(args.uas),
        read_table(args.blimp),
        detection,
        args.treebank,
        args.blimp_variant,
        read_table(args.glue, ["run", "seed", "step", "task", "metric", "value", "ci_low", "ci_high"], "GLUE")
        if args.glue
        else None,
    )
    write_parquet(table, args.out)
    if args.csv:
        with atomic_path(args.csv) as tmp:
            table.to_csv(tmp, index=False)
    for row in table.itertuples():
        if row.detected:
            log.info(
                "%s seed %d: %s at step %g (%s %.4g)", row.run, row.seed, row.event, row.step, row.metric, row.value
            )
        else:
            log.info("%s seed %d: %s not found: %s", row.run, row.seed, row.event, row.reason)
