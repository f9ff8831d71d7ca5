"""Reading text inputs (plain or gzip) with errors that name the file: the one reader of every
stage (corpus text and CoNLL-U, the probe's treebank, BLiMP's jsonl)."""

from __future__ import annotations

import glob
import gzip
import io
import zlib
from collections.abc import Iterator, Sequence
from pathlib import Path

from sasbert.errors import InputError

GZIP_MAGIC = b"\x1f\x8b"


def is_gzip(path: str | Path) -> bool:
    """Named .gz, or gzip inside whatever the name (a treebank saved as .conllu but compressed)."""
    path = Path(path)
    if path.suffix == ".gz":
        return True
    with open(path, "rb") as handle:
        return handle.read(2) == GZIP_MAGIC


def open_text(path: str | Path) -> io.TextIOBase:
    """Open a plain or gzip text file as UTF-8 (a leading byte-order mark read as nothing); a missing,
    unreadable or binary file is an InputError."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    try:
        if is_gzip(path):
            handle = gzip.open(path, "rt", encoding="utf-8-sig", newline="")
        else:
            handle = open(path, encoding="utf-8-sig", newline="")
    except OSError as err:
        raise InputError(f"{path}: cannot open: {err}") from err
    return handle


def read_lines(path: str | Path) -> Iterator[tuple[int, str]]:
    """Yield (1-based line number, line without its newline); an error names the file and the line
    it stopped at (a bad byte's line, or the line a truncated or corrupt gzip ends in)."""
    number = 0
    with open_text(path) as handle:
        try:
            for number, line in enumerate(handle, start=1):
                if "\x00" in line:
                    raise InputError(f"{path}:{number}: binary data (NUL byte); is this a text file?")
                yield number, line.rstrip("\r\n")
        except UnicodeDecodeError as err:
            # err.start counts from the start of a decoding chunk, not of the file: find the spot.
            line, offset, reason = _first_bad_utf8(path) or (number + 1, "?", err.reason)
            raise InputError(f"{path}:{line}: not UTF-8 text ({reason} at byte {offset} of the file)") from None
        except (OSError, EOFError, zlib.error) as err:  # gzip.BadGzipFile is an OSError
            raise InputError(f"{path}:{number + 1}: cannot read: {err}") from None


def _first_bad_utf8(path: str | Path) -> tuple[int, int, str] | None:
    """(line number, byte offset in the file, reason) of the first bytes that are not UTF-8; None
    when the file cannot be read that far (a corrupt gzip: the caller reports where it stopped)."""
    opener = gzip.open if is_gzip(path) else open
    offset = 0
    try:
        with opener(path, "rb") as handle:
            for number, raw in enumerate(handle, start=1):
                try:
                    raw.decode("utf-8")
                except UnicodeDecodeError as err:
                    return number, offset + err.start, err.reason
                offset += len(raw)
    except (OSError, EOFError, zlib.error):
        return None
    return None


def blocks(path: str | Path) -> Iterator[tuple[int, list[str]]]:
    """Yield (line number of its first line, lines) of each blank-line separated block (CoNLL-U
    sentences); lines as ``read_lines`` gives them."""
    start, block = 0, []
    for number, line in read_lines(path):
        if line.strip():
            if not block:
                start = number
            block.append(line)
        elif block:
            yield start, block
            block = []
    if block:
        yield start, block


def is_pattern(path: str | Path) -> bool:
    return any(c in str(path) for c in "*?[")


def expand_paths(patterns: Sequence[str | Path], what: str = "file") -> list[str]:
    """Plain paths as given; a pattern with * ? or [ becomes its sorted matches (``**`` recursive);
    a pattern that matches nothing is an InputError naming it and ``what`` it should match."""
    paths = []
    for pattern in patterns:
        if is_pattern(pattern):
            matches = sorted(glob.glob(str(pattern), recursive=True))
            if not matches:
                raise InputError(f"{pattern}: the pattern matches no {what}")
            paths.extend(matches)
        else:
            paths.append(str(pattern))
    return paths
