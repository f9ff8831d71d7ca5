"""Attention-head UAS probe (Clark et al. 2019, as ported by Chen et al. 2024): see docs/method.md,
"UAS probe".

For one masked-LM checkpoint and one gold CoNLL-U treebank, every attention head of every layer is
read as a dependency parser, in two directions:

* ``dependent_to_parent``: the predicted parent of word i is argmax_j W[i, j]
  (the dependent attends to its parent);
* ``parent_to_dependent``: the predicted parent of word i is argmax_j W[j, i]
  (the parent attends to its dependent);

where W is the *word-level* attention of that head: attention *to* a word is the SUM over its pieces
(columns), attention *from* a word is the MEAN over its pieces (rows); [CLS]/[SEP] (all special
tokens) are dropped and the diagonal is zeroed. Ties in an argmax go to the lowest word index.

Scores, per (layer, head, direction, relation): ``correct``/``count`` = ``accuracy`` (fraction of
words of that relation whose predicted parent is the gold parent) and ``soft_score`` (mean word-level
attention weight on the gold parent in that direction: W[i, parent] resp. W[parent, i]). Layers and
heads are numbered from 0. Relation "all" pools every scored word.

The summary has, for ``method == "attention"``: the best (layer, head, direction) per relation and
for "all" (the paper's UAS; ties go to the lowest layer, then head, then dependent_to_parent), and a
"mean" row (mean of the per-relation best accuracies over relations with at least
``min_relation_count`` words); for ``method == "offset"`` the same rows for the fixed-offset
baselines (predicted parent of word i = word i + offset, offsets -3..+3 without 0; an offset that
falls outside the sentence is simply wrong, unlike Clark et al.'s clamping to the sentence edge).

Which words are scored: every word with a parent word (the root has none), minus
* labelled treebanks (UD): words whose relation is in ``excluded_relations`` (default root, punct);
  the relation is the UD deprel with its subtype stripped (``nmod:poss`` -> ``nmod``), so relations
  are the universal ones and subtype-rich treebanks pool their counts;
* unlabelled treebanks (every DEPREL is ``_``, e.g. the NLTK WSJ sample with PTB tags in XPOS):
  words whose XPOS is a punctuation tag (``punct_tags``); only relation "all" is scored.
Sentences longer than ``max_pieces`` pieces (with [CLS]/[SEP]), or with a word that the tokenizer
maps to no piece at all, are skipped and counted (``n_skipped_too_long``, ``n_skipped_unaligned``).
The offset baselines are computed on exactly the scored words, so they are comparable.

Scoring "authors" (``probe.scoring: authors``) reproduces the authors' attention_depparse_probe.py
and the truncation of their extract_attention_pt.py, on the same word-level maps:

* every word is scored, the root and punctuation too, under its relation as written (subtypes
  kept); a head predicts only words of the sentence (their argmax + 1: the ROOT, index 0, is never
  predicted), so every root word is a miss;
* a sentence longer than ``max_pieces`` is cut (``truncate``), not skipped: attention scores, and
  predicts, only the words whose pieces all fit; the offsets score every word;
* their "poss" special case (``poss_limits``);
* a relation a predictor gets right on every word scores 0 (``authors_accuracy``);
* offsets -3..+2 (0 included), the prediction clamped to the root and the last word;
* ties go to the highest (layer, head, direction) and offset (their ``sorted(...)[-1]``);
* "mean" is over their Table 1's relations: not root or punct, at least ``min_relation_count``
  words in the treebank.

Speed: sentences are tokenized in one call, sorted by length and batched, the encoder (without the
MLM head, which the probe does not need) runs under ``torch.inference_mode`` on the GPU when there is
one, and word pooling is two batched matmuls over all layers and heads at once (W = Mean @ A @ Sum,
with a 0/1 piece->word matrix; pooling costs ~pieces^3 per sentence, so a batch is pooled in chunks
of similar length); argmaxes and the per-relation tallies (a float64 matmul with a one-hot relation
matrix) stay on the device, and only the (layers x heads x 2 x relations) tallies come back.
Matmuls rather than scatter-adds keep GPU results deterministic.

Outputs (parquet, written atomically), one pair per checkpoint:

* scores: ``step, checkpoint, treebank, method, layer, head, direction, offset, relation, correct,
  count, accuracy, soft_score``; ``method`` "attention" rows (every layer x head x direction x
  relation, "all" included; ``offset`` null) and "offset" rows (every offset x relation; ``layer``,
  ``head``, ``direction``, ``soft_score`` null).
* summary: ``step, checkpoint, treebank, method, relation, layer, head, direction, offset, correct,
  count, accuracy, soft_score, max_soft_score, n_relations, n_sentences, n_skipped_too_long,
  n_skipped_unaligned, max_pieces, min_relation_count``; per method one row per relation, one for
  "all" and (labelled treebanks) one for "mean" (``n_relations`` relations averaged; ``correct``
  null). ``soft_score`` is the chosen head's, ``max_soft_score`` the best soft score of any head.
  ``n_sentences`` counts the sentences probed, the ``n_skipped_*`` columns those left out.

``gather`` stacks such tables (any number of steps of one run) into one, sorted by step.
``checkpoint`` and ``treebank`` hold base names only, so outputs do not depend on where files are.

CLI::

    sasbert probe score --checkpoint DIR [DIR|GLOB ...] --treebank FILE \\
        --out-scores X.parquet --out-summary Y.parquet [--cache-dir D] [--step N ...] [--max-pieces 128] ...
    sasbert probe gather --inputs A.parquet B.parquet ... --out Z.parquet
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from sasbert import textio, treebank
from sasbert.atomic import write_parquet
from sasbert.checkpoints import (
    SELECTION_OPTIONS,
    architecture_kind,
    load_language_model,
    resolve_checkpoints,
    resolve_device,
    score_series,
)
from sasbert.code_identity import code_fingerprint
from sasbert.errors import InputError
from sasbert.hub import content_id
from sasbert.options import add_option_flags
from sasbert.options import defaults as schema_defaults
from sasbert.options import resolve as resolve_options
from sasbert.tables import read_table

log = logging.getLogger(__name__)

DIRECTIONS = ("dependent_to_parent", "parent_to_dependent")
PROBE_DEFAULTS = schema_defaults("probe")  # the config schema's: defaults live there only
DEFAULT_EXCLUDED_RELATIONS = ("root", "punct")
# PTB punctuation tags (as excluded in the usual WSJ dependency evaluations).
PTB_PUNCT_TAGS = ("``", "''", ",", ".", ":", "-LRB-", "-RRB-", "#", "$")
OFFSETS = (-3, -2, -1, 1, 2, 3)
SCORINGS = ("spec", "authors")
# The authors' attention_depparse_probe.py (scoring "authors"): its offsets are range(-3, 3), its
# Table 1 leaves out these relations, and its "poss" special case looks at these next words.
AUTHORS_OFFSETS = (-3, -2, -1, 0, 1, 2)
AUTHORS_TABLE_EXCLUDED = ("root", "punct")
POSS_RELATION = "poss"
POSS_MARKERS = ("'s", "s'")
# The columns read from a parquet treebank in the layout of the authors' WSJ set.
PARQUET_COLUMNS = ("words", "heads", "relns")
ALL = "all"
MEAN = "mean"

SCORE_COLUMNS = [
    "step",
    "checkpoint",
    "treebank",
    "method",
    "layer",
    "head",
    "direction",
    "offset",
    "relation",
    "correct",
    "count",
    "accuracy",
    "soft_score",
]
SUMMARY_COLUMNS = [
    "step",
    "checkpoint",
    "treebank",
    "method",
    "relation",
    "layer",
    "head",
    "direction",
    "offset",
    "correct",
    "count",
    "accuracy",
    "ci_low",
    "ci_high",
    "soft_score",
    "max_soft_score",
    "reachable",
    "n_relations",
    "n_sentences",
    "n_skipped_too_long",
    "n_skipped_unaligned",
    "max_pieces",
    "min_relation_count",
]
# The summary's columns that describe the run rather than a row (filled per table by score_model).
SUMMARY_METADATA = (
    "step",
    "checkpoint",
    "treebank",
    "n_sentences",
    "n_skipped_too_long",
    "n_skipped_unaligned",
    "max_pieces",
    "min_relation_count",
)
CONFIDENCE = 0.95
BOOTSTRAP_SAMPLES = 2000
BOOTSTRAP_SEED = 0  # the intervals are reproducible
_INT_COLUMNS = ("step", "layer", "head", "offset", "correct", "n_relations")


# ----------------------------------------------------------------------------------------------
# Treebank


@dataclasses.dataclass(frozen=True)
class Sentence:
    """One gold sentence: words only (no multiword-token ranges, no empty nodes)."""

    words: tuple[str, ...]
    heads: tuple[int, ...]  # 1-based gold head per word; 0 = root
    relations: tuple[str | None, ...]  # universal relation (subtype stripped); None if unlabelled
    xpos: tuple[str | None, ...]
    line: int  # line of the sentence's first line in the file (1-based); a parquet's row (0-based)
    labels: tuple[str | None, ...] | None = None  # the relations as written (subtypes kept); None: = relations

    def full_labels(self) -> tuple[str | None, ...]:
        return self.relations if self.labels is None else self.labels


def _sentence(path: Path, start: int, lines: list[str]) -> Sentence | None:
    """A block read by the project's one CoNLL-U reader (``sasbert.treebank``); relations are the
    universal part of the UD deprel (subtypes stripped: nmod:poss -> nmod)."""
    tree = treebank.read_sentence(lines, path, start)
    if tree is None:
        return None
    return Sentence(tree.words, tree.heads, _universal(tree.deprels), tree.xpos, start, tree.deprels)


def _universal(labels) -> tuple[str | None, ...]:
    return tuple(None if rel is None else rel.split(":")[0] for rel in labels)


def read_treebank(path: str | Path, max_sentences: int | None = None) -> list[Sentence]:
    """Read a CoNLL-U treebank (plain or gzip), or a parquet one (``read_parquet_treebank``),
    validating heads; errors name file and line (row)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: treebank file not found")
    if path.suffix == ".parquet":
        return read_parquet_treebank(path, max_sentences)
    sentences: list[Sentence] = []
    labelled_line = unlabelled_line = None
    for start, lines in textio.blocks(path):
        if max_sentences is not None and len(sentences) >= max_sentences:
            break
        sentence = _sentence(path, start, lines)
        if sentence is None:
            continue
        for rel in sentence.relations:
            if rel is None and unlabelled_line is None:
                unlabelled_line = sentence.line
            if rel is not None and labelled_line is None:
                labelled_line = sentence.line
        sentences.append(sentence)
    if not sentences:
        raise InputError(f"{path}: no sentences")
    if labelled_line is not None and unlabelled_line is not None:
        raise InputError(
            f"{path}:{unlabelled_line}: sentence with a word without DEPREL, but the sentence "
            f"at line {labelled_line} has relations (all or none must be labelled)"
        )
    return sentences


