"""Phases: onsets on synthetic curves with a known transition, flat curves, the runs table,
stitching of release runs, and the gather/detect CLIs on a hand-made results folder."""

import json

import numpy as np
import pandas as pd
import pytest

from sasbert import cli
from sasbert.analysis import curves, gather, phases
from sasbert.analysis import runs as run_kinds
from sasbert.errors import InputError
from sasbert.measure import llc

# A paper-like checkpoint grid: dense early (every 100 steps), sparse late (every 500).
GRID = np.r_[np.arange(0, 5000, 100), np.arange(5000, 20001, 500)]
CENTER, WIDTH = 3000, 200
# The extrema of a logistic's second derivative lie ln(2 + sqrt(3)) = 1.317 widths from its centre.
EXPECTED = {
    "structure_onset": CENTER - 1.317 * WIDTH,
    "breakthrough": CENTER,
    "capabilities_onset": CENTER + 1.317 * WIDTH,
}
# Stated tolerances (noise sd 0.01 on a rise of 0.5, smoothing window 3): the breakthrough within one
# transition width, the onsets within two (on this grid: one to four checkpoints).
TOLERANCE = {"structure_onset": 2 * WIDTH, "breakthrough": WIDTH, "capabilities_onset": 2 * WIDTH}


def logistic(steps, center=CENTER, width=WIDTH, low=0.1, rise=0.5):
    return low + rise / (1 + np.exp(-(np.asarray(steps, float) - center) / width))


@pytest.fixture
def stages(monkeypatch):
    """The CLI with this module's stages (the real STAGES dict may not list them yet)."""
    monkeypatch.setitem(cli.STAGES, "phases", ("sasbert.analysis.cli", "phases"))
    return cli.main


@pytest.mark.parametrize("seed", range(10))
def test_logistic_transition_found_within_tolerance(seed):
    rng = np.random.default_rng(seed)
    uas = logistic(GRID) + rng.normal(0, 0.01, len(GRID))
    events = {e["event"]: e for e in phases.uas_events(GRID, uas, curves.PhaseOptions())}
    for name, expected in EXPECTED.items():
        assert events[name]["detected"], events[name]["reason"]
        assert abs(events[name]["step"] - expected) <= TOLERANCE[name], (name, events[name]["step"])
    assert events["structure_onset"]["step"] < events["breakthrough"]["step"] < events["capabilities_onset"]["step"]
    assert events["structure_onset"]["acceleration"] > 0 > events["capabilities_onset"]["acceleration"]
    assert events["breakthrough"]["velocity"] == pytest.approx(0.5 / (4 * WIDTH), rel=0.35)
    assert 0.2 < events["breakthrough"]["value"] < 0.5


@pytest.mark.parametrize("seed", range(10))
def test_flat_curve_reports_no_transition(seed):
    rng = np.random.default_rng(100 + seed)
    flat = 0.3 + rng.normal(0, 0.01, len(GRID))
    events = phases.uas_events(GRID, flat, curves.PhaseOptions())
    assert [e["event"] for e in events] == ["structure_onset", "breakthrough", "capabilities_onset"]
    for e in events:
        assert not e["detected"] and np.isnan(e["step"]) and np.isnan(e["value"])
        assert e["reason"].startswith("no transition")
        assert e["rise"] < e["threshold"]


def test_slow_drift_below_min_rise_is_no_transition():
    drift = 0.3 + 0.01 * GRID / GRID.max()  # noiseless, but only 0.01 in total
    assert not phases.uas_events(GRID, drift, curves.PhaseOptions())[1]["detected"]
    assert phases.uas_events(GRID, drift, curves.PhaseOptions(min_rise=0.005))[1]["detected"]


def test_too_few_checkpoints_and_unsampled_onsets():
    few = phases.uas_events([0, 100, 200, 300], [0.1, 0.2, 0.5, 0.6], curves.PhaseOptions())
    assert not any(e["detected"] for e in few) and "too few checkpoints" in few[0]["reason"]
    # The breakthrough one checkpoint before the end: structure onset and breakthrough found,
    # the capabilities onset not (it was not sampled).
    steps = np.arange(0, 3401, 100)
    events = {e["event"]: e for e in phases.uas_events(steps, logistic(steps, 3200, 150), curves.PhaseOptions())}
    assert events["breakthrough"]["detected"] and events["breakthrough"]["step"] == 3200
    assert events["structure_onset"]["detected"]
    assert not events["capabilities_onset"]["detected"]
    assert "still rising" in events["capabilities_onset"]["reason"]
    # Steepest at the last checkpoint: a trend, not a transition inside the sampled steps.
    steps = np.arange(0, 3001, 100)
    events = phases.uas_events(steps, logistic(steps, 3300, 300), curves.PhaseOptions())
    assert not any(e["detected"] for e in events)
    assert "last usable checkpoint" in events[1]["reason"]


