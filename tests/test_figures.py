"""Figures 1-5 from small hand-made tables: each renders (PNG + PDF), carries the expected artists
(a curve per run, onset markers), and degrades to a note when a config lacks SAS+ or release runs."""

import zlib

import numpy as np
import pandas as pd
import pytest

from sasbert import cli
from sasbert.analysis import curves, gather, phases, seeds
from sasbert.analysis import runs as run_kinds
from sasbert.analysis.figures import cli as figures_cli
from sasbert.analysis.figures import common as figures_common
from sasbert.analysis.figures import registry as figures_registry
from sasbert.analysis.figures import render as figures_render

RUNS = [
    {"name": "baseline", "lambda": 0.0},
    {"name": "sas_plus", "lambda": -1.0},
    {"name": "sas_minus", "lambda": 1.0},
    {
        "name": "sas_minus_release_200",
        "lambda": [{"value": 1.0, "until_step": 200}, {"value": 0.0}],
        "resume_from": {"run": "sas_minus", "step": 200},
    },
    {
        "name": "sas_minus_release_400",
        "lambda": [{"value": 1.0, "until_step": 400}, {"value": 0.0}],
        "resume_from": {"run": "sas_minus", "step": 400},
    },
]
STEPS = [0, 25, 50, 75, 100, 125, 150, 175, 200, 250, 300, 350, 400, 450, 500, 600, 700, 800, 1000, 1200]
PHENOMENA = [
    "anaphor_agreement",
    "argument_structure",
    "binding",
    "determiner_noun_agreement",
    "filler_gap_dependency",
    "island_effects",
    "npi_licensing",
    "subject_verb_agreement",
]


def _logistic(x, center, width):
    return 1.0 / (1.0 + np.exp(-(np.asarray(x, float) - center) / width))


def _curves(run, steps, seed):
    """(loss, uas, blimp) arrays of a synthetic run: a transition where SAS is allowed."""
    s = np.asarray(steps, float)
    shift = 15 * (seed - 1)
    unigram = 2.2 * np.exp(-s / 25)
    if run == "sas_minus":
        uas = 0.12 + 0.01 * _logistic(s, 500, 200)
        loss = 6.6 + unigram - 0.25 * s / 1200
        blimp = 0.5 + 0.08 * s / 1200
    else:
        center = {"baseline": 300, "sas_plus": 150}.get(run)
        if center is None:  # a release run: the transition after its release step
            k = int(run.rsplit("_", 1)[1])
            center = k + 120
        center += shift
        uas = 0.12 + 0.43 * _logistic(s, center, 35)
        loss = 6.6 + unigram - 0.55 * _logistic(s, center - 10, 30) - 0.2 * s / 1200
        blimp = 0.5 + 0.06 * s / 1200 + 0.14 * _logistic(s, center + 60, 40)
    rng = np.random.default_rng(zlib.crc32(f"{run}/{seed}".encode()))
    return (
        loss + rng.normal(0, 0.01, len(s)),
        uas + rng.normal(0, 0.006, len(s)),
        blimp + rng.normal(0, 0.005, len(s)),
    )


