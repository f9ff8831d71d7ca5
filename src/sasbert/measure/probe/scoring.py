"""Scoring a checkpoint's attention heads as parsers: word-level attention, batched on the device, tallied per head and relation."""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from sasbert.errors import InputError
from sasbert.measure.checkpoints import (
    architecture_kind,
    load_language_model,
)
from sasbert.measure.probe.alignment import (
    aligned_sentences,
    encode_sentences,
    fitting_sentences,
    max_model_pieces,
    truncate,
)
from sasbert.measure.probe.options import ProbeOptions
from sasbert.measure.probe.sentences import (
    ALL,
    DEFAULT_EXCLUDED_RELATIONS,
    PTB_PUNCT_TAGS,
    Sentence,
    authors_relations,
    is_labelled,
    poss_limits,
    scored_relations,
)
from sasbert.measure.probe.tables import (
    SCORE_COLUMNS,
    SUMMARY_COLUMNS,
    _frame,
    _summary_columns,
    authors_accuracy,
    offset_columns,
)

log = logging.getLogger(__name__)


DIRECTIONS = ("dependent_to_parent", "parent_to_dependent")


CONFIDENCE = 0.95


BOOTSTRAP_SAMPLES = 2000


BOOTSTRAP_SEED = 0  # the intervals are reproducible, and the resamples paired across checkpoints


def _pooling(piece_word, n_words: int, dtype):
    """Sum matrix [B, S, N] (piece s belongs to word n) and mean matrix [B, N, S]."""
    import torch

    onehot = torch.nn.functional.one_hot(piece_word + 1, n_words + 1)[..., 1:].to(dtype)
    n_pieces = onehot.sum(1)  # [B, N]
    mean = (onehot / n_pieces.clamp(min=1).unsqueeze(1)).transpose(1, 2)
    return onehot, mean, n_pieces > 0


def word_attention(attention, piece_word, n_words: int):
    """Word-level attention W [B, H, N, N] from piece-level attention [B, H, S, S].

    ``piece_word`` [B, S] gives each piece's word (-1 for special tokens and padding, which are
    dropped). W[i, j] = mean over pieces p of word i of (sum over pieces q of word j of A[p, q]);
    the diagonal is zeroed. Rows/columns of padding words are 0.
    """
    import torch

    dtype = torch.float64 if attention.dtype == torch.float64 else torch.float32
    summ, mean, _ = _pooling(piece_word, n_words, dtype)
    w = mean.unsqueeze(1) @ (attention.to(dtype) @ summ.unsqueeze(1))
    return w.masked_fill(torch.eye(n_words, dtype=torch.bool, device=w.device), 0.0)


def percentile_interval(values: np.ndarray, confidence: float = CONFIDENCE) -> tuple[float, float]:
    low, high = np.nanquantile(values, [(1 - confidence) / 2, (1 + confidence) / 2])
    return float(low), float(high)


