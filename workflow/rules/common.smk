# What the DAG needs from every stage: the validated config, the run plan, checkpoint series,
# paths and fingerprints. Each stage's input functions live in workflow/rules/inputs/<stage>.smk,
# which its rule file includes (Snakemake's lint wants functions and rules in separate files). Never
# import torch here: the DAG is built on login nodes and laptops alike.
import hashlib
import json
import os
import shlex
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.logging import logger

sys.path.insert(0, str(Path(workflow.basedir) / "src"))
from sasbert.measure import checkpoints as sascheckpoints  # noqa: E402
from sasbert import code_identity  # noqa: E402
from sasbert import config as sasconfig  # noqa: E402
from sasbert import hub as sashub  # noqa: E402
from sasbert import textio  # noqa: E402
from sasbert.errors import InputError  # noqa: E402
from sasbert.analysis.figures import registry as sasfigures  # noqa: E402
from sasbert.measure import registry as sasmeasures  # noqa: E402
from sasbert.measure import command as sasmeasure_command  # noqa: E402
from sasbert.data.parsers import registry as sasparsers  # noqa: E402
from sasbert.workflow import RunPlan  # noqa: E402

try:
    # `--config` values arrive as strings (Snakemake's YAML base loader): read them as a file's are
    sasconfig.type_command_line_values(config, dict(workflow.config_settings.config))
    sasconfig.validate(config, base_dir=Path.cwd(), schema_path=workflow.source_path("../schemas/config.schema.yaml"))
except sasconfig.ConfigError as err:
    raise WorkflowError(str(err)) from None
if workflow.is_main_process:
    for _warning in sasconfig.config_warnings(config):
        logger.warning(f"config: {_warning}")

# Jobs call the `sasbert` CLI; find it beside the Python that runs Snakemake (the project's venv).
os.environ["PATH"] = str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", "")

# Every job runs the one `sasbert` package: `--use-conda` builds this environment for them
# (relative to the rule files, all in workflow/rules/).
CONDA_ENV = "../../envs/sasbert.yaml"

CORPUS = config["corpus"]["name"]
# What pretraining reads: the tokenize stage's dataset and tokenizer, or a pre-tokenized corpus'
# (corpus.backend pretokenized: no corpus, parse or tokenize job; pretokenized.smk).
PRETOKENIZED = config["corpus"]["backend"] == "pretokenized"
TRAINING_DATA = f"results/{'pretokenized' if PRETOKENIZED else 'tokenize'}/{CORPUS}/dataset"
TRAINING_TOKENIZER = f"results/{'pretokenized' if PRETOKENIZED else 'tokenize'}/{CORPUS}/tokenizer"
SHARDS = list(range(config["corpus"]["shards"]))
RUNS = {run["name"]: run for run in config["runs"]}
SEEDS = config["seeds"]
# the per-checkpoint measures this config runs (an optional one with `enabled: false` has no rule)
MEASURES = sasmeasures.enabled_measures(config)
# which checkpoints each run saves and publishes, where its parts end, each training job's spec
PLAN = RunPlan(config)
# Checkpoint series trained elsewhere: their (folder, step) pairs, resolved and checked now, so that
# a missing folder, an unreadable step or a step given twice stops the run before any job.
# A hub series' checkpoints are hub:<repo>@<revision> specs (its folders exist once series_fetch
# has filled the HF cache), with their steps from the config or their names.
SERIES = {series["name"]: series for series in config["series"]}
HUB_SERIES = [name for name, series in SERIES.items() if "hub" in series]
SERIES_CHECKPOINTS = {}
for _i, (_name, _series) in enumerate(SERIES.items()):
    try:
        if "hub" in _series:
            SERIES_CHECKPOINTS[_name] = sascheckpoints.series_checkpoints(_series["hub"], _series["steps"])
        else:
            _pairs = sascheckpoints.resolve_checkpoints(_series["checkpoints"], _series["steps"], "steps")
            SERIES_CHECKPOINTS[_name] = [(str(folder), step) for folder, step in _pairs]
    except InputError as err:
        raise WorkflowError(f"series[{_i}] ({_name}): {err}") from None


wildcard_constraints:
    corpus=CORPUS,
    shard=r"\d+",
    run="|".join([*RUNS, *SERIES]),
    series="|".join(HUB_SERIES) or "(?!)",
    seed=r"\d+",
    step=r"\d+",
    end=r"\d+",


# The code part of every job's identity (sasbert.code_identity): a job parameter, which Snakemake
# compares by value. A real change of the code a stage runs reruns it ("Params have changed"); a
# comment, a docstring, `touch`, a moved folder or a fresh clone changes no fingerprint and reruns
# nothing. The jobs compute the same fingerprints from the code they run, for the resume state and
# the per-checkpoint caches that Snakemake cannot see into.
PACKAGE_DIR = Path(workflow.basedir) / "src" / "sasbert"


def code_fingerprint(*modules, exclude=()):
    """The fingerprint of the code of ``modules`` and every package module they import (but
    ``exclude``)."""
    return code_identity.code_fingerprint(*modules, package_dir=PACKAGE_DIR, exclude=exclude)


def options_key(options):
    """A short fingerprint of a stage's options. Per-checkpoint results that a job keeps across
    attempts live in a folder named by it, so results made with other options are never reused."""
    return hashlib.sha1(json.dumps(options, sort_keys=True).encode()).hexdigest()[:10]


def stage_options(section, **derived):
    """A stage's options: its config section (defaults filled by validation) as the JSON its CLI
    takes with --options, with any values the workflow derives from other sections."""
    return json.dumps({**config[section], **derived}, sort_keys=True)


def command(*parts):
    """A shell command from parts (a shared command and what one rule adds to it)."""
    return " ".join(parts)


def optional_flag(flag, value):
    """``flag value`` (the value shell-quoted: paths may hold spaces), or nothing for None."""
    return "" if value is None else f"{flag} {shlex.quote(str(value))}"


def measured(stage, table):
    """A stage's table of every run x seed (runs in config order, seeds within each run), then of
    every series (at its own seed): the order `phases gather` reads them in."""
    return [
        *expand(f"results/{stage}/{{run}}/seed{{seed}}/{table}", run=RUNS, seed=SEEDS),
        *[f"results/{stage}/{name}/seed{series['seed']}/{table}" for name, series in SERIES.items()],
    ]


def final_outputs():
    """What `snakemake` builds by default: every stage implemented so far (without training runs,
    a config that only measures series has no corpus, tokenize or pretrain job)."""
    return [
        *([TRAINING_DATA if PRETOKENIZED else f"results/tokenize/{CORPUS}/stats.json"] if RUNS else []),
        *expand(f"{run_dir('{run}', '{seed}')}/metrics/eval.parquet", run=RUNS, seed=SEEDS),
        *[path for m in MEASURES for t in m.tables for path in measured(m.name, f"{t}.parquet")],
        "results/tables/phases.csv",
        *glue_tables(),
        *expand(
            "results/figures/{figure}.{ext}",
            ext=["png", "pdf"],
            figure=sasfigures.FIGURES,
        ),
    ]


def run_dir(run, seed):
    return f"results/pretrain/{run}/seed{seed}"


def run_dir_of(wildcards):
    return run_dir(wildcards.run, wildcards.seed)


def checkpoint_folder(run, seed, step):
    """The published folder that holds a run's checkpoint at ``step``: its part's, or the run's."""
    end = PLAN.part_holding(run, step)
    return part_dir(run, seed, end) if end is not None else f"{run_dir(run, seed)}/checkpoints"


def part_dir(run, seed, end):
    return f"{run_dir(run, seed)}/parts/until-{end}"
