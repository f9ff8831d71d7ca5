"""GLUE's tasks and their data: the hub dataset, local files, a saved folder, or BLiMP's pairs as an acceptability task; checked and saved for the fine-tuning jobs."""

from __future__ import annotations

import csv
import dataclasses
import zlib
from pathlib import Path

import numpy as np
import pandas as pd

from sasbert.errors import InputError


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


FILE_FORMATS = (".csv", ".tsv", ".json", ".jsonl", ".parquet")


def task_of(name: str) -> Task:
    if name not in TASKS:
        raise InputError(f"unknown GLUE task {name!r} (choose from {', '.join(TASKS)})")
    return TASKS[name]


def blimp_acceptability(
    data_dir: str | Path, train_pairs_per_paradigm: int, validation_pairs_per_paradigm: int, subset_seed: int = 0
) -> dict[str, pd.DataFrame]:
    """An acceptability task in CoLA's format (``sentence``, ``label``: 1 acceptable, 0 not) from
    BLiMP's minimal pairs: of each paradigm, ``train_pairs_per_paradigm`` pairs for training and
    the next ``validation_pairs_per_paradigm`` for validation, drawn by a generator seeded with
    (subset_seed, crc32(UID)) as BLiMP's subsets are; both sentences of a pair in the same split,
    so no validation sentence has its minimal-pair twin in training."""
    from sasbert.data.blimp_pairs import load_blimp

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
