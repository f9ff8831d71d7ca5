"""The local learning coefficient (sasbert.measure.llc): the SGLD estimate on a quadratic loss,
where the answer is known in closed form (a regular model of d parameters has LLC d/2); a chain
that does not move gives 0 and the init loss of a plain loop; the CLI over a series with its
cache; bad options named; the workflow plans its jobs only when it is switched on."""

import logging

import numpy as np
import pandas as pd
import pytest

from conftest import (
    EWT_DEV,
    REPO,
    job_counts,
    link_workflow,
    refused_measure_options,
    score_twice,
    snakemake_ok,
    tiny_bert_config,
)
from sasbert import cli
from sasbert.measure import context, llc
from sasbert.options import defaults

N_SENTENCES = 24


def save_model(folder, tokenizer, seed):
    import torch
    from transformers import BertForMaskedLM

    torch.manual_seed(seed)
    model = BertForMaskedLM(tiny_bert_config(tokenizer.vocab_size)).eval()
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return model


def options(**given):
    return {**defaults("llc"), "max_sentences": N_SENTENCES, "num_chains": 2, "num_draws": 6, **given}


@pytest.mark.parametrize("localization", [0.0, 10.0])
def test_a_quadratic_loss_gives_the_closed_form_llc(localization):
    """L(w) = 1/2 mean((x.w - x.w*)^2), so L - L(w*) = 1/2 (w - w*)' H (w - w*), H = X'X / N.
    SGLD samples exp(-nβ L - γ/2 |w - w*|²); per eigendirection of H (eigenvalue h, a = nβ h + γ)
    its discrete steps (step ε) have variance 1 / (a (1 - ε a / 4)), so nβ E[L - L(w*)] =
    1/2 Σ nβ h / (a (1 - ε a / 4)): d/2 = 2.5 for γ = 0 and ε → 0, the learning coefficient of
    a regular model of d = 5 parameters."""
    import torch

    d, n, nbeta = 5, 200, 50.0
    rng = np.random.default_rng(0)
    basis, _ = np.linalg.qr(rng.normal(size=(d, d)))
    h = np.array([1.0, 1.5, 2.0, 2.5, 3.0])
    x = rng.normal(size=(n, d))
    x = x @ np.linalg.inv(np.linalg.cholesky(x.T @ x / n)).T  # whitened: X'X / N = I
    x = x @ basis @ np.diag(np.sqrt(h)) @ basis.T  # X'X / N = B diag(h) B'
    model = torch.nn.Linear(d, 1, bias=False, dtype=torch.float64)
    with torch.no_grad():
        model.weight.copy_(torch.from_numpy(rng.normal(size=(1, d))))
    inputs = torch.from_numpy(x)
    targets = model(inputs).detach()

    def loss_of(m, batch):
        return 0.5 * ((m(batch[0]) - batch[1]) ** 2).mean()

    a_max = nbeta * h.max() + localization
    lr = 0.1 / a_max
    estimate = llc.local_learning_coefficient(
        model,
        [(inputs, targets)],
        loss_of,
        lr=lr,
        nbeta=nbeta,
        localization=localization,
        num_chains=4,
        num_burnin_steps=1000,
        num_draws=10000,
        seed=0,
    )
    a = nbeta * h + localization
    expected = 0.5 * np.sum(nbeta * h / (a * (1 - lr * a / 4)))
    assert estimate["init_loss"] == pytest.approx(0.0, abs=1e-20)
    assert estimate["llc"] == pytest.approx(expected, rel=0.08)
    assert estimate["llc_low"] < estimate["llc"] < estimate["llc_high"]
    if localization == 0:
        assert expected == pytest.approx(d / 2, rel=0.03)
    assert torch.equal(model(inputs).detach(), targets)  # the model itself is not moved


def test_the_interval_over_chains_is_the_t_interval_of_the_mean():
    # chains 1, 2, 3, 4: mean 2.5, sd sqrt(5/3) = 1.29099, t(0.975, 3) = 3.18245 (tables),
    # half-width 3.18245 x 1.29099 / 2 = 2.05426
    summary = llc.over_chains([1.0, 2.0, 3.0, 4.0])
    assert summary["llc"] == 2.5 and summary["llc_std"] == pytest.approx(1.290994, abs=1e-6)
    assert summary["llc_low"] == pytest.approx(0.44574, abs=1e-4)
    assert summary["llc_high"] == pytest.approx(4.55426, abs=1e-4)
    one = llc.over_chains([3.0])
    assert one["llc"] == 3.0 and all(np.isnan(one[key]) for key in ("llc_std", "llc_low", "llc_high"))


