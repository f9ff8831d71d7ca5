"""Drawing a figure by its module in the house style, saving it reproducibly, and reading the
gathered tables it needs."""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from sasbert.analysis.figures.common import FigureOptions, in_tokens, style
from sasbert.atomic import atomic_path
from sasbert.errors import InputError

PACKAGE = "sasbert.analysis.figures"
FORMATS = ("png", "pdf")


def draw_module(module: str, tables: dict[str, pd.DataFrame], phases: pd.DataFrame, options: FigureOptions):
    """Build the figure that ``sasbert.analysis.figures.<module>`` draws, inside the house style.
    The module is imported by name: a figure's code is its own module (see ``registry``)."""
    options.check()
    func = importlib.import_module(f"{PACKAGE}.{module}").draw
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
