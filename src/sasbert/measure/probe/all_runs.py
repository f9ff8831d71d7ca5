"""How the probe's tables become the all-runs tables ``uas`` and ``heads`` (``sasbert.measure.registry``,
``sasbert.analysis.gather``). Torch-free, and not imported by the probe's jobs: a change here
regathers the tables without scoring a checkpoint again.

``uas``: one row per (step, treebank); ``uas`` is the "all" best-head accuracy, i.e. the UAS of the
figures, with its 95% interval ``uas_low, uas_high``, and ``layer, head, direction, soft_score`` are
that head's; ``uas_mean`` the "mean" row (mean of per-relation best heads; null for unlabelled
treebanks); ``offset_uas``/``offset`` the best fixed-offset baseline; ``same_weights_as`` is filled
by the gathering for hub series. ``heads``: the per-head scores for relation "all".
``uas_bootstrap``: the best-head UAS of every checkpoint in each paired bootstrap resample of the
sentences (``sample``; the same sentences at every checkpoint of a run), for the onsets' intervals.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from sasbert.measure.probe.sentences import ALL
from sasbert.measure.registry import AllRunsTable

UAS_COLUMNS = [
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


HEAD_COLUMNS = ["step", "treebank", "layer", "head", "direction", "accuracy", "soft_score", "count"]


def uas_rows(summary: pd.DataFrame) -> pd.DataFrame:
    """One row per (step, treebank) from a probe summary table."""
    att = summary[summary["method"] == "attention"]
    if "ci_low" not in att.columns:  # tables written before intervals were added
        att = att.assign(ci_low=np.nan, ci_high=np.nan)
    if "reachable" not in att.columns:  # tables written before causal LMs were probed
        att = att.assign(reachable=np.nan)
    best = att[att["relation"] == ALL][
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
    off = summary[(summary["method"] == "offset") & (summary["relation"] == ALL)]
    off = off[["step", "treebank", "accuracy", "offset"]].rename(columns={"accuracy": "offset_uas"})
    return best.merge(mean, on=["step", "treebank"], how="left").merge(off, on=["step", "treebank"], how="left")


def head_rows(scores: pd.DataFrame) -> pd.DataFrame:
    """The attention heads' scores for relation "all" from a probe scores table."""
    return scores[(scores["method"] == "attention") & (scores["relation"] == ALL)]


BOOTSTRAP_COLUMNS = ["step", "treebank", "sample", "uas"]


ALL_RUNS = {
    "summary": AllRunsTable(
        required=["step", "treebank", "method", "relation", "accuracy", "layer", "head", "direction"],
        what="probe summary",
        rows=uas_rows,
        columns=UAS_COLUMNS,
    ),
    "scores": AllRunsTable(
        required=["step", "treebank", "method", "relation", "layer", "head", "direction", "accuracy"],
        what="probe scores",
        rows=head_rows,
        columns=HEAD_COLUMNS,
    ),
    "bootstrap": AllRunsTable(required=BOOTSTRAP_COLUMNS, what="probe bootstrap", columns=BOOTSTRAP_COLUMNS),
}
