"""The SAS regularizer against a brute-force reference that follows SPEC.md word for word."""

import itertools

import pytest
import torch

from sasbert.regularizer import lambda_at, sas_regularizer


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
    list(itertools.product(["max", "uniform"], ["both", "dependent_to_parent", "parent_to_dependent"], ["sum", "mean"])),
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
    assert sas_regularizer(list(attn2), heads, type="uniform", direction="dependent_to_parent").item() == pytest.approx(1.5)


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
