"""What each run is, read off its lambda schedule, never its name: ``runs.parquet``'s rows.

``runs.parquet``: one row per configured run, in config order, then one per series (checkpoints
  trained elsewhere, ``kind`` external): ``run, order, kind, lambda, lambda_schedule, parent,
  start_step, release_step, label, tokens_per_step`` (a series' own, where the config gives it; a
  trained run's, train.batch_size x tokenizer.seq_len, from the workflow).
  A run's ``kind`` comes from the lambda
  schedule, never from the name: ``baseline`` (constant 0), ``sas_plus`` (constant < 0, promotes
  SAS), ``sas_minus`` (constant > 0, suppresses SAS), ``release`` (stages ending in 0 after a
  nonzero weight: SAS-(k), or SAS+(k) when that weight is negative), ``other`` (any other staged
  schedule). ``lambda`` is the constant, or for a release run the weight before the release;
  ``lambda_schedule`` the schedule as JSON; ``parent``/``start_step`` the run it resumes from and
  at which step (``start_step`` 0 otherwise); ``release_step`` (k) the step from which lambda is 0
  (release runs only); ``label`` a short legend text.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import numpy as np
import pandas as pd

from sasbert.errors import InputError
from sasbert.schedules import final_lambda

KINDS = ("baseline", "sas_plus", "sas_minus", "release", "other", "external")


RUN_COLUMNS = [
    "run",
    "order",
    "kind",
    "lambda",
    "lambda_schedule",
    "parent",
    "start_step",
    "release_step",
    "label",
    "tokens_per_step",
    "group",
]


def describe_run(run: dict, order: int = 0) -> dict:
    """One ``runs`` row for a config run ``{name, lambda, resume_from?}`` (see module docstring)."""
    name = run["name"]
    schedule = run["lambda"]
    parent = run.get("resume_from") or None
    start_step = int(parent["step"]) if parent else 0
    release_step = None
    if isinstance(schedule, (int, float)) and not isinstance(schedule, bool):
        value = float(schedule)
        kind = "baseline" if value == 0 else ("sas_plus" if value < 0 else "sas_minus")
    elif isinstance(schedule, list) and schedule:
        final = final_lambda(schedule)
        nonzero = [i for i, s in enumerate(schedule) if float(s["value"]) != 0]
        if not nonzero:
            kind, value = "baseline", 0.0
        elif final == 0.0:
            last = schedule[nonzero[-1]]
            kind, value, release_step = "release", float(last["value"]), int(last["until_step"])
        else:
            kind, value = "other", final
    else:
        raise InputError(f"runs[{order}] ({name}): lambda must be a number or a list of stages")
    if kind == "baseline":
        label = f"{name} (λ=0)"
    elif kind == "sas_plus":
        label = f"{name} (SAS+, λ={value:g})"
    elif kind == "sas_minus":
        label = f"{name} (SAS−, λ={value:g})"
    elif kind == "release":
        label = f"{name} (SAS{'−' if value > 0 else '+'}({release_step}))"
    else:
        label = f"{name} (staged λ)"
    return {
        "run": name,
        "order": order,
        "kind": kind,
        "lambda": value,
        "lambda_schedule": json.dumps(schedule),
        "parent": parent["run"] if parent else None,
        "start_step": start_step,
        "release_step": release_step,
        "label": label,
        "tokens_per_step": run.get("tokens_per_step"),
        "group": name,
    }


def describe_series(series: dict, order: int) -> dict:
    """One ``runs`` row for a config series (checkpoints trained elsewhere): kind ``external``."""
    return {
        "run": series["name"],
        "order": order,
        "kind": "external",
        "lambda": np.nan,
        "lambda_schedule": None,
        "parent": None,
        "start_step": 0,
        "release_step": None,
        "label": f"{series['name']} (external)",
        "tokens_per_step": series.get("tokens_per_step"),
        "group": series.get("group") or series["name"],
    }


def runs_table(runs: Sequence[dict], series: Sequence[dict] = ()) -> pd.DataFrame:
    """The ``runs`` table of a config's ``runs`` (kinds from lambda, in config order) and then its
    ``series`` (kind external)."""
    names = [r.get("name") for r in [*runs, *series]]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise InputError(f"runs: duplicate run or series name(s) {', '.join(dup)}")
    trained = {r.get("name") for r in runs}
    for i, one in enumerate(series):
        if one.get("group") in trained:
            raise InputError(
                f"series[{i}] ({one['name']}): group {one['group']!r} is a trained run's name; a run's "
                "seeds are a group of their own (interventions are never pooled)"
            )
    rows = [describe_run(run, i) for i, run in enumerate(runs)]
    rows += [describe_series(one, len(runs) + i) for i, one in enumerate(series)]
    df = pd.DataFrame(rows, columns=RUN_COLUMNS)
    df["start_step"] = df["start_step"].astype("int64")
    df["release_step"] = df["release_step"].astype("Int64")
    df["tokens_per_step"] = df["tokens_per_step"].astype("Int64")
    return df
