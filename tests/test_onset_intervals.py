"""The UAS onsets' 95% intervals (sasbert.analysis.onset_intervals): a paired bootstrap over the
probe's sentences, the onsets detected again on every resample's curve. Checked for coverage on
simulated probes whose onset is known, and for the pairing the probe's resamples give."""

import numpy as np
import pandas as pd
import pytest

from sasbert.analysis.curves import PhaseOptions
from sasbert.analysis.onset_intervals import onset_intervals, step_interval
from sasbert.analysis.phases import uas_events
from sasbert.measure.probe.scoring import BOOTSTRAP_SEED, AttentionScorer

STEPS = np.arange(0, 2001, 100.0)
ONSET = 1000.0  # the simulated acquisition's midpoint


def expected_uas(ability: np.ndarray, words: np.ndarray) -> np.ndarray:
    """The expected UAS at every step of sentences of this ability and length: a logistic rise
    centred on ONSET, each sentence's accuracy shifted by its own ability (the same at every step,
    as a sentence's difficulty is: what makes the bootstrap paired)."""
    logit = -2.2 + 1.4 / (1 + np.exp(-(STEPS - ONSET) / 120.0))
    return 1 / (1 + np.exp(-(logit[None, :] + ability[:, None])))


def simulated_probe(rng, n_sentences=300):
    """Per-sentence correct and scored word counts at every checkpoint of one simulated run."""
    words = rng.integers(5, 30, n_sentences)
    ability = rng.normal(0, 0.6, n_sentences)
    correct = rng.binomial(words[:, None], expected_uas(ability, words))
    return words, correct


def resample_curves(words, correct, samples):
    """The probe's resampling (measure.probe.scoring.best_head_resamples) for one head."""
    rng = np.random.default_rng(BOOTSTRAP_SEED)
    weights = rng.multinomial(len(words), np.full(len(words), 1 / len(words)), size=samples)
    return (weights @ correct) / (weights @ words)[:, None]


def true_breakthrough():
    """The breakthrough of the population's expected curve (a million sentences: no noise)."""
    rng = np.random.default_rng(1)
    ability, words = rng.normal(0, 0.6, 1_000_000), rng.integers(5, 30, 1_000_000)
    curve = (expected_uas(ability, words) * words[:, None]).sum(0) / words.sum()
    (row,) = [r for r in uas_events(STEPS, curve, PhaseOptions()) if r["event"] == "breakthrough"]
    return row["step"]


def test_the_breakthrough_interval_covers_the_true_onset_about_95_percent_of_the_time():
    truth = true_breakthrough()
    assert truth == pytest.approx(ONSET, abs=100)
    rng = np.random.default_rng(0)
    covered, widths = [], []
    for _ in range(30):
        words, correct = simulated_probe(rng)
        resamples = resample_curves(words, correct, samples=200)
        table = pd.DataFrame(
            [
                {"run": "baseline", "seed": 0, "step": step, "treebank": "t", "sample": b, "uas": resamples[b, i]}
                for b in range(len(resamples))
                for i, step in enumerate(STEPS)
            ]
        )
        runs = pd.DataFrame({"run": ["baseline"], "parent": [None], "start_step": [0]})
        rows = onset_intervals(table, runs, PhaseOptions(), uas_events).set_index("event")
        low, high = rows.at["breakthrough", "step_low"], rows.at["breakthrough", "step_high"]
        covered.append(low <= truth <= high)
        widths.append(high - low)
    assert np.mean(covered) >= 0.85  # nominal 95%; 30 simulations
    assert np.median(widths) <= 400  # informative: a few checkpoints, not the whole run


def test_a_noiseless_curve_has_the_point_onset_as_its_interval():
    curve = 0.1 + 0.15 / (1 + np.exp(-(STEPS - 800) / 100))
    (point,) = [r["step"] for r in uas_events(STEPS, curve, PhaseOptions()) if r["event"] == "breakthrough"]
    table = pd.DataFrame(
        [
            {"run": "r", "seed": 0, "step": s, "treebank": "t", "sample": b, "uas": u}
            for b in range(5)
            for s, u in zip(STEPS, curve)
        ]
    )
    runs = pd.DataFrame({"run": ["r"], "parent": [None], "start_step": [0]})
    rows = onset_intervals(table, runs, PhaseOptions(), uas_events).set_index("event")
    assert (rows.at["breakthrough", "step_low"], rows.at["breakthrough", "step_high"]) == (point, point)
    assert rows.at["breakthrough", "detected_share"] == 1.0


def test_the_interval_is_made_of_observed_steps():
    assert step_interval(np.array([700.0] * 10 + [800.0] * 80 + [900.0] * 10)) == (700.0, 900.0)
    assert step_interval(np.array([800.0] * 98 + [700.0, 900.0])) == (800.0, 800.0)


def test_the_probes_resamples_are_the_same_sentences_at_every_checkpoint():
    """Two checkpoints scored on the same sentences get the same resamples: each is a multiset of
    sentences drawn from the fixed seed and their number, here recomputed by hand."""
    rng = np.random.default_rng(3)
    n, heads = 40, 2
    count = rng.integers(3, 20, n)
    resamples = []
    for _ in range(2):  # two checkpoints: other correct counts, the same sentences
        scorer = AttentionScorer(1, heads, ["all"])
        correct = np.stack([rng.binomial(count, 0.3) for _ in range(2 * heads)], 1)
        scorer.sentence_correct, scorer.sentence_count = [correct], [count]
        resamples.append((scorer.best_head_resamples(50), correct))
    weights = np.random.default_rng(BOOTSTRAP_SEED).multinomial(n, np.full(n, 1 / n), size=50)
    for got, correct in resamples:
        assert got == pytest.approx((weights @ correct).max(1) / (weights @ count))
