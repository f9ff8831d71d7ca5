"""BLiMP's minimal pairs (Warstadt et al. 2020): the paradigm files read and checked, and the
deterministic subsets that small runs score. Its own module so that what reads the pairs without
scoring them (GLUE's acceptability task from BLiMP) does not run, nor rerun with, the PLL scorer."""

from __future__ import annotations

import json
import logging
import zlib
from pathlib import Path

import numpy as np
import pandas as pd

from sasbert.errors import InputError
from sasbert.textio import read_lines

log = logging.getLogger(__name__)

REQUIRED_FIELDS = ("sentence_good", "sentence_bad", "UID", "linguistics_term", "pairID")


def read_paradigm_file(path: str | Path) -> list[dict]:
    """Read one BLiMP ``.jsonl`` / ``.jsonl.gz`` file; bad lines raise InputError naming file:line."""
    path = Path(path)
    rows: list[dict] = []
    for lineno, line in read_lines(path):
        if not line.strip():
            continue
        where = f"{path}:{lineno}"
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as err:
            raise InputError(f"{where}: malformed JSON ({err.msg})") from None
        if not isinstance(rec, dict):
            raise InputError(f"{where}: expected a JSON object")
        missing = [f for f in REQUIRED_FIELDS if f not in rec or rec[f] is None]
        if missing:
            raise InputError(f"{where}: missing field(s) {', '.join(missing)}")
        for f in ("sentence_good", "sentence_bad", "UID", "linguistics_term"):
            if not isinstance(rec[f], str):
                raise InputError(f"{where}: field {f} must be a string")
        for f in ("sentence_good", "sentence_bad"):
            if not rec[f].strip():
                raise InputError(f"{where}: {f} is empty")
        rows.append(
            {
                "UID": rec["UID"],
                "pairID": str(rec["pairID"]),
                "linguistics_term": rec["linguistics_term"],
                "sentence_good": rec["sentence_good"],
                "sentence_bad": rec["sentence_bad"],
                "_where": where,
            }
        )
    return rows


def load_blimp(data_dir: str | Path) -> pd.DataFrame:
    """All paradigm files of a data dir as one table (UID, pairID, linguistics_term, sentences)."""
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise InputError(f"{data_dir}: BLiMP data dir not found")
    files = sorted(
        p for p in data_dir.iterdir() if p.is_file() and (p.name.endswith(".jsonl") or p.name.endswith(".jsonl.gz"))
    )
    if not files:
        raise InputError(f"{data_dir}: no *.jsonl or *.jsonl.gz paradigm files")
    rows: list[dict] = []
    for f in files:
        rows.extend(read_paradigm_file(f))
    if not rows:
        raise InputError(f"{data_dir}: the paradigm files hold no pairs")
    df = pd.DataFrame(rows)
    dup = df.duplicated(["UID", "pairID"], keep=False)
    if dup.any():
        d = df[dup].groupby(["UID", "pairID"])["_where"].apply(list).iloc[0]
        raise InputError(f"duplicate pair (UID, pairID) at {' and '.join(d)}")
    terms = df.groupby("UID")["linguistics_term"].nunique()
    if (terms > 1).any():
        uid = terms[terms > 1].index[0]
        where = df.loc[df.UID == uid].drop_duplicates("linguistics_term")["_where"].tolist()
        raise InputError(f"paradigm {uid} has several linguistics_term values ({', '.join(where)})")
    same = df[df["sentence_good"] == df["sentence_bad"]]
    if len(same):
        # PLL(good) > PLL(bad) is false for a tie: such a pair is scored wrong, whatever the model
        counts = same.groupby("UID").size()
        log.warning(
            "%s: %d pair(s) whose two sentences are the same, scored as wrong (a tie): %s (first at %s)",
            data_dir,
            len(same),
            ", ".join(f"{uid} {n}" for uid, n in counts.items()),
            same["_where"].iloc[0],
        )
    return df.drop(columns="_where").reset_index(drop=True)


def subset_pairs(df: pd.DataFrame, n: int | None, seed: int = 0) -> pd.DataFrame:
    """n pairs per paradigm (all when n is None or the paradigm is smaller), deterministic in seed."""
    if n is None:
        return df.reset_index(drop=True)
    if n < 1:
        raise InputError(f"pairs_per_paradigm must be >= 1 or null, got {n}")
    keep: list[np.ndarray] = []
    for uid, idx in df.groupby("UID", sort=True).indices.items():
        if len(idx) <= n:
            keep.append(idx)
            continue
        rng = np.random.default_rng([seed, zlib.crc32(uid.encode("utf-8"))])
        keep.append(np.sort(rng.choice(idx, size=n, replace=False)))
    return df.iloc[np.sort(np.concatenate(keep))].reset_index(drop=True)
