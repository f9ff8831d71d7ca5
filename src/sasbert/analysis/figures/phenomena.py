"""Figure 4b (``fig4b_phenomena``): BLiMP accuracy per phenomenon across checkpoints (mean over
seeds), one heat map per constant-lambda run, onset columns marked above."""

from __future__ import annotations

import numpy as np
import pandas as pd

from sasbert.analysis.figures.common import (
    FigureOptions,
    _empty_figure,
    _finish,
    _shown_runs,
    new_figure,
    onset_summary,
)


def draw(tables: dict[str, pd.DataFrame], phases: pd.DataFrame, options: FigureOptions):
    """BLiMP accuracy per phenomenon across checkpoints, one heat map per constant-lambda run."""
    import seaborn as sns
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import TwoSlopeNorm

    runs = tables["runs"]
    blimp = tables["blimp"]
    rows = blimp[blimp["level"] == "phenomenon"]
    if not rows.empty:
        variants = sorted(rows["variant"].unique())
        variant = options.blimp_variant or variants[0]
        rows = rows[rows["variant"] == variant]
    shown, notes = _shown_runs(runs, set(rows["run"]))
    if not shown:
        return _empty_figure(options, "no BLiMP phenomenon rows", notes)
    phenomena = sorted(rows["name"].unique())
    height = 1.3 + 0.17 * len(phenomena)
    fig = new_figure(options.width, height)
    axes = np.atleast_1d(fig.subplots(1, len(shown), squeeze=False)[0])
    cmap = sns.color_palette("vlag", as_cmap=True)
    # Diverging at chance (0.5), symmetric, just wide enough for the data.
    spread = float((rows[rows["run"].isin(shown)]["accuracy"] - 0.5).abs().max())
    spread = min(0.5, max(0.1, np.ceil(spread * 20) / 20))
    norm = TwoSlopeNorm(vcenter=0.5, vmin=0.5 - spread, vmax=0.5 + spread)
    for ax, run in zip(axes, shown):
        df = rows[rows["run"] == run]
        n_seeds = df["seed"].nunique()
        mat = df.pivot_table(index="name", columns="step", values="accuracy", aggfunc="mean")
        mat = mat.reindex(phenomena)
        sns.heatmap(mat, ax=ax, cmap=cmap, norm=norm, cbar=False, linewidths=0.0, xticklabels=True, yticklabels=True)
        ax.grid(False)
        if ax is not axes[0]:
            ax.tick_params(axis="y", labelleft=False)
        ax.collections[-1].set_gid(f"phenomena:{run}")
        ax.set_title(f"{run} ({n_seeds} seed{'s' if n_seeds != 1 else ''})", fontsize=8.5)
        ax.set_xlabel("step")
        ax.set_ylabel("")
        steps = list(mat.columns)
        every = max(1, int(np.ceil(len(steps) / 7)))
        ax.set_xticks(np.arange(len(steps))[::every] + 0.5)
        ax.set_xticklabels([str(int(s)) for s in steps[::every]], rotation=90, fontsize=6.5)
        ax.tick_params(axis="y", labelsize=6.5, length=0)
        for event, symbol in (("structure_onset", "^"), ("capabilities_onset", "o")):
            s = onset_summary(phases, run, event)
            if s is None or not steps:
                continue
            col = int(np.argmin([abs(x - s[0]) for x in steps]))
            ax.plot(
                [col + 0.5],
                [-0.45],
                ls="",
                marker=symbol,
                ms=5.5,
                color="black",
                clip_on=False,
                transform=ax.transData,
                gid=f"onset:{event}:{run}",
            )
        ax.set_ylim(len(phenomena), -0.9)
    cbar = fig.colorbar(ScalarMappable(norm=norm, cmap=cmap), ax=axes, shrink=0.85, pad=0.01, aspect=30)
    cbar.set_label("accuracy (white: chance)", fontsize=7.5)
    cbar.ax.tick_params(labelsize=6.5)
    fig.suptitle("BLiMP accuracy per phenomenon (mean over seeds); ▲ structure / ● capabilities onset", fontsize=8)
    _finish(fig, [], notes)
    return fig
