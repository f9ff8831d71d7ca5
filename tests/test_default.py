"""The embedded default shows the paper's phenomenon: the claims README.md makes about `make run`,
checked on a real run of the real Snakefile with config.yaml (BLiMP lighter, see the config); the
same run then checks what reruns of a finished workflow redo."""

import shutil

import pandas as pd
import pytest

from conftest import REPO, job_counts, link_workflow, snakemake, snakemake_ok
from sasbert.analysis.figures.registry import FIGURES

LIGHT_BLIMP = [
    "--configfile",
    str(REPO / "tests" / "configs" / "default-light-blimp.yaml"),
]


def phenomenon_failures(tables) -> list[str]:
    """What the default's results fail of issue 14's criteria (empty: all hold)."""
    runs, phases, uas, loss = (tables[name] for name in ("runs", "phases", "uas", "loss"))
    kind = runs.set_index("run")["kind"]
    run_of = {k: kind.index[kind == k][0] for k in ("baseline", "sas_plus", "sas_minus", "release")}
    ev = phases.set_index(["run", "event"])

    def event(run_kind, name):
        return ev.loc[(run_of[run_kind], name)]

    def final(table, run_kind, column):
        rows = table[table["run"] == run_of[run_kind]].sort_values("step")
        return float(rows[column].iloc[-1])

    steps = sorted(uas[uas["run"] == run_of["baseline"]]["step"])
    index = {step: i for i, step in enumerate(steps)}
    failures = []
    onset, breakthrough, capabilities = (
        event("baseline", e) for e in ("structure_onset", "breakthrough", "capabilities_onset")
    )
    if not (onset["detected"] and breakthrough["detected"] and capabilities["detected"]):
        failures.append("baseline: structure onset, breakthrough and capabilities onset not all detected")
    elif capabilities["value"] - onset["value"] < 0.10:
        failures.append(
            f"baseline: UAS rises {capabilities['value'] - onset['value']:.3f} < 0.10 "
            "between the structure and the capabilities onsets"
        )
    drop = event("baseline", "loss_drop")
    if not drop["detected"]:
        failures.append(f"baseline: no loss drop ({drop['reason']})")
    elif breakthrough["detected"]:
        near = abs(index[drop["step"]] - index[breakthrough["step"]]) <= 1
        between = (
            onset["detected"] and capabilities["detected"] and onset["step"] <= drop["step"] <= capabilities["step"]
        )
        if not (near or between):
            failures.append(
                f"baseline: loss drop at {drop['step']:g} is neither within one checkpoint of the "
                f"breakthrough ({breakthrough['step']:g}) nor between the onsets"
            )
    if event("sas_minus", "structure_onset")["detected"]:
        failures.append("SAS-: a structure onset was detected")
    if not final(uas, "sas_minus", "uas") < final(uas, "baseline", "uas"):
        failures.append("SAS-: final UAS not below the baseline's")
    if not final(loss, "sas_minus", "val_mlm_loss") > final(loss, "baseline", "val_mlm_loss"):
        failures.append("SAS-: final held-out loss not above the baseline's")
    plus = event("sas_plus", "breakthrough")
    if not plus["detected"] or not breakthrough["detected"] or index[plus["step"]] > index[breakthrough["step"]] - 2:
        failures.append("SAS+: breakthrough not detected at least two checkpoints before the baseline's")
    k = int(runs.set_index("run").at[run_of["release"], "release_step"])
    if not onset["detected"] or not k < onset["step"]:
        failures.append(f"release: k = {k} not before the baseline's structure onset")
    return failures


RELEASE = "sas_minus_release_200"


