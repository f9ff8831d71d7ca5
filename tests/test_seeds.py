"""Across seeds (results/tables/seeds.parquet): correlations per group of seed replicates against
scipy.stats and hand-computed cases, the fewer-than-3 rule, groups that never pool runs, the CLI,
and (slow) a real three-seed run through the Snakefile."""

import itertools

import numpy as np
import pandas as pd
import pytest
import yaml
from scipy import stats

from conftest import REPO, link_workflow, snakemake_ok
from sasbert import cli
from sasbert.analysis import runs as run_kinds
from sasbert.analysis import seeds
from sasbert.errors import InputError

RUNS = [{"name": "baseline", "lambda": 0.0}, {"name": "sas_minus", "lambda": 1.0}]
SERIES = [
    {"name": "mb0", "seed": 0, "group": "multiberts"},
    {"name": "mb1", "seed": 1, "group": "multiberts"},
    {"name": "mb2", "seed": 2, "group": "multiberts"},
    {"name": "mb3", "seed": 3, "group": "multiberts"},
    {"name": "solo", "seed": 0},
]
# final values per run x seed (step 100) and values at step 50: (loss, uas, blimp)
FINAL = {
    ("baseline", 0): (5.9, 0.21, 0.52),
    ("baseline", 1): (5.8, 0.25, 0.51),
    ("baseline", 2): (5.7, 0.22, 0.55),
    ("baseline", 3): (5.85, 0.24, 0.50),
    ("sas_minus", 0): (6.3, 0.10, 0.53),
    ("sas_minus", 1): (6.1, 0.12, 0.56),
    ("sas_minus", 2): (6.2, 0.11, 0.52),
    ("sas_minus", 3): (6.4, 0.09, 0.54),
}
SERIES_UAS = {"mb0": (0.40, 0.61), "mb1": (0.45, 0.64), "mb2": (0.43, 0.66), "mb3": (0.47, 0.63), "solo": (0.5, 0.6)}


def tables(runs=RUNS, series=SERIES, final=FINAL):
    """Hand-made gathered tables: checkpoints 0, 50 and 100 of each trained run x seed (step 50 is
    the final value shifted), and the series at steps 0 and 1000 (UAS and BLiMP, no loss)."""
    loss, uas, blimp = [], [], []
    for (run, seed), (lo, u, b) in final.items():
        if run not in {r["name"] for r in runs}:
            continue
        for step, shift in ((0, None), (50, 0.01 * (seed % 3)), (100, 0.0)):
            if shift is None:
                values = (9.0, 0.09, 0.5)
            else:
                values = (lo + 0.2 - shift, u - 0.05 + shift * (seed - 1), b - 0.01)
            loss.append((run, seed, step, values[0]))
            uas.append((run, seed, step, "ewt", values[1]))
            blimp.append((run, seed, step, "original", "overall", values[2]))
    for one in series:
        u, b = SERIES_UAS[one["name"]]
        for step, (uu, bb) in ((0, (0.09, 0.5)), (1000, (u, b))):
            uas.append((one["name"], one["seed"], step, "ewt", uu))
            blimp.append((one["name"], one["seed"], step, "original", "overall", bb))
    return {
        "runs": run_kinds.runs_table(runs, series),
        "loss": pd.DataFrame(loss, columns=["run", "seed", "step", "val_mlm_loss"]),
        "uas": pd.DataFrame(uas, columns=["run", "seed", "step", "treebank", "uas"]),
        "blimp": pd.DataFrame(blimp, columns=["run", "seed", "step", "variant", "level", "accuracy"]),
    }


def table(t, options=None):
    return seeds.seed_table(t["runs"], t["loss"], t["uas"], t["blimp"], options or seeds.SeedOptions())


def row(out, group, x, y, checkpoint="final"):
    hit = out[(out["group"] == group) & (out["x"] == x) & (out["y"] == y) & (out["checkpoint"] == checkpoint)]
    assert len(hit) == 1, (group, x, y, checkpoint)
    return hit.iloc[0]