def read_parquet_treebank(path: str | Path, max_sentences: int | None = None) -> list[Sentence]:
    """A parquet treebank in the layout of the authors' WSJ set (angie-chen55/wsj-dep-parses-1k):
    one row per sentence with list columns ``words`` (strings), ``heads`` (integers, 1-based, 0 =
    root) and ``relns`` (relation labels, kept as written); other columns are ignored. Rows are
    numbered from 0 in errors, as pandas and the datasets viewer number them; the heads must form a
    tree (``treebank.check_tree``, the CoNLL-U reader's rule)."""
    path = Path(path)
    table = read_table(path, PARQUET_COLUMNS, "treebank")
    if max_sentences is not None:
        table = table.head(max_sentences)
    sentences = []
    for row, values in enumerate(zip(*(table[c] for c in PARQUET_COLUMNS))):
        columns = {}
        for name, value in zip(PARQUET_COLUMNS, values):
            if isinstance(value, (str, bytes)) or not hasattr(value, "__len__"):
                raise InputError(f"{path}: row {row}: column '{name}' is not a list ({value!r})")
            columns[name] = list(value)
        words, heads, labels = columns["words"], columns["heads"], columns["relns"]
        if not words:
            raise InputError(f"{path}: row {row}: sentence has no words")
        for name in ("heads", "relns"):
            if len(columns[name]) != len(words):
                raise InputError(f"{path}: row {row}: {len(words)} words but {len(columns[name])} {name}")
        for k, (word, head, label) in enumerate(zip(words, heads, labels), start=1):
            if not isinstance(word, str) or not word:
                raise InputError(f"{path}: row {row}, word {k}: words entry {word!r} is not a non-empty string")
            # a float column (pandas writes one where a value is missing) holds integers too
            if isinstance(head, (bool, np.bool_)) or not (
                isinstance(head, (int, np.integer))
                or (isinstance(head, (float, np.floating)) and float(head).is_integer())
            ):
                raise InputError(f"{path}: row {row}, word {k}: heads entry {head} is not an integer")
            if not isinstance(label, str) or not label:
                raise InputError(f"{path}: row {row}, word {k}: relns entry {label!r} is not a non-empty string")
        heads = [int(h) for h in heads]
        treebank.check_tree(heads, [f"row {row}, word {k}" for k in range(1, len(words) + 1)], path)
        labels = tuple(labels)
        sentences.append(Sentence(tuple(words), tuple(heads), _universal(labels), (None,) * len(words), row, labels))
    if not sentences:
        raise InputError(f"{path}: no sentences")
    return sentences