def test_a_chain_that_does_not_move_gives_zero_and_the_plain_init_loss(tmp_path, bert_tokenizer):
    """With ε = 1e-12 the weights stay at w*: every draw is a batch's loss at w*, less that batch's
    loss at w*, so the LLC is 0, also when the draws cover the batches unevenly (4 draws of 3
    batches: one batch twice, whose mean loss is not the init loss)."""
    import torch

    model = save_model(tmp_path / "step-0", bert_tokenizer, seed=0)
    sentences = context.read_sentences(EWT_DEV, N_SENTENCES)
    examples, kept = context.masked_sentences(bert_tokenizer, sentences, 0.15, 0, 128)
    batches = llc.mlm_batches(examples, 8, "cpu")
    plain = []
    for ids, mask, labels in batches:
        with torch.no_grad():
            logits = model(input_ids=ids, attention_mask=mask).logits
        selected = labels != -100
        plain.append(torch.nn.functional.cross_entropy(logits[selected], labels[selected]).item())
    estimate = llc.local_learning_coefficient(
        model,
        batches,
        llc.mlm_loss,
        lr=1e-12,
        nbeta=llc.default_nbeta(8),
        localization=100.0,
        num_chains=2,
        num_burnin_steps=0,
        num_draws=len(batches) + 1,
        seed=0,
    )
    assert len(batches) == 3 and kept == N_SENTENCES
    assert np.ptp(plain) > 0.01  # unpaired, the batch drawn twice would move the estimate
    assert estimate["init_loss"] == pytest.approx(np.mean(plain), rel=1e-6)
    assert estimate["per_chain"] == pytest.approx([0.0, 0.0], abs=1e-4)
    assert llc.default_nbeta(8) == pytest.approx(8 / np.log(8))


def test_the_cli_scores_a_series_and_keeps_what_it_scored(tmp_path, bert_tokenizer, caplog):
    for step in (0, 10):
        save_model(tmp_path / "run" / f"step-{step}", bert_tokenizer, seed=step)
    out, cache = tmp_path / "summary.parquet", tmp_path / "by_step"
    args = ["llc", "score", "--checkpoint", str(tmp_path / "run" / "step-*"), "--treebank", str(EWT_DEV)]
    args += ["--out-summary", str(out), "--cache-dir", str(cache), "--max-sentences", str(N_SENTENCES)]
    args += ["--num-chains", "2", "--num-draws", "6", "--batch-size", "8", "--every-steps", "null"]
    assert score_twice(args).count("kept from") == 2
    table = pd.read_parquet(out)
    assert table.columns.tolist() == llc.COLUMNS and table["step"].tolist() == [0, 10]
    assert (table["n_chains"] == 2).all() and (table["n_sentences"] == N_SENTENCES).all()
    assert table["nbeta"].tolist() == pytest.approx([8 / np.log(8)] * 2)
    assert (table["llc_low"] <= table["llc"]).all() and (table["llc"] <= table["llc_high"]).all()
    # the job's estimate is the function's on the same masks, batches and seeds
    model = save_model(tmp_path / "again", bert_tokenizer, seed=10)
    examples, _ = context.masked_sentences(bert_tokenizer, context.read_sentences(EWT_DEV, N_SENTENCES), 0.15, 0, 128)
    again = llc.local_learning_coefficient(
        model,
        llc.mlm_batches(examples, 8, "cpu"),
        llc.mlm_loss,
        lr=1e-4,
        nbeta=8 / np.log(8),
        localization=100.0,
        num_chains=2,
        num_burnin_steps=0,
        num_draws=6,
        seed=0,
    )
    assert table["llc"].iloc[1] == pytest.approx(again["llc"], rel=1e-5)
    assert table["init_loss"].iloc[1] == pytest.approx(again["init_loss"], rel=1e-6)

    # another sampler setting scores again
    caplog.set_level(logging.INFO)
    assert cli.main([*args, "--localization", "300"]) == 0
    assert "kept from" not in caplog.text and caplog.text.count("scoring again") == 2


def test_a_causal_checkpoint_gets_no_rows(tmp_path):
    folder = tmp_path / "gpt"
    folder.mkdir()
    (folder / "config.json").write_text('{"architectures": ["GPT2LMHeadModel"]}')
    table = llc.score(folder, 3, [("a",)], options(), "cpu")["summary"]
    assert table.empty and table.columns.tolist() == llc.COLUMNS and table["step"].dtype == "int64"


@pytest.mark.parametrize(
    "flags, named",
    [
        (["--lr", "0"], "--lr"),
        (["--num-chains", "0"], "--num-chains"),
        (["--nbeta", "-1"], "--nbeta"),
        (["--batch-size", "1"], "--nbeta"),
        (["--options", '{"chains": 2}'], "'chains' was unexpected"),
    ],
)
def test_a_bad_option_is_named(tmp_path, bert_tokenizer, capsys, flags, named):
    save_model(tmp_path / "step-0", bert_tokenizer, seed=0)
    assert named in refused_measure_options(capsys, "llc", tmp_path / "step-0", flags)


def test_the_workflow_plans_llc_jobs_only_when_switched_on(tmp_path):
    """Off by default (tests/configs/e2e.yaml says nothing of it); on, every run x seed gets its
    jobs on the training text and the tables rule gathers results/tables/llc.parquet."""
    workdir = link_workflow(tmp_path / "work")
    e2e = str(REPO / "tests" / "configs" / "e2e.yaml")
    off = snakemake_ok("-n", "-p", "--cores", "1", "--configfile", e2e, cwd=workdir)
    assert not {"llc", "llc_part"} & set(job_counts(off)) and "results/tables/llc.parquet" not in off
    (workdir / "on.yaml").write_text("llc: {enabled: true}\n")
    on = snakemake_ok("-n", "-p", "--cores", "1", "--configfile", e2e, "on.yaml", cwd=workdir)
    jobs = job_counts(on)
    assert jobs["llc"] == jobs["probe"] == 3 and jobs["llc_part"] == jobs["probe_part"] == 1
    assert "sasbert llc score" in on and "--treebank resources/ud/UD_English-EWT/en_ewt-ud-train" in on
    assert "--llc-summary results/llc/baseline/seed0/summary.parquet" in on
    assert "results/tables/llc.parquet" in on
