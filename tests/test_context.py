"""The context measure (sasbert.measure.context): held-out MLM loss with attention restricted to
+-w pieces. The full context equals a plain loop over the same masked pieces; a window really
restricts attention (zero weights outside it, the model run on the cut context gives the same
output); the CLI over a series with its cache; bad options named; the workflow plans its jobs."""

import logging

import numpy as np
import pandas as pd
import pytest

from conftest import (
    EWT_DEV,
    job_counts,
    link_workflow,
    plan_optional_measure,
    refused_measure_options,
    score_twice,
    tiny_bert_config,
)
from sasbert import cli
from sasbert.data import treebank
from sasbert.measure import context
from sasbert.measure.probe.alignment import max_model_pieces
from sasbert.options import defaults

N_SENTENCES = 40


def save_model(folder, tokenizer, seed, **overrides):
    import torch
    from transformers import BertForMaskedLM

    torch.manual_seed(seed)
    model = BertForMaskedLM(tiny_bert_config(tokenizer.vocab_size, **overrides)).eval()
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return model


def options(**given):
    return {**defaults("context"), "max_sentences": N_SENTENCES, **given}


def plain_loop(model, tokenizer, mlm_probability, seed):
    """(mean loss, accuracy, masked pieces): each sentence alone, no attention mask, the logits of
    every position, the masked pieces drawn as the module docstring says."""
    import torch
    import torch.nn.functional as F

    total, correct, count = 0.0, 0, 0
    for index, tree in enumerate(treebank.read_sentences(EWT_DEV)):
        if index == N_SENTENCES:
            break
        encoded = tokenizer(" ".join(tree.words), return_special_tokens_mask=True)
        ids = list(encoded["input_ids"])
        draws = np.random.default_rng([seed, index]).random(len(ids))
        masked = [i for i in range(len(ids)) if draws[i] < mlm_probability and not encoded["special_tokens_mask"][i]]
        inputs = [tokenizer.mask_token_id if i in masked else piece for i, piece in enumerate(ids)]
        with torch.no_grad():
            logits = model(torch.tensor([inputs])).logits[0]
        for i in masked:
            total += F.cross_entropy(logits[i], torch.tensor(ids[i])).item()
            correct += int(logits[i].argmax().item() == ids[i])
            count += 1
    return total / count, correct / count, count


@pytest.mark.parametrize("attention", ["sdpa", "eager"])
def test_the_full_context_equals_a_plain_loop_over_the_same_masked_pieces(tmp_path, bert_tokenizer, attention):
    from sasbert.measure.checkpoints import load_masked_lm

    save_model(tmp_path / "step-5", bert_tokenizer, seed=3)
    model, tokenizer = load_masked_lm(tmp_path / "step-5", attn_implementation=attention)
    assert model.config._attn_implementation == attention
    sentences, _ = context.prepare(options(), {"treebank": EWT_DEV}, "cpu")
    examples, kept = context.masked_sentences(tokenizer, sentences, 0.15, 0, 128)
    (row,) = context.context_losses(model, examples, [context.FULL], 7, "cpu")
    loss, accuracy, count = plain_loop(model, tokenizer, 0.15, 0)
    assert kept == N_SENTENCES and row["n_masked"] == count > 50
    assert row["loss"] == pytest.approx(loss, rel=1e-6)
    assert row["accuracy"] == accuracy

    # through score(): the full context's row, and a window wider than every sentence is the full context
    table = context.score(tmp_path / "step-5", 5, sentences, options(windows=[512, None]), "cpu")["summary"]
    assert table.columns.tolist() == context.COLUMNS
    assert table["window"].tolist() == [512, context.FULL] and table["step"].eq(5).all()
    assert table["loss"].iloc[1] == pytest.approx(loss, rel=1e-6) and table["n_masked"].eq(count).all()
    assert table["loss"].iloc[0] == pytest.approx(table["loss"].iloc[1], rel=1e-6)
    assert table["gap"].tolist() == pytest.approx([0.0, 0.0], abs=1e-6)


