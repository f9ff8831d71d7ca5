"""The complexity measure (sasbert.measure.complexity): TwoNN's intrinsic dimension recovers a known
dimension, agrees with an independent hand computation, ignores duplicates; the real CLI scores a
series of two checkpoints with its per-checkpoint cache; a bad option is named; the Snakefile
plans its jobs."""

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from conftest import EWT_DEV, REPO, job_counts, link_workflow, plan_optional_measure
from sasbert.measure import complexity
from sasbert.options import defaults

OPTIONS = {**defaults("complexity"), "bootstrap_samples": 50}


def embedded_gaussian(n, dim, ambient=64, seed=0):
    """n points of a dim-dimensional standard Gaussian, linearly embedded in ``ambient`` dimensions."""
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, dim)) @ rng.normal(size=(dim, ambient))


def test_twonn_recovers_the_dimension_of_a_linearly_embedded_gaussian():
    # layers: full-rank 20-d noise, a 5-d and a 2-d Gaussian in 64 dimensions; 100 "sentences" of 20
    n = 2000
    layers = [embedded_gaussian(n, 20, seed=1), embedded_gaussian(n, 5, seed=2), embedded_gaussian(n, 2, seed=3)]
    keys = [np.arange(n)[:, None]] * 3
    sentence = np.repeat(np.arange(100), 20)
    rows = {row["layer"]: row for row in complexity.intrinsic_dimensions(layers, keys, sentence, OPTIONS)}
    assert list(rows) == ["embeddings", "1", "2", "mean"]
    # TwoNN's estimate of d from N points has a standard error of about d / sqrt(N) (0.11 for d = 5,
    # N = 2,000; the linear fit's about the same); 0.5 is over 4 of them, far below the distance to 4
    # or 6. The 20-d layer is underestimated (TwoNN's known bias in higher dimensions at this N).
    assert rows["1"]["intrinsic_dim"] == pytest.approx(5, abs=0.5)
    assert rows["2"]["intrinsic_dim"] == pytest.approx(2, abs=0.25)
    assert 14 < rows["embeddings"]["intrinsic_dim"] < 21
    for row in rows.values():
        assert row["id_low"] < row["intrinsic_dim"] < row["id_high"]
    assert rows["1"]["id_low"] < 5 < rows["1"]["id_high"]
    assert rows["1"]["id_high"] - rows["1"]["id_low"] < 1.0
    # the curve's row: the mean over the layers after the embeddings
    assert rows["mean"]["intrinsic_dim"] == pytest.approx((rows["1"]["intrinsic_dim"] + rows["2"]["intrinsic_dim"]) / 2)
    assert rows["mean"]["id_low"] < rows["mean"]["intrinsic_dim"] < rows["mean"]["id_high"]
    assert rows["1"]["n_points"] == n


def hand_ratios(points):
    """mu = r2 / r1 of every point by brute force (numpy only, not the library's neighbour search)."""
    squared = (points**2).sum(1)
    d2 = squared[:, None] + squared[None, :] - 2 * points @ points.T
    np.fill_diagonal(d2, np.inf)
    nearest = np.sqrt(np.maximum(np.sort(d2, axis=1)[:, :2], 0))
    return nearest[:, 1] / nearest[:, 0]


@pytest.mark.filterwarnings("ignore:divide by zero:RuntimeWarning")  # skdim's unused linear fit at discard 0
def test_the_library_agrees_with_an_independent_hand_computation():
    points = embedded_gaussian(1500, 5, seed=7)
    mu = hand_ratios(points)
    r1, r2 = complexity.neighbour_distances(points)
    np.testing.assert_allclose(r2 / r1, mu, rtol=1e-9)
    # the maximum-likelihood estimate (Facco et al. / Denti et al.): d = (N - 1) / sum(log mu)
    mle = (len(mu) - 1) / np.log(mu).sum()
    assert complexity.twonn(r1, r2, discard_fraction=0.0, method="mle") == pytest.approx(mle, rel=1e-9)
    assert mle == pytest.approx(5, abs=0.5)
    # Facco et al.'s fit: the largest 10% of the ratios left out, -log(1 - F) = d log(mu) through the
    # origin, F(mu_(i)) = i / N: least squares slope sum(xy) / sum(x^2)
    n = len(mu)
    kept = np.sort(mu)[: int(n * 0.9)]
    x, y = np.log(kept), -np.log(1 - np.arange(1, len(kept) + 1) / n)
    assert complexity.twonn(r1, r2, discard_fraction=0.1) == pytest.approx((x @ y) / (x @ x), rel=1e-9)


