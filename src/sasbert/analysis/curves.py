"""A metric's curve over checkpoints: the smoothing, derivatives, noise and rise that phases' rules
read (docs/method.md, "Phases"), and the selections of the gathered tables that make a curve
(one treebank's UAS, overall BLiMP, the GLUE score, the complexity; a release run's curve stitched onto its
parent's), which the figures read too.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from sasbert.errors import InputError
from sasbert.options import defaults as schema_defaults

log = logging.getLogger(__name__)


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


def peak_and_fall(curve: Curve, interval_width=None) -> tuple[tuple, tuple]:
    """((peak index, why not, rise), (fall index, why not, fall)) of a curve that rises to a maximum
    and falls after it (the complexity peak: docs/method.md, "Phases"). The peak is the candidate of
    maximal smoothed value; the rise to it (from the lowest candidate before) and the fall after it
    (to the lowest after) must each reach the threshold, raised to the value's median 95% interval
    width (``interval_width``). A curve highest at its first or last candidate only falls or only
    rises: no peak. The fall is the candidate with two neighbours of steepest descent after the
    peak; at the last of them the curve is still falling faster when sampling ends: undetected."""
    width = np.asarray(interval_width if interval_width is not None else [], dtype=float)
    curve.threshold = max(curve.threshold, float(np.nanmedian(width)) if np.isfinite(width).any() else 0.0)
    idx = np.flatnonzero(curve.candidate)
    ip = int(idx[np.argmax(curve.smoothed[idx])])
    top, at = curve.smoothed[ip], f"step {curve.steps[ip]:g}"
    rise, fall = float(top - curve.smoothed[idx[idx <= ip]].min()), float(top - curve.smoothed[idx[idx >= ip]].min())
    why = ""
    if ip in (idx[0], idx[-1]):
        trend = "falls" if ip == idx[0] else "rises"
        why = f"highest at the {'first' if ip == idx[0] else 'last'} candidate checkpoint ({at}): it only {trend}"
    elif min(rise, fall) < curve.threshold:
        what = f"rises {rise:.4g} to" if rise < curve.threshold else f"falls {fall:.4g} after"
        why = f"it {what} its maximum ({at}), < threshold {curve.threshold:.4g}"
    if why:
        why = f"no peak: {why}"
        return (None, why, rise), (None, why, fall)
    interior = curve.candidate.copy()
    interior[[0, -1]] = False
    after = np.flatnonzero(interior & (np.arange(len(curve.steps)) > ip))
    if len(after) == 0:
        return (ip, "", rise), (None, "peak at the last usable checkpoint: the fall was not sampled", fall)
    i_fall = int(after[np.argmin(curve.velocity[after])])
    if i_fall == np.flatnonzero(interior)[-1]:
        why = f"steepest fall at the last usable checkpoint (step {curve.steps[i_fall]:g}): still falling faster"
        return (ip, "", rise), (None, f"{why} when sampling ended", fall)
    return (ip, "", rise), (i_fall, "", fall)


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


COMPLEXITY_LAYER = "mean"  # sasbert.measure.complexity.CURVE_LAYER: the rows phases and figures read


def complexity_curve(complexity: pd.DataFrame) -> pd.DataFrame:
    """``run, seed, step, complexity, complexity_low, complexity_high``: the intrinsic dimension of
    the complexity table's ``mean`` rows (the mean over the layers) and its 95% interval."""
    columns = {"intrinsic_dim": "complexity", "id_low": "complexity_low", "id_high": "complexity_high"}
    rows = complexity[complexity["layer"].astype(str) == COMPLEXITY_LAYER].rename(columns=columns)
    return rows[["run", "seed", "step", *columns.values()]]


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
