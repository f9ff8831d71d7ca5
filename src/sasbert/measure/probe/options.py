"""The probe's options: the config's ``probe`` section as one object, every default the schema's."""

from __future__ import annotations

import dataclasses

from sasbert.errors import InputError
from sasbert.options import defaults as schema_defaults

DEFAULTS = schema_defaults("probe")  # the config schema's: defaults live there only
SCORINGS = ("spec", "authors")


@dataclasses.dataclass(frozen=True)
class ProbeOptions:
    """How the heads are scored (``scoring``: the method's, or the authors'), which sentences fit
    (``max_pieces``), how many are read (``max_sentences``), the batch, and which relations count
    towards the "mean" row (``min_relation_count``): docs/configuration.md. ``treebank`` is the
    section's path of the gold treebank (no default); the CLI reads the treebank its ``--treebank``
    names."""

    treebank: str | None = None
    scoring: str = DEFAULTS["scoring"]
    max_pieces: int = DEFAULTS["max_pieces"]
    max_sentences: int | None = DEFAULTS["max_sentences"]
    batch_size: int = DEFAULTS["batch_size"]
    min_relation_count: int = DEFAULTS["min_relation_count"]

    def check(self) -> None:
        """The bounds the schema gives, for options set outside a config (flags, Python)."""
        for flag, value, low in (
            ("--max-pieces", self.max_pieces, 3),
            ("--batch-size", self.batch_size, 1),
            ("--min-relation-count", self.min_relation_count, 0),
            ("--max-sentences", self.max_sentences, 1),
        ):
            if value is not None and value < low:
                raise InputError(f"{flag} must be >= {low} (got {value})")
        if self.scoring not in SCORINGS:
            raise InputError(f"--scoring must be one of {', '.join(SCORINGS)} (got {self.scoring!r})")
