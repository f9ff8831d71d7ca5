"""The SAS regularizer against a brute-force reference that follows SPEC.md word for word."""

import itertools

import pytest
import torch

from sasbert.regularizer import sas_regularizer
from sasbert.schedules import lambda_at


def brute_force(attn, heads, type, direction, reduction):
    """attn: stacked (L, B, H, S, S). Loops over every labelled position, as SPEC.md writes R."""
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
    from sasbert.pretrain import build_model

    model = build_model(
        {"num_hidden_layers": 2, "num_attention_heads": 4, "hidden_size": 32, "intermediate_size": 64},
        vocab,
        seed=seed,
        max_position=64,
    )
    model.train()  # attention dropout on: R is taken after it, as the authors' code did
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
    model.sas_options = {"type": type, "direction": direction, "reduction": "sum"}
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
            sas = sas_regularizer(hidden.attentions, batch["heads"], **model.sas_options)
            loss = mlm + 3.0 * sas
        loss.backward()
        results.append((sas.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}))
    (sas_ref, grads_ref), (sas_tap, grads_tap) = results
    assert sas_ref.item() > 0 and torch.equal(sas_ref, sas_tap)
    assert grads_ref.keys() == grads_tap.keys()
    for name in grads_ref:
        torch.testing.assert_close(grads_tap[name], grads_ref[name], rtol=1e-5, atol=1e-7, msg=name)


def test_taps_are_inert_without_the_regularizer():
    """Installed but idle taps change nothing: the eager path (train mode, dropout on) gives the
    same outputs as an untapped copy, and checkpoints keep BERT's keys."""
    from sasbert.pretrain import build_model

    model, batch = tiny_bert_batch()
    fresh = build_model(
        {"num_hidden_layers": 2, "num_attention_heads": 4, "hidden_size": 32, "intermediate_size": 64},
        120,
        seed=0,
        max_position=64,
    )
    fresh.train()
    model(**batch, compute_sas=True)  # installs the taps, then leaves them idle
    assert all(layer.attention.self.dropout.arcs is None for layer in model.bert.encoder.layer)
    assert all(layer.attention.self.dropout.values is None for layer in model.bert.encoder.layer)
    outputs = []
    for net in (fresh, model):
        torch.manual_seed(3)
        out = net.bert(batch["input_ids"], attention_mask=batch["attention_mask"], output_attentions=True)
        outputs.append((out.last_hidden_state, out.attentions))
    assert torch.equal(outputs[0][0], outputs[1][0])
    assert all(torch.equal(a, b) for a, b in zip(outputs[0][1], outputs[1][1]))
    assert list(model.state_dict()) == list(fresh.state_dict())


def test_gradient_checkpointing_is_refused_with_the_regularizer():
    model, batch = tiny_bert_batch()
    model.gradient_checkpointing_enable()
    with pytest.raises(ValueError, match="gradient checkpointing"):
        model(**batch, compute_sas=True)
