"""Stage 8, figures: SPEC.md figures 1-5, drawn from the gathered tables alone.

Inputs are the all-runs tables of ``sasbert phases gather`` (``runs, train, loss, uas, heads,
blimp``.parquet, columns in ``sasbert.phases``) and the phases table of ``sasbert phases detect``;
no checkpoint is read, so a ``results/tables`` folder copied from a cluster is enough.

Figures (each written as ``<name>.png`` and ``<name>.pdf``; every plotting function returns the
matplotlib ``Figure``):

* ``fig1_training``: held-out MLM loss (with the training loss as a rolling mean), UAS (with the
  best fixed-offset baseline) and overall BLiMP accuracy against step for the baseline run(s):
  mean over seeds, band = range (or +-1 sd) over seeds.
* ``fig2_regularizers``: the same three panels for every constant-lambda run: baseline (lambda 0),
  SAS+ (lambda < 0) and SAS- (lambda > 0).
* ``fig3_release``: SAS-(k) release runs: top, their curves stitched onto the parent's before k
  (dotted before k, solid after), with the baseline and the parent; bottom, the final loss, UAS and
  BLiMP against k, with the baseline's and the never-released parent's final values as reference
  lines and the baseline's structure -> capabilities window shaded.
* ``fig4a_heads``: per-head UAS (relation "all", the better of the two directions) as layer x head
  heat maps, one row per constant-lambda run (first seed), one column per selected checkpoint:
  the first and last, the checkpoints nearest the first run's structure onset, breakthrough and
  capabilities onset, the rest spread evenly; the probe's best head is boxed.
* ``fig4b_phenomena``: BLiMP accuracy per phenomenon across checkpoints (mean over seeds), one
  heat map per constant-lambda run, onset columns marked above.
* ``fig5_seeds``: across seeds and runs (and any external checkpoint series gathered into the
  tables), UAS vs loss, BLiMP vs UAS and BLiMP vs loss: every checkpoint as a trajectory, the final
  one large (marker shape = seed), Spearman's rho over the final checkpoints.

Conventions shared by all figures: one colour per run for every figure (``run_colors``, from the
run's kind and config order, never its name); onsets marked ▲ structure onset and ● capabilities
onset (at the median step over the seeds where it was detected, a horizontal bar spanning the
seeds' range), ▽ loss drop and ◇ BLiMP jump (hollow); the step axis is linear by default (even spacing,
the run's first and last steps labelled), symlog (linear below the first positive checkpoint, so
step 0 stays visible) or log (step 0 dropped, said on the axis). A figure whose runs are absent (no SAS+ run, no release run, no probe
table, ...) draws what exists and says what is missing in a note at the bottom.
Artists carry gids for tests and post-processing: ``curve:<run>:<metric>``, ``band:<run>:<metric>``,
``onset:<event>:<run>``, ``note``, ``phase_window``, ``final:<run>:<metric>``, ``ref:<run>:<metric>``,
``heads:<run>:<step>``, ``phenomena:<run>``.

CLI::

    sasbert figures --tables results/tables --phases results/tables/phases.parquet
        (--out-dir results/figures | --out fig.png fig.pdf) [--figure fig1_training ...] [--dpi 200] [--width 6.75]
        [--xscale symlog|log|linear] [--band range|sd|none] [--train-loss-window 25]
        [--heads-checkpoints 6] [--treebank NAME] [--blimp-variant NAME]
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import logging
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from sasbert.atomic import atomic_path
from sasbert.errors import InputError
from sasbert.options import add_option_flags
from sasbert.options import defaults as schema_defaults
from sasbert.options import resolve as resolve_options
from sasbert.phases import blimp_overall, glue_score, select_treebank, stitch

log = logging.getLogger(__name__)

# Okabe-Ito based; several runs of one kind get the next colour of their kind's list.
KIND_COLORS = {
    "baseline": ["#222222", "#777777", "#aaaaaa"],
    "sas_plus": ["#0072B2", "#56B4E9", "#1B3A6B"],
    "sas_minus": ["#D55E00", "#E89A6B", "#8B2C02"],
    "release": ["#009E73", "#CC79A7", "#E69F00", "#6A3D9A", "#B8A400", "#1B9E9E"],
    "other": ["#8C564B", "#BCBD22", "#7F7F7F"],
    "external": ["#984EA3", "#4DAF4A", "#A65628", "#F781BF"],  # series trained elsewhere
}
CONSTANT_KINDS = ("baseline", "sas_plus", "sas_minus")
KIND_NAMES = {"baseline": "baseline (λ = 0)", "sas_plus": "SAS+ (λ < 0)", "sas_minus": "SAS− (λ > 0)"}
ONSET_STYLE = {  # marker, hollow, legend text
    "structure_onset": ("^", False, "structure onset (max UAS accel.)"),
    "capabilities_onset": ("o", False, "capabilities onset (min UAS accel.)"),
    "loss_drop": ("v", True, "loss drop (max loss decrease)"),
    "blimp_jump": ("D", True, "BLiMP jump (max BLiMP increase)"),
    "glue_jump": ("s", True, "GLUE jump (max GLUE increase)"),
}
METRIC_LABELS = {
    "val_mlm_loss": "held-out MLM loss",
    "uas": "UAS (best head)",
    "blimp": "BLiMP accuracy",
    "glue": "GLUE (validation)",
}
Y_LABELS = {"val_mlm_loss": "loss (nats)", "uas": "UAS", "blimp": "accuracy", "glue": "score"}
SEED_MARKERS = ["s", "D", "P", "X", "p", "h", "*", "<", ">", "H"]


DEFAULTS = schema_defaults("figures")  # the config schema's: defaults live there only


@dataclasses.dataclass(frozen=True)
class FigureOptions:
    """The config's ``figures`` section, and which treebank and BLiMP variant to show."""

    width: float = DEFAULTS["width"]  # inches
    dpi: int = DEFAULTS["dpi"]
    xscale: str = DEFAULTS["xscale"]  # linear | symlog | log
    band: str = DEFAULTS["band"]  # range | sd | none
    train_loss_window: int = DEFAULTS["train_loss_window"]  # rolling mean over optimizer steps; 0 hides it
    heads_checkpoints: int = DEFAULTS["heads_checkpoints"]
    x_axis: str = DEFAULTS["x_axis"]  # step | tokens
    treebank: str | None = None
    blimp_variant: str | None = None

    def check(self) -> None:
        if self.xscale not in ("symlog", "log", "linear"):
            raise InputError(f"xscale must be symlog, log or linear (got {self.xscale!r})")
        if self.band not in ("range", "sd", "none"):
            raise InputError(f"band must be range, sd or none (got {self.band!r})")
        if self.width <= 0 or self.dpi <= 0:
            raise InputError("width and dpi must be > 0")
        if self.x_axis not in ("step", "tokens"):
            raise InputError(f"x_axis must be step or tokens (got {self.x_axis!r})")
        if self.train_loss_window < 0 or self.heads_checkpoints < 1:
            raise InputError("train_loss_window must be >= 0 and heads_checkpoints >= 1")


