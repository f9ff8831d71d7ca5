"""Across seeds: do UAS, the held-out loss and BLiMP go together over seed replicates
(``sasbert phases seeds``)? The paper's MultiBERTs analysis: at the end of training, UAS across
seeds predicts neither the loss nor BLiMP. From the gathered tables alone (no torch).

**Groups.** A group is a set of seed replicates of one model: the seeds of one trained run, or the
series a config marks as replicates of one another (``series[].group``; ``runs.parquet``'s
``group`` column). Different runs (baseline, SAS+, SAS-, a release) are interventions and are
never pooled: a group holding more than one trained run is refused.

**Where.** At each member's final checkpoint (its last step in any table), and at each step of
``seed_stats.steps`` (members with a checkpoint there). Per group x checkpoint x pair of metrics
(UAS with the loss, UAS with BLiMP, the loss with BLiMP), over the n members that have both
values:

* Spearman's rho and Pearson's r, with their two-sided p-values, as ``scipy.stats.spearmanr`` and
  ``scipy.stats.pearsonr`` compute them;
* a percentile bootstrap interval of each (``confidence``, default 95%): ``bootstrap_samples``
  resamples of the n members with replacement (the same draws for both coefficients and every
  pair; ``numpy.random.default_rng(bootstrap_seed)``). A resample in which either metric is
  constant (a few members drawn over and over; likely with 3-5 seeds) has no correlation and is
  left out; ``resamples`` says how many were used.

A pair with fewer than 3 members reports status ``too few seeds`` (and one whose values do not vary
across the seeds ``constant``) with null numbers and a reason, never a number.

Seeds table: ``group, kind, runs, checkpoint, step, x, y, n, n_members, members, spearman,
spearman_p, spearman_low, spearman_high, pearson, pearson_p, pearson_low, pearson_high, resamples,
status, reason`` -- ``checkpoint`` "final" or "step"; ``step`` the step (for "final": the members'
common final step, null when they end at different steps); ``x``/``y`` the metrics
(``uas``, ``val_mlm_loss``, ``blimp``); ``members`` the run/seed pairs used.

CLI::

    sasbert phases seeds --runs runs.parquet --loss loss.parquet --uas uas.parquet
        --blimp blimp.parquet --out seeds.parquet [--csv seeds.csv] [--steps 1000 2000]
        [--bootstrap-samples 2000] [--bootstrap-seed 0] [--confidence 0.95]
        [--treebank NAME] [--blimp-variant NAME]
"""

from __future__ import annotations

import argparse
import dataclasses
import logging

import numpy as np
import pandas as pd

from sasbert.analysis.curves import blimp_overall, select_treebank
from sasbert.atomic import atomic_path, write_parquet
from sasbert.errors import InputError
from sasbert.options import add_option_flags
from sasbert.options import defaults as schema_defaults
from sasbert.options import resolve as resolve_options
from sasbert.tables import read_table

log = logging.getLogger(__name__)

DEFAULTS = schema_defaults("seed_stats")  # the config schema's: defaults live there only

PAIRS = (("uas", "val_mlm_loss"), ("uas", "blimp"), ("val_mlm_loss", "blimp"))
METRIC_NAMES = {"uas": "UAS", "val_mlm_loss": "held-out loss", "blimp": "BLiMP"}
MIN_SEEDS = 3
EXACT_BELOW = 9  # Spearman's p-value by exact permutation below this many seeds
TOO_FEW = "too few seeds"

SEED_COLUMNS = [
    "group",
    "kind",
    "runs",
    "checkpoint",
    "step",
    "x",
    "y",
    "n",
    "n_members",
    "members",
    "spearman",
    "spearman_p",
    "spearman_low",
    "spearman_high",
    "pearson",
    "pearson_p",
    "pearson_low",
    "pearson_high",
    "resamples",
    "status",
    "reason",
]
STATISTICS = [f"{method}{part}" for method in ("spearman", "pearson") for part in ("", "_p", "_low", "_high")]


