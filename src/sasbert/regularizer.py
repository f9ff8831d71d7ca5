"""The SAS regularizer (SPEC.md, "The SAS regularizer"; the authors' "max" variant and options).

With A[l,b,h,q,k] the post-softmax attention and M[b,q,k] = max over l and h of A (``max``) or
the sum over l and h (``uniform``):

    R = sum over labelled positions (b, t) with parent p = heads[b, t] of  M[b,t,p] + M[b,p,t]

``direction`` keeps both terms, only dependent->parent (M[b,t,p]) or only parent->dependent
(M[b,p,t]). ``reduction='sum'`` is the authors' unnormalised sum over the batch it is given;
``'mean'`` divides by the number of labelled arcs. In training the step's R is normalised over the
whole optimizer step (``sas_weight``), whatever the number of processes and micro-batches. The
attention is gathered at the arcs layer by layer, so the stacked L x B x H x S x S tensor is
never built.

The attentions are the ones HF BERT returns with ``output_attentions=True``: softmax followed by
attention dropout in training mode, exactly what the authors' code regularized.

Training does not gather from the returned maps: ``ArcTap`` wraps each attention layer's dropout
(the last op before the product with V) and reads the arc entries as the probabilities pass. Its
backward adds the arcs' gradients into the incoming gradient in place, so R costs O(arcs) in both
directions instead of a zero-filled S x S gradient per layer and head (on a GPU at 512 tokens that
scatter made a regularized step 1.4x an eager one). ``sas_regularizer`` on returned attentions is
the reference it is tested against.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

TYPES = ("max", "uniform")
DIRECTIONS = ("both", "dependent_to_parent", "parent_to_dependent")
REDUCTIONS = ("sum", "mean")


def arc_indices(heads: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(batch, dependent, parent) index vectors of the labelled arcs (heads >= 0)."""
    batch, dependent = torch.nonzero(heads >= 0, as_tuple=True)
    return batch, dependent, heads[batch, dependent]


def combine_arcs(
    layers: Iterable[tuple[torch.Tensor | None, torch.Tensor | None]],
    n_arcs: int,
    type: str = "max",
    direction: str = "both",
    reduction: str = "mean",
) -> torch.Tensor:
    """R from each layer's arc attentions: (to_parent, to_dependent), each (n_arcs, H) or None."""
    if type not in TYPES or direction not in DIRECTIONS or reduction not in REDUCTIONS:
        raise ValueError(f"unknown regularizer option: {type}/{direction}/{reduction}")
    combine = torch.maximum if type == "max" else torch.add
    running = [None, None]  # (n_arcs,) max/sum over layers of dependent->parent, parent->dependent
    for layer in layers:
        for k, values in enumerate(layer):
            if values is None:
                continue
            values = values.amax(dim=1) if type == "max" else values.sum(dim=1)
            running[k] = values if running[k] is None else combine(running[k], values)
    total = sum(t.sum() for t in running if t is not None)
    if reduction == "mean":
        total = total / max(n_arcs, 1)
    return total


def gather_arcs(attention: torch.Tensor, arcs, direction: str = "both"):
    """One layer's (B, H, S, S) attention at the arcs: (to_parent, to_dependent), (n_arcs, H) each."""
    batch, dependent, parent = arcs
    to_parent = attention[batch, :, dependent, parent] if direction != "parent_to_dependent" else None
    to_dependent = attention[batch, :, parent, dependent] if direction != "dependent_to_parent" else None
    return to_parent, to_dependent


def sas_regularizer(
    attentions: Iterable[torch.Tensor],
    heads: torch.Tensor,
    type: str = "max",
    direction: str = "both",
    reduction: str = "mean",
) -> torch.Tensor:
    """R for one batch. ``attentions``: per layer (B, H, S, S); ``heads``: (B, S), -1 = no arc."""
    arcs = arc_indices(heads)
    return combine_arcs(
        (gather_arcs(layer, arcs, direction) for layer in attentions), len(arcs[0]), type, direction, reduction
    )