def test_the_masks_are_the_same_at_every_window_and_do_not_depend_on_the_batch(tmp_path, bert_tokenizer):
    from sasbert.measure.checkpoints import load_masked_lm

    save_model(tmp_path / "m", bert_tokenizer, seed=1)
    model, tokenizer = load_masked_lm(tmp_path / "m")
    sentences = context.read_sentences(EWT_DEV, N_SENTENCES)
    examples, _ = context.masked_sentences(tokenizer, sentences, 0.15, 0, 128)
    again, _ = context.masked_sentences(tokenizer, sentences, 0.15, 0, 128)
    assert all((a[0] == b[0]).all() and (a[1] == b[1]).all() for a, b in zip(examples, again))
    other, _ = context.masked_sentences(tokenizer, sentences, 0.15, 1, 128)
    # another seed, other masks (whole lists compared: each leaves out the sentences it masks nothing in)
    assert [labels.tolist() for _, labels in examples] != [labels.tolist() for _, labels in other]
    one = context.context_losses(model, examples, [1, 3, context.FULL], 1, "cpu")
    many = context.context_losses(model, examples, [1, 3, context.FULL], 64, "cpu")
    for a, b in zip(one, many):
        assert a["window"] == b["window"] and a["n_masked"] == b["n_masked"]
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-6) and a["accuracy"] == b["accuracy"]
    # a short sentence limit leaves the longer sentences out
    _, kept = context.masked_sentences(tokenizer, sentences, 0.15, 0, 12)
    lengths = [len(tokenizer(" ".join(words))["input_ids"]) for words in sentences]
    assert kept == sum(n <= 12 for n in lengths) < N_SENTENCES


def test_the_window_mask_is_what_it_says():
    import torch

    mask = context.window_mask([5, 3], 5, 1, torch.float32)
    assert mask.shape == (2, 1, 5, 5)
    allowed = mask[:, 0] == 0
    for b, length in enumerate([5, 3]):
        for i in range(5):
            for j in range(5):
                assert bool(allowed[b, i, j]) == (abs(i - j) <= 1 and j < length)
    assert (mask[~(mask == 0)] == torch.finfo(torch.float32).min).all()
    full = context.window_mask([4], 4, context.FULL, torch.float32)
    assert (full == 0).all()


@pytest.mark.parametrize("attention", ["sdpa", "eager"])
def test_a_window_restricts_attention_to_it(bert_tokenizer, attention):
    """One layer: the output at position p with window w is the model's on pieces p-w..p+w alone
    (their own positions, no mask); eager's attention weights outside the window are 0."""
    import torch
    from transformers import BertForMaskedLM

    torch.manual_seed(0)
    config = tiny_bert_config(200, attn_implementation=attention)
    config.num_hidden_layers = 1
    model = BertForMaskedLM(config).eval()
    ids = torch.randint(5, 200, (1, 12))
    window = 2
    mask = context.window_mask([12], 12, window, torch.float32)
    with torch.no_grad():
        out = model(ids, attention_mask=mask, output_attentions=attention == "eager")
        for p in (0, 5, 11):
            lo, hi = max(0, p - window), min(12, p + window + 1)
            cut = model(ids[:, lo:hi], position_ids=torch.arange(lo, hi)[None]).logits[0, p - lo]
            assert torch.allclose(out.logits[0, p], cut, atol=1e-5)
        unrestricted = model(ids).logits
    assert not torch.allclose(out.logits[0, 5], unrestricted[0, 5], atol=1e-3)  # the window matters
    if attention == "eager":
        (weights,) = out.attentions
        i = torch.arange(12)
        outside = (i[:, None] - i[None, :]).abs() > window
        assert weights[0][:, outside].abs().max() == 0
        assert torch.allclose(weights[0].sum(-1), torch.ones(2, 12))


