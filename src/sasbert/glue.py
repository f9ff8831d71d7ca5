"""GLUE fine-tuning of checkpoints: the paper's third measure of model quality, beside UAS and BLiMP.

Each job fine-tunes one checkpoint on one task with one fine-tuning seed (HF ``Trainer`` with
``run_glue``'s conventions: max length 128, lr 2e-5, batch 32, 3 epochs, linear decay, no warmup,
AdamW; all in the config's ``glue`` section) and scores it on the task's **validation** split(s):
GLUE's test labels are private, so every number here is a validation score, as in most papers
that fine-tune many checkpoints. Inputs are padded per batch instead of to 128 (run_glue's
``pad_to_max_length``): the attention mask makes the result the same, only faster.

Tasks and metrics (GLUE's, as the ``glue`` metric of HF ``evaluate`` computes them with sklearn and
scipy; ``metric_value`` computes the same with numpy, and the tests check it against both):

=====  ===================================  ======================================
task   columns                              metrics
=====  ===================================  ======================================
cola   sentence                             matthews_correlation
sst2   sentence                             accuracy
mrpc   sentence1, sentence2                 f1 (positive class 1), accuracy
qqp    question1, question2                 f1, accuracy
stsb   sentence1, sentence2 (float label)   pearson, spearman (a regression head)
mnli   premise, hypothesis (3 labels)       accuracy on validation_matched and validation_mismatched
qnli   question, sentence                   accuracy
rte    sentence1, sentence2                 accuracy
wnli   sentence1, sentence2                 accuracy
=====  ===================================  ======================================

**The GLUE average** is BERT's (Devlin et al. 2019, Table 1): the mean of nine numbers, WNLI left
out: CoLA's Matthews correlation, SST-2's accuracy, MRPC's and QQP's F1, STS-B's Spearman
correlation, MNLI's matched and mismatched accuracies (two entries), QNLI's and RTE's accuracy
(``AVERAGE_ENTRIES``; BERT-base's published numbers give its 79.6, BERT-large's its 82.1). It is the
row ``task glue, metric average`` when all nine entries exist for a checkpoint and fine-tuning
seed; with fewer tasks configured, the mean of the entries there are is ``metric partial_average``
(``n_examples`` counts its entries' examples), so a subset is never mistaken for the benchmark.
Scores are fractions (0.84, not 84).

**Intervals**: every score has a 95% percentile interval from ``bootstrap_samples`` resamples of
its validation examples (the predictions fixed); the average's is the normal combination of its
entries' (half-width sqrt(sum h_i^2) / k: the entries' validation sets are independent; a single
entry's own interval).

Data (``prepare``, the workflow's local rule ``glue_data``): a task's data come from the hub
dataset (``nyu-mll/glue``: its parquet files are fetched into the HF cache, which is what the
local rule does on a login node with the internet, and read from the cache offline), from local
files (csv, tsv, json, jsonl or parquet, one per split, with the task's GLUE columns and
``label``), from a ``save_to_disk`` folder, or, for an acceptability task in CoLA's format, from
BLiMP's minimal pairs (``blimp_acceptability``). Each becomes one checked ``DatasetDict``
(``train`` and the task's validation splits, columns ``idx``, the text columns and ``label``)
saved to disk, which the fine-tuning jobs read offline.

Tables (one pair per job; ``gather`` stacks them into ``tables/glue.parquet``)::

    metrics:      run, seed, step, task, split, metric, value, ci_low, ci_high, n_examples, finetune_seed
    predictions:  run, seed, step, task, split, finetune_seed, idx, label, prediction
    summary:      run, seed, step, task, split, metric, mean, sd, min, max, n_finetune_seeds
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import logging
import math
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from sasbert.errors import InputError
from sasbert.options import add_option_flags
from sasbert.options import resolve as resolve_options
from sasbert.tables import read_table

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Task:
    columns: tuple[str, ...]  # the text column(s): one sentence, or a pair
    num_labels: int  # 1: regression (STS-B)
    eval_splits: tuple[str, ...]
    metrics: tuple[str, ...]


TASKS = {
    "cola": Task(("sentence",), 2, ("validation",), ("matthews_correlation",)),
    "sst2": Task(("sentence",), 2, ("validation",), ("accuracy",)),
    "mrpc": Task(("sentence1", "sentence2"), 2, ("validation",), ("f1", "accuracy")),
    "qqp": Task(("question1", "question2"), 2, ("validation",), ("f1", "accuracy")),
    "stsb": Task(("sentence1", "sentence2"), 1, ("validation",), ("pearson", "spearman")),
    "mnli": Task(("premise", "hypothesis"), 3, ("validation_matched", "validation_mismatched"), ("accuracy",)),
    "qnli": Task(("question", "sentence"), 2, ("validation",), ("accuracy",)),
    "rte": Task(("sentence1", "sentence2"), 2, ("validation",), ("accuracy",)),
    "wnli": Task(("sentence1", "sentence2"), 2, ("validation",), ("accuracy",)),
}
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
FILE_FORMATS = (".csv", ".tsv", ".json", ".jsonl", ".parquet")


def task_of(name: str) -> Task:
    if name not in TASKS:
        raise InputError(f"unknown GLUE task {name!r} (choose from {', '.join(TASKS)})")
    return TASKS[name]


# --------------------------------------------------------------------------------------- metrics


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


# ------------------------------------------------------------------------------------------ data


def blimp_acceptability(
    data_dir: str | Path, train_pairs_per_paradigm: int, validation_pairs_per_paradigm: int, subset_seed: int = 0
) -> dict[str, pd.DataFrame]:
    """An acceptability task in CoLA's format (``sentence``, ``label``: 1 acceptable, 0 not) from
    BLiMP's minimal pairs: of each paradigm, ``train_pairs_per_paradigm`` pairs for training and
    the next ``validation_pairs_per_paradigm`` for validation, drawn by a generator seeded with
    (subset_seed, crc32(UID)) as BLiMP's subsets are; both sentences of a pair in the same split,
    so no validation sentence has its minimal-pair twin in training."""
    from sasbert.blimp_data import load_blimp

    pairs = load_blimp(data_dir)
    chosen = {"train": [], "validation": []}
    for uid, index in pairs.groupby("UID", sort=True).indices.items():
        need = train_pairs_per_paradigm + validation_pairs_per_paradigm
        if len(index) < need:
            raise InputError(f"{data_dir}: paradigm {uid} has {len(index)} pairs, fewer than the {need} asked for")
        order = np.random.default_rng([subset_seed, zlib.crc32(uid.encode("utf-8"))]).permutation(index)
        chosen["train"].append(np.sort(order[:train_pairs_per_paradigm]))
        chosen["validation"].append(np.sort(order[train_pairs_per_paradigm:need]))
    splits = {}
    for split, parts in chosen.items():
        rows = pairs.iloc[np.sort(np.concatenate(parts))]
        good = pd.DataFrame({"sentence": rows["sentence_good"].to_numpy(), "label": 1})
        bad = pd.DataFrame({"sentence": rows["sentence_bad"].to_numpy(), "label": 0})
        # a pair's two sentences side by side: good, bad, good, bad, ...
        frame = pd.concat([good, bad]).sort_index(kind="stable").reset_index(drop=True)
        splits[split] = frame
    return splits


def read_split_file(path: str | Path) -> pd.DataFrame:
    """One split from a local file (by extension: .csv, .tsv as GLUE ships it, .json, .jsonl,
    .parquet); an unreadable one is an InputError naming it."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: file not found")
    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":
            return pd.read_csv(path, keep_default_na=False)
        if suffix == ".tsv":
            return pd.read_csv(path, sep="\t", quoting=csv.QUOTE_NONE, keep_default_na=False)
        if suffix in (".json", ".jsonl"):
            return pd.read_json(path, lines=suffix == ".jsonl")
        if suffix == ".parquet":
            return pd.read_parquet(path)
    except Exception as err:  # noqa: BLE001 - pandas and pyarrow raise many kinds
        raise InputError(f"{path}: cannot read it as {suffix[1:]} ({type(err).__name__}: {err})") from None
    raise InputError(f"{path}: a GLUE split file ends in {', '.join(FILE_FORMATS)}")