class _TapArcs(torch.autograd.Function):
    """Identity on the attention probabilities that also returns their values at the arcs.

    Backward: the arcs' gradients are added into the probabilities' incoming gradient in place
    (index_add_ on its flat view), instead of autograd's zero-filled full-size gradient of an
    indexing op plus a full-size sum. In place is safe only because the output's one consumer in
    HF BERT's eager attention (the product with V, or head_mask's product) hands back a fresh
    gradient; an op that passes its gradient to two inputs (an add) would see it changed. The test
    comparing every parameter's gradient with the reference path guards this.
    """

    @staticmethod
    def forward(ctx, probs, batch, dependent, parent, direction):
        ctx.save_for_backward(batch, dependent, parent)
        ctx.shape, ctx.dtype = probs.shape, probs.dtype
        to_parent, to_dependent = gather_arcs(probs, (batch, dependent, parent), direction)
        ctx.wants = (to_parent is not None, to_dependent is not None)
        return probs.view_as(probs), to_parent, to_dependent

    @staticmethod
    def backward(ctx, grad_probs, grad_to_parent, grad_to_dependent):
        batch, dependent, parent = ctx.saved_tensors
        _, n_heads, size, _ = ctx.shape
        if grad_probs is None:
            grad_probs = torch.zeros(ctx.shape, dtype=ctx.dtype, device=batch.device)
        elif not grad_probs.is_contiguous():
            grad_probs = grad_probs.contiguous()
        flat = grad_probs.view(-1)
        heads = torch.arange(n_heads, device=batch.device)
        for wanted, grad, (query, key) in (
            (ctx.wants[0], grad_to_parent, (dependent, parent)),
            (ctx.wants[1], grad_to_dependent, (parent, dependent)),
        ):
            if wanted and grad is not None:
                # offsets of [b, h, q, k] in the contiguous (B, H, S, S) layout, (n_arcs, H)
                offsets = ((batch[:, None] * n_heads + heads) * size + query[:, None]) * size + key[:, None]
                flat.index_add_(0, offsets.reshape(-1), grad.reshape(-1).to(flat.dtype))
        return grad_probs, None, None, None, None


class ArcTap(torch.nn.Module):
    """Wraps an attention layer's dropout: while ``arcs`` is set, records the post-dropout
    attention at the arcs (``values``) as the probabilities pass through to the product with V."""

    def __init__(self, dropout: torch.nn.Module):
        super().__init__()
        self.dropout = dropout
        self.arcs = None
        self.direction = "both"
        self.values = None

    def forward(self, probs: torch.Tensor) -> torch.Tensor:
        probs = self.dropout(probs)
        if self.arcs is None:
            return probs
        probs, to_parent, to_dependent = _TapArcs.apply(probs, *self.arcs, self.direction)
        self.values = (to_parent, to_dependent)
        return probs


def install_arc_taps(bert_model) -> list[ArcTap]:
    """Wrap the attention dropout of every layer of a HF BertModel (idempotent); returns the taps."""
    taps = []
    for layer in bert_model.encoder.layer:
        attention = layer.attention.self
        if not isinstance(attention.dropout, ArcTap):
            attention.dropout = ArcTap(attention.dropout)
        taps.append(attention.dropout)
    return taps


def sas_weight(options: dict, n_arcs: int, n_sequences: int) -> float:
    """The factor that turns R summed over one optimizer step's arcs into the step's R.

    ``mean``: per labelled arc of the whole step (all micro-batches, all processes), so lambda
    transfers across batch sizes. ``sum``: the authors' unnormalised sum, kept at their strength
    by scaling it to ``reference_sequences`` sequences (they summed over a per-device batch of 64
    and averaged gradients over devices), so it does not depend on the number of processes or on
    gradient accumulation either.
    """
    if options["reduction"] == "mean":
        return 1.0 / max(n_arcs, 1)
    return options["reference_sequences"] / max(n_sequences, 1)
