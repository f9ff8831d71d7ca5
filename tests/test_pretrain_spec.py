"""A training run's spec (sasbert.train.spec): checked against, and completed from, the config
schema; every spec the workflow makes is already complete; a bad key stops the pretrain CLI with one
line naming it; and the check is not part of the training code's identity."""

import json
import subprocess
import sys

import pytest
import yaml
from snakemake.utils import update_config

from conftest import REPO, tiny_spec
from sasbert import code_identity
from sasbert import config as sasconfig
from sasbert.options import defaults
from sasbert.train.spec import NOT_SPEC_KEYS, complete_spec, read_spec
from sasbert.workflow import RunPlan

SHIPPED = [None, *sorted((REPO / "config").glob("*.yaml")), *sorted((REPO / "tests" / "configs").glob("*.yaml"))]


def shipped_config(overlay):
    """config.yaml with ``overlay`` merged over it, as `--configfile config.yaml <overlay>` does."""
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    if overlay is not None:
        update_config(config, yaml.safe_load(overlay.read_text()))
    return sasconfig.validate(config, base_dir=REPO, check_paths=False)


@pytest.mark.parametrize("overlay", SHIPPED, ids=lambda p: "config.yaml" if p is None else p.name)
def test_the_workflow_s_specs_are_complete_so_completing_them_changes_nothing(overlay):
    """What the pretrain CLI reads from a training job's --spec (with its --threads) is the spec
    Snakemake recorded for the job: the spec check adds no value that could shape the weights."""
    plan = RunPlan(shipped_config(overlay))
    for run in plan.runs:
        specs = [plan.spec(run, 0)] + [plan.part_spec(run, 0, end) for end in plan.part_ends(run)]
        for spec in specs:
            assert read_spec(json.dumps(spec), None, threads=3) == {**spec, "threads": 3}


def test_a_spec_gives_what_differs_from_the_schema_and_gets_the_rest():
    minimal = {"model": tiny_spec()["model"], "seed": 1, "lambda": 0.5, "checkpoint_steps": [0, 10]}
    spec = complete_spec(minimal)
    train = defaults("train")
    assert {k: v for k, v in spec.items() if k not in minimal} == {
        k: v for k, v in train.items() if k not in NOT_SPEC_KEYS
    }
    assert spec["regularizer"] == defaults("train", "regularizer") and minimal.items() <= spec.items()
    assert "model" in minimal and "regularizer" not in minimal  # complete_spec returned a new dict


@pytest.mark.parametrize(
    "change, message",
    [
        ({"lr": -1}, "--spec: lr: -1 is less than or equal to the minimum of 0"),
        ({"learning_rate": 0.1}, "--spec: learning_rate: unknown key"),
        ({"regularizer": {"type": "min"}}, "--spec: regularizer.type: 'min' is not one of ['max', 'uniform']"),
        ({"model": {"hidden_size": 32}}, "--spec: model.num_hidden_layers: required; model.num_attention_heads"),
        ({"lambda": "high"}, "--spec: lambda: 'high' is not valid under any of the given schemas; it must be"),
        ({"gpus": 2}, "--spec: gpus: unknown key"),  # resources are no spec key
    ],
)
def test_a_bad_spec_names_its_key(change, message):
    with pytest.raises(Exception, match="^" + message.replace("[", r"\[").replace("(", r"\(")) as err:
        complete_spec({**tiny_spec(), **change})
    assert type(err.value).__name__ == "InputError" and "\n" not in str(err.value)


def test_the_pretrain_cli_stops_on_a_bad_spec_with_one_line(tmp_path):
    spec = {k: v for k, v in tiny_spec().items() if k != "seed"}
    cmd = [sys.executable, "-m", "sasbert", "pretrain", "--dataset", str(tmp_path / "none"), "--tokenizer"]
    cmd += [str(tmp_path / "none"), "--run-dir", str(tmp_path / "run"), "--spec", json.dumps(spec)]
    done = subprocess.run(cmd, capture_output=True, text=True)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1] == "sasbert pretrain: error: --spec: seed: required"
    assert "Traceback" not in done.stderr and not (tmp_path / "run").exists()
    (tmp_path / "spec.json").write_text("{not json")
    cmd[cmd.index("--spec") : cmd.index("--spec") + 2] = ["--spec-file", str(tmp_path / "spec.json")]
    done = subprocess.run(cmd, capture_output=True, text=True)
    assert done.returncode == 2 and f"{tmp_path / 'spec.json'}: not JSON" in done.stderr


def test_the_spec_check_is_not_training_code():
    """It imports the config's code, which must not be in any run's identity (train/spec.py)."""
    for lam in (0.0, 1.0):
        modules = code_identity.training_fingerprints(lam)
        assert "train.pretrain" in modules
        assert not {"train.spec", "config", "options"} & set(modules), sorted(modules)