def synthetic_tables(runs=RUNS, seeds=(0, 1, 2), n_layers=4, n_heads=4):
    """The gathered tables (as ``sasbert phases gather`` writes them) of synthetic runs."""
    runs_df = run_kinds.runs_table(runs)
    loss_rows, uas_rows, head_rows, blimp_rows, train_rows = [], [], [], [], []
    for r in runs_df.itertuples():
        steps = [s for s in STEPS if s >= r.start_step]
        for seed in seeds:
            if r.parent:  # a release run: the whole history, then only its own rows are kept
                loss, uas, blimp = _curves(r.run, STEPS, seed)
                keep = np.asarray(STEPS) >= r.start_step
                loss, uas, blimp = loss[keep], uas[keep], blimp[keep]
            else:
                loss, uas, blimp = _curves(r.run, steps, seed)
            rng = np.random.default_rng(seed)
            for i, step in enumerate(steps):
                loss_rows.append((r.run, seed, step, loss[i]))
                uas_rows.append(
                    (
                        r.run,
                        seed,
                        step,
                        "ewt-dev",
                        uas[i],
                        uas[i] - 0.01,
                        uas[i] + 0.01,
                        2,
                        1,
                        "dependent_to_parent",
                        0.3 * uas[i],
                        0.35 * uas[i],
                        1.0,  # reachable: a bidirectional model
                        None,  # same_weights_as
                        uas[i] - 0.05,
                        0.31,
                        -1,
                        100,
                    )
                )
                for layer in range(n_layers):
                    for head in range(n_heads):
                        for direction in ("dependent_to_parent", "parent_to_dependent"):
                            acc = (
                                uas[i]
                                if (layer, head, direction) == (2, 1, "dependent_to_parent")
                                else (0.08 + 0.05 * rng.random() + 0.15 * (uas[i] - 0.12) * ((layer + head) % 3) / 2)
                            )
                            head_rows.append(
                                (r.run, seed, step, "ewt-dev", layer, head, direction, acc, 0.2 * acc, 1000)
                            )
                blimp_rows.append(
                    (
                        r.run,
                        seed,
                        step,
                        "original",
                        "overall",
                        "",
                        "",
                        blimp[i],
                        blimp[i] - 0.03,
                        blimp[i] + 0.03,
                        40,
                        8,
                    )
                )
                for j, name in enumerate(PHENOMENA):
                    gain = 0.1 if j % 3 == 0 else 0.0  # some phenomena gain more from the transition
                    acc = float(np.clip(blimp[i] + 0.06 * np.sin(j * 1.7) + gain * (blimp[i] - 0.5), 0, 1))
                    blimp_rows.append(
                        (r.run, seed, step, "original", "phenomenon", name, name, acc, acc - 0.05, acc + 0.05, 5, 1)
                    )
            last = steps[-1]
            train_steps = np.arange(r.start_step + 1, last + 1)
            tl, _, _ = _curves(r.run, train_steps, seed)
            for step, value in zip(train_steps, tl + rng.normal(0, 0.15, len(tl))):
                train_rows.append((r.run, seed, int(step), value, np.nan, 0.0, 1e-3, 1.0, 1))
    loss = pd.DataFrame(loss_rows, columns=gather.LOSS_COLUMNS)
    tables = {
        "runs": runs_df,
        "loss": loss,
        "uas": pd.DataFrame(uas_rows, columns=gather.COLUMNS["uas"]),
        "heads": pd.DataFrame(head_rows, columns=gather.COLUMNS["heads"]),
        "blimp": pd.DataFrame(blimp_rows, columns=gather.COLUMNS["blimp"]),
        "train": pd.DataFrame(train_rows, columns=gather.TRAIN_COLUMNS),
        "context": synthetic_context(loss),
    }
    return {**tables, "seeds": seeds_of(tables)}


CONTEXT_WINDOWS = [1, 2, 4, 8, 16, -1]


def context_gap(run, window, seed):
    """A synthetic gap(w): SAS- loses more than the others when cut to a wide window."""
    if window == -1:
        return 0.0
    reach = 8.0 if run == "sas_minus" else 2.0
    return 3.0 * np.exp(-window / reach) + 0.01 * seed


def synthetic_context(loss):
    """The gathered context table (``sasbert context score`` stacked) at every other checkpoint."""
    rows = []
    for (run, seed), curve in loss.groupby(["run", "seed"], sort=False):
        for step, full in zip(curve["step"].iloc[::2], curve["val_mlm_loss"].iloc[::2]):
            for window in CONTEXT_WINDOWS:
                gap = context_gap(run, window, seed)
                rows.append((run, seed, step, f"step-{step}", window, full + gap, 0.3, 500, 300, gap))
    columns = ["run", "seed", "step", "checkpoint", "window", "loss", "accuracy", "n_masked", "n_sentences", "gap"]
    return pd.DataFrame(rows, columns=columns)