def test_loss_drop_and_blimp_jump():
    steps = np.r_[np.arange(0, 1000, 25), np.arange(1000, 4001, 100)]
    rng = np.random.default_rng(0)
    # unigram learning (a steep start), a plateau, then the drop at 1500
    loss = 7 + 2 * np.exp(-steps / 40) - logistic(steps, 1500, 60, 0, 0.6) + rng.normal(0, 0.005, len(steps))
    options = curves.PhaseOptions(loss_min_step=200)
    (drop,) = phases.loss_events(steps, loss, options)
    assert drop["detected"] and abs(drop["step"] - 1500) <= 100 and drop["velocity"] < 0
    # the drop is the steepest fall after the first plateau: the unigram drop at the very start,
    # steeper in raw steps, does not hide it even when the search starts at step 0
    (early,) = phases.loss_events(steps, loss, curves.PhaseOptions())
    assert early["detected"] and early["step"] == drop["step"]
    # a loss that only slows down (convex: the usual shape after warmup) has no drop, noiseless or
    # with noise, whatever the smoothing
    steady = 7 + 2 * np.exp(-steps / 400)
    (none,) = phases.loss_events(steps, steady, options)
    assert not none["detected"] and none["reason"].startswith("no loss drop")
    uniform = np.arange(0, 4001, 100)
    (none,) = phases.loss_events(uniform, 7 + 2 * np.exp(-uniform / 400), options)
    assert not none["detected"] and "only slows down" in none["reason"]
    for window in (1, 3, 5):
        for seed in range(5):
            noisy = steady + np.random.default_rng(seed).normal(0, 0.005, len(steps))
            (none,) = phases.loss_events(steps, noisy, curves.PhaseOptions(smoothing_window=window, loss_min_step=200))
            assert not none["detected"], (window, seed, none)
            assert none["reason"].startswith("no loss drop"), none["reason"]
    # the excess below the plateau's trend is what is tested: a drop of 0.1 nats, far above the
    # noise, is found; the same shape at 0.01 nats is not (threshold min_rise 0.02)
    for size, found in ((0.1, True), (0.01, False)):
        y = 7 + 2 * np.exp(-steps / 150) - logistic(steps, 2500, 100, 0, size)
        (event,) = phases.loss_events(steps, y, options)
        assert event["detected"] == found, (size, event["reason"])
        if found:
            assert abs(event["step"] - 2500) <= 100 and event["rise"] > 0.05
    blimp = logistic(steps, 1800, 80, 0.5, 0.15) + rng.normal(0, 0.004, len(steps))
    (jump,) = phases.blimp_events(steps, blimp, options)
    assert jump["detected"] and abs(jump["step"] - 1800) <= 100
    (none,) = phases.blimp_events(steps, 0.5 + rng.normal(0, 0.004, len(steps)), options)
    assert not none["detected"]


def test_smoothing_and_options():
    y = np.array([0.0, 1.0, 0.0, 1.0, 0.0, 1.0, 0.0])
    s = curves.smooth(y, 3)
    assert s[0] == 0.0 and s[-1] == 0.0  # the ends are kept
    assert s[1] == pytest.approx(0.5) and s[2] == pytest.approx(0.5)  # [1, 2, 1] / 4
    assert np.array_equal(curves.smooth(y, 1), y)
    for bad in (
        curves.PhaseOptions(smoothing_window=4),
        curves.PhaseOptions(min_points=2),
        curves.PhaseOptions(min_rise=-1),
    ):
        with pytest.raises(InputError):
            bad.check()
    with pytest.raises(InputError, match="same step"):
        curves.analyse_curve([0, 100, 100, 200, 300], [0, 1, 2, 3, 4], curves.PhaseOptions())


RUNS = [
    {"name": "base", "lambda": 0.0},
    {"name": "plus", "lambda": -0.5},
    {"name": "minus", "lambda": 1.0},
    {
        "name": "minus_release_300",
        "lambda": [{"value": 1.0, "until_step": 300}, {"value": 0.0}],
        "resume_from": {"run": "minus", "step": 300},
    },
    {"name": "staged", "lambda": [{"value": 1.0, "until_step": 100}, {"value": 0.5}]},
    {"name": "zeros", "lambda": [{"value": 0.0, "until_step": 100}, {"value": 0.0}]},
    {"name": "fromscratch_release", "lambda": [{"value": 2.0, "until_step": 50}, {"value": 1.0, "until_step": 150}]},
]


def test_runs_table_kinds_come_from_lambda():
    runs = run_kinds.runs_table(RUNS)
    assert list(runs.columns) == run_kinds.RUN_COLUMNS
    kinds = dict(zip(runs["run"], runs["kind"]))
    assert kinds == {
        "base": "baseline",
        "plus": "sas_plus",
        "minus": "sas_minus",
        "minus_release_300": "release",
        "staged": "other",
        "zeros": "baseline",
        "fromscratch_release": "release",
    }
    rel = runs.set_index("run")
    assert rel.at["minus_release_300", "release_step"] == 300 and rel.at["minus_release_300", "parent"] == "minus"
    assert rel.at["minus_release_300", "start_step"] == 300 and rel.at["minus_release_300", "lambda"] == 1.0
    # lambda is 0 past the last stage's until_step (schedules.lambda_at)
    assert rel.at["fromscratch_release", "release_step"] == 150 and rel.at["fromscratch_release", "start_step"] == 0
    assert pd.isna(rel.at["base", "release_step"]) and rel.at["plus", "lambda"] == -0.5
    assert json.loads(rel.at["minus_release_300", "lambda_schedule"])[0]["until_step"] == 300
    with pytest.raises(InputError, match="duplicate"):
        run_kinds.runs_table([RUNS[0], RUNS[0]])