@dataclasses.dataclass(frozen=True)
class SeedOptions:
    """The config's ``seed_stats`` section."""

    steps: tuple[int, ...] = tuple(DEFAULTS["steps"])
    bootstrap_samples: int = DEFAULTS["bootstrap_samples"]
    bootstrap_seed: int = DEFAULTS["bootstrap_seed"]
    confidence: float = DEFAULTS["confidence"]

    def check(self) -> None:
        if self.bootstrap_samples < 1:
            raise InputError(f"bootstrap_samples must be >= 1 (got {self.bootstrap_samples})")
        if not 0 < self.confidence < 1:
            raise InputError(f"confidence must be in (0, 1) (got {self.confidence})")
        if any(step < 0 for step in self.steps):
            raise InputError("steps must be >= 0")


def _pearson_rows(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Pearson's r of each row of x with the same row of y (nan where either row is constant)."""
    xc = x - x.mean(axis=-1, keepdims=True)
    yc = y - y.mean(axis=-1, keepdims=True)
    sxx, syy = (xc * xc).sum(axis=-1), (yc * yc).sum(axis=-1)
    # a resample of identical values can leave rounding noise: constant means within 1e-12 relative
    flat = (np.ptp(x, axis=-1) <= 1e-12 * np.abs(x).max(axis=-1)) | (
        np.ptp(y, axis=-1) <= 1e-12 * np.abs(y).max(axis=-1)
    )
    with np.errstate(invalid="ignore", divide="ignore"):
        r = (xc * yc).sum(axis=-1) / np.sqrt(sxx * syy)
    return np.clip(np.where(flat, np.nan, r), -1.0, 1.0)


def _ranks(x: np.ndarray) -> np.ndarray:
    from scipy.stats import rankdata

    return rankdata(x, axis=-1)


def bootstrap_intervals(x, y, samples: int, seed: int, confidence: float) -> tuple[tuple, tuple, int]:
    """Percentile bootstrap intervals ((spearman low, high), (pearson low, high), resamples used)
    of the members (x[i], y[i]): resampled with replacement, resamples where x or y is constant
    left out (no correlation)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    rng = np.random.default_rng(seed)
    index = rng.integers(0, len(x), size=(samples, len(x)))
    xb, yb = x[index], y[index]
    pearson = _pearson_rows(xb, yb)
    spearman = _pearson_rows(_ranks(xb), _ranks(yb))
    ok = np.isfinite(pearson) & np.isfinite(spearman)
    if not ok.any():
        nan = (float("nan"), float("nan"))
        return nan, nan, 0
    tail = (1 - confidence) / 2
    q = [tail, 1 - tail]
    s_lo, s_hi = np.quantile(spearman[ok], q)
    p_lo, p_hi = np.quantile(pearson[ok], q)
    return (float(s_lo), float(s_hi)), (float(p_lo), float(p_hi)), int(ok.sum())


def correlate(x, y, options: SeedOptions = SeedOptions()) -> dict:
    """The statistics of one pair over the members (status ok, too few seeds or constant)."""
    from scipy import stats

    x, y = np.asarray(x, float), np.asarray(y, float)
    n = len(x)
    row = {c: np.nan for c in STATISTICS} | {"n": n, "resamples": 0, "status": "ok", "reason": ""}
    if n < MIN_SEEDS:
        return row | {"status": TOO_FEW, "reason": f"{n} seed(s) with both values (< {MIN_SEEDS})"}
    flat = [name for name, v in (("x", x), ("y", y)) if np.ptp(v) == 0]
    if flat:
        return row | {"status": "constant", "reason": f"the same {' and '.join(flat)} value at every seed"}
    spearman = stats.spearmanr(x, y)
    spearman_p = float(spearman.pvalue)
    if n < EXACT_BELOW:
        # scipy's t approximation is poor for a few seeds (p = 0 for 3 seeds in perfect rank order):
        # the exact permutation distribution over all n! pairings instead
        spearman_p = float(
            stats.permutation_test(
                (x,),
                lambda xs, axis=-1: _pearson_rows(_ranks(xs), np.broadcast_to(_ranks(y), xs.shape)),
                permutation_type="pairings",
                vectorized=True,
                n_resamples=np.inf,
            ).pvalue
        )
    pearson = stats.pearsonr(x, y)
    (s_lo, s_hi), (p_lo, p_hi), used = bootstrap_intervals(
        x, y, options.bootstrap_samples, options.bootstrap_seed, options.confidence
    )
    return row | {
        "spearman": float(spearman.statistic),
        "spearman_p": spearman_p,
        "spearman_low": s_lo,
        "spearman_high": s_hi,
        "pearson": float(pearson.statistic),
        "pearson_p": float(pearson.pvalue),
        "pearson_low": p_lo,
        "pearson_high": p_hi,
        "resamples": used,
    }


def member_values(
    runs: pd.DataFrame,
    loss: pd.DataFrame,
    uas: pd.DataFrame,
    blimp: pd.DataFrame,
    treebank: str | None = None,
    blimp_variant: str | None = None,
) -> pd.DataFrame:
    """``group, run, seed, step, val_mlm_loss, uas, blimp``: every run x seed's checkpoints, with
    the run's group (its own name where the runs table has no ``group`` column)."""
    keys = ["run", "seed", "step"]
    u = select_treebank(uas, treebank)[[*keys, "uas"]]
    b = blimp_overall(blimp, blimp_variant)[keys + ["accuracy"]].rename(columns={"accuracy": "blimp"})
    merged = loss[[*keys, "val_mlm_loss"]].merge(u, on=keys, how="outer").merge(b, on=keys, how="outer")
    group = pd.Series((runs["group"] if "group" in runs.columns else runs["run"]).to_numpy(), index=runs["run"])
    unknown = sorted(set(merged["run"]) - set(group.index))
    if unknown:
        raise InputError(f"run(s) {', '.join(unknown)} in the tables but not in the runs table")
    merged["group"] = merged["run"].map(group)
    merged["seed"] = merged["seed"].astype(int)
    return merged[["group", *keys, "val_mlm_loss", "uas", "blimp"]].sort_values(["group", *keys])


def _check_groups(runs: pd.DataFrame) -> None:
    """A group holds one trained run's seeds, or external series: interventions are never pooled."""
    if "group" not in runs.columns:
        return
    for group, df in runs.groupby("group", sort=False):
        trained = df[df["kind"] != "external"]
        if len(df) > 1 and len(trained):
            raise InputError(
                f"runs table: group {group!r} holds {', '.join(df['run'])}; a trained run's seeds are a "
                "group of their own (interventions are never pooled)"
            )


def _at(values: pd.DataFrame, checkpoint: str, step: int | None) -> tuple[pd.DataFrame, float]:
    """Each member's row at the checkpoint (its final one, or ``step``), and the step (for final:
    the members' common final step, nan when they differ)."""
    if checkpoint == "final":
        rows = values.loc[values.groupby(["run", "seed"])["step"].idxmax()]
        ends = rows["step"].unique()
        return rows, float(ends[0]) if len(ends) == 1 else float("nan")
    return values[values["step"] == step], float(step)


def seed_table(
    runs: pd.DataFrame,
    loss: pd.DataFrame,
    uas: pd.DataFrame,
    blimp: pd.DataFrame,
    options: SeedOptions = SeedOptions(),
    treebank: str | None = None,
    blimp_variant: str | None = None,
) -> pd.DataFrame:
    """The seeds table (module docstring): one row per group x checkpoint x pair."""
    options.check()
    _check_groups(runs)
    values = member_values(runs, loss, uas, blimp, treebank, blimp_variant)
    info = runs.set_index("run")
    order = dict(zip(runs["run"], runs["order"]))
    groups = sorted(values["group"].unique(), key=lambda g: min(order[r] for r in values[values["group"] == g]["run"]))
    rows = []
    for group in groups:
        members = values[values["group"] == group]
        names = sorted(members["run"].unique(), key=order.get)
        kinds = sorted({info.at[r, "kind"] for r in names})
        n_members = len(members[["run", "seed"]].drop_duplicates())
        checkpoints = [("final", None)] + [("step", int(s)) for s in sorted(options.steps)]
        for checkpoint, step in checkpoints:
            at, at_step = _at(members, checkpoint, step)
            for x, y in PAIRS:
                both = at.dropna(subset=[x, y])
                stats_row = correlate(both[x], both[y], options)
                if stats_row["status"] == TOO_FEW:
                    missing = [METRIC_NAMES[m] for m in (x, y) if at[m].isna().all()]
                    where = "at their final checkpoint" if checkpoint == "final" else f"at step {step}"
                    if at.empty:
                        stats_row["reason"] += f"; no member has a checkpoint at step {step}"
                    elif missing:
                        stats_row["reason"] += f"; no {' or '.join(missing)} values {where}"
                rows.append(
                    {
                        "group": group,
                        "kind": kinds[0] if len(kinds) == 1 else "/".join(kinds),
                        "runs": ", ".join(names),
                        "checkpoint": checkpoint,
                        "step": at_step,
                        "x": x,
                        "y": y,
                        "n_members": n_members,
                        "members": ", ".join(f"{r}/{s}" for r, s in zip(both["run"], both["seed"])),
                        **stats_row,
                    }
                )
    out = pd.DataFrame(rows, columns=SEED_COLUMNS)
    for column in ("n", "n_members", "resamples"):
        out[column] = out[column].astype("int64")
    for column in ("step", *STATISTICS):
        out[column] = out[column].astype(float)
    return out


# CLI


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--runs", required=True, help="runs.parquet (from gather)")
    parser.add_argument("--loss", required=True, help="loss.parquet")
    parser.add_argument("--uas", required=True, help="uas.parquet")
    parser.add_argument("--blimp", required=True, help="blimp.parquet")
    parser.add_argument("--out", required=True, help="seeds parquet")
    parser.add_argument("--csv", help="also write the table as CSV (for the report)")
    add_option_flags(
        parser,
        "seed_stats",
        [
            ("--steps", {"type": int, "nargs": "*"}, "checkpoint steps besides the final one"),
            ("--bootstrap-samples", {"type": int}, "resamples of the seeds for each interval"),
            ("--bootstrap-seed", {"type": int}, "seed of the resampling"),
            ("--confidence", {"type": float}, "the intervals' coverage"),
        ],
    )
    parser.add_argument("--treebank", help="UAS treebank (default: the only/first one)")
    parser.add_argument("--blimp-variant", help="BLiMP variant (default: the only/first one)")


def run(args: argparse.Namespace) -> None:
    given = resolve_options(args, "seed_stats")
    options = SeedOptions(**{**given, "steps": tuple(given["steps"])})
    table = seed_table(
        read_table(args.runs, ["run", "order", "kind"], "runs"),
        read_table(args.loss, ["run", "seed", "step", "val_mlm_loss"], "loss"),
        read_table(args.uas, ["run", "seed", "step", "treebank", "uas"], "UAS"),
        read_table(args.blimp, ["run", "seed", "step", "variant", "level", "accuracy"], "BLiMP"),
        options,
        args.treebank,
        args.blimp_variant,
    )
    write_parquet(table, args.out)
    if args.csv:
        with atomic_path(args.csv) as tmp:
            table.to_csv(tmp, index=False)
    for row in table[table["checkpoint"] == "final"].itertuples():
        if row.status == "ok":
            log.info(
                "%s (n = %d): %s vs %s Spearman %.3f (p %.3g), Pearson %.3f (p %.3g)",
                row.group,
                row.n,
                row.x,
                row.y,
                row.spearman,
                row.spearman_p,
                row.pearson,
                row.pearson_p,
            )
        else:
            log.info("%s: %s vs %s: %s (%s)", row.group, row.x, row.y, row.status, row.reason)