# ----------------------------------------------------------------------------------------------
# Style, colours, shared pieces


@contextlib.contextmanager
def style() -> Iterator[None]:
    """seaborn's paper context (fonts readable at a paper's text width) on a white grid."""
    import matplotlib as mpl
    import seaborn as sns

    with (
        sns.axes_style("whitegrid"),
        sns.plotting_context("paper"),
        mpl.rc_context(
            {
                "pdf.fonttype": 42,
                "ps.fonttype": 42,
                "axes.titleweight": "bold",
                "legend.frameon": False,
                "grid.linewidth": 0.5,
                "axes.linewidth": 0.6,
                "figure.dpi": 100,
            }
        ),
    ):
        yield


def new_figure(width: float, height: float):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def run_colors(runs: pd.DataFrame) -> dict[str, str]:
    """A colour per run, the same in every figure: by kind, then by config order (release runs
    by release step)."""
    colors: dict[str, str] = {}
    runs = runs.sort_values("order")
    for kind, palette in KIND_COLORS.items():
        group = runs[runs["kind"] == kind]
        if kind == "release":
            group = group.sort_values(["release_step", "order"], na_position="last")
        for i, name in enumerate(group["run"]):
            colors[name] = palette[i % len(palette)]
    for name in runs["run"]:
        colors.setdefault(name, KIND_COLORS["other"][0])
    return colors


