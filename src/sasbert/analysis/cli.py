"""``sasbert phases gather|detect|seeds``: the command line of the gathered tables, of onset
detection and of the across-seeds correlations.

A command's module is imported by name when it runs (``importlib``), not by an import statement:
the code fingerprint of a command (``sasbert.code_identity``) is then its own module's closure, so
a change to onset detection does not regather the tables, nor a change to gathering redetect
onsets from tables that come out the same (tests/test_cache.py). The rules name each command's
module with this one.
"""

from __future__ import annotations

import argparse
import importlib

# command -> (module, one-line help, description)
COMMANDS = {
    "gather": (
        "sasbert.analysis.gather",
        "stack every run x seed's tables into all-runs tables (results/tables/)",
        "Stack the pretrain, probe and BLiMP tables of every run x seed under a results "
        "folder into tidy all-runs tables with run and seed columns.",
    ),
    "detect": (
        "sasbert.analysis.phases",
        "structure/capabilities onsets, breakthrough, loss drop, BLiMP jump",
        "Find the phase-transition events of every run x seed in gathered tables.",
    ),
    "seeds": (
        "sasbert.analysis.seeds",
        "across seeds: UAS vs held-out loss vs BLiMP per group of seed replicates",
        "Spearman and Pearson correlations (p-values, bootstrap intervals) of UAS, held-out loss "
        "and BLiMP across the seeds of each group of replicates, never pooling runs.",
    ),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="phases_command", required=True, metavar="COMMAND")
    for name, (module, help_text, description) in COMMANDS.items():
        command = sub.add_parser(name, help=help_text, description=description)
        importlib.import_module(module).add_arguments(command)


def run(args: argparse.Namespace) -> None:
    importlib.import_module(COMMANDS[args.phases_command][0]).run(args)
