"""Figure 2 (``fig2_regularizers``): the panels of figure 1 for every constant-lambda run: baseline
(lambda 0), SAS+ (lambda < 0) and SAS- (lambda > 0), and a last panel on their use of context
(``context.parquet``, ``sasbert.measure.context``): at each run's final checkpoint, the cost of a
+-w window, gap(w) = loss(w) - loss(full context), against w (mean over seeds, their range as a
band). A run that leans on longer-range context loses more when it is cut to +-w: its gap is
larger at the wider windows."""

from __future__ import annotations

import numpy as np
import pandas as pd

from sasbert.analysis.figures.common import (
    CONSTANT_KINDS,
    KIND_NAMES,
    METRIC_LABELS,
    FigureOptions,
    _decorate_panels,
    _empty,
    _finish,
    _labels,
    _mark,
    _onset_handles,
    _plot_curve,
    _prepare,
    _runs_of,
    new_figure,
    run_colors,
)

# ----------------------------------------------------------------------------------------------
# Figure 2: baseline vs SAS+ vs SAS-


def draw(tables: dict[str, pd.DataFrame], phases: pd.DataFrame, options: FigureOptions):
    """Loss, UAS and BLiMP over training for every constant-lambda run, and the cost of a context
    window at their final checkpoints."""
    from matplotlib.lines import Line2D

    runs, curves, uas_full = _prepare(tables, options)
    colors, labels = run_colors(runs), _labels(runs)
    shown = _runs_of(runs, CONSTANT_KINDS)
    fig = new_figure(options.width, 2.7)
    *axes, context_ax = fig.subplots(1, len(curves) + 1)
    for ax, metric in zip(axes, curves):
        ax.set_title(METRIC_LABELS[metric][0].upper() + METRIC_LABELS[metric][1:])
    notes = [f"no {KIND_NAMES[k]} run in this config" for k in CONSTANT_KINDS if not _runs_of(runs, [k])]
    handles = []
    events = ["structure_onset", "capabilities_onset"]
    for run in shown:
        color = colors[run]
        drawn = False
        for ax, metric in zip(axes, curves):
            df = curves[metric]
            agg = _plot_curve(ax, df[df["run"] == run], metric, run, metric, color, options, lw=1.5, marker="o", ms=2.2)
            drawn |= agg is not None
            _mark(ax, agg, phases, run, events, color, options.xscale)
        if drawn:
            handles.append(Line2D([], [], color=color, lw=1.5, label=labels[run]))
        else:
            notes.append(f"{run}: no tables")
    _decorate_panels(axes, curves, shown, options)
    notes += _context_panel(context_ax, tables.get("context"), shown, colors, options)
    if handles:
        handles += _onset_handles(events)
    _finish(fig, handles, notes, ncols=min(len(handles), 3))
    return fig


def final_context_gaps(context: pd.DataFrame, run: str) -> pd.DataFrame:
    """``window, mean, lo, hi, n`` of a run's gap(w) at each seed's final checkpoint, over the seeds
    (the full context, whose gap is 0 by definition, left out)."""
    rows = context[(context["run"] == run) & (context["window"] >= 0)].dropna(subset=["gap"])
    final = rows.groupby("seed")["step"].transform("max")
    g = rows[rows["step"] == final].groupby("window")["gap"]
    return pd.DataFrame({"mean": g.mean(), "lo": g.min(), "hi": g.max(), "n": g.count()}).reset_index()


def _context_panel(ax, context: pd.DataFrame | None, shown, colors, options) -> list[str]:
    """gap(w) against w at the final checkpoint, one line per run; the notes on what is missing."""
    ax.set_title("Context ±w")
    if context is None or context.empty:
        _empty(ax, "no context table\n(sasbert context score)")
        return ["no context rows"]
    windows = sorted({int(w) for w in context.loc[context["run"].isin(shown), "window"] if w >= 0})
    position = {w: i for i, w in enumerate(windows)}  # evenly spaced: the default windows double
    notes = []
    for run in shown:
        gaps = final_context_gaps(context, run)
        if gaps.empty:
            notes.append(f"{run}: no context rows")
            continue
        x = gaps["window"].map(position).to_numpy(float)
        (line,) = ax.plot(x, gaps["mean"], color=colors[run], lw=1.5, marker="o", ms=2.8)
        line.set_gid(f"context:{run}")
        if options.band != "none" and (gaps["n"] > 1).any():
            band = ax.fill_between(x, gaps["lo"], gaps["hi"], color=colors[run], alpha=0.18, lw=0)
            band.set_gid(f"context_band:{run}")
    ax.set_xticks(np.arange(len(windows)), [str(w) for w in windows])
    ax.set_xlabel("w (final step)")
    ax.set_ylabel("loss(w) − loss(full)")
    ax.axhline(0.0, color="0.5", lw=0.7, ls=":", zorder=1)
    return notes
