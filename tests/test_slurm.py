"""profiles/slurm: a paper-scale dry run (always runs: it needs only the Slurm executor plugin) and a
real run through sbatch on the single-node test cluster of tests/slurm/start.sh (marked `slurm`;
skipped, with the reason, when no cluster answers).

The real run builds the reduced default's tokenize stats, one run's pretraining and its BLiMP scores
through Slurm, then checks that every job went through sbatch (sacct, by the run's job name and each
job's comment), that the numbers equal a local run's, that a second run submits nothing, and that
deleting one output resubmits only its job.
"""

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from conftest import REPO, link_workflow

SNAKEMAKE = str(Path(sys.executable).parent / "snakemake")
PROFILE = ["--workflow-profile", "profiles/slurm"]
E2E = ["--configfile", str(REPO / "tests" / "configs" / "e2e.yaml")]


@pytest.fixture
def workdir(tmp_path):
    """A working directory that sees the repository's workflow but writes its own results/."""
    return link_workflow(tmp_path / "slurm")


def snakemake(*args, cwd, limit=600):
    """Run Snakemake under `timeout -s INT`: SIGINT makes it scancel its Slurm jobs (SIGTERM would
    make it wait for them), and -k 60 ends it if it hangs after that."""
    cmd = ["timeout", "-s", "INT", "-k", "60", str(limit), SNAKEMAKE, *args]
    start = time.monotonic()
    result = subprocess.run(
        cmd, cwd=cwd, capture_output=True, text=True, timeout=limit + 120, env={**os.environ, "PYTHONUNBUFFERED": "1"}
    )
    result.seconds = time.monotonic() - start
    result.output = result.stdout + result.stderr
    return result


def job_blocks(output: str, rule: str) -> list[str]:
    """The dry-run description of every job of a rule (from `rule x:` to the next blank line)."""
    return re.findall(rf"^rule {rule}:\n(.*?)(?:\n\n|\Z)", output, flags=re.M | re.S)


# --- the dry run: how the profile requests GPUs, and torchrun for several -------------------------


def test_profile_dry_run_paper_scale_requests_gpus_and_runs_torchrun(workdir):
    # paper.yaml's commented alternative (raw text parsed by 64 stanza jobs), on the vendored slice;
    # its default, the authors' data, is dry-run from a fresh clone in test_pretokenized.py.
    (workdir / "text.yaml").write_text(
        "corpus:\n  backend: stanza\n  text: [resources/text/enwiki2015_300k.txt.gz]\n  shards: 64\n"
    )
    result = snakemake(
        "-n",
        *PROFILE,
        "--configfile",
        "config/paper.yaml",
        "text.yaml",
        "--printshellcmds",
        "--cores",
        "64",
        cwd=workdir,
        limit=300,
    )
    assert result.returncode == 0, (
        "dry run with profiles/slurm failed (is snakemake-executor-plugin-slurm installed?)\n" + result.output[-5000:]
    )

    pretrain = job_blocks(result.output, "pretrain")
    assert len(pretrain) == 12  # 4 runs x 3 seeds
    for block in pretrain:
        # train.gpus: 4 -> sbatch --gpus=4 and one DDP process per GPU in the job
        assert re.search(r"resources: .*\bgpu=4\b", block), block
        assert "slurm_extra=--signal=TERM@300" in block, block
        assert re.search(r"resources: .*\bruntime=1440\b", block), block
        assert re.search(r"resources: .*\bmem_mb=48000\b", block), block  # 6 GB x 8 threads
        assert "Shell command: torchrun --standalone --nproc_per_node 4 -m sasbert pretrain" in block, block
        assert "--threads 8" in block
    for rule, count in [("probe", 12), ("blimp", 12)]:
        blocks = job_blocks(result.output, rule)
        assert len(blocks) == count
        assert all(re.search(r"resources: .*\bgpu=1\b", b) for b in blocks), blocks[0]
    parse = job_blocks(result.output, "parse")
    assert len(parse) == 64 and all("threads: 4" in b for b in parse), parse[0]
    for block in job_blocks(result.output, "tokenize"):
        assert "gpu=" not in block and re.search(r"\bmem_mb=16000\b", block), block


