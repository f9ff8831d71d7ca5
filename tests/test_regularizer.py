"""The SAS regularizer against a brute-force reference that follows docs/method.md, "The SAS
regularizer", word for word."""

import itertools

import pytest
import torch

from sasbert.options import defaults
from sasbert.schedules import lambda_at
from sasbert.train.regularizer import sas_regularizer


def brute_force(attn, heads, type, direction, reduction):
    """attn: stacked (L, B, H, S, S). Loops over every labelled position, as docs/method.md writes R."""
    L, B, H, S, _ = attn.shape
    M = attn.amax(dim=(0, 2)) if type == "max" else attn.sum(dim=(0, 2))  # (B, S, S)
    total, n_arcs = 0.0, 0
    for b in range(B):
        for t in range(S):
            p = int(heads[b, t])
            if p < 0:
                continue
            n_arcs += 1
            if direction in ("both", "dependent_to_parent"):
                total += float(M[b, t, p])
            if direction in ("both", "parent_to_dependent"):
                total += float(M[b, p, t])
    return total / n_arcs if reduction == "mean" else total


def random_attention(L=3, B=2, H=4, S=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.softmax(torch.randn(L, B, H, S, S, generator=g) * 3, dim=-1)


# -1 = unlabelled ([CLS], second pieces, root, arcs leaving the block, padding at the end of row 1)
HEADS = torch.tensor([[-1, 2, 3, -1, 3, -1], [-1, 4, -1, 1, -1, -1]])


@pytest.mark.parametrize(
    "type, direction, reduction",
    list(
        itertools.product(["max", "uniform"], ["both", "dependent_to_parent", "parent_to_dependent"], ["sum", "mean"])
    ),
)
def test_matches_brute_force(type, direction, reduction):
    attn = random_attention()
    got = sas_regularizer(list(attn), HEADS, type, direction, reduction)
    assert got.item() == pytest.approx(brute_force(attn, HEADS, type, direction, reduction), rel=1e-6)


def test_hand_computed_value():
    # One layer, one head, 3 positions; one arc 1 -> 2.
    attn = torch.zeros(1, 1, 1, 3, 3)
    attn[0, 0, 0, 1, 2] = 0.7  # dependent attends to parent
    attn[0, 0, 0, 2, 1] = 0.2  # parent attends to dependent
    heads = torch.tensor([[-1, 2, -1]])
    assert sas_regularizer(list(attn), heads, reduction="sum").item() == pytest.approx(0.9)
    assert sas_regularizer(list(attn), heads, direction="dependent_to_parent").item() == pytest.approx(0.7)
    # max takes the strongest head anywhere: a second layer with 0.8 wins over 0.7
    attn2 = torch.cat([attn, attn], dim=0)
    attn2[1, 0, 0, 1, 2] = 0.8
    assert sas_regularizer(list(attn2), heads, direction="dependent_to_parent").item() == pytest.approx(0.8)
    assert sas_regularizer(list(attn2), heads, type="uniform", direction="dependent_to_parent").item() == pytest.approx(
        1.5
    )


def test_no_arcs_gives_zero():
    assert sas_regularizer(list(random_attention()), torch.full((2, 6), -1)).item() == 0.0


def test_gradient_flows_only_through_arcs():
    attn = random_attention(L=2, B=1, H=2, S=4).requires_grad_(True)
    heads = torch.tensor([[-1, 2, -1, -1]])
    sas_regularizer(list(attn), heads, reduction="sum").backward()
    nonzero = torch.nonzero(attn.grad)
    assert {(int(q), int(k)) for q, k in nonzero[:, 3:]} <= {(1, 2), (2, 1)}


def test_lambda_schedules():
    assert lambda_at(0.5, 10) == 0.5
    stages = [{"value": 1.0, "until_step": 500}, {"value": 0.0}]
    assert [lambda_at(stages, s) for s in (0, 499, 500, 10_000)] == [1.0, 1.0, 0.0, 0.0]
    assert lambda_at([{"value": 2.0, "until_step": 3}], 3) == 0.0


def tiny_bert_batch(seed=0, B=3, S=16, vocab=120):
    from sasbert.train.model import build_model

    model = build_model(
        {"num_hidden_layers": 2, "num_attention_heads": 4, "hidden_size": 32, "intermediate_size": 64},
        vocab,
        seed=seed,
        max_position=64,
    )
    model.train()  # attention dropout on: R is taken after it, as the authors' code did
    model.sas_options = defaults("train", "regularizer")
    g = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(5, vocab, (B, S), generator=g)
    labels = torch.full_like(input_ids, -100)
    labels[:, 3::4] = input_ids[:, 3::4]
    heads = torch.randint(1, S, (B, S), generator=g)
    heads[heads == torch.arange(S)] = -1  # no self-arcs
    heads[torch.rand(B, S, generator=g) < 0.3] = -1
    heads[:, 0] = -1
    return model, {
        "input_ids": input_ids,
        "attention_mask": torch.ones_like(input_ids),
        "labels": labels,
        "heads": heads,
    }


@pytest.mark.parametrize(
    "type, direction",
    list(itertools.product(["max", "uniform"], ["both", "dependent_to_parent", "parent_to_dependent"])),
)
def test_training_taps_give_the_reference_regularizer_and_gradients(type, direction):
    """The in-model arc taps (what training uses) against sas_regularizer on the attentions BERT
    returns: the same R and gradients, dropout included (same RNG stream). Gradients agree to
    float rounding: where these random (non-tree) heads make an arc and its reverse both arcs,
    the two paths add the same terms in another order."""
    import torch.nn.functional as F

    model, batch = tiny_bert_batch()
    model.sas_options = {"type": type, "direction": direction, "reduction": "sum", "attention": "post_dropout"}
    results = []
    for use_taps in (False, True):
        model.zero_grad(set_to_none=True)
        torch.manual_seed(7)
        if use_taps:
            out = model(**batch, compute_sas=True)
            loss, sas = out["mlm_sum"] + 3.0 * out["sas"], out["sas"]
        else:
            hidden = model.bert(batch["input_ids"], attention_mask=batch["attention_mask"], output_attentions=True)
            masked = batch["labels"] != -100
            mlm = F.cross_entropy(
                model.cls(hidden.last_hidden_state[masked]).float(), batch["labels"][masked], reduction="sum"
            )
            sas = sas_regularizer(hidden.attentions, batch["heads"], type, direction, "sum")
            loss = mlm + 3.0 * sas
        loss.backward()
        results.append((sas.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}))
    (sas_ref, grads_ref), (sas_tap, grads_tap) = results
    assert sas_ref.item() > 0 and torch.equal(sas_ref, sas_tap)
    assert grads_ref.keys() == grads_tap.keys()
    for name in grads_ref:
        torch.testing.assert_close(grads_tap[name], grads_ref[name], rtol=1e-5, atol=1e-7, msg=name)


