# Shared helpers: config validation, paths, input functions. The only rule file with real Python.
# Never import torch here: the DAG is built on login nodes and laptops alike.
import os
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError

sys.path.insert(0, str(Path(workflow.basedir) / "src"))
from sasbert import config as sasconfig  # noqa: E402

try:
    sasconfig.validate(config, base_dir=Path.cwd(), schema_path=workflow.source_path("../schemas/config.schema.yaml"))
except sasconfig.ConfigError as err:
    raise WorkflowError(str(err)) from None

# Jobs call the `sasbert` CLI; find it beside the Python that runs Snakemake (the project's venv).
os.environ["PATH"] = str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", "")

CORPUS = config["corpus"]["name"]
SHARDS = list(range(config["corpus"]["shards"]))
RUNS = {run["name"]: run for run in config["runs"]}
SEEDS = config["seeds"]
CHECKPOINT_STEPS = sasconfig.checkpoint_steps(config)


wildcard_constraints:
    corpus=CORPUS,
    shard=r"\d+",
    run="|".join(RUNS),
    seed=r"\d+",
    step=r"\d+",


def stage_code(*modules):
    """Package modules a stage runs, as inputs: editing them reruns the stage (shell: rules are
    not code-tracked by Snakemake otherwise)."""
    src = Path(workflow.basedir) / "src" / "sasbert"
    common = ["cli", "atomic", "errors", "textio"]
    return [str(src / f"{name}.py") for name in [*common, *modules]]


def corpus_inputs():
    corpus = config["corpus"]
    return corpus["conllu"] if corpus["backend"] == "conllu" else corpus["text"]


def corpus_kind():
    return "conllu" if config["corpus"]["backend"] == "conllu" else "text"


def optional_flag(flag, value):
    return "" if value is None else f"{flag} {value}"


def final_outputs():
    """What `snakemake` builds by default: every stage implemented so far."""
    return [
        f"results/tokenize/{CORPUS}/stats.json",
    ]