def test_profile_dry_run_embedded_default_trains_on_cpu_without_torchrun(workdir):
    result = snakemake("-n", *PROFILE, "--printshellcmds", cwd=workdir, limit=300)
    assert result.returncode == 0, result.output[-5000:]
    pretrain = job_blocks(result.output, "pretrain")
    assert pretrain and all(re.search(r"resources: .*\bgpu=0\b", b) for b in pretrain)
    assert all("Shell command: sasbert pretrain" in b for b in pretrain)
    assert "torchrun" not in result.output


# --- the real run on the local test cluster -----------------------------------------------------


def slurm_unavailable() -> str | None:
    """Why the Slurm test cannot run here, or None when the test cluster answers."""
    if shutil.which("sinfo") is None or shutil.which("sbatch") is None:
        return "Slurm is not installed (sinfo/sbatch missing): run tests/slurm/start.sh as root first"
    try:
        nodes = subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True, text=True, timeout=20)
        acct = subprocess.run(["sacct", "-n", "-X", "-S", "now-1minutes"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired) as err:
        return f"Slurm does not answer ({err}): run tests/slurm/start.sh"
    if nodes.returncode != 0 or not re.search(r"^(idle|mix|alloc)", nodes.stdout, flags=re.M):
        return f"no usable Slurm node (sinfo: {(nodes.stdout + nodes.stderr).strip()!r}): run tests/slurm/start.sh"
    if acct.returncode != 0:
        return f"Slurm accounting does not answer (sacct: {acct.stderr.strip()!r}): run tests/slurm/start.sh"
    return None


def sacct_jobs(run_id: str, settle_seconds: float = 30) -> list[dict]:
    """The jobs one Snakemake run submitted: all share the job name sasbert_<uuid>.

    slurmdbd records asynchronously: ask again for a while if a record still lacks its comment or
    its final state."""
    keys = ["id", "comment", "state", "tres"]
    deadline = time.monotonic() + settle_seconds
    while True:
        out = subprocess.run(
            [
                "sacct",
                "-X",
                "-n",
                "--parsable2",
                "--name",
                run_id,
                "-S",
                "now-1days",
                "--format=JobIDRaw,Comment,State,ReqTRES",
            ],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        ).stdout
        jobs = [dict(zip(keys, line.split("|"))) for line in out.splitlines() if line.strip()]
        settled = all(j["comment"] and j["state"] not in ("PENDING", "RUNNING") for j in jobs)
        if settled or time.monotonic() > deadline:
            return jobs
        time.sleep(2)


def run_id_of(result) -> str | None:
    match = re.search(r"SLURM run ID: (\S+)", result.output)
    return match.group(1) if match else None


def slurm_logs(work: Path) -> str:
    logs = sorted((work / "results" / "logs" / "slurm").rglob("*.log"))
    return "\n".join(f"--- {p}\n{p.read_text()[-1500:]}" for p in logs[-3:])


RUN = "results/pretrain/baseline/seed0"
BLIMP = "results/blimp/baseline/seed0"
TARGETS = ["results/tokenize/ewt/stats.json", f"{RUN}/metrics/eval.parquet", f"{BLIMP}/summary.parquet"]
SLURM_ARGS = [
    *PROFILE,
    *E2E,
    # The test node has 2 CPUs: the profile's 4 parse threads (for stanza at paper scale) would leave
    # the two shards queued one after the other.
    "--max-threads",
    "1",
    # first status check after 1 s (profile: 10 s): the jobs here take seconds, not hours
    "--slurm-init-seconds-before-status-checks",
    "1",
]
STEP_COLUMNS = ["step", "mlm_loss", "sas", "lambda", "lr", "grad_norm"]  # not tokens/s, seconds


def read(work: Path, path: str, columns=None) -> pd.DataFrame:
    return pd.read_parquet(work / path, columns=columns)


@pytest.mark.slurm
@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_reduced_default_through_sbatch_matches_local_run_and_reruns_only_what_is_missing(workdir, tmp_path):
    reason = slurm_unavailable()
    if reason and os.environ.get("SASBERT_REQUIRE_SLURM") == "1":
        pytest.fail(f"SASBERT_REQUIRE_SLURM=1 but {reason}")  # CI: a skip would hide a broken cluster
    if reason:
        pytest.skip(reason)
    timings = {}

    # 1. Through Slurm: corpus, 2 parse shards, tokenize, pretrain and blimp of one run x seed.
    first = snakemake(*TARGETS, *SLURM_ARGS, cwd=workdir)
    timings["slurm run"] = first.seconds
    assert first.returncode == 0, first.output[-6000:] + slurm_logs(workdir)
    run_id = run_id_of(first)
    assert run_id and run_id.startswith("sasbert_"), first.output[-3000:]
    jobs = sacct_jobs(run_id)
    expected = {
        "rule_corpus_wildcards_ewt",
        "rule_parse_wildcards_ewt_0",
        "rule_parse_wildcards_ewt_1",
        "rule_tokenize_wildcards_ewt",
        "rule_pretrain_wildcards_baseline_0",
        "rule_blimp_wildcards_baseline_0",
    }
    assert sorted(j["comment"] for j in jobs) == sorted(expected), jobs
    assert all(j["state"] == "COMPLETED" for j in jobs), jobs
    by_rule = {j["comment"]: j for j in jobs}
    # the profile's GPU request reached Slurm (fake GPUs on the test node), only where it is set
    assert "gres/gpu=1" in by_rule["rule_blimp_wildcards_baseline_0"]["tres"], jobs
    assert "gpu" not in by_rule["rule_pretrain_wildcards_baseline_0"]["tres"], jobs
    assert "mem=16000M" in by_rule["rule_tokenize_wildcards_ewt"]["tres"], jobs
    # per-job Slurm logs where the profile puts them
    assert list((workdir / "results" / "logs" / "slurm" / "rule_blimp").rglob("*.log"))

    # 2. The same pretrain and blimp jobs run locally on the same data give the same numbers.
    # (The reference starts from the Slurm run's tokenize outputs: HF's WordPiece trainer breaks
    # frequency ties differently in every process, so two tokenize runs differ in their vocab.)
    local = link_workflow(tmp_path / "local")
    for stage in ["corpus", "parse", "tokenize"]:
        shutil.copytree(workdir / "results" / stage, local / "results" / stage)
    reference = snakemake(*TARGETS, "--cores", "2", *E2E, cwd=local)
    timings["local reference (pretrain + blimp)"] = reference.seconds
    assert reference.returncode == 0, reference.output[-6000:]
    planned = reference.output.split("Job stats:")[1].split("Select jobs")[0]
    assert "pretrain" in planned and "blimp" in planned and "tokenize" not in planned, planned
    pd.testing.assert_frame_equal(
        read(workdir, f"{RUN}/metrics/steps.parquet", STEP_COLUMNS),
        read(local, f"{RUN}/metrics/steps.parquet", STEP_COLUMNS),
        check_exact=True,
    )
    for path in [f"{RUN}/metrics/eval.parquet", f"{BLIMP}/summary.parquet", f"{BLIMP}/pairs.parquet"]:
        pd.testing.assert_frame_equal(read(workdir, path), read(local, path), check_exact=True)

    # 3. Everything is up to date: nothing is submitted.
    second = snakemake(*TARGETS, *SLURM_ARGS, cwd=workdir)
    timings["second run"] = second.seconds
    assert second.returncode == 0, second.output[-3000:]
    assert "Nothing to be done" in second.output, second.output[-3000:]
    if run_id_of(second):
        assert sacct_jobs(run_id_of(second)) == []

    # 4. One output deleted: only its job is resubmitted, and it computes the same numbers.
    (workdir / BLIMP / "summary.parquet").unlink()
    third = snakemake(*TARGETS, *SLURM_ARGS, cwd=workdir)
    timings["rerun of one deleted output"] = third.seconds
    assert third.returncode == 0, third.output[-6000:] + slurm_logs(workdir)
    rerun = sacct_jobs(run_id_of(third))
    assert [(j["comment"], j["state"]) for j in rerun] == [("rule_blimp_wildcards_baseline_0", "COMPLETED")], rerun
    pd.testing.assert_frame_equal(
        read(workdir, f"{BLIMP}/summary.parquet"), read(local, f"{BLIMP}/summary.parquet"), check_exact=True
    )

    print("timings (s): " + ", ".join(f"{k} {v:.0f}" for k, v in timings.items()))