def test_stitch_prepends_the_parents_history():
    runs = run_kinds.runs_table(
        [
            {"name": "a", "lambda": 1.0},
            {
                "name": "b",
                "lambda": [{"value": 1.0, "until_step": 200}, {"value": 0.0}],
                "resume_from": {"run": "a", "step": 200},
            },
            {"name": "c", "lambda": 0.0, "resume_from": {"run": "b", "step": 400}},
        ]
    )
    rows = [("a", 0, s, float(s)) for s in range(0, 700, 100)]
    rows += [("b", 0, s, 1000.0 + s) for s in range(200, 700, 100)]
    rows += [("c", 0, s, 2000.0 + s) for s in range(400, 700, 100)]
    rows += [("a", 1, s, -1.0) for s in range(0, 700, 100)]  # another seed: not mixed in
    table = pd.DataFrame(rows, columns=["run", "seed", "step", "y"])
    out = curves.stitch(table, runs)
    c = out[(out["run"] == "c") & (out["seed"] == 0)]
    assert list(c["step"]) == [0, 100, 200, 300, 400, 500, 600]
    assert list(c["y"]) == [0.0, 100.0, 1200.0, 1300.0, 2400.0, 2500.0, 2600.0]
    assert list(c["segment"]) == ["parent"] * 4 + ["own"] * 3
    assert len(out[(out["run"] == "a")]) == 14 and (out[out["run"] == "a"]["segment"] == "own").all()


# Where the workflow's rules put each run x seed's tables (_results_folder writes them there).
LAYOUT = {
    "steps": "pretrain/{run}/seed{seed}/metrics/steps.parquet",
    "eval": "pretrain/{run}/seed{seed}/metrics/eval.parquet",
    "probe_summary": "probe/{run}/seed{seed}/summary.parquet",
    "probe_scores": "probe/{run}/seed{seed}/scores.parquet",
    "probe_bootstrap": "probe/{run}/seed{seed}/bootstrap.parquet",
    "blimp_summary": "blimp/{run}/seed{seed}/summary.parquet",
    "complexity_summary": "complexity/{run}/seed{seed}/summary.parquet",
    "context_summary": "context/{run}/seed{seed}/summary.parquet",
    "llc_summary": "llc/{run}/seed{seed}/summary.parquet",
}

CONTEXT_COLUMNS = ["step", "checkpoint", "window", "loss", "accuracy", "n_masked", "n_sentences", "gap"]


def layout_files(root, runs, seeds):
    """The gather inputs of a results folder: one file per run x seed, as the tables rule lists them."""
    return {
        key: [root / pattern.format(run=run["name"], seed=seed) for run in runs for seed in seeds]
        for key, pattern in LAYOUT.items()
    }


def gather_inputs(root, runs, seeds):
    args = []
    for key, paths in layout_files(root, runs, seeds).items():
        args += [f"--{key.replace('_', '-')}", *map(str, paths)]
    return args


def gather_outputs(folder):
    return ["--out", *(str(folder / f"{name}.parquet") for name in gather.TABLES)]


