"""Stage 3, tokenize: WordPiece vocabulary, word heads mapped onto pieces, fixed-length blocks.

Head mapping policy (docs/method.md, "Head mapping policy"): the first piece of word w carries w's arc and points to the
first piece of w's head word; the other pieces of w and the root word carry -1. Positions count
[CLS], so the first piece of a block is at position 1.

Packing (``tokenizer.packing``), two ways:
- ``stream`` (HF run_mlm's grouping, the paper's): every sentence contributes its pieces followed by
  [SEP]; this stream is cut into chunks of ``seq_len - 1`` pieces and each block is [CLS] + chunk,
  so a sentence may continue in the next block. An arc whose dependent or head falls in another
  block carries -1. The trailing partial chunk is dropped. ``attention_mask`` is all ones.
- ``sentences``: whole sentences only, ``[CLS] s1 [SEP] s2 [SEP] ...`` filled greedily in corpus
  order and padded with [PAD] (``attention_mask`` 0) to ``seq_len``; no sentence is cut, so no arc
  is lost. A sentence longer than ``seq_len - 2`` pieces cannot fit and is dropped (counted in the
  stats). At 512 pieces cuts are rare and the two agree; at 64 a cut leaves a fragment in most
  blocks, and that fragment is what kept a tiny BERT from acquiring SAS (docs/small-scale.md).

Output: a HF ``datasets`` DatasetDict (``train``, ``validation``; Arrow, memory-mapped) with
``input_ids``, ``attention_mask``, ``heads`` and (optionally) ``relations`` (the arc's relation on
labelled pieces, "" elsewhere), the tokenizer (HF format) and a stats JSON.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from sasbert.atomic import atomic_path, write_text
from sasbert.errors import InputError
from sasbert.options import add_option_flags
from sasbert.options import resolve as resolve_options

log = logging.getLogger(__name__)

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
PACKINGS = ("stream", "sentences")


def read_parsed(paths: list[str]) -> pd.DataFrame:
    frames = [pd.read_parquet(p) for p in paths]
    parsed = pd.concat(frames, ignore_index=True)
    if parsed.empty:
        raise InputError(f"no parsed sentences in {', '.join(paths)}")
    return parsed


def train_wordpiece(sentences: list[list[str]], vocab_size: int, min_frequency: int, lowercase: bool, out_dir: Path):
    """Train a WordPiece vocab on the corpus words and return a BertTokenizerFast using it."""
    from tokenizers import BertWordPieceTokenizer

    trainer = BertWordPieceTokenizer(lowercase=lowercase)
    trainer.train_from_iterator(
        (" ".join(words) for words in sentences),
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=SPECIAL_TOKENS,
        show_progress=False,
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    # The trainer lists its pieces in hash-map order, which changes from process to process: write
    # them in a canonical order so that the same set of pieces always gets the same ids (WordPiece
    # matching depends on the set only). The set itself can still differ between processes where
    # candidates tie in frequency at the vocabulary's edge (the trainer breaks ties by internal
    # ids); Snakemake trains the vocab once per corpus and every later stage reads that one, and a
    # given vocab.txt (tokenizer.vocab) is fully reproducible.
    learned = set(trainer.get_vocab()) - set(SPECIAL_TOKENS)
    (out_dir / "vocab.txt").write_text("\n".join([*SPECIAL_TOKENS, *sorted(learned)]) + "\n")
    return load_tokenizer(out_dir / "vocab.txt", lowercase)


def load_tokenizer(vocab: str | Path, lowercase: bool):
    from transformers import BertTokenizerFast

    if not Path(vocab).is_file():
        raise InputError(f"tokenizer.vocab: no such file: {vocab}")
    check_vocab(vocab)
    # vocab=, not vocab_file=: transformers 5's BertTokenizerFast ignores vocab_file silently and
    # builds a five-piece vocabulary (every word [UNK])
    return BertTokenizerFast(vocab=str(vocab), do_lower_case=lowercase)


def check_vocab(vocab: str | Path) -> None:
    """A vocab.txt gives piece i the id of its line i (0-based), so a piece on two lines shifts ids
    silently: the slow and the fast tokenizer then disagree, and the model's embedding has fewer
    rows than the ids in use. Refuse it, naming both lines."""
    first_line: dict[str, int] = {}
    with open(vocab, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            piece = line.rstrip("\n").rstrip("\r")
            if piece in first_line:
                raise InputError(
                    f"{vocab}:{number}: the piece {piece!r} is also on line {first_line[piece]} (a vocab.txt gives "
                    "each piece one line; its id is that line's number)"
                )
            first_line[piece] = number


def piece_heads(word_ids: list[int], heads: list[int]) -> list[int]:
    """Sentence-local piece index of each piece's parent (first pieces only), -1 elsewhere.

    ``word_ids[p]`` is the 0-based word of piece p; ``heads[w]`` is word w's 1-based head (0 = root).
    """
    first_piece: dict[int, int] = {}
    for p, w in enumerate(word_ids):
        first_piece.setdefault(w, p)
    out = [-1] * len(word_ids)
    for w, p in first_piece.items():
        if heads[w] != 0:
            out[p] = first_piece[heads[w] - 1]
    return out


def encode_sentences(tokenizer, sentences: list[list[str]]) -> list[list[int]]:
    """Piece ids and word ids per sentence; a word with no pieces becomes [UNK] so no arc is lost."""
    encoded = tokenizer(sentences, is_split_into_words=True, add_special_tokens=False)
    ids, word_ids = [], []
    for i, words in enumerate(sentences):
        sent_ids = list(encoded["input_ids"][i])
        sent_words = list(encoded.word_ids(i))
        missing = set(range(len(words))) - set(sent_words)
        if missing:  # e.g. a word of control characters only; keep its arc on an [UNK]
            pairs = list(zip(sent_words, sent_ids)) + [(w, tokenizer.unk_token_id) for w in missing]
            # a stable sort by word position only: the pieces inside a word keep their order
            pairs.sort(key=lambda pair: pair[0])
            sent_words, sent_ids = [w for w, _ in pairs], [t for _, t in pairs]
        ids.append(sent_ids)
        word_ids.append(sent_words)
    return ids, word_ids


def pack_blocks(
    piece_ids: list[list[int]],
    heads: list[list[int]],
    relations: list[list[str]] | None,
    seq_len: int,
    cls_id: int,
    sep_id: int,
) -> dict[str, np.ndarray]:
    """Pack sentences (pieces + [SEP]) into blocks of [CLS] + (seq_len - 1) pieces.

    ``heads`` are sentence-local piece indices (-1 = no arc). Returns arrays of shape
    (n_blocks, seq_len): input_ids, heads (block positions, -1 = none) and relations if given.
    """
    chunk = seq_len - 1
    stream_ids, stream_heads, stream_rels = [], [], []
    offset = 0
    for i, sent in enumerate(piece_ids):
        stream_ids.extend(sent)
        stream_ids.append(sep_id)
        stream_heads.extend(offset + h if h >= 0 else -1 for h in heads[i])
        stream_heads.append(-1)
        if relations is not None:
            stream_rels.extend(relations[i])
            stream_rels.append("")
        offset += len(sent) + 1
    n_blocks = len(stream_ids) // chunk
    used = n_blocks * chunk
    ids = np.asarray(stream_ids[:used], dtype=np.int64).reshape(n_blocks, chunk)
    head_stream = np.asarray(stream_heads[:used], dtype=np.int64)
    position = np.arange(used)
    same_block = (head_stream >= 0) & (head_stream // chunk == position // chunk)
    block_heads = np.where(same_block, 1 + head_stream % chunk, -1).reshape(n_blocks, chunk)
    cls = np.full((n_blocks, 1), cls_id, dtype=np.int64)
    out = {
        "input_ids": np.concatenate([cls, ids], axis=1),
        "heads": np.concatenate([np.full((n_blocks, 1), -1), block_heads], axis=1),
    }
    if relations is not None:
        rels = np.asarray(stream_rels[:used], dtype=object).reshape(n_blocks, chunk)
        rels = np.where(block_heads >= 0, rels, "")
        out["relations"] = np.concatenate([np.full((n_blocks, 1), "", dtype=object), rels], axis=1)
    return out


def pack_sentences(
    piece_ids: list[list[int]],
    heads: list[list[int]],
    relations: list[list[str]] | None,
    seq_len: int,
    cls_id: int,
    sep_id: int,
    pad_id: int,
) -> dict[str, np.ndarray]:
    """Pack whole sentences (pieces + [SEP]) greedily into [CLS]-led blocks padded to ``seq_len``.

    Same inputs and outputs as ``pack_blocks``, plus ``attention_mask`` (0 on padding) and
    ``dropped`` (the number of sentences too long for a block).
    """
    blocks_ids, blocks_heads, blocks_rels = [], [], []
    ids, block_heads, rels = [cls_id], [-1], [""]
    dropped = 0

    def close():
        n_pad = seq_len - len(ids)
        blocks_ids.append(ids + [pad_id] * n_pad)
        blocks_heads.append(block_heads + [-1] * n_pad)
        blocks_rels.append(rels + [""] * n_pad)

    for i, sent in enumerate(piece_ids):
        if len(sent) + 2 > seq_len:
            dropped += 1
            continue
        if len(ids) + len(sent) + 1 > seq_len:
            close()
            ids, block_heads, rels = [cls_id], [-1], [""]
        offset = len(ids)
        ids.extend(sent)
        ids.append(sep_id)
        block_heads.extend(offset + h if h >= 0 else -1 for h in heads[i])
        block_heads.append(-1)
        if relations is not None:
            rels.extend(relations[i])
            rels.append("")
    if len(ids) > 1:
        close()
    input_ids = np.asarray(blocks_ids, dtype=np.int64).reshape(-1, seq_len)
    out = {
        "input_ids": input_ids,
        "heads": np.asarray(blocks_heads, dtype=np.int64).reshape(-1, seq_len),
        "attention_mask": (input_ids != pad_id).astype(np.int64),
        "dropped": dropped,
    }
    if relations is not None:
        out["relations"] = np.asarray(blocks_rels, dtype=object).reshape(-1, seq_len)
    return out


def validation_indices(n_blocks: int, n_validation: int) -> np.ndarray:
    """Evenly spaced block indices, so the held-out slice covers every part (genre) of the corpus."""
    if n_validation == 0:
        return np.array([], dtype=np.int64)
    return np.unique(np.linspace(0, n_blocks - 1, n_validation).round().astype(np.int64))


def build_dataset(
    parsed: pd.DataFrame, tokenizer, seq_len: int, n_validation: int, keep_relations: bool, packing: str = "stream"
):
    from datasets import Dataset, DatasetDict

    sentences = [list(words) for words in parsed["words"]]
    piece_ids, word_ids = encode_sentences(tokenizer, sentences)
    heads = [piece_heads(w, list(h)) for w, h in zip(word_ids, parsed["heads"])]
    relations = None
    if keep_relations:
        relations = []
        for w_ids, rels, h in zip(word_ids, parsed["relations"], heads):
            relations.append([rels[w] if h[p] >= 0 else "" for p, w in enumerate(w_ids)])
    if packing == "stream":
        blocks = pack_blocks(piece_ids, heads, relations, seq_len, tokenizer.cls_token_id, tokenizer.sep_token_id)
        blocks["attention_mask"] = np.ones_like(blocks["input_ids"])
        blocks["dropped"] = 0
    elif packing == "sentences":
        blocks = pack_sentences(
            piece_ids, heads, relations, seq_len, tokenizer.cls_token_id, tokenizer.sep_token_id, tokenizer.pad_token_id
        )
    else:
        raise InputError(f"tokenizer.packing: {packing!r} is not one of {', '.join(PACKINGS)}")
    n_blocks = len(blocks["input_ids"])
    if n_blocks <= n_validation:
        raise InputError(
            f"tokenizer.validation_blocks: the corpus makes only {n_blocks} blocks of {seq_len} pieces, "
            f"not enough to hold out {n_validation}"
        )
    val = validation_indices(n_blocks, n_validation)
    is_val = np.zeros(n_blocks, dtype=bool)
    is_val[val] = True

    def split(mask):
        columns = {
            "input_ids": blocks["input_ids"][mask].tolist(),
            "attention_mask": blocks["attention_mask"][mask].tolist(),
            "heads": blocks["heads"][mask].tolist(),
        }
        if keep_relations:
            columns["relations"] = blocks["relations"][mask].tolist()
        return Dataset.from_dict(columns)

    dataset = DatasetDict({"train": split(~is_val), "validation": split(is_val)})
    n_words = int(sum(len(s) for s in sentences))
    n_arcs = int(sum((np.asarray(h) != 0).sum() for h in parsed["heads"]))
    stats = {
        "sentences": len(sentences),
        "words": n_words,
        "pieces": int(sum(len(p) for p in piece_ids)),
        "unk_pieces": int(sum(p.count(tokenizer.unk_token_id) for p in piece_ids)),
        "arcs": n_arcs,
        "arcs_in_blocks": int((blocks["heads"] >= 0).sum()),
        "seq_len": seq_len,
        "packing": packing,
        "sentences_too_long": int(blocks["dropped"]),
        "padding_fraction": float(1 - blocks["attention_mask"].mean()),
        "blocks_train": int((~is_val).sum()),
        "blocks_validation": int(is_val.sum()),
        "vocab_size": tokenizer.vocab_size,
    }
    stats["labelled_fraction"] = stats["arcs_in_blocks"] / (n_blocks * seq_len)
    if packing == "sentences" and blocks["dropped"]:
        log.warning(
            "%d sentences longer than %d pieces did not fit a block and were left out", blocks["dropped"], seq_len - 2
        )
    return dataset, stats


def add_arguments(parser) -> None:
    parser.add_argument("--parsed", nargs="+", required=True, help="parsed shards (parquet), in corpus order")
    add_option_flags(
        parser,
        "tokenizer",
        [
            ("--vocab", {}, "existing vocab.txt; none: train a WordPiece vocab"),
            ("--vocab-size", {"type": int}, "size of a trained vocab"),
            ("--min-frequency", {"type": int}, "a trained vocab's least frequent piece"),
            ("--lowercase", {"action": argparse.BooleanOptionalAction}, "lowercase before splitting into pieces"),
            ("--seq-len", {"type": int}, "block length in pieces"),
            ("--validation-blocks", {"type": int}, "blocks held out for the held-out loss"),
            (
                "--packing",
                {"choices": PACKINGS},
                "stream: cut the sentence stream every seq_len - 1 pieces (run_mlm); "
                "sentences: whole sentences per block, padded",
            ),
            ("--keep-relations", {"action": argparse.BooleanOptionalAction}, "keep each arc's relation label"),
        ],
    )
    parser.add_argument("--out-dataset", required=True, help="HF datasets folder (save_to_disk)")
    parser.add_argument("--out-tokenizer", required=True, help="tokenizer folder (HF format)")
    parser.add_argument("--out-stats", required=True, help="stats JSON")


def run(args) -> None:
    opts = resolve_options(args, "tokenizer")
    parsed = read_parsed(args.parsed)
    with atomic_path(args.out_tokenizer, is_dir=True) as tok_dir:
        if opts["vocab"]:
            tokenizer = load_tokenizer(opts["vocab"], opts["lowercase"])
        else:
            tokenizer = train_wordpiece(
                list(parsed["words"]), opts["vocab_size"], opts["min_frequency"], opts["lowercase"], tok_dir
            )
        tokenizer.save_pretrained(str(tok_dir))
        dataset, stats = build_dataset(
            parsed, tokenizer, opts["seq_len"], opts["validation_blocks"], opts["keep_relations"], opts["packing"]
        )
        with atomic_path(args.out_dataset, is_dir=True) as data_dir:
            dataset.save_to_disk(str(data_dir))
    write_text(json.dumps(stats, indent=2) + "\n", args.out_stats)
    log.info("tokenized: %s", json.dumps(stats))
