"""Progress a person can read in a log file as well as in a terminal.

In a terminal, tqdm's bar redraws itself in place. In a job's log file the same bar is thousands of
updates joined by carriage returns on one line. Off a terminal, ``progress`` therefore writes one
plain line per update, at most every ``LOG_INTERVAL_S`` seconds, with the count, rate and ETA that
tqdm computes.
"""

from __future__ import annotations

import sys

from tqdm import tqdm

LOG_INTERVAL_S = 30.0


class _Lines:
    """A file for tqdm that turns each redraw ("\\r" + status) into a line of its own."""

    def __init__(self, stream):
        self.stream = stream

    def write(self, text: str) -> None:
        text = text.replace("\r", "").strip()
        if text:
            self.stream.write(text + "\n")

    def flush(self) -> None:
        self.stream.flush()


def is_terminal(stream=None) -> bool:
    stream = sys.stderr if stream is None else stream
    return hasattr(stream, "isatty") and stream.isatty()


def progress(iterable=None, **kwargs):
    """``tqdm(iterable, **kwargs)`` in a terminal; one line every ``LOG_INTERVAL_S`` s elsewhere."""
    if is_terminal():
        return tqdm(iterable, **kwargs)
    kwargs.setdefault("mininterval", LOG_INTERVAL_S)
    kwargs["leave"] = True
    return tqdm(iterable, file=_Lines(sys.stderr), ascii=True, dynamic_ncols=False, ncols=100, **kwargs)
