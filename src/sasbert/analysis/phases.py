"""Stage 7, onsets found on the per-checkpoint curves (``sasbert phases detect``).

docs/method.md, "Phases", made operational, from the gathered tables alone (no torch). How a curve
is smoothed, differentiated and tested for a transition is ``sasbert.analysis.curves``; the events
read off it are here. (Over 500 lines because of this docstring: the events' operational rules
stay beside the code that applies them; the code itself is about 460 lines.)

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
   * ``complexity_peak`` and ``complexity_fall`` (``complexity``, with a complexity table): the
     step of maximal smoothed intrinsic dimension and the steepest drop after it
     (``complexity_events``);
   * ``glue_jump`` (``glue``, only where GLUE was run): the step of maximal velocity of the GLUE
     score (``glue_score``: BERT's GLUE average, or the mean of the tasks run), found exactly as
     the BLiMP jump (``jump_events``: the same no-transition rule and 95% interval test).
   * ``alternative_strategy_onset`` (``val_mlm_loss``, SAS- runs only, kind ``sas_minus``): the
     run's own loss drop, by the same rule as every run's (its row is the ``loss_drop`` row renamed,
     detected or not): the paper's SAS- model learns another strategy, and its loss drop is when.
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
5. **The rise of a UAS transition** (``transition_rise``): the *climb* is the stretch of
   checkpoints with positive velocity around the breakthrough candidate, plus one on each side;
   its *floor* the lowest smoothed UAS of the climb up to the breakthrough (the level before the
   onset), its *top* the highest from the breakthrough on. The rise counts from
   base = max(floor, smoothed UAS at step 0) (the step-0 term where the curve has step 0: the
   level where the run started): rise = top - base, and the transition needs rise >= threshold
   too. A climb back out of a dip below the initial value (SAS-: 0.090 at step 0, 0.019 at 100,
   back near 0.09 by 300) is recovery, not acquisition, and reports no transition. The UAS events'
   ``rise`` is this rise (the curve's largest rise where it fails point 4 first).

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
acceleration, rise, noise, threshold, n_points, reason, step_low, step_high, detected_share`` -- one
row per run x seed x event (five events, six with a GLUE table, one
more for a SAS- run, two with a complexity table), ``value`` the raw curve value at
``step``, ``velocity``/``acceleration`` the smoothed curve's derivatives there (per step, per
step^2). ``step_low, step_high``: a detected UAS onset's 95% interval, and ``detected_share`` the
share of the probe's paired bootstrap resamples in which it is detected
(``sasbert.analysis.onset_intervals``; null for the other events and without ``--uas-bootstrap``).

CLI::

    sasbert phases detect --runs runs.parquet --loss loss.parquet --uas uas.parquet
        --blimp blimp.parquet [--uas-bootstrap uas_bootstrap.parquet] --out phases.parquet [--csv phases.csv]
        [--smoothing-window 3] [--min-rise 0.02] [--noise-factor 5] [--min-points 5]
        [--min-step 0] [--loss-min-step 0] [--treebank NAME] [--blimp-variant NAME]
"""

from __future__ import annotations

import argparse
import logging

import numpy as np
import pandas as pd

from sasbert.analysis.curves import (
    Curve,
    PhaseOptions,
    analyse_curve,
    blimp_overall,
    complexity_curve,
    glue_score,
    peak_and_fall,
    select_treebank,
    stitch,
)
from sasbert.analysis.onset_intervals import INTERVAL_COLUMNS, onset_intervals
from sasbert.atomic import atomic_path, write_parquet
from sasbert.errors import InputError
from sasbert.options import add_option_flags
from sasbert.options import resolve as resolve_options
from sasbert.tables import read_table

log = logging.getLogger(__name__)


EVENTS = ("structure_onset", "breakthrough", "capabilities_onset", "loss_drop", "blimp_jump")


EVENT_METRIC = {
    "structure_onset": "uas",
    "breakthrough": "uas",
    "capabilities_onset": "uas",
    "loss_drop": "val_mlm_loss",
    "blimp_jump": "blimp",
    "glue_jump": "glue",  # only where GLUE was run (detect's glue table)
    "complexity_peak": "complexity",  # with detect's complexity table
    "complexity_fall": "complexity",
    "alternative_strategy_onset": "val_mlm_loss",  # SAS- runs only: their loss drop
}


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
    *INTERVAL_COLUMNS,
]


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


def transition_rise(curve: Curve, index: int, stretch: np.ndarray) -> tuple[float, float, float, float | None]:
    """(rise, base, floor, start) of the UAS transition at ``index`` (its breakthrough candidate):
    ``floor`` is the lowest smoothed UAS of the rising ``stretch`` up to ``index`` (the level before
    the climb), ``start`` the value at step 0 (None when the curve does not begin there), ``base``
    = max(floor, start), and the rise the highest smoothed UAS of the stretch from ``index`` on
    minus ``base``: a climb out of a dip below where the run started counts only above that."""
    positions = np.arange(len(curve.steps))
    window = curve.candidate & stretch
    floor = float(np.min(curve.smoothed[window & (positions <= index)]))
    top = float(np.max(curve.smoothed[window & (positions >= index)]))
    start = float(curve.smoothed[0]) if curve.steps[0] == 0 else None
    base = floor if start is None else max(floor, start)
    return top - base, base, floor, start


