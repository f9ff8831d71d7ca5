"""Exact resume where silent errors live: inside an epoch, exactly at an epoch boundary, several
epochs in, a release run after k, a changed corpus, a finished run rerun, extension and denser
schedules. Every comparison is bit for bit on CPU: per-step losses, the blocks and masks each step
trained on (recorded from the real training loop), and the weights."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
from datasets import load_from_disk

from conftest import EWT, RESOURCES, assert_same_weights, tiny_spec, weights
from sasbert.data import corpus, tokenization
from sasbert.data.parsers import conllu
from sasbert.train.pretrain import train
from sasbert.train.resume import plan_segments
from sasbert.train.trainer import SASTrainer

BATCH = 8


def make_corpus(out: Path, n_sentences: int, vocab_size: int | None = None, first: int = 0) -> dict:
    """EWT train sentences [first, first + n) in blocks of 32, with as many validation blocks as
    make the training split a whole number of batches (so an epoch ends exactly at a step)."""
    units = corpus.read_units([str(EWT / "en_ewt-ud-train.conllu.gz")], "conllu", max_units=first + n_sentences)
    parsed = conllu.parse_shard(units[first:])
    if vocab_size is None:
        tokenizer = tokenization.load_tokenizer(RESOURCES / "tokenizer" / "bert-base-uncased-vocab.txt", True)
    else:
        tokenizer = tokenization.train_wordpiece(list(parsed["words"]), vocab_size, 2, True, out / "vocab")
    tokenizer.save_pretrained(str(out / "tokenizer"))
    blocks, _ = tokenization.build_dataset(parsed, tokenizer, seq_len=32, n_validation=8, keep_relations=False)
    n_validation = 8 + (len(blocks["train"]) % BATCH)
    dataset, _ = tokenization.build_dataset(
        parsed, tokenizer, seq_len=32, n_validation=n_validation, keep_relations=False
    )
    assert len(dataset["train"]) % BATCH == 0
    dataset.save_to_disk(str(out / "dataset"))
    return {"dataset": str(out / "dataset"), "tokenizer": str(out / "tokenizer"), "blocks": len(dataset["train"])}


@pytest.fixture(scope="module")
def epoch_corpus(tmp_path_factory):
    return make_corpus(tmp_path_factory.mktemp("epoch_corpus"), 120)


@pytest.fixture
def recorded(monkeypatch):
    """What every optimizer step of the real training loop trained on: step -> [(input_ids,
    labels)] per micro-batch, in order (masked inputs and labels pin down blocks and masks)."""
    steps: dict[int, list] = {}
    original = SASTrainer.compute_loss

    def compute_loss(self, model, inputs, *args, **kwargs):
        steps.setdefault(self.state.global_step + 1, []).append((inputs["input_ids"].clone(), inputs["labels"].clone()))
        return original(self, model, inputs, *args, **kwargs)

    monkeypatch.setattr(SASTrainer, "compute_loss", compute_loss)
    return steps


def assert_same_inputs(a: list, b: list):
    assert len(a) == len(b)
    for (ids_a, labels_a), (ids_b, labels_b) in zip(a, b):
        assert torch.equal(ids_a, ids_b) and torch.equal(labels_a, labels_b)


def block_ids(inputs: list, rows: dict) -> list[int]:
    """The training blocks a step drew: its sequences with the masked pieces put back."""
    out = []
    for ids, labels in inputs:
        original = torch.where(labels != -100, labels, ids)
        out += [rows[tuple(seq.tolist())] for seq in original]
    return out


def keep_state_until(src: Path, dst: Path, step: int) -> None:
    """A copy of a run as a job killed after ``step`` leaves it: later states and outputs gone."""
    shutil.copytree(src / "state", dst / "state")
    for checkpoint in (dst / "state").glob("checkpoint-*"):
        if int(checkpoint.name.split("-")[1]) > step:
            shutil.rmtree(checkpoint)
    (dst / "metrics").mkdir(parents=True)
    shutil.copy(src / "metrics" / "steps.csv", dst / "metrics" / "steps.csv")  # rows past `step` too


def test_resume_inside_an_epoch_at_its_boundary_and_epochs_later(epoch_corpus, tmp_path, recorded):
    per_epoch = epoch_corpus["blocks"] // BATCH
    inside, boundary, later = per_epoch // 2, per_epoch, 2 * per_epoch + 3
    last = 3 * per_epoch + 2
    spec = tiny_spec(
        max_steps=last,
        checkpoint_steps=[0, inside, boundary, later, last],
        decay_horizon=2 * last,
        batch_size=BATCH,
        **{"lambda": 0.5},
    )
    reference = tmp_path / "reference"
    train(epoch_corpus["dataset"], epoch_corpus["tokenizer"], str(reference), spec)
    uninterrupted = dict(recorded)
    assert sorted(uninterrupted) == list(range(1, last + 1))

    # every epoch trains on every block once, in a new order
    train_rows = load_from_disk(epoch_corpus["dataset"])["train"]["input_ids"]
    rows = {tuple(r): i for i, r in enumerate(train_rows)}
    epochs = [
        [b for s in range(e * per_epoch + 1, (e + 1) * per_epoch + 1) for b in block_ids(uninterrupted[s], rows)]
        for e in range(3)
    ]
    assert all(sorted(e) == list(range(epoch_corpus["blocks"])) for e in epochs)
    assert epochs[0] != epochs[1] != epochs[2]

    theirs = pd.read_parquet(reference / "metrics" / "steps.parquet")
    for resume in (inside, boundary, later):
        recorded.clear()
        run_dir = tmp_path / f"resumed-{resume}"
        keep_state_until(reference, run_dir, resume)
        train(epoch_corpus["dataset"], epoch_corpus["tokenizer"], str(run_dir), spec)
        assert sorted(recorded) == list(range(resume + 1, last + 1)), resume
        for step in recorded:
            assert_same_inputs(recorded[step], uninterrupted[step])
        ours = pd.read_parquet(run_dir / "metrics" / "steps.parquet")
        assert ours["step"].tolist() == list(range(1, last + 1))
        for column in ("mlm_loss", "sas", "lr", "grad_norm"):
            pd.testing.assert_series_equal(ours[column], theirs[column])
        assert_same_weights(weights(reference, last), weights(run_dir, last))


def test_release_run_draws_the_parents_blocks_and_masks_after_k(epoch_corpus, tmp_path, recorded):
    per_epoch = epoch_corpus["blocks"] // BATCH
    k, last = per_epoch + 2, 2 * per_epoch + 4  # released in the second epoch
    steps = [0, k, last]
    parent = tmp_path / "parent"
    train(
        epoch_corpus["dataset"],
        epoch_corpus["tokenizer"],
        str(parent),
        tiny_spec(max_steps=last, checkpoint_steps=steps, decay_horizon=2 * last, **{"lambda": 0.5}),
    )
    parent_inputs = dict(recorded)
    recorded.clear()
    stages = [{"value": 0.5, "until_step": k}, {"value": 0.0}]
    released = tmp_path / "released"
    train(
        epoch_corpus["dataset"],
        epoch_corpus["tokenizer"],
        str(released),
        tiny_spec(max_steps=last, checkpoint_steps=steps, decay_horizon=2 * last, **{"lambda": stages}),
        resume_from=str(parent / "checkpoints" / f"step-{k}"),
    )
    assert sorted(recorded) == list(range(k + 1, last + 1))
    for step in recorded:
        assert_same_inputs(recorded[step], parent_inputs[step])


def test_a_changed_corpus_trains_afresh_and_equals_a_fresh_run(tmp_path, caplog):
    """Snakemake deletes a run's declared outputs and reruns it when its corpus changes; the saved
    state of the old corpus must not be resumed (nor crash on a vocab of another size)."""
    old = make_corpus(tmp_path / "old", 120, vocab_size=300)
    new = make_corpus(tmp_path / "new", 120, vocab_size=400, first=120)
    spec = tiny_spec()
    run_dir = tmp_path / "run"
    train(old["dataset"], old["tokenizer"], str(run_dir), spec)
    shutil.rmtree(run_dir / "checkpoints")
    (run_dir / "metrics" / "steps.parquet").unlink()
    with caplog.at_level("WARNING"):
        train(new["dataset"], new["tokenizer"], str(run_dir), spec)
    assert "changed: the dataset or tokenizer content" in caplog.text
    fresh = tmp_path / "fresh"
    train(new["dataset"], new["tokenizer"], str(fresh), spec)
    assert_same_weights(weights(run_dir, 12), weights(fresh, 12))
    pd.testing.assert_frame_equal(
        pd.read_parquet(run_dir / "metrics" / "eval.parquet"), pd.read_parquet(fresh / "metrics" / "eval.parquet")
    )


def test_a_finished_run_rerun_trains_no_extra_step(epoch_corpus, tmp_path, recorded, caplog):
    """Outputs deleted and the dataset written again with the same content (what a touched
    upstream code file makes Snakemake do): the same tables and weights, nothing trained."""
    spec = tiny_spec()
    run_dir = tmp_path / "run"
    train(epoch_corpus["dataset"], epoch_corpus["tokenizer"], str(run_dir), spec)
    before = {
        "steps": pd.read_parquet(run_dir / "metrics" / "steps.parquet"),
        "eval": pd.read_parquet(run_dir / "metrics" / "eval.parquet"),
        "weights": weights(run_dir, 12),
    }
    shutil.rmtree(run_dir / "checkpoints")
    for table in ("steps", "eval"):
        (run_dir / "metrics" / f"{table}.parquet").unlink()
    rewritten = tmp_path / "dataset"
    load_from_disk(epoch_corpus["dataset"]).save_to_disk(str(rewritten))
    recorded.clear()
    with caplog.at_level("INFO"):
        train(str(rewritten), epoch_corpus["tokenizer"], str(run_dir), spec)
    assert recorded == {}
    assert "nothing to train" in caplog.text
    steps = pd.read_parquet(run_dir / "metrics" / "steps.parquet")
    assert steps["step"].tolist() == list(range(1, 13))
    pd.testing.assert_frame_equal(steps, before["steps"])
    pd.testing.assert_frame_equal(pd.read_parquet(run_dir / "metrics" / "eval.parquet"), before["eval"])
    assert_same_weights(weights(run_dir, 12), before["weights"])


def test_plan_segments_trains_each_missing_checkpoint_from_the_nearest_earlier_state():
    assert plan_segments([], [0, 4, 8]) == [(None, 8)]
    assert plan_segments([0, 4, 8], [0, 4, 8]) == []
    assert plan_segments([0, 20, 40], [0, 20, 30, 40, 60, 80]) == [(20, 30), (40, 80)]
    assert plan_segments([0, 20, 40], [0, 20, 40]) == []  # lowering max_steps: nothing to train
    assert plan_segments([10, 17], [10, 20]) == [(17, 20)]  # a SIGTERM state is a resume point
    assert plan_segments([0, 10, 20], [0, 5, 15, 20]) == [(0, 5), (10, 15)]


def test_accumulation_draws_the_same_blocks_and_masks_across_an_epoch_boundary(epoch_corpus, tmp_path, recorded):
    """grad_accumulation: 2 splits each step in two micro-batches; concatenated, they are exactly
    the one-batch run's sequences and masks, through the end of the first epoch and into the
    second (the data of a step does not depend on how it is split)."""
    per_epoch = epoch_corpus["blocks"] // BATCH
    spec = tiny_spec(max_steps=per_epoch + 3, checkpoint_steps=[0, per_epoch + 3], decay_horizon=4 * per_epoch)
    train(epoch_corpus["dataset"], epoch_corpus["tokenizer"], str(tmp_path / "one"), spec)
    whole = dict(recorded)
    recorded.clear()
    train(epoch_corpus["dataset"], epoch_corpus["tokenizer"], str(tmp_path / "two"), {**spec, "grad_accumulation": 2})
    assert sorted(recorded) == sorted(whole) == list(range(1, per_epoch + 4))
    for step, micro in recorded.items():
        assert len(micro) == 2
        joined = (torch.cat([m[0] for m in micro]), torch.cat([m[1] for m in micro]))
        assert_same_inputs([joined], whole[step])


def test_ddp_across_an_epoch_boundary_matches_one_process(epoch_corpus, tmp_path):
    """2 gloo processes through the end of the first epoch and into the second train like one
    process (dropout off: it draws from each process's own RNG), and a DDP run resumed from the
    checkpoint at the epoch boundary ends the same."""
    per_epoch = epoch_corpus["blocks"] // BATCH
    last = per_epoch + 3
    spec = tiny_spec(max_steps=last, checkpoint_steps=[0, per_epoch, last], decay_horizon=4 * per_epoch)
    spec["model"] = {**spec["model"], "hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0}
    train(epoch_corpus["dataset"], epoch_corpus["tokenizer"], str(tmp_path / "single"), spec)
    torchrun = str(Path(sys.executable).parent / "torchrun")
    cmd = [
        torchrun,
        "--standalone",
        "--nproc_per_node",
        "2",
        "-m",
        "sasbert",
        "pretrain",
        "--dataset",
        epoch_corpus["dataset"],
        "--tokenizer",
        epoch_corpus["tokenizer"],
        "--run-dir",
        str(tmp_path / "ddp"),
        "--spec",
        json.dumps(spec),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    single, ddp = weights(tmp_path / "single", last), weights(tmp_path / "ddp", last)
    for name in single:
        torch.testing.assert_close(single[name], ddp[name], rtol=1e-4, atol=1e-5)
    # as if killed right after the epoch boundary: resume there, under DDP
    shutil.rmtree(tmp_path / "ddp" / "state" / f"checkpoint-{last}")
    shutil.rmtree(tmp_path / "ddp" / "checkpoints")
    resumed = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"resuming at step {per_epoch}" in resumed.stderr
    assert_same_weights(ddp, weights(tmp_path / "ddp", last))