def warmup_steps(options: dict, n_train: int) -> float:
    """The ``warmup_ratio`` option as TrainingArguments' ``warmup_steps``: transformers 5 dropped
    warmup_ratio and reads a float in [0, 1) as the ratio, but 1 as one step; a ratio of 1 is
    every step of the run (one process, no accumulation: the Trainer's count of steps)."""
    ratio = options["warmup_ratio"]
    if ratio < 1:
        return ratio
    return math.ceil(options["epochs"] * max(math.ceil(n_train / options["batch_size"]), 1))


def no_data_message(task: str, repo: str, why: str) -> str:
    return (
        f"GLUE task {task}: no data ({repo}, config {task}, is not in the HF cache and cannot be fetched: {why}). "
        f"Where there is internet, run `snakemake glue_data` (a local rule: it fills the HF cache) or "
        f"`hf download {repo} --repo-type dataset --include '{task}/*'`, then copy the cache here "
        f"(or point HF_HOME at it); or give the task's data in the config: glue.data.{task}: "
        "{data_files: {train: train.csv, validation: dev.csv}} or {saved: a save_to_disk folder}"
    )


def hub_splits(task: str, repo: str, download: bool = True) -> dict[str, pd.DataFrame]:
    """A task's splits from the hub dataset's parquet files (``<task>/<split>-*.parquet``, as
    nyu-mll/glue lays them out), fetched into the HF cache when ``download`` (and online), else
    read from the cache."""
    from huggingface_hub import snapshot_download

    try:
        folder = Path(
            snapshot_download(repo, repo_type="dataset", allow_patterns=[f"{task}/*"], local_files_only=not download)
        )
    except Exception as err:  # noqa: BLE001 - huggingface_hub raises many kinds (offline, missing, HTTP)
        raise InputError(no_data_message(task, repo, f"{type(err).__name__}: {err}")) from None
    files = sorted((folder / task).glob("*.parquet"))
    if not files:
        raise InputError(no_data_message(task, repo, f"the snapshot {folder} has no {task}/*.parquet"))
    by_split: dict[str, list[Path]] = {}
    for path in files:
        by_split.setdefault(path.name.split("-")[0], []).append(path)
    return {
        split: pd.concat([pd.read_parquet(p) for p in paths], ignore_index=True) for split, paths in by_split.items()
    }