@pytest.mark.parametrize("attention", ["post_dropout", "pre_dropout"])
def test_arc_readers_are_inert_without_the_regularizer(attention):
    """Installed but idle arc readers (eager taps, fused self-attention) change nothing: the model
    (train mode, dropout on) gives the same outputs, SDPA and eager, as an untouched copy, and
    checkpoints keep BERT's keys."""
    from sasbert.train.model import build_model

    model, batch = tiny_bert_batch()
    model.sas_options = {**model.sas_options, "attention": attention}
    fresh = build_model(
        {"num_hidden_layers": 2, "num_attention_heads": 4, "hidden_size": 32, "intermediate_size": 64},
        120,
        seed=0,
        max_position=64,
    )
    fresh.train()
    model(**batch, compute_sas=True)  # installs the readers, then leaves them idle
    readers = [
        layer.attention.self.dropout if attention == "post_dropout" else layer.attention.self
        for layer in model.bert.encoder.layer
    ]
    assert all(reader.arcs is None and reader.values is None for reader in readers)
    for output_attentions in (False, True):
        outputs = []
        for net in (fresh, model):
            torch.manual_seed(3)
            out = net.bert(
                batch["input_ids"], attention_mask=batch["attention_mask"], output_attentions=output_attentions
            )
            outputs.append((out.last_hidden_state, out.attentions or ()))
        assert torch.equal(outputs[0][0], outputs[1][0])
        assert all(torch.equal(a, b) for a, b in zip(outputs[0][1], outputs[1][1]))
    assert list(model.state_dict()) == list(fresh.state_dict())