def seeds_of(tables):
    """The seeds table (``sasbert phases seeds``) of gathered tables (few resamples: drawing only)."""
    return seeds.seed_table(
        tables["runs"], tables["loss"], tables["uas"], tables["blimp"], seeds.SeedOptions(bootstrap_samples=200)
    )


def phases_of(tables):
    return phases.detect(
        tables["runs"], tables["loss"], tables["uas"], tables["blimp"], curves.PhaseOptions(loss_min_step=100)
    )


@pytest.fixture(scope="module")
def full():
    tables = synthetic_tables()
    return tables, phases_of(tables)


def gids(fig):
    out = []
    for ax in fig.axes:
        for artist in [*ax.lines, *ax.collections, *ax.patches, *ax.images]:
            if artist.get_gid():
                out.append(artist.get_gid())
    out += [ax.title.get_gid() for ax in fig.axes if ax.title.get_gid()]
    out += [lg.get_title().get_gid() for lg in fig.legends if lg.get_title().get_gid()]
    return out


def note_text(fig):
    """The figure's note on what it could not draw (the title of its legend)."""
    return " ".join(
        lg.get_title().get_text().replace("\n", " ") for lg in fig.legends if lg.get_title().get_gid() == "note"
    ).lower()


def draw(name, tables, ph, **kw):
    return figures_cli.draw(name, tables, ph, figures_common.FigureOptions(**kw))


def test_run_colors_follow_lambda_not_names():
    runs = run_kinds.runs_table(
        [{"name": "a", "lambda": 1.0}, {"name": "b", "lambda": 0.0}, {"name": "c", "lambda": -0.5}]
    )
    colors = figures_common.run_colors(runs)
    assert colors["b"] == figures_common.KIND_COLORS["baseline"][0]
    assert colors["c"] == figures_common.KIND_COLORS["sas_plus"][0]
    assert colors["a"] == figures_common.KIND_COLORS["sas_minus"][0]
    # the same colours whichever subset a figure draws: they come from the runs table only
    assert figures_common.run_colors(runs) == colors


def test_fig1_training(full, tmp_path):
    tables, ph = full
    fig = draw("fig1_training", tables, ph)
    g = gids(fig)
    for metric in ("val_mlm_loss", "uas", "blimp"):
        assert f"curve:baseline:{metric}" in g and f"band:baseline:{metric}" in g
    assert "curve:baseline:train_loss" in g and "curve:baseline:offset_uas" in g
    assert not any(x.startswith("curve:sas_") for x in g)  # the baseline only
    assert g.count("onset:structure_onset:baseline") == 3  # on all three panels
    assert g.count("onset:capabilities_onset:baseline") == 3
    assert "onset:loss_drop:baseline" in g and "onset:blimp_jump:baseline" in g
    assert "phase_window" in g
    # the structure onset marker sits before the synthetic transition (centre 285-315, onset
    # ~240-270; on this coarse grid, 25-50 steps between checkpoints, within two checkpoints)
    (marker,) = [ln for ln in fig.axes[1].lines if ln.get_gid() == "onset:structure_onset:baseline"]
    assert 150 <= marker.get_xdata()[0] <= 300
    # the default axis is linear, with the run's first and last steps as labelled ticks
    ax = fig.axes[0]
    assert ax.get_xscale() == "linear"
    first, last = tables["loss"]["step"].min(), tables["loss"]["step"].max()
    ticks = list(ax.get_xticks())
    assert ticks[0] == first and ticks[-1] == last and ax.get_xlim()[1] >= last
    paths = figures_render.save_figure(fig, tmp_path / "fig1", dpi=80)
    assert [p.suffix for p in paths] == [".png", ".pdf"] and all(p.stat().st_size > 1000 for p in paths)
    assert paths[0].read_bytes()[:4] == b"\x89PNG" and paths[1].read_bytes()[:4] == b"%PDF"


