"""The one list of figures: the tables each reads, its number and its place in the report. The CLI,
the workflow's rules and the report read it.

Its own module, imported by no figure: adding or rewording an entry redraws no other figure (each
figure rule's code is its module, the shared drawing code and the CLI, not this list); a new
entry's tables are its rule's inputs.
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class FigureSpec:
    """One figure: how it is drawn, the gathered tables it reads, and its place in the report."""

    module: str  # sasbert.analysis.figures.<module>, whose draw() makes it
    tables: tuple[str, ...]
    number: str
    section: str
    content: str
    # read when given: the glue table where GLUE was run, an optional measure's where it is enabled
    optional_tables: tuple[str, ...] = ()


def figure_rule(name: str) -> str:
    """The workflow rule that makes figure ``name``: fig1_training -> figure_training."""
    return "figure_" + name.split("_", 1)[1]


# The one list of figures: the CLI, the workflow's rules and the report all read it.
FIGURES: dict[str, FigureSpec] = {
    "fig1_training": FigureSpec(
        "training",
        ("runs", "train", "loss", "uas", "blimp"),
        "1",
        "1. Training dynamics",
        "baseline: loss, UAS, BLiMP (and GLUE), complexity",
        ("complexity", "glue"),
    ),
    "fig2_regularizers": FigureSpec(
        "regularizers",
        ("runs", "loss", "uas", "blimp"),
        "2",
        "2. Regularizers",
        "baseline vs SAS+ vs SAS-, and their use of context",
        ("context", "glue"),
    ),
    "fig3_release": FigureSpec(
        "release",
        ("runs", "loss", "uas", "blimp"),
        "3",
        "3. Release SAS-(k)",
        "release runs, final values against k",
        ("glue",),
    ),
    "fig4a_heads": FigureSpec(
        "heads", ("runs", "heads", "uas"), "4a", "4. Heads and phenomena", "per-head UAS across checkpoints"
    ),
    "fig4b_phenomena": FigureSpec(
        "phenomena", ("runs", "blimp"), "4b", "4. Heads and phenomena", "BLiMP per phenomenon across checkpoints"
    ),
    "fig5_seeds": FigureSpec(
        "seeds",
        ("runs", "loss", "uas", "blimp", "seeds"),
        "5",
        "5. Across seeds",
        "UAS vs loss vs BLiMP per seed group",
    ),
}