def _results_folder(root, runs, seeds, skip=()):
    """Per-run x seed tables as the pretrain, probe and blimp stages write them."""
    described = run_kinds.runs_table(runs).set_index("run")
    for name in described.index:
        start = int(described.at[name, "start_step"])
        steps = [s for s in range(0, 2001, 100) if s >= start]
        for seed in seeds:
            center = 800 + 50 * seed if described.at[name, "kind"] != "sas_minus" else None
            center = start + 500 if described.at[name, "kind"] == "release" else center
            uas = logistic(steps, center, 60, 0.1, 0.4) if center else np.full(len(steps), 0.1)
            loss = 7 - (logistic(steps, center - 20, 60, 0, 0.5) if center else 0.0 * uas)
            acc = logistic(steps, center + 100, 80, 0.5, 0.15) if center else np.full(len(steps), 0.5)
            base = root / "pretrain" / name / f"seed{seed}" / "metrics"
            base.mkdir(parents=True)
            pd.DataFrame(
                {
                    "step": np.arange(start + 1, steps[-1] + 1),
                    "mlm_loss": 7.0,
                    "sas": np.nan,
                    "lambda": 0.0,
                    "lr": 1e-3,
                    "grad_norm": 1.0,
                    "tokens_per_s": 1e4,
                    "seconds": 0.1,
                }
            ).to_parquet(base / "steps.parquet")
            pd.DataFrame({"step": steps, "val_mlm_loss": loss}).to_parquet(base / "eval.parquet")
            probe = root / "probe" / name / f"seed{seed}"
            probe.mkdir(parents=True)
            summary, scores = [], []
            for i, step in enumerate(steps):
                common = dict(step=step, checkpoint=f"step-{step}", treebank="dev.conllu")
                summary.append(
                    {
                        **common,
                        "method": "attention",
                        "relation": "all",
                        "layer": 1,
                        "head": 0,
                        "direction": "dependent_to_parent",
                        "offset": None,
                        "accuracy": uas[i],
                        "soft_score": 0.2,
                        "max_soft_score": 0.3,
                        "n_sentences": 50,
                    }
                )
                summary.append(
                    {
                        **common,
                        "method": "attention",
                        "relation": "mean",
                        "layer": None,
                        "head": None,
                        "direction": None,
                        "offset": None,
                        "accuracy": uas[i] - 0.02,
                        "soft_score": None,
                        "max_soft_score": None,
                        "n_sentences": 50,
                    }
                )
                summary.append(
                    {
                        **common,
                        "method": "offset",
                        "relation": "all",
                        "layer": None,
                        "head": None,
                        "direction": None,
                        "offset": -1,
                        "accuracy": 0.3,
                        "soft_score": None,
                        "max_soft_score": None,
                        "n_sentences": 50,
                    }
                )
                for layer in range(2):
                    for head in range(2):
                        for direction in ("dependent_to_parent", "parent_to_dependent"):
                            for relation in ("all", "nsubj"):
                                scores.append(
                                    {
                                        **common,
                                        "method": "attention",
                                        "layer": layer,
                                        "head": head,
                                        "direction": direction,
                                        "offset": None,
                                        "relation": relation,
                                        "correct": 1,
                                        "count": 10,
                                        "accuracy": 0.1,
                                        "soft_score": 0.1,
                                    }
                                )
            if ("probe", name, seed) not in skip:
                pd.DataFrame(summary).to_parquet(probe / "summary.parquet")
            pd.DataFrame(scores).to_parquet(probe / "scores.parquet")
            noise = np.random.default_rng(seed).normal(0, 0.003, (20, len(steps)))  # 20 paired resamples
            pd.DataFrame(
                {
                    "step": np.tile(steps, 20),
                    "treebank": "dev.conllu",
                    "sample": np.repeat(np.arange(20), len(steps)),
                    "uas": (uas[None, :] + noise).ravel(),
                }
            ).to_parquet(probe / "bootstrap.parquet")
            blimp = root / "blimp" / name / f"seed{seed}"
            blimp.mkdir(parents=True)
            rows = []
            for i, step in enumerate(steps):
                ci = (acc[i] - 0.02, acc[i] + 0.02)
                rows.append((step, "original", "overall", "", "", acc[i], *ci, 20, 2))
                rows.append((step, "original", "phenomenon", "binding", "binding", acc[i], *ci, 10, 1))
                rows.append((step, "original", "paradigm", "p1", "binding", acc[i], *ci, 10, 1))
            pd.DataFrame(rows, columns=gather.COLUMNS["blimp"][2:]).to_parquet(blimp / "summary.parquet")
            folder = root / "complexity" / name / f"seed{seed}"
            folder.mkdir(parents=True)
            dim = 10 + 5 * np.exp(-0.5 * ((np.asarray(steps) - (center or 1000)) / 200) ** 2)
            pd.DataFrame(
                {"step": steps, "checkpoint": [f"step-{s}" for s in steps], "layer": "mean", "intrinsic_dim": dim}
            ).assign(id_low=dim - 0.2, id_high=dim + 0.2, n_points=900, n_tokens=1000, n_sentences=50).to_parquet(
                folder / "summary.parquet"
            )
            folder = root / "context" / name / f"seed{seed}"
            folder.mkdir(parents=True)
            rows = [
                (step, f"step-{step}", window, loss[i] + gap, 0.3, 400, 50, gap)
                for i, step in enumerate(steps)
                for window, gap in ((1, 1.5), (4, 0.5), (-1, 0.0))
            ]
            pd.DataFrame(rows, columns=CONTEXT_COLUMNS).to_parquet(folder / "summary.parquet")
            folder = root / "llc" / name / f"seed{seed}"
            folder.mkdir(parents=True)
            pd.DataFrame(
                {"step": steps, "checkpoint": [f"step-{s}" for s in steps], "llc": np.linspace(5, 50, len(steps))}
            ).assign(
                llc_std=1.0, llc_low=-1.0, llc_high=1.0, init_loss=7.0, nbeta=15.4, n_chains=4, n_draws=100
            ).assign(n_sentences=512).to_parquet(folder / "summary.parquet")


