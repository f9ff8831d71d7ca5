"""``sasbert figures``: figures 1-5 (PNG + PDF) from the gathered tables alone."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import pandas as pd

from sasbert.analysis.figures.common import FigureOptions
from sasbert.analysis.figures.registry import FIGURES
from sasbert.analysis.figures.render import draw_module, load_tables, save_figure, split_format, table_paths
from sasbert.errors import InputError
from sasbert.options import add_option_flags
from sasbert.options import resolve as resolve_options

log = logging.getLogger(__name__)


def draw(name: str, tables: dict[str, pd.DataFrame], phases: pd.DataFrame, options: FigureOptions):
    """Build figure ``name`` (a key of ``FIGURES``) inside the house style."""
    if name not in FIGURES:
        raise InputError(f"unknown figure {name!r} (choose from {', '.join(FIGURES)})")
    return draw_module(FIGURES[name].module, tables, phases, options)


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