def test_duplicate_points_are_removed_before_the_estimate():
    points = embedded_gaussian(800, 4, seed=3)
    sentence = np.repeat(np.arange(40), 20)
    once = complexity.intrinsic_dimensions([points, points], [np.arange(800)[:, None]] * 2, sentence, OPTIONS)
    # the first 200 points again (a second copy of 10 sentences), with their own input keys, and
    # 100 copies that repeat an input key but differ by floating-point noise (the same piece in the
    # same context, computed in another batch)
    rng = np.random.default_rng(0)
    noisy = points[:100] + rng.normal(scale=1e-7, size=(100, points.shape[1]))
    doubled = np.vstack([points, points[:200], noisy])
    keys = np.concatenate([np.arange(800), 800 + np.arange(200), np.arange(100)])[:, None]
    twice = complexity.intrinsic_dimensions(
        [doubled, doubled], [keys] * 2, np.concatenate([sentence, 40 + sentence[:200], sentence[:100]]), OPTIONS
    )
    assert twice[1]["n_points"] == once[1]["n_points"] == 800
    assert twice[1]["intrinsic_dim"] == pytest.approx(once[1]["intrinsic_dim"], rel=1e-12)


@pytest.fixture(scope="module")
def tiny_series(tmp_path_factory, bert_tokenizer):
    import torch
    from transformers import BertForMaskedLM

    from conftest import tiny_bert_config

    folder = tmp_path_factory.mktemp("complexity")
    for step in (0, 10):
        torch.manual_seed(step)
        model = BertForMaskedLM(tiny_bert_config(bert_tokenizer.vocab_size))
        model.save_pretrained(folder / "run" / f"step-{step}")
        bert_tokenizer.save_pretrained(folder / "run" / f"step-{step}")
    return folder