def saved_splits(folder: str | Path) -> dict[str, pd.DataFrame]:
    import datasets

    try:
        saved = datasets.load_from_disk(str(folder))
    except Exception as err:  # noqa: BLE001
        raise InputError(f"{folder}: not a datasets save_to_disk folder ({type(err).__name__}: {err})") from None
    if not isinstance(saved, datasets.DatasetDict):
        raise InputError(f"{folder}: a single dataset; save a DatasetDict with the task's splits (train, validation)")
    return {split: saved[split].to_pandas() for split in saved}


def check_splits(task: str, splits: dict[str, pd.DataFrame], where: str) -> dict[str, pd.DataFrame]:
    """The task's train and validation splits, with ``idx``, its text columns and ``label``
    checked (strings; labels 0..n-1, or finite numbers for STS-B); a problem names the task, the
    split, the column and where the data came from."""
    spec = task_of(task)
    out = {}
    missing = [split for split in ("train", *spec.eval_splits) if split not in splits]
    if missing:
        raise InputError(
            f"GLUE task {task} ({where}): no {', '.join(missing)} split (has: {', '.join(sorted(splits))})"
        )
    for split in ("train", *spec.eval_splits):
        frame = splits[split]
        missing = [c for c in (*spec.columns, "label") if c not in frame.columns]
        if missing:
            raise InputError(
                f"GLUE task {task} ({where}), split {split}: no column {', '.join(missing)} "
                f"(has: {', '.join(map(str, frame.columns))})"
            )
        if frame.empty:
            raise InputError(f"GLUE task {task} ({where}), split {split}: no examples")
        for column in spec.columns:
            bad = ~frame[column].map(lambda x: isinstance(x, str))
            if bad.any():
                raise InputError(
                    f"GLUE task {task} ({where}), split {split}, row {int(np.flatnonzero(bad)[0])}: "
                    f"{column} is not text ({frame[column][bad].iloc[0]!r})"
                )
        label = pd.to_numeric(frame["label"], errors="coerce")
        if spec.num_labels == 1:
            bad = ~np.isfinite(label.to_numpy(float))
            expected = "a finite number"
        else:
            bad = ~label.isin(range(spec.num_labels)).to_numpy()
            expected = f"one of {', '.join(map(str, range(spec.num_labels)))}"
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            hint = " (-1: unlabelled, as GLUE's test splits are)" if frame["label"].iloc[row] == -1 else ""
            raise InputError(
                f"GLUE task {task} ({where}), split {split}, row {row}: label {_shown(frame['label'].iloc[row])} "
                f"is not {expected}{hint}"
            )
        kept = frame[list(spec.columns)].reset_index(drop=True)
        kept.insert(0, "idx", np.arange(len(kept), dtype=np.int64))
        kept["label"] = label.astype("float64" if spec.num_labels == 1 else "int64").to_numpy()
        out[split] = kept
    return out


