"""GLUE's options: the config's ``glue`` section, split into what chooses the fine-tuning jobs
(the workflow's) and what one job trains with (``FinetuneOptions``), every default the schema's."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from sasbert.options import defaults as schema_defaults

DEFAULTS = schema_defaults("glue")  # the config schema's: defaults live there only
# the keys that choose which jobs run (read where the DAG is built); a job gets the rest
SELECTION_KEYS = ("tasks", "runs", "steps", "every_steps", "finetune_seeds", "hub_dataset", "data")


@dataclasses.dataclass(frozen=True)
class FinetuneOptions:
    """How one checkpoint is fine-tuned and scored (run_glue's conventions): docs/glue.md."""

    max_length: int = DEFAULTS["max_length"]
    learning_rate: float = DEFAULTS["learning_rate"]
    batch_size: int = DEFAULTS["batch_size"]
    eval_batch_size: int = DEFAULTS["eval_batch_size"]
    epochs: float = DEFAULTS["epochs"]
    weight_decay: float = DEFAULTS["weight_decay"]
    warmup_ratio: float = DEFAULTS["warmup_ratio"]
    precision: str = DEFAULTS["precision"]
    max_train_samples: int | None = DEFAULTS["max_train_samples"]
    max_eval_samples: int | None = DEFAULTS["max_eval_samples"]
    bootstrap_samples: int = DEFAULTS["bootstrap_samples"]
    logging_steps: int = DEFAULTS["logging_steps"]

    @classmethod
    def from_section(cls, section: Mapping) -> FinetuneOptions:
        """The options of a ``glue`` section (its selection keys are the workflow's, not a job's)."""
        return cls(**{k: v for k, v in section.items() if k not in SELECTION_KEYS})