def is_labelled(sentences: Sequence[Sentence]) -> bool:
    return any(rel is not None for s in sentences for rel in s.relations)


def scored_relations(
    sentence: Sentence,
    labelled: bool,
    excluded_relations: Iterable[str] = DEFAULT_EXCLUDED_RELATIONS,
    punct_tags: Iterable[str] = PTB_PUNCT_TAGS,
) -> list[str | None]:
    """Relation name under which each word is scored, None if it is not scored.

    The root has no parent word and is never scored. Labelled: words whose (subtype-stripped)
    relation is excluded are not scored. Unlabelled: punctuation by XPOS tag is not scored and every
    other word is scored under "all".
    """
    excluded, punct = set(excluded_relations), set(punct_tags)
    out: list[str | None] = []
    for head, rel, tag in zip(sentence.heads, sentence.relations, sentence.xpos):
        if head == 0:
            out.append(None)
        elif labelled:
            out.append(None if rel in excluded else rel)
        else:
            out.append(None if tag in punct else ALL)
    return out


def authors_relations(sentence: Sentence, labelled: bool) -> list[str]:
    """Scoring "authors": every word is scored, the root and punctuation too, under its relation
    as written (``nmod:poss`` stays ``nmod:poss``), or under "all" in an unlabelled treebank."""
    return list(sentence.full_labels()) if labelled else [ALL] * len(sentence.words)


def poss_limits(sentence: Sentence, n_candidates: int) -> np.ndarray:
    """The authors' "poss" special case, per word: where it may apply, the sentence's word count n,
    else 0. It applies to word i (1-based) labelled exactly "poss" whose next word is 's or s' when
    its predicted parent p < n; the word is then right when the NEXT word's prediction is i's gold
    parent. Their condition reads ``i < len(words) and words[i + 1] == "'s" or words[i + 1] ==
    "s'"``, which Python groups as ``(a and b) or c``; ``a`` (i below the word count) always holds,
    so the grouping changes nothing, and its missing bound on i + 1 makes their code fail on a
    "poss" last word. Here the rule does not apply where the next word has no prediction: the last
    word, or the last of the ``n_candidates`` words a truncated sentence keeps."""
    n = len(sentence.words)
    labels, words = sentence.full_labels(), sentence.words
    out = np.zeros(n, dtype=np.int64)
    for i in range(min(n, n_candidates) - 1):
        if labels[i] == POSS_RELATION and words[i + 1] in POSS_MARKERS:
            out[i] = n
    return out


