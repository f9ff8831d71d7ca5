"""The SAS regularizer (SPEC.md, "The SAS regularizer"; the authors' "max" variant and options).

With A[l,b,h,q,k] the post-softmax attention and M[b,q,k] = max over l and h of A (``max``) or
the sum over l and h (``uniform``):

    R = sum over labelled positions (b, t) with parent p = heads[b, t] of  M[b,t,p] + M[b,p,t]

``direction`` keeps both terms, only dependent->parent (M[b,t,p]) or only parent->dependent
(M[b,p,t]). ``reduction='sum'`` is the authors' unnormalised sum over the batch it is given;
``'mean'`` divides by the number of labelled arcs. The attention is gathered at the arcs layer
by layer, so the stacked L x B x H x S x S tensor is never built.

The attentions are the ones HF BERT returns with ``output_attentions=True``: softmax followed by
attention dropout in training mode, exactly what the authors' code regularized.
"""

from __future__ import annotations

from typing import Iterable

import torch

TYPES = ("max", "uniform")
DIRECTIONS = ("both", "dependent_to_parent", "parent_to_dependent")
REDUCTIONS = ("sum", "mean")


def arc_indices(heads: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(batch, dependent, parent) index vectors of the labelled arcs (heads >= 0)."""
    batch, dependent = torch.nonzero(heads >= 0, as_tuple=True)
    return batch, dependent, heads[batch, dependent]


def sas_regularizer(
    attentions: Iterable[torch.Tensor],
    heads: torch.Tensor,
    type: str = "max",
    direction: str = "both",
    reduction: str = "mean",
) -> torch.Tensor:
    """R for one batch. ``attentions``: per layer (B, H, S, S); ``heads``: (B, S), -1 = no arc."""
    if type not in TYPES or direction not in DIRECTIONS or reduction not in REDUCTIONS:
        raise ValueError(f"unknown regularizer option: {type}/{direction}/{reduction}")
    batch, dependent, parent = arc_indices(heads)
    combine = torch.maximum if type == "max" else torch.add
    to_parent = to_dependent = None  # (n_arcs,) running max/sum over layers
    for layer in attentions:
        if direction != "parent_to_dependent":
            values = layer[batch, :, dependent, parent]  # (n_arcs, H)
            values = values.amax(dim=1) if type == "max" else values.sum(dim=1)
            to_parent = values if to_parent is None else combine(to_parent, values)
        if direction != "dependent_to_parent":
            values = layer[batch, :, parent, dependent]
            values = values.amax(dim=1) if type == "max" else values.sum(dim=1)
            to_dependent = values if to_dependent is None else combine(to_dependent, values)
    total = sum(t.sum() for t in (to_parent, to_dependent) if t is not None)
    if reduction == "mean":
        total = total / max(len(batch), 1)
    return total


def lambda_at(schedule, step: int) -> float:
    """The regularizer weight at ``step``: a constant, or stages [{value, until_step}, ..., {value}]."""
    if isinstance(schedule, (int, float)):
        return float(schedule)
    for stage in schedule:
        until = stage.get("until_step")
        if until is None or step < until:
            return float(stage["value"])
    return 0.0  # past the last stage's until_step
