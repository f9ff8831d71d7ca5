"""Head-to-piece mapping and block packing, against indices written out by hand."""

import json

import numpy as np
import pandas as pd
import pytest
from datasets import load_from_disk
from transformers import AutoTokenizer

from sasbert.cli import main
from sasbert.data import tokenization

VOCAB = [
    "[PAD]",
    "[UNK]",
    "[CLS]",
    "[SEP]",
    "[MASK]",
    "the",
    "dog",
    "play",
    "##s",
    ".",
    "un",
    "##believ",
    "##able",
    "run",
    "##ning",
    "super",
]


@pytest.fixture
def tokenizer(tmp_path):
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("\n".join(VOCAB) + "\n")
    return tokenization.load_tokenizer(vocab, lowercase=True)


# "The dog plays ."  The->dog, dog->plays, plays=root, .->plays
S1 = (["The", "dog", "plays", "."], [2, 3, 0, 3], ["det", "nsubj", "root", "punct"])
# "Unbelievable running"  Unbelievable->running, running=root
S2 = (["Unbelievable", "running"], [2, 0], ["amod", "root"])


def ids(tokenizer, pieces):
    return [tokenizer.convert_tokens_to_ids(p) for p in pieces]


def test_head_mapping_on_multi_piece_words(tokenizer):
    piece_ids, word_ids = tokenization.encode_sentences(tokenizer, [S1[0], S2[0]])
    assert piece_ids[0] == ids(tokenizer, ["the", "dog", "play", "##s", "."])
    assert word_ids[0] == [0, 1, 2, 2, 3]
    # first piece of each word -> first piece of its head; "##s" and the root carry -1
    assert tokenization.piece_heads(word_ids[0], S1[1]) == [1, 2, -1, -1, 2]
    assert piece_ids[1] == ids(tokenizer, ["un", "##believ", "##able", "run", "##ning"])
    assert tokenization.piece_heads(word_ids[1], S2[1]) == [3, -1, -1, -1, -1]


def test_packing_across_sentence_boundaries(tokenizer):
    piece_ids, word_ids = tokenization.encode_sentences(tokenizer, [S1[0], S2[0]])
    heads = [tokenization.piece_heads(w, s[1]) for w, s in zip(word_ids, [S1, S2])]
    cls, sep = tokenizer.cls_token_id, tokenizer.sep_token_id
    blocks = tokenization.pack_blocks(piece_ids, heads, None, seq_len=6, cls_id=cls, sep_id=sep)
    # stream: the dog play ##s . [SEP] un ##believ ##able run | ##ning [SEP] (dropped: partial chunk)
    assert blocks["input_ids"].tolist() == [
        [cls] + ids(tokenizer, ["the", "dog", "play", "##s", "."]),
        [cls, sep] + ids(tokenizer, ["un", "##believ", "##able", "run"]),
    ]
    # block 0: the(1)->dog(2), dog(2)->play(3), .(5)->play(3); block 1: offsets shift, un(2)->run(5)
    assert blocks["heads"].tolist() == [[-1, 2, 3, -1, -1, 3], [-1, -1, 5, -1, -1, -1]]


def test_arcs_leaving_the_block_become_minus_one(tokenizer):
    piece_ids, word_ids = tokenization.encode_sentences(tokenizer, [S1[0]])
    heads = [tokenization.piece_heads(word_ids[0], S1[1])]
    rels = [["det", "nsubj", "", "", "punct"]]
    blocks = tokenization.pack_blocks(piece_ids, heads, rels, seq_len=4, cls_id=2, sep_id=3)
    # [CLS] the dog play | [CLS] ##s . [SEP]: "." points back into block 0, so it is dropped
    assert blocks["heads"].tolist() == [[-1, 2, 3, -1], [-1, -1, -1, -1]]
    assert blocks["relations"].tolist() == [["", "det", "nsubj", ""], ["", "", "", ""]]


def test_word_without_pieces_keeps_its_arc_on_unk(tokenizer):
    piece_ids, word_ids = tokenization.encode_sentences(tokenizer, [["the", "\u200b", "dog"]])
    assert word_ids[0] == [0, 1, 2]
    assert piece_ids[0][1] == tokenizer.unk_token_id


def test_word_without_pieces_leaves_the_other_words_pieces_in_order(tokenizer):
    # "Supers <zero-width space> running": super's id is above ##s's, so sorting (word, id) pairs
    # would have put ##s first; the pieces must stay in text order
    sentence, heads = ["Supers", "\u200b", "running"], [3, 3, 0]
    assert tokenizer.convert_tokens_to_ids("super") > tokenizer.convert_tokens_to_ids("##s")
    piece_ids, word_ids = tokenization.encode_sentences(tokenizer, [sentence])
    assert piece_ids[0] == ids(tokenizer, ["super", "##s", "[UNK]", "run", "##ning"])
    assert word_ids[0] == [0, 0, 1, 2, 2]
    # Supers' arc sits on its first piece, the empty word's on its [UNK]
    assert tokenization.piece_heads(word_ids[0], heads) == [3, -1, 3, -1, -1]