def test_tokens_on_the_x_axis_scale_each_run_by_its_tokens_per_step(full):
    tables, ph = full
    runs = tables["runs"].copy()
    runs["tokens_per_step"] = pd.array([2048 if r == "baseline" else pd.NA for r in runs["run"]], dtype="Int64")
    tokens = {**tables, "runs": runs}
    by_step, by_tokens = draw("fig1_training", tables, ph), draw("fig1_training", tokens, ph, x_axis="tokens")

    def line(fig, gid):
        return next(ln for ax in fig.axes[1:2] for ln in ax.lines if ln.get_gid() == gid)

    steps, scaled = line(by_step, "curve:baseline:uas").get_xdata(), line(by_tokens, "curve:baseline:uas").get_xdata()
    assert list(scaled) == [2048 * s for s in steps]
    marker = line(by_tokens, "onset:structure_onset:baseline").get_xdata()[0]
    assert marker == 2048 * line(by_step, "onset:structure_onset:baseline").get_xdata()[0]
    assert by_tokens.axes[1].get_xlabel() == "tokens"
    assert figures_common._step_label(2_048_000) == "2048K" and figures_common._step_label(2_500_000) == "2.5M"
    assert figures_common._step_label(84e9) == "84B" and figures_common._step_label(20000) == "20K"
    text = " ".join(t.get_text() for t in by_tokens.texts)
    assert "no tokens_per_step for" in text and "sas_plus" in text


def test_fig1_log_axis_drops_step_zero(full):
    tables, ph = full
    fig = draw("fig1_training", tables, ph, xscale="log")
    ax = fig.axes[1]
    assert ax.get_xscale() == "log" and "step 0 not shown" in ax.get_xlabel()
    (line,) = [ln for ln in ax.lines if ln.get_gid() == "curve:baseline:uas"]
    assert min(line.get_xdata()) > 0


def test_fig2_regularizers(full):
    tables, ph = full
    fig = draw("fig2_regularizers", tables, ph)
    g = gids(fig)
    for run in ("baseline", "sas_plus", "sas_minus"):
        assert f"curve:{run}:uas" in g
    assert not any("release" in x for x in g)
    assert "onset:structure_onset:baseline" in g and "onset:structure_onset:sas_plus" in g
    assert not any(x.startswith("onset:") and x.endswith(":sas_minus") for x in g)  # no transition
    assert note_text(fig) == ""
    # consistent colours: the baseline line has the baseline colour in figures 1 and 2
    color = figures_common.run_colors(tables["runs"])["sas_plus"]
    (line,) = [ln for ln in fig.axes[1].lines if ln.get_gid() == "curve:sas_plus:uas"]
    assert line.get_color() == color
    # the last panel: gap(w) at each run's final checkpoint, the mean over seeds, one point per window
    panel = fig.axes[-1]
    assert [t.get_text() for t in panel.get_xticklabels()] == ["1", "2", "4", "8", "16"]
    for run in ("baseline", "sas_plus", "sas_minus"):
        (line,) = [ln for ln in panel.lines if ln.get_gid() == f"context:{run}"]
        expected = [np.mean([context_gap(run, w, seed) for seed in (0, 1, 2)]) for w in CONTEXT_WINDOWS[:-1]]
        assert list(line.get_xdata()) == [0, 1, 2, 3, 4]
        assert line.get_ydata() == pytest.approx(expected)
        assert line.get_color() == figures_common.run_colors(tables["runs"])[run]
        assert f"context_band:{run}" in g
    assert not any(x.startswith("context:") and "release" in x for x in g)
    # at the final checkpoint only: an earlier checkpoint's different gaps do not count
    context = tables["context"].copy()
    context.loc[context["step"] < context.groupby(["run", "seed"])["step"].transform("max"), "gap"] = 9.0
    again = draw("fig2_regularizers", {**tables, "context": context}, ph)
    (line,) = [ln for ln in again.axes[-1].lines if ln.get_gid() == "context:sas_minus"]
    assert max(line.get_ydata()) < 3.0
    # no context table: the panel says so, the rest is drawn
    fig = draw("fig2_regularizers", {k: v for k, v in tables.items() if k != "context"}, ph)
    assert "no context rows" in note_text(fig) and "curve:baseline:uas" in gids(fig)


