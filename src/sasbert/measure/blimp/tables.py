"""BLiMP's tables: per-pair scores, the summary by paradigm, phenomenon and overall with 95% intervals, and gathering a run's tables."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from sasbert.errors import InputError
from sasbert.options import defaults as schema_defaults
from sasbert.tables import read_table

BLIMP_DEFAULTS = schema_defaults("blimp")  # the config schema's: defaults live there only


PAIR_COLUMNS = [
    "step",
    "UID",
    "pairID",
    "linguistics_term",
    "sentence_good",
    "sentence_bad",
    "pll_good",
    "pll_bad",
    "correct",
]


SUMMARY_COLUMNS = [
    "step",
    "variant",
    "level",
    "name",
    "phenomenon",
    "accuracy",
    "ci_low",
    "ci_high",
    "n_pairs",
    "n_paradigms",
]


CONFIDENCE = 0.95


LEVEL_ORDER = {"overall": 0, "phenomenon": 1, "paradigm": 2}


def wilson_interval(correct, n, confidence: float = CONFIDENCE) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval of a binomial proportion (correct of n), elementwise."""
    from statistics import NormalDist

    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    correct, n = np.asarray(correct, dtype=np.float64), np.asarray(n, dtype=np.float64)
    p = correct / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    # clipped: at p = 0 or 1 the bound is 0 or 1 exactly, not -2.8e-17
    return np.clip(centre - half, 0.0, 1.0), np.clip(centre + half, 0.0, 1.0)


def mean_accuracy_interval(correct, n, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Interval of the mean accuracy over paradigms, as an estimate of the mean of the paradigms'
    accuracies on all their pairs, from ``n[i]`` pairs drawn from paradigm i (``correct[i]`` right).

    Normal, with the variance of a mean of independent proportions, (1/P^2) sum_i s_i^2 / n_i.
    s_i^2 estimates p_i (1 - p_i) without bias from the paradigm's own pairs, k (n - k) / (n (n - 1)),
    where it has two or more; a paradigm with one pair has no spread of its own, and gets
    pbar (1 - pbar) over those paradigms, which bounds the mean of their p (1 - p) from above. So a
    paradigm that is all right or all wrong in the sample narrows nothing by itself, and one pair per
    paradigm still gives an interval. Where the variance is 0 all the same (every sampled pair
    right, or every one wrong), the Wilson interval of the pooled pairs stands in. Clipped to
    [0, 1]. Coverage, simulated from 1, 2, 4 and 16 pairs per paradigm drawn from 1,000:
    tests/test_blimp.py."""
    from statistics import NormalDist

    correct, n = np.asarray(correct, dtype=np.float64), np.asarray(n, dtype=np.float64)
    estimate = float(np.mean(correct / n))
    spread = np.where(n >= 2, correct * (n - correct) / (n * np.maximum(n - 1, 1)), 0.0)
    single = n == 1
    if single.any():
        pbar = correct[single].sum() / single.sum()
        spread = np.where(single, pbar * (1 - pbar), spread)
    variance = float(np.sum(spread / n)) / len(n) ** 2
    if variance == 0:
        low, high = wilson_interval(correct.sum(), n.sum(), confidence)
        return float(low), float(high)
    half = NormalDist().inv_cdf(0.5 + confidence / 2) * variance**0.5
    return max(0.0, estimate - half), min(1.0, estimate + half)


def summarize(pairs: pd.DataFrame, variant: str = BLIMP_DEFAULTS["variant"]) -> pd.DataFrame:
    """Accuracy per paradigm, per phenomenon (mean of its paradigms) and overall (mean of
    paradigms), for every step in ``pairs`` (a missing step column counts as step 0), each with a
    95% interval: Wilson for a paradigm (one binomial), ``mean_accuracy_interval`` for the means."""
    if "step" not in pairs.columns:
        pairs = pairs.assign(step=0)
    frames = []
    for step, g in pairs.groupby("step", sort=True):
        par = (
            g.groupby("UID", sort=True)
            .agg(
                accuracy=("correct", "mean"),
                n_correct=("correct", "sum"),
                n_pairs=("correct", "size"),
                phenomenon=("linguistics_term", "first"),
            )
            .reset_index()
            .rename(columns={"UID": "name"})
        )
        par["level"] = "paradigm"
        par["n_paradigms"] = 1
        par["ci_low"], par["ci_high"] = wilson_interval(par["n_correct"], par["n_pairs"])
        phe = (
            par.groupby("phenomenon", sort=True)
            .agg(accuracy=("accuracy", "mean"), n_pairs=("n_pairs", "sum"), n_paradigms=("name", "size"))
            .reset_index()
        )
        intervals = {
            name: mean_accuracy_interval(group["n_correct"], group["n_pairs"])
            for name, group in par.groupby("phenomenon", sort=True)
        }
        phe["ci_low"] = [intervals[name][0] for name in phe["phenomenon"]]
        phe["ci_high"] = [intervals[name][1] for name in phe["phenomenon"]]
        phe["name"] = phe["phenomenon"]
        phe["level"] = "phenomenon"
        low, high = mean_accuracy_interval(par["n_correct"], par["n_pairs"])
        ove = pd.DataFrame(
            [
                {
                    "name": "overall",
                    "phenomenon": "",
                    "level": "overall",
                    "accuracy": par["accuracy"].mean(),
                    "ci_low": low,
                    "ci_high": high,
                    "n_pairs": int(par["n_pairs"].sum()),
                    "n_paradigms": len(par),
                }
            ]
        )
        t = pd.concat([ove, phe, par], ignore_index=True)
        t["step"] = step
        frames.append(t)
    out = pd.concat(frames, ignore_index=True)
    out["variant"] = variant
    out["step"] = out["step"].astype("int64")
    out["accuracy"] = out["accuracy"].astype("float64")
    out["n_pairs"] = out["n_pairs"].astype("int64")
    out["n_paradigms"] = out["n_paradigms"].astype("int64")
    return out[SUMMARY_COLUMNS]


def _sort_summary(df: pd.DataFrame) -> pd.DataFrame:
    key = df["level"].map(LEVEL_ORDER).fillna(9)
    return (
        df.assign(_k=key)
        .sort_values(["step", "variant", "_k", "name"], kind="stable")
        .drop(columns="_k")
        .reset_index(drop=True)
    )


def gather(inputs: Sequence[str | Path]) -> pd.DataFrame:
    """Stack per-checkpoint summary tables into one per-run table sorted by step."""
    if not inputs:
        raise InputError("gather: no input tables")
    frames = []
    for path in inputs:
        df = read_table(path, SUMMARY_COLUMNS, "BLiMP summary")
        frames.append(df[SUMMARY_COLUMNS].assign(_src=str(path)))
    out = pd.concat(frames, ignore_index=True)
    dup = out.duplicated(["step", "variant", "level", "name"], keep=False)
    if dup.any():
        d = out[dup]
        first = d.iloc[0]
        srcs = sorted(set(d[(d.step == first.step) & (d.variant == first.variant)]["_src"]))
        raise InputError(f"step {first.step} ({first.variant}) appears more than once: {', '.join(srcs)}")
    return _sort_summary(out.drop(columns="_src"))
