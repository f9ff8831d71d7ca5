"""docs/extending.md's recipes followed for real: a new figure, added to a copy of the package as
the recipe says (one module, one registry entry), is drawn by the real CLI, gets its own rule from
the real Snakefile, and changes the code of no other figure's rule."""

import shutil
import subprocess
import sys

from test_figures import phases_of, synthetic_tables

from conftest import REPO, WORKFLOW_FILES, job_counts, snakemake_ok
from sasbert import code_identity
from sasbert.analysis.figures.registry import FIGURES

NEW_FIGURE = '''"""Held-out loss against tokens seen, one curve per run (the recipe's example)."""

from sasbert.analysis.figures.common import new_figure, run_colors


def draw(tables, phases, options):
    fig = new_figure(options.width, 3.0)
    ax = fig.subplots()
    colors = run_colors(tables["runs"])
    for run, curve in tables["loss"].groupby("run"):
        ax.plot(curve["step"], curve["val_mlm_loss"], color=colors[run], gid=f"curve:{run}:val_mlm_loss")
    ax.set_xlabel("step")
    ax.set_ylabel("held-out MLM loss")
    return fig
'''
ENTRY = """    "fig6_loss": FigureSpec("loss", ("runs", "loss"), "6", "6. Loss", "held-out loss of every run"),
"""


def figure_codes(package):
    """Each figure rule's code, as workflow/rules/analysis.smk computes it."""
    return {
        name: code_identity.code_fingerprint(
            f"analysis.figures.{spec.module}",
            "analysis.figures.cli",
            package_dir=package,
            exclude=["analysis.figures.registry"],
        )
        for name, spec in FIGURES.items()
    }


def test_a_new_figure_takes_one_module_and_one_entry_and_redraws_no_other(tmp_path):
    workdir = tmp_path / "work"
    workdir.mkdir()
    for name in WORKFLOW_FILES:
        if name != "src":
            (workdir / name).symlink_to(REPO / name)
    shutil.copytree(REPO / "src", workdir / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    package = workdir / "src" / "sasbert"
    before = figure_codes(package)

    # step 1: the figure's module; step 2: its entry in FIGURES
    (package / "analysis" / "figures" / "loss.py").write_text(NEW_FIGURE)
    registry = package / "analysis" / "figures" / "registry.py"
    text = registry.read_text()
    anchor = "FIGURES: dict[str, FigureSpec] = {\n"
    assert anchor in text
    registry.write_text(text.replace(anchor, anchor + ENTRY))

    assert figure_codes(package) == before  # no other figure's rule changes

    # the real CLI draws it from tables alone
    tables = synthetic_tables()
    folder = tmp_path / "tables"
    folder.mkdir()
    for name in ("runs", "loss"):
        tables[name].to_parquet(folder / f"{name}.parquet")
    phases_of(tables).to_parquet(folder / "phases.parquet")
    out = tmp_path / "figures"
    args = ["--tables", str(folder), "--phases", str(folder / "phases.parquet"), "--out-dir", str(out)]
    drawn = subprocess.run(
        [sys.executable, "-m", "sasbert", "figures", *args, "--figure", "fig6_loss", "--dpi", "40"],
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(workdir / "src"), "PATH": ""},
    )
    assert drawn.returncode == 0, drawn.stderr[-2000:]
    assert sorted(p.name for p in out.iterdir()) == ["fig6_loss.pdf", "fig6_loss.png"]

    # the real Snakefile makes its rule, and `all` asks for its files
    planned = snakemake_ok("-n", "--cores", "1", cwd=workdir, env={"PYTHONPATH": str(workdir / "src")})
    assert job_counts(planned)["figure_loss"] == 1