def test_gather_and_detect_cli(tmp_path, stages):
    runs = RUNS[:4]
    _results_folder(tmp_path / "results", runs, [0, 1])
    out = tmp_path / "tables"
    rc = stages(
        [
            "phases",
            "gather",
            *gather_inputs(tmp_path / "results", runs, [0, 1]),
            "--runs",
            json.dumps(runs),
            "--seeds",
            "0",
            "1",
            *gather_outputs(out),
        ]
    )
    assert rc == 0
    tables = {name: pd.read_parquet(out / f"{name}.parquet") for name in gather.TABLES}
    assert list(tables["loss"].columns) == gather.LOSS_COLUMNS
    assert list(tables["uas"].columns) == gather.COLUMNS["uas"]
    assert list(tables["heads"].columns) == gather.COLUMNS["heads"]
    assert list(tables["blimp"].columns) == gather.COLUMNS["blimp"]
    assert list(tables["train"].columns) == gather.TRAIN_COLUMNS
    assert list(tables["runs"]["run"]) == [r["name"] for r in runs]
    # the context measure's summary, stacked as it is (the registry names no all_runs module for it)
    context = tables["context"]
    assert list(context.columns) == ["run", "seed", *CONTEXT_COLUMNS]
    assert len(context) == 3 * 2 * (3 * 21 + 18) and context["window"].dtype == "int64"
    assert context["window"].tolist()[:6] == [1, 4, -1] * 2 and context["run"].iloc[0] == "base"
    # the LLC's summary, likewise stacked as it is
    assert list(tables["llc"].columns) == ["run", "seed", *llc.COLUMNS] and len(tables["llc"]) == 2 * (3 * 21 + 18)
    # relation "all" only: layers x heads x directions x checkpoints x seeds
    assert len(tables["heads"]) == 2 * 2 * 2 * (21 * 3 + 18) * 2
    u = tables["uas"]
    assert u["offset_uas"].eq(0.3).all() and (u["uas"] - u["uas_mean"]).round(6).eq(0.02).all()
    assert tables["loss"]["run"].iloc[0] == "base"  # config order
    release = tables["loss"][tables["loss"]["run"] == "minus_release_300"]
    assert release["step"].min() == 300  # own rows only

    rc = stages(
        [
            "phases",
            "detect",
            "--runs",
            str(out / "runs.parquet"),
            "--loss",
            str(out / "loss.parquet"),
            "--uas",
            str(out / "uas.parquet"),
            "--blimp",
            str(out / "blimp.parquet"),
            "--uas-bootstrap",
            str(out / "uas_bootstrap.parquet"),
            "--out",
            str(out / "phases.parquet"),
            "--csv",
            str(out / "phases.csv"),
            "--loss-min-step",
            "100",
        ]
    )
    assert rc == 0
    ph = pd.read_parquet(out / "phases.parquet")
    assert list(ph.columns) == phases.PHASE_COLUMNS
    assert len(ph) == 4 * 2 * len(phases.EVENTS) + 2  # and the SAS- run's alternative strategy onset, per seed
    assert pd.read_csv(out / "phases.csv").shape == ph.shape
    ev = ph.set_index(["run", "seed", "event"])
    assert abs(ev.loc[("base", 1, "breakthrough"), "step"] - 850) <= 100
    assert not ev.loc[("minus", 0, "breakthrough"), "detected"]
    assert ev.loc[("minus", 0, "structure_onset"), "reason"].startswith("no transition")
    # the release run is analysed on its stitched curve: its transition follows the release at 300
    assert abs(ev.loc[("minus_release_300", 0, "breakthrough"), "step"] - 800) <= 100
    assert ev.loc[("minus_release_300", 0, "structure_onset"), "step"] > 300
    assert abs(ev.loc[("base", 0, "loss_drop"), "step"] - 780) <= 100
    assert abs(ev.loc[("base", 0, "blimp_jump"), "step"] - 900) <= 100
    assert ph["kind"].tolist()[:5] == ["baseline"] * 5
    # each detected UAS onset has its interval from the 20 paired resamples, around its step; the
    # other events and undetected onsets have none
    for key in [("base", 1, "breakthrough"), ("minus_release_300", 0, "structure_onset")]:
        row = ev.loc[key]
        assert row["step_low"] <= row["step"] <= row["step_high"] and row["detected_share"] > 0.5
    assert ev.loc[("base", 0, "loss_drop"), ["step_low", "step_high", "detected_share"]].isna().all()
    assert ev.loc[("minus", 0, "breakthrough"), ["step_low", "step_high"]].isna().all()


def test_gather_without_the_optional_measures_writes_none_of_their_tables(tmp_path, stages, capsys):
    """A config with complexity, context and the LLC switched off gives none of their inputs: gather writes
    the other tables and none of theirs; asking for theirs is refused, and so is leaving out a
    measure that is not optional."""
    runs = RUNS[:2]
    _results_folder(tmp_path / "results", runs, [0])
    optional = set(gather.OPTIONAL_SOURCES)
    assert optional == {"complexity_summary", "context_summary", "llc_summary"}
    inputs = {key: paths for key, paths in layout_files(tmp_path / "results", runs, [0]).items() if key not in optional}
    made = gather.tables_made(list(inputs))
    assert set(gather.TABLES) - set(made) == {"complexity", "context", "llc"}

    def command(given, out):
        flags = [arg for key, paths in given.items() for arg in (f"--{key.replace('_', '-')}", *map(str, paths))]
        return ["phases", "gather", *flags, "--runs", json.dumps(runs), "--seeds", "0", "--out", *out]

    assert stages(command(inputs, [str(tmp_path / "t" / f"{name}.parquet") for name in made])) == 0
    assert sorted(path.stem for path in (tmp_path / "t").iterdir()) == sorted(made)
    assert set(pd.read_parquet(tmp_path / "t" / "uas.parquet")["run"]) == {run["name"] for run in runs}
    assert stages(command(inputs, gather_outputs(tmp_path / "t2")[1:])) == 2
    assert "--out: give one file named <table>.parquet for each of runs, train" in capsys.readouterr().err
    assert not (tmp_path / "t2").exists()
    without_probe = {key: paths for key, paths in inputs.items() if key != "probe_summary"}
    assert stages(command(without_probe, [str(tmp_path / "t3" / f"{name}.parquet") for name in made])) == 2
    assert "--probe-summary: 0 file(s) for 2 run x seed pair(s)" in capsys.readouterr().err