# ----------------------------------------------------------------------------------------------
# Tokenization: pieces -> words


def encode_sentences(tokenizer, sentences: Sequence[Sentence]) -> list[tuple[list[int], np.ndarray] | None]:
    """Token ids (with special tokens) and the word index of each piece (-1: special token).

    Words are joined by single spaces and the string is tokenized as a whole; each piece belongs to
    the word its first character falls in (or, for a piece that starts in the space before a word,
    as byte-level BPE pieces do, the next word). None for a sentence with a word without pieces.
    """
    texts = [" ".join(s.words) for s in sentences]
    out: list[tuple[list[int], np.ndarray] | None] = []
    if not sentences:
        return out
    if getattr(tokenizer, "is_fast", False):
        enc = tokenizer(
            texts,
            add_special_tokens=True,
            return_offsets_mapping=True,
            return_special_tokens_mask=True,
            return_attention_mask=False,
            return_token_type_ids=False,
            truncation=False,
            verbose=False,
        )
        # Vectorized over the whole treebank: a character -> word map of all texts laid end to
        # end, where each word owns the space before it (a piece starting there belongs to it).
        n_words = np.array([len(s.words) for s in sentences], dtype=np.int64)
        word_base = np.concatenate([[0], np.cumsum(n_words)])
        spans = np.array([len(w) + (k > 0) for s in sentences for k, w in enumerate(s.words)], dtype=np.int64)
        char_word = np.repeat(np.arange(len(spans)), spans)
        text_base = np.concatenate([[0], np.cumsum([len(t) for t in texts], dtype=np.int64)])
        lengths = np.array([len(ids) for ids in enc["input_ids"]], dtype=np.int64)
        piece_sentence = np.repeat(np.arange(len(texts)), lengths)
        starts = np.fromiter(
            (o[0] for offsets in enc["offset_mapping"] for o in offsets), dtype=np.int64, count=int(lengths.sum())
        )
        special = np.fromiter(
            (m for mask in enc["special_tokens_mask"] for m in mask), dtype=bool, count=int(lengths.sum())
        )
        text_len = np.diff(text_base)[piece_sentence]
        global_char = text_base[piece_sentence] + np.clip(starts, 0, np.maximum(text_len - 1, 0))
        piece_word = np.where(special, -1, char_word[global_char] - word_base[piece_sentence])
        # a sentence where some word got no piece cannot be pooled: None
        has_piece = np.bincount((piece_word + word_base[piece_sentence])[~special], minlength=int(word_base[-1])) > 0
        word_sentence = np.repeat(np.arange(len(texts)), n_words)
        missing = np.bincount(word_sentence[~has_piece], minlength=len(texts))
        for k, part in enumerate(np.split(piece_word, np.cumsum(lengths)[:-1])):
            out.append((enc["input_ids"][k], part) if missing[k] == 0 else None)
    else:  # slow tokenizer: tokenize word by word (same pieces as whole-string for WordPiece)
        for sentence in sentences:
            ids, owner = [], []
            for w, word in enumerate(sentence.words):
                word_ids = tokenizer.convert_tokens_to_ids(tokenizer.tokenize(word))
                ids += word_ids
                owner += [w] * len(word_ids)
            full = tokenizer.build_inputs_with_special_tokens(ids)
            special = tokenizer.get_special_tokens_mask(ids, already_has_special_tokens=False)
            piece_word = np.full(len(full), -1, dtype=np.int64)
            it = iter(owner)
            for k, is_special in enumerate(special):
                if not is_special:
                    piece_word[k] = next(it)
            out.append(_checked(list(full), piece_word, len(sentence.words)))
    return out


def _checked(ids, piece_word, n_words):
    if (piece_word >= n_words).any():
        return None
    if (np.bincount(piece_word[piece_word >= 0], minlength=n_words) == 0).any():
        return None
    return list(ids), piece_word


# ----------------------------------------------------------------------------------------------
# Word-level attention and scoring (batched tensor ops)


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

    def best_head_interval(self, confidence: float = CONFIDENCE, samples: int = BOOTSTRAP_SAMPLES):
        """Percentile bootstrap interval of the "all" best-head UAS, resampling sentences with
        replacement; the best (layer, head, direction) is chosen anew in every resample, so the
        interval includes the selection."""
        correct = np.concatenate(self.sentence_correct).reshape(-1, 2 * self.n_layers * self.n_heads)
        count = np.concatenate(self.sentence_count).astype(np.float64)
        rng = np.random.default_rng(BOOTSTRAP_SEED)
        weights = rng.multinomial(len(count), np.full(len(count), 1 / len(count)), size=samples)
        with np.errstate(invalid="ignore", divide="ignore"):
            best = (weights @ correct).max(axis=1) / (weights @ count)
        low, high = np.nanquantile(best, [(1 - confidence) / 2, (1 + confidence) / 2])
        return float(low), float(high)

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