def test_fig3_release(full):
    tables, ph = full
    fig = draw("fig3_release", tables, ph)
    g = gids(fig)
    for run in ("sas_minus_release_200", "sas_minus_release_400"):
        assert f"curve:{run}:uas" in g and f"stitched:{run}:uas" in g and f"release:{run}" in g
        for metric in ("val_mlm_loss", "uas", "blimp"):
            assert f"final:{run}:{metric}" in g
    assert "ref:baseline:blimp" in g and "ref:sas_minus:blimp" in g
    assert "curve:sas_plus:uas" not in g
    # a release curve's own part starts at k
    (line,) = [ln for ln in fig.axes[1].lines if ln.get_gid() == "curve:sas_minus_release_400:uas"]
    assert min(line.get_xdata()) == 400


def test_fig4_heads_and_phenomena(full):
    tables, ph = full
    fig = draw("fig4a_heads", tables, ph, heads_checkpoints=5)
    g = gids(fig)
    heat = [x for x in g if x.startswith("heads:baseline:")]
    assert len(heat) == 5
    assert any(x.startswith("heads:sas_minus:") for x in g)
    assert any(x.startswith("best_head:baseline:") for x in g)
    titles = " ".join(ax.get_title() for ax in fig.axes)
    assert "▲" in titles and "●" in titles
    fig = draw("fig4b_phenomena", tables, ph)
    g = gids(fig)
    assert {"phenomena:baseline", "phenomena:sas_plus", "phenomena:sas_minus"} <= set(g)
    assert "onset:structure_onset:baseline" in g
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert labels == PHENOMENA


def test_an_external_series_appears_in_figures_1_4_and_5_beside_the_trained_runs(full):
    """A series trained elsewhere (kind external): the baseline's tables copied under its name."""
    tables, ph = full
    runs = tables["runs"]
    external = runs[runs["run"] == "baseline"].assign(
        run="multiberts", kind="external", order=len(runs), group="multiberts"
    )
    extended = {"runs": pd.concat([runs, external], ignore_index=True)}
    for name, df in tables.items():
        if name not in ("runs", "seeds"):
            extended[name] = pd.concat([df, df[df["run"] == "baseline"].assign(run="multiberts")], ignore_index=True)
    extended["seeds"] = seeds_of(extended)
    copied = ph[ph["run"] == "baseline"].assign(run="multiberts", kind="external")
    ph2 = pd.concat([ph, copied], ignore_index=True)
    assert "curve:multiberts:uas" in gids(draw("fig1_training", extended, ph2))
    assert any(x.startswith("heads:multiberts:") for x in gids(draw("fig4a_heads", extended, ph2)))
    assert "phenomena:multiberts" in gids(draw("fig4b_phenomena", extended, ph2))
    assert "final:multiberts:0" in gids(draw("fig5_seeds", extended, ph2))


def test_fig5_seeds(full):
    tables, ph = full
    fig = draw("fig5_seeds", tables, ph)
    g = gids(fig)
    for run in ("baseline", "sas_plus", "sas_minus", "sas_minus_release_200"):
        for seed in (0, 1, 2):
            assert f"final:{run}:{seed}" in g
    assert "onset:structure_onset:baseline" in g
    # one row of three panels per group of seed replicates, never pooled over runs: each panel
    # holds its group's own curves and its statistics from the seeds table
    groups = list(tables["runs"]["run"])
    assert len(fig.axes) == 3 * len(groups)
    for row, group in enumerate(groups):
        for ax in fig.axes[3 * row : 3 * row + 3]:
            runs_drawn = {
                gid.split(":")[1] for gid in (ln.get_gid() or "" for ln in ax.lines) if gid.startswith("final:")
            }
            assert runs_drawn == {group}
            (text,) = [t for t in ax.texts if (t.get_gid() or "").startswith(f"seed_stats:{group}:")]
            assert text.get_text().startswith("final, n = 3\nρ = ")
    stats = tables["seeds"]
    r = stats[(stats["group"] == "baseline") & (stats["x"] == "uas") & (stats["y"] == "val_mlm_loss")].iloc[0]
    (text,) = [t for t in fig.axes[0].texts if t.get_gid() == "seed_stats:baseline:uas_vs_val_mlm_loss"]
    assert f"ρ = {r['spearman']:.2f} [{r['spearman_low']:.2f}, {r['spearman_high']:.2f}]" in text.get_text()
    assert "Spearman" not in " ".join(ax.get_title() for ax in fig.axes)  # no pooled number