def _shown(value) -> str:
    return repr(value) if isinstance(value, str) else str(value)


def load_task(task: str, source: dict | None, repo: str, download: bool = True) -> dict[str, pd.DataFrame]:
    """A task's checked splits from its source (a ``glue.data`` entry, or None: the hub)."""
    task_of(task)
    source = source or {}
    given = [key for key in ("data_files", "saved", "blimp") if source.get(key)]
    if len(given) > 1:
        raise InputError(f"glue.data.{task}: give one of data_files, saved and blimp (got {', '.join(given)})")
    if not given:
        return check_splits(task, hub_splits(task, repo, download), f"{repo} on the hub")
    kind = given[0]
    if kind == "data_files":
        splits = {split: read_split_file(path) for split, path in source["data_files"].items()}
        where = "glue.data." + task + ".data_files"
    elif kind == "saved":
        splits, where = saved_splits(source["saved"]), source["saved"]
    else:
        if task != "cola":
            raise InputError(f"glue.data.{task}.blimp: BLiMP makes an acceptability task in CoLA's format (cola only)")
        blimp = source["blimp"]
        splits = blimp_acceptability(
            blimp["data_dir"],
            blimp["train_pairs_per_paradigm"],
            blimp["validation_pairs_per_paradigm"],
            blimp["subset_seed"],
        )
        where = f"BLiMP pairs from {blimp['data_dir']}"
    return check_splits(task, splits, where)


def save_task(splits: dict[str, pd.DataFrame], out: str | Path) -> None:
    """The splits as one DatasetDict, saved atomically (a killed job leaves no folder)."""
    import datasets

    from sasbert.atomic import atomic_path

    datasets.disable_progress_bars()
    dataset = datasets.DatasetDict(
        {split: datasets.Dataset.from_pandas(frame, preserve_index=False) for split, frame in splits.items()}
    )
    with atomic_path(out, is_dir=True) as tmp:
        dataset.save_to_disk(str(tmp))


def load_prepared(folder: str | Path, task: str):
    import datasets

    folder = Path(folder)
    try:
        dataset = datasets.load_from_disk(str(folder))
    except Exception as err:  # noqa: BLE001
        raise InputError(f"{folder}: not a prepared GLUE task (run `sasbert glue prepare`; {err})") from None
    missing = [s for s in ("train", *task_of(task).eval_splits) if s not in dataset]
    if missing:
        raise InputError(f"{folder}: no {', '.join(missing)} split for GLUE task {task}")
    return dataset


