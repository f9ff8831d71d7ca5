"""Figure 4a (``fig4a_heads``): per-head UAS (relation "all", the better of the two directions) as
layer x head heat maps, one row per constant-lambda run (first seed), one column per selected
checkpoint: the first and last, the checkpoints nearest the first run's structure onset,
breakthrough and capabilities onset, the rest spread evenly; the probe's best head is boxed."""

from __future__ import annotations

import numpy as np
import pandas as pd

from sasbert.analysis.curves import select_treebank
from sasbert.analysis.figures.common import (
    FigureOptions,
    _empty,
    _empty_figure,
    _finish,
    _shown_runs,
    new_figure,
    onset_summary,
)

# ----------------------------------------------------------------------------------------------
# Figure 4: per-head UAS heat maps; BLiMP per phenomenon


def select_checkpoints(steps, phases: pd.DataFrame, run: str | None, seed: int | None, n: int) -> list[int]:
    """``n`` checkpoints: first, last, those nearest the run's onsets, the rest evenly spread."""
    steps = sorted(int(s) for s in set(steps))
    if len(steps) <= n:
        return steps
    chosen = {steps[0], steps[-1]}
    if run is not None:
        for event in ("structure_onset", "breakthrough", "capabilities_onset"):
            s = onset_summary(phases, run, event, seed)
            if s is not None:
                chosen.add(min(steps, key=lambda x: abs(x - s[0])))
    for idx in np.linspace(0, len(steps) - 1, n + 2):
        if len(chosen) >= n:
            break
        chosen.add(steps[int(round(idx))])
    extra = iter(s for s in steps if s not in chosen)
    while len(chosen) < n:
        chosen.add(next(extra))
    return sorted(chosen)[:n] if len(chosen) > n else sorted(chosen)


def _onset_tags(phases, run, seed, steps) -> dict[int, str]:
    """Checkpoint -> '▲' / '●' for the checkpoints nearest a run's onsets."""
    tags: dict[int, str] = {}
    for event, symbol in (("structure_onset", "▲"), ("capabilities_onset", "●")):
        s = onset_summary(phases, run, event, seed)
        if s is not None and len(steps):
            near = min(steps, key=lambda x: abs(x - s[0]))
            tags[near] = tags.get(near, "") + symbol
    return tags


def draw(tables: dict[str, pd.DataFrame], phases: pd.DataFrame, options: FigureOptions):
    """Per-head UAS (layer x head) at selected checkpoints, one row per constant-lambda run."""
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize
    from matplotlib.patches import Rectangle
    from matplotlib.ticker import MaxNLocator

    runs = tables["runs"]
    heads = select_treebank(tables["heads"], options.treebank)
    uas = select_treebank(tables["uas"], options.treebank) if "uas" in tables else None
    shown, notes = _shown_runs(runs, set(heads["run"]))
    if not shown:
        return _empty_figure(options, "no per-head probe scores (heads table is empty)", notes)
    first = heads[heads["run"] == shown[0]]
    seed = int(first["seed"].min())
    steps = select_checkpoints(first[first["seed"] == seed]["step"], phases, shown[0], seed, options.heads_checkpoints)
    n_layers = int(heads["layer"].max()) + 1
    n_heads = int(heads["head"].max()) + 1
    best = heads.groupby(["run", "seed", "step", "layer", "head"], as_index=False)["accuracy"].max()
    vmax = float(np.ceil(best["accuracy"].max() * 10) / 10) if len(best) else 1.0
    norm = Normalize(0.0, max(vmax, 0.1))
    cmap = "mako_r"
    import seaborn as sns

    cmap = sns.color_palette(cmap, as_cmap=True)
    panel = min(1.15, (options.width - 0.9) / len(steps))
    height = len(shown) * panel * max(0.55, n_layers / max(n_heads, 1)) + 1.0
    fig = new_figure(options.width, height)
    axes = np.atleast_2d(fig.subplots(len(shown), len(steps), squeeze=False))
    tags = _onset_tags(phases, shown[0], seed, steps)
    for i, run in enumerate(shown):
        sub = best[(best["run"] == run)]
        run_seed = seed if seed in set(sub["seed"]) else (int(sub["seed"].min()) if len(sub) else seed)
        for j, step in enumerate(steps):
            ax = axes[i, j]
            ax.grid(False)
            cell = sub[(sub["seed"] == run_seed) & (sub["step"] == step)]
            if cell.empty:
                _empty(ax, "—")
            else:
                grid = np.full((n_layers, n_heads), np.nan)
                grid[cell["layer"].astype(int), cell["head"].astype(int)] = cell["accuracy"]
                im = ax.imshow(grid, cmap=cmap, norm=norm, origin="lower", aspect="auto", interpolation="nearest")
                im.set_gid(f"heads:{run}:{step}")
                if uas is not None:
                    b = uas[(uas["run"] == run) & (uas["seed"] == run_seed) & (uas["step"] == step)]
                    if not b.empty and pd.notna(b["layer"].iloc[0]):
                        ax.add_patch(
                            Rectangle(
                                (b["head"].iloc[0] - 0.5, b["layer"].iloc[0] - 0.5),
                                1,
                                1,
                                fill=False,
                                ec="#D55E00",
                                lw=1.2,
                                gid=f"best_head:{run}:{step}",
                            )
                        )
                ax.xaxis.set_major_locator(MaxNLocator(4, integer=True))
                ax.yaxis.set_major_locator(MaxNLocator(4, integer=True))
                ax.tick_params(labelsize=6.5, length=2, pad=1)
            if i == 0:
                tag = tags.get(step, "")
                ax.set_title(f"step {step}{' ' + tag if tag else ''}", fontsize=8, fontweight="normal")
            if j == 0:
                ax.set_ylabel(f"{run}\nlayer", fontsize=7.5)
            else:
                ax.set_yticklabels([])
            if i == len(shown) - 1:
                ax.set_xlabel("head", fontsize=7.5)
            else:
                ax.set_xticklabels([])
    cbar = fig.colorbar(ScalarMappable(norm=norm, cmap=cmap), ax=axes, shrink=0.9, pad=0.01, aspect=25)
    cbar.set_label("head UAS (better direction)", fontsize=7.5)
    cbar.ax.tick_params(labelsize=6.5)
    fig.suptitle(
        f"Per-head UAS, seed {seed}; ▲ structure / ● capabilities onset of {shown[0]}; box: best head", fontsize=8
    )
    _finish(fig, [], notes)
    return fig