def test_figures_degrade_without_sas_plus_and_release_runs(tmp_path):
    runs = [RUNS[0], RUNS[2]]  # baseline and SAS- only, one seed
    tables = synthetic_tables(runs, seeds=(0,))
    ph = phases_of(tables)
    for name in figures_registry.FIGURES:
        fig = draw(name, tables, ph)
        figures_render.save_figure(fig, tmp_path / name, dpi=40, formats=("png",))
    assert "no sas+ (λ < 0) run" in note_text(draw("fig2_regularizers", tables, ph))
    fig3 = draw("fig3_release", tables, ph)
    assert "no release run" in note_text(fig3)
    assert "curve:sas_minus:uas" in gids(fig3)
    fig5 = draw("fig5_seeds", tables, ph)
    assert "a single seed" in note_text(fig5)
    texts = [t.get_text() for ax in fig5.axes for t in ax.texts if (t.get_gid() or "").startswith("seed_stats:")]
    assert len(texts) == 6 and all(t == "final: too few seeds (n = 1)" for t in texts)
    # no baseline at all, no probe: still draws
    tables = synthetic_tables([RUNS[1]], seeds=(0,))
    tables["heads"] = tables["heads"].iloc[0:0]
    ph = phases_of(tables)
    assert "no baseline run" in note_text(draw("fig1_training", tables, ph))
    assert "heads table is empty" in " ".join(
        t.get_text() for ax in draw("fig4a_heads", tables, ph).axes for t in ax.texts
    )


def test_figures_cli_from_tables_alone(full, tmp_path, monkeypatch):
    monkeypatch.setitem(cli.STAGES, "figures", ("sasbert.analysis.figures.cli", "figures"))
    tables, ph = full
    tdir = tmp_path / "tables"
    tdir.mkdir()
    for name, df in tables.items():
        if name != "heads":  # figure 2 must not need the per-head table
            df.to_parquet(tdir / f"{name}.parquet")
    ph.to_parquet(tdir / "phases.parquet")
    out = tmp_path / "figs"
    rc = cli.main(
        [
            "figures",
            "--tables",
            str(tdir),
            "--phases",
            str(tdir / "phases.parquet"),
            "--out-dir",
            str(out),
            "--figure",
            "fig2_regularizers",
            "--dpi",
            "60",
        ]
    )
    assert rc == 0
    assert sorted(p.name for p in out.iterdir()) == ["fig2_regularizers.pdf", "fig2_regularizers.png"]
    rc = cli.main(
        [
            "figures",
            "--tables",
            str(tdir),
            "--phases",
            str(tdir / "phases.parquet"),
            "--out-dir",
            str(out),
            "--figure",
            "fig4a_heads",
        ]
    )
    assert rc == 2  # heads.parquet missing: a clear error, not a traceback
    # what the workflow's rules do: exactly the tables a figure reads, and its two output files
    files = [str(tdir / f"{name}.parquet") for name in figures_registry.FIGURES["fig2_regularizers"].tables]
    named = [str(tmp_path / "named" / "two.png"), str(tmp_path / "named" / "two.pdf")]
    args = ["figures", "--tables", *files, "--phases", str(tdir / "phases.parquet"), "--figure", "fig2_regularizers"]
    assert cli.main([*args, "--out", *named, "--dpi", "60"]) == 0
    assert sorted(p.name for p in (tmp_path / "named").iterdir()) == ["two.pdf", "two.png"]
    assert cli.main([*args, "--out", str(tmp_path / "named" / "two.svg")]) == 2  # not a format it writes


