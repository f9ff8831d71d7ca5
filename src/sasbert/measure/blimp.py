"""BLiMP accuracy of masked-LM checkpoints by pseudo-log-likelihood (PLL).

PLL (Salazar et al. 2020): mask each non-special piece of a sentence in turn and sum
log p(original piece | the rest). A BLiMP pair is *correct* when PLL(good) > PLL(bad) strictly
(a tie, e.g. two identical sentences, counts as wrong).

Variants
--------
``original``
    only the scored piece is masked.
``within_word_l2r`` (Kauf & Ivanova 2023)
    while scoring a piece, the *later* pieces of the same word are masked too (earlier pieces of the
    word stay visible), so a multi-piece word cannot be "read off" its own continuation.
    A word is what the fast tokenizer's ``word_ids()`` calls one: for BERT's pre-tokenizer that is a
    whitespace-separated token with punctuation split off (``can't`` -> ``can`` ``'`` ``t``). This is
    exactly what minicons (the authors' reference implementation) does.

"Non-special" pieces are those with a word id (i.e. not [CLS]/[SEP]/[PAD]); [UNK] is scored, as in
minicons.

Speed
-----
All masked copies of all (deduplicated) sentences are built at once, sorted by length into batches of
``batch_size`` rows (little padding), and run under ``torch.inference_mode``. Only the hidden state at
the masked position goes through the MLM prediction head (``model.cls`` for BERT): for small models
with a 30K vocabulary the head over every position is most of the work of a naive scorer.

Accuracy levels (summary table)
-------------------------------
* ``paradigm``: fraction of the paradigm's pairs that are correct.
* ``phenomenon``: mean of the accuracies of its paradigms (``linguistics_term`` groups; the released
  data has 13 such values, the paper speaks of 12 phenomena).
* ``overall``: mean over paradigms (the BLiMP convention).
With equal pairs per paradigm (the full set, or a subset with n <= 1000) macro and micro agree.

Subsets
-------
``pairs_per_paradigm = n`` keeps n pairs of each paradigm, chosen by a generator seeded with
``(subset_seed, crc32(UID))`` -- independent of which other paradigms are present -- and kept in file
order; ``None`` keeps all.

Tables
------
pairs:   step, UID, pairID, linguistics_term, sentence_good, sentence_bad, pll_good, pll_bad, correct
summary: step, variant, level, name, phenomenon, accuracy, n_pairs, n_paradigms
         (level in paradigm | phenomenon | overall; ``phenomenon`` is the paradigm's group for paradigm
         rows, the name itself for phenomenon rows, "" for the overall row)
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from sasbert.code_identity import code_fingerprint
from sasbert.data.blimp_pairs import load_blimp, subset_pairs
from sasbert.errors import InputError
from sasbert.measure.checkpoints import (
    SELECTION_OPTIONS,
    frame_sha256,
    load_language_model,
    load_masked_lm,
    model_kind,
    resolve_checkpoints,
    resolve_device,
    score_series,
)
from sasbert.options import add_option_flags
from sasbert.options import defaults as schema_defaults
from sasbert.options import resolve as resolve_options
from sasbert.progress import progress
from sasbert.tables import read_table

log = logging.getLogger(__name__)
BLIMP_DEFAULTS = schema_defaults("blimp")  # the config schema's: defaults live there only

VARIANTS = ("original", "within_word_l2r")
PAIR_COLUMNS = [
    "step",
    "UID",
    "pairID",
    "linguistics_term",
    "sentence_good",
    "sentence_bad",
    "pll_good",
    "pll_bad",
    "correct",
]
SUMMARY_COLUMNS = [
    "step",
    "variant",
    "level",
    "name",
    "phenomenon",
    "accuracy",
    "ci_low",
    "ci_high",
    "n_pairs",
    "n_paradigms",
]
CONFIDENCE = 0.95
LEVEL_ORDER = {"overall": 0, "phenomenon": 1, "paradigm": 2}


# ------------------------------------------------------------------------------------ masking


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


# ------------------------------------------------------------------------------------ scoring


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


# -------------------------------------------------------------------------------- aggregation


def wilson_interval(correct, n, confidence: float = CONFIDENCE) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval of a binomial proportion (correct of n), elementwise."""
    from statistics import NormalDist

    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    correct, n = np.asarray(correct, dtype=np.float64), np.asarray(n, dtype=np.float64)
    p = correct / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    # clipped: at p = 0 or 1 the bound is 0 or 1 exactly, not -2.8e-17
    return np.clip(centre - half, 0.0, 1.0), np.clip(centre + half, 0.0, 1.0)