def uas_events(steps, uas, options: PhaseOptions) -> list[dict]:
    """Structure onset, breakthrough and capabilities onset of one UAS curve."""
    names = ("structure_onset", "breakthrough", "capabilities_onset")
    curve = analyse_curve(steps, uas, options, +1, options.min_step)
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
    # Acquisition takes UAS above where the run started and above where the climb began: the
    # transition's rise is measured from max(step-0 value, level before the climb), so climbing
    # back out of a dip below the initial value (what SAS- does once its heads stop avoiding the
    # arcs) is no transition, however deep the dip.
    curve.rise, base, floor, start = transition_rise(curve, ib, rising)
    if not curve.rise >= curve.threshold:
        step = f"{curve.steps[ib]:g}"
        if start is not None and start >= floor:
            where = f"above its value at step 0 ({start:.4g}; {floor:.4g} before the climb)"
        else:
            where = f"above its level before the climb ({floor:.4g})"
        curve.detected = False
        curve.reason = (
            f"no transition: the steepest climb (step {step}) takes UAS {curve.rise:.4g} {where} "
            f"(< threshold {curve.threshold:.4g}); a recovery from a dip is not acquisition"
        )
        return [_event_row(curve, e, None) for e in names]
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


def complexity_events(steps, dim, options: PhaseOptions, interval_width=None) -> list[dict]:
    """The complexity peak and fall of one ID curve (``curves.peak_and_fall``)."""
    curve = analyse_curve(steps, dim, options, +1, options.min_step)
    if curve.n_candidates < options.min_points:
        return [_event_row(curve, e, None) for e in ("complexity_peak", "complexity_fall")]
    (ip, why_peak, rise), (i_fall, why_fall, fall) = peak_and_fall(curve, interval_width)
    curve.rise = rise
    peak = _event_row(curve, "complexity_peak", ip, why_peak)
    curve.rise = fall
    return [peak, _event_row(curve, "complexity_fall", i_fall, why_fall)]


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


def detect(
    runs: pd.DataFrame,
    loss: pd.DataFrame,
    uas: pd.DataFrame,
    blimp: pd.DataFrame,
    options: PhaseOptions = PhaseOptions(),
    treebank: str | None = None,
    blimp_variant: str | None = None,
    glue: pd.DataFrame | None = None,
    uas_bootstrap: pd.DataFrame | None = None,
    complexity: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """The phases table over every run x seed present in any of the tables (release runs are
    analysed on their stitched curves); with a GLUE table, each run x seed's GLUE jump too; with
    the probe's paired bootstrap resamples (``uas_bootstrap``), the UAS onsets' 95% intervals
    (``sasbert.analysis.onset_intervals``; null without); with a complexity table its complexity
    peak and fall."""
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
    if complexity is not None:
        curves["complexity"] = stitch(complexity_curve(complexity), runs)
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
        if kind[run] == "sas_minus":  # the SAS- run's loss drop is its alternative strategy's onset
            events.append({**events[-1], "event": "alternative_strategy_onset"})
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
        if complexity is not None:
            c = curves["complexity"]
            c = c[(c["run"] == run) & (c["seed"] == seed)].sort_values("step")
            events += (
                complexity_events(
                    c["step"], c["complexity"], options, (c["complexity_high"] - c["complexity_low"]).to_numpy(float)
                )
                if len(c)
                else [_no_data(e, "complexity") for e in ("complexity_peak", "complexity_fall")]
            )
        for ev in events:
            rows.append({"run": run, "seed": int(seed), "kind": kind[run], **ev})
    out = pd.DataFrame(rows, columns=[c for c in PHASE_COLUMNS if c not in INTERVAL_COLUMNS])
    if uas_bootstrap is not None:
        spans = onset_intervals(uas_bootstrap, runs, options, uas_events, treebank)
        out = out.merge(spans, on=["run", "seed", "event"], how="left")
    out = out.reindex(columns=PHASE_COLUMNS)
    # an onset's interval goes with a detected onset only
    out.loc[~out["detected"].astype(bool), INTERVAL_COLUMNS[:2]] = np.nan
    out["detected"] = out["detected"].astype(bool)
    out["n_points"] = out["n_points"].astype("int64")
    return out


# CLI


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--runs", required=True, help="runs.parquet (from gather)")
    parser.add_argument("--loss", required=True, help="loss.parquet")
    parser.add_argument("--uas", required=True, help="uas.parquet")
    parser.add_argument("--blimp", required=True, help="blimp.parquet")
    parser.add_argument("--glue", help="glue.parquet (sasbert glue gather): adds each run's GLUE jump")
    parser.add_argument(
        "--uas-bootstrap",
        help="uas_bootstrap.parquet (the probe's paired resamples): adds the UAS onsets' 95%% intervals",
    )
    parser.add_argument("--complexity", help="complexity.parquet: adds each run's complexity peak and fall")
    parser.add_argument("--out", required=True, help="phases parquet")
    parser.add_argument("--csv", help="also write the table as CSV (for the report)")
    add_option_flags(
        parser,
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
    parser.add_argument("--treebank", help="UAS treebank (default: the only/first one)")
    parser.add_argument("--blimp-variant", help="BLiMP variant (default: the only/first one)")


def run(args: argparse.Namespace) -> None:
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
        read_table(args.uas_bootstrap, ["run", "seed", "step", "sample", "uas"], "UAS bootstrap")
        if args.uas_bootstrap
        else None,
        read_table(
            args.complexity, ["run", "seed", "step", "layer", "intrinsic_dim", "id_low", "id_high"], "complexity"
        )
        if args.complexity
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