def _labels(runs: pd.DataFrame) -> dict[str, str]:
    return dict(zip(runs["run"], runs["label"]))


def _runs_of(runs: pd.DataFrame, kinds) -> list[str]:
    return list(runs[runs["kind"].isin(kinds)].sort_values("order")["run"])


def _shown_runs(runs: pd.DataFrame, have: set) -> tuple[list[str], list[str]]:
    """The baseline / SAS+ / SAS- runs that have data (else the first three runs that do), then the
    external series that do, and a note for each of those kinds the config lacks."""
    notes = [f"no {KIND_NAMES[k]} run in this config" for k in CONSTANT_KINDS if not _runs_of(runs, [k])]
    external = [r for r in _runs_of(runs, ["external"]) if r in have]
    shown = [r for r in _runs_of(runs, CONSTANT_KINDS) if r in have]
    if not shown:
        shown = [r for r in runs.sort_values("order")["run"] if r in have and r not in external][:3]
    shown += external
    if shown and set(shown) <= set(external):
        notes = []  # a config that measures series alone lacks no kind
    return shown, notes


def _set_step_axis(ax, steps, xscale: str, unit: str = "step") -> None:
    steps = np.asarray([s for s in steps if np.isfinite(s)], dtype=float)
    positive = steps[steps > 0]
    if xscale == "symlog" and len(positive):
        from matplotlib.ticker import FixedLocator, FuncFormatter

        linthresh = float(positive.min())
        ax.set_xscale("symlog", linthresh=linthresh, linscale=0.35)
        right = float(steps.max()) * 1.08
        ax.set_xlim(left=min(0.0, float(steps.min())), right=right)
        # 0 and the powers of ten above the linear region (matplotlib's symlog ticks crowd it).
        decades = [10.0**e for e in range(int(np.floor(np.log10(linthresh))), int(np.ceil(np.log10(right))) + 1)]
        major = [0.0] + [d for d in decades if linthresh * 1.5 <= d <= right]
        if len(major) < 3:  # a short run: label 1-2-5 steps as well
            major = [0.0] + [d * m for d in decades for m in (1, 2, 5) if linthresh * 1.5 <= d * m <= right]
        minor = [d * m for d in decades for m in range(2, 10) if linthresh <= d * m <= right]
        ax.xaxis.set_major_locator(FixedLocator(major))
        ax.xaxis.set_minor_locator(FixedLocator(minor))
        ax.xaxis.set_major_formatter(FuncFormatter(_step_label))
        ax.set_xlabel(unit)
    elif xscale == "log" and len(positive):
        ax.set_xscale("log")
        ax.set_xlabel(f"{unit} (log; {unit} 0 not shown)" if (steps <= 0).any() else f"{unit} (log)")
    else:
        # linear: the training window at even spacing, with the run's first and last steps labelled
        # (a tick that would crowd the last one is dropped)
        from matplotlib.ticker import FixedLocator, FuncFormatter, MaxNLocator

        if len(steps):
            first, last = float(steps.min()), float(steps.max())
            ax.set_xlim(first, last + 0.02 * (last - first or 1))
            auto = [
                t
                for t in MaxNLocator(nbins=5, steps=[1, 2, 2.5, 5, 10]).tick_values(first, last)
                if first <= t <= last and abs(last - t) > 0.06 * (last - first or 1) and t != first
            ]
            ax.xaxis.set_major_locator(FixedLocator([first, *auto, last]))
            ax.xaxis.set_major_formatter(FuncFormatter(_step_label))
        ax.set_xlabel(unit)


def _step_label(x, _pos=None) -> str:
    """1000 -> 1K, 2500000 -> 2.5M, 8.4e10 -> 84B (steps or tokens)."""
    if x == 0:
        return "0"
    for scale, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "K")):
        if abs(x) >= scale and (x / scale) * 10 == round((x / scale) * 10):
            return f"{x / scale:g}{suffix}"
    return f"{x:g}"


