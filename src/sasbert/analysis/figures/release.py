"""Figure 3 (``fig3_release``): SAS-(k) release runs: top, their curves stitched onto the parent's
before k (dotted before k, solid after), with the baseline and the parent; bottom, the final loss,
UAS and BLiMP against k, with the baseline's and the never-released parent's final values as
reference lines and the baseline's structure -> capabilities window shaded."""

from __future__ import annotations

import numpy as np
import pandas as pd

from sasbert.analysis.curves import stitch
from sasbert.analysis.figures.common import (
    METRIC_LABELS,
    FigureOptions,
    _aggregate,
    _decorate_panels,
    _empty,
    _finish,
    _labels,
    _plot_curve,
    _prepare,
    _runs_of,
    _shade_window,
    _visible,
    new_figure,
    onset_summary,
    run_colors,
)

# ----------------------------------------------------------------------------------------------
# Figure 3: release experiments SAS-(k)


def _final(df: pd.DataFrame, value: str) -> pd.DataFrame:
    """Each run x seed's value at its last step."""
    df = df.dropna(subset=[value]).sort_values("step")
    return df.groupby(["run", "seed"], as_index=False).last()[["run", "seed", "step", value]]


FINAL_LABELS = {
    "val_mlm_loss": "final loss (nats)",
    "uas": "final UAS",
    "blimp": "final BLiMP accuracy",
    "glue": "final GLUE score",
}


def draw(tables: dict[str, pd.DataFrame], phases: pd.DataFrame, options: FigureOptions):
    """Release runs' curves (stitched onto their parents) and their final loss/UAS/BLiMP against k."""
    from matplotlib.lines import Line2D

    runs, curves, uas_full = _prepare(tables, options)
    colors, labels = run_colors(runs), _labels(runs)
    release = runs[runs["kind"] == "release"].sort_values(["release_step", "order"])
    parents = [p for p in dict.fromkeys(release["parent"].dropna()) if p in set(runs["run"])]
    baselines = _runs_of(runs, ["baseline"])
    fig = new_figure(options.width, 5.0)
    metrics = list(curves)  # loss, UAS, BLiMP, and GLUE where it was run
    top, bottom = fig.subplots(2, len(metrics))
    for ax, metric in zip(top, metrics):
        ax.set_title(METRIC_LABELS[metric][0].upper() + METRIC_LABELS[metric][1:])
    notes = []
    if release.empty:
        notes.append("no release run (λ staged to 0 at step k) in this config")
    if not baselines:
        notes.append("no baseline run (constant λ = 0) for reference")
    context = baselines[:1] + [p for p in parents if p not in baselines]
    if release.empty:
        context = baselines[:1] + _runs_of(runs, ["sas_minus"])
    handles = []
    for run in context:
        for ax, metric in zip(top, metrics):
            df = curves[metric]
            _plot_curve(ax, df[df["run"] == run], metric, run, metric, colors[run], options, lw=1.2, alpha=0.9)
        handles.append(Line2D([], [], color=colors[run], lw=1.2, label=labels[run]))
    for row in release.itertuples():
        for ax, metric in zip(top, metrics):
            _plot_release_curve(ax, row, metric, curves, runs, colors[row.run], options)
        handles.append(Line2D([], [], color=colors[row.run], lw=1.5, label=labels[row.run]))
    _decorate_panels(top, curves, context + list(release["run"]), options)

    for ax, metric in zip(bottom, metrics):  # final values against k
        _plot_finals_against_k(ax, metric, curves, release, baselines, parents, colors, phases)
    if not release.empty:
        handles += _release_reference_handles(baselines, parents, colors, phases)
    _finish(fig, handles, notes, ncols=3 if len(handles) > 4 else 2)
    return fig


