"""benchmarks/gpu_check.sh, the device check, in its CPU smoke mode (so it keeps working where no GPU
is), the FLOP count its MFU figures rest on, and config/gpu-mid.yaml's plan."""

import importlib.util
import os
import subprocess
import sys

import yaml
from snakemake.utils import update_config

from conftest import REPO
from sasbert import config as sasconfig
from sasbert.workflow import RunPlan


def test_the_smoke_mode_writes_every_table_to_out_and_ends_with_the_headline(tmp_path):
    out = tmp_path / "out"
    env = {**os.environ, "OUT": str(out), "PYTHON": sys.executable, "OMP_NUM_THREADS": "1"}
    env.pop("SMOKE", None)
    result = subprocess.run(
        ["bash", str(REPO / "benchmarks" / "gpu_check.sh"), "--smoke"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    last = result.stdout.strip().splitlines()[-1]
    assert last.startswith("gpu_check headline: fused + R (pre_dropout) / SDPA step time: 4x32 "), last
    assert "n/a" not in last
    for name in ["pretrain_speed_4x32", "pretrain_speed_8x16", "blimp_speed", "probe_speed"]:
        table = (out / f"{name}.txt").read_text()
        assert table.strip(), name
    summary = (out / "summary.txt").read_text()
    assert "SKIPPED pytest -m gpu: needs CUDA" in summary and "0 check(s) failed" in summary
    assert summary.strip().splitlines()[-1] == last
    pretrain = (out / "pretrain_speed_4x32.txt").read_text()
    for path in ["lambda = 0 (sdpa)", "lambda = 0 (eager)", "fused + R, pre_dropout", "eager + R, post_dropout"]:
        assert path in pretrain
    assert "MFU" in pretrain and "model FLOPs per token" in pretrain
    # the smoke mode always profiles (its nominal peak says nothing about a CPU)
    assert "self_cpu_time_total" in (out / "profile_tiny_4x32_sdpa.txt").read_text()
    assert (out / "environment.txt").read_text().startswith("python ")


def test_the_full_mode_refuses_without_cuda_and_points_to_the_smoke_mode(tmp_path):
    import torch

    if torch.cuda.is_available():
        return
    env = {**os.environ, "OUT": str(tmp_path), "PYTHON": sys.executable, "SMOKE": "0"}
    result = subprocess.run(
        ["bash", str(REPO / "benchmarks" / "gpu_check.sh")], env=env, capture_output=True, text=True
    )
    assert result.returncode == 1 and "SMOKE=1" in result.stdout


def pretrain_speed():
    spec = importlib.util.spec_from_file_location("pretrain_speed", REPO / "benchmarks" / "pretrain_speed.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_model_flop_count_is_the_one_the_mid_config_plans_with():
    bench = pretrain_speed()
    base = dict(sasconfig.MODEL_PRESETS["base"], intermediate_size=3072)
    small = dict(sasconfig.MODEL_PRESETS["small"], intermediate_size=2048)
    assert round(bench.model_flops_per_token(base, 30522, 512, 0.15) / 1e6, 1) == 587.9
    assert round(bench.model_flops_per_token(small, 8000, 128, 0.15) / 1e6, 1) == 82.6
    # 355K tokens/s of BERT-base at 512 (docs/paper-scale.md) is 21% of an H200's bf16 peak
    assert round(355e3 * bench.model_flops_per_token(base, 30522, 512, 0.15) / 989e12, 2) == 0.21


def test_gpu_mid_runs_the_four_runs_on_a_model_between_tiny_and_base():
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    update_config(config, yaml.safe_load((REPO / "config" / "gpu-mid.yaml").read_text()))
    config = sasconfig.validate(config, base_dir=REPO, check_paths=True)
    plan = RunPlan(config)
    assert list(plan.runs) == ["baseline", "sas_plus", "sas_minus", "sas_minus_release_300"]

    def size(model):  # the encoder's matrix-multiply weights, 12 x layers x hidden^2
        return model["num_hidden_layers"] * model["hidden_size"] ** 2

    model = sasconfig.model_config(config)
    assert size(sasconfig.MODEL_PRESETS["tiny"]) < size(model) < size(sasconfig.MODEL_PRESETS["base"]), model
    steps = sasconfig.checkpoint_steps(config)
    assert steps[-1] == config["train"]["max_steps"] and max(b - a for a, b in zip(steps, steps[1:])) <= 250
    assert config["train"]["precision"] == "bf16" and config["corpus"]["backend"] == "conllu"
