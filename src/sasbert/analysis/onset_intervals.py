"""95% intervals of the UAS onsets (structure onset, breakthrough, capabilities onset), from a paired
bootstrap over the probe's sentences (docs/method.md, "Phases").

The probe scores each checkpoint of a run on the same sentences, and draws its bootstrap resamples
of them from a fixed seed and their number alone (``measure.probe.scoring.best_head_resamples``):
resample b is one multiset of sentences, scored at every checkpoint. Its curve (the best-head UAS of
resample b at every step, the all-runs table ``uas_bootstrap``) is the UAS curve the run would have
had on those sentences. The onsets are detected again on every resample's curve, with the rule and
options of the point estimate (``phases.uas_events``); an onset's interval is the 2.5th to 97.5th
percentile of its step over the resamples in which it is detected (percentiles of the observed
steps: checkpoints, never a step between two), and ``detected_share`` is the share of resamples in
which it is.

A release run's curves are stitched onto its parent's before its start (``curves.stitch``), sample
by sample: the parent was probed on the same sentences, so the same resample continues.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from sasbert.analysis.curves import PhaseOptions, select_treebank, stitch

UAS_EVENTS = ("structure_onset", "breakthrough", "capabilities_onset")

INTERVAL_COLUMNS = ["step_low", "step_high", "detected_share"]

CONFIDENCE = 0.95


def step_interval(steps: np.ndarray, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """The central ``confidence`` percentile interval of onset steps (observed values only)."""
    tail = (1 - confidence) / 2
    low, high = np.quantile(steps, [tail, 1 - tail], method="inverted_cdf")
    return float(low), float(high)


def resampled_onsets(steps, resamples: np.ndarray, options: PhaseOptions, uas_events) -> dict[str, np.ndarray]:
    """{event: the onset step on each resample's curve, NaN where undetected}; ``resamples`` is
    [samples, checkpoints], ``steps`` the checkpoints' steps, ``uas_events`` the point estimate's
    rule (``phases.uas_events``, passed in: phases reads this module, not the reverse)."""
    found = {event: np.full(len(resamples), np.nan) for event in UAS_EVENTS}
    for b, curve in enumerate(resamples):
        for row in uas_events(steps, curve, options):
            if row["detected"]:
                found[row["event"]][b] = row["step"]
    return found


def intervals(steps, resamples: np.ndarray, options: PhaseOptions, uas_events, confidence: float = CONFIDENCE) -> dict:
    """{event: (step_low, step_high, detected_share)} of one run x seed's UAS onsets."""
    out = {}
    for event, found in resampled_onsets(steps, resamples, options, uas_events).items():
        detected = found[np.isfinite(found)]
        share = len(detected) / len(found) if len(found) else np.nan
        low, high = step_interval(detected, confidence) if len(detected) else (np.nan, np.nan)
        out[event] = (low, high, share)
    return out


def onset_intervals(
    bootstrap: pd.DataFrame, runs: pd.DataFrame, options: PhaseOptions, uas_events, treebank: str | None = None
) -> pd.DataFrame:
    """``run, seed, event, step_low, step_high, detected_share`` for every run x seed's UAS onsets,
    from the all-runs table ``uas_bootstrap`` (``run, seed, step, treebank, sample, uas``)."""
    rows = []
    if len(bootstrap):
        table = stitch(select_treebank(bootstrap, treebank)[["run", "seed", "step", "sample", "uas"]], runs)
        for (run, seed), curves in table.groupby(["run", "seed"], sort=False):
            wide = curves.pivot_table(index="sample", columns="step", values="uas", aggfunc="first").sort_index(axis=1)
            wide = wide.dropna()  # a resample missing at a checkpoint (tables from other settings)
            if wide.empty:
                continue
            found = intervals(wide.columns.to_numpy(float), wide.to_numpy(float), options, uas_events)
            for event, (low, high, share) in found.items():
                rows.append({"run": run, "seed": int(seed), "event": event, "step_low": low, "step_high": high,
                             "detected_share": share})  # fmt: skip
    return pd.DataFrame(rows, columns=["run", "seed", "event", *INTERVAL_COLUMNS])