def offset_columns(
    golds: Sequence[np.ndarray],
    rels: Sequence[np.ndarray],
    relations: Sequence[str],
    labelled: bool = True,
    scoring: str = "spec",
    poss: Sequence[np.ndarray] | None = None,
) -> dict[str, np.ndarray]:
    """Fixed-offset baselines: predicted parent of word i = word i + offset.

    ``golds``: per sentence, 0-based gold parent per word (-1: the root); ``rels``: relation
    index, -1 unscored. Scoring "spec": offsets -3..+3 without 0, a parent outside the sentence is
    simply wrong. Scoring "authors": offsets -3..+2 (their ``range(-3, 3)``, 0 included: the word
    itself, always wrong), the 1-based prediction clamped to [0, n] (0 = the root, so a root word
    near the start can be right), and the "poss" rule where ``poss`` (``poss_limits``) says.
    """
    authors = scoring == "authors"
    offsets = AUTHORS_OFFSETS if authors else OFFSETS
    names = list(relations)
    R = len(names)
    empty = np.zeros(0, dtype=np.int64)
    gold = np.concatenate(list(golds)) if len(golds) else empty
    rel = np.concatenate(list(rels)) if len(rels) else empty
    position = np.concatenate([np.arange(len(g)) for g in golds]) if len(golds) else empty
    length = np.concatenate([np.full(len(g), len(g)) for g in golds]) if len(golds) else empty
    limit = np.concatenate(list(poss)) if poss is not None and len(golds) else np.zeros_like(gold)
    keep = rel >= 0

    def predicted(i, off):  # 0-based prediction for the words at positions i
        return np.clip(i + off, -1, length - 1) if authors else i + off

    correct = []
    for off in offsets:
        pred = predicted(position, off)
        hit = pred == gold
        # the poss rule: word i + 1's prediction stands for word i's (limit > 0 only where i + 1 exists)
        use = (limit > 0) & (pred + 1 < limit)
        hit = np.where(use, predicted(position + 1, off) == gold, hit)
        correct.append(np.bincount(rel[keep & hit], minlength=R))
    correct = np.stack(correct).astype(np.int64)
    count = np.bincount(rel[keep], minlength=R).astype(np.int64)
    if labelled:
        correct = np.concatenate([correct, correct.sum(-1, keepdims=True)], -1)
        count = np.append(count, count.sum())
        names.append(ALL)
    off, rel = (a.ravel() for a in np.meshgrid(np.arange(len(offsets)), np.arange(len(names)), indexing="ij"))
    n = len(rel)
    cnt = count[rel]
    with np.errstate(invalid="ignore", divide="ignore"):
        return {
            "method": np.full(n, "offset", dtype=object),
            "layer": np.full(n, np.nan),
            "head": np.full(n, np.nan),
            "direction": np.full(n, None, dtype=object),
            "offset": np.array(offsets, dtype=np.float64)[off],
            "relation": np.array(names, dtype=object)[rel],
            "correct": correct.ravel(),
            "count": cnt,
            "accuracy": correct.ravel() / cnt,
            "soft_score": np.full(n, np.nan),
        }


def offset_table(golds, rels, relations, labelled: bool = True, scoring: str = "spec", poss=None) -> pd.DataFrame:
    return _frame(offset_columns(golds, rels, relations, labelled, scoring, poss))