class AttentionScorer:
    """Accumulates per (layer, head, direction, relation) tallies over batches."""

    def __init__(self, n_layers: int, n_heads: int, relations: Sequence[str], device=None):
        import torch

        self.n_layers, self.n_heads, self.relations = n_layers, n_heads, list(relations)
        shape = (n_layers, n_heads, 2, len(self.relations))
        self.correct = torch.zeros(shape, dtype=torch.float64, device=device)
        self.soft = torch.zeros(shape, dtype=torch.float64, device=device)
        self.count = torch.zeros(len(self.relations), dtype=torch.float64, device=device)
        # per sentence: correct scored words of each (direction, head), and scored words (bootstrap)
        self.sentence_correct: list[np.ndarray] = []
        self.sentence_count: list[np.ndarray] = []

    def add(self, attentions, piece_word, gold, relation, span: tuple[int, int] | None = None, poss_limit=None) -> None:
        """attentions: L tensors [B, H, S, S]; piece_word [B, S] (-1: not a word);
        gold [B, N] 0-based gold parent word (-1: the root, never predicted; a word without pieces,
        cut off by truncation, is never predicted either); relation [B, N] index into
        ``relations``, -1 = unscored; span: (lo, hi) such that every word piece lies in positions
        lo..hi-1 (found if not given); poss_limit [B, N] (scoring "authors", ``poss_limits``): where
        > 0, word i is scored by word i + 1's prediction when its own is below poss_limit - 1.
        """
        import torch

        batch, n_words = gold.shape
        n_layers, n_heads = len(attentions), attentions[0].shape[1]
        K = n_layers * n_heads
        dtype = torch.float64 if attentions[0].dtype == torch.float64 else torch.float32
        # Positions outside [lo, hi) hold no word piece in any sentence of the batch (with BERT:
        # [CLS], and [SEP] of the longest sentence): they are cut off in the copy made anyway.
        if span is None:
            used = torch.nonzero((piece_word >= 0).any(0)).flatten().tolist()
            span = (used[0], used[-1] + 1) if used else (0, 0)
        lo, hi = span
        piece_word = piece_word[:, lo:hi]
        summ, mean, _ = _pooling(piece_word, n_words, dtype)  # [B, S, N], [B, N, S]
        # All layers and heads at once, laid out [B, S_p (rows), L, H, S_q (columns)], so that both
        # poolings are one matmul per sentence: columns (sum over a word's pieces), then rows (mean).
        att = torch.stack([a[:, :, lo:hi, lo:hi].transpose(1, 2) for a in attentions], 2).to(dtype)
        n_pieces = att.shape[-1]
        to_word = att.view(batch, -1, n_pieces) @ summ  # [B, S_p * K, N_j]
        w = (mean @ to_word.view(batch, n_pieces, K * n_words)).view(batch, n_words, K, n_words)
        # w[b, i, k, j] = W_k[i, j] for head k = layer * H + head. Soft scores: W[i, gold] and
        # W[gold, i] (gold != i, so zeroing the diagonal does not touch them); 0 for the root.
        g = gold.clamp(min=0)  # [B, N]
        has_parent = (gold >= 0).unsqueeze(1)  # [B, 1, N]
        soft_dp = w.gather(-1, g[:, :, None, None].expand(batch, n_words, K, 1))
        soft_dp = soft_dp.view(batch, n_words, K).transpose(1, 2) * has_parent  # [B, K, N]
        soft_pd = w.gather(1, g[:, None, None, :].expand(batch, 1, K, n_words)).view(batch, K, n_words) * has_parent
        # Zero the diagonal. Padding words need no mask: their rows and columns of W are 0 and come
        # after the real words, and attention weights are >= 0, so the FIRST maximum (which torch's
        # max/argmax return, as the spec's argmax does) is always a real word.
        w.diagonal(dim1=1, dim2=3).zero_()
        pred_dp = w.max(-1).indices.transpose(1, 2)  # parent of i = argmax_j W[i, j]  [B, K, N]
        pred_pd = w.max(1).indices  # parent of i = argmax_j W[j, i]  [B, K, N]
        g = gold.unsqueeze(1)  # [B, 1, N]; the root's -1 matches no prediction
        hits = [pred_dp == g, pred_pd == g]
        if poss_limit is not None:
            limit = poss_limit.unsqueeze(1)
            for d, pred in enumerate((pred_dp, pred_pd)):
                following = torch.cat([pred[..., 1:], pred[..., -1:]], -1)  # word i + 1's prediction
                hits[d] = torch.where((limit > 0) & (pred + 1 < limit), following == g, hits[d])
        stats = torch.stack(
            [
                torch.stack(hits, 1).to(torch.float64),
                torch.stack([soft_dp, soft_pd], 1).to(torch.float64),
            ],
            1,
        )  # [B, 2 (correct, soft), 2 (direction), K, N]
        scored = relation >= 0
        onehot = torch.nn.functional.one_hot(relation.clamp(min=0), len(self.relations))
        onehot = (onehot * scored.unsqueeze(-1)).to(torch.float64)  # [B, N, R]
        # per-relation tallies (a float64 matmul: exact counts, deterministic sums)
        tally = (stats.view(batch, -1, n_words) @ onehot).sum(0)  # [2 * 2 * K, R]
        tally = tally.view(2, 2, n_layers, n_heads, -1).permute(0, 2, 3, 1, 4)
        self.correct += tally[0]
        self.soft += tally[1]
        self.count += onehot.sum((0, 1))
        self.sentence_correct.append((stats[:, 0] * scored[:, None, None, :]).sum(-1).cpu().numpy())  # [B, 2, K]
        self.sentence_count.append(scored.sum(1).cpu().numpy())

    def best_head_resamples(self, samples: int = BOOTSTRAP_SAMPLES) -> np.ndarray:
        """The "all" best-head UAS in each of ``samples`` bootstrap resamples of the sentences (drawn
        with replacement); the best (layer, head, direction) is chosen anew in every resample.

        The resamples are drawn from ``BOOTSTRAP_SEED`` and the number of sentences alone, so every
        checkpoint of a series (the same sentences) gets the same ones: resample b is one set of
        sentences scored at every checkpoint, a paired bootstrap of the whole UAS curve, on which
        the phases rule detects the onsets again (their intervals, docs/method.md)."""
        correct = np.concatenate(self.sentence_correct).reshape(-1, 2 * self.n_layers * self.n_heads)
        count = np.concatenate(self.sentence_count).astype(np.float64)
        rng = np.random.default_rng(BOOTSTRAP_SEED)
        weights = rng.multinomial(len(count), np.full(len(count), 1 / len(count)), size=samples)
        with np.errstate(invalid="ignore", divide="ignore"):
            return (weights @ correct).max(axis=1) / (weights @ count)

    def best_head_interval(self, confidence: float = CONFIDENCE, samples: int = BOOTSTRAP_SAMPLES):
        """Percentile bootstrap interval of the "all" best-head UAS (``best_head_resamples``), so
        the interval includes the selection of the head."""
        return percentile_interval(self.best_head_resamples(samples), confidence)

    def columns(self, labelled: bool = True) -> dict[str, np.ndarray]:
        """Scores as columns, in canonical order (layer, head, direction, relation; "all" last)."""
        correct = self.correct.cpu().numpy().round().astype(np.int64)
        soft = self.soft.cpu().numpy()
        count = self.count.cpu().numpy().round().astype(np.int64)
        names = list(self.relations)
        if labelled:  # "all" = every scored word
            correct = np.concatenate([correct, correct.sum(-1, keepdims=True)], -1)
            soft = np.concatenate([soft, soft.sum(-1, keepdims=True)], -1)
            count = np.append(count, count.sum())
            names.append(ALL)
        L, H, D, R = correct.shape
        layer, head, direction, rel = (
            a.ravel() for a in np.meshgrid(np.arange(L), np.arange(H), np.arange(D), np.arange(R), indexing="ij")
        )
        n = len(rel)
        cnt = count[rel]
        with np.errstate(invalid="ignore", divide="ignore"):
            return {
                "method": np.full(n, "attention", dtype=object),
                "layer": layer.astype(np.float64),
                "head": head.astype(np.float64),
                "direction": np.array(DIRECTIONS, dtype=object)[direction],
                "offset": np.full(n, np.nan),
                "relation": np.array(names, dtype=object)[rel],
                "correct": correct.ravel(),
                "count": cnt,
                "accuracy": correct.ravel() / cnt,
                "soft_score": soft.ravel() / cnt,
            }

    def table(self, labelled: bool = True) -> pd.DataFrame:
        return _frame(self.columns(labelled))


