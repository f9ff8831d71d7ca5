"""Context use per checkpoint (``sasbert context score``): the held-out MLM loss and accuracy with
attention restricted to a window of +-w pieces, for each w of ``context.windows``.

The text is the sentences of a CoNLL-U treebank (``context.treebank``, the first ``max_sentences``;
read by ``sasbert.data.treebank``), each one sequence ``[CLS] pieces [SEP]`` made by the
checkpoint's own tokenizer from the sentence's words joined by spaces (so a series from the hub is
measured with its own vocabulary). A sentence longer than the model's ``max_position_embeddings``
is left out (``n_sentences`` counts those kept; RoBERTa's position ids start after its padding
id, so it has that many positions fewer: the probe's ``max_model_pieces``, as complexity uses).

**Masking** (deterministic, the same at every checkpoint of a run and every w, so the curves are
paired): sentence i (its index in the treebank) draws one uniform number per piece from
``numpy.random.default_rng([seed, i])``; a non-special piece whose number is below
``mlm_probability`` is masked. Every masked piece is replaced by [MASK] (no 80/10/10 random or
unchanged pieces): the loss then says how well the context alone predicts a piece, with no
copying of a piece left in place, and no draw depends on the vocabulary. So this loss is not
pretraining's held-out loss (validation blocks, BERT's 80/10/10, ``loss.parquet``).

**The window**: position i attends to position j only when |i - j| <= w, every position of the
sequence counted ([CLS] and [SEP] included; padding never attended), in every layer and head, by
an additive 4D attention mask (0 inside the window, the dtype's minimum outside), which
``transformers`` passes as it is to the eager and the SDPA attention of the model types in
``WINDOW_MASK_MODELS`` (tests/test_context.py checks each). Other types may not: ModernBERT keeps
its own sliding window in its local layers, DeBERTa-v2 reads its mask as a 0/1 one; a checkpoint of
another type gets no rows (logged), rather than a gap that is not the one defined. w = null is the
full sentence. Position embeddings are unchanged: only what each position may read is restricted.
With L layers a piece's output still depends on pieces up to L * w away, through the others; w
bounds what one attention step reads.

Table ``summary``, one row per checkpoint x window: ``step, checkpoint, window`` (w; -1 for the
full context: an integer column, parquet- and pandas-friendly, sorted with the full context
last), ``loss`` (mean cross-entropy, nats, over the masked pieces of all sentences), ``accuracy``
(share of masked pieces whose argmax is the original piece), ``n_masked``, ``n_sentences`` and
``gap`` = loss(w) - loss(full), the cost of restricting the context to +-w (0 for the full
context, which is always scored). A causal LM has no MLM loss: a series' causal checkpoint gets
no rows (logged), as does a checkpoint whose model type is not in ``WINDOW_MASK_MODELS``.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import pandas as pd

from sasbert.errors import InputError
from sasbert.measure.command import score_command

log = logging.getLogger(__name__)

# model types that take the 4D window mask as it is, in every layer, under SDPA and eager
# (tests/test_context.py: the output at a piece does not depend on pieces beyond the window)
WINDOW_MASK_MODELS = ("bert", "roberta", "xlm-roberta", "distilbert")

FULL = -1  # the window column's value for the full context
COLUMNS = ["step", "checkpoint", "window", "loss", "accuracy", "n_masked", "n_sentences", "gap"]


def check_options(options: dict) -> None:
    """What the flags may set outside the schema's checks of --options, named by flag."""
    if not 0 < options["mlm_probability"] < 1:
        raise InputError(f"--mlm-probability must be in (0, 1) (got {options['mlm_probability']})")
    if options["batch_size"] < 1:
        raise InputError(f"--batch-size must be >= 1 (got {options['batch_size']})")
    if options["max_sentences"] is not None and options["max_sentences"] < 1:
        raise InputError(f"--max-sentences must be >= 1 or null (got {options['max_sentences']})")
    if options["seed"] < 0:
        raise InputError(f"--seed must be >= 0 (got {options['seed']})")


def windows_of(options: dict) -> list[int]:
    """The windows scored, ascending, the full context (``FULL``) last and always in."""
    given = [FULL if w is None else int(w) for w in options["windows"]]
    return sorted({w for w in given if w != FULL}) + [FULL]