def exact_spearman_p(x, y):
    """The two-sided exact permutation p-value of Spearman's rho over all n! pairings."""
    observed = abs(stats.spearmanr(x, y).statistic)
    rhos = [stats.spearmanr(np.asarray(x)[list(p)], y).statistic for p in itertools.permutations(range(len(x)))]
    return np.mean(np.abs(rhos) >= observed - 1e-12)


def test_each_group_against_scipy_and_runs_never_pooled():
    out = table(tables())
    assert list(out.columns) == seeds.SEED_COLUMNS
    metric = {"val_mlm_loss": 0, "uas": 1, "blimp": 2}
    for run in ("baseline", "sas_minus"):
        values = {m: [FINAL[(run, s)][i] for s in range(4)] for m, i in metric.items()}
        for x, y in seeds.PAIRS:
            r = row(out, run, x, y)
            assert r["status"] == "ok" and r["n"] == r["n_members"] == 4 and r["step"] == 100
            assert r["kind"] == run and r["runs"] == run
            assert r["members"] == ", ".join(f"{run}/{s}" for s in range(4))
            spearman = stats.spearmanr(values[x], values[y])
            pearson = stats.pearsonr(values[x], values[y])
            assert r["spearman"] == pytest.approx(spearman.statistic)
            assert r["pearson"] == pytest.approx(pearson.statistic)
            assert r["pearson_p"] == pytest.approx(pearson.pvalue)
            assert r["spearman_p"] == pytest.approx(exact_spearman_p(values[x], values[y]))
            assert r["spearman_low"] <= r["spearman"] <= r["spearman_high"]
            assert r["pearson_low"] <= r["pearson"] <= r["pearson_high"]
    # never pooled: one row per group, each over its own 4 seeds; pooled over both runs' 8 seeds,
    # UAS and the loss would correlate strongly (SAS- is worse on both), within the baseline weakly
    assert set(out["group"]) == {"baseline", "sas_minus", "multiberts", "solo"}
    assert (out["n"] <= 4).all()
    pooled = [FINAL[k] for k in FINAL]
    assert stats.spearmanr([v[1] for v in pooled], [v[0] for v in pooled]).statistic < -0.7
    assert row(out, "baseline", "uas", "val_mlm_loss")["spearman"] == pytest.approx(-0.4)
    assert row(out, "sas_minus", "uas", "val_mlm_loss")["spearman"] == pytest.approx(-1.0)


def test_a_hand_computed_case():
    """Four seeds, ranks (1, 2, 3, 4) and (1, 3, 2, 4): rho = r = 1 - 6 * 2 / (4 * 15) = 0.8; of the
    24 pairings, 8 have |rho| >= 0.8 (the identity, three adjacent swaps, and their reversals)."""
    result = seeds.correlate([1.0, 2.0, 3.0, 4.0], [1.0, 3.0, 2.0, 4.0])
    assert result["status"] == "ok" and result["n"] == 4
    assert result["spearman"] == pytest.approx(0.8) and result["pearson"] == pytest.approx(0.8)
    assert result["spearman_p"] == pytest.approx(8 / 24)
    # Pearson's p from the t statistic with n - 2 degrees of freedom
    t = 0.8 * np.sqrt(2 / (1 - 0.64))
    assert result["pearson_p"] == pytest.approx(2 * stats.t.sf(t, 2))
    # from 9 seeds on, Spearman's p is scipy's (t approximation)
    x, y = np.arange(12.0), np.r_[1.0, 0.0, 3.0, 2.0, 4.0, 6.0, 5.0, 7.0, 9.0, 8.0, 11.0, 10.0]
    assert seeds.correlate(x, y)["spearman_p"] == pytest.approx(stats.spearmanr(x, y).pvalue)


