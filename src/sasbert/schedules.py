"""A run's schedules, defined once: lambda (used by training for each step's weight and by the
analysis for the kind of run) and the LR horizon (used by training and by the Snakefile for the
jobs of a run split into parts). Torch-free, so the DAG and the tables jobs stay light."""

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


def is_zero(schedule) -> bool:
    """True when the weight is 0 at every step (a run that never computes the regularizer)."""
    if isinstance(schedule, (int, float)):
        return schedule == 0
    return all(stage["value"] == 0 for stage in schedule)


def final_lambda(schedule) -> float:
    """The weight after every stage has ended (what a run trains with at the end)."""
    return lambda_at(schedule, math.inf)


def decay_horizon(spec: dict) -> int:
    """Where the LR reaches 0: ``decay_horizon``, or max_steps when it is null (the schedule then
    depends on max_steps, so extending such a run retrains it)."""
    return spec.get("decay_horizon") or spec["max_steps"]