def read_sentences(path: Path, max_sentences: int | None) -> list[tuple[str, ...]]:
    """The words of the treebank's first ``max_sentences`` sentences (all for None)."""
    from sasbert.data import treebank

    sentences = []
    for tree in treebank.read_sentences(path):
        if max_sentences is not None and len(sentences) >= max_sentences:
            break
        sentences.append(tree.words)
    if not sentences:
        raise InputError(f"{path}: no sentences (--treebank)")
    return sentences


def masked_sentences(tokenizer, sentences, mlm_probability: float, seed: int, max_length: int):
    """[(piece ids, labels)] of the sentences that fit ``max_length`` pieces: labels hold the
    original id at the masked pieces and -100 elsewhere; the masked ids are [MASK] (see the module
    docstring). Sentences with no masked piece are kept out (they add nothing to any sum)."""
    mask_id = tokenizer.mask_token_id
    if mask_id is None:
        raise InputError(f"{tokenizer.name_or_path}: the tokenizer has no [MASK] token")
    out, kept = [], 0
    for index, words in enumerate(sentences):
        encoded = tokenizer(" ".join(words), return_special_tokens_mask=True)
        ids = np.asarray(encoded["input_ids"], dtype=np.int64)
        if len(ids) > max_length:
            continue
        kept += 1
        draws = np.random.default_rng([seed, index]).random(len(ids))
        selected = (draws < mlm_probability) & (np.asarray(encoded["special_tokens_mask"]) == 0)
        if selected.any():
            out.append((np.where(selected, mask_id, ids), np.where(selected, ids, -100)))
    return out, kept


def window_mask(lengths, width: int, window: int, dtype):
    """The additive attention mask (batch, 1, width, width) of sequences of these ``lengths``
    padded to ``width``: 0 where |i - j| <= ``window`` (``FULL``: anywhere) and j is not padding,
    the dtype's minimum elsewhere."""
    import torch

    positions = torch.arange(width)
    allowed = torch.ones(width, width, dtype=torch.bool)
    if window != FULL:
        allowed = (positions[:, None] - positions[None, :]).abs() <= window
    keys = positions[None, :] < torch.as_tensor(lengths)[:, None]  # (batch, width)
    allowed = allowed[None, :, :] & keys[:, None, :]
    mask = torch.zeros(allowed.shape, dtype=dtype).masked_fill(~allowed, torch.finfo(dtype).min)
    return mask[:, None, :, :]


def padded_batches(examples, batch_size: int) -> list[tuple]:
    """(input_ids, attention_mask, labels) tensors of the masked ``examples`` ((ids, labels) pairs,
    ``masked_sentences``) in batches of like lengths (less padding), padded with id 0, mask 0 and
    label -100. The LLC measure batches its text the same way."""
    import torch

    examples = sorted(examples, key=lambda example: len(example[0]))
    batches = []
    for start in range(0, len(examples), batch_size):
        chunk = examples[start : start + batch_size]
        width = max(len(ids) for ids, _ in chunk)
        ids = torch.zeros(len(chunk), width, dtype=torch.long)
        mask = torch.zeros(len(chunk), width, dtype=torch.long)
        labels = torch.full((len(chunk), width), -100, dtype=torch.long)
        for row, (piece_ids, piece_labels) in enumerate(chunk):
            ids[row, : len(piece_ids)] = torch.from_numpy(piece_ids)
            mask[row, : len(piece_ids)] = 1
            labels[row, : len(piece_labels)] = torch.from_numpy(piece_labels)
        batches.append((ids, mask, labels))
    return batches


def masked_logits(model, input_ids, attention_mask, selected):
    """The MLM logits at the ``selected`` positions: for BERT the prediction head on those alone,
    otherwise the model's full output (the LLC measure's loss reads them too)."""
    if hasattr(model, "bert") and hasattr(model, "cls"):
        hidden = model.bert(input_ids, attention_mask=attention_mask, return_dict=True).last_hidden_state
        return model.cls(hidden[selected])
    return model(input_ids=input_ids, attention_mask=attention_mask).logits[selected]


