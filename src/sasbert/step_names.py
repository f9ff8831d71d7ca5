"""The training step a checkpoint's name gives (the conventions of our runs, MultiBERTs, Pythia and
OLMo), for series whose steps are not given. Its own module, below both the hub access and the
checkpoint series, which both read steps from names."""

from __future__ import annotations

import re
from pathlib import Path

# The number after "step" (step-400, step_20k, step20000-tokens84B), else after "ckpt" or
# "checkpoint" (ckpt-180000, checkpoint-500); "k"/"M" multiply it, as in MultiBERTs' step_2000k.
STEP_IN_NAME = (
    re.compile(r"step[_-]?(\d+)([kKmM]?)(?![A-Za-z0-9])"),
    re.compile(r"(?:ckpt|checkpoint)[_-]?(\d+)([kKmM]?)(?![A-Za-z0-9])"),
)
STEP_SUFFIX = {"": 1, "k": 1_000, "m": 1_000_000}
COMMIT_HASH = re.compile(r"[0-9a-f]{40}")


def step_from_name(path: str | Path) -> int | None:
    """The training step a checkpoint folder's name gives (rules in the module docstring), or None."""
    name = Path(path).name
    if COMMIT_HASH.fullmatch(name):
        return None
    for pattern in STEP_IN_NAME:
        matches = pattern.findall(name)
        if matches:
            digits, suffix = matches[-1]
            return int(digits) * STEP_SUFFIX[suffix.lower()]
    numbers = re.findall(r"\d+", name)
    return int(numbers[-1]) if numbers else None
