"""Scoring BLiMP sentences: the masked LM's pseudo-log-likelihood (PLL, both variants) and a causal LM's log-probability, and a pair's verdict."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from sasbert.errors import InputError
from sasbert.measure.blimp.tables import BLIMP_DEFAULTS, PAIR_COLUMNS
from sasbert.measure.checkpoints import (
    load_language_model,
    load_masked_lm,
    resolve_device,
)
from sasbert.progress import progress

VARIANTS = ("original", "within_word_l2r")


def mask_rows(ids: np.ndarray, wids: np.ndarray, pos: np.ndarray, variant: str, mask_id: int) -> np.ndarray:
    """Masked copies: row r of ``ids`` with position ``pos[r]`` masked (and, for
    ``within_word_l2r``, every later position carrying the same word id). ``wids`` holds word ids,
    -1 for special pieces/padding."""
    out = ids.copy()
    rows = np.arange(len(pos))
    if variant == "original":
        out[rows, pos] = mask_id
    elif variant == "within_word_l2r":
        w = wids[rows, pos][:, None]
        cols = np.arange(ids.shape[1])[None, :]
        same_word_later = (wids == w) & (cols > pos[:, None]) & (w >= 0)
        out[same_word_later] = mask_id
        out[rows, pos] = mask_id
    else:
        raise ValueError(f"unknown PLL variant {variant!r} (choose from {', '.join(VARIANTS)})")
    return out


def masked_copies(tokenizer, sentence: str, variant: str = BLIMP_DEFAULTS["variant"]):
    """The masked inputs used to score one sentence: list of (masked ids, position, target id)."""
    enc = tokenizer(sentence)
    ids = np.asarray(enc["input_ids"], dtype=np.int64)
    wids = np.asarray([-1 if w is None else w for w in enc.word_ids()], dtype=np.int64)
    pos = np.flatnonzero(wids >= 0)
    out = mask_rows(np.tile(ids, (len(pos), 1)), np.tile(wids, (len(pos), 1)), pos, variant, tokenizer.mask_token_id)
    return [(out[i].tolist(), int(p), int(ids[p])) for i, p in enumerate(pos)]


def _split_model(model):
    """(encoder, head) so that head(encoder(...)[0][rows, pos]) are the MLM logits; None if the
    architecture is not known (then the full model runs and logits are gathered)."""
    base = getattr(model, getattr(model, "base_model_prefix", ""), None)
    for name in ("cls", "lm_head"):  # BERT-like, RoBERTa-like
        head = getattr(model, name, None)
        if base is not None and head is not None:
            return base, head
    return None


class SentenceScorer:
    """What the two sentence scorers share: the model in eval mode on its device, the batch size."""

    def __init__(
        self,
        model,
        tokenizer,
        device: str | None = None,
        batch_size: int = BLIMP_DEFAULTS["batch_size"],
        progress: bool = False,
    ):
        import torch

        if batch_size < 1:
            raise InputError(f"batch size must be >= 1, got {batch_size}")
        self.torch = torch
        self.device = resolve_device(device)
        self.model = model.to(self.device).eval()
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        self.progress = progress


class PLLScorer(SentenceScorer):
    """Batched pseudo-log-likelihood scorer for a HF masked LM."""

    def __init__(self, model, tokenizer, **kw):
        if not getattr(tokenizer, "is_fast", False):
            raise InputError("PLL scoring needs a fast tokenizer (for word ids)")
        super().__init__(model, tokenizer, **kw)
        self.max_len = getattr(model.config, "max_position_embeddings", None)
        self.mask_id = tokenizer.mask_token_id
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        if self.mask_id is None:
            raise InputError("the tokenizer has no mask token")
        self._split = _split_model(model)

    @classmethod
    def from_pretrained(cls, checkpoint: str | Path, **kw) -> PLLScorer:
        model, tokenizer = load_masked_lm(checkpoint)
        return cls(model, tokenizer, **kw)

    def _encode(self, sentences: Sequence[str]):
        for i, s in enumerate(sentences):
            if not isinstance(s, str) or not s.strip():
                raise InputError(f"sentence {i} is empty: {s!r}")
        enc = self.tokenizer(list(sentences), add_special_tokens=True)
        ids = [np.asarray(x, dtype=np.int64) for x in enc["input_ids"]]
        wids = [
            np.asarray([-1 if w is None else w for w in enc.word_ids(i)], dtype=np.int64) for i in range(len(sentences))
        ]
        for i, (s, w) in enumerate(zip(sentences, wids)):
            if not (w >= 0).any():
                raise InputError(f"sentence {i} has no piece to score: {s!r}")
            if self.max_len is not None and len(w) > self.max_len:
                raise InputError(
                    f"sentence {i} is {len(w)} pieces long, more than the model's {self.max_len}: {s[:60]!r}"
                )
        return ids, wids

    def score(self, sentences: Sequence[str], variant: str = BLIMP_DEFAULTS["variant"]) -> np.ndarray:
        """Summed PLL (natural log) of each sentence; identical sentences are scored once."""
        if variant not in VARIANTS:
            raise InputError(f"unknown PLL variant {variant!r} (choose from {', '.join(VARIANTS)})")
        if len(sentences) == 0:
            return np.zeros(0)
        uniq = list(dict.fromkeys(sentences))
        ids, wids = self._encode(uniq)
        lengths = np.array([len(x) for x in ids])
        L = int(lengths.max())
        ID = np.full((len(uniq), L), self.pad_id, dtype=np.int64)
        W = np.full((len(uniq), L), -1, dtype=np.int64)
        for i, (a, w) in enumerate(zip(ids, wids)):
            ID[i, : len(a)] = a
            W[i, : len(w)] = w
        # one item per (sentence, scored position); sorted by length so batches pad little
        sent, pos = np.nonzero(W >= 0)
        order = np.argsort(lengths[sent], kind="stable")
        sent, pos = sent[order], pos[order]
        target = ID[sent, pos]
        logp = np.empty(len(sent), dtype=np.float64)

        torch = self.torch
        starts = range(0, len(sent), self.batch_size)
        if self.progress:
            starts = progress(starts, desc=f"PLL {variant}", unit="batch", leave=False)
        with torch.inference_mode():
            for s in starts:
                e = min(s + self.batch_size, len(sent))
                bs, bp = sent[s:e], pos[s:e]
                lb = int(lengths[bs].max())
                x = mask_rows(ID[bs, :lb], W[bs, :lb], bp, variant, self.mask_id)
                attn = (np.arange(lb)[None, :] < lengths[bs][:, None]).astype(np.int64)
                logp[s:e] = self._forward(x, attn, bp, target[s:e])
        totals = np.bincount(sent, weights=logp, minlength=len(uniq))
        by_sentence = dict(zip(uniq, totals))
        return np.array([by_sentence[s] for s in sentences], dtype=np.float64)

    def _forward(self, x, attn, pos, target) -> np.ndarray:
        torch = self.torch
        dev = self.device
        input_ids = torch.from_numpy(x).to(dev, non_blocking=True)
        attention = torch.from_numpy(attn).to(dev, non_blocking=True)
        rows = torch.arange(len(pos), device=dev)
        p = torch.from_numpy(pos).to(dev)
        if self._split is not None:
            base, head = self._split
            hidden = base(input_ids=input_ids, attention_mask=attention)[0]
            logits = head(hidden[rows, p])
        else:
            logits = self.model(input_ids=input_ids, attention_mask=attention).logits[rows, p]
        logits = logits.float()
        t = torch.from_numpy(target).to(dev)
        # log p(target) = logit[target] - logsumexp(logits): no full log-softmax array written
        lp = logits.gather(1, t[:, None])[:, 0] - torch.logsumexp(logits, dim=-1)
        return lp.double().cpu().numpy()


# A causal LM's sentence score, as the tables name it (their "variant" column).
CAUSAL_METHOD = "causal_logprob"


class CausalScorer(SentenceScorer):
    """Summed token log-probability of each sentence under a HF causal LM (GPT-2, GPT-NeoX /
    Pythia, OLMo, Llama): log p(t_1 | BOS) + log p(t_2 | BOS t_1) + ..., the standard BLiMP score of
    a causal LM. The sentence follows the tokenizer's BOS token (its EOS where it has no BOS, as
    GPT-2's); with neither, the first token has no context and is not scored."""

    def __init__(self, model, tokenizer, **kw):
        super().__init__(model, tokenizer, **kw)
        self.start_id = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
        pad = tokenizer.pad_token_id
        self.pad_id = pad if pad is not None else (self.start_id if self.start_id is not None else 0)

    @classmethod
    def from_pretrained(cls, checkpoint: str | Path, **kw) -> CausalScorer:
        model, tokenizer = load_language_model(checkpoint, kind="causal")
        return cls(model, tokenizer, **kw)

    def score(self, sentences: Sequence[str], variant: str = CAUSAL_METHOD) -> np.ndarray:
        """Summed log-probability (natural log) of each sentence; identical sentences scored once."""
        torch = self.torch
        if len(sentences) == 0:
            return np.zeros(0)
        for i, s in enumerate(sentences):
            if not isinstance(s, str) or not s.strip():
                raise InputError(f"sentence {i} is empty: {s!r}")
        uniq = list(dict.fromkeys(sentences))
        prefix = [] if self.start_id is None else [self.start_id]
        ids = [prefix + self.tokenizer(s, add_special_tokens=False)["input_ids"] for s in uniq]
        order = np.argsort([len(x) for x in ids], kind="stable")
        totals = np.zeros(len(uniq), dtype=np.float64)
        starts = range(0, len(uniq), self.batch_size)
        if self.progress:
            starts = progress(starts, desc="log-prob", unit="batch", leave=False)
        with torch.inference_mode():
            for s in starts:
                rows = order[s : s + self.batch_size]
                width = max(len(ids[r]) for r in rows)
                x = np.full((len(rows), width), self.pad_id, dtype=np.int64)
                attention = np.zeros((len(rows), width), dtype=np.int64)
                for i, r in enumerate(rows):
                    x[i, : len(ids[r])] = ids[r]
                    attention[i, : len(ids[r])] = 1
                input_ids = torch.from_numpy(x).to(self.device)
                mask = torch.from_numpy(attention).to(self.device)
                logits = self.model(input_ids=input_ids, attention_mask=mask).logits[:, :-1].float()
                target = input_ids[:, 1:]
                token_logp = logits.gather(2, target[..., None])[..., 0] - torch.logsumexp(logits, dim=-1)
                totals[rows] = (token_logp * mask[:, 1:]).sum(1).double().cpu().numpy()
        by_sentence = dict(zip(uniq, totals))
        return np.array([by_sentence[s] for s in sentences], dtype=np.float64)


def score_pairs(scorer: PLLScorer | CausalScorer, pairs: pd.DataFrame, variant: str, step: int) -> pd.DataFrame:
    """Per-pair table with the sentences' scores (PLLs, or a causal LM's log-probabilities, in the
    pll_* columns) and decisions (all sentences scored in one pass)."""
    n = len(pairs)
    sentences = pairs["sentence_good"].tolist() + pairs["sentence_bad"].tolist()
    pll = scorer.score(sentences, variant=variant)
    out = pairs[["UID", "pairID", "linguistics_term", "sentence_good", "sentence_bad"]].copy()
    out.insert(0, "step", np.int64(step))
    out["pll_good"] = pll[:n]
    out["pll_bad"] = pll[n:]
    out["correct"] = out["pll_good"] > out["pll_bad"]
    return out[PAIR_COLUMNS].reset_index(drop=True)
