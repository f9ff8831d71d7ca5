"""Reading text inputs (plain or gzip) with errors that name the file."""

from __future__ import annotations

import gzip
import io
from collections.abc import Iterator
from pathlib import Path

from sasbert.errors import InputError


def open_text(path: str | Path) -> io.TextIOBase:
    """Open a plain or .gz text file as UTF-8; a missing, unreadable or binary file is an InputError."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    try:
        if path.suffix == ".gz":
            handle = gzip.open(path, "rt", encoding="utf-8", newline="")
        else:
            handle = open(path, encoding="utf-8", newline="")
    except OSError as err:
        raise InputError(f"{path}: cannot open: {err}") from err
    return handle


def read_lines(path: str | Path) -> Iterator[tuple[int, str]]:
    """Yield (1-based line number, line without its newline)."""
    with open_text(path) as handle:
        try:
            for number, line in enumerate(handle, start=1):
                if "\x00" in line:
                    raise InputError(f"{path}:{number}: binary data (NUL byte); is this a text file?")
                yield number, line.rstrip("\r\n")
        except UnicodeDecodeError as err:
            raise InputError(f"{path}: not UTF-8 text ({err.reason} at byte {err.start})") from err
        except (OSError, EOFError) as err:  # gzip.BadGzipFile is an OSError
            raise InputError(f"{path}: cannot read: {err}") from err