@dataclasses.dataclass
class ProbeResult:
    scores: pd.DataFrame
    summary: pd.DataFrame
    bootstrap: pd.DataFrame  # step, treebank, sample, uas: the best-head UAS in each paired resample
    n_sentences: int
    n_skipped_too_long: int
    n_skipped_unaligned: int
    seconds: float


def _chunks(lengths: Sequence[int], ratio: float = 0.8) -> list[tuple[int, int]]:
    """Split rows sorted by decreasing length where the length drops below ratio x the chunk's first."""
    chunks, start = [], 0
    for k in range(1, len(lengths) + 1):
        if k == len(lengths) or lengths[k] < ratio * lengths[start]:
            chunks.append((start, k))
            start = k
    return chunks


def padded_batch(
    rows: Sequence[int], encoded: Sequence, golds: Sequence, rels: Sequence, pad_id: int, poss: Sequence | None = None
) -> dict:
    """The arrays of one batch of sentences, padded to its longest: piece ids, attention mask,
    piece -> word, gold head and relation id of each word (-1 where padded), and (scoring
    "authors") each word's ``poss_limits`` (0 where padded)."""
    S = max(len(encoded[i][0]) for i in rows)
    N = max(len(golds[i]) for i in rows)
    arrays = {
        "ids": np.full((len(rows), S), pad_id, dtype=np.int64),
        "mask": np.zeros((len(rows), S), dtype=np.int64),
        "piece_word": np.full((len(rows), S), -1, dtype=np.int64),
        "gold": np.full((len(rows), N), -1, dtype=np.int64),
        "rel": np.full((len(rows), N), -1, dtype=np.int64),
    }
    for row, i in enumerate(rows):
        tok_ids, piece_word = encoded[i]
        arrays["ids"][row, : len(tok_ids)] = tok_ids
        arrays["mask"][row, : len(tok_ids)] = 1
        arrays["piece_word"][row, : len(tok_ids)] = piece_word
        arrays["gold"][row, : len(golds[i])] = golds[i]
        arrays["rel"][row, : len(rels[i])] = rels[i]
    if poss is not None:
        arrays["poss"] = np.zeros((len(rows), N), dtype=np.int64)
        for row, i in enumerate(rows):
            arrays["poss"][row, : len(poss[i])] = poss[i]
    return arrays