def in_tokens(tables: dict[str, pd.DataFrame], phases: pd.DataFrame) -> tuple[dict, pd.DataFrame, list[str]]:
    """The tables and phases with every step as tokens seen (the step times its run's
    ``tokens_per_step``), and a note naming the runs left out for want of one."""
    runs = tables["runs"]
    per_step = runs.set_index("run")["tokens_per_step"].astype("Float64").dropna().astype(float)
    left_out = [r for r in runs["run"] if r not in per_step.index]

    def scale(df: pd.DataFrame | None, columns=("step",)) -> pd.DataFrame | None:
        if df is None or "run" not in df.columns:
            return df
        df = df[df["run"].isin(per_step.index)].copy()
        factor = df["run"].map(per_step).astype(float)
        for column in columns:
            if column in df.columns:
                df[column] = df[column].astype(float) * factor
        return df

    converted = {name: scale(df) for name, df in tables.items() if name != "runs"}
    converted["runs"] = scale(runs, ("start_step", "release_step"))
    notes = [f"no tokens_per_step for {', '.join(left_out)}: left out"] if left_out else []
    return converted, scale(phases), notes


def _visible(df: pd.DataFrame, xscale: str) -> pd.DataFrame:
    return df[df["step"] > 0] if xscale == "log" else df


def _aggregate(df: pd.DataFrame, value: str, band: str) -> pd.DataFrame:
    """Mean over seeds per step, with ``lo``/``hi`` band columns and ``n`` seeds."""
    g = df.groupby("step")[value]
    out = pd.DataFrame({"mean": g.mean(), "n": g.count()})
    if band == "sd":
        sd = g.std().fillna(0.0)
        out["lo"], out["hi"] = out["mean"] - sd, out["mean"] + sd
    else:
        out["lo"], out["hi"] = g.min(), g.max()
    return out.reset_index()


def _plot_curve(
    ax,
    df: pd.DataFrame,
    value: str,
    run: str,
    metric: str,
    color: str,
    options: FigureOptions,
    label: str | None = None,
    **kwargs,
):
    """Mean line (+ band) of ``value`` over seeds; returns the aggregated curve."""
    df = _visible(df.dropna(subset=[value]), options.xscale)
    if df.empty:
        return None
    agg = _aggregate(df, value, options.band)
    (line,) = ax.plot(agg["step"], agg["mean"], color=color, label=label, **kwargs)
    line.set_gid(f"curve:{run}:{metric}")
    if options.band != "none" and df["seed"].nunique() > 1:
        poly = ax.fill_between(agg["step"], agg["lo"], agg["hi"], color=color, alpha=0.18, lw=0)
        poly.set_gid(f"band:{run}:{metric}")
    elif options.band != "none" and {f"{value}_low", f"{value}_high"} <= set(df.columns):
        # one seed: the value's own 95% interval (bootstrap / Wilson) as the band
        ci = df.dropna(subset=[f"{value}_low", f"{value}_high"]).sort_values("step")
        if not ci.empty:
            poly = ax.fill_between(ci["step"], ci[f"{value}_low"], ci[f"{value}_high"], color=color, alpha=0.18, lw=0)
            poly.set_gid(f"interval:{run}:{metric}")
    return agg


def onset_summary(phases: pd.DataFrame, run: str, event: str, seed: int | None = None):
    """(median, min, max, n) of the detected steps of ``event`` for ``run`` (one seed or all);
    None when no seed shows it."""
    if phases is None or phases.empty:
        return None
    rows = phases[(phases["run"] == run) & (phases["event"] == event) & phases["detected"]]
    if seed is not None:
        rows = rows[rows["seed"] == seed]
    steps = rows["step"].dropna()
    if steps.empty:
        return None
    return float(steps.median()), float(steps.min()), float(steps.max()), int(len(steps))