def test_fewer_than_three_seeds_and_constant_values_give_no_number():
    t = tables()
    # baseline with seeds 0 and 1 only
    t["loss"], t["uas"], t["blimp"] = (
        df[~((df["run"] == "baseline") & (df["seed"] >= 2))] for df in (t["loss"], t["uas"], t["blimp"])
    )
    out = table(t)
    for x, y in seeds.PAIRS:
        r = row(out, "baseline", x, y)
        assert r["status"] == seeds.TOO_FEW and r["n"] == 2
        assert r[seeds.STATISTICS].isna().all() and r["resamples"] == 0
        assert r["reason"].startswith("2 seed(s) with both values (< 3)")
    # a series alone, and the MultiBERTs-like group without a held-out loss
    assert (out[out["group"] == "solo"]["status"] == seeds.TOO_FEW).all()
    lossless = row(out, "multiberts", "uas", "val_mlm_loss")
    assert lossless["status"] == seeds.TOO_FEW and lossless["n"] == 0
    assert "no held-out loss values at their final checkpoint" in lossless["reason"]
    mb = row(out, "multiberts", "uas", "blimp")
    assert mb["status"] == "ok" and mb["n"] == 4 and mb["kind"] == "external" and mb["runs"] == "mb0, mb1, mb2, mb3"
    uas, blimp = zip(*(SERIES_UAS[f"mb{i}"] for i in range(4)))
    assert mb["pearson"] == pytest.approx(stats.pearsonr(uas, blimp).statistic)
    # the same BLiMP at every seed: no correlation
    constant = seeds.correlate([0.1, 0.2, 0.3], [0.5, 0.5, 0.5])
    assert constant["status"] == "constant" and np.isnan(constant["spearman"])


def test_chosen_steps():
    out = table(tables(), seeds.SeedOptions(steps=(50, 70)))
    assert list(out[out["group"] == "baseline"]["checkpoint"]) == ["final"] * 3 + ["step"] * 6
    at50 = out[(out["group"] == "baseline") & (out["step"] == 50)]
    assert (at50["status"] == "ok").all() and (at50["n"] == 4).all()
    t = tables()
    loss = t["loss"][(t["loss"]["run"] == "baseline") & (t["loss"]["step"] == 50)]["val_mlm_loss"]
    uas = t["uas"][(t["uas"]["run"] == "baseline") & (t["uas"]["step"] == 50)]["uas"]
    r = row(out[out["step"] == 50], "baseline", "uas", "val_mlm_loss", "step")
    assert r["pearson"] == pytest.approx(stats.pearsonr(uas, loss).statistic)
    missing = row(out[out["step"] == 70], "baseline", "uas", "blimp", "step")
    assert missing["status"] == seeds.TOO_FEW and "no member has a checkpoint at step 70" in missing["reason"]


def test_bootstrap_interval_matches_scipy_and_is_seeded():
    rng = np.random.default_rng(3)
    x = rng.normal(size=15)
    y = 0.6 * x + rng.normal(size=15)
    (s_lo, s_hi), (p_lo, p_hi), used = seeds.bootstrap_intervals(x, y, 4000, 0, 0.95)
    assert used == 4000  # 15 distinct seeds: no constant resample

    def pearson(a, b, axis=-1):
        return stats.pearsonr(a, b, axis=axis).statistic

    def spearman(a, b, axis=-1):
        return pearson(stats.rankdata(a, axis=axis), stats.rankdata(b, axis=axis), axis)

    for statistic, (lo, hi) in ((pearson, (p_lo, p_hi)), (spearman, (s_lo, s_hi))):
        reference = stats.bootstrap(
            (x, y), statistic, paired=True, vectorized=True, n_resamples=4000, method="percentile", rng=1
        ).confidence_interval
        assert lo == pytest.approx(reference.low, abs=0.05) and hi == pytest.approx(reference.high, abs=0.05)
    assert seeds.bootstrap_intervals(x, y, 4000, 0, 0.95) == ((s_lo, s_hi), (p_lo, p_hi), used)
    (n_lo, n_hi), _, _ = seeds.bootstrap_intervals(x, y, 4000, 0, 0.5)
    assert s_lo < n_lo < n_hi < s_hi
    # three seeds: a resample that draws one seed three times (3 of the 27 draws) has no correlation
    _, _, used = seeds.bootstrap_intervals([0.1, 0.2, 0.3], [0.3, 0.1, 0.2], 9000, 0, 0.95)
    assert abs(used - 9000 * 24 / 27) < 150