def test_one_seed_draws_its_95_percent_intervals_as_bands(full):
    tables, ph = full
    one = {k: (v[v["seed"] == 0] if "seed" in v.columns else v) for k, v in tables.items()}
    g = gids(draw("fig1_training", one, ph[ph["seed"] == 0]))
    assert "interval:baseline:uas" in g and "interval:baseline:blimp" in g
    assert "band:baseline:uas" not in g  # no spread across seeds to draw


def test_an_onsets_95_percent_interval_is_a_capped_bar_on_its_marker(full):
    tables, ph = full
    assert ph["step_low"].isna().all()  # phases without the probe's resamples: no interval drawn
    assert not any(x.startswith("onset_interval:") for x in gids(draw("fig1_training", tables, ph)))
    ph = ph.copy()
    row = (ph["run"] == "baseline") & (ph["event"] == "structure_onset")
    step = float(ph.loc[row, "step"].iloc[0])
    ph.loc[row, ["step_low", "step_high"]] = [step - 50, step + 25]
    fig = draw("fig1_training", tables, ph)
    bars = [ln for ax in fig.axes for ln in ax.lines if ln.get_gid() == "onset_interval:structure_onset:baseline"]
    assert len(bars) == 3  # on every panel that marks the structure onset
    for bar in bars:
        assert list(bar.get_xdata()) == [step - 50, step + 25] and bar.get_marker() == "|"
    assert not any(x.startswith("onset_interval:capabilities_onset") for x in gids(fig))


def test_fig1_draws_the_complexity_panel_with_its_peak(full):
    """Given a complexity table, figure 1 gets a fourth panel: the mean ID over the layers per run,
    its band, the onsets as on the other panels, and the complexity peak and fall."""
    tables, _ = full
    rows = []
    for (run, seed), loss in tables["loss"].groupby(["run", "seed"]):
        steps = loss["step"].to_numpy(float)
        bump = 10 + 6 * np.exp(-0.5 * ((steps - 400) / 120) ** 2) + 0.02 * seed
        for layer, value in (("1", bump - 1), ("2", bump + 1), ("mean", bump)):
            rows.append(pd.DataFrame({"run": run, "seed": seed, "step": steps, "layer": layer, "intrinsic_dim": value}))
    table = pd.concat(rows, ignore_index=True)
    table = table.assign(id_low=table["intrinsic_dim"] - 0.2, id_high=table["intrinsic_dim"] + 0.2)
    with_complexity = {**tables, "complexity": table}
    ph = phases.detect(
        tables["runs"],
        tables["loss"],
        tables["uas"],
        tables["blimp"],
        curves.PhaseOptions(loss_min_step=100),
        complexity=table,
    )
    fig = draw("fig1_training", with_complexity, ph)
    g = gids(fig)
    assert len(fig.axes) == 4 and fig.axes[3].get_ylabel() == "intrinsic dimension"
    assert "curve:baseline:complexity" in g and "band:baseline:complexity" in g
    assert g.count("onset:structure_onset:baseline") == 4  # on all four panels
    assert "onset:complexity_peak:baseline" in g and "onset:complexity_fall:baseline" in g
    (line,) = [ln for ln in fig.axes[3].lines if ln.get_gid() == "curve:baseline:complexity"]
    assert max(line.get_ydata()) == pytest.approx(16.02, abs=0.05)  # the mean over seeds at the peak
    (marker,) = [ln for ln in fig.axes[3].lines if ln.get_gid() == "onset:complexity_peak:baseline"]
    assert marker.get_xdata()[0] == 400
    # without the table: three panels and a note
    assert len(draw("fig1_training", tables, phases_of(tables)).axes) == 3
    assert "no complexity table" in note_text(draw("fig1_training", tables, phases_of(tables)))
