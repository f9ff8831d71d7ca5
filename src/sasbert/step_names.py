"""The training step a checkpoint's name gives (the conventions of our runs, MultiBERTs, Pythia and
OLMo), for series whose steps are not given. Its own module, below both the hub access and the
checkpoint series, which both read steps from names.

The conventions, and nothing else (``STEP_RULE``): the number after ``step``, else after ``ckpt`` or
``checkpoint``, a ``k`` or ``M`` suffix multiplying it; or a name that is a number alone. Any other
name has no step: ``gpt2-124M``, ``epoch3-5000`` or ``step-1.5k`` would otherwise be read as a
step they are not, so the caller asks for the steps instead."""

from __future__ import annotations

import re
from pathlib import Path

# The number after "step" (step-400, step_20k, step20000-tokens84B), else after "ckpt" or
# "checkpoint" (ckpt-180000, checkpoint-500); "k"/"M" multiply it, as in MultiBERTs' step_2000k.
STEP_IN_NAME = (
    re.compile(r"step[_-]?(\d+)([kKmM]?)(?![A-Za-z0-9]|\.\d)"),
    re.compile(r"(?:ckpt|checkpoint)[_-]?(\d+)([kKmM]?)(?![A-Za-z0-9]|\.\d)"),
)
# for messages: the rule above in one line
STEP_RULE = "the number after 'step', 'ckpt' or 'checkpoint' (k/M multiply it), or a name that is a number alone"
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
    return int(name) if name.isdigit() else None