def tiny_masked_lm(model_type: str, attention: str, vocab_size: int = 200, max_position: int = 64, **config):
    """A 2-layer masked LM of ``model_type``, randomly initialised (``config``: more settings)."""
    import torch
    from transformers import AutoConfig, AutoModelForMaskedLM

    if model_type == "distilbert":  # DistilBERT's own names for the sizes
        sizes = {"dim": 32, "n_layers": 2, "n_heads": 2, "hidden_dim": 64}
    else:
        sizes = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64}
    settings = {"vocab_size": vocab_size, "max_position_embeddings": max_position, **sizes, **config}
    torch.manual_seed(0)
    model = AutoModelForMaskedLM.from_config(
        AutoConfig.for_model(model_type, **settings), attn_implementation=attention
    )
    assert model.config._attn_implementation == attention
    return model.eval()


@pytest.mark.parametrize("attention", ["sdpa", "eager"])
@pytest.mark.parametrize("model_type", context.WINDOW_MASK_MODELS)
def test_every_checked_model_type_takes_the_window_mask_in_every_layer(model_type, attention):
    """Two layers, w = 1: the output at piece 5 depends on pieces 3..7 only (2 x w away at most):
    it does not move when pieces 9.. change, and does when piece 6 changes; without the window it
    moves with pieces 9.. too."""
    import torch

    model = tiny_masked_lm(model_type, attention)
    ids = torch.randint(5, 200, (1, 20), generator=torch.Generator().manual_seed(1))
    far, near = ids.clone(), ids.clone()
    far[0, 9:] = torch.randint(5, 200, (11,), generator=torch.Generator().manual_seed(2))
    near[0, 6] = (ids[0, 6] + 1) % 195 + 5
    mask = context.window_mask([20], 20, 1, torch.float32)
    with torch.no_grad():
        windowed = {
            name: model(x, attention_mask=mask).logits[0, 5] for name, x in (("ids", ids), ("far", far), ("near", near))
        }
        whole, whole_far = model(ids).logits[0, 5], model(far).logits[0, 5]
    assert torch.allclose(windowed["ids"], windowed["far"], atol=1e-6)
    assert not torch.allclose(windowed["ids"], windowed["near"], atol=1e-4)
    assert not torch.allclose(whole, whole_far, atol=1e-4)


def test_an_unchecked_model_type_gets_no_rows_and_roberta_leaves_out_what_its_positions_cannot_hold(
    tmp_path, bert_tokenizer, caplog
):
    """ModernBERT keeps its own sliding window in its local layers: no rows, logged. RoBERTa's
    positions start after its padding id: with 24 position embeddings and padding id 1 it takes
    22 pieces, and a longer sentence is left out, not an index error."""
    ids = {"pad_token_id": 0, "cls_token_id": 101, "sep_token_id": 102, "bos_token_id": 101, "eos_token_id": 102}
    modernbert = tiny_masked_lm("modernbert", "sdpa", vocab_size=bert_tokenizer.vocab_size, max_position=128, **ids)
    modernbert.save_pretrained(tmp_path / "modernbert")
    bert_tokenizer.save_pretrained(tmp_path / "modernbert")
    sentences = context.read_sentences(EWT_DEV, N_SENTENCES)
    with caplog.at_level(logging.WARNING, logger="sasbert.measure.context"):
        table = context.score(tmp_path / "modernbert", 0, sentences, options(), "cpu")["summary"]
    assert table.empty and table.columns.tolist() == context.COLUMNS
    assert "'modernbert'" in caplog.text and "no rows" in caplog.text

    roberta = tiny_masked_lm("roberta", "sdpa", vocab_size=bert_tokenizer.vocab_size, max_position=24)
    assert roberta.config.pad_token_id == 1 and max_model_pieces(roberta) == 22
    assert max_model_pieces(tiny_masked_lm("bert", "sdpa", max_position=24)) == 24
    roberta.save_pretrained(tmp_path / "roberta")
    bert_tokenizer.save_pretrained(tmp_path / "roberta")
    table = context.score(tmp_path / "roberta", 0, sentences, options(windows=[2, None]), "cpu")["summary"]
    lengths = [len(bert_tokenizer(" ".join(words))["input_ids"]) for words in sentences]
    assert max(lengths) > 24 and table["n_sentences"].eq(sum(n <= 22 for n in lengths)).all()
    assert table["loss"].notna().all()