def mean_accuracy_interval(correct, n, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Interval of the mean accuracy over paradigms, as an estimate of the mean of the paradigms'
    accuracies on all their pairs, from ``n[i]`` pairs drawn from paradigm i (``correct[i]`` right).

    Normal, with the variance of a mean of independent proportions, (1/P^2) sum_i s_i^2 / n_i.
    s_i^2 estimates p_i (1 - p_i) without bias from the paradigm's own pairs, k (n - k) / (n (n - 1)),
    where it has two or more; a paradigm with one pair has no spread of its own, and gets
    pbar (1 - pbar) over those paradigms, which bounds the mean of their p (1 - p) from above. So a
    paradigm that is all right or all wrong in the sample narrows nothing by itself, and one pair per
    paradigm still gives an interval. Where the variance is 0 all the same (every sampled pair
    right, or every one wrong), the Wilson interval of the pooled pairs stands in. Clipped to
    [0, 1]. Coverage, simulated from 1, 2, 4 and 16 pairs per paradigm drawn from 1,000:
    tests/test_blimp.py."""
    from statistics import NormalDist

    correct, n = np.asarray(correct, dtype=np.float64), np.asarray(n, dtype=np.float64)
    estimate = float(np.mean(correct / n))
    spread = np.where(n >= 2, correct * (n - correct) / (n * np.maximum(n - 1, 1)), 0.0)
    single = n == 1
    if single.any():
        pbar = correct[single].sum() / single.sum()
        spread = np.where(single, pbar * (1 - pbar), spread)
    variance = float(np.sum(spread / n)) / len(n) ** 2
    if variance == 0:
        low, high = wilson_interval(correct.sum(), n.sum(), confidence)
        return float(low), float(high)
    half = NormalDist().inv_cdf(0.5 + confidence / 2) * variance**0.5
    return max(0.0, estimate - half), min(1.0, estimate + half)


def summarize(pairs: pd.DataFrame, variant: str = BLIMP_DEFAULTS["variant"]) -> pd.DataFrame:
    """Accuracy per paradigm, per phenomenon (mean of its paradigms) and overall (mean of
    paradigms), for every step in ``pairs`` (a missing step column counts as step 0), each with a
    95% interval: Wilson for a paradigm (one binomial), ``mean_accuracy_interval`` for the means."""
    if "step" not in pairs.columns:
        pairs = pairs.assign(step=0)
    frames = []
    for step, g in pairs.groupby("step", sort=True):
        par = (
            g.groupby("UID", sort=True)
            .agg(
                accuracy=("correct", "mean"),
                n_correct=("correct", "sum"),
                n_pairs=("correct", "size"),
                phenomenon=("linguistics_term", "first"),
            )
            .reset_index()
            .rename(columns={"UID": "name"})
        )
        par["level"] = "paradigm"
        par["n_paradigms"] = 1
        par["ci_low"], par["ci_high"] = wilson_interval(par["n_correct"], par["n_pairs"])
        phe = (
            par.groupby("phenomenon", sort=True)
            .agg(accuracy=("accuracy", "mean"), n_pairs=("n_pairs", "sum"), n_paradigms=("name", "size"))
            .reset_index()
        )
        intervals = {
            name: mean_accuracy_interval(group["n_correct"], group["n_pairs"])
            for name, group in par.groupby("phenomenon", sort=True)
        }
        phe["ci_low"] = [intervals[name][0] for name in phe["phenomenon"]]
        phe["ci_high"] = [intervals[name][1] for name in phe["phenomenon"]]
        phe["name"] = phe["phenomenon"]
        phe["level"] = "phenomenon"
        low, high = mean_accuracy_interval(par["n_correct"], par["n_pairs"])
        ove = pd.DataFrame(
            [
                {
                    "name": "overall",
                    "phenomenon": "",
                    "level": "overall",
                    "accuracy": par["accuracy"].mean(),
                    "ci_low": low,
                    "ci_high": high,
                    "n_pairs": int(par["n_pairs"].sum()),
                    "n_paradigms": len(par),
                }
            ]
        )
        t = pd.concat([ove, phe, par], ignore_index=True)
        t["step"] = step
        frames.append(t)
    out = pd.concat(frames, ignore_index=True)
    out["variant"] = variant
    out["step"] = out["step"].astype("int64")
    out["accuracy"] = out["accuracy"].astype("float64")
    out["n_pairs"] = out["n_pairs"].astype("int64")
    out["n_paradigms"] = out["n_paradigms"].astype("int64")
    return out[SUMMARY_COLUMNS]


def _sort_summary(df: pd.DataFrame) -> pd.DataFrame:
    key = df["level"].map(LEVEL_ORDER).fillna(9)
    return (
        df.assign(_k=key)
        .sort_values(["step", "variant", "_k", "name"], kind="stable")
        .drop(columns="_k")
        .reset_index(drop=True)
    )


def gather(inputs: Sequence[str | Path]) -> pd.DataFrame:
    """Stack per-checkpoint summary tables into one per-run table sorted by step."""
    if not inputs:
        raise InputError("gather: no input tables")
    frames = []
    for path in inputs:
        df = read_table(path, SUMMARY_COLUMNS, "BLiMP summary")
        frames.append(df[SUMMARY_COLUMNS].assign(_src=str(path)))
    out = pd.concat(frames, ignore_index=True)
    dup = out.duplicated(["step", "variant", "level", "name"], keep=False)
    if dup.any():
        d = out[dup]
        first = d.iloc[0]
        srcs = sorted(set(d[(d.step == first.step) & (d.variant == first.variant)]["_src"]))
        raise InputError(f"step {first.step} ({first.variant}) appears more than once: {', '.join(srcs)}")
    return _sort_summary(out.drop(columns="_src"))


# -------------------------------------------------------------------------------- checkpoints


# ------------------------------------------------------------------------------------ the CLI


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="blimp_command", required=True, metavar="COMMAND")
    sc = sub.add_parser(
        "score",
        help="score checkpoint(s) on BLiMP",
        description="Score one checkpoint or a series (several dirs / globs) on "
        "BLiMP by PLL; all steps go into the same two tables.",
    )
    sc.add_argument(
        "--checkpoint",
        nargs="+",
        required=True,
        metavar="DIR",
        help="HF masked-LM dir(s) or glob(s) (e.g. 'run/checkpoints/step-*')",
    )
    sc.add_argument("--data-dir", required=True, help="dir of BLiMP *.jsonl / *.jsonl.gz files")
    sc.add_argument("--out-pairs", required=True, help="per-pair parquet")
    sc.add_argument("--out-summary", required=True, help="accuracy summary parquet")
    sc.add_argument(
        "--step",
        type=int,
        nargs="+",
        default=None,
        help="step(s), one per checkpoint (default: read from the dir name: step-400, step_20k, ...)",
    )
    add_option_flags(
        sc,
        "blimp",
        [
            ("--pairs-per-paradigm", {"type": _int_or_none}, "n pairs per paradigm ('all' or 'null': all)"),
            ("--subset-seed", {"type": int}, ""),
            ("--variant", {"choices": VARIANTS}, ""),
            ("--batch-size", {"type": int}, "masked copies per forward pass"),
            (
                "--every-steps",
                {"type": _int_or_none, "metavar": "N"},
                "score only the checkpoints whose step is a multiple of N, and the first and last of the "
                "series ('all' or 'null': every checkpoint)",
            ),
        ],
    )
    sc.add_argument("--device", default="auto", help="auto (cuda when available), cpu, cuda:0 ...")
    sc.add_argument(
        "--cache-dir",
        default=None,
        help="keep each checkpoint's pair scores here, with what they were computed from (the "
        "scoring code's fingerprint, the options, the pairs), and reuse those computed from the "
        "same and newer than the checkpoint (resume a job stopped part-way through a series)",
    )
    ga = sub.add_parser("gather", help="stack per-checkpoint summaries into one table")
    ga.add_argument("--inputs", nargs="+", required=True, help="summary parquet files")
    ga.add_argument("--out", required=True, help="output parquet")


def thin_series(checkpoints: list[tuple[Path, int]], every_steps: int | None) -> list[tuple[Path, int]]:
    """The (folder, step) pairs, sorted by step, whose step is a multiple of ``every_steps``, and
    the first and last (a run's start and end are always scored); all of them for None."""
    if every_steps is None:
        return checkpoints
    if every_steps < 1:
        raise InputError(f"--every-steps must be >= 1, got {every_steps}")
    last = len(checkpoints) - 1
    return [c for i, c in enumerate(checkpoints) if i in (0, last) or c[1] % every_steps == 0]


def _int_or_none(text: str) -> int | None:
    if text.lower() in ("null", "none", "all"):
        return None
    return int(text)


def run(args: argparse.Namespace) -> None:
    from sasbert.atomic import write_parquet

    if args.blimp_command == "gather":
        write_parquet(gather(args.inputs), args.out)
        return
    opts = resolve_options(args, "blimp")
    if opts["batch_size"] < 1:
        raise InputError(f"--batch-size must be >= 1, got {opts['batch_size']}")
    checkpoints = thin_series(resolve_checkpoints(args.checkpoint, args.step), opts["every_steps"])
    kinds = {model_kind(path) for path, _ in checkpoints}
    if len(kinds) > 1:
        raise InputError("the checkpoints mix masked and causal LMs: score each kind as its own series")
    scorer_class, method = (CausalScorer, CAUSAL_METHOD) if kinds == {"causal"} else (PLLScorer, opts["variant"])
    pairs = subset_pairs(load_blimp(args.data_dir), opts["pairs_per_paradigm"], opts["subset_seed"])
    log.info(
        "BLiMP: %d pairs from %d paradigms; %d checkpoint(s); %s",
        len(pairs),
        pairs["UID"].nunique(),
        len(checkpoints),
        f"PLL variant {method}" if method != CAUSAL_METHOD else "causal LM: summed token log-probability",
    )

    def score(path: Path, step: int) -> dict:
        scorer = scorer_class.from_pretrained(path, device=args.device, batch_size=opts["batch_size"], progress=True)
        scored = score_pairs(scorer, pairs, method, step)
        log.info("step %d (%s): overall accuracy %.4f", step, path, scored.groupby("UID")["correct"].mean().mean())
        return {"pairs": scored}

    identity = {
        "code": code_fingerprint("measure.blimp"),
        "options": {k: v for k, v in opts.items() if k not in SELECTION_OPTIONS},
        "method": method,
        "pairs": frame_sha256(pairs),
    }
    all_pairs = score_series(checkpoints, score, ["pairs"], args.cache_dir, log, identity)["pairs"]
    summary = _sort_summary(summarize(all_pairs, method))
    write_parquet(all_pairs, args.out_pairs)
    write_parquet(summary, args.out_summary)