def _plot_release_curve(ax, row, metric: str, curves, runs, color, options: FigureOptions) -> None:
    """A release run's curve stitched onto its parent's: dotted up to k, solid after, a tick at k."""
    df = stitch(curves[metric][curves[metric]["run"].isin([row.run, row.parent])], runs)
    df = df[df["run"] == row.run]
    if df.empty:
        return
    k = int(row.start_step) if row.parent else int(row.release_step)
    before = df[df["step"] <= k]
    if len(before) > 1:
        agg = _aggregate(_visible(before.dropna(subset=[metric]), options.xscale), metric, "none")
        ax.plot(agg["step"], agg["mean"], color=color, lw=1.0, ls=":", gid=f"stitched:{row.run}:{metric}")
    _plot_curve(ax, df[df["step"] >= k], metric, row.run, metric, color, options, lw=1.5)
    agg = _aggregate(df.dropna(subset=[metric]), metric, "none")
    if not agg.empty and (options.xscale != "log" or k > 0):
        k_value = float(np.interp(k, agg["step"], agg["mean"]))
        ax.plot([k], [k_value], ls="", marker="|", ms=9, mew=1.5, color=color, gid=f"release:{row.run}")


def _plot_finals_against_k(ax, metric: str, curves, release, baselines, parents, colors, phases) -> None:
    """Each release run's final value at its k (seeds small, their mean large), the mean over k, and
    the baseline's and the never-released parents' finals as reference lines."""
    ax.set_xlabel("release step k")
    ax.set_ylabel(FINAL_LABELS[metric])
    if release.empty:
        _empty(ax, "no release runs")
        return
    finals = _final(curves[metric], metric)
    rel = finals.merge(release[["run", "release_step"]], on="run")
    if rel.empty:
        _empty(ax, "no tables for the release runs")
        return
    means = rel.groupby("release_step", as_index=False)[metric].mean().sort_values("release_step")
    ax.plot(means["release_step"], means[metric], color="0.35", lw=1.0, zorder=2, gid=f"final:mean:{metric}")
    for r in rel.itertuples():
        ax.plot(
            [r.release_step], [getattr(r, metric)], ls="", marker="o", ms=3.5, alpha=0.6, color=colors[r.run], zorder=3
        )
    for r in release.itertuples():
        m = rel[rel["run"] == r.run][metric]
        if not m.empty:
            ax.plot(
                [r.release_step],
                [m.mean()],
                ls="",
                marker="o",
                ms=6.5,
                color=colors[r.run],
                mec="black",
                mew=0.7,
                zorder=4,
                gid=f"final:{r.run}:{metric}",
            )
    for ref, ls in [(b, "--") for b in baselines[:1]] + [(p, ":") for p in parents]:
        m = finals[finals["run"] == ref][metric]
        if not m.empty:
            ax.axhline(m.mean(), color=colors[ref], ls=ls, lw=1.1, zorder=1, gid=f"ref:{ref}:{metric}")
    if baselines:
        _shade_window(ax, phases, baselines[0])
    ks = release["release_step"].dropna().astype(float)
    pad = max(1.0, 0.08 * (ks.max() - ks.min())) if len(ks) else 1.0
    lo, hi = ax.get_xlim()
    ax.set_xlim(min(lo, ks.min() - pad), max(hi, ks.max() + pad))


def _release_reference_handles(baselines, parents, colors, phases) -> list:
    """Legend entries of the reference lines, the onset window and the release tick."""
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    handles = []
    if baselines:
        handles.append(Line2D([], [], color=colors[baselines[0]], ls="--", lw=1.1, label=f"final: {baselines[0]}"))
    for p in parents:
        handles.append(Line2D([], [], color=colors[p], ls=":", lw=1.1, label=f"final: {p} (never released)"))
    if baselines and onset_summary(phases, baselines[0], "structure_onset"):
        handles.append(Patch(color="0.85", alpha=0.6, label=f"{baselines[0]}: ▲ → ● window"))
    handles.append(
        Line2D([], [], ls="", marker="|", ms=8, mew=1.5, color="0.3", label="release at k (dotted: before k)")
    )
    return handles
