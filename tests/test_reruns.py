"""Partial reruns of training through the real Snakefile: a denser schedule, a longer run, a
shorter one, and a release run at a k the parent never saved. Each trains only the new stretch,
equals an uninterrupted run bit for bit, and leaves every existing checkpoint's probe and BLiMP
tables untouched (content and modification time)."""

import re

import pandas as pd
import pytest
import yaml

from conftest import REPO, assert_same_weights, job_counts, link_workflow, snakemake_ok, weights

pytestmark = pytest.mark.slow

BASE = yaml.safe_load((REPO / "tests" / "configs" / "e2e.yaml").read_text())
RUN = "results/pretrain/sas_minus/seed0"
DETERMINISTIC = ["step", "mlm_loss", "sas", "lambda", "lr", "grad_norm"]  # not the timings


def config(max_steps, steps, release_at=None):
    # a fixed vocab: a trained WordPiece vocab may break frequency ties differently in the
    # reference's working directory, and then the two runs would not see the same data
    cfg = {
        **BASE,
        "tokenizer": {**BASE["tokenizer"], "vocab": "resources/tokenizer/bert-base-uncased-vocab.txt"},
        "train": {**BASE["train"], "max_steps": max_steps, "decay_horizon": 200},
        "checkpoints": {"steps": steps, "every": []},
        "runs": [{"name": "sas_minus", "lambda": 1.0}],
    }
    if release_at is not None:
        cfg["runs"].append(
            {
                "name": "release",
                "lambda": [{"value": 1.0, "until_step": release_at}, {"value": 0.0}],
                "resume_from": {"run": "sas_minus", "step": release_at},
            }
        )
    return cfg


def targets(cfg):
    runs = [r["name"] for r in cfg["runs"]]
    return [f"results/{stage}/{run}/seed0/summary.parquet" for run in runs for stage in ("probe", "blimp")]


def run_config(workdir, cfg, dry=False):
    path = workdir / "rerun.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return snakemake_ok(*targets(cfg), *(["-n"] if dry else []), "--cores", "2", "--configfile", str(path), cwd=workdir)


def per_step_tables(workdir, run="sas_minus"):
    """{path: (mtime, bytes)} of every per-checkpoint probe and BLiMP table of a run."""
    found = {}
    for stage in ("probe", "blimp"):
        for path in (workdir / "results" / stage / run / "seed0").glob("by_step-*/step-*.parquet"):
            found[str(path.relative_to(workdir))] = (path.stat().st_mtime_ns, path.read_bytes())
    return found


def trained(workdir, run="sas_minus", job="seed0"):
    """What a training job's log says it trained (``job``: seed0, or seed0.until-<end> for a part)."""
    log = (workdir / "results" / "logs" / "pretrain" / run / f"{job}.log").read_text()
    return re.findall(r"(resuming at step \d+|training from scratch)[^,]*, training to (\d+)", log), log


