"""Figure 1 (``fig1_training``): held-out MLM loss (with the training loss as a rolling mean), UAS
(with the best fixed-offset baseline), overall BLiMP accuracy and, given a complexity table, the
complexity (the TwoNN intrinsic dimension's mean over the layers, ``curves.complexity_curve``)
against step for the baseline run(s): mean over seeds, band = range (or +-1 sd) over seeds."""

from __future__ import annotations

import numpy as np
import pandas as pd

from sasbert.analysis.curves import complexity_curve
from sasbert.analysis.figures.common import (
    FigureOptions,
    _aggregate,
    _decorate_panels,
    _finish,
    _labels,
    _mark,
    _onset_handles,
    _panels,
    _plot_curve,
    _prepare,
    _runs_of,
    _shade_window,
    _visible,
    new_figure,
    run_colors,
)

# ----------------------------------------------------------------------------------------------
# Figure 1: baseline training dynamics


def draw(tables: dict[str, pd.DataFrame], phases: pd.DataFrame, options: FigureOptions):
    """Loss, UAS and BLiMP against step for the baseline run(s) and any external series (which have
    no loss curve here), onsets marked."""
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    runs, curves, uas_full = _prepare(tables, options)
    if tables.get("complexity") is not None and not tables["complexity"].empty:
        curves["complexity"] = complexity_curve(tables["complexity"])
    colors, labels = run_colors(runs), _labels(runs)
    shown = _runs_of(runs, ["baseline", "external"])
    fig = new_figure(options.width, 2.7)
    axes = _panels(fig, list(curves))
    notes, handles = [], []
    if not shown:
        notes.append("no baseline run (constant λ = 0) or external series in this config")
    events = ["structure_onset", "capabilities_onset"]
    train = tables.get("train")
    for run in shown:
        color = colors[run]
        if train is not None and options.train_loss_window > 0:
            tr = train[train["run"] == run].dropna(subset=["mlm_loss"]).sort_values("step")
            if not tr.empty:
                tr = tr.assign(
                    mlm_loss=tr.groupby("seed")["mlm_loss"].transform(
                        lambda s: s.rolling(options.train_loss_window, min_periods=1, center=True).mean()
                    )
                )
                tr = _thin(tr)
                agg = _aggregate(_visible(tr, options.xscale), "mlm_loss", "none")
                axes[0].plot(agg["step"], agg["mean"], color=color, lw=0.7, alpha=0.45, gid=f"curve:{run}:train_loss")
        for ax, metric in zip(axes, curves):
            df = curves[metric]
            agg = _plot_curve(ax, df[df["run"] == run], metric, run, metric, color, options, lw=1.6, marker="o", ms=2.5)
            extra = {
                "val_mlm_loss": ["loss_drop"],
                "uas": [],
                "blimp": ["blimp_jump"],
                "glue": ["glue_jump"],
                "complexity": ["complexity_peak", "complexity_fall"],
            }[metric]
            _mark(ax, agg, phases, run, events + extra, color, options.xscale)
            _shade_window(ax, phases, run)
        off = uas_full[uas_full["run"] == run].dropna(subset=["offset_uas"])
        if not off.empty:
            agg = _aggregate(_visible(off, options.xscale), "offset_uas", "none")
            axes[1].plot(
                agg["step"], agg["mean"], color=color, lw=0.9, ls="--", alpha=0.6, gid=f"curve:{run}:offset_uas"
            )
        n_seeds = max((curves[m][curves[m]["run"] == run]["seed"].nunique() for m in curves), default=0)
        handles.append(
            Line2D(
                [],
                [],
                color=color,
                lw=1.6,
                marker="o",
                ms=2.5,
                label=f"{labels[run]}, mean of {n_seeds} seed{'s' if n_seeds != 1 else ''}",
            )
        )
    external = set(_runs_of(runs, ["external"]))
    if shown and "complexity" not in curves:
        notes.append("no complexity table")
    what_of = {
        "val_mlm_loss": "held-out loss",
        "uas": "probe",
        "blimp": "BLiMP",
        "glue": "GLUE",
        "complexity": "complexity",
    }
    for metric, what in what_of.items():
        if shown and metric in curves and curves[metric][curves[metric]["run"].isin(shown)].empty:
            if metric == "val_mlm_loss" and external >= set(shown):
                notes.append("external series have no held-out loss here (they were trained elsewhere)")
            else:
                notes.append(f"no {what} table for the baseline")
    _decorate_panels(axes, curves, shown, options)
    if shown:
        if train is not None and options.train_loss_window > 0 and not train[train["run"].isin(shown)].empty:
            block = int(train[train["run"].isin(shown)]["n_steps"].max()) if "n_steps" in train else 1
            span = options.train_loss_window * max(block, 1)
            handles.append(
                Line2D([], [], color="0.3", lw=0.7, alpha=0.6, label=f"training loss (rolling mean, {span} steps)")
            )
        if not uas_full[uas_full["run"].isin(shown)]["offset_uas"].dropna().empty:
            handles.append(Line2D([], [], color="0.3", lw=0.9, ls="--", alpha=0.7, label="best fixed-offset baseline"))
        if options.band != "none":
            several = curves["uas"][curves["uas"]["run"].isin(shown)]["seed"].nunique() > 1
            label = (
                ("seed range" if options.band == "range" else "±1 sd over seeds")
                if several
                else (
                    "95% bootstrap interval (UAS, ID: sentences, BLiMP: pairs, GLUE: examples)"
                    if "glue" in curves
                    else "95% interval (UAS, ID: bootstrap over sentences; BLiMP: over pairs)"
                )
            )
            handles.append(Patch(color="0.5", alpha=0.25, label=label))
        handles.append(Patch(color="0.85", alpha=0.6, label="structure → capabilities onset"))
        handles += _onset_handles(
            events
            + ["loss_drop", "blimp_jump"]
            + (["glue_jump"] if "glue" in curves else [])
            + (["complexity_peak", "complexity_fall"] if "complexity" in curves else [])
        )
    _finish(fig, handles, notes, ncols=3)
    return fig


def _thin(df: pd.DataFrame, max_points: int = 1500) -> pd.DataFrame:
    """At most ~max_points steps, spread evenly in log(step) (dense per-step tables)."""
    steps = np.unique(df["step"].to_numpy())
    if len(steps) <= max_points:
        return df
    positions = np.unique(np.round(np.geomspace(1, len(steps), max_points)).astype(int) - 1)
    return df[df["step"].isin(steps[positions])]