def _mark(ax, agg: pd.DataFrame | None, phases, run: str, events, color: str, xscale: str) -> None:
    """Onset markers on a run's mean curve (at the median step over seeds; a bar over their range)."""
    if agg is None or agg.empty:
        return
    for event in events:
        summary = onset_summary(phases, run, event)
        if summary is None:
            continue
        med, lo, hi, n = summary
        if xscale == "log" and med <= 0:
            continue
        marker, hollow, _ = ONSET_STYLE[event]
        y = float(np.interp(med, agg["step"], agg["mean"]))
        if n > 1 and hi > lo:
            ax.plot(
                [lo, hi],
                [y, y],
                color=color,
                lw=1.0,
                alpha=0.8,
                solid_capstyle="butt",
                zorder=4,
                gid=f"onset_range:{event}:{run}",
            )
        ax.plot(
            [med],
            [y],
            ls="",
            marker=marker,
            ms=6.5 if not hollow else 5.5,
            mfc="white" if hollow else color,
            mec="black" if not hollow else color,
            mew=0.8 if not hollow else 1.2,
            zorder=5,
            gid=f"onset:{event}:{run}",
        )


def _onset_handles(events) -> list:
    from matplotlib.lines import Line2D

    handles = []
    for event in events:
        marker, hollow, text = ONSET_STYLE[event]
        handles.append(
            Line2D(
                [], [], ls="", marker=marker, ms=6, mfc="white" if hollow else "0.55", mec="0.2", mew=0.8, label=text
            )
        )
    return handles


def _shade_window(ax, phases, run: str, label: str | None = None) -> None:
    """Shade the run's structure -> capabilities onset window (median over seeds)."""
    start = onset_summary(phases, run, "structure_onset")
    end = onset_summary(phases, run, "capabilities_onset")
    if start and end and end[0] > start[0]:
        ax.axvspan(start[0], end[0], color="0.85", alpha=0.5, lw=0, zorder=0, gid="phase_window", label=label)


def _finish(fig, handles, notes: list[str], ncols: int | None = None) -> None:
    """One legend below the axes; what the figure could not draw (missing runs or tables) is said
    in the legend's title, in italics, so the layout engine keeps it clear of everything else."""
    import textwrap

    handles = [h for h in handles if h is not None]
    notes = [n for n in dict.fromkeys(notes) if n]
    if not handles and not notes:
        return
    title = None
    if notes:
        text = "; ".join(notes)
        text = text[0].upper() + text[1:] + "."
        title = "\n".join(textwrap.wrap(text, width=int(18 * fig.get_figwidth())))
    columns = max(1, ncols or min(len(handles), 3))
    while True:
        legend = fig.legend(
            handles=handles,
            loc="outside lower center",
            ncols=columns,
            fontsize=7.5,
            handlelength=1.8,
            columnspacing=1.2,
            title=title,
            title_fontproperties={"size": 7.5, "style": "italic"},
        )
        # Long labels in many columns run past the figure's edges (cut off in the saved file):
        # fewer columns until the legend fits.
        width = legend.get_window_extent().width
        if columns == 1 or width <= fig.bbox.width:
            break
        legend.remove()
        columns -= 1
    if title:
        legend.get_title().set_color("0.3")
        legend.get_title().set_gid("note")


def _empty(ax, text: str) -> None:
    ax.text(
        0.5,
        0.5,
        text,
        ha="center",
        va="center",
        transform=ax.transAxes,
        fontsize=8,
        color="0.4",
        style="italic",
        wrap=True,
    )
    ax.set_xticks([])
    ax.set_yticks([])


def _empty_figure(options: FigureOptions, text: str, notes: list[str]):
    """A small figure that says why there is nothing to draw."""
    fig = new_figure(options.width, 2.0)
    _empty(fig.subplots(), text)
    _finish(fig, [], notes)
    return fig


