"""GLUE's metrics, their bootstrap intervals, BERT's GLUE average, and the tables of fine-tuning jobs."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from sasbert.errors import InputError
from sasbert.measure.glue.tasks import task_of
from sasbert.tables import read_table

# BERT's GLUE average (Table 1 of Devlin et al. 2019): these nine (task, split, metric) entries.
AVERAGE_ENTRIES = (
    ("cola", "validation", "matthews_correlation"),
    ("sst2", "validation", "accuracy"),
    ("mrpc", "validation", "f1"),
    ("qqp", "validation", "f1"),
    ("stsb", "validation", "spearman"),
    ("mnli", "validation_matched", "accuracy"),
    ("mnli", "validation_mismatched", "accuracy"),
    ("qnli", "validation", "accuracy"),
    ("rte", "validation", "accuracy"),
)


AVERAGE_TASK = "glue"


METRIC_COLUMNS = [
    "run",
    "seed",
    "step",
    "task",
    "split",
    "metric",
    "value",
    "ci_low",
    "ci_high",
    "n_examples",
    "finetune_seed",
]


PREDICTION_COLUMNS = ["run", "seed", "step", "task", "split", "finetune_seed", "idx", "label", "prediction"]


SUMMARY_COLUMNS = ["run", "seed", "step", "task", "split", "metric", "mean", "sd", "min", "max", "n_finetune_seeds"]


CONFIDENCE = 0.95


BOOTSTRAP_SEED = 0  # the intervals are reproducible


def metric_value(metric: str, labels, predictions) -> float:
    """One GLUE metric of predictions against labels, as sklearn and scipy compute them (the
    functions HF ``evaluate``'s ``glue`` metric calls; the tests check each against them):
    accuracy; F1 of the positive class (label 1), 0 when it is never predicted nor true; Matthews'
    correlation from the confusion matrix, 0 when a marginal is constant (sklearn's convention);
    Pearson's r; Spearman's rho (Pearson's r of the ranks, ties given their mean rank). A
    correlation of a constant is NaN (undefined).

    Computed here with numpy rather than by importing sklearn and scipy: with scikit-learn
    installed, every process that imports HF Trainer imports both (transformers.data.metrics), so
    the dependency would slow every pretraining job's start."""
    labels, predictions = np.asarray(labels), np.asarray(predictions)
    if metric == "accuracy":
        return float(np.mean(labels == predictions))
    if metric == "f1":
        true_positive = np.sum((predictions == 1) & (labels == 1))
        wrong = np.sum((predictions == 1) != (labels == 1))  # false positives and false negatives
        return float(2 * true_positive / (2 * true_positive + wrong)) if true_positive + wrong else 0.0
    if metric == "matthews_correlation":
        classes, coded = np.unique(np.concatenate([labels, predictions]), return_inverse=True)
        confusion = np.zeros((len(classes), len(classes)))
        np.add.at(confusion, (coded[: len(labels)], coded[len(labels) :]), 1)
        true, predicted, n = confusion.sum(axis=1), confusion.sum(axis=0), confusion.sum()
        covariance = np.trace(confusion) * n - true @ predicted
        variance = (n * n - true @ true) * (n * n - predicted @ predicted)
        return float(covariance / np.sqrt(variance)) if variance else 0.0
    if metric in ("pearson", "spearman"):
        x, y = predictions.astype(float), labels.astype(float)
        if metric == "spearman":
            x, y = pd.Series(x).rank().to_numpy(), pd.Series(y).rank().to_numpy()
        x, y = x - x.mean(), y - y.mean()
        scale = np.sqrt((x @ x) * (y @ y))
        return float(np.clip((x @ y) / scale, -1.0, 1.0)) if scale > 0 else float("nan")
    raise ValueError(f"unknown GLUE metric {metric!r}")


def bootstrap_interval(metric: str, labels, predictions, samples: int, seed: int = BOOTSTRAP_SEED):
    """Percentile interval of a metric over ``samples`` resamples (with replacement) of the
    examples, the predictions fixed (NaN resamples, e.g. a constant one, are left out)."""
    labels, predictions = np.asarray(labels), np.asarray(predictions)
    rng = np.random.default_rng(seed)
    draws = np.empty(samples)
    for i in range(samples):
        pick = rng.integers(0, len(labels), len(labels))
        draws[i] = metric_value(metric, labels[pick], predictions[pick])
    if not np.isfinite(draws).any():
        return float("nan"), float("nan")
    low, high = np.nanquantile(draws, [(1 - CONFIDENCE) / 2, (1 + CONFIDENCE) / 2])
    return float(low), float(high)


def score(task: str, split: str, labels, predictions, bootstrap_samples: int) -> list[dict]:
    """The task's metrics on one validation split, each with its interval."""
    rows = []
    for metric in task_of(task).metrics:
        low, high = bootstrap_interval(metric, labels, predictions, bootstrap_samples)
        rows.append(
            {
                "task": task,
                "split": split,
                "metric": metric,
                "value": metric_value(metric, labels, predictions),
                "ci_low": low,
                "ci_high": high,
                "n_examples": len(labels),
            }
        )
    return rows


def glue_average(metrics: pd.DataFrame) -> pd.DataFrame:
    """BERT's GLUE average (``AVERAGE_ENTRIES``) of each run, seed, step and fine-tuning seed:
    metric ``average`` when all nine entries are there, ``partial_average`` (the mean of those
    there are) otherwise. Its interval: the entries' half-widths combined as independent (one
    entry's own interval when there is one)."""
    keys = ["run", "seed", "step", "finetune_seed"]
    entries = pd.DataFrame(AVERAGE_ENTRIES, columns=["task", "split", "metric"])
    rows = metrics.merge(entries, on=["task", "split", "metric"])
    out = []
    for key, group in rows.groupby(keys, sort=True):
        half = (group["ci_high"] - group["ci_low"]) / 2
        value = float(group["value"].mean())
        spread = float(np.sqrt((half**2).sum()) / len(group))
        low, high = (
            (value - spread, value + spread) if len(group) > 1 else (group["ci_low"].iloc[0], group["ci_high"].iloc[0])
        )
        out.append(
            {
                **dict(zip(keys, key)),
                "task": AVERAGE_TASK,
                "split": "validation",
                "metric": "average" if len(group) == len(AVERAGE_ENTRIES) else "partial_average",
                "value": value,
                "ci_low": float(low),
                "ci_high": float(high),
                "n_examples": int(group["n_examples"].sum()),
            }
        )
    return pd.DataFrame(out, columns=METRIC_COLUMNS)


def summarize(table: pd.DataFrame) -> pd.DataFrame:
    """Mean and spread (sd with ddof 1, min, max) of every score over the fine-tuning seeds."""
    keys = ["run", "seed", "step", "task", "split", "metric"]
    groups = table.groupby(keys, sort=False)["value"]
    out = groups.agg(mean="mean", sd="std", min="min", max="max", n_finetune_seeds="count").reset_index()
    return out[SUMMARY_COLUMNS]


def gather(inputs: Sequence[str | Path]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Metric tables (a job's, or gathered ones) stacked, with the GLUE average rows made anew:
    (glue table, summary)."""
    if not inputs:
        raise InputError("gather: no input tables")
    frames = [read_table(path, METRIC_COLUMNS, "GLUE metrics") for path in inputs]
    table = pd.concat(frames, ignore_index=True)[METRIC_COLUMNS]
    table = table[table["task"] != AVERAGE_TASK]  # a gathered table's averages: made anew from its entries
    keys = ["run", "seed", "step", "task", "split", "metric", "finetune_seed"]
    dup = table.duplicated(keys, keep=False)
    if dup.any():
        first = table[dup].iloc[0]
        raise InputError(
            f"{first.run} seed {first.seed} step {first.step} {first.task} fine-tuning seed {first.finetune_seed}: "
            "given by more than one input table"
        )
    table = pd.concat([table, glue_average(table)], ignore_index=True)
    table = table.sort_values(keys, kind="stable").reset_index(drop=True)
    return table, summarize(table)


def labelled(table: pd.DataFrame, columns: list[str], run: str, seed: int, step: int) -> pd.DataFrame:
    """A job's table with the run, seed and step it belongs to, in the table's column order."""
    out = table.assign(run=run, seed=np.int64(seed), step=np.int64(step))
    out["finetune_seed"] = out["finetune_seed"].astype("int64")
    return out[columns]