def test_densify_extend_shorten_and_release_at_any_k_train_only_what_is_new(tmp_path):
    work = link_workflow(tmp_path / "work")
    run_config(work, config(40, [0, 20, 40]))
    assert trained(work)[0] == [("training from scratch", "40")]

    # densify: a checkpoint at 30 is trained from the state at 20 only; nothing else is redone
    before = per_step_tables(work)
    dense = config(40, [0, 20, 30, 40])
    plan = job_counts(run_config(work, dense, dry=True))
    assert "tokenize" not in plan and "parse" not in plan and plan["pretrain"] == 1
    run_config(work, dense)
    assert trained(work)[0] == [("resuming at step 20", "30")]
    after = per_step_tables(work)
    assert {k: v for k, v in after.items() if k in before} == before
    assert any("step-30." in k for k in set(after) - set(before))

    # extend: 40 -> 80 trains steps 41..80 only
    before = after
    longer = config(80, [0, 20, 30, 40, 60, 80])
    run_config(work, longer)
    assert trained(work)[0] == [("resuming at step 40", "80")]
    assert {k: v for k, v in per_step_tables(work).items() if k in before} == before

    # release at a k the parent never saved: the parent trains 40 -> 50 (a part ending at k, so
    # that the release run need not wait for the parent's end), the release run 50 -> 80
    release = config(80, [0, 20, 30, 40, 60, 80], release_at=50)
    run_config(work, release)
    assert trained(work, job="seed0.until-50")[0] == [("resuming at step 40", "50")]
    assert trained(work)[0] == []
    assert trained(work, "release")[0] == [("resuming at step 50", "80")]
    published = sorted(int(p.name[5:]) for p in (work / "results/pretrain/release/seed0/checkpoints").glob("step-*"))
    assert published == [50, 60, 80]

    # shorten: nothing is trained, the tables end at the new last step
    run_config(work, config(40, [0, 20, 30, 40]))
    steps, log = trained(work)
    assert steps == [] and "nothing to train" in log
    assert pd.read_parquet(work / RUN / "metrics" / "steps.parquet")["step"].max() == 40

    # the uninterrupted reference: one run with every checkpoint from the start
    reference = link_workflow(tmp_path / "reference")
    run_config(reference, config(80, [0, 20, 30, 40, 50, 60, 80]))
    run_config(work, config(80, [0, 20, 30, 40, 50, 60, 80]))  # back to 80: nothing new to train
    assert trained(work)[0] == []
    for step in (30, 50, 80):
        assert_same_weights(weights(work / RUN, step), weights(reference / RUN, step))
    ours = pd.read_parquet(work / RUN / "metrics" / "steps.parquet")[DETERMINISTIC]
    theirs = pd.read_parquet(reference / RUN / "metrics" / "steps.parquet")[DETERMINISTIC]
    pd.testing.assert_frame_equal(ours, theirs)


def test_a_run_split_into_three_jobs_equals_one_job(tmp_path):
    """train.job_steps: 10 makes a 30-step run three chained jobs, each resuming from the previous
    one's state; probe and BLiMP score each finished part; the result is one job's, bit for bit.
    A release run starts from the part that holds its k."""
    split = config(30, [0, 5, 10, 20, 30], release_at=15)
    split["train"]["job_steps"] = 10
    work = link_workflow(tmp_path / "split")
    plan = job_counts(run_config(work, split, dry=True))
    # sas_minus: parts to 10, 15 (the release run's k) and 20, then the last job; release (from
    # 15): a part to 25, then the last
    assert plan["pretrain_part"] == 4 and plan["pretrain"] == 2
    assert plan["probe_part"] == plan["blimp_part"] == 4
    run_config(work, split)
    assert trained(work)[0] == [("resuming at step 20", "30")]
    assert trained(work, job="seed0.until-10")[0] == [("training from scratch", "10")]
    assert trained(work, job="seed0.until-15")[0] == [("resuming at step 10", "15")]
    assert trained(work, job="seed0.until-20")[0] == [("resuming at step 15", "20")]
    assert trained(work, "release", job="seed0.until-25")[0] == [("resuming at step 15", "25")]
    assert (work / "results" / "pretrain" / "sas_minus" / "seed0" / "parts" / "until-15" / "step-15").is_dir()

    whole = config(30, [0, 5, 10, 20, 30], release_at=15)
    reference = link_workflow(tmp_path / "whole")
    run_config(reference, whole)
    for run in ("sas_minus", "release"):
        folder = f"results/pretrain/{run}/seed0"
        steps = sorted(p.name for p in (work / folder / "checkpoints").glob("step-*"))
        assert steps == sorted(p.name for p in (reference / folder / "checkpoints").glob("step-*"))
        for name in steps:
            assert_same_weights(weights(work / folder, int(name[5:])), weights(reference / folder, int(name[5:])))
        ours = pd.read_parquet(work / folder / "metrics" / "steps.parquet")[DETERMINISTIC]
        pd.testing.assert_frame_equal(
            ours, pd.read_parquet(reference / folder / "metrics" / "steps.parquet")[DETERMINISTIC]
        )
        for stage in ("probe", "blimp"):
            a = pd.read_parquet(work / f"results/{stage}/{run}/seed0/summary.parquet")
            b = pd.read_parquet(reference / f"results/{stage}/{run}/seed0/summary.parquet")
            pd.testing.assert_frame_equal(a, b)