def authors_accuracy(correct: np.ndarray, count: np.ndarray) -> np.ndarray:
    """The accuracy the authors' evaluate_predictor reports: correct / count, but 0 for a
    relation with no wrong word (it fills its scores from the relations that have a miss, and a
    defaultdict answers 0.0 for the others), so a head right on every word of a relation scores 0
    there and is never that relation's best head."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(correct == count, 0.0, correct / count)


def _summary_columns(
    cols: dict[str, np.ndarray], min_relation_count: int, labelled: bool, scoring: str = "spec"
) -> dict[str, list]:
    authors = scoring == "authors"
    # Scoring "authors": their Table 1 lists the relations (root and punct left out) with at least
    # min_relation_count words in the treebank, as the offset rows count them (offsets score every
    # word; the attention rows leave out words cut off by truncation).
    offsets = cols["method"] == "offset"
    treebank_count = dict(zip(cols["relation"][offsets], cols["count"][offsets]))
    out: dict[str, list] = {
        c: [] for c in SUMMARY_COLUMNS if c not in SUMMARY_METADATA and c not in ("ci_low", "ci_high", "reachable")
    }

    def emit(**row):
        for key, values in out.items():
            values.append(row[key])

    for method in ("attention", "offset"):
        rows = np.flatnonzero(cols["method"] == method)
        if not len(rows):
            continue
        relation = cols["relation"][rows]
        best = {}
        for name in dict.fromkeys(relation):  # table order: relations, then "all"
            group = rows[relation == name]
            if authors:  # their sorted(...)[-1]: ties go to the highest (layer, head, direction), offset
                i = group[len(group) - 1 - int(np.argmax(cols["accuracy"][group][::-1]))]
            else:  # the first maximum
                i = group[int(np.argmax(cols["correct"][group]))]
            best[name] = i
            emit(
                method=method,
                relation=name,
                layer=cols["layer"][i],
                head=cols["head"][i],
                direction=cols["direction"][i],
                offset=cols["offset"][i],
                correct=cols["correct"][i],
                count=cols["count"][i],
                accuracy=cols["accuracy"][i],
                soft_score=cols["soft_score"][i],
                max_soft_score=np.max(cols["soft_score"][group]) if method == "attention" else np.nan,
                n_relations=np.nan,
            )
        if labelled:
            if authors:
                frequent = [
                    i
                    for name, i in best.items()
                    if name != ALL
                    and name not in AUTHORS_TABLE_EXCLUDED
                    and treebank_count.get(name, cols["count"][i]) >= min_relation_count
                ]
            else:
                frequent = [i for name, i in best.items() if name != ALL and cols["count"][i] >= min_relation_count]
            emit(
                method=method,
                relation=MEAN,
                layer=np.nan,
                head=np.nan,
                direction=None,
                offset=np.nan,
                correct=np.nan,
                count=int(cols["count"][frequent].sum()),
                accuracy=float(np.mean(cols["accuracy"][frequent])) if frequent else np.nan,
                soft_score=(
                    float(np.mean(cols["soft_score"][frequent])) if frequent and method == "attention" else np.nan
                ),
                max_soft_score=np.nan,
                n_relations=len(frequent),
            )
    return out


def summarize(
    scores: pd.DataFrame,
    min_relation_count: int = PROBE_DEFAULTS["min_relation_count"],
    labelled: bool = True,
    scoring: str = PROBE_DEFAULTS["scoring"],
) -> pd.DataFrame:
    """Best head (resp. offset) per relation and "all", plus the "mean" over frequent relations.

    Scoring "spec": the first row with the most correct words wins, so ties go to the canonical
    order of ``scores`` (lowest layer, head, then dependent_to_parent; offsets in -3..+3 order);
    the "mean" row (labelled treebanks only) averages the best accuracies of the relations with at
    least ``min_relation_count`` words (``n_relations`` of them). Scoring "authors" (``scores``
    from that scoring): the highest ``accuracy`` wins and ties go to the LAST such row (highest
    layer, head, then parent_to_dependent; highest offset), and the "mean" is over the relations of
    their Table 1 (not root or punct, at least ``min_relation_count`` words in the treebank).
    """
    cols = {}
    for col in ("method", "relation", "direction"):
        cols[col] = scores[col].to_numpy(dtype=object)
    for col in ("layer", "head", "offset", "correct", "count", "accuracy", "soft_score"):
        cols[col] = scores[col].to_numpy(dtype=np.float64, na_value=np.nan)
    summary = _summary_columns(cols, min_relation_count, labelled, scoring)
    summary["ci_low"] = summary["ci_high"] = [np.nan] * len(summary["method"])  # needs per-sentence tallies
    summary["reachable"] = [np.nan] * len(summary["method"])  # needs the gold trees
    return _frame(summary)


_COUNT_COLUMNS = (
    "count",
    "n_sentences",
    "n_skipped_too_long",
    "n_skipped_unaligned",
    "max_pieces",
    "min_relation_count",
)


def _frame(columns: dict, order: Sequence[str] | None = None) -> pd.DataFrame:
    """A DataFrame with the tables' dtypes: nullable Int64 for ids (NaN -> NA), int64 counts."""
    data = {}
    for col in order or list(columns):
        values = columns[col]
        if col in _INT_COLUMNS:
            data[col] = pd.array(np.asarray(values, dtype=np.float64), dtype="Int64")
        elif col in _COUNT_COLUMNS:
            data[col] = np.asarray(values, dtype=np.int64)
        elif col in ("accuracy", "ci_low", "ci_high", "soft_score", "max_soft_score"):
            data[col] = np.asarray(values, dtype=np.float64)
        else:
            data[col] = np.asarray(values, dtype=object)
    return pd.DataFrame(data)


# ----------------------------------------------------------------------------------------------
# Running a model


@dataclasses.dataclass
class ProbeResult:
    scores: pd.DataFrame
    summary: pd.DataFrame
    n_sentences: int
    n_skipped_too_long: int
    n_skipped_unaligned: int
    seconds: float


def max_model_pieces(model) -> int:
    """Longest input (pieces incl. special tokens) the model's position embeddings allow."""
    cfg = model.config
    limit = getattr(cfg, "max_position_embeddings", None) or 10**9
    if "roberta" in str(getattr(cfg, "model_type", "")) or "camembert" in str(getattr(cfg, "model_type", "")):
        limit -= (getattr(cfg, "pad_token_id", 1) or 1) + 1  # positions start after the padding idx
    return int(limit)


def _chunks(lengths: Sequence[int], ratio: float = 0.8) -> list[tuple[int, int]]:
    """Split rows sorted by decreasing length where the length drops below ratio x the chunk's first."""
    chunks, start = [], 0
    for k in range(1, len(lengths) + 1):
        if k == len(lengths) or lengths[k] < ratio * lengths[start]:
            chunks.append((start, k))
            start = k
    return chunks


def fitting_sentences(encoded: Sequence, limit: int) -> tuple[list[int], int, int]:
    """The indices of the encoded sentences that align and fit in ``limit`` pieces, and how many
    were left out as too long and as unaligned (a word without pieces, encoded as None)."""
    keep, too_long, unaligned = [], 0, 0
    for k, enc in enumerate(encoded):
        if enc is None:
            unaligned += 1
        elif len(enc[0]) > limit:
            too_long += 1
        else:
            keep.append(k)
    return keep, too_long, unaligned


def aligned_sentences(encoded: Sequence) -> tuple[list[int], int]:
    """Scoring "authors": the indices of the encoded sentences that align (long ones are cut, not
    skipped: ``truncate``), and how many did not (a word without pieces, encoded as None; the
    authors' code would fail on such a sentence)."""
    keep = [k for k, enc in enumerate(encoded) if enc is not None]
    return keep, len(encoded) - len(keep)


