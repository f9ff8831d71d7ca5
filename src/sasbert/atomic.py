"""Atomic outputs: write to a temporary sibling, rename into place when complete.

Snakemake takes any existing output file as done, so a job killed mid-write must never leave
the final path behind. Every stage writes through these helpers.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path


def _temp_sibling(path: Path, is_dir: bool) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    prefix = f".{path.name}.tmp-"
    # A write killed before its rename (kill -9, a lost node) leaves its temporary behind; each
    # output has one writer (Snakemake's), so a new write of it clears them.
    for stale in path.parent.glob(f"{glob.escape(prefix)}*"):
        _remove(stale)
    if is_dir:
        return Path(tempfile.mkdtemp(prefix=prefix, dir=path.parent))
    fd, name = tempfile.mkstemp(prefix=prefix, dir=path.parent)
    os.close(fd)
    return Path(name)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, is_dir: bool = False) -> Iterator[Path]:
    """Yield a temporary path to write; on success it replaces ``path``, on error it is deleted."""
    final = Path(path)
    tmp = _temp_sibling(final, is_dir)
    try:
        yield tmp
    except BaseException:
        _remove(tmp)
        raise
    # mkstemp and mkdtemp make owner-only temporaries (0600, 0700); the result gets the mode any
    # new file or folder would, so a group sharing a results folder can read it.
    os.chmod(tmp, (0o777 if is_dir else 0o666) & ~_umask())
    if is_dir and final.exists():
        _remove(final)
    os.replace(tmp, final)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_parquet(df, path: str | os.PathLike) -> None:
    """Write a pandas DataFrame to parquet atomically."""
    with atomic_path(path) as tmp:
        df.to_parquet(tmp, index=False)


def write_text(text: str, path: str | os.PathLike) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)