# ------------------------------------------------------------------------------------ fine-tuning


def load_classifier(path: str | Path, num_labels: int):
    """(model, tokenizer) from a checkpoint folder: its encoder with a new classification (or, for
    one label, regression) head, as run_glue's AutoModelForSequenceClassification makes it. A
    masked LM's checkpoint has no pooler (MLM-only pretraining): BERT's is initialised anew too."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from sasbert.checkpoints import check_checkpoint_dir

    path = check_checkpoint_dir(path)
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True, use_fast=True)
    except Exception as err:  # noqa: BLE001 - transformers raises many kinds
        raise InputError(f"{path}: cannot load the tokenizer ({type(err).__name__}: {err})") from None
    if tokenizer.pad_token is None:  # causal LMs (GPT-2): pad with the end-of-text token
        tokenizer.pad_token = tokenizer.eos_token
    try:
        model = AutoModelForSequenceClassification.from_pretrained(
            path,
            num_labels=num_labels,
            problem_type="regression" if num_labels == 1 else "single_label_classification",
            local_files_only=True,
        )
    except Exception as err:  # noqa: BLE001
        raise InputError(f"{path}: cannot load it as a sequence classifier ({type(err).__name__}: {err})") from None
    model.config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer


def finetune(
    checkpoint: str | Path,
    dataset,
    task: str,
    options: dict,
    finetune_seed: int,
    device: str = "auto",
    work_dir: str | Path | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Fine-tune ``checkpoint`` on ``dataset`` (a prepared task) and score it on the task's
    validation splits: (metric rows, prediction rows), without run, seed and step."""
    import tempfile

    import datasets
    from transformers import DataCollatorWithPadding, Trainer, TrainingArguments, set_seed

    from sasbert.checkpoints import resolve_device

    datasets.disable_progress_bars()  # job logs hold plain lines, not redrawn bars
    spec = task_of(task)
    torch_device = resolve_device(device)
    if options["precision"] != "fp32" and torch_device.type != "cuda":
        raise InputError(f"glue.precision: {options['precision']} needs a GPU (this job runs on {torch_device})")
    set_seed(finetune_seed)  # before the head is made: its initialisation is part of the seed
    model, tokenizer = load_classifier(checkpoint, spec.num_labels)
    # a model with fewer positions than max_length reads no further than it can
    positions = getattr(model.config, "max_position_embeddings", None) or options["max_length"]
    max_length = min(options["max_length"], positions)
    if max_length < options["max_length"]:
        log.warning(
            "%s has %d positions: examples are cut at %d pieces, not %d",
            checkpoint,
            positions,
            max_length,
            options["max_length"],
        )

    def encode(batch):
        texts = [batch[c] for c in spec.columns]
        return tokenizer(*texts, truncation=True, max_length=max_length)

    def prepare(split: str, limit):
        part = dataset[split]
        if limit is not None:
            part = part.select(range(min(limit, len(part))))
        return part.map(encode, batched=True, remove_columns=[*spec.columns, "idx"]).rename_column("label", "labels")

    train = prepare("train", options["max_train_samples"])
    evaluation = {split: prepare(split, options["max_eval_samples"]) for split in spec.eval_splits}
    with tempfile.TemporaryDirectory(dir=work_dir) as scratch:
        arguments = TrainingArguments(
            output_dir=scratch,
            learning_rate=options["learning_rate"],
            per_device_train_batch_size=options["batch_size"],
            per_device_eval_batch_size=options["eval_batch_size"],
            num_train_epochs=options["epochs"],
            weight_decay=options["weight_decay"],
            warmup_steps=warmup_steps(options, len(train)),
            lr_scheduler_type="linear",
            seed=finetune_seed,
            bf16=options["precision"] == "bf16",
            fp16=options["precision"] == "fp16",
            use_cpu=torch_device.type == "cpu",
            eval_strategy="no",
            save_strategy="no",
            logging_strategy="steps",
            logging_steps=options["logging_steps"],
            report_to=[],
            disable_tqdm=True,
            dataloader_num_workers=0,
        )
        trainer = Trainer(
            model=model,
            args=arguments,
            train_dataset=train,
            data_collator=DataCollatorWithPadding(tokenizer),
        )
        result = trainer.train()
        log.info("%s: trained %d steps, mean training loss %.4f", task, result.global_step, result.training_loss)
        metrics, predictions = [], []
        for split, part in evaluation.items():
            output = trainer.predict(part)
            logits = np.asarray(output.predictions)
            predicted = logits[:, 0] if spec.num_labels == 1 else logits.argmax(axis=-1)
            labels = np.asarray(part["labels"])
            rows = score(task, split, labels, predicted, options["bootstrap_samples"])
            for row in rows:
                log.info(
                    "%s %s: %s %.4f [%.4f, %.4f] (%d examples)",
                    task,
                    split,
                    row["metric"],
                    row["value"],
                    row["ci_low"],
                    row["ci_high"],
                    row["n_examples"],
                )
            metrics += rows
            predictions.append(
                pd.DataFrame(
                    {
                        "task": task,
                        "split": split,
                        "idx": np.asarray(dataset[split]["idx"][: len(labels)], dtype=np.int64),
                        "label": labels.astype(float),
                        "prediction": predicted.astype(float),
                    }
                )
            )
    metric_table = pd.DataFrame(metrics).assign(finetune_seed=finetune_seed)
    prediction_table = pd.concat(predictions, ignore_index=True).assign(finetune_seed=finetune_seed)
    return metric_table, prediction_table


