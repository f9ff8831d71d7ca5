"""What every figure shares: the house style, one colour per run, the options, the step axis,
curves with their bands over seeds, onset markers, panels, notes and legends.

Conventions shared by all figures: one colour per run for every figure (``run_colors``, from the
run's kind and config order, never its name); onsets marked ▲ structure onset and ● capabilities
onset (at the median step over the seeds where it was detected, a horizontal bar spanning the
seeds' range), ▽ loss drop and ◇ BLiMP jump (hollow); the step axis is linear by default (even
spacing, the run's first and last steps labelled), symlog (linear below the first positive
checkpoint, so step 0 stays visible) or log (step 0 dropped, said on the axis). A figure whose
runs are absent (no SAS+ run, no release run, no probe table, ...) draws what exists and says
what is missing in a note at the bottom.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections.abc import Iterator

import numpy as np
import pandas as pd

from sasbert.analysis.curves import blimp_overall, glue_score, select_treebank
from sasbert.errors import InputError
from sasbert.options import defaults as schema_defaults

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
    "complexity_peak": ("P", True, "complexity peak (max ID)"),
    "complexity_fall": ("X", True, "complexity fall (steepest ID drop after it)"),
}
METRIC_LABELS = {
    "val_mlm_loss": "held-out MLM loss",
    "uas": "UAS (best head)",
    "blimp": "BLiMP accuracy",
    "glue": "GLUE (validation)",
    "complexity": "TwoNN ID",
}
Y_LABELS = {
    "val_mlm_loss": "loss (nats)",
    "uas": "UAS",
    "blimp": "accuracy",
    "glue": "score",
    "complexity": "intrinsic dimension",
}
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


def onset_interval(phases: pd.DataFrame, run: str, event: str) -> tuple[float, float] | None:
    """(lowest step_low, highest step_high) of a run's detected ``event`` over its seeds: the 95%
    intervals from the probe's paired bootstrap (UAS onsets only); None without them."""
    if phases is None or phases.empty or "step_low" not in phases.columns:
        return None
    rows = phases[(phases["run"] == run) & (phases["event"] == event) & phases["detected"]]
    low, high = rows["step_low"].dropna(), rows["step_high"].dropna()
    if low.empty or high.empty:
        return None
    return float(low.min()), float(high.max())


def _mark(ax, agg: pd.DataFrame | None, phases, run: str, events, color: str, xscale: str) -> None:
    """Onset markers on a run's mean curve (at the median step over seeds; a bar over their range,
    and a capped bar over the onset's 95% interval, the seeds' together)."""
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
        interval = onset_interval(phases, run, event)
        if interval is not None and interval[1] > interval[0] and not (xscale == "log" and interval[0] <= 0):
            ax.plot(
                list(interval),
                [y, y],
                color=color,
                lw=0.9,
                marker="|",
                ms=6,
                alpha=0.9,
                zorder=4,
                gid=f"onset_interval:{event}:{run}",
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
    GLUE score (``sasbert.analysis.curves.glue_score``) where GLUE was run (a glue table among the tables)."""
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