def test_the_cli_scores_a_series_and_keeps_what_it_scored(tmp_path, bert_tokenizer, caplog):
    models = {step: save_model(tmp_path / "run" / f"step-{step}", bert_tokenizer, seed=step) for step in (0, 10)}
    out, cache = tmp_path / "summary.parquet", tmp_path / "by_step"
    args = ["context", "score", "--checkpoint", str(tmp_path / "run" / "step-*"), "--treebank", str(EWT_DEV)]
    args += ["--out-summary", str(out), "--cache-dir", str(cache), "--max-sentences", "20"]
    args += ["--options", '{"windows": [1, 4, null], "every_steps": null}', "--threads", "1"]
    assert score_twice(args).count("kept from") == 2
    table = pd.read_parquet(out)
    assert table["step"].tolist() == [0] * 3 + [10] * 3 and table["window"].tolist() == [1, 4, -1] * 2
    assert table.groupby("step")["n_masked"].nunique().eq(1).all() and table["n_masked"].nunique() == 1
    sentences = context.read_sentences(EWT_DEV, 20)
    for step, model in models.items():
        examples, _ = context.masked_sentences(bert_tokenizer, sentences, 0.15, 0, 128)
        expected = context.context_losses(model, examples, [1, 4, context.FULL], 32, "cpu")
        got = table[table["step"] == step]
        assert got["loss"].tolist() == pytest.approx([r["loss"] for r in expected], rel=1e-6)
        assert got["gap"].tolist() == pytest.approx([r["loss"] - expected[-1]["loss"] for r in expected], rel=1e-6)

    # another option scores again
    caplog.set_level(logging.INFO)
    assert cli.main([*args, "--mlm-probability", "0.3"]) == 0
    assert "kept from" not in caplog.text and caplog.text.count("scoring again") == 2
    assert pd.read_parquet(out)["n_masked"].iloc[0] > table["n_masked"].iloc[0]


def test_a_causal_checkpoint_gets_no_rows(tmp_path):
    folder = tmp_path / "gpt"
    folder.mkdir()
    (folder / "config.json").write_text('{"architectures": ["GPT2LMHeadModel"]}')
    table = context.score(folder, 3, [("a",)], options(), "cpu")["summary"]
    assert table.empty and table.columns.tolist() == context.COLUMNS


@pytest.mark.parametrize(
    "flags, named",
    [
        (["--mlm-probability", "1.5"], "--mlm-probability"),
        (["--batch-size", "0"], "--batch-size"),
        (["--options", '{"windows": [-2, null]}'], "context.windows"),
        (["--options", '{"window": [1]}'], "'window' was unexpected"),
        (["--every-steps", "0"], "--every-steps"),
    ],
)
def test_a_bad_option_is_named(tmp_path, bert_tokenizer, capsys, flags, named):
    save_model(tmp_path / "step-0", bert_tokenizer, seed=0)
    assert named in refused_measure_options(capsys, "context", tmp_path / "step-0", flags)


def test_a_missing_treebank_is_named(tmp_path, bert_tokenizer, capsys):
    save_model(tmp_path / "step-0", bert_tokenizer, seed=0)
    args = ["context", "score", "--checkpoint", str(tmp_path / "step-0"), "--treebank", str(tmp_path / "no.conllu")]
    assert cli.main([*args, "--out-summary", str(tmp_path / "s.parquet")]) == 2
    assert "no.conllu: not found (--treebank)" in capsys.readouterr().err


def test_the_workflow_plans_context_jobs_and_gathers_their_table(tmp_path):
    """Switched on; off (tests/configs/e2e.yaml), figure 2 goes without its context panel."""
    workdir = link_workflow(tmp_path / "work")
    planned = plan_optional_measure(workdir, "context", "fig2_regularizers")
    jobs = job_counts(planned)
    assert jobs["context"] == jobs["probe"] == 3 and jobs["context_part"] == jobs["probe_part"] == 1
    assert "sasbert context score" in planned and "--treebank resources/ud/UD_English-EWT/en_ewt-ud-dev" in planned
    assert "--context-summary results/context/baseline/seed0/summary.parquet" in planned
