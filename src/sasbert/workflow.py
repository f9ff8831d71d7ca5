"""The plan of the training runs that the workflow's rules need: which checkpoints each run saves
and publishes, where its chained jobs (parts) end, and the spec each training job gets.

Pure functions of the validated config (no torch, no paths, no Snakemake): `workflow/rules/
common.smk` turns them into files and jobs, and `tests/test_plan.py` checks every case in
milliseconds (release at any k, parts, extend, shorten, densify, a release from a release).

Terms:
- A run's *start* is 0, or the step k a release run SAS-(k) resumes its parent from.
- Its *schedule* is every step it saves: the shared checkpoint steps, each k a release run starts
  from it (trained from the nearest earlier state when off the shared schedule) and its own start.
- It *publishes* the steps of its schedule from its start on.
- *Parts*: with ``train.job_steps``, a run is a chain of jobs, ending every job_steps steps and at
  each k a release run starts from it (so that run starts as soon as its parent has reached k); the
  run's last job trains the last part and publishes the whole run.
"""

from __future__ import annotations

from sasbert.config import checkpoint_steps as shared_checkpoint_steps
from sasbert.config import model_config
from sasbert.schedules import decay_horizon

# train keys that are not part of a run's spec: resources, the regularizer (given whole under its
# own key) and how the run is cut into jobs
NOT_SPEC_KEYS = ("threads", "gpus", "regularizer", "job_steps")


class RunPlan:
    """The plan of every run of a validated config (``config["runs"]``)."""

    def __init__(self, config: dict):
        self.config = config
        self.runs = {run["name"]: run for run in config["runs"]}
        self.shared_steps = shared_checkpoint_steps(config)
        self.max_steps = config["train"]["max_steps"]
        self.job_steps = config["train"]["job_steps"]

    def start(self, run: str) -> int:
        """The step a run starts at: 0, or a release run's k."""
        parent = self.runs[run].get("resume_from")
        return parent["step"] if parent else 0

    def parent(self, run: str) -> tuple[str, int] | None:
        """(parent run, k) of a release run, None for a run from scratch."""
        parent = self.runs[run].get("resume_from")
        return (parent["run"], parent["step"]) if parent else None

    def release_starts(self, run: str) -> set[int]:
        """The steps k at which release runs start from this run."""
        starts = set()
        for name in self.runs:
            parent = self.parent(name)
            if parent is not None and parent[0] == run:
                starts.add(parent[1])
        return starts

    def schedule(self, run: str) -> list[int]:
        """Every step the run saves (see the module docstring)."""
        return sorted(set(self.shared_steps) | self.release_starts(run) | {self.start(run)})

    def published(self, run: str) -> list[int]:
        """The checkpoints the run publishes: its schedule from its start on."""
        return [s for s in self.schedule(run) if s >= self.start(run)]

    def part_ends(self, run: str) -> list[int]:
        """Where the run's chained jobs end, before its last job (none without parts or releases)."""
        start = self.start(run)
        ends = set(range(start + self.job_steps, self.max_steps, self.job_steps)) if self.job_steps else set()
        return sorted(e for e in ends | self.release_starts(run) if start < e < self.max_steps)

    def previous_end(self, run: str, end: int) -> int | None:
        """The end of the part before the one that ends at ``end`` (None for the first part)."""
        earlier = [e for e in self.part_ends(run) if e < int(end)]
        return earlier[-1] if earlier else None

    def publish_after(self, run: str, end: int) -> int:
        """The step after which the part ending at ``end`` publishes: the previous part's end, or
        the step before the run's start."""
        previous = self.previous_end(run, end)
        return previous if previous is not None else self.start(run) - 1

    def published_by(self, run: str, end: int | None = None) -> list[int]:
        """The steps whose checkpoints a training job publishes: the whole run's, or with ``end``
        those of the part that ends there."""
        steps = self.published(run)
        if end is None:
            return steps
        return [s for s in steps if self.publish_after(run, end) < s <= int(end)]

    def part_holding(self, run: str, step: int) -> int | None:
        """The end of the part whose job publishes ``step``, or None when the run's last job does."""
        ends = [e for e in self.part_ends(run) if e >= step]
        return ends[0] if ends else None

    def spec(self, run: str, seed: int) -> dict:
        """Everything that determines a run's weights, as the pretrain CLI takes it (``--spec``)."""
        train = {k: v for k, v in self.config["train"].items() if k not in NOT_SPEC_KEYS}
        return {
            **train,
            "model": model_config(self.config),
            "seed": int(seed),
            "lambda": self.runs[run]["lambda"],
            "regularizer": self.config["train"]["regularizer"],
            "checkpoint_steps": self.schedule(run),
        }

    def part_spec(self, run: str, seed: int, end: int) -> dict:
        """A part's spec: the run's, ending at the part's end, with the LR horizon made explicit so
        that extending the run leaves its earlier parts' jobs as they are."""
        spec = self.spec(run, seed)
        spec["decay_horizon"] = decay_horizon(spec)
        spec["max_steps"] = int(end)
        spec["checkpoint_steps"] = [s for s in spec["checkpoint_steps"] if s <= int(end)]
        return spec
