"""How BLiMP's summary becomes the all-runs table ``blimp`` (``sasbert.measure.registry``,
``sasbert.analysis.gather``): the summary as it is, its 95% intervals ``ci_low, ci_high`` null in
tables written before them. Not imported by BLiMP's jobs."""

from __future__ import annotations

from sasbert.measure.blimp.tables import SUMMARY_COLUMNS
from sasbert.measure.registry import AllRunsTable

ALL_RUNS = {
    "summary": AllRunsTable(
        required=[c for c in SUMMARY_COLUMNS if c not in ("ci_low", "ci_high")],
        what="BLiMP summary",
        columns=SUMMARY_COLUMNS,
    ),
}