def test_gather_missing_inputs(tmp_path, stages, capsys):
    runs = RUNS[:2]
    _results_folder(tmp_path / "results", runs, [0], skip={("probe", "plus", 0)})
    args = [
        "phases",
        "gather",
        *gather_inputs(tmp_path / "results", runs, [0]),
        "--runs",
        json.dumps(runs),
        "--seeds",
        "0",
        *gather_outputs(tmp_path / "t"),
    ]
    assert stages(args) == 2
    assert "probe/plus/seed0/summary.parquet" in capsys.readouterr().err
    assert stages(args + ["--allow-missing"]) == 0
    uas = pd.read_parquet(tmp_path / "t" / "uas.parquet")
    assert set(uas["run"]) == {"base"}
    # gathered from a config file instead of JSON
    (tmp_path / "c.yaml").write_text("runs:\n  - {name: base, lambda: 0.0}\nseeds: [0]\n")
    assert (
        stages(
            [
                "phases",
                "gather",
                *gather_inputs(tmp_path / "results", [RUNS[0]], [0]),
                "--config",
                str(tmp_path / "c.yaml"),
                *gather_outputs(tmp_path / "t2"),
            ]
        )
        == 0
    )
    assert set(pd.read_parquet(tmp_path / "t2" / "loss.parquet")["run"]) == {"base"}


def test_long_training_tables_are_block_averaged(tmp_path):
    runs = [RUNS[0]]
    _results_folder(tmp_path / "results", runs, [0])
    tables = gather.gather_tables(layout_files(tmp_path / "results", runs, [0]), runs, [0], max_train_rows=250)
    train = tables["train"]
    assert len(train) == 250 and (train["n_steps"] == 8).all()  # 2000 steps in blocks of 8
    assert train["step"].iloc[0] == 8 and train["step"].iloc[-1] == 2000
    assert (
        gather.gather_tables(layout_files(tmp_path / "results", runs, [0]), runs, [0])["train"]["n_steps"].eq(1).all()
    )


def test_detect_without_probe_rows_says_so():
    runs = run_kinds.runs_table([RUNS[0]])
    loss = pd.DataFrame({"run": "base", "seed": 0, "step": GRID, "val_mlm_loss": 7 - logistic(GRID)})
    empty_uas = pd.DataFrame({c: pd.Series(dtype="object") for c in gather.COLUMNS["uas"]})
    empty_blimp = pd.DataFrame({c: pd.Series(dtype="object") for c in gather.COLUMNS["blimp"]})
    ph = phases.detect(runs, loss, empty_uas, empty_blimp)
    assert len(ph) == 5
    assert ph.set_index("event").at["loss_drop", "detected"]
    assert ph.set_index("event").at["breakthrough", "reason"] == "no UAS rows for this run and seed"


def test_a_sas_minus_runs_loss_drop_is_its_alternative_strategy_onset():
    """Only a SAS- run (kind sas_minus) has the event, and it is its own loss drop, found by the
    same rule as the baseline's: detected with the drop's step and numbers, or not with its reason."""
    steps = np.r_[np.arange(0, 1000, 25), np.arange(1000, 4001, 100)]
    runs = run_kinds.runs_table(
        [{"name": "base", "lambda": 0.0}, {"name": "minus", "lambda": 1.0}, {"name": "flat_minus", "lambda": 2.0}]
    )
    unigram = 7 + 2 * np.exp(-steps / 40)
    curves_of = {
        "base": unigram - logistic(steps, 1500, 60, 0, 0.6),
        "minus": unigram - logistic(steps, 2600, 80, 0, 0.4),  # a later drop
        "flat_minus": 7 + 2 * np.exp(-steps / 400),  # only slows down: no drop
    }
    loss = pd.concat(
        pd.DataFrame({"run": run, "seed": 0, "step": steps, "val_mlm_loss": y}) for run, y in curves_of.items()
    )
    empty_uas = pd.DataFrame({c: pd.Series(dtype="object") for c in gather.COLUMNS["uas"]})
    empty_blimp = pd.DataFrame({c: pd.Series(dtype="object") for c in gather.COLUMNS["blimp"]})
    ph = phases.detect(runs, loss, empty_uas, empty_blimp, curves.PhaseOptions(loss_min_step=200))
    assert ph.groupby("run").size().to_dict() == {"base": 5, "minus": 6, "flat_minus": 6}
    events = ph.set_index(["run", "event"])
    assert ("base", "alternative_strategy_onset") not in events.index
    for run, drop_at in (("minus", 2600), ("flat_minus", None)):
        onset, drop = events.loc[(run, "alternative_strategy_onset")], events.loc[(run, "loss_drop")]
        assert onset.drop("metric").equals(drop.drop("metric")) and onset["metric"] == "val_mlm_loss"
        (alone,) = phases.loss_events(steps, curves_of[run], curves.PhaseOptions(loss_min_step=200))
        assert onset["detected"] == alone["detected"] == (drop_at is not None)
        if drop_at is None:
            assert onset["reason"] == alone["reason"] and onset["reason"].startswith("no loss drop")
        else:
            assert onset["step"] == alone["step"] and abs(onset["step"] - drop_at) <= 100
    assert abs(events.loc[("base", "loss_drop"), "step"] - 1500) <= 100


