"""Config validation: every bad value gives a message naming its key; schedules."""

import copy

import pytest
import yaml

from conftest import REPO
from sasbert import config as sasconfig


@pytest.fixture
def default():
    return yaml.safe_load((REPO / "config.yaml").read_text())


def check(cfg):
    return sasconfig.validate(cfg, base_dir=REPO)


@pytest.mark.parametrize("name", ["config.yaml", "config/paper.yaml", "config/paper-lite.yaml"])
def test_shipped_configs_are_valid(name):
    check(yaml.safe_load((REPO / name).read_text()))


def test_defaults_are_filled(default):
    cfg = check(default)
    assert cfg["train"]["mlm_probability"] == 0.15
    assert cfg["corpus"]["shards"] == 2 and cfg["corpus"]["max_units"] is None
    assert cfg["probe"]["min_relation_count"] == 100


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda c: c["train"].update(max_steps=-5), "train.max_steps: -5 is less than the minimum of 1"),
        (lambda c: c["train"].update(lr="fast"), "train.lr: 'fast' is not of type 'number'"),
        (lambda c: c["train"].update(max_step=10), "train.max_step: unknown key"),
        (lambda c: c.update(bogus=1), "bogus: unknown key"),
        (lambda c: c["corpus"].update(backend="udpipe"), "corpus.backend: 'udpipe' is not one of"),
        (lambda c: c["corpus"].update(conllu=["nowhere/x.conllu"]), "corpus.conllu[0]: path does not exist"),
        (lambda c: c["blimp"].update(data_dir="nowhere"), "blimp.data_dir: path does not exist"),
        (lambda c: c["runs"][0].update({"lambda_": 1}), "runs[0].lambda_: unknown key"),
        (lambda c: c["runs"][1].update({"lambda": "big"}), "runs[1].lambda: 'big' is not valid"),
        (lambda c: c["runs"].append({"name": "baseline", "lambda": 0}), "runs[4].name: 'baseline' is used by more"),
        (
            lambda c: c["runs"][3]["resume_from"].update(step=5000),
            "runs[3].resume_from.step: 5000 is not before train.max_steps",
        ),
        (lambda c: c["runs"][3]["resume_from"].update(run="nope"), "runs[3].resume_from.run: no run named 'nope'"),
        (  # a stage that outlasts the run would be reported as a release that never happened
            lambda c: c["runs"].append(
                {"name": "staged", "lambda": [{"value": 1.0, "until_step": 2000}, {"value": 0}]}
            ),
            "runs[4].lambda[0].until_step: 2000 is not before train.max_steps (2000)",
        ),
        (lambda c: c.update(seeds=[0, 0]), "seeds: [0, 0] has non-unique elements"),
        (
            lambda c: c["checkpoints"].update(every=[{"every": 0, "until": 5}]),
            "checkpoints.every[0].every: 0 is less than",
        ),
        (lambda c: c["model"].update(hidden_size=130), "model.hidden_size: 130 is not divisible"),
        (lambda c: c["train"].update(decay_horizon=10), "train.decay_horizon: 10 is before train.max_steps"),
        (lambda c: c["train"].update(lr=float("nan")), "train.lr: nan is not a finite number"),
        (lambda c: c["train"].update(weight_decay=float("inf")), "train.weight_decay: inf is not a finite number"),
        (lambda c: c.update(phases={"min_rise": float("-inf")}), "phases.min_rise: -inf is not a finite number"),
        (
            lambda c: c["runs"][2].update(resume_from={"run": "sas_minus_release_200", "step": 100}),
            "runs[2].resume_from: the runs resume from each other in a cycle "
            "(sas_minus -> sas_minus_release_200 -> sas_minus)",
        ),
        (lambda c: c["probe"].pop("treebank"), "probe: 'treebank' is a required property"),
        (lambda c: c.update(blimp={"pairs_per_paradigm": 2}), "blimp: 'data_dir' is a required property"),
    ],
)
def test_bad_values_name_their_key(default, edit, message):
    cfg = copy.deepcopy(default)
    edit(cfg)
    with pytest.raises(sasconfig.ConfigError) as err:
        check(cfg)
    assert message in str(err.value)


def test_checkpoint_schedule_piecewise():
    cfg = {
        "train": {"max_steps": 40000},
        "checkpoints": {"steps": [500], "every": [{"every": 1000, "until": 15000}, {"every": 5000, "until": 10**6}]},
    }
    steps = sasconfig.checkpoint_steps(cfg)
    assert steps[:4] == [0, 500, 1000, 2000]
    assert steps[-7:] == [14000, 15000, 20000, 25000, 30000, 35000, 40000]


def test_checkpoint_schedule_always_ends_at_max_steps():
    cfg = {"train": {"max_steps": 250}, "checkpoints": {"steps": [], "every": [{"every": 100, "until": 1000}]}}
    assert sasconfig.checkpoint_steps(cfg) == [0, 100, 200, 250]


def test_model_presets_and_overrides():
    assert sasconfig.model_config({"model": {"preset": "base"}})["intermediate_size"] == 3072
    tiny = sasconfig.model_config({"model": {"preset": "tiny", "num_hidden_layers": 2}})
    assert (tiny["num_hidden_layers"], tiny["hidden_size"]) == (2, 128)


def test_yaml_nan_and_inf_are_refused_with_their_key(default, tmp_path):
    """As a user writes them: YAML's .nan and .inf parse as floats and must not reach training."""
    cfg = copy.deepcopy(default)
    cfg["train"].update(yaml.safe_load("lr: .nan\nwarmup_steps: 10"))
    cfg["figures"] = yaml.safe_load("width: .inf")
    with pytest.raises(sasconfig.ConfigError) as err:
        check(cfg)
    assert "train.lr: nan is not a finite number" in str(err.value)
    assert "figures.width: inf is not a finite number" in str(err.value)


def test_command_line_values_are_typed_where_the_config_still_holds_them():
    given = {"train": {"max_steps": "40", "lr": "1.0e-3"}, "seeds": ["0", "1"], "probe": {"treebank": "x.conllu"}}
    config = {"train": {"max_steps": "40", "lr": "1.0e-3", "warmup_steps": 10}, "seeds": ["0", "1"]}
    config["probe"] = {"treebank": "x.conllu"}
    sasconfig.type_command_line_values(config, given)
    assert config == {
        "train": {"max_steps": 40, "lr": 1e-3, "warmup_steps": 10},
        "seeds": [0, 1],
        "probe": {"treebank": "x.conllu"},
    }
    # a value a later config file replaced is left alone
    later = {"train": {"max_steps": "7"}}
    sasconfig.type_command_line_values(later, {"train": {"max_steps": "40"}})
    assert later == {"train": {"max_steps": "7"}}


def test_warmup_at_or_past_the_last_step_warns(default):
    check(default)
    assert sasconfig.config_warnings(default) == []
    default["train"]["warmup_steps"] = default["train"]["max_steps"]
    (warning,) = sasconfig.config_warnings(default)
    assert warning.startswith("train.warmup_steps") and "never reaches train.lr" in warning
