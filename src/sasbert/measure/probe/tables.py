"""The probe's tables: per-head scores, the fixed-offset baselines, the summary of best heads, and gathering a run's tables."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from sasbert.errors import InputError
from sasbert.measure.probe.options import DEFAULTS as PROBE_DEFAULTS
from sasbert.measure.probe.sentences import ALL
from sasbert.tables import read_table

OFFSETS = (-3, -2, -1, 1, 2, 3)


# The authors' attention_depparse_probe.py (scoring "authors"): its offsets are range(-3, 3), its
# Table 1 leaves out these relations, and its "poss" special case looks at these next words.
AUTHORS_OFFSETS = (-3, -2, -1, 0, 1, 2)


AUTHORS_TABLE_EXCLUDED = ("root", "punct")


MEAN = "mean"


SCORE_COLUMNS = [
    "step",
    "checkpoint",
    "treebank",
    "method",
    "layer",
    "head",
    "direction",
    "offset",
    "relation",
    "correct",
    "count",
    "accuracy",
    "soft_score",
]


SUMMARY_COLUMNS = [
    "step",
    "checkpoint",
    "treebank",
    "method",
    "relation",
    "layer",
    "head",
    "direction",
    "offset",
    "correct",
    "count",
    "accuracy",
    "ci_low",
    "ci_high",
    "soft_score",
    "max_soft_score",
    "reachable",
    "n_relations",
    "n_sentences",
    "n_skipped_too_long",
    "n_skipped_unaligned",
    "max_pieces",
    "min_relation_count",
]


# The summary's columns that describe the run rather than a row (filled per table by score_model).
SUMMARY_METADATA = (
    "step",
    "checkpoint",
    "treebank",
    "n_sentences",
    "n_skipped_too_long",
    "n_skipped_unaligned",
    "max_pieces",
    "min_relation_count",
)


_INT_COLUMNS = ("step", "layer", "head", "offset", "correct", "n_relations")


def offset_columns(
    golds: Sequence[np.ndarray],
    rels: Sequence[np.ndarray],
    relations: Sequence[str],
    labelled: bool = True,
    scoring: str = "spec",
    poss: Sequence[np.ndarray] | None = None,
) -> dict[str, np.ndarray]:
    """Fixed-offset baselines: predicted parent of word i = word i + offset.

    ``golds``: per sentence, 0-based gold parent per word (-1: the root); ``rels``: relation
    index, -1 unscored. Scoring "spec": offsets -3..+3 without 0, a parent outside the sentence is
    simply wrong. Scoring "authors": offsets -3..+2 (their ``range(-3, 3)``, 0 included: the word
    itself, always wrong), the 1-based prediction clamped to [0, n] (0 = the root, so a root word
    near the start can be right), and the "poss" rule where ``poss`` (``poss_limits``) says.
    """
    authors = scoring == "authors"
    offsets = AUTHORS_OFFSETS if authors else OFFSETS
    names = list(relations)
    R = len(names)
    empty = np.zeros(0, dtype=np.int64)
    gold = np.concatenate(list(golds)) if len(golds) else empty
    rel = np.concatenate(list(rels)) if len(rels) else empty
    position = np.concatenate([np.arange(len(g)) for g in golds]) if len(golds) else empty
    length = np.concatenate([np.full(len(g), len(g)) for g in golds]) if len(golds) else empty
    limit = np.concatenate(list(poss)) if poss is not None and len(golds) else np.zeros_like(gold)
    keep = rel >= 0

    def predicted(i, off):  # 0-based prediction for the words at positions i
        return np.clip(i + off, -1, length - 1) if authors else i + off

    correct = []
    for off in offsets:
        pred = predicted(position, off)
        hit = pred == gold
        # the poss rule: word i + 1's prediction stands for word i's (limit > 0 only where i + 1 exists)
        use = (limit > 0) & (pred + 1 < limit)
        hit = np.where(use, predicted(position + 1, off) == gold, hit)
        correct.append(np.bincount(rel[keep & hit], minlength=R))
    correct = np.stack(correct).astype(np.int64)
    count = np.bincount(rel[keep], minlength=R).astype(np.int64)
    if labelled:
        correct = np.concatenate([correct, correct.sum(-1, keepdims=True)], -1)
        count = np.append(count, count.sum())
        names.append(ALL)
    off, rel = (a.ravel() for a in np.meshgrid(np.arange(len(offsets)), np.arange(len(names)), indexing="ij"))
    n = len(rel)
    cnt = count[rel]
    with np.errstate(invalid="ignore", divide="ignore"):
        return {
            "method": np.full(n, "offset", dtype=object),
            "layer": np.full(n, np.nan),
            "head": np.full(n, np.nan),
            "direction": np.full(n, None, dtype=object),
            "offset": np.array(offsets, dtype=np.float64)[off],
            "relation": np.array(names, dtype=object)[rel],
            "correct": correct.ravel(),
            "count": cnt,
            "accuracy": correct.ravel() / cnt,
            "soft_score": np.full(n, np.nan),
        }


def offset_table(golds, rels, relations, labelled: bool = True, scoring: str = "spec", poss=None) -> pd.DataFrame:
    return _frame(offset_columns(golds, rels, relations, labelled, scoring, poss))


def authors_accuracy(correct: np.ndarray, count: np.ndarray) -> np.ndarray:
    """The accuracy the authors' evaluate_predictor reports: correct / count, but 0 for a
    relation with no wrong word (it fills its scores from the relations that have a miss, and a
    defaultdict answers 0.0 for the others), so a head right on every word of a relation scores 0
    there and is never that relation's best head."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(correct == count, 0.0, correct / count)