def test_sentence_packing_keeps_sentences_whole_and_pads(tokenizer):
    piece_ids, word_ids = tokenization.encode_sentences(tokenizer, [S1[0], S2[0], S1[0]])
    heads = [tokenization.piece_heads(w, s[1]) for w, s in zip(word_ids, [S1, S2, S1])]
    cls, sep, pad = tokenizer.cls_token_id, tokenizer.sep_token_id, tokenizer.pad_token_id
    blocks = tokenization.pack_sentences(piece_ids, heads, None, seq_len=8, cls_id=cls, sep_id=sep, pad_id=pad)
    # S1 (5 pieces) fits with [CLS] and [SEP]; S2 (5) would not fit after it, so it opens block 1
    assert blocks["input_ids"].tolist() == [
        [cls] + ids(tokenizer, ["the", "dog", "play", "##s", "."]) + [sep, pad],
        [cls] + ids(tokenizer, ["un", "##believ", "##able", "run", "##ning"]) + [sep, pad],
        [cls] + ids(tokenizer, ["the", "dog", "play", "##s", "."]) + [sep, pad],
    ]
    assert blocks["attention_mask"].tolist() == [[1] * 7 + [0]] * 3
    assert blocks["heads"].tolist()[:2] == [[-1, 2, 3, -1, -1, 3, -1, -1], [-1, 4, -1, -1, -1, -1, -1, -1]]
    too_long = tokenization.pack_sentences(piece_ids, heads, None, seq_len=6, cls_id=cls, sep_id=sep, pad_id=pad)
    assert too_long["dropped"] == 3 and len(too_long["input_ids"]) == 0


def test_validation_slice_is_evenly_spread():
    assert tokenization.validation_indices(10, 4).tolist() == [0, 3, 6, 9]
    assert tokenization.validation_indices(10, 0).tolist() == []


def test_cli_builds_dataset_and_tokenizer(tmp_path):
    parsed = pd.DataFrame(
        [
            {"sentence_id": f"s{i}", "doc_id": "d", "source": f"x:{i}", "words": s[0], "heads": s[1], "relations": s[2]}
            for i, s in enumerate([S1, S2] * 20)
        ]
    )
    parsed_path = tmp_path / "parsed.parquet"
    parsed.to_parquet(parsed_path)
    out = {k: tmp_path / k for k in ["dataset", "tokenizer", "stats.json"]}
    args = [
        "tokenize",
        "--parsed",
        str(parsed_path),
        "--vocab-size",
        "60",
        "--min-frequency",
        "1",
        "--seq-len",
        "8",
        "--validation-blocks",
        "2",
        "--out-dataset",
        str(out["dataset"]),
        "--out-tokenizer",
        str(out["tokenizer"]),
        "--out-stats",
        str(out["stats.json"]),
    ]
    assert main(args) == 0
    data = load_from_disk(str(out["dataset"]))
    assert set(data) == {"train", "validation"} and len(data["validation"]) == 2
    stats = json.loads(out["stats.json"].read_text())
    assert stats["sentences"] == 40 and stats["words"] == 120
    assert len(data["train"]) + 2 == stats["blocks_train"] + stats["blocks_validation"]
    tok = AutoTokenizer.from_pretrained(out["tokenizer"])
    for row in data["train"]:
        heads = np.asarray(row["heads"])
        assert len(row["input_ids"]) == 8 and row["input_ids"][0] == tok.cls_token_id
        assert ((heads == -1) | ((heads >= 1) & (heads < 8))).all()
        assert all((rel != "") == (h >= 0) for rel, h in zip(row["relations"], heads))
    # arcs in blocks can never exceed the arcs in the corpus
    assert stats["arcs_in_blocks"] <= stats["arcs"] == 80


def test_a_vocab_with_a_piece_on_two_lines_is_refused_by_name(tmp_path):
    """A piece given twice shifts every later id (the slow and the fast tokenizer then disagree,
    and ids run past the embedding): the CLI stops, naming the file and both lines."""
    import subprocess
    import sys

    from conftest import BERT_VOCAB

    lines = BERT_VOCAB.read_text().splitlines()
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("\n".join([*lines[:2000], "the", "[SEP]", *lines[2000:]]) + "\n")
    parsed = tmp_path / "parsed.parquet"
    pd.DataFrame([{"sentence_id": "s", "doc_id": "d", "source": "x", "words": S1[0], "heads": S1[1]}]).to_parquet(
        parsed
    )
    out = [tmp_path / name for name in ("dataset", "tokenizer", "stats.json")]
    cli = [sys.executable, "-m", "sasbert", "tokenize", "--parsed", str(parsed), "--vocab", str(vocab)]
    cli += ["--out-dataset", str(out[0]), "--out-tokenizer", str(out[1]), "--out-stats", str(out[2])]
    result = subprocess.run(cli, capture_output=True, text=True)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert f"{vocab}:2001: the piece 'the' is also on line {lines.index('the') + 1}" in result.stderr
    assert not any(path.exists() for path in out)
    vocab.write_text("\n".join(lines) + "\n")
    tokenization.check_vocab(vocab)  # the vocab as it comes passes


def test_trained_vocab_is_written_in_canonical_order(tmp_path):
    """The WordPiece trainer lists its pieces in hash-map order; we write specials first, then the
    learned pieces sorted, so the same set of pieces always gets the same ids."""
    from conftest import EWT
    from sasbert.data import corpus
    from sasbert.data.parsers import conllu

    units = corpus.read_units([str(EWT / "en_ewt-ud-train.conllu.gz")], "conllu", max_units=1000)
    words = list(conllu.parse_shard(units)["words"])
    tokenization.train_wordpiece(words, 800, 2, True, tmp_path)
    vocab = (tmp_path / "vocab.txt").read_text().split("\n")[:-1]
    assert vocab[:5] == tokenization.SPECIAL_TOKENS
    assert vocab[5:] == sorted(vocab[5:]) and len(vocab) == 800