def score_batches(model, scorer, encoded, golds, rels, *, batch_size, pad_id, device, checkpoint, poss=None) -> None:
    """Run the sentences through the model in batches, longest first, adding each batch's
    attention maps to ``scorer``. Sentences without a scored word cannot change any score: they
    are not run."""
    import torch

    base = model.base_model if hasattr(model, "base_model") else model
    order = sorted((i for i in range(len(encoded)) if (rels[i] >= 0).any()), key=lambda i: -len(encoded[i][0]))
    with torch.inference_mode():
        for b in range(0, len(order), batch_size):
            rows = order[b : b + batch_size]
            arrays = padded_batch(rows, encoded, golds, rels, pad_id, poss)
            t = {name: torch.from_numpy(a).to(device, non_blocking=True) for name, a in arrays.items()}
            out = base(input_ids=t["ids"], attention_mask=t["mask"], output_attentions=True)
            if not out.attentions or out.attentions[0] is None:
                raise InputError(f"{checkpoint or 'model'}: the model returns no attention weights")
            # Pooling costs ~pieces^3 per sentence, so a batch's rows (longest first) are pooled
            # in chunks of similar length, each cut to its own longest sentence.
            for r0, r1 in _chunks([len(encoded[i][0]) for i in rows]):
                s1 = len(encoded[rows[r0]][0])
                n1 = max(len(golds[i]) for i in rows[r0:r1])
                used = np.flatnonzero((arrays["piece_word"][r0:r1, :s1] >= 0).any(0))
                scorer.add(
                    [a[r0:r1, :, :s1, :s1] for a in out.attentions],
                    t["piece_word"][r0:r1, :s1],
                    t["gold"][r0:r1, :n1],
                    t["rel"][r0:r1, :n1],
                    span=(used[0], used[-1] + 1),
                    poss_limit=t["poss"][r0:r1, :n1] if poss is not None else None,
                )