def truncate(enc: tuple[list[int], np.ndarray], limit: int) -> tuple[tuple[list[int], np.ndarray], int]:
    """Scoring "authors": a sentence cut to ``limit`` pieces as the authors' extraction cuts it,
    and the number of its words that are scored by attention.

    Their tokenizer call truncates to 128 pieces keeping [CLS] and [SEP]; their piece -> word map
    then ends with the word that holds piece 127 (cut in two, or starting there) and their probe
    drops that map's last word as if it were [SEP]. So the words scored by attention, and the
    parents an attention head can predict, are the words whose pieces all fit: the first ``n``.
    The leading and trailing special tokens of any tokenizer are kept as HF's truncation keeps
    them; the pieces of the word cut in two stay in the input but belong to no word.
    """
    ids, piece_word = enc
    if len(ids) <= limit:
        return enc, int(piece_word.max()) + 1
    trailing = len(piece_word) - 1 - int(np.flatnonzero(piece_word >= 0)[-1])
    end = limit - trailing  # the first piece that does not fit
    n = int(piece_word[end])  # that piece's word is cut off, with every later word
    kept_word = np.concatenate([piece_word[:end], piece_word[len(ids) - trailing :]])
    kept_word[kept_word >= n] = -1
    return (list(ids[:end]) + list(ids[len(ids) - trailing :]), kept_word), n


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
    *,
    max_pieces: int = PROBE_DEFAULTS["max_pieces"],
    batch_size: int = PROBE_DEFAULTS["batch_size"],
    min_relation_count: int = PROBE_DEFAULTS["min_relation_count"],
    excluded_relations: Iterable[str] = DEFAULT_EXCLUDED_RELATIONS,
    punct_tags: Iterable[str] = PTB_PUNCT_TAGS,
    device=None,
    step: int | None = None,
    checkpoint: str | None = None,
    treebank: str | None = None,
    scoring: str = PROBE_DEFAULTS["scoring"],
) -> ProbeResult:
    """Probe a loaded masked LM (any HF model with attentions) on gold sentences, with the method's
    scoring (docs/method.md, "UAS probe") or (``scoring="authors"``) the authors'
    (``excluded_relations`` and ``punct_tags`` then play no part: every word is scored)."""
    import torch

    t0 = time.perf_counter()
    if batch_size < 1 or max_pieces < 3:
        raise InputError(f"batch_size must be >= 1 and max_pieces >= 3 (got {batch_size}, {max_pieces})")
    if scoring not in SCORINGS:
        raise InputError(f"scoring must be one of {', '.join(SCORINGS)} (got {scoring!r})")
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
    low, high = scorer.best_head_interval()
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
    return ProbeResult(
        scores=_frame(cols, SCORE_COLUMNS),
        summary=_frame(summary, SUMMARY_COLUMNS),
        n_sentences=len(keep),
        n_skipped_too_long=too_long,
        n_skipped_unaligned=unaligned,
        seconds=time.perf_counter() - t0,
    )


# ----------------------------------------------------------------------------------------------
# Checkpoints

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


# ----------------------------------------------------------------------------------------------
# CLI


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="probe_command", required=True, metavar="COMMAND")
    score = sub.add_parser(
        "score",
        help="score checkpoints' attention heads against a gold treebank",
        description="Per-head UAS of one or more checkpoints (one scores + one summary parquet each).",
    )
    score.add_argument(
        "--checkpoint",
        nargs="+",
        required=True,
        metavar="DIR",
        help="HF checkpoint dir(s) or quoted glob(s); the step is read from the dir name "
        "(step-400, checkpoint-500, step_20k, ...) unless --step is given",
    )
    score.add_argument(
        "--treebank",
        required=True,
        help="gold CoNLL-U file (plain or .gz), or a .parquet in the authors' WSJ layout (words, heads, relns)",
    )
    score.add_argument("--out-scores", required=True, help="per-head scores parquet of every checkpoint")
    score.add_argument("--out-summary", required=True, help="summary parquet of every checkpoint")
    score.add_argument("--step", type=int, nargs="+", help="step(s), one per checkpoint")
    score.add_argument(
        "--cache-dir",
        default=None,
        help="keep each checkpoint's tables here, with what they were computed from (the scoring "
        "code's fingerprint, the options, the treebank's content), and reuse those computed from "
        "the same and newer than the checkpoint (resume a job stopped part-way through a series)",
    )
    add_option_flags(
        score,
        "probe",
        [
            (
                "--max-pieces",
                {"type": int},
                "longer sentences (pieces incl. [CLS]/[SEP]) are skipped and counted (spec) or cut (authors)",
            ),
            (
                "--scoring",
                {"choices": SCORINGS},
                "the method's scoring (docs/method.md), or the authors' attention_depparse_probe.py's",
            ),
            ("--max-sentences", {"type": int}, "use the first N sentences"),
            ("--batch-size", {"type": int}, ""),
            ("--min-relation-count", {"type": int}, "relations with fewer words are left out of the 'mean' row"),
        ],
    )
    score.add_argument(
        "--exclude-relations",
        nargs="*",
        default=list(DEFAULT_EXCLUDED_RELATIONS),
        help="relations not scored (labelled treebanks; subtypes are stripped first; scoring spec only)",
    )
    score.add_argument(
        "--punct-tags",
        nargs="*",
        default=list(PTB_PUNCT_TAGS),
        help="XPOS tags not scored in unlabelled treebanks (default: PTB punctuation; scoring spec only)",
    )
    score.add_argument("--treebank-name", default=None, help="treebank column (default: file name)")
    score.add_argument("--device", default="auto", help="auto (cuda if available), cpu, cuda, cuda:1, ...")
    score.add_argument("--dtype", default="float32", choices=_DTYPES, help="model weights' dtype")
    score.add_argument(
        "--threads", type=int, default=0, help="torch CPU threads (0: torch's default); match the job's cores"
    )
    gather = sub.add_parser(
        "gather",
        help="stack per-checkpoint parquets of one run into one table",
        description="Stack per-checkpoint summary (or scores) parquets into one table, sorted by step.",
    )
    gather.add_argument("--inputs", nargs="+", required=True, help="parquet files (or quoted globs)")
    gather.add_argument("--out", required=True, help="output parquet")