def context_losses(model, examples, windows, batch_size: int, device) -> list[dict]:
    """{window, loss, accuracy, n_masked} for each window over the masked ``examples``."""
    import torch
    import torch.nn.functional as F

    dtype = next(model.parameters()).dtype
    batches = [
        (ids.to(device), padding.sum(1), labels.to(device))
        for ids, padding, labels in padded_batches(examples, batch_size)
    ]
    rows = []
    with torch.inference_mode():
        for window in windows:
            total, correct, count = 0.0, 0, 0
            for ids, lengths, labels in batches:
                selected = labels != -100
                mask = window_mask(lengths, ids.shape[1], window, dtype).to(device)
                logits = masked_logits(model, ids, mask, selected).float()
                total += F.cross_entropy(logits, labels[selected], reduction="sum").item()
                correct += int((logits.argmax(-1) == labels[selected]).sum())
                count += int(selected.sum())
            rows.append(
                {
                    "window": window,
                    "loss": total / count if count else float("nan"),
                    "accuracy": correct / count if count else float("nan"),
                    "n_masked": count,
                }
            )
    return rows


def prepare(options: dict, data: dict[str, Path], device):
    """The treebank's sentences (read once per job) and its content, for the cache's identity."""
    from sasbert.hub import content_id

    check_options(options)
    sentences = read_sentences(data["treebank"], options["max_sentences"])
    log.info("%s: %d sentences, windows %s", data["treebank"], len(sentences), options["windows"])
    return sentences, {"treebank": content_id(data["treebank"])}


def masked_lm_examples(path: Path, step: int, sentences, options: dict, device):
    """(model, examples, kept) of a checkpoint: its masked LM, and the sentences masked as the
    module docstring says (``masked_sentences`` with the options' ``mlm_probability`` and
    ``seed``); None for a causal LM, which has no MLM loss (logged). The LLC measure's loss reads
    the same."""
    from sasbert.measure.checkpoints import load_masked_lm, model_kind
    from sasbert.measure.probe.alignment import max_model_pieces

    if model_kind(path) == "causal":
        log.info("step %d (%s): a causal LM has no MLM loss: no rows", step, path)
        return None
    model, tokenizer = load_masked_lm(path, device)
    max_length = max_model_pieces(model)
    examples, kept = masked_sentences(tokenizer, sentences, options["mlm_probability"], options["seed"], max_length)
    return model, examples, kept


def score(path: Path, step: int, sentences, options: dict, device) -> dict[str, pd.DataFrame]:
    """One checkpoint's ``summary`` (see the module docstring)."""
    start = time.perf_counter()
    loaded = masked_lm_examples(path, step, sentences, options, device)
    if loaded is None:
        return {"summary": _empty_table()}
    model, examples, kept = loaded
    if model.config.model_type not in WINDOW_MASK_MODELS:
        log.warning(
            "step %d (%s): no rows: the window mask is checked for model types %s only, not %r",
            step,
            path,
            ", ".join(WINDOW_MASK_MODELS),
            model.config.model_type,
        )
        return {"summary": _empty_table()}
    rows = context_losses(model, examples, windows_of(options), options["batch_size"], device)
    table = pd.DataFrame(rows).assign(step=step, checkpoint=path.name, n_sentences=kept)
    table["gap"] = table["loss"] - table.loc[table["window"] == FULL, "loss"].iloc[0]
    table = table[COLUMNS].astype({c: _dtype(c) for c in COLUMNS})
    log.info(
        "step %d (%s): full-context loss %.4f, gap %s (%d masked pieces, %.1f s)",
        step,
        path.name,
        table["loss"].iloc[-1],
        " ".join(f"w{w}={g:.3f}" for w, g in zip(table["window"][:-1], table["gap"][:-1])),
        table["n_masked"].iloc[-1],
        time.perf_counter() - start,
    )
    return {"summary": table}


def _empty_table() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=_dtype(c)) for c in COLUMNS})


def _dtype(column: str) -> str:
    return {"checkpoint": "object", "loss": "float64", "accuracy": "float64", "gap": "float64"}.get(column, "int64")


add_arguments, run = score_command("context", prepare, score)
