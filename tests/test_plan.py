"""The plan of the training runs (sasbert.workflow), case by case, against steps written out by hand:
what each run saves and publishes, where its parts end, which job publishes a checkpoint, and the
spec each training job gets. (tests/test_reruns.py runs the same cases through the real Snakefile.)"""

import copy

import pytest
import yaml

from conftest import REPO
from sasbert import config as sasconfig
from sasbert.workflow import RunPlan


def plan(max_steps=80, steps=(0, 20, 40, 80), job_steps=None, runs=None, decay_horizon=200) -> RunPlan:
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    config["train"].update(max_steps=max_steps, job_steps=job_steps, decay_horizon=decay_horizon)
    config["checkpoints"] = {"steps": list(steps), "every": []}
    config["runs"] = runs or [{"name": "minus", "lambda": 1.0}]
    return RunPlan(sasconfig.validate(config, base_dir=REPO))


def release(name, parent, k):
    return {
        "name": name,
        "lambda": [{"value": 1.0, "until_step": k}, {"value": 0.0}],
        "resume_from": {"run": parent, "step": k},
    }


def test_a_run_saves_and_publishes_its_schedule_in_one_job():
    p = plan()
    assert p.schedule("minus") == p.published("minus") == [0, 20, 40, 80]
    assert p.part_ends("minus") == [] and p.part_holding("minus", 40) is None
    assert p.published_by("minus") == [0, 20, 40, 80] and p.start("minus") == 0


def test_extend_shorten_and_densify_change_the_schedule_only():
    assert plan(max_steps=120, steps=(0, 20, 40, 80, 120)).schedule("minus") == [0, 20, 40, 80, 120]
    assert plan(max_steps=40).schedule("minus") == [0, 20, 40]  # steps past max_steps are dropped
    assert plan(steps=(0, 20, 30, 40, 80)).schedule("minus") == [0, 20, 30, 40, 80]
    # the weights' spec: max_steps and the schedule change, nothing else (they are not identity)
    short, long = plan(max_steps=40).spec("minus", 0), plan(max_steps=120).spec("minus", 0)
    assert {k for k in short if short[k] != long[k]} == {"max_steps", "checkpoint_steps"}


def test_a_release_at_an_unscheduled_k_makes_its_parent_save_k_and_end_a_part_there():
    p = plan(runs=[{"name": "minus", "lambda": 1.0}, release("rel", "minus", 50)])
    assert p.schedule("minus") == [0, 20, 40, 50, 80]  # k saved by the parent (trained from 40)
    assert p.part_ends("minus") == [50]  # the release run need not wait for the parent's end
    assert p.published_by("minus", 50) == [0, 20, 40, 50] and p.published_by("minus") == [0, 20, 40, 50, 80]
    assert p.part_holding("minus", 50) == 50 and p.part_holding("minus", 80) is None
    assert p.publish_after("minus", 50) == -1
    # the release run starts at k, publishes from k on, and gets the parent's schedule after k
    assert p.start("rel") == 50 and p.parent("rel") == ("minus", 50)
    assert p.schedule("rel") == [0, 20, 40, 50, 80] and p.published("rel") == [50, 80]
    assert p.part_ends("rel") == [] and p.publish_after("rel", 80) == 49


def test_parts_every_job_steps_and_at_each_k_and_what_each_publishes():
    p = plan(
        max_steps=30,
        steps=(0, 5, 10, 20, 30),
        job_steps=10,
        runs=[{"name": "minus", "lambda": 1.0}, release("rel", "minus", 15)],
    )
    assert p.part_ends("minus") == [10, 15, 20]
    assert [p.published_by("minus", e) for e in (10, 15, 20)] == [[0, 5, 10], [15], [20]]
    assert p.published_by("minus") == [0, 5, 10, 15, 20, 30]  # the last job publishes the whole run
    assert [p.previous_end("minus", e) for e in (10, 15, 20, 30)] == [None, 10, 15, 20]
    assert p.part_holding("minus", 15) == 15 and p.part_holding("minus", 5) == 10
    # a release run's parts count from its start: 15 + 10
    assert p.part_ends("rel") == [25] and p.published_by("rel", 25) == [15, 20]
    spec = p.part_spec("minus", 0, 15)
    assert spec["max_steps"] == 15 and spec["checkpoint_steps"] == [0, 5, 10, 15]
    assert spec["decay_horizon"] == 200  # explicit: extending the run leaves earlier parts' specs alone


def test_a_part_spec_makes_a_null_horizon_explicit():
    p = plan(max_steps=30, steps=(0, 10, 30), job_steps=10, decay_horizon=None)
    assert p.spec("minus", 0)["decay_horizon"] is None
    assert p.part_spec("minus", 0, 10)["decay_horizon"] == 30


def test_a_release_from_a_release():
    runs = [{"name": "minus", "lambda": 1.0}, release("rel", "minus", 20), release("relrel", "rel", 60)]
    p = plan(runs=runs)
    assert p.schedule("rel") == [0, 20, 40, 60, 80] and p.part_ends("rel") == [60]
    assert p.published("relrel") == [60, 80] and p.start("relrel") == 60
    assert p.release_starts("minus") == {20} and p.release_starts("rel") == {60}
    assert p.release_starts("relrel") == set()


def test_a_spec_holds_what_shapes_the_weights():
    p = plan(runs=[{"name": "minus", "lambda": 1.0}, release("rel", "minus", 20)])
    spec = p.spec("rel", 3)
    assert spec["seed"] == 3 and spec["lambda"] == [{"value": 1.0, "until_step": 20}, {"value": 0.0}]
    assert spec["checkpoint_steps"] == [0, 20, 40, 80] and spec["model"]["num_hidden_layers"] >= 1
    assert not {"threads", "gpus", "job_steps"} & set(spec)
    assert spec["regularizer"] == p.config["train"]["regularizer"]
    before = copy.deepcopy(p.config)
    p.part_spec("rel", 0, 40)
    assert p.config == before  # the plan never edits the config


@pytest.mark.parametrize("name", ["config.yaml", "config/paper.yaml", "config/paper-lite.yaml"])
def test_the_shipped_configs_plan_every_run(name):
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    if name != "config.yaml":
        from snakemake.utils import update_config

        update_config(config, yaml.safe_load((REPO / name).read_text()))
    p = RunPlan(sasconfig.validate(config, base_dir=REPO, check_paths=False))
    for run in p.runs:
        published = p.published(run)
        assert published[0] == p.start(run) and published[-1] == p.max_steps
        assert all(p.start(run) < e < p.max_steps for e in p.part_ends(run))
