"""Figure 2 (``fig2_regularizers``): the panels of figure 1 for every constant-lambda run: baseline
(lambda 0), SAS+ (lambda < 0) and SAS- (lambda > 0)."""

from __future__ import annotations

import pandas as pd

from sasbert.analysis.figures.common import (
    CONSTANT_KINDS,
    KIND_NAMES,
    FigureOptions,
    _decorate_panels,
    _finish,
    _labels,
    _mark,
    _onset_handles,
    _panels,
    _plot_curve,
    _prepare,
    _runs_of,
    new_figure,
    run_colors,
)

# ----------------------------------------------------------------------------------------------
# Figure 2: baseline vs SAS+ vs SAS-


def draw(tables: dict[str, pd.DataFrame], phases: pd.DataFrame, options: FigureOptions):
    """Loss, UAS and BLiMP over training for every constant-lambda run."""
    from matplotlib.lines import Line2D

    runs, curves, uas_full = _prepare(tables, options)
    colors, labels = run_colors(runs), _labels(runs)
    shown = _runs_of(runs, CONSTANT_KINDS)
    fig = new_figure(options.width, 2.7)
    axes = _panels(fig, list(curves))
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
    if handles:
        handles += _onset_handles(events)
    _finish(fig, handles, notes, ncols=min(len(handles), 3))
    return fig