def _summary_columns(
    cols: dict[str, np.ndarray], min_relation_count: int, labelled: bool, scoring: str = "spec"
) -> dict[str, list]:
    authors = scoring == "authors"
    # Scoring "authors": their Table 1 lists the relations (root and punct left out) with at least
    # min_relation_count words in the treebank, as the offset rows count them (offsets score every
    # word; the attention rows leave out words cut off by truncation).
    offsets = cols["method"] == "offset"
    treebank_count = dict(zip(cols["relation"][offsets], cols["count"][offsets]))
    out: dict[str, list] = {
        c: [] for c in SUMMARY_COLUMNS if c not in SUMMARY_METADATA and c not in ("ci_low", "ci_high", "reachable")
    }

    def emit(**row):
        for key, values in out.items():
            values.append(row[key])

    for method in ("attention", "offset"):
        rows = np.flatnonzero(cols["method"] == method)
        if not len(rows):
            continue
        relation = cols["relation"][rows]
        best = {}
        for name in dict.fromkeys(relation):  # table order: relations, then "all"
            group = rows[relation == name]
            if authors:  # their sorted(...)[-1]: ties go to the highest (layer, head, direction), offset
                i = group[len(group) - 1 - int(np.argmax(cols["accuracy"][group][::-1]))]
            else:  # the first maximum
                i = group[int(np.argmax(cols["correct"][group]))]
            best[name] = i
            emit(
                method=method,
                relation=name,
                layer=cols["layer"][i],
                head=cols["head"][i],
                direction=cols["direction"][i],
                offset=cols["offset"][i],
                correct=cols["correct"][i],
                count=cols["count"][i],
                accuracy=cols["accuracy"][i],
                soft_score=cols["soft_score"][i],
                max_soft_score=np.max(cols["soft_score"][group]) if method == "attention" else np.nan,
                n_relations=np.nan,
            )
        if labelled:
            if authors:
                frequent = [
                    i
                    for name, i in best.items()
                    if name != ALL
                    and name not in AUTHORS_TABLE_EXCLUDED
                    and treebank_count.get(name, cols["count"][i]) >= min_relation_count
                ]
            else:
                frequent = [i for name, i in best.items() if name != ALL and cols["count"][i] >= min_relation_count]
            emit(
                method=method,
                relation=MEAN,
                layer=np.nan,
                head=np.nan,
                direction=None,
                offset=np.nan,
                correct=np.nan,
                count=int(cols["count"][frequent].sum()),
                accuracy=float(np.mean(cols["accuracy"][frequent])) if frequent else np.nan,
                soft_score=(
                    float(np.mean(cols["soft_score"][frequent])) if frequent and method == "attention" else np.nan
                ),
                max_soft_score=np.nan,
                n_relations=len(frequent),
            )
    return out


