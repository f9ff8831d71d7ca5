"""On a CUDA GPU (skipped elsewhere; run with `pytest -m gpu`): mixed-precision pretraining with the
regularizer, resume after kill -9, and the probe, BLiMP and stanza parses on the GPU agreeing with
the same computation on the CPU."""

import os
import signal
import subprocess
import time

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import EWT, RESOURCES, pretrain_cmd, tiny_spec
from sasbert.cli import main

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]

ENV = {**os.environ, "PYTHONUNBUFFERED": "1"}


def gpu_spec(precision):
    return tiny_spec(
        **{
            "precision": precision,
            "lambda": 1.0,
            "max_steps": 40,
            "checkpoint_steps": [0, 20, 40],
            "decay_horizon": 80,
            "logging_steps": 1,
        }
    )


@pytest.mark.parametrize("precision", ["bf16", "fp16", "fp32"])
def test_pretrain_on_the_gpu(tiny_corpus, tmp_path, precision):
    result = subprocess.run(
        pretrain_cmd(tiny_corpus, tmp_path, gpu_spec(precision)), env=ENV, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr[-3000:]
    steps = pd.read_parquet(tmp_path / "metrics" / "steps.parquet")
    assert steps["step"].tolist() == list(range(1, 41))
    assert np.isfinite(steps["mlm_loss"]).all() and np.isfinite(steps["sas"]).all()
    assert steps["mlm_loss"].iloc[-5:].mean() < steps["mlm_loss"].iloc[:5].mean()  # it learns
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["step-0", "step-20", "step-40"]
    from transformers import AutoModelForMaskedLM

    model = AutoModelForMaskedLM.from_pretrained(tmp_path / "checkpoints" / "step-40")
    assert all(p.dtype == torch.float32 for p in model.parameters())  # mixed precision keeps fp32 master weights


def test_kill_9_on_the_gpu_then_resume(tiny_corpus, tmp_path):
    spec = gpu_spec("bf16")
    reference = tmp_path / "reference"
    assert subprocess.run(pretrain_cmd(tiny_corpus, reference, spec), env=ENV, capture_output=True).returncode == 0
    run_dir = tmp_path / "killed"
    proc = subprocess.Popen(
        pretrain_cmd(tiny_corpus, run_dir, spec), env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    state = run_dir / "state"
    deadline = time.time() + 300
    while not any(state.glob("checkpoint-20/trainer_state.json")) and time.time() < deadline:
        time.sleep(0.05)
    assert any(state.glob("checkpoint-20/trainer_state.json")), "no checkpoint at step 20 within 300 s"
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL  # killed mid-run, not finished before the signal
    result = subprocess.run(pretrain_cmd(tiny_corpus, run_dir, spec), env=ENV, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    ours = pd.read_parquet(run_dir / "metrics" / "steps.parquet")
    theirs = pd.read_parquet(reference / "metrics" / "steps.parquet")
    assert ours["step"].tolist() == list(range(1, 41))
    # cuBLAS kernels are not bit-reproducible: the same data, masks and states give close losses
    np.testing.assert_allclose(ours["mlm_loss"], theirs["mlm_loss"], rtol=0.02)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
@pytest.mark.parametrize("padded", [False, True])  # flash (bf16, no mask) or memory-efficient kernel
def test_fused_regularizer_on_the_gpu_matches_eager(precision, padded):
    """The fused path's R and gradients on the GPU against the eager path's, dropout off: the
    CPU test's comparison, at fp32 (TF32 off) to 1e-4 and under bf16 autocast to bf16 rounding."""
    from test_regularizer import fused_case, loss_and_grads

    torch.backends.cuda.matmul.allow_tf32 = False
    model, batch = fused_case(padded=padded)
    model.cuda()
    batch = {k: v.cuda() for k, v in batch.items()}
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    results = {}
    for attention in ("post_dropout", "pre_dropout"):
        with torch.autocast("cuda", dtype=dtype, enabled=precision == "bf16"):
            results[attention] = loss_and_grads(model, batch, attention, "max", "both", "mean")
    (sas_eager, grads_eager), (sas_fused, grads_fused) = results["post_dropout"], results["pre_dropout"]
    tolerance = 1e-4 if precision == "fp32" else 3e-2
    torch.testing.assert_close(sas_fused, sas_eager, rtol=tolerance, atol=0)
    largest = max(grad.abs().max() for grad in grads_eager.values())
    for name in grads_eager:
        torch.testing.assert_close(
            grads_fused[name], grads_eager[name], rtol=tolerance, atol=tolerance * largest, msg=name
        )


def test_fused_and_eager_training_give_the_same_loss_curve_on_the_gpu(tiny_corpus, tmp_path):
    """bf16 training for 300 steps, R read by the fused path and by the eager path (attention
    dropout off, where they are the same quantity): the loss curves agree within bf16 noise,
    measured as the gap between two eager runs that differ only in the GPU's nondeterminism."""
    curves = {}
    for name, attention in (("eager", "post_dropout"), ("eager_again", "post_dropout"), ("fused", "pre_dropout")):
        spec = tiny_spec(
            precision="bf16",
            max_steps=300,
            checkpoint_steps=[0, 300],
            decay_horizon=600,
            logging_steps=1,
            **{"lambda": 1.0},
        )
        spec["model"] = {**spec["model"], "attention_probs_dropout_prob": 0.0, "hidden_dropout_prob": 0.0}
        spec["regularizer"] = {**spec["regularizer"], "attention": attention}
        result = subprocess.run(
            pretrain_cmd(tiny_corpus, tmp_path / name, spec), env=ENV, capture_output=True, text=True
        )
        assert result.returncode == 0, result.stderr[-3000:]
        steps = pd.read_parquet(tmp_path / name / "metrics" / "steps.parquet")
        curves[name] = steps.set_index("step")[["mlm_loss", "sas"]].rolling(20).mean().dropna()
    noise = (curves["eager_again"] - curves["eager"]).abs().max()
    gap = (curves["fused"] - curves["eager"]).abs().max()
    for column in ("mlm_loss", "sas"):
        assert gap[column] <= max(3 * noise[column], 0.02 * curves["eager"][column].abs().mean()), (column, gap, noise)


@pytest.fixture(scope="module")
def checkpoint(tiny_corpus, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("run")
    result = subprocess.run(
        pretrain_cmd(tiny_corpus, run_dir, gpu_spec("bf16")), env=ENV, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return run_dir / "checkpoints" / "step-40"


def test_probe_on_the_gpu_matches_the_cpu(checkpoint, tmp_path):
    tables = {}
    for device in ("cpu", "cuda"):
        scores, summary = tmp_path / f"scores-{device}.parquet", tmp_path / f"summary-{device}.parquet"
        args = ["probe", "score", "--checkpoint", str(checkpoint), "--treebank", str(EWT / "en_ewt-ud-dev.conllu.gz")]
        args += ["--out-scores", str(scores), "--out-summary", str(summary), "--step", "40", "--max-sentences", "100"]
        assert main([*args, "--device", device]) == 0
        tables[device] = pd.read_parquet(scores)
    cpu, gpu = tables["cpu"], tables["cuda"]
    assert len(cpu) == len(gpu) > 0
    numeric = [c for c in cpu.columns if pd.api.types.is_float_dtype(cpu[c])]
    for column in numeric:
        np.testing.assert_allclose(gpu[column], cpu[column], atol=2e-3, err_msg=column)


def test_blimp_on_the_gpu_matches_the_cpu(checkpoint, tmp_path):
    pairs = {}
    for device in ("cpu", "cuda"):
        out_pairs, out_summary = tmp_path / f"pairs-{device}.parquet", tmp_path / f"summary-{device}.parquet"
        args = ["blimp", "score", "--checkpoint", str(checkpoint), "--data-dir", str(RESOURCES / "blimp")]
        args += ["--out-pairs", str(out_pairs), "--out-summary", str(out_summary), "--step", "40"]
        assert main([*args, "--pairs-per-paradigm", "3", "--device", device]) == 0
        pairs[device] = pd.read_parquet(out_pairs)
    cpu, gpu = pairs["cpu"], pairs["cuda"]
    assert len(cpu) == len(gpu) == 3 * 67
    for column in [c for c in cpu.columns if "pll" in c]:
        np.testing.assert_allclose(gpu[column], cpu[column], atol=1e-3, err_msg=column)


def test_stanza_on_the_gpu_parses_like_the_cpu(tmp_path):
    pytest.importorskip("stanza")
    from sasbert.data import corpus
    from sasbert.data.parsers import stanza as stanza_parser
    from stanza_tiny import PACKAGE, build_tiny_stanza_models, install_as_resources

    paths = build_tiny_stanza_models(EWT / "en_ewt-ud-train.conllu.gz", tmp_path / "models")
    folder = install_as_resources(paths, tmp_path / "stanza_resources")
    units = corpus.read_units(
        [str(RESOURCES / "text" / "enwiki2015_300k.txt.gz")],
        "text",
        cleaning=corpus.TextCleaning(min_words=5, max_words=3000),
    )
    parsed = {}
    for device in ("cpu", "auto"):  # auto: the GPU, since torch sees one
        nlp = stanza_parser.load_stanza(stanza_parser.StanzaOptions(str(folder), package=PACKAGE, device=device))
        assert str(nlp.device).startswith("cuda" if device == "auto" else "cpu")
        parsed[device] = stanza_parser.parse_units(
            units, stanza_parser.StanzaOptions(str(folder), package=PACKAGE, device=device)
        )
    cpu, gpu = parsed["cpu"], parsed["auto"]
    assert cpu["words"].map(tuple).tolist() == gpu["words"].map(tuple).tolist()
    same = sum(a == b for x, y in zip(cpu["heads"], gpu["heads"]) for a, b in zip(x, y))
    total = int(cpu["words"].map(len).sum())
    assert same / total > 0.99, f"GPU heads agree with CPU heads on {same}/{total} words"