def _prepare(tables: dict[str, pd.DataFrame], options: FigureOptions):
    """Runs table plus the curves as ``run, seed, step, value``: loss, UAS, overall BLiMP, and the
    GLUE score (``phases.glue_score``) where GLUE was run (a glue table among the tables)."""
    runs = tables["runs"]
    loss = tables["loss"][["run", "seed", "step", "val_mlm_loss"]]
    uas_full = select_treebank(tables["uas"], options.treebank)
    if "uas_low" not in uas_full.columns:  # tables written before intervals were added
        uas_full = uas_full.assign(uas_low=np.nan, uas_high=np.nan)
    uas = uas_full[["run", "seed", "step", "uas", "uas_low", "uas_high"]]
    blimp = blimp_overall(tables["blimp"], options.blimp_variant).rename(
        columns={"accuracy": "blimp", "ci_low": "blimp_low", "ci_high": "blimp_high"}
    )
    curves = {"val_mlm_loss": loss, "uas": uas, "blimp": blimp}
    if tables.get("glue") is not None and not tables["glue"].empty:
        curves["glue"] = glue_score(tables["glue"]).rename(
            columns={"score": "glue", "ci_low": "glue_low", "ci_high": "glue_high"}
        )
    return runs, curves, uas_full


def _panels(fig, metrics):
    axes = fig.subplots(1, len(metrics))
    for ax, metric in zip(axes, metrics):
        ax.set_title(METRIC_LABELS[metric][0].upper() + METRIC_LABELS[metric][1:])
    return axes


def _decorate_panels(axes, curves, runs_shown, options) -> None:
    """Step axes, y labels, and the chance line of BLiMP."""
    steps = pd.concat([c[c["run"].isin(runs_shown)]["step"] for c in curves.values()])
    for ax, metric in zip(axes, curves):
        _set_step_axis(ax, steps, options.xscale, "tokens" if options.x_axis == "tokens" else "step")
        ax.set_ylabel(Y_LABELS[metric])
    axes[2].axhline(0.5, color="0.5", lw=0.7, ls=":", zorder=1)
    axes[2].text(
        0.99,
        0.5,
        "chance",
        transform=axes[2].get_yaxis_transform(),
        ha="right",
        va="bottom",
        fontsize=6.5,
        color="0.45",
    )


# ----------------------------------------------------------------------------------------------
# Figure 1: baseline training dynamics


def figure_training(tables: dict[str, pd.DataFrame], phases: pd.DataFrame, options: FigureOptions = FigureOptions()):
    """Loss, UAS and BLiMP against step for the baseline run(s) and any external series (which have
    no loss curve here), onsets marked."""
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    runs, curves, uas_full = _prepare(tables, options)
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
            extra = {"val_mlm_loss": ["loss_drop"], "uas": [], "blimp": ["blimp_jump"], "glue": ["glue_jump"]}[metric]
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
    for metric, what in (("val_mlm_loss", "held-out loss"), ("uas", "probe"), ("blimp", "BLiMP"), ("glue", "GLUE")):
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
                    "95% bootstrap interval (UAS: sentences, BLiMP: pairs, GLUE: examples)"
                    if "glue" in curves
                    else "95% interval (UAS: bootstrap over sentences; BLiMP: over pairs)"
                )
            )
            handles.append(Patch(color="0.5", alpha=0.25, label=label))
        handles.append(Patch(color="0.85", alpha=0.6, label="structure → capabilities onset"))
        handles += _onset_handles(events + ["loss_drop", "blimp_jump"] + (["glue_jump"] if "glue" in curves else []))
    _finish(fig, handles, notes, ncols=3)
    return fig


def _thin(df: pd.DataFrame, max_points: int = 1500) -> pd.DataFrame:
    """At most ~max_points steps, spread evenly in log(step) (dense per-step tables)."""
    steps = np.unique(df["step"].to_numpy())
    if len(steps) <= max_points:
        return df
    positions = np.unique(np.round(np.geomspace(1, len(steps), max_points)).astype(int) - 1)
    return df[df["step"].isin(steps[positions])]


# ----------------------------------------------------------------------------------------------
# Figure 2: baseline vs SAS+ vs SAS-


def figure_regularizers(
    tables: dict[str, pd.DataFrame], phases: pd.DataFrame, options: FigureOptions = FigureOptions()
):
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


def figure_release(tables: dict[str, pd.DataFrame], phases: pd.DataFrame, options: FigureOptions = FigureOptions()):
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


