"""The per-checkpoint measures, registered once: everything the workflow and the all-runs tables
need to know about a measure follows from its entry here.

A measure scores every checkpoint of a run x seed (and of every series) and writes its tables
``results/<name>/<run>/seed<seed>/<table>.parquet``. From its entry:

* the command ``sasbert <name> score`` (``sasbert.cli``), which its ``cli`` module defines;
* its two rules, ``<name>_part`` (the checkpoints of one finished part of a run, while the next part
  trains) and ``<name>`` (the run x seed's series), made in ``workflow/rules/measures.smk``, with the
  config section ``<name>`` as their options, each of its ``inputs`` (a key of that section naming a
  file or folder) as an input, and its ``tables`` as outputs;
* the all-runs tables the ``tables`` rule gathers (``sasbert.analysis.gather``): each table of
  ``gathered`` goes into ``results/tables/<all-runs table>.parquet``, shaped by the ``ALL_RUNS``
  of the measure's torch-free ``tables_module`` (``sasbert.tables.AllRunsTable``; a table missing
  there is stacked as it is);
* which of those tables ``sasbert phases detect`` reads (``phases``);
* whether a config can switch it off (``optional``): its section then has ``enabled`` (its
  schema default: true for complexity and context, false for the costly llc), and with
  ``enabled: false`` the workflow makes none of its jobs or tables, and phases and the figures go
  without them (``enabled_measures``). Probe and BLiMP, which phases and every
  figure read, are not optional.

This module is data: standard library only, no import of a measure, so the Snakefile, the CLI and
the analysis read it without paying for torch, and a measure's jobs do not import it (adding a
measure reruns none of the others). GLUE is not a measure of this kind: it fine-tunes a few chosen
checkpoints per task (``sasbert.measure.glue``, ``workflow/rules/glue.smk``), docs/extending.md.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence

ENABLED = "enabled"  # an optional measure's switch, a key of its config section


@dataclasses.dataclass(frozen=True)
class Measure:
    """One per-checkpoint measure (see the module docstring)."""

    name: str  # command, config section, results/<name>/, rule names
    cli: str  # module (under sasbert) defining add_arguments(parser) and run(args)
    help: str  # the command's one-line help
    tables: tuple[str, ...]  # per run x seed tables, in the order of their --out-<table> flags
    inputs: tuple[str, ...] = ()  # keys of the config section that name files: rule inputs, --<key> flags
    gathered: dict[str, str] = dataclasses.field(default_factory=dict)  # table -> all-runs table
    all_runs: str | None = None  # torch-free module with ALL_RUNS (None: stack the tables as they are)
    phases: tuple[str, ...] = ()  # all-runs tables that `phases detect` reads (flag --<table>)
    optional: bool = False  # its config section has `enabled` (see the module docstring)

    def out_flag(self, table: str) -> str:
        return f"--out-{table.replace('_', '-')}"

    def input_flag(self, key: str) -> str:
        return f"--{key.replace('_', '-')}"

    def gathered_flag(self, table: str) -> str:
        """``phases gather``'s flag for this measure's ``table`` (one file per run x seed)."""
        return f"--{self.name}-{table}".replace("_", "-")


@dataclasses.dataclass(frozen=True)
class AllRunsTable:
    """How one per run x seed table of a measure becomes rows of an all-runs table: the columns it
    must have, what it is (for messages), the rows kept (``rows``: a function of the table), and the
    all-runs table's columns after ``run, seed`` (None: the columns the tables have)."""

    required: Sequence[str]
    what: str
    rows: Callable | None = None
    columns: Sequence[str] | None = None


MEASURES: dict[str, Measure] = {
    measure.name: measure
    for measure in (
        Measure(
            name="probe",
            cli="measure.probe.cli",
            help="attention-head UAS of checkpoints against a gold treebank",
            tables=("scores", "summary", "bootstrap"),
            inputs=("treebank",),
            gathered={"summary": "uas", "scores": "heads", "bootstrap": "uas_bootstrap"},
            all_runs="measure.probe.all_runs",
            phases=("uas", "uas_bootstrap"),
        ),
        Measure(
            name="blimp",
            cli="measure.blimp.cli",
            help="BLiMP accuracy of checkpoints by pseudo-log-likelihood",
            tables=("pairs", "summary"),
            inputs=("data_dir",),
            gathered={"summary": "blimp"},
            all_runs="measure.blimp.all_runs",
            phases=("blimp",),
        ),
        Measure(
            name="complexity",
            cli="measure.complexity",
            help="TwoNN intrinsic dimension of each layer's token representations",
            tables=("summary",),
            inputs=("treebank",),
            gathered={"summary": "complexity"},
            all_runs="measure.complexity",
            phases=("complexity",),
            optional=True,
        ),
        Measure(
            name="context",
            cli="measure.context",
            help="held-out MLM loss of checkpoints with attention restricted to +-w pieces",
            tables=("summary",),
            inputs=("treebank",),
            gathered={"summary": "context"},
            optional=True,
        ),
        Measure(
            name="llc",
            cli="measure.llc",
            help="local learning coefficient of checkpoints, by SGLD on the MLM loss (devinterp)",
            tables=("summary",),
            inputs=("treebank",),
            gathered={"summary": "llc"},
            optional=True,
        ),
    )
}


def enabled_measures(config: Mapping) -> list[Measure]:
    """The measures a validated config runs, in registry order: all but the optional ones whose
    section says ``enabled: false`` (validation fills the switch with its schema default, the one
    place it is set)."""
    return [m for m in MEASURES.values() if not m.optional or config[m.name][ENABLED]]


def gathered_tables(measures: Sequence[Measure] | None = None) -> list[tuple[Measure, str, str]]:
    """(measure, its table, the all-runs table) of every gathered table of ``measures`` (default:
    every registered one), in registry order."""
    measures = MEASURES.values() if measures is None else measures
    return [(m, table, all_runs) for m in measures for table, all_runs in m.gathered.items()]


def all_runs_modules() -> list[str]:
    """The modules that shape the gathered tables (the ``tables`` rule's code, beside gather's)."""
    return [m.all_runs for m in MEASURES.values() if m.all_runs and m.gathered]
