"""Figure 5 (``fig5_seeds``): across seeds, one row of panels per group of seed replicates (a
trained run's seeds, or series marked as one group; runs are never pooled): UAS vs loss, BLiMP vs
UAS and BLiMP vs loss, every checkpoint of every member as a trajectory, the final one large
(marker shape = seed), and in each panel the group's statistics at the final checkpoint from
``seeds.parquet`` (``sasbert.analysis.seeds``: Spearman and Pearson with p-values and bootstrap
intervals, or "too few seeds")."""

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
# Figure 5: across seeds, per group of replicates


SEED_PAIRS = [("val_mlm_loss", "uas"), ("uas", "blimp"), ("val_mlm_loss", "blimp")]
ROW_HEIGHT = 2.3  # inches per group


def draw(tables: dict[str, pd.DataFrame], phases: pd.DataFrame, options: FigureOptions):
    """Per group of seed replicates: UAS vs loss, BLiMP vs UAS, BLiMP vs loss, every member's
    checkpoints as trajectories, the group's across-seeds statistics in each panel."""
    from matplotlib.lines import Line2D

    runs, curves, _ = _prepare(tables, options)
    colors, labels = run_colors(runs), _labels(runs)
    merged = curves["val_mlm_loss"].merge(curves["uas"], on=["run", "seed", "step"], how="outer")
    merged = merged.merge(curves["blimp"], on=["run", "seed", "step"], how="outer")
    order = dict(zip(runs["run"], runs["order"]))
    merged = merged.assign(_o=merged["run"].map(order)).sort_values(["_o", "seed", "step"]).drop(columns="_o")
    group_of = dict(zip(runs["run"], runs["group"] if "group" in runs.columns else runs["run"]))
    merged["group"] = merged["run"].map(group_of)
    stats = tables.get("seeds")
    groups = list(dict.fromkeys(merged["group"].dropna()))
    seeds = sorted(merged["seed"].dropna().astype(int).unique())
    seed_marker = {s: SEED_MARKERS[i % len(SEED_MARKERS)] for i, s in enumerate(seeds)}
    notes = []
    clip_loss, note = _loss_clip(merged, phases)
    if note:
        notes.append(note)
    fig = new_figure(options.width, 0.6 + ROW_HEIGHT * max(1, len(groups)))
    axes = fig.subplots(max(1, len(groups)), 3, squeeze=False)
    for row, group in zip(axes, groups):
        members = merged[merged["group"] == group]
        for ax, (x, y) in zip(row, SEED_PAIRS):
            _plot_trajectories(ax, members, x, y, colors, seed_marker, phases, clip_loss)
            _statistics(ax, stats, group, x, y)
            if y == "blimp" and not members["blimp"].dropna().empty:
                ax.axhline(0.5, color="0.5", lw=0.7, ls=":")
        row[0].set_title(f"{group}", loc="left", fontsize=8, gid=f"group:{group}")
    if not groups:
        _empty(axes[0][0], "no run has loss, UAS or BLiMP rows")
    present = [r for r in runs.sort_values("order")["run"] if r in set(merged["run"])]
    missing = [r for r in runs["run"] if r not in present]
    if missing:
        notes.append(f"no tables for {', '.join(missing)}")
    if len(seeds) < 2:
        notes.append("a single seed: no spread across seeds")
    if stats is None:
        notes.append("no seeds table: no statistics")
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


def _statistics(ax, stats: pd.DataFrame | None, group, x: str, y: str) -> None:
    """The group's final-checkpoint statistics of the pair (x, y), from the seeds table, as text in
    the panel's corner."""
    if stats is None or stats.empty:
        return
    pair = {x, y}
    rows = stats[(stats["group"] == group) & (stats["checkpoint"] == "final")]
    rows = rows[[{a, b} == pair for a, b in zip(rows["x"], rows["y"])]]
    if rows.empty:
        text = "not in the seeds table"
    else:
        r = rows.iloc[0]
        if r["status"] == "ok":
            text = (
                f"final, n = {r['n']}\n"
                f"ρ = {r['spearman']:.2f} [{r['spearman_low']:.2f}, {r['spearman_high']:.2f}], p = {r['spearman_p']:.2g}\n"
                f"r = {r['pearson']:.2f} [{r['pearson_low']:.2f}, {r['pearson_high']:.2f}], p = {r['pearson_p']:.2g}"
            )
        else:
            text = f"final: {r['status']} (n = {r['n']})"
    ax.text(
        0.02,
        0.98,
        text,
        transform=ax.transAxes,
        ha="left",
        va="top",
        fontsize=5.5,
        color="0.2",
        bbox={"boxstyle": "round,pad=0.2", "fc": "white", "ec": "0.8", "alpha": 0.85, "lw": 0.5},
        gid=f"seed_stats:{group}:{y}_vs_{x}",
    )


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
    """One panel: each member's checkpoints as a path in (x, y), its final checkpoint marked by seed,
    its onsets marked."""
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
    if x == "val_mlm_loss" and clip_loss is not None and data[x].max() > clip_loss:
        span = clip_loss - data[x].min()
        ax.set_xlim(data[x].min() - 0.05 * span, clip_loss + 0.05 * span)
