"""The lambda schedule of a run: one definition, used by training (the weight of each step) and
by the analysis (what kind of run a schedule makes). Torch-free, so the tables jobs stay light."""

from __future__ import annotations

import math


def lambda_at(schedule, step: int) -> float:
    """The regularizer weight at ``step``: a constant, or stages [{value, until_step}, ..., {value}]."""
    if isinstance(schedule, (int, float)):
        return float(schedule)
    for stage in schedule:
        until = stage.get("until_step")
        if until is None or step < until:
            return float(stage["value"])
    return 0.0  # past the last stage's until_step


def final_lambda(schedule) -> float:
    """The weight after every stage has ended (what a run trains with at the end)."""
    return lambda_at(schedule, math.inf)