def test_gradient_checkpointing_is_refused_with_the_regularizer():
    model, batch = tiny_bert_batch()
    model.gradient_checkpointing_enable()
    with pytest.raises(ValueError, match="gradient checkpointing"):
        model(**batch, compute_sas=True)


def fused_case(seed=0, padded=True, tied=False):
    """A tiny BERT with every dropout off and a batch whose second and third sequences end in
    padding (no arcs into it); ``tied``: in every layer heads 0 and 1 share their query and key
    weights, so ``max`` meets exact ties between heads."""
    from sasbert.train.model import build_model

    model = build_model(
        {
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "hidden_size": 32,
            "intermediate_size": 64,
            "hidden_dropout_prob": 0.0,
            "attention_probs_dropout_prob": 0.0,
        },
        120,
        seed=seed,
        max_position=64,
    )
    model.train()
    model.sas_options = defaults("train", "regularizer")
    _, batch = tiny_bert_batch(seed)
    if tied:
        with torch.no_grad():
            for layer in model.bert.encoder.layer:
                for linear in (layer.attention.self.query, layer.attention.self.key):
                    linear.weight[8:16] = linear.weight[0:8]
                    linear.bias[8:16] = linear.bias[0:8]
    if padded:
        for row, length in ((1, 11), (2, 6)):
            batch["attention_mask"][row, length:] = 0
            batch["heads"][row, length:] = -1
            batch["heads"][row][batch["heads"][row] >= length] = -1
    return model, batch


def loss_and_grads(model, batch, attention, type, direction, reduction):
    from sasbert.train.regularizer import sas_weight

    model.sas_options = {"type": type, "direction": direction, "reduction": reduction, "attention": attention}
    model.sas_options["reference_sequences"] = 64
    model.zero_grad(set_to_none=True)
    out = model(**batch, compute_sas=True)
    n_arcs = int((batch["heads"] >= 0).sum())
    sas = out["sas"] * sas_weight(model.sas_options, n_arcs, len(batch["heads"]))
    sas.backward()  # R's own gradient: the MLM loss's would swamp an error in it
    return sas.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize(
    "type, direction, reduction, tied",
    [
        (t, d, r, tied)
        for t in ("max", "uniform")
        for d in ("both", "dependent_to_parent", "parent_to_dependent")
        for r, tied in (("sum", False), ("mean", True))
    ],
)
def test_fused_path_gives_the_eager_regularizer_and_gradients(type, direction, reduction, tied):
    """pre_dropout (fused kernel, R from q, k and the rows' log-sum-exp) against post_dropout
    (eager attention, R read from the probabilities) with dropout off, where the two are the same
    quantity: R and every parameter's gradient to 1e-5 relative, in fp32, with padding, unlabelled
    positions (heads -1) and, in the tied cases, exact ties for ``max``."""
    model, batch = fused_case(tied=tied)
    sas_eager, grads_eager = loss_and_grads(model, batch, "post_dropout", type, direction, reduction)
    sas_fused, grads_fused = loss_and_grads(model, batch, "pre_dropout", type, direction, reduction)
    assert sas_eager.item() > 0
    torch.testing.assert_close(sas_fused, sas_eager, rtol=1e-5, atol=0)
    assert grads_eager.keys() == grads_fused.keys()
    # the key biases' gradients are 0 up to rounding (a shift of every key's score in a row
    # leaves its softmax unchanged): an absolute tolerance at 1e-5 of the largest gradient
    largest = max(grad.abs().max() for grad in grads_eager.values())
    for name in grads_eager:
        torch.testing.assert_close(grads_fused[name], grads_eager[name], rtol=1e-5, atol=1e-5 * largest, msg=name)