def labelled(table: pd.DataFrame, columns: list[str], run: str, seed: int, step: int) -> pd.DataFrame:
    """A job's table with the run, seed and step it belongs to, in the table's column order."""
    out = table.assign(run=run, seed=np.int64(seed), step=np.int64(step))
    out["finetune_seed"] = out["finetune_seed"].astype("int64")
    return out[columns]


# ------------------------------------------------------------------------------------------- CLI


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="glue_command", required=True, metavar="COMMAND")
    pr = sub.add_parser(
        "prepare",
        help="one GLUE task's data (hub, local files, a save_to_disk folder or BLiMP) as a checked DatasetDict",
        description="Read a GLUE task (by default from the hub dataset, through the HF cache) and save its train "
        "and validation splits, checked, for the fine-tuning jobs to read offline.",
    )
    pr.add_argument("--task", required=True, choices=list(TASKS))
    pr.add_argument(
        "--hub-dataset", default=None, help="the hub dataset (default: the config schema's glue.hub_dataset)"
    )
    source = pr.add_mutually_exclusive_group()
    source.add_argument(
        "--split-file",
        nargs=2,
        action="append",
        metavar=("SPLIT", "FILE"),
        help="a local file of one split (give one for train and each validation split)",
    )
    source.add_argument("--saved", metavar="DIR", help="a save_to_disk folder (DatasetDict)")
    source.add_argument("--blimp-dir", metavar="DIR", help="BLiMP .jsonl files: an acceptability task (cola)")
    pr.add_argument("--blimp-options", default="{}", help="with --blimp-dir: glue.data.cola.blimp as JSON")
    pr.add_argument("--offline", action="store_true", help="read the hub dataset from the HF cache only")
    pr.add_argument("--out", required=True, help="the prepared task's folder")

    ft = sub.add_parser(
        "finetune",
        help="fine-tune one checkpoint on one prepared task with one seed; score its validation split(s)",
    )
    ft.add_argument("--checkpoint", required=True, help="HF checkpoint folder (or hub:<repo>@<revision> in the cache)")
    ft.add_argument("--step", type=int, required=True, help="the checkpoint's training step (for the tables)")
    ft.add_argument("--run", default="", help="the run or series name (for the tables)")
    ft.add_argument("--seed", type=int, default=0, help="the run's training seed (for the tables)")
    ft.add_argument("--task", required=True, choices=list(TASKS))
    ft.add_argument("--data", required=True, help="the prepared task (sasbert glue prepare)")
    ft.add_argument("--finetune-seed", type=int, default=0)
    add_option_flags(
        ft,
        "glue",
        [
            ("--max-length", {"type": int}, "pieces per example"),
            ("--learning-rate", {"type": float}, ""),
            ("--batch-size", {"type": int}, "training examples per step"),
            ("--epochs", {"type": float}, ""),
            ("--max-train-samples", {"type": int}, "train on the first n examples"),
            ("--max-eval-samples", {"type": int}, "score the first n examples of each validation split"),
            ("--precision", {"choices": ("fp32", "bf16", "fp16")}, ""),
        ],
    )
    ft.add_argument("--device", default="auto", help="auto (cuda when available), cpu, cuda:0 ...")
    ft.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    ft.add_argument("--out-metrics", required=True, help="metrics parquet")
    ft.add_argument("--out-predictions", required=True, help="predictions parquet")

    ga = sub.add_parser("gather", help="stack the fine-tunes' metrics, add the GLUE average, summarize over seeds")
    ga.add_argument("--inputs", nargs="+", required=True, help="metrics parquet files")
    ga.add_argument("--out", required=True, help="the glue table (tables/glue.parquet)")
    ga.add_argument("--out-summary", help="also the mean and spread over fine-tuning seeds")