def sasbert(*args, cwd=None):
    env = {"PYTHONPATH": str(REPO / "src"), "PATH": "", "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "sasbert", *args], capture_output=True, text=True, env=env, cwd=cwd)


def test_the_cli_scores_a_series_and_keeps_each_checkpoint(tiny_series, bert_tokenizer):
    import torch
    from transformers import BertForMaskedLM

    out, cache = tiny_series / "summary.parquet", tiny_series / "by_step"
    args = ["complexity", "score", "--checkpoint", str(tiny_series / "run" / "step-*"), "--treebank", str(EWT_DEV)]
    args += ["--out-summary", str(out), "--cache-dir", str(cache), "--max-sentences", "40", "--max-tokens", "null"]
    args += ["--bootstrap-samples", "30", "--threads", "1"]
    for _attempt in range(2):
        done = sasbert(*args)
        assert done.returncode == 0, done.stderr[-2000:]
    assert done.stderr.count("kept from") == 2
    table = pd.read_parquet(out)
    assert list(table.columns) == complexity.SUMMARY_COLUMNS
    assert table["step"].tolist() == [0] * 4 + [10] * 4
    assert table["layer"].tolist() == ["embeddings", "1", "2", "mean"] * 2
    assert (table["n_sentences"] == 40).all()

    # the embeddings row, recomputed here: the embedding output of every non-special piece of the
    # 40 sentences, duplicates dropped, fitted by the library directly
    from skdim.id import TwoNN

    from sasbert.measure.probe.sentences import read_treebank

    words = [" ".join(s.words) for s in read_treebank(EWT_DEV, 40)]
    encoded = bert_tokenizer(words, return_special_tokens_mask=True)
    n_pieces = sum(len(m) - sum(m) for m in encoded["special_tokens_mask"])
    model = BertForMaskedLM.from_pretrained(tiny_series / "run" / "step-10").eval()
    points = []
    with torch.inference_mode():
        for ids, special in zip(encoded["input_ids"], encoded["special_tokens_mask"]):
            states = model.bert(torch.tensor([ids]), output_hidden_states=True).hidden_states
            points.append(states[0][0][~torch.tensor(special, dtype=torch.bool)].numpy())
    unique = np.unique(np.concatenate(points).astype(np.float64), axis=0)
    row = table[(table["step"] == 10) & (table["layer"] == "embeddings")].iloc[0]
    assert row["n_tokens"] == n_pieces and row["n_points"] == len(unique)
    assert row["intrinsic_dim"] == pytest.approx(TwoNN().fit(unique).dimension_, rel=1e-6)
    mean = table[(table["step"] == 10) & (table["layer"] == "mean")].iloc[0]
    layers = table[(table["step"] == 10) & table["layer"].isin(["1", "2"])]["intrinsic_dim"]
    assert mean["intrinsic_dim"] == pytest.approx(layers.mean())


def test_a_layer_output_is_keyed_on_what_it_reads_the_prefix_for_a_causal_lm():
    """A bidirectional layer's output at a piece reads the whole sentence, a causal one's only the
    pieces up to it: two sentences that begin alike give a causal LM the same points there (up to
    floating point, so only the key removes them)."""
    import torch
    from transformers import GPT2Config, GPT2Model

    encoded = [([101, 5, 6, 7, 102], None), ([101, 5, 6, 9, 102], None), ([101, 5, 6, 7, 102], None)]
    sentence = np.array([0, 0, 0, 1, 1, 1, 2])
    position = np.array([1, 2, 3, 1, 2, 3, 3])
    both = complexity.output_classes(encoded, sentence, position, causal=False)
    assert both[0] != both[3] and both[1] != both[4] and both[2] != both[5] and both[2] == both[6]
    causal = complexity.output_classes(encoded, sentence, position, causal=True)
    assert causal[0] == causal[3] and causal[1] == causal[4] and causal[2] != causal[5] and causal[2] == causal[6]

    # the premise, on a real causal LM: equal prefixes, equal outputs, differing after them
    torch.manual_seed(0)
    gpt2 = GPT2Model(GPT2Config(vocab_size=200, n_embd=32, n_layer=2, n_head=2, n_positions=16)).eval()
    with torch.no_grad():
        states = gpt2(torch.tensor([[101, 5, 6, 7], [101, 5, 6, 9]])).last_hidden_state
    assert torch.allclose(states[0, :3], states[1, :3], atol=1e-6)
    assert not torch.allclose(states[0, 3], states[1, 3], atol=1e-3)


def test_n_tokens_counts_the_pieces_drawn(tiny_series):
    sentences = complexity.prepare({**OPTIONS, "max_sentences": 40}, {"treebank": EWT_DEV}, "cpu")[0]
    options = {**OPTIONS, "max_sentences": 40, "max_tokens": 60, "bootstrap_samples": 5}
    table = complexity.score(tiny_series / "run" / "step-0", 0, sentences, options, "cpu")["summary"]
    assert (table["n_tokens"] == 60).all() and (table["n_points"] <= 60).all()
    assert (table["n_sentences"] <= 40).all()


def test_a_bad_option_is_named(tiny_series):
    args = ["complexity", "score", "--checkpoint", str(tiny_series / "run" / "step-0"), "--treebank", str(EWT_DEV)]
    done = sasbert(*args, "--out-summary", str(tiny_series / "bad.parquet"), "--discard-fraction", "1.5")
    assert done.returncode != 0
    assert "--discard-fraction must be in [0, 1) (got 1.5)" in done.stderr.strip().splitlines()[-1]
    done = sasbert(*args, "--out-summary", str(tiny_series / "bad.parquet"), "--options", '{"max_tokens": 3}')
    assert done.returncode != 0 and "complexity.max_tokens" in done.stderr.strip().splitlines()[-1]


def test_the_snakefile_plans_complexity_jobs_and_gathers_their_table(tmp_path):
    """Switched on; off (tests/configs/e2e.yaml), phases and figure 1 go without it."""
    workdir = link_workflow(tmp_path / "work")
    planned = plan_optional_measure(workdir, "complexity", "fig1_training")
    jobs = job_counts(planned)
    assert jobs["complexity"] == 3 and jobs["complexity_part"] == 1
    assert "sasbert complexity score" in planned and "--treebank resources/ud/UD_English-EWT/" in planned
    assert "--complexity-summary results/complexity/baseline/seed0/summary.parquet" in planned
    assert "--complexity results/tables/complexity.parquet" in planned