def figure_heads(tables: dict[str, pd.DataFrame], phases: pd.DataFrame, options: FigureOptions = FigureOptions()):
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


def figure_phenomena(tables: dict[str, pd.DataFrame], phases: pd.DataFrame, options: FigureOptions = FigureOptions()):
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


# ----------------------------------------------------------------------------------------------
# Figure 5: cross-seed scatter


SEED_PAIRS = [("val_mlm_loss", "uas"), ("uas", "blimp"), ("val_mlm_loss", "blimp")]


def figure_seeds(tables: dict[str, pd.DataFrame], phases: pd.DataFrame, options: FigureOptions = FigureOptions()):
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


# ----------------------------------------------------------------------------------------------
# Registry, saving, CLI


@dataclasses.dataclass(frozen=True)
class FigureSpec:
    """One figure: how it is drawn, the gathered tables it reads, and its place in the report."""

    draw: Callable
    tables: tuple[str, ...]
    number: str
    section: str
    content: str
    optional_tables: tuple[str, ...] = ()  # read when given (the glue table, where GLUE was run)


def figure_rule(name: str) -> str:
    """The workflow rule that makes figure ``name``: fig1_training -> figure_training."""
    return "figure_" + name.split("_", 1)[1]


# The one list of figures: the CLI, the workflow's rules and the report all read it.
FIGURES: dict[str, FigureSpec] = {
    "fig1_training": FigureSpec(
        figure_training,
        ("runs", "train", "loss", "uas", "blimp"),
        "1",
        "1. Training dynamics",
        "baseline: loss, UAS, BLiMP (and GLUE)",
        ("glue",),
    ),
    "fig2_regularizers": FigureSpec(
        figure_regularizers,
        ("runs", "loss", "uas", "blimp"),
        "2",
        "2. Regularizers",
        "baseline vs SAS+ vs SAS-",
        ("glue",),
    ),
    "fig3_release": FigureSpec(
        figure_release,
        ("runs", "loss", "uas", "blimp"),
        "3",
        "3. Release SAS-(k)",
        "release runs, final values against k",
        ("glue",),
    ),
    "fig4a_heads": FigureSpec(
        figure_heads, ("runs", "heads", "uas"), "4a", "4. Heads and phenomena", "per-head UAS across checkpoints"
    ),
    "fig4b_phenomena": FigureSpec(
        figure_phenomena, ("runs", "blimp"), "4b", "4. Heads and phenomena", "BLiMP per phenomenon across checkpoints"
    ),
    "fig5_seeds": FigureSpec(
        figure_seeds, ("runs", "loss", "uas", "blimp"), "5", "5. Across seeds", "UAS vs loss vs BLiMP"
    ),
}
FORMATS = ("png", "pdf")


def draw(name: str, tables: dict[str, pd.DataFrame], phases: pd.DataFrame, options: FigureOptions):
    """Build figure ``name`` (a key of ``FIGURES``) inside the house style."""
    options.check()
    if name not in FIGURES:
        raise InputError(f"unknown figure {name!r} (choose from {', '.join(FIGURES)})")
    func = FIGURES[name].draw
    notes = []
    if options.x_axis == "tokens":
        tables, phases, notes = in_tokens(tables, phases)
    with style():
        fig = func(tables, phases, options)
    if notes:
        fig.text(0.01, 0.995, "; ".join(notes), ha="left", va="top", fontsize=6.5, style="italic", color="0.35")
    return fig


def split_format(path: str | Path) -> tuple[Path, tuple[str]]:
    """(stem, (format,)) of an output file named <stem>.png or <stem>.pdf."""
    path = Path(path)
    fmt = path.suffix.lstrip(".")
    if fmt not in FORMATS:
        raise InputError(f"{path}: a figure file ends in {' or '.join('.' + f for f in FORMATS)}")
    return path.with_suffix(""), (fmt,)