def test_a_blimp_rise_within_its_interval_is_not_a_jump():
    steps = np.arange(0, 1100, 100)
    accuracy = 0.5 + 0.06 / (1 + np.exp(-(steps - 500) / 60))  # a clean 0.06 rise
    assert phases.blimp_events(steps, accuracy, curves.PhaseOptions())[0]["detected"]
    wide = np.full(len(steps), 0.08)  # +/-0.04: the rise is inside it
    event = phases.blimp_events(steps, accuracy, curves.PhaseOptions(), wide)[0]
    assert not event["detected"] and "within the 95% interval" in event["reason"]


def test_a_uas_rise_straight_from_the_initialisation_has_a_breakthrough_but_no_sampled_onset():
    """SAS+ raises UAS from the first steps: its steepest rise is at the first checkpoint after
    step 0, which counts (nothing began before the initialisation); its onset was not sampled."""
    steps = np.r_[np.arange(0, 600, 100), np.arange(600, 2001, 200)]
    uas = 0.09 + 0.13 * (1 - np.exp(-steps / 120))
    onset, breakthrough, capabilities = phases.uas_events(steps, uas, curves.PhaseOptions())
    assert breakthrough["detected"] and breakthrough["step"] == 100
    assert not onset["detected"] and "onset was not sampled" in onset["reason"]
    # a slower rise seen from step 300 on (min_step): it began before the window
    slower = 0.09 + 0.13 * (1 - np.exp(-steps / 600))
    late = phases.uas_events(steps, slower, curves.PhaseOptions(min_step=300))
    assert not late[1]["detected"] and "first candidate" in late[1]["reason"]


def test_a_recovery_from_a_dip_below_the_initial_uas_is_not_a_transition():
    """SAS- pushes UAS below its random-init value, then it climbs back to about where it began:
    a rise of 0.05 inside the curve, but no acquisition."""
    steps = np.r_[np.arange(0, 200, 100), np.arange(200, 2001, 200)]
    sas_minus = 0.09 - 0.05 * np.exp(-(((steps - 300) / 150) ** 2)) - 0.0 * steps
    events = phases.uas_events(steps, sas_minus, curves.PhaseOptions())
    assert not any(e["detected"] for e in events)
    assert "above its value at step 0" in events[0]["reason"]
    # the same dip followed by a real rise above the start is a transition
    rising = sas_minus + 0.15 / (1 + np.exp(-(steps - 1200) / 150))
    assert phases.uas_events(steps, rising, curves.PhaseOptions())[1]["detected"]


# SAS- of the embedded default, every 100 steps: the penalty's first push takes UAS from its
# step-0 value 0.090 down to 0.019, it climbs back by step 300 and then wanders in 0.08-0.12 (up to
# 0.116 at step 1,600, 0.026 above where it started).
SAS_MINUS_STEPS = np.arange(0, 2001, 100)
SAS_MINUS_UAS = np.array(
    [0.090, 0.019, 0.054, 0.099, 0.093, 0.088, 0.083, 0.086, 0.084, 0.089, 0.085]
    + [0.091, 0.095, 0.104, 0.112, 0.114, 0.116, 0.111, 0.109, 0.108, 0.106]
)


def test_a_climb_out_of_the_dip_under_sas_minus_is_no_transition():
    """The rise of a UAS transition counts from max(step-0 value, level before the climb), not from
    the dip's floor: the default's SAS- rises 0.08 from its floor at step 100, but its steepest climb
    ends about where it started."""
    options = curves.PhaseOptions()
    curve = curves.analyse_curve(SAS_MINUS_STEPS, SAS_MINUS_UAS, options)
    assert curve.detected and curve.rise > 0.06  # from the dip's floor: what phases once reported
    smoothed = curves.smooth(SAS_MINUS_UAS, 3)
    assert smoothed.max() - smoothed[0] > options.min_rise  # nor is "ever above the step-0 value" enough
    events = phases.uas_events(SAS_MINUS_STEPS, SAS_MINUS_UAS, options)
    assert [e["event"] for e in events] == ["structure_onset", "breakthrough", "capabilities_onset"]
    for event in events:
        assert not event["detected"] and np.isnan(event["step"])
        assert event["reason"].startswith("no transition: the steepest climb (step 200)")
        assert "above its value at step 0 (0.09;" in event["reason"]
        assert "recovery from a dip is not acquisition" in event["reason"]
        assert event["rise"] < event["threshold"]
    # by hand: the climb around step 200 (smoothed velocity > 0 from step 100 to 400, one more
    # checkpoint on each side: steps 0-500); base max(0.090, its smoothed floor 0.0455 at step
    # 100), top the highest smoothed value from step 200 to 500 (0.09325 at 400)
    assert smoothed[1] == pytest.approx(0.0455) and smoothed[4] == pytest.approx(0.09325)
    assert np.all(np.diff(smoothed[[0, 2, 4, 6]]) != 0) and smoothed[6] < smoothed[4]
    assert events[1]["rise"] == pytest.approx(0.09325 - 0.090)