def score_model(
    model,
    tokenizer,
    sentences: Sequence[Sentence],
    options: ProbeOptions = ProbeOptions(),
    *,
    excluded_relations: Iterable[str] = DEFAULT_EXCLUDED_RELATIONS,
    punct_tags: Iterable[str] = PTB_PUNCT_TAGS,
    device=None,
    step: int | None = None,
    checkpoint: str | None = None,
    treebank: str | None = None,
) -> ProbeResult:
    """Probe a loaded masked LM (any HF model with attentions) on gold sentences, with the method's
    scoring (docs/method.md, "UAS probe") or (``options.scoring == "authors"``) the authors'
    (``excluded_relations`` and ``punct_tags`` then play no part: every word is scored)."""
    import torch

    t0 = time.perf_counter()
    options.check()
    max_pieces, batch_size, scoring = options.max_pieces, options.batch_size, options.scoring
    min_relation_count = options.min_relation_count
    authors = scoring == "authors"
    device = torch.device(device) if device is not None else next(model.parameters()).device
    labelled = is_labelled(sentences)
    limit = min(max_pieces, max_model_pieces(model))
    encoded = encode_sentences(tokenizer, sentences)
    if authors:
        keep, unaligned = aligned_sentences(encoded)
        too_long = 0
        cut = [truncate(encoded[k], limit) for k in keep]
        encoded = {k: enc for k, (enc, _) in zip(keep, cut)}
        n_candidates = [n for _, n in cut]
        truncated = sum(n < len(sentences[k].words) for k, n in zip(keep, n_candidates))
    else:
        keep, too_long, unaligned = fitting_sentences(encoded, limit)
    if too_long or unaligned:
        log.info(
            "skipped %d sentences longer than %d pieces and %d with a word without pieces (of %d)",
            too_long,
            limit,
            unaligned,
            len(sentences),
        )
    if not keep:
        raise InputError(f"{treebank or 'treebank'}: no sentence fits in {limit} pieces")

    if authors:
        log.info("authors' scoring: %d sentences cut to %d pieces (their later words not scored)", truncated, limit)
        word_rels = [authors_relations(sentences[k], labelled) for k in keep]
    else:
        word_rels = [scored_relations(sentences[k], labelled, excluded_relations, punct_tags) for k in keep]
    names = sorted({r for rels in word_rels for r in rels if r is not None}) if labelled else [ALL]
    if not names:
        raise InputError(f"{treebank or 'treebank'}: no word to score (every relation is excluded)")
    index = {r: i for i, r in enumerate(names)}
    golds = [np.asarray(sentences[k].heads, dtype=np.int64) - 1 for k in keep]
    rels = [np.array([-1 if r is None else index[r] for r in rs], dtype=np.int64) for rs in word_rels]
    if authors:
        # attention scores the words that fit (``truncate``), the offsets every word
        offset_rels = rels
        rels = [np.where(np.arange(len(r)) < n, r, -1) for r, n in zip(rels, n_candidates)]
        poss = [poss_limits(sentences[k], n) for k, n in zip(keep, n_candidates)]
        offset_poss = [poss_limits(sentences[k], len(sentences[k].words)) for k in keep]
    else:
        offset_rels, poss, offset_poss, n_candidates = rels, None, None, None

    was_training = model.training
    model.eval()
    scorer = AttentionScorer(model.config.num_hidden_layers, model.config.num_attention_heads, names, device=device)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    try:
        score_batches(
            model,
            scorer,
            [encoded[k] for k in keep],
            golds,
            rels,
            batch_size=batch_size,
            pad_id=pad_id,
            device=device,
            checkpoint=checkpoint,
            poss=poss,
        )
    finally:
        model.train(was_training)

    att_cols = scorer.columns(labelled)
    off_cols = offset_columns(golds, offset_rels, names, labelled, scoring, offset_poss)
    cols = {c: np.concatenate([att_cols[c], off_cols[c]]) for c in att_cols}
    if authors:
        cols["accuracy"] = authors_accuracy(cols["correct"], cols["count"])
    summary = _summary_columns(cols, min_relation_count, labelled, scoring)
    reach = reachable_fractions(
        golds, rels, names, causal=architecture_kind([type(model).__name__]) == "causal", n_candidates=n_candidates
    )
    summary["reachable"] = [
        reach.get((r, d), np.nan) if m == "attention" else np.nan
        for m, r, d in zip(summary["method"], summary["relation"], summary["direction"])
    ]
    resamples = scorer.best_head_resamples()
    low, high = percentile_interval(resamples)
    best_all = [m == "attention" and r == ALL for m, r in zip(summary["method"], summary["relation"])]
    summary["ci_low"] = [low if b else np.nan for b in best_all]
    summary["ci_high"] = [high if b else np.nan for b in best_all]
    meta = {
        "step": np.nan if step is None else step,
        "checkpoint": checkpoint,
        "treebank": treebank,
        "n_sentences": len(keep),
        "n_skipped_too_long": too_long,
        "n_skipped_unaligned": unaligned,
        "max_pieces": limit,
        "min_relation_count": min_relation_count,
    }
    for table in (cols, summary):
        n = len(table["method"])
        for col, value in meta.items():
            table[col] = np.full(n, value, dtype=object if isinstance(value, str) or value is None else None)
    bootstrap = pd.DataFrame(
        {
            "step": np.full(len(resamples), np.nan if step is None else step),
            "treebank": np.full(len(resamples), treebank, dtype=object),
            "sample": np.arange(len(resamples)),
            "uas": resamples,
        }
    )
    return ProbeResult(
        scores=_frame(cols, SCORE_COLUMNS),
        summary=_frame(summary, SUMMARY_COLUMNS),
        bootstrap=bootstrap,
        n_sentences=len(keep),
        n_skipped_too_long=too_long,
        n_skipped_unaligned=unaligned,
        seconds=time.perf_counter() - t0,
    )