def summarize(
    scores: pd.DataFrame,
    min_relation_count: int = PROBE_DEFAULTS["min_relation_count"],
    labelled: bool = True,
    scoring: str = PROBE_DEFAULTS["scoring"],
) -> pd.DataFrame:
    """Best head (resp. offset) per relation and "all", plus the "mean" over frequent relations.

    Scoring "spec": the first row with the most correct words wins, so ties go to the canonical
    order of ``scores`` (lowest layer, head, then dependent_to_parent; offsets in -3..+3 order);
    the "mean" row (labelled treebanks only) averages the best accuracies of the relations with at
    least ``min_relation_count`` words (``n_relations`` of them). Scoring "authors" (``scores``
    from that scoring): the highest ``accuracy`` wins and ties go to the LAST such row (highest
    layer, head, then parent_to_dependent; highest offset), and the "mean" is over the relations of
    their Table 1 (not root or punct, at least ``min_relation_count`` words in the treebank).
    """
    cols = {}
    for col in ("method", "relation", "direction"):
        cols[col] = scores[col].to_numpy(dtype=object)
    for col in ("layer", "head", "offset", "correct", "count", "accuracy", "soft_score"):
        cols[col] = scores[col].to_numpy(dtype=np.float64, na_value=np.nan)
    summary = _summary_columns(cols, min_relation_count, labelled, scoring)
    summary["ci_low"] = summary["ci_high"] = [np.nan] * len(summary["method"])  # needs per-sentence tallies
    summary["reachable"] = [np.nan] * len(summary["method"])  # needs the gold trees
    return _frame(summary)


_COUNT_COLUMNS = (
    "count",
    "n_sentences",
    "n_skipped_too_long",
    "n_skipped_unaligned",
    "max_pieces",
    "min_relation_count",
)


def _frame(columns: dict, order: Sequence[str] | None = None) -> pd.DataFrame:
    """A DataFrame with the tables' dtypes: nullable Int64 for ids (NaN -> NA), int64 counts."""
    data = {}
    for col in order or list(columns):
        values = columns[col]
        if col in _INT_COLUMNS:
            data[col] = pd.array(np.asarray(values, dtype=np.float64), dtype="Int64")
        elif col in _COUNT_COLUMNS:
            data[col] = np.asarray(values, dtype=np.int64)
        elif col in ("accuracy", "ci_low", "ci_high", "soft_score", "max_soft_score"):
            data[col] = np.asarray(values, dtype=np.float64)
        else:
            data[col] = np.asarray(values, dtype=object)
    return pd.DataFrame(data)


def gather(paths: Sequence[str | Path]) -> pd.DataFrame:
    """Stack per-checkpoint tables (each with a ``step`` column) into one, sorted by step."""
    frames, owner = [], {}
    for path in paths:
        path = Path(path)
        df = read_table(path, ["step"], "probe")
        if df["step"].isna().any():
            raise InputError(f"{path}: rows without a step")
        if frames and list(df.columns) != list(frames[0].columns):
            raise InputError(f"{path}: columns differ from {paths[0]} (mixing summary and scores tables?)")
        tb = df["treebank"] if "treebank" in df.columns else pd.Series([None] * len(df))
        for key in set(zip(df["step"].tolist(), tb.tolist())):
            if key in owner:
                raise InputError(f"{path}: step {key[0]} (treebank {key[1]}) is also in {owner[key]}")
            owner[key] = path
        frames.append(df)
    if not frames:
        raise InputError("gather: no inputs")
    out = pd.concat(frames, ignore_index=True)
    return out.sort_values("step", kind="stable").reset_index(drop=True)