def _prepare(args: argparse.Namespace) -> None:
    from sasbert.options import default

    repo = args.hub_dataset or default("glue", "hub_dataset")
    source: dict = {}
    if args.split_file:
        source = {"data_files": dict(args.split_file)}
    elif args.saved:
        source = {"saved": args.saved}
    elif args.blimp_dir:
        try:
            options = json.loads(args.blimp_options)
        except json.JSONDecodeError as err:
            raise InputError(f"--blimp-options: not JSON ({err})") from None
        source = {"blimp": {**options, "data_dir": args.blimp_dir}}
    source = _with_defaults(source)
    splits = load_task(args.task, source, repo, download=not args.offline)
    for split, frame in splits.items():
        log.info("%s %s: %d examples", args.task, split, len(frame))
    save_task(splits, args.out)


def _with_defaults(source: dict) -> dict:
    """A glue.data entry with its defaults from the config schema (what validation fills in)."""
    from sasbert import config as sasconfig

    root = sasconfig.load_schema()
    sasconfig._fill_defaults(source, root["$defs"]["glue_source"], root)
    return source


def run(args: argparse.Namespace) -> None:
    from sasbert.atomic import write_parquet

    if args.glue_command == "prepare":
        _prepare(args)
        return
    if args.glue_command == "gather":
        table, summary = gather(args.inputs)
        write_parquet(table, args.out)
        if args.out_summary:
            write_parquet(summary, args.out_summary)
        return
    from sasbert.checkpoints import resolve_checkpoints

    options = resolve_options(args, "glue")
    if args.threads > 0:
        import torch

        torch.set_num_threads(args.threads)
    ((folder, step),) = resolve_checkpoints([args.checkpoint], [args.step])
    dataset = load_prepared(args.data, args.task)
    log.info(
        "GLUE %s: fine-tuning %s (step %d), seed %d; scored on %s",
        args.task,
        folder,
        step,
        args.finetune_seed,
        " and ".join(task_of(args.task).eval_splits),
    )
    metrics, predictions = finetune(
        folder, dataset, args.task, options, args.finetune_seed, args.device, Path(args.out_metrics).parent
    )
    Path(args.out_metrics).parent.mkdir(parents=True, exist_ok=True)
    write_parquet(labelled(metrics, METRIC_COLUMNS, args.run, args.seed, step), args.out_metrics)
    write_parquet(labelled(predictions, PREDICTION_COLUMNS, args.run, args.seed, step), args.out_predictions)
