"""Figure 5 (``fig5_seeds``): across seeds and runs (and any external checkpoint series gathered
into the tables), UAS vs loss, BLiMP vs UAS and BLiMP vs loss: every checkpoint as a trajectory,
the final one large (marker shape = seed), Spearman's rho over the final checkpoints."""

from __future__ import annotations

import pandas as pd

from sasbert.analysis.figures.common import (
    METRIC_LABELS,
    ONSET_STYLE,
    SEED_MARKERS,
    FigureOptions,
    _empty,
    _finish,
    _labels,
    _onset_handles,
    _prepare,
    new_figure,
    onset_summary,
    run_colors,
)

# ----------------------------------------------------------------------------------------------
# Figure 5: cross-seed scatter


SEED_PAIRS = [("val_mlm_loss", "uas"), ("uas", "blimp"), ("val_mlm_loss", "blimp")]


def draw(tables: dict[str, pd.DataFrame], phases: pd.DataFrame, options: FigureOptions):
    """UAS vs loss, BLiMP vs UAS, BLiMP vs loss: every run x seed's checkpoints as trajectories."""
    from matplotlib.lines import Line2D

    runs, curves, _ = _prepare(tables, options)
    colors, labels = run_colors(runs), _labels(runs)
    merged = curves["val_mlm_loss"].merge(curves["uas"], on=["run", "seed", "step"], how="outer")
    merged = merged.merge(curves["blimp"], on=["run", "seed", "step"], how="outer")
    order = dict(zip(runs["run"], runs["order"]))
    merged = merged.assign(_o=merged["run"].map(order)).sort_values(["_o", "seed", "step"]).drop(columns="_o")
    seeds = sorted(merged["seed"].dropna().astype(int).unique())
    seed_marker = {s: SEED_MARKERS[i % len(SEED_MARKERS)] for i, s in enumerate(seeds)}
    fig = new_figure(options.width, 3.0)
    axes = fig.subplots(1, 3)
    notes = []
    clip_loss, note = _loss_clip(merged, phases)
    if note:
        notes.append(note)
    for ax, (x, y) in zip(axes, SEED_PAIRS):
        _plot_trajectories(ax, merged, x, y, colors, seed_marker, phases, clip_loss)
    if "blimp" in merged:
        axes[1].axhline(0.5, color="0.5", lw=0.7, ls=":")
        axes[2].axhline(0.5, color="0.5", lw=0.7, ls=":")
    present = [r for r in runs.sort_values("order")["run"] if r in set(merged["run"])]
    missing = [r for r in runs["run"] if r not in present]
    if missing:
        notes.append(f"no tables for {', '.join(missing)}")
    if len(seeds) < 2:
        notes.append("a single seed: no spread across seeds")
    handles = [Line2D([], [], color=colors[r], lw=1.2, label=labels[r]) for r in present]
    handles += [
        Line2D([], [], ls="", marker=seed_marker[s], color="0.5", mec="black", mew=0.6, ms=5, label=f"seed {s} (final)")
        for s in seeds
    ]
    handles += [h for h in _onset_handles(["structure_onset", "capabilities_onset"])]
    for h in handles[-2:]:
        h.set_label(h.get_label().split(" (")[0])
    _finish(fig, handles, notes, ncols=3)
    return fig


def _loss_clip(merged: pd.DataFrame, phases) -> tuple[float | None, str | None]:
    """Where the loss axes end, and the note saying so. The unigram-learning start (loss far above
    the rest) would squeeze every later checkpoint into a corner: the loss axis starts at the
    earliest structure onset when there is one."""
    onsets = phases[(phases["event"] == "structure_onset") & phases["detected"]] if phases is not None else None
    if onsets is None or onsets.empty:
        return None, None
    first_onset = float(onsets["step"].min())
    later = merged[merged["step"] >= first_onset]["val_mlm_loss"].dropna()
    if later.empty or not merged["val_mlm_loss"].max() > later.max():
        return None, None
    note = (
        f"the loss axes start at the earliest structure onset (step {first_onset:g}); "
        "earlier checkpoints lie off to the right"
    )
    return float(later.max()), note


def _plot_trajectories(ax, merged, x: str, y: str, colors, seed_marker, phases, clip_loss) -> None:
    """One panel: each run x seed's checkpoints as a path in (x, y), its final checkpoint marked by
    seed, its onsets marked, and the rank correlation of the finals in the title."""
    ax.set_xlabel(METRIC_LABELS[x])
    ax.set_ylabel(METRIC_LABELS[y])
    data = merged.dropna(subset=[x, y])
    if data.empty:
        _empty(ax, f"no {METRIC_LABELS[x]} / {METRIC_LABELS[y]} pairs")
        return
    for (run, seed), df in data.groupby(["run", "seed"], sort=False):
        color = colors.get(run, "0.5")
        ax.plot(df[x], df[y], color=color, lw=0.7, alpha=0.45, marker=".", ms=2.5, gid=f"curve:{run}:{y}_vs_{x}:{seed}")
        last = df.iloc[-1]
        ax.plot(
            [last[x]],
            [last[y]],
            ls="",
            marker=seed_marker[int(seed)],
            ms=6,
            color=color,
            mec="black",
            mew=0.6,
            zorder=4,
            gid=f"final:{run}:{seed}",
        )
        for event in ("structure_onset", "capabilities_onset"):
            s = onset_summary(phases, run, event, int(seed))
            hit = df[df["step"] == s[0]] if s is not None else df.iloc[:0]
            if hit.empty:
                continue
            marker, _, _ = ONSET_STYLE[event]
            ax.plot(
                [hit[x].iloc[0]],
                [hit[y].iloc[0]],
                ls="",
                marker=marker,
                ms=5,
                color=color,
                mec="black",
                mew=0.5,
                zorder=5,
                gid=f"onset:{event}:{run}",
            )
    finals = data.groupby(["run", "seed"]).last()
    if len(finals) >= 3 and finals[x].nunique() > 1 and finals[y].nunique() > 1:
        rho = finals[x].rank().corr(finals[y].rank())
        ax.set_title(
            f"Spearman ρ = {rho:.2f} (final, n = {len(finals)})", fontsize=7, fontweight="normal", gid="spearman"
        )
    if x == "val_mlm_loss" and clip_loss is not None and data[x].max() > clip_loss:
        span = clip_loss - data[x].min()
        ax.set_xlim(data[x].min() - 0.05 * span, clip_loss + 0.05 * span)