def test_groups_never_mix_trained_runs():
    with pytest.raises(InputError, match="series\\[0\\] \\(x\\): group 'baseline' is a trained run's name"):
        run_kinds.runs_table(RUNS, [{"name": "x", "group": "baseline"}])
    t = tables()
    t["runs"].loc[t["runs"]["run"] == "sas_minus", "group"] = "baseline"
    with pytest.raises(InputError, match="group 'baseline' holds baseline, sas_minus"):
        table(t)
    # a runs table from before groups: each run its own group
    t = tables(series=[])
    out = table({**t, "runs": t["runs"].drop(columns="group")})
    assert set(out["group"]) == {"baseline", "sas_minus"}


def test_seeds_cli(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(cli.STAGES, "phases", ("sasbert.analysis.cli", "phases"))
    paths = {}
    for name, df in tables().items():
        paths[name] = tmp_path / f"{name}.parquet"
        df.to_parquet(paths[name])
    args = ["phases", "seeds", *(f"--{n}={p}" for n, p in paths.items()), "--out", str(tmp_path / "s.parquet")]
    assert (
        cli.main(
            [*args, "--csv", str(tmp_path / "s.csv"), "--options", '{"steps": [50]}', "--bootstrap-samples", "500"]
        )
        == 0
    )
    out = pd.read_parquet(tmp_path / "s.parquet")
    assert set(out["checkpoint"]) == {"final", "step"} and (out["resamples"] <= 500).all()
    assert len(pd.read_csv(tmp_path / "s.csv")) == len(out)
    pd.DataFrame({"run": ["baseline"]}).to_parquet(paths["loss"])
    assert cli.main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "loss.parquet: not a loss table (missing seed, step, val_mlm_loss)" in err[0]


@pytest.mark.slow
def test_three_seeds_of_one_run_through_the_workflow(tmp_path):
    """tests/configs/e2e.yaml with one run and seeds 0-2: the seeds rule's table holds the baseline's
    three seeds at the final step, its numbers scipy's on the gathered tables, and figure 5 is drawn
    from it."""
    cfg = yaml.safe_load((REPO / "tests" / "configs" / "e2e.yaml").read_text())
    cfg.update(runs=[{"name": "baseline", "lambda": 0.0}], seeds=[0, 1, 2])
    cfg["train"] = {**cfg["train"], "max_steps": 10, "decay_horizon": 20}
    cfg["checkpoints"] = {"steps": [0, 10], "every": []}
    cfg["seed_stats"] = {"bootstrap_samples": 300}
    work = link_workflow(tmp_path / "work")
    (work / "three.yaml").write_text(yaml.safe_dump(cfg))
    targets = ["results/tables/seeds.parquet", "results/figures/fig5_seeds.png"]
    snakemake_ok(*targets, "--cores", "2", "--configfile", "three.yaml", cwd=work, timeout=900)
    folder = work / "results" / "tables"
    out = pd.read_parquet(folder / "seeds.parquet")
    assert set(out["group"]) == {"baseline"} and set(out["checkpoint"]) == {"final"}
    assert (out["n"] == 3).all() and (out["step"] == 10).all() and (out["resamples"] <= 300).all()
    loss = pd.read_parquet(folder / "loss.parquet").query("step == 10").sort_values("seed")
    uas = pd.read_parquet(folder / "uas.parquet").query("step == 10").sort_values("seed")
    r = row(out, "baseline", "uas", "val_mlm_loss")
    if r["status"] == "ok":
        assert r["pearson"] == pytest.approx(stats.pearsonr(uas["uas"], loss["val_mlm_loss"]).statistic)
        assert r["spearman"] == pytest.approx(stats.spearmanr(uas["uas"], loss["val_mlm_loss"]).statistic)
    else:  # three seeds with the same best-head UAS
        assert r["status"] == "constant"
    assert (work / "results" / "figures" / "fig5_seeds.png").stat().st_size > 0