def test_the_rise_of_a_detected_transition_counts_from_the_level_before_it():
    """A baseline-like curve: a gentle climb from 0.090 to 0.122 by step 300, a decline to 0.112 by
    700, and a rise of 0.11 centred on step 1,100. The transition's rise counts from where its climb
    began (0.1165, above the step-0 value), not from step 0 (0.132)."""
    steps = np.arange(0, 2001, 100)
    uas = np.interp(steps, [0, 300, 700, 2000], [0.090, 0.122, 0.112, 0.112])
    uas += 0.11 / (1 + np.exp(-(steps - 1100) / 120))
    options = curves.PhaseOptions()
    onset, breakthrough, capabilities = phases.uas_events(steps, uas, options)
    assert onset["detected"] and breakthrough["detected"] and capabilities["detected"]
    assert breakthrough["step"] == 1100 and onset["step"] < 1100 < capabilities["step"]
    s = curves.smooth(uas, 3)
    v = np.gradient(s, steps)
    assert (v[4:7] <= 0).all() and (v[7:] > 0).all()  # the climb: from step 700 to the end
    # from the level before the climb (step 600) to its top
    assert s[6] == pytest.approx(0.1165, abs=5e-5) and s[6] == s[6:12].min()
    assert breakthrough["rise"] == pytest.approx(s[11:].max() - s[6])
    assert breakthrough["rise"] < curves.analyse_curve(steps, uas, options).rise - 0.015


def test_the_complexity_peak_and_its_fall():
    """An ID curve that rises from 8 to a peak of 20 at step 1,000 and falls back to 12 (a Gaussian
    bump, width 250 steps): the peak at the maximum, the fall at the steepest descent after it (one
    width after the centre: a Gaussian's inflection point), both within one checkpoint."""
    steps = np.arange(0, 3001, 100)
    bump = 8 + 4 * steps / 3000 + 12 * np.exp(-0.5 * ((steps - 1000) / 250) ** 2)
    noisy = bump + np.random.default_rng(0).normal(0, 0.05, len(steps))
    peak, fall = phases.complexity_events(steps, noisy, curves.PhaseOptions(), np.full(len(steps), 0.5))
    assert peak["event"] == "complexity_peak" and peak["metric"] == "complexity"
    assert peak["detected"] and abs(peak["step"] - 1000) <= 100
    assert fall["detected"] and abs(fall["step"] - 1250) <= 100
    s = curves.smooth(noisy, 3)
    top = int(np.argmax(s))
    assert peak["rise"] == pytest.approx(s[top] - s[: top + 1].min())  # 8 -> ~20
    assert fall["rise"] == pytest.approx(s[top] - s[top:].min())
    # the 95% interval raises the threshold: a bump narrower than the ID's own interval is none
    (none, _) = phases.complexity_events(steps, noisy, curves.PhaseOptions(), np.full(len(steps), 15.0))
    assert not none["detected"] and "< threshold 15" in none["reason"]


def test_a_complexity_curve_that_only_rises_or_only_falls_has_no_peak():
    steps = np.arange(0, 2001, 100)
    rising = 5 + 10 * steps / 2000
    falling = rising[::-1]
    for curve, trend in ((rising, "only rises"), (falling, "only falls")):
        peak, fall = phases.complexity_events(steps, curve, curves.PhaseOptions())
        assert not peak["detected"] and not fall["detected"] and np.isnan(peak["step"])
        assert peak["reason"].startswith("no peak: highest at the") and trend in peak["reason"]
    # a flat, noisy ID: its maximum is noise, below the threshold
    flat = 12 + np.random.default_rng(1).normal(0, 0.2, len(steps))
    peak, _ = phases.complexity_events(steps, flat, curves.PhaseOptions())
    assert not peak["detected"] and "< threshold" in peak["reason"]
    # a peak near the end: its fall was not sampled
    late = 5 + 10 * np.exp(-0.5 * ((steps - 1800) / 200) ** 2)
    peak, fall = phases.complexity_events(steps, late, curves.PhaseOptions())
    assert peak["detected"] and peak["step"] == 1800
    assert not fall["detected"] and "when sampling ended" in fall["reason"]


def test_detect_reads_the_mean_rows_of_a_complexity_table():
    runs = run_kinds.runs_table([{"name": "baseline", "lambda": 0.0}])
    steps = np.arange(0, 2001, 100)
    uas = pd.DataFrame({"run": "baseline", "seed": 0, "step": steps, "treebank": "t", "uas": logistic(steps, 1000)})
    loss = pd.DataFrame({"run": "baseline", "seed": 0, "step": steps, "val_mlm_loss": 7 - steps / 1000})
    blimp = pd.DataFrame(
        {"run": "baseline", "seed": 0, "step": steps, "variant": "original", "level": "overall", "accuracy": 0.6}
    )
    bump = 10 + 8 * np.exp(-0.5 * ((steps - 900) / 200) ** 2)
    rows = []
    for layer, value in (("embeddings", 40.0 + 0 * steps), ("1", bump - 1), ("2", bump + 1), ("mean", bump)):
        rows.append(pd.DataFrame({"run": "baseline", "seed": 0, "step": steps, "layer": layer, "intrinsic_dim": value}))
    table = pd.concat(rows).assign(
        id_low=lambda d: d["intrinsic_dim"] - 0.3, id_high=lambda d: d["intrinsic_dim"] + 0.3
    )
    without = phases.detect(runs, loss, uas, blimp)
    ph = phases.detect(runs, loss, uas, blimp, complexity=table)
    assert len(ph) == len(without) + 2
    peak = ph[ph["event"] == "complexity_peak"].iloc[0]
    assert peak["detected"] and peak["step"] == 900 and peak["value"] == pytest.approx(18)
    assert ph[ph["event"] == "complexity_fall"].iloc[0]["detected"]