@pytest.mark.slow
def test_the_default_shows_the_transition_and_reruns_only_what_changes(tmp_path):
    """One real run of the embedded default serves two purposes (it is the suite's longest job):
    issue 14's claims about its results, then what a rerun of a finished workflow may redo."""
    workdir = link_workflow(tmp_path)
    # a guard against a hung run, not a speed check: alone on 2 cores the run takes about 17 min,
    # sharing them with the other test process from the start more than 25 (measured 2026-12-03)
    snakemake_ok("--cores", "2", *LIGHT_BLIMP, cwd=workdir, timeout=2700)
    results = workdir / "results"
    folder = results / "tables"
    tables = {name: pd.read_parquet(folder / f"{name}.parquet") for name in ("runs", "phases", "uas", "loss")}
    assert phenomenon_failures(tables) == []

    # every stage's outputs and logs; a release run publishes from its start k on
    assert (results / "tokenize" / "ewt" / "stats.json").is_file()
    assert (results / "logs" / "tokenize" / "ewt.log").is_file()
    release = results / "pretrain" / RELEASE / "seed0" / "checkpoints"
    assert sorted(int(p.name[5:]) for p in release.glob("step-*")) == list(range(200, 2001, 100))
    uas = pd.read_parquet(results / "probe" / RELEASE / "seed0" / "summary.parquet")
    assert sorted(uas["step"].unique()) == list(range(200, 2001, 100))
    assert "Nothing to be done" in snakemake_ok("--cores", "2", *LIGHT_BLIMP, cwd=workdir)

    # the report holds every figure under its caption (what `make run` writes)
    snakemake_ok("--report", "report.html", *LIGHT_BLIMP, cwd=workdir, timeout=600)
    html = (workdir / "report.html").read_text(errors="replace")
    for figure in FIGURES:
        assert f"{figure}.png" in html, figure

    # what a job runs is its code (sasbert.code_identity): a comment in cli.py or in the figures'
    # shared module plans nothing, a real change of one figure's module redraws that figure alone
    # (the edits go to a copy of src/ in this working directory, which its rules fingerprint and,
    # through PYTHONPATH, its jobs run)
    (workdir / "src").unlink()
    shutil.copytree(REPO / "src", workdir / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    own_code = {"PYTHONPATH": str(workdir / "src")}
    assert "Nothing to be done" in snakemake_ok("-n", "--cores", "2", *LIGHT_BLIMP, cwd=workdir, env=own_code)
    for name in ("cli.py", "analysis/figures/common.py"):
        with open(workdir / "src" / "sasbert" / name, "a") as handle:
            handle.write("# an edit\n")
    assert "Nothing to be done" in snakemake_ok("-n", "--cores", "2", *LIGHT_BLIMP, cwd=workdir, env=own_code)
    release = workdir / "src" / "sasbert" / "analysis" / "figures" / "release.py"
    release.write_text(release.read_text().replace("new_figure(options.width, 5.0)", "new_figure(options.width, 5.5)"))
    jobs = job_counts(snakemake_ok("-n", "--cores", "2", *LIGHT_BLIMP, cwd=workdir, env=own_code))
    assert set(jobs) - {"all"} == {"figure_release"}, jobs
    snakemake_ok("--cores", "2", *LIGHT_BLIMP, cwd=workdir, env=own_code)

    # a new seed trains and evaluates only that seed's jobs
    (workdir / "seed1.yaml").write_text("seeds: [0, 1]\n")
    jobs = job_counts(snakemake_ok("-n", "--cores", "2", *LIGHT_BLIMP, "seed1.yaml", cwd=workdir))
    assert jobs["pretrain"] == jobs["probe"] == jobs["blimp"] == 4
    assert "tokenize" not in jobs and "corpus" not in jobs
    assert jobs["tables"] == jobs["phases"] == jobs["figure_training"] == 1

    # blimp.every_steps chooses which checkpoints are scored, not how: changing it reruns the BLiMP
    # jobs (and what reads them), which take every score already made from their cache folder
    (workdir / "thin.yaml").write_text("blimp:\n  every_steps: 2000\n")
    jobs = job_counts(snakemake_ok("-n", "--cores", "2", *LIGHT_BLIMP, "thin.yaml", cwd=workdir))
    assert jobs["blimp"] == 4 and "pretrain" not in jobs and "probe" not in jobs
    snakemake_ok("--cores", "2", *LIGHT_BLIMP, "thin.yaml", cwd=workdir)
    log = (results / "logs" / "blimp" / "baseline" / "seed0.log").read_text()
    assert log.count("kept from") == 2 and "overall accuracy" not in log
    summary = pd.read_parquet(results / "blimp" / "baseline" / "seed0" / "summary.parquet")
    assert sorted(summary["step"].unique()) == [0, 2000]

    # a deleted checkpoint is named: the dry run warns (the tables built from it stay), a job that
    # rescores its run stops at its folder, and --forcerun of the folder republishes it from the
    # training state (hard links: the very files the tables were built from)
    run_dir = results / "pretrain" / RELEASE / "seed0"
    shutil.rmtree(run_dir / "checkpoints" / "step-2000")
    plan = snakemake_ok("-n", "--cores", "2", *LIGHT_BLIMP, "thin.yaml", cwd=workdir)
    assert "Published checkpoints are missing" in plan and f"{RELEASE}/seed0/checkpoints/step-2000" in plan
    assert "Nothing to be done" in plan
    target = f"results/probe/{RELEASE}/seed0/summary.parquet"
    rescore = snakemake("--cores", "2", target, "--forcerun", target, *LIGHT_BLIMP, "thin.yaml", cwd=workdir)
    output = rescore.stdout + rescore.stderr
    assert rescore.returncode != 0 and "checkpoints/step-2000: checkpoint directory not found" in output
    assert "Traceback" not in output and not (workdir / target).exists()
    checkpoints = f"results/pretrain/{RELEASE}/seed0/checkpoints"
    snakemake_ok("--cores", "2", checkpoints, "--forcerun", checkpoints, *LIGHT_BLIMP, "thin.yaml", cwd=workdir)
    published = run_dir / "checkpoints" / "step-2000" / "model.safetensors"
    assert published.stat().st_ino == (run_dir / "state" / "checkpoint-2000" / "model.safetensors").stat().st_ino
    plan = snakemake_ok("-n", "--cores", "2", *LIGHT_BLIMP, "thin.yaml", cwd=workdir)
    assert "Published checkpoints are missing" not in plan
