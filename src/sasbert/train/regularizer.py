"""The SAS regularizer (docs/method.md, "The SAS regularizer"; the authors' "max" variant and
options).

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
attention dropout in training mode, exactly what the authors' code regularized. Training models
use ``SAS_ATTENTION`` (``sas_attention``): SDPA, falling back to eager attention for a call that
asks for the attentions, as transformers 4 BERT did (transformers 5 has no such fallback).

Training does not gather from the returned maps: ``ArcTap`` wraps each attention layer's dropout
(the last op before the product with V) and reads the arc entries as the probabilities pass. Its
backward adds the arcs' gradients into the incoming gradient in place, so R costs O(arcs) in both
directions instead of a zero-filled S x S gradient per layer and head (on a GPU at 512 tokens that
scatter made a regularized step 1.4x an eager one). ``sas_regularizer`` on returned attentions is
the reference it is tested against.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterable

import torch
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask
from transformers.models.bert.modeling_bert import BertSelfAttention

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

    @property
    def p(self) -> float:
        # transformers 5 BERT reads its attention dropout's rate (layer.dropout.p) on every call
        return self.dropout.p

    def forward(self, probs: torch.Tensor) -> torch.Tensor:
        probs = self.dropout(probs)
        if self.arcs is None:
            return probs
        probs, to_parent, to_dependent = _TapArcs.apply(probs, *self.arcs, self.direction)
        self.values = (to_parent, to_dependent)
        return probs


def additive_mask(mask, dtype):
    """The mask as eager attention adds it: transformers 5 hands attention a boolean mask (True:
    attend), which this turns into 0 / the dtype's minimum like transformers' eager_mask; None
    (no padding) and additive masks pass through."""
    if mask is None or mask.dtype != torch.bool:
        return mask
    return torch.where(mask, torch.zeros((), device=mask.device, dtype=dtype), torch.finfo(dtype).min)


def eager_attention(module, query, key, value, attention_mask, scaling):
    """transformers' eager attention, except that the dropout is the layer's own module (its
    ``dropout``, an ``ArcTap`` once installed): transformers 5 calls the dropout function directly,
    which no tap can wrap. The same ops and RNG draws as theirs (nn.Dropout is that function)."""
    weights = torch.matmul(query, key.transpose(2, 3)) * scaling
    mask = additive_mask(attention_mask, weights.dtype)
    if mask is not None:
        weights = weights + mask
    weights = module.dropout(torch.nn.functional.softmax(weights, dim=-1))
    return torch.matmul(weights, value).transpose(1, 2).contiguous(), weights


def sas_attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
    """The attention of the models training builds (``SAS_ATTENTION``): the fused arc reader
    while a ``FusedArcSelfAttention`` has arcs, eager attention (through the layer's dropout
    module, where the arc taps sit) when the call asks for the attentions, SDPA otherwise. This is
    the dispatch transformers 4's BertSdpaSelfAttention did itself; transformers 5 picks one
    attention function per model, and its SDPA returns no attentions."""
    scaling = query.size(-1) ** -0.5 if scaling is None else scaling
    if isinstance(module, FusedArcSelfAttention) and module.arcs is not None:
        bias = additive_mask(attention_mask, query.dtype)
        out, lse = attention_with_lse(query, key, value, bias, dropout, scaling)
        module.values = fused_arc_values(query, key, bias, lse, module.arcs, module.direction, scaling)
        return out.transpose(1, 2).contiguous(), None
    if kwargs.get("output_attentions"):
        return eager_attention(module, query, key, value, attention_mask, scaling)
    return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs)


SAS_ATTENTION = "sasbert_sdpa"
AttentionInterface.register(SAS_ATTENTION, sas_attention)
# SDPA's masks (None without padding, else boolean): sas_attention converts them where it adds them
AttentionMaskInterface.register(SAS_ATTENTION, sdpa_mask)


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


# ----------------------------------------------------------------------------------------------
# The fused path (``regularizer.attention: pre_dropout``): the attention runs in a fused SDPA
# kernel, which never materialises the S x S probabilities, and R reads them only at the arcs:
#
#     A[b,h,t,p] = exp(scale * q[b,h,t] . k[b,h,p] + bias[b,t,p] - lse[b,h,t])
#
# with lse the row's log-sum-exp, which the kernel computes anyway. Its backward recomputes only
# the query rows whose arc values carry gradient (under ``max``, one layer and head per arc), in
# bounded chunks, so no S x S tensor per layer is kept for the backward pass. A fused kernel
# applies attention dropout internally, so R here is taken on the probabilities before dropout.
# ----------------------------------------------------------------------------------------------

ROW_CHUNK_ELEMENTS = 1 << 24  # gathered keys per backward chunk (rows x S x head dim), 64 MB in fp32


def _full_bias(bias, query, key):
    """The additive mask as a (B, H, S, S) view (broadcast dimensions stay stride 0), or None."""
    return None if bias is None else bias.expand(*query.shape[:3], key.shape[-2])


def _kernel_attention(query, key, value, bias, dropout_p, scale):
    """Fused attention output and its rows' log-sum-exp, or None where no kernel returns it.

    The kernels are PyTorch's own (the ones SDPA dispatches to), called directly because the
    public function does not return the log-sum-exp; each has its autograd formula."""
    size = query.shape[-2]
    if query.device.type == "cuda":
        try:
            if bias is None and query.dtype in (torch.float16, torch.bfloat16):
                out, lse = torch.ops.aten._scaled_dot_product_flash_attention(
                    query, key, value, dropout_p, False, False, scale=scale
                )[:2]
            else:
                full_bias = _full_bias(None if bias is None else bias.to(query.dtype), query, key)
                out, lse = torch.ops.aten._scaled_dot_product_efficient_attention(
                    query, key, value, full_bias, True, dropout_p, False, scale=scale
                )[:2]
        except RuntimeError as err:  # a shape or dtype the kernel does not take
            _warn_once(f"fused attention kernel refused this input ({err}); R's log-sum-exp is computed beside SDPA")
            return None
        return out, lse[..., :size]
    if query.device.type == "cpu" and dropout_p == 0.0:
        return torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(
            query, key, value, dropout_p, False, attn_mask=bias, scale=scale
        )
    return None


@functools.cache
def _warn_once(message):
    logging.getLogger(__name__).warning(message)


def row_logsumexp(query, key, bias, scale):
    """log sum_p exp(scale * q_t . k_p + bias_tp) for every row, (B, H, S) in fp32, in chunks of
    rows (no gradient: ``ArcAttention`` differentiates it itself)."""
    batch, heads, size, dim = query.shape
    rows = max(1, ROW_CHUNK_ELEMENTS // (heads * size * batch))
    out = torch.empty(batch, heads, size, dtype=torch.float32, device=query.device)
    with torch.no_grad():
        keys = key.float().transpose(-1, -2)
        for first in range(0, size, rows):
            scores = query[:, :, first : first + rows].float() @ keys * scale
            if bias is not None:
                scores = scores + bias[:, :, first : first + rows].float()
            out[:, :, first : first + rows] = torch.logsumexp(scores, dim=-1)
    return out


def attention_with_lse(query, key, value, bias, dropout_p, scale):
    """SDPA's output (dropout inside the kernel) and the fp32 log-sum-exp of its rows (pre-dropout).

    ``bias``: the additive mask HF hands SDPA, broadcastable to (B, H, S, S), or None.
    """
    fused = _kernel_attention(query, key, value, bias, dropout_p, scale)
    if fused is not None:
        out, lse = fused
        return out, lse.detach().float()
    # no kernel returns the log-sum-exp here (CPU with attention dropout): the public SDPA, and
    # the log-sum-exp computed beside it
    out = torch.nn.functional.scaled_dot_product_attention(
        query, key, value, attn_mask=bias, dropout_p=dropout_p, scale=scale
    )
    return out, row_logsumexp(query, key, bias, scale)


class ArcAttention(torch.autograd.Function):
    """The attention probabilities at given (batch, query, key) positions for every head, from
    q, k and the rows' log-sum-exp, with their exact gradient with respect to q and k.

    Forward: (n, H). Backward, for a value with gradient g at (b, h, t, p), through the softmax:
    d/ds[t,u] = g A[t,p] (delta_up - P[t,u]). The delta term is a product of two gathered rows;
    the P term needs row t of P, recomputed here only for the (position, head) pairs whose
    gradient is not zero (under ``max``, one layer and head per arc), grouped by (batch, head)
    so that each group's rows meet its keys in one batched product, in bounded chunks.
    """

    @staticmethod
    def forward(ctx, query, key, bias, lse, batch, row, column, scale):
        n_batch, n_heads, size, dim = query.shape
        # (B, S, H, d) rows: the layout the projections produced, so these gathers are contiguous
        q_rows = _position_major(query).index_select(0, batch * size + row).float()  # (n, H, d)
        k_rows = _position_major(key).index_select(0, batch * size + column).float()
        lse_rows = lse.transpose(1, 2).reshape(n_batch * size, n_heads).index_select(0, batch * size + row)
        values = torch.einsum("nhd,nhd->nh", q_rows, k_rows).mul_(scale).sub_(lse_rows)
        full_bias = _full_bias(bias, query, key)
        if full_bias is not None:
            heads = torch.arange(n_heads, device=query.device)
            values = values + full_bias[batch[:, None], heads, row[:, None], column[:, None]].float()
        values = values.exp_()
        ctx.save_for_backward(query, key, lse, batch, row, column, values)
        ctx.bias, ctx.scale = bias, scale
        return values

    @staticmethod
    def backward(ctx, grad_values):
        query, key, lse, batch, row, column, values = ctx.saved_tensors
        bias, scale = ctx.bias, ctx.scale
        n_batch, n_heads, size, dim = query.shape
        grad_scores = grad_values.float() * values  # g A[t,p]: the gradient of the arc's score
        pair, head = torch.nonzero(grad_scores, as_tuple=True)
        # the pairs with gradient, sorted by (batch, head) group; each group's pairs are laid out
        # in a row of a (groups, width) grid, so a batched product meets them with their keys
        slot, order = torch.sort(batch[pair] * n_heads + head)
        pair, head = pair[order], head[order]
        b, t, u = batch[pair], row[pair], column[pair]
        g = grad_scores[pair, head] * scale
        groups, counts = torch.unique_consecutive(slot, return_counts=True)
        group_start = torch.cumsum(counts, 0) - counts
        group_of = torch.repeat_interleave(torch.arange(len(groups), device=slot.device), counts)
        rank = torch.arange(len(slot), device=slot.device) - group_start[group_of]
        width = int(counts.max()) if len(counts) else 0
        group_batch, group_head = groups // n_heads, groups % n_heads

        # position (b, h, t) is row (b * S + t) * H + h of the (B * S * H, d) views
        at_t = (b * size + t) * n_heads + head
        q_t = _position_major(query).view(-1, dim).index_select(0, at_t).float()  # (c, d)
        # each pair's row of scores is offset by its bias and normalised by its log-sum-exp
        offsets = -lse.transpose(1, 2).reshape(-1).index_select(0, at_t)[:, None]
        full_bias = _full_bias(bias, query, key)
        offsets = offsets.expand(-1, size) if full_bias is None else offsets + full_bias[b, head, t].float()

        grad_query = q_t.new_zeros(n_batch * size * n_heads, dim)
        grad_key = q_t.new_zeros(n_batch, size, n_heads, dim)
        grad_key_groups = grad_key.transpose(1, 2)  # (B, H, S, d) view
        per_chunk = max(1, ROW_CHUNK_ELEMENTS // max(1, width * size))
        for first in range(0, len(groups), per_chunk):
            chunk = slice(first, first + per_chunk)
            # a chunk of groups is a contiguous run of the sorted pairs
            last = first + per_chunk
            members = slice(int(group_start[first]), int(group_start[last]) if last < len(groups) else len(slot))
            local, at = group_of[members] - first, rank[members]
            n_groups = len(groups[chunk])
            rows, weights, row_offsets = (
                q_t.new_zeros(n_groups, width, dim),
                q_t.new_zeros(n_groups, width),
                q_t.new_zeros(n_groups, width, size),
            )
            rows[local, at], weights[local, at], row_offsets[local, at] = q_t[members], g[members], offsets[members]
            keys = key[group_batch[chunk], group_head[chunk]].float()  # (groups, S, d)
            # d/ds[t,.] = g (e_p - P[t,.]): rows t of P, less one at each pair's key p
            delta = torch.baddbmm(row_offsets, rows, keys.transpose(1, 2), alpha=scale).exp_()
            delta[local, at, u[members]] -= 1.0
            weighted = weights[:, :, None]
            grad_query.index_add_(0, at_t[members], -(weighted * torch.bmm(delta, keys))[local, at])
            grad_key_groups[group_batch[chunk], group_head[chunk]] -= torch.bmm(delta.transpose(1, 2), weighted * rows)

        def heads_first(grad, like):
            return grad.view(n_batch, size, n_heads, dim).transpose(1, 2).to(like.dtype)

        return heads_first(grad_query, query), heads_first(grad_key, key), *(None,) * 6


def _position_major(states):
    """(B, H, S, d) attention states as (B * S, H, d): a view of what the projections produced
    (their (B, S, H, d) layout), a copy only for other layouts."""
    n_batch, n_heads, size, dim = states.shape
    return states.transpose(1, 2).reshape(n_batch * size, n_heads, dim)


def fused_arc_values(query, key, bias, lse, arcs, direction, scale):
    """One layer's attention at the arcs, (to_parent, to_dependent), (n_arcs, H) each or None,
    from q, k and the rows' log-sum-exp (the fused path's counterpart of ``gather_arcs``).
    Both directions go through one ``ArcAttention``: (query, key) = (dependent, parent) for
    dependent->parent and (parent, dependent) for parent->dependent."""
    batch, dependent, parent = arcs
    to_parent = direction != "parent_to_dependent"
    to_dependent = direction != "dependent_to_parent"
    parts = [(dependent, parent)] * to_parent + [(parent, dependent)] * to_dependent
    values = ArcAttention.apply(
        query,
        key,
        bias,
        lse,
        batch.repeat(len(parts)),
        torch.cat([rows for rows, _ in parts]),
        torch.cat([columns for _, columns in parts]),
        scale,
    )
    n_arcs = len(batch)
    return (values[:n_arcs] if to_parent else None, values[-n_arcs:] if to_dependent else None)


class FusedArcSelfAttention(BertSelfAttention):
    """HF BERT's self-attention that, while ``arcs`` is set, runs a kernel that also returns the
    rows' log-sum-exp and records the pre-dropout attention at the arcs (``values``): the work is
    done in ``sas_attention``, which transformers 5 hands this module's q, k and v.

    Installed by changing the class of each layer's existing module (``install_fused_arcs``): the
    parameters, their names and the checkpoints are untouched. Without arcs it is the parent class.
    (transformers 5 BERT has absolute position embeddings only, so that is no longer checked.)
    """

    arcs = None
    direction = "both"
    values = None

    def forward(self, hidden_states, attention_mask=None, *args, **kwargs):
        unsupported = ("head_mask", "encoder_hidden_states", "cache", "past_key_values")
        if self.arcs is not None and (args or any(kwargs.get(k) is not None for k in unsupported)):
            raise ValueError("the fused SAS regularizer supports plain encoder self-attention only")
        return super().forward(hidden_states, attention_mask, *args, **kwargs)


def install_fused_arcs(bert_model) -> list[FusedArcSelfAttention]:
    """Make every layer's self-attention of a HF BertModel (built with ``SAS_ATTENTION``) a
    ``FusedArcSelfAttention`` (idempotent); returns them."""
    modules = []
    for layer in bert_model.encoder.layer:
        attention = layer.attention.self
        if attention.config._attn_implementation != SAS_ATTENTION:
            raise ValueError(
                f"the fused SAS regularizer needs a model built with attn_implementation={SAS_ATTENTION!r}"
            )
        attention.__class__ = FusedArcSelfAttention
        modules.append(attention)
    return modules
