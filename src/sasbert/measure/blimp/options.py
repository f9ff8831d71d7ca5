"""BLiMP's options: the config's ``blimp`` section as one object, every default the schema's."""

from __future__ import annotations

import dataclasses

from sasbert.errors import InputError
from sasbert.measure.blimp.tables import BLIMP_DEFAULTS


@dataclasses.dataclass(frozen=True)
class BlimpOptions:
    """Which pairs are scored (``pairs_per_paradigm`` of each paradigm, drawn with ``subset_seed``;
    None: all), the PLL ``variant``, the batch, and which checkpoints (``every_steps``):
    docs/configuration.md. ``data_dir`` is the section's folder of pairs (no default); the CLI reads
    the pairs its ``--data-dir`` names."""

    data_dir: str | None = None
    pairs_per_paradigm: int | None = BLIMP_DEFAULTS["pairs_per_paradigm"]
    subset_seed: int = BLIMP_DEFAULTS["subset_seed"]
    variant: str = BLIMP_DEFAULTS["variant"]
    batch_size: int = BLIMP_DEFAULTS["batch_size"]
    every_steps: int | None = BLIMP_DEFAULTS["every_steps"]

    def check(self) -> None:
        """The bounds the schema gives, for options set outside a config (flags, Python)."""
        if self.batch_size < 1:
            raise InputError(f"--batch-size must be >= 1, got {self.batch_size}")