def run(args: argparse.Namespace) -> None:
    if args.probe_command == "gather":
        _run_gather(args)
    else:
        _run_score(args)


def _run_score(args: argparse.Namespace) -> None:
    opts = resolve_options(args, "probe")
    for option, value, low in (
        ("--max-pieces", opts["max_pieces"], 3),
        ("--batch-size", opts["batch_size"], 1),
        ("--min-relation-count", opts["min_relation_count"], 0),
        ("--max-sentences", opts["max_sentences"], 1),
        ("--threads", args.threads, 0),
    ):
        if value is not None and value < low:
            raise InputError(f"{option} must be >= {low} (got {value})")
    if Path(args.out_scores).resolve() == Path(args.out_summary).resolve():
        raise InputError("--out-scores and --out-summary are the same file")
    series = resolve_checkpoints(args.checkpoint, args.step)
    treebank = Path(args.treebank)
    sentences = read_treebank(treebank, opts["max_sentences"])
    name = args.treebank_name or treebank.name
    log.info(
        "%s: %d sentences (%s), scoring %s",
        treebank,
        len(sentences),
        "labelled" if is_labelled(sentences) else "unlabelled: scoring 'all' only",
        opts["scoring"],
    )
    device = resolve_device(args.device)
    if args.threads > 0:
        import torch

        torch.set_num_threads(args.threads)

    def score(path: Path, step: int) -> dict:
        t0 = time.perf_counter()
        model, tokenizer = load_checkpoint(path, device=device, dtype=args.dtype)
        result = score_model(
            model,
            tokenizer,
            sentences,
            max_pieces=opts["max_pieces"],
            batch_size=opts["batch_size"],
            min_relation_count=opts["min_relation_count"],
            excluded_relations=args.exclude_relations,
            punct_tags=args.punct_tags,
            device=device,
            step=step,
            checkpoint=path.name,
            treebank=name,
            scoring=opts["scoring"],
        )
        uas = result.summary.query("method == 'attention' and relation == 'all'")["accuracy"].iloc[0]
        log.info(
            "step %d (%s): UAS(all) %.4f over %d sentences, %d skipped too long, %d unaligned; "
            "probe %.1fs, total %.1fs",
            step,
            path,
            uas,
            result.n_sentences,
            result.n_skipped_too_long,
            result.n_skipped_unaligned,
            result.seconds,
            time.perf_counter() - t0,
        )
        return {"scores": result.scores, "summary": result.summary}

    identity = {
        "code": code_fingerprint("probe"),
        "options": {k: v for k, v in opts.items() if k not in SELECTION_OPTIONS},
        "treebank": content_id(treebank),
        "treebank_name": name,
        "exclude_relations": sorted(args.exclude_relations),
        "punct_tags": sorted(args.punct_tags),
        "dtype": args.dtype,
    }
    tables = score_series(series, score, ["scores", "summary"], args.cache_dir, log, identity)
    write_parquet(tables["scores"], args.out_scores)
    write_parquet(tables["summary"], args.out_summary)


def gather(paths: Sequence[str | Path]) -> pd.DataFrame:
    """Stack per-checkpoint tables (each with a ``step`` column) into one, sorted by step."""
    frames, owner = [], {}
    for path in paths:
        path = Path(path)
        df = read_table(path, ["step"], "probe")
        if df["step"].isna().any():
            raise InputError(f"{path}: rows without a step")
        if frames and list(df.columns) != list(frames[0].columns):
            raise InputError(f"{path}: columns differ from {paths[0]} (mixing summary and scores tables?)")
        tb = df["treebank"] if "treebank" in df.columns else pd.Series([None] * len(df))
        for key in set(zip(df["step"].tolist(), tb.tolist())):
            if key in owner:
                raise InputError(f"{path}: step {key[0]} (treebank {key[1]}) is also in {owner[key]}")
            owner[key] = path
        frames.append(df)
    if not frames:
        raise InputError("gather: no inputs")
    out = pd.concat(frames, ignore_index=True)
    return out.sort_values("step", kind="stable").reset_index(drop=True)


def _run_gather(args: argparse.Namespace) -> None:
    paths = textio.expand_paths(args.inputs)
    table = gather(paths)
    write_parquet(table, args.out)
    log.info("gathered %d files, %d rows -> %s", len(paths), len(table), args.out)