_DTYPES = ("float32", "float64", "bfloat16", "float16", "auto")


def load_checkpoint(path: str | Path, device="cpu", dtype: str = "float32"):
    """(model, tokenizer) from a HF checkpoint dir, masked or causal LM, with eager attention
    (attentions returned)."""
    return load_language_model(path, device=device, dtype=dtype, attn_implementation="eager")


def reachable_fractions(golds, rels, names, causal: bool, n_candidates: Sequence[int] | None = None) -> dict:
    """{(relation, direction): the fraction of its scored words whose parent that direction can
    find}: each direction's accuracy is at most this fraction. A parent can be found when it is a
    word of the attention map (not the root, not cut off by truncation: the first
    ``n_candidates`` words of each sentence, all by default); with a causal LM, whose word attends
    only to itself and words before it, dependent_to_parent can also find only parents to the left
    of their dependent, and parent_to_dependent only parents to its right. With the spec scoring, 1
    for a bidirectional model."""
    if not causal and n_candidates is None:
        return {(relation, direction): 1.0 for relation in [*names, ALL] for direction in DIRECTIONS}
    gold, rel = np.concatenate(list(golds)), np.concatenate(list(rels))
    position = np.concatenate([np.arange(len(g)) for g in golds])
    counts = [len(g) for g in golds] if n_candidates is None else n_candidates
    limit = np.concatenate([np.full(len(g), n) for g, n in zip(golds, counts)])
    scored = rel >= 0
    found = (gold >= 0) & (gold < limit)
    if causal:
        reach = {DIRECTIONS[0]: found & (gold < position), DIRECTIONS[1]: found & (gold > position)}
    else:
        reach = {DIRECTIONS[0]: found, DIRECTIONS[1]: found}
    R = len(names)
    total = np.bincount(rel[scored], minlength=R).astype(np.float64)
    out = {}
    with np.errstate(invalid="ignore", divide="ignore"):
        for direction, ok in reach.items():
            hits = np.bincount(rel[scored & ok], minlength=R)
            for r, relation in enumerate(names):
                out[(relation, direction)] = hits[r] / total[r] if total[r] else np.nan
            out[(ALL, direction)] = hits.sum() / total.sum() if total.sum() else np.nan
    return out
