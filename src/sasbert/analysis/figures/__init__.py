"""Stage 8, figures: the paper's figures 1-5, drawn from the gathered tables alone.

Inputs are the all-runs tables of ``sasbert phases gather`` (``runs, train, loss, uas, heads,
blimp``.parquet, columns in ``sasbert.analysis.gather``) and the phases table of ``sasbert phases detect``;
no checkpoint is read, so a ``results/tables`` folder copied from a cluster is enough.

Figures (each written as ``<name>.png`` and ``<name>.pdf``), one module each, whose ``draw``
returns the matplotlib ``Figure``; ``FIGURES`` below is the one list of them:

* ``fig1_training`` (``training``): loss, UAS and BLiMP of the baseline run(s) against step.
* ``fig2_regularizers`` (``regularizers``): the same for baseline, SAS+ and SAS-.
* ``fig3_release`` (``release``): release runs SAS-(k), and their final values against k.
* ``fig4a_heads`` (``heads``): per-head UAS heat maps across checkpoints.
* ``fig4b_phenomena`` (``phenomena``): BLiMP per phenomenon across checkpoints.
* ``fig5_seeds`` (``seeds``): UAS vs loss vs BLiMP across seeds and runs.

What they share (style, colours, options, axes, markers) is ``sasbert.analysis.figures.common``. A figure's
job runs its own module, ``common`` and this one: editing one figure's module redraws that figure
alone (``sasbert.code_identity``). This module imports the figure modules only when it draws one.

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
import dataclasses
import importlib
import logging
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from sasbert.analysis.figures.common import (  # noqa: F401 - the options and colours, for the CLI and users
    KIND_COLORS,
    FigureOptions,
    _step_label,
    in_tokens,
    run_colors,
    style,
)
from sasbert.atomic import atomic_path
from sasbert.errors import InputError
from sasbert.options import add_option_flags
from sasbert.options import resolve as resolve_options

log = logging.getLogger(__name__)


# ----------------------------------------------------------------------------------------------
# Registry, saving, CLI


@dataclasses.dataclass(frozen=True)
class FigureSpec:
    """One figure: how it is drawn, the gathered tables it reads, and its place in the report."""

    module: str  # sasbert.analysis.figures.<module>, whose draw() makes it
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
        "training",
        ("runs", "train", "loss", "uas", "blimp"),
        "1",
        "1. Training dynamics",
        "baseline: loss, UAS, BLiMP (and GLUE)",
        ("glue",),
    ),
    "fig2_regularizers": FigureSpec(
        "regularizers",
        ("runs", "loss", "uas", "blimp"),
        "2",
        "2. Regularizers",
        "baseline vs SAS+ vs SAS-",
        ("glue",),
    ),
    "fig3_release": FigureSpec(
        "release",
        ("runs", "loss", "uas", "blimp"),
        "3",
        "3. Release SAS-(k)",
        "release runs, final values against k",
        ("glue",),
    ),
    "fig4a_heads": FigureSpec(
        "heads", ("runs", "heads", "uas"), "4a", "4. Heads and phenomena", "per-head UAS across checkpoints"
    ),
    "fig4b_phenomena": FigureSpec(
        "phenomena", ("runs", "blimp"), "4b", "4. Heads and phenomena", "BLiMP per phenomenon across checkpoints"
    ),
    "fig5_seeds": FigureSpec("seeds", ("runs", "loss", "uas", "blimp"), "5", "5. Across seeds", "UAS vs loss vs BLiMP"),
}
FORMATS = ("png", "pdf")


def draw(name: str, tables: dict[str, pd.DataFrame], phases: pd.DataFrame, options: FigureOptions):
    """Build figure ``name`` (a key of ``FIGURES``) inside the house style."""
    options.check()
    if name not in FIGURES:
        raise InputError(f"unknown figure {name!r} (choose from {', '.join(FIGURES)})")
    func = importlib.import_module(f"{__name__}.{FIGURES[name].module}").draw
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
