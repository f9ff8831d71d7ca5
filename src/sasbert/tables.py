"""Reading the pipeline's parquet tables, with errors that name the file and what is missing."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from sasbert.errors import InputError


def read_table(path: str | Path, required: Sequence[str] = (), what: str = "") -> pd.DataFrame:
    """A parquet table that must exist, be readable and have the ``required`` columns."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: file not found")
    try:
        table = pd.read_parquet(path)
    except Exception as err:  # noqa: BLE001 - pyarrow raises many kinds
        raise InputError(f"{path}: cannot read parquet ({err})") from None
    missing = [c for c in required if c not in table.columns]
    if missing:
        raise InputError(f"{path}: not a {what or 'valid'} table (missing {', '.join(missing)})")
    return table
