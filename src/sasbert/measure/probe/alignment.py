"""Pieces to words: a sentence's token ids and the word of each piece, and which sentences fit a model."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from sasbert.measure.probe.sentences import Sentence


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


def max_model_pieces(model) -> int:
    """Longest input (pieces incl. special tokens) the model's position embeddings allow."""
    cfg = model.config
    limit = getattr(cfg, "max_position_embeddings", None) or 10**9
    if "roberta" in str(getattr(cfg, "model_type", "")) or "camembert" in str(getattr(cfg, "model_type", "")):
        limit -= (getattr(cfg, "pad_token_id", 1) or 1) + 1  # positions start after the padding idx
    return int(limit)


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