def test_ties_are_real_in_the_tied_case():
    """The tied case does meet ties: heads 0 and 1 give bitwise-equal arc attentions, in both paths."""
    from sasbert.train.regularizer import arc_indices, gather_arcs, install_fused_arcs

    model, batch = fused_case(tied=True)
    arcs = arc_indices(batch["heads"])
    eager = model.bert(batch["input_ids"], attention_mask=batch["attention_mask"], output_attentions=True)
    readers = install_fused_arcs(model.bert)
    for reader in readers:
        reader.arcs = arcs
    model.bert(batch["input_ids"], attention_mask=batch["attention_mask"])
    for layer, reader in enumerate(readers):
        for values in (*reader.values, *gather_arcs(eager.attentions[layer], arcs)):
            assert torch.equal(values[:, 0], values[:, 1])
            assert not torch.equal(values[:, 0], values[:, 2])


def test_fused_path_reads_the_attention_before_dropout():
    """With attention dropout on, the fused path's first-layer arc values are the softmax
    probabilities without dropout (the same weights in eval mode), while the eager path's are the
    dropped ones."""
    from sasbert.train.regularizer import arc_indices, gather_arcs, install_fused_arcs

    model, batch = fused_case(padded=False)
    arcs = arc_indices(batch["heads"])
    with torch.no_grad():
        model.eval()
        clean = model.bert(batch["input_ids"], attention_mask=batch["attention_mask"], output_attentions=True)
        clean_arcs = gather_arcs(clean.attentions[0], arcs)[0]
        model.train()
        for layer in model.bert.encoder.layer:
            layer.attention.self.dropout_prob = 0.5
            layer.attention.self.dropout.p = 0.5
        readers = install_fused_arcs(model.bert)
        for reader in readers:
            reader.arcs = arcs
        torch.manual_seed(0)
        model.bert(batch["input_ids"], attention_mask=batch["attention_mask"])
        fused_arcs = readers[0].values[0]
        for reader in readers:
            reader.arcs = None
        dropped = model.bert(batch["input_ids"], attention_mask=batch["attention_mask"], output_attentions=True)
    torch.testing.assert_close(fused_arcs, clean_arcs, rtol=1e-5, atol=1e-7)
    assert not torch.allclose(gather_arcs(dropped.attentions[0], arcs)[0], clean_arcs)


@pytest.mark.parametrize("attention", ["pre_dropout", "post_dropout"])
def test_what_a_regularized_step_keeps_for_the_backward_pass(attention):
    """The fused path keeps no (B, H, S, S) tensor for the backward pass; the eager path keeps one
    per layer (which shows the check sees them)."""
    model, batch = fused_case(padded=False)
    model.sas_options = {**model.sas_options, "attention": attention}
    batch_size, size = batch["input_ids"].shape
    n_heads = model.config.num_attention_heads
    saved = []

    def keep(tensor):
        saved.append(tuple(tensor.shape))
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(keep, lambda tensor: tensor):
        model(**batch, compute_sas=True)
    maps = [shape for shape in saved if len(shape) == 4 and shape[-2:] == (size, size) and shape[1] == n_heads]
    if attention == "pre_dropout":
        assert maps == []
    else:
        assert len(maps) >= model.config.num_hidden_layers


def test_chunked_backward_and_log_sum_exp_give_the_same_results(monkeypatch):
    """Chunks as small as one (batch, head) group in the backward and a few rows in the
    log-sum-exp beside SDPA give the unchunked R, gradients and log-sum-exp."""
    from sasbert.train import regularizer

    model, batch = fused_case()
    reference = loss_and_grads(model, batch, "pre_dropout", "uniform", "both", "mean")
    query, key = torch.randn(2, 3, 9, 4), torch.randn(2, 3, 9, 4)
    bias = torch.zeros(2, 1, 9, 9)
    bias[1, :, :, 6:] = torch.finfo(torch.float32).min
    expected = torch.logsumexp(query @ key.transpose(-1, -2) * 0.5 + bias, dim=-1)
    monkeypatch.setattr(regularizer, "ROW_CHUNK_ELEMENTS", 1)
    torch.testing.assert_close(regularizer.row_logsumexp(query, key, bias, 0.5), expected)
    chunked = loss_and_grads(model, batch, "pre_dropout", "uniform", "both", "mean")
    torch.testing.assert_close(chunked[0], reference[0], rtol=1e-6, atol=0)
    for name, grad in reference[1].items():
        torch.testing.assert_close(chunked[1][name], grad, rtol=1e-5, atol=1e-8, msg=name)