def save_figure(fig, stem: str | Path, dpi: int = 200, formats=FORMATS) -> list[Path]:
    """Write ``stem.png`` and ``stem.pdf`` atomically (reproducible: no timestamps)."""
    paths = []
    metadata = {"png": {"Software": None}, "pdf": {"CreationDate": None, "Creator": None, "Producer": None}}
    with style():
        for fmt in formats:
            path = Path(f"{stem}.{fmt}")
            with atomic_path(path) as tmp:
                fig.savefig(tmp, format=fmt, dpi=dpi, metadata=metadata.get(fmt))
            paths.append(path)
    return paths


def table_paths(sources: Sequence[str | Path]) -> dict[str, Path]:
    """{table name: file} from gathered-table files (named ``<table>.parquet``) and/or folders
    holding them."""
    paths: dict[str, Path] = {}
    for source in map(Path, sources):
        for path in sorted(source.glob("*.parquet")) if source.is_dir() else [source]:
            paths[path.name.removesuffix(".parquet")] = path
    return paths


def load_tables(sources: str | Path | Sequence[str | Path], names) -> dict[str, pd.DataFrame]:
    """The tables ``names`` from gathered-table files and/or folders (see ``table_paths``)."""
    paths = table_paths([sources] if isinstance(sources, (str, Path)) else sources)
    out = {}
    for name in names:
        if name not in paths:
            raise InputError(f"{name}.parquet: not among --tables (run `sasbert phases gather` first)")
        if not paths[name].is_file():
            raise InputError(f"{paths[name]}: not found (run `sasbert phases gather` first)")
        out[name] = pd.read_parquet(paths[name])
    return out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--tables",
        nargs="+",
        required=True,
        help="the gathered tables (sasbert phases gather): <table>.parquet files, or a folder of them",
    )
    parser.add_argument("--phases", required=True, help="phases parquet (sasbert phases detect)")
    out = parser.add_mutually_exclusive_group(required=True)
    out.add_argument("--out-dir", help="where <figure>.png and <figure>.pdf go")
    out.add_argument("--out", nargs="+", help="with one --figure: the files to write (.png and/or .pdf)")
    parser.add_argument(
        "--figure", nargs="+", choices=list(FIGURES), default=list(FIGURES), help="which figures (default: all)"
    )
    add_option_flags(
        parser,
        "figures",
        [
            ("--width", {"type": float}, "figure width in inches"),
            ("--dpi", {"type": int}, "PNG resolution"),
            ("--xscale", {"choices": ("symlog", "log", "linear")}, "step axis: symlog keeps step 0, log drops it"),
            ("--band", {"choices": ("range", "sd", "none")}, "band around the mean over seeds"),
            ("--train-loss-window", {"type": int}, "rolling mean of the training loss in figure 1 (0 hides it)"),
            ("--heads-checkpoints", {"type": int}, "checkpoints shown in the per-head heat maps"),
        ],
    )
    parser.add_argument("--treebank", help="UAS treebank (default: the only/first one)")
    parser.add_argument("--blimp-variant", help="BLiMP variant (default: the only/first one)")


def run(args: argparse.Namespace) -> None:
    drawing = FigureOptions(
        **resolve_options(args, "figures"), treebank=args.treebank, blimp_variant=args.blimp_variant
    )
    drawing.check()
    if not Path(args.phases).is_file():
        raise InputError(f"{args.phases}: not found (run `sasbert phases detect` first)")
    phases = pd.read_parquet(args.phases)
    needed = sorted({t for name in args.figure for t in FIGURES[name].tables})
    tables = load_tables(args.tables, needed)
    given = table_paths(args.tables)
    optional = sorted({t for name in args.figure for t in FIGURES[name].optional_tables if t in given})
    tables.update(load_tables(args.tables, optional))
    if args.out and len(args.figure) != 1:
        raise InputError("--out names the files of one figure: give exactly one --figure (or use --out-dir)")
    for name in args.figure:
        fig = draw(name, tables, phases, drawing)
        if args.out:
            written = [save_figure(fig, stem, drawing.dpi, fmt) for stem, fmt in map(split_format, args.out)]
        else:
            written = [save_figure(fig, Path(args.out_dir) / name, drawing.dpi)]
        for path in (p for paths in written for p in paths):
            log.info("wrote %s", path)
