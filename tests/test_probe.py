"""Tests of the attention-head UAS probe (sasbert.measure.probe) against docs/method.md, "UAS probe"."""

from __future__ import annotations

import gzip
from pathlib import Path

import conllu
import pandas as pd
import pytest
import torch

from conftest import BERT_VOCAB, EWT_DEV, tiny_bert_config
from sasbert.cli import main
from sasbert.errors import InputError
from sasbert.measure.checkpoints import check_checkpoint_dir, step_from_name
from sasbert.measure.probe import (
    alignment as probe_alignment,
)
from sasbert.measure.probe import (
    scoring as probe_scoring,
)
from sasbert.measure.probe import (
    sentences as probe_sentences,
)
from sasbert.measure.probe import (
    tables as probe_tables,
)
from sasbert.measure.probe.options import ProbeOptions

torch.set_num_threads(1)

ROOT = Path(__file__).resolve().parents[1]
VOCAB = BERT_VOCAB
WSJ = ROOT.parent / "shared" / "data" / "wsj_nltk_sample" / "nltk_wsj_dep_sample.conllu"
DP, PD = probe_scoring.DIRECTIONS


# ----------------------------------------------------------------------------------------------
# fixtures: a tiny random BERT saved as a checkpoint dir


@pytest.fixture(scope="module")
def tokenizer(bert_tokenizer):
    return bert_tokenizer


@pytest.fixture(scope="module")
def model(tokenizer):
    from transformers import BertForMaskedLM

    torch.manual_seed(0)
    return BertForMaskedLM(tiny_bert_config(tokenizer.vocab_size, attn_implementation="eager")).eval()


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, model, tokenizer):
    path = tmp_path_factory.mktemp("run") / "step-0001000"
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def series(checkpoint):
    """Two checkpoint dirs of one run (the same weights): step-0001000 and checkpoint-2000."""
    second = checkpoint.parent / "checkpoint-2000"
    if not second.exists():
        second.symlink_to(checkpoint, target_is_directory=True)
    return checkpoint, second


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def conllu_lines(rows) -> str:
    """rows: (id, form, xpos, head, deprel)."""
    return "".join(f"{i}\t{f}\t_\t_\t{x}\t_\t{h}\t{d}\t_\t_\n" for i, f, x, h, d in rows)


# ----------------------------------------------------------------------------------------------
# 1. a hand-built attention tensor, scores computed by hand

# Pieces: 0 [CLS] | 1 a1, 2 a2 = word A | 3 b = word B | 4 c1, 5 c2, 6 c3 = word C | 7 [SEP]
# Gold: A -> B (nsubj), B root, C -> B (obl:tmod, scored as "obl").
PIECE_WORD = [-1, 0, 0, 1, 2, 2, 2, -1]
HEAD0 = [
    [0.125] * 8,
    [0.15, 0.10, 0.10, 0.25, 0.10, 0.10, 0.10, 0.10],  # a1: to A .2, B .25, C .3
    [0.20, 0.10, 0.00, 0.20, 0.10, 0.10, 0.10, 0.20],  # a2: to A .1, B .2,  C .3
    [0.20, 0.10, 0.10, 0.00, 0.10, 0.10, 0.20, 0.20],  # b:  to A .2, B 0,   C .4
    [0.20, 0.10, 0.05, 0.10, 0.10, 0.10, 0.10, 0.25],  # c1: to A .15, B .1, C .3
    [0.20, 0.10, 0.10, 0.10, 0.10, 0.10, 0.10, 0.20],  # c2: to A .2, B .1,  C .3
    [0.20, 0.10, 0.10, 0.10, 0.10, 0.10, 0.10, 0.20],  # c3: to A .2, B .1,  C .3
    [0.125] * 8,
]
# Word level, W[i, j] = mean over i's pieces of the sum over j's pieces, diagonal zeroed:
#   from A: to B (.25+.2)/2 = .225, to C (.3+.3)/2 = .3
#   from B: to A .2, to C .4
#   from C: to A (.15+.2+.2)/3 = .55/3, to B .1
W0 = [[0, 0.225, 0.3], [0.2, 0, 0.4], [0.55 / 3, 0.1, 0]]
# dependent_to_parent (argmax of the row): A -> C (wrong; the mean over C's columns, .1, would have
#   picked B), C -> A (wrong). parent_to_dependent (argmax of the column): A <- B (.2 > .55/3: right;
#   a SUM over C's rows, .55, would have picked C), C <- B (.4 > .3: right).
# Head 1 is uniform (.125): to-word mass is .125 x pieces: W1 = [[0, .125, .375], [.25, 0, .375],
# [.25, .125, 0]]. dependent_to_parent: A -> C, C -> A (both wrong); parent_to_dependent: column A
# = [0, .25, .25] is a tie, lowest index B wins (right); column C = [.375, .375, 0] ties, A (wrong).
W1 = [[0, 0.125, 0.375], [0.25, 0, 0.375], [0.25, 0.125, 0]]
# (head, direction, relation) -> (correct, count, soft score = mean W on the gold parent)
EXPECTED = {
    (0, DP, "nsubj"): (0, 1, 0.225),
    (0, DP, "obl"): (0, 1, 0.1),
    (0, DP, "all"): (0, 2, 0.1625),
    (0, PD, "nsubj"): (1, 1, 0.2),
    (0, PD, "obl"): (1, 1, 0.4),
    (0, PD, "all"): (2, 2, 0.3),
    (1, DP, "nsubj"): (0, 1, 0.125),
    (1, DP, "obl"): (0, 1, 0.125),
    (1, DP, "all"): (0, 2, 0.125),
    (1, PD, "nsubj"): (1, 1, 0.25),
    (1, PD, "obl"): (0, 1, 0.375),
    (1, PD, "all"): (1, 2, 0.3125),
}


def hand_inputs():
    att = torch.tensor([HEAD0, [[0.125] * 8] * 8], dtype=torch.float64).unsqueeze(0)  # [1, 2, 8, 8]
    piece_word = torch.tensor([PIECE_WORD])
    gold = torch.tensor([[1, -1, 1]])  # 0-based gold parent word
    rel = torch.tensor([[0, -1, 1]])  # relations ["nsubj", "obl"]
    return att, piece_word, gold, rel


def test_word_attention_by_hand():
    att, piece_word, _, _ = hand_inputs()
    w = probe_scoring.word_attention(att, piece_word, 3)
    assert torch.allclose(w[0, 0], torch.tensor(W0, dtype=torch.float64), atol=1e-12)
    assert torch.allclose(w[0, 1], torch.tensor(W1, dtype=torch.float64), atol=1e-12)


def test_scores_by_hand():
    att, piece_word, gold, rel = hand_inputs()
    scorer = probe_scoring.AttentionScorer(1, 2, ["nsubj", "obl"])
    scorer.add((att,), piece_word, gold, rel)
    table = scorer.table(labelled=True)
    assert len(table) == 1 * 2 * 2 * 3
    for row in table.itertuples():
        correct, count, soft = EXPECTED[(row.head, row.direction, row.relation)]
        assert (row.layer, row.correct, row.count) == (0, correct, count), row
        assert row.accuracy == pytest.approx(correct / count)
        assert row.soft_score == pytest.approx(soft, abs=1e-12), row
    # the same tallies when the tensor is float32 and the sentence sits in a padded batch
    att32 = torch.zeros(2, 2, 10, 10)
    att32[1, :, :8, :8] = att[0].float()
    pw = torch.full((2, 10), -1)
    pw[1, :8] = piece_word[0]
    pw[0, 1:3] = torch.tensor([0, 1])
    g = torch.tensor([[-1, 0, -1, -1], [1, -1, 1, -1]])
    r = torch.tensor([[-1, -1, -1, -1], [0, -1, 1, -1]])
    scorer32 = probe_scoring.AttentionScorer(1, 2, ["nsubj", "obl"])
    scorer32.add((att32,), pw, g, r)
    t32 = scorer32.table()
    assert t32["correct"].tolist() == table["correct"].tolist()
    assert t32["count"].tolist() == table["count"].tolist()
    assert t32["soft_score"].to_numpy() == pytest.approx(table["soft_score"].to_numpy(), abs=1e-6)

    offsets = probe_tables.offset_table([gold[0].numpy()], [rel[0].numpy()], ["nsubj", "obl"])
    summary = probe_tables.summarize(pd.concat([table, offsets], ignore_index=True), min_relation_count=1)
    best = summary.set_index(["method", "relation"])
    # ties go to the lowest layer, head, then dependent_to_parent: all three best heads are (0, 0, PD)
    for relation in ("nsubj", "obl", "all"):
        assert best.loc[("attention", relation), ["layer", "head", "direction"]].tolist() == [0, 0, PD]
        assert best.loc[("attention", relation), "accuracy"] == 1.0
    assert best.loc[("attention", "obl"), "max_soft_score"] == pytest.approx(0.4)
    assert best.loc[("attention", "mean"), "accuracy"] == 1.0
    assert best.loc[("attention", "mean"), "n_relations"] == 2
    # offsets: A (word 0) -> B (word 1) is +1, C (word 2) -> B is -1; "all": 1/2, first of -3..+3 wins
    assert best.loc[("offset", "nsubj"), ["offset", "correct"]].tolist() == [1, 1]
    assert best.loc[("offset", "obl"), ["offset", "correct"]].tolist() == [-1, 1]
    assert best.loc[("offset", "all"), ["offset", "correct", "count"]].tolist() == [-1, 1, 2]
    assert best.loc[("offset", "mean"), "accuracy"] == 1.0
    # min_relation_count above every relation's count: the mean is over no relation
    summary = probe_tables.summarize(pd.concat([table, offsets], ignore_index=True), min_relation_count=2)
    mean = summary.set_index(["method", "relation"]).loc[("attention", "mean")]
    assert mean["n_relations"] == 0 and pd.isna(mean["accuracy"])


# ----------------------------------------------------------------------------------------------
# 2. an independent, deliberately plain reference implementation (docs/method.md, "UAS probe",
# word for word)


def reference_probe(model, tokenizer, path, n_sentences, max_pieces, min_relation_count, excluded=("root", "punct")):
    """Loop-based, one sentence at a time, no padding, no batching, no tensors past the model."""
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        sentences = conllu.parse(fh.read())[:n_sentences]
    n_layers = model.config.num_hidden_layers
    n_heads = model.config.num_attention_heads
    tally = {}  # (layer, head, direction, relation) -> [correct, count, soft sum]
    offset_tally = {}  # (offset, relation) -> [correct, count]
    skipped = 0
    for sentence in sentences:
        # skip multiword-token ranges (ids like (3, '-', 4)) and empty nodes ((8, '.', 1))
        words = [t for t in sentence if isinstance(t["id"], int)]
        forms = [t["form"] for t in words]
        # each word's pieces, tokenized on its own; the sentence = words joined by spaces
        word_pieces = [tokenizer.convert_tokens_to_ids(tokenizer.tokenize(f)) for f in forms]
        ids = [tokenizer.cls_token_id] + [p for ps in word_pieces for p in ps] + [tokenizer.sep_token_id]
        assert ids == tokenizer(" ".join(forms))["input_ids"]
        if len(ids) > max_pieces:
            skipped += 1
            continue
        owner = [None]
        for w, ps in enumerate(word_pieces):
            owner += [w] * len(ps)
        owner.append(None)
        n = len(words)
        with torch.no_grad():
            attentions = model(torch.tensor([ids]), output_attentions=True).attentions
        for layer in range(n_layers):
            for head in range(n_heads):
                a = attentions[layer][0, head].tolist()
                W = [[0.0] * n for _ in range(n)]
                for i in range(n):
                    rows = [p for p in range(len(ids)) if owner[p] == i]
                    for j in range(n):
                        cols = [q for q in range(len(ids)) if owner[q] == j]
                        # to a word: sum over its pieces; from a word: mean over its pieces
                        W[i][j] = sum(sum(a[p][q] for q in cols) for p in rows) / len(rows)
                for i in range(n):
                    W[i][i] = 0.0
                for i, token in enumerate(words):
                    relation = token["deprel"].split(":")[0]
                    if token["head"] == 0 or relation in excluded:
                        continue
                    parent = token["head"] - 1
                    best_dp = max(range(n), key=lambda j: W[i][j])  # first maximum
                    best_pd = max(range(n), key=lambda j: W[j][i])
                    for direction, pred, soft in ((DP, best_dp, W[i][parent]), (PD, best_pd, W[parent][i])):
                        for rel in (relation, "all"):
                            t = tally.setdefault((layer, head, direction, rel), [0, 0, 0.0])
                            t[0] += pred == parent
                            t[1] += 1
                            t[2] += soft
        for i, token in enumerate(words):
            relation = token["deprel"].split(":")[0]
            if token["head"] == 0 or relation in excluded:
                continue
            for offset in (-3, -2, -1, 1, 2, 3):
                for rel in (relation, "all"):
                    t = offset_tally.setdefault((offset, rel), [0, 0])
                    t[0] += i + offset == token["head"] - 1
                    t[1] += 1
    relations = sorted({k[3] for k in tally})
    best = {}
    for rel in relations:
        candidates = [(layer, head, d) for layer in range(n_layers) for head in range(n_heads) for d in (DP, PD)]
        top = candidates[0]
        for c in candidates:
            if tally[c + (rel,)][0] > tally[top + (rel,)][0]:
                top = c
        best[rel] = (top, tally[top + (rel,)][0] / tally[top + (rel,)][1])
    frequent = [rel for rel in relations if rel != "all" and tally[(0, 0, DP, rel)][1] >= min_relation_count]
    mean = sum(best[rel][1] for rel in frequent) / len(frequent)
    best_offset = {}
    for rel in relations:
        top = -3
        for offset in (-2, -1, 1, 2, 3):
            if offset_tally[(offset, rel)][0] > offset_tally[(top, rel)][0]:
                top = offset
        best_offset[rel] = (top, offset_tally[(top, rel)][0] / offset_tally[(top, rel)][1])
    return tally, best, mean, best_offset, skipped


def test_fast_path_matches_reference(model, tokenizer):
    n, max_pieces, min_count = 200, 40, 30
    model64 = model.double()
    try:
        ref_tally, ref_best, ref_mean, ref_offset, ref_skipped = reference_probe(
            model64, tokenizer, EWT_DEV, n, max_pieces, min_count
        )
        sentences = probe_sentences.read_treebank(EWT_DEV, max_sentences=n)
        result = probe_scoring.score_model(
            model64,
            tokenizer,
            sentences,
            ProbeOptions(max_pieces=max_pieces, batch_size=16, min_relation_count=min_count),
        )
        # batching must not change anything: one sentence a batch, and everything in one batch
        for batch_size in (1, 200):
            other = probe_scoring.score_model(
                model64,
                tokenizer,
                sentences,
                ProbeOptions(max_pieces=max_pieces, batch_size=batch_size, min_relation_count=min_count),
            )
            assert other.scores["correct"].tolist() == result.scores["correct"].tolist()
            assert other.scores["soft_score"].to_numpy() == pytest.approx(
                result.scores["soft_score"].to_numpy(), rel=1e-9, nan_ok=True
            )
    finally:
        model.float()
    assert ref_skipped > 0 and result.n_skipped_too_long == ref_skipped
    assert result.n_sentences == n - ref_skipped
    scores = result.scores[result.scores["method"] == "attention"]
    assert len(scores) == len(ref_tally)
    for row in scores.itertuples():
        correct, count, soft = ref_tally[(row.layer, row.head, row.direction, row.relation)]
        assert (row.correct, row.count) == (correct, count), row
        assert row.accuracy == correct / count
        assert row.soft_score == pytest.approx(soft / count, rel=1e-9, abs=1e-12)
    summary = result.summary.set_index(["method", "relation"])
    for rel, ((layer, head, direction), accuracy) in ref_best.items():
        got = summary.loc[("attention", rel)]
        assert (got["layer"], got["head"], got["direction"], got["accuracy"]) == (layer, head, direction, accuracy)
    assert summary.loc[("attention", "mean"), "accuracy"] == pytest.approx(ref_mean, rel=1e-12)
    for rel, (offset, accuracy) in ref_offset.items():
        got = summary.loc[("offset", rel)]
        assert (got["offset"], got["accuracy"]) == (offset, accuracy)
    assert (summary["n_skipped_too_long"] == ref_skipped).all()


# ----------------------------------------------------------------------------------------------
# 3. treebank reading and bad input


def test_read_treebank_skips_ranges_and_empty_nodes_and_strips_subtypes(tmp_path):
    text = (
        "# sent_id = 1\n"
        "1-2\tdon't\t_\t_\t_\t_\t_\t_\t_\t_\n"
        + conllu_lines([(1, "do", "VBP", 3, "aux"), (2, "n't", "RB", 3, "advmod")])
        + conllu_lines([(3, "go", "VB", 0, "root")])
        + "3.1\tgo\t_\t_\t_\t_\t_\t_\t0:root\t_\n"
        + conllu_lines([(4, "John", "NNP", 3, "nmod:poss")])
    )
    path = tmp_path / "x.conllu.gz"
    with gzip.open(path, "wt") as fh:
        fh.write(text + "\n")
    (sentence,) = probe_sentences.read_treebank(path)
    assert sentence.words == ("do", "n't", "go", "John")
    assert sentence.heads == (3, 3, 0, 3)
    assert sentence.relations == ("aux", "advmod", "root", "nmod")
    assert probe_sentences.scored_relations(sentence, True) == ["aux", "advmod", None, "nmod"]
    assert probe_sentences.scored_relations(sentence, True, excluded_relations=["aux"]) == [
        None,
        "advmod",
        None,
        "nmod",
    ]


def test_cycle_is_an_input_error_naming_file_and_line(tmp_path):
    good = conllu_lines([(1, "a", "DT", 2, "det"), (2, "dog", "NN", 0, "root")])
    bad = conllu_lines([(1, "a", "DT", 2, "det"), (2, "b", "NN", 3, "nsubj"), (3, "c", "VB", 2, "root")])
    path = write(tmp_path / "cycle.conllu", good + "\n# sent_id = 2\n" + bad + "\n")
    with pytest.raises(InputError, match=r"cycle\.conllu:(5|6|7): cycle"):
        probe_sentences.read_treebank(path)


def test_head_out_of_range_is_an_input_error(tmp_path, checkpoint, capsys):
    bad = conllu_lines([(1, "a", "DT", 2, "det"), (2, "dog", "NN", 0, "root"), (3, "x", "NN", 7, "dep")])
    path = write(tmp_path / "range.conllu", bad + "\n")
    rc = main(
        [
            "probe",
            "score",
            "--checkpoint",
            str(checkpoint),
            "--treebank",
            str(path),
            "--out-scores",
            str(tmp_path / "s.parquet"),
            "--out-summary",
            str(tmp_path / "u.parquet"),
        ]
    )
    err = capsys.readouterr().err
    assert rc == 2
    assert "range.conllu:3: HEAD 7 out of range" in err
    assert not (tmp_path / "s.parquet").exists()


def test_checkpoint_without_model_is_an_input_error(tmp_path, capsys):
    empty = tmp_path / "checkpoint-2000"
    empty.mkdir()
    with pytest.raises(InputError, match="checkpoint-2000: not a model checkpoint"):
        check_checkpoint_dir(empty)
    (empty / "config.json").write_text("{}")
    rc = main(
        [
            "probe",
            "score",
            "--checkpoint",
            str(empty),
            "--treebank",
            str(EWT_DEV),
            "--out-scores",
            str(tmp_path / "s.parquet"),
            "--out-summary",
            str(tmp_path / "u.parquet"),
        ]
    )
    err = capsys.readouterr().err
    assert rc == 2 and "checkpoint-2000: not a model checkpoint (no model weights" in err
    assert err.count("\n") == 1


def test_too_long_sentences_are_skipped_and_counted(model, tokenizer, tmp_path):
    short = conllu_lines([(1, "a", "DT", 2, "det"), (2, "dog", "NN", 3, "nsubj"), (3, "barks", "VBZ", 0, "root")])
    n = 30
    long = conllu_lines([(i, "word", "NN", 0 if i == 1 else 1, "root" if i == 1 else "dep") for i in range(1, n + 1)])
    path = write(tmp_path / "long.conllu", short + "\n" + long + "\n" + short + "\n")
    sentences = probe_sentences.read_treebank(path)
    result = probe_scoring.score_model(model, tokenizer, sentences, ProbeOptions(max_pieces=10))
    assert result.n_skipped_too_long == 1 and result.n_sentences == 2
    summary = result.summary
    assert (summary["n_skipped_too_long"] == 1).all()
    assert summary.query("method == 'attention' and relation == 'all'")["count"].item() == 4
    with pytest.raises(InputError, match="no sentence fits"):
        probe_scoring.score_model(model, tokenizer, sentences, ProbeOptions(max_pieces=4))


def test_word_without_pieces_skips_the_sentence(model, tokenizer):
    ok = probe_sentences.Sentence(("a", "dog", "barks"), (2, 3, 0), ("det", "nsubj", "root"), (None,) * 3, 1)
    # a zero-width space is removed by BERT's normalizer: that word has no piece to pool
    empty = probe_sentences.Sentence(("a", "\u200b", "dog"), (3, 3, 0), ("det", "dep", "root"), (None,) * 3, 5)
    assert probe_alignment.encode_sentences(tokenizer, [empty]) == [None]
    result = probe_scoring.score_model(model, tokenizer, [ok, empty])
    assert (result.n_skipped_unaligned, result.n_sentences) == (1, 1)
    assert (result.summary["n_skipped_unaligned"] == 1).all()


def test_slow_tokenizer_fallback_aligns_like_the_fast_one(tokenizer):
    # transformers 5's slow (Python) WordPiece tokenizer; its BertTokenizer is the fast one
    from transformers import BertTokenizerLegacy

    slow = BertTokenizerLegacy(vocab_file=str(VOCAB))
    sentences = probe_sentences.read_treebank(EWT_DEV, max_sentences=100)
    fast_enc, slow_enc = (
        probe_alignment.encode_sentences(tokenizer, sentences),
        probe_alignment.encode_sentences(slow, sentences),
    )
    for a, b in zip(fast_enc, slow_enc):
        assert a[0] == b[0] and a[1].tolist() == b[1].tolist()


@pytest.mark.parametrize(
    "text, message",
    [
        ("1\ta\t_\t_\t_\t_\t0\troot\t_\t_\n2\tb\t_\t_\n", r":2: expected 10 tab-separated"),
        ("1\ta\t_\t_\t_\t_\t0\troot\t_\t_\n2\tb\t_\t_\t_\t_\t_\tdep\t_\t_\n", r":2: .*missing .*HEAD"),
        ("1\ta\t_\t_\t_\t_\t0\troot\t_\t_\n\n1\ta\t_\t_\t_\t_\t0\t_\t_\t_\n", r":3: .*without DEPREL"),
        ("1\ta\t_\t_\t_\t_\t1\troot\t_\t_\n", r":1: .*cycle"),
    ],
)
def test_bad_conllu_names_file_and_line(tmp_path, text, message):
    path = write(tmp_path / "bad.conllu", text)
    with pytest.raises(InputError, match=r"bad\.conllu" + message):
        probe_sentences.read_treebank(path)


@pytest.mark.parametrize(
    "name, step",
    [
        ("step-0001000", 1000),
        ("checkpoint-2000", 2000),
        ("seed_0_step_20000", 20000),
        ("final", None),
        ("step-400", 400),
        ("multiberts-seed_0-step_20k", 20_000),  # MultiBERTs
        ("multiberts-seed_4-step_2000k", 2_000_000),
        ("step20000-tokens84B", 20_000),  # OLMo revisions
        ("step143000", 143_000),  # Pythia revisions
        ("bert-base-seed2-ckpt-180000", 180_000),  # the paper's own checkpoints
        ("3f1e" * 10, None),  # a HF cache snapshot: a commit hash, no step
        ("5000", 5000),  # a number alone
        # no convention matches: refused rather than guessed (issue 31)
        ("epoch3-5000", None),
        ("gpt2-124M", None),
        ("step-1.5k", None),
        ("run-7", None),
    ],
)
def test_parse_step(name, step):
    assert step_from_name(Path("/x/run-7") / name) == step


def test_wsj_sample_scores_all_only_without_punctuation(model, tokenizer):
    sentences = probe_sentences.read_treebank(WSJ, max_sentences=20)
    assert not probe_sentences.is_labelled(sentences)
    expected = sum(
        1 for s in sentences for h, x in zip(s.heads, s.xpos) if h != 0 and x not in probe_sentences.PTB_PUNCT_TAGS
    )
    result = probe_scoring.score_model(model, tokenizer, sentences)
    assert set(result.summary["relation"]) == {"all"}
    assert set(result.scores["relation"]) == {"all"}
    assert (result.summary["count"] == expected).all()
    fewer = probe_scoring.score_model(model, tokenizer, sentences, punct_tags=[])
    assert (fewer.summary["count"] > expected).all()


# ----------------------------------------------------------------------------------------------
# 4. the CLI, end to end


SCORE_ARGS = ["--treebank", str(EWT_DEV), "--max-sentences", "40", "--max-pieces", "48", "--min-relation-count", "10"]


def test_cli_score_and_gather(series, tmp_path):
    checkpoint, _ = series
    out = tmp_path / "out"
    for name in ("step-0001000", "checkpoint-2000"):  # each checkpoint on its own, then gathered
        rc = main(
            [
                "probe",
                "score",
                "--checkpoint",
                str(checkpoint.parent / name),
                *SCORE_ARGS,
                "--out-scores",
                str(out / f"{name}.scores.parquet"),
                "--out-summary",
                str(out / f"{name}.summary.parquet"),
            ]
        )
        assert rc == 0
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [
            "step-0001000.scores.parquet",
            "checkpoint-2000.scores.parquet",
            "step-0001000.summary.parquet",
            "checkpoint-2000.summary.parquet",
        ]
    )
    scores = pd.read_parquet(out / "step-0001000.scores.parquet")
    assert list(scores.columns) == probe_tables.SCORE_COLUMNS
    assert set(scores["step"]) == {1000} and set(scores["checkpoint"]) == {"step-0001000"}
    assert set(scores["treebank"]) == {EWT_DEV.name}
    attention = scores[scores["method"] == "attention"]
    assert len(attention) == 2 * 2 * 2 * attention["relation"].nunique()
    summary = pd.read_parquet(out / "step-0001000.summary.parquet")
    assert list(summary.columns) == probe_tables.SUMMARY_COLUMNS
    assert {"all", "mean", "nsubj"} <= set(summary["relation"])
    assert "punct" not in set(summary["relation"]) and "root" not in set(summary["relation"])
    assert (summary["n_sentences"] + summary["n_skipped_too_long"] == 40).all()

    rc = main(
        [
            "probe",
            "gather",
            "--inputs",
            str(out / "checkpoint-2000.summary.parquet"),
            str(out / "step-0001000.summary.parquet"),
            "--out",
            str(tmp_path / "run.parquet"),
        ]
    )
    assert rc == 0
    gathered = pd.read_parquet(tmp_path / "run.parquet")
    assert gathered["step"].tolist() == [1000] * len(summary) + [2000] * len(summary)
    # the same weights at both steps: identical scores
    first, second = gathered[gathered.step == 1000], gathered[gathered.step == 2000]
    assert first["accuracy"].tolist() == pytest.approx(second["accuracy"].tolist(), nan_ok=True)
    # a step gathered twice is an error
    rc = main(
        [
            "probe",
            "gather",
            "--inputs",
            str(out / "step-0001000.summary.parquet"),
            str(out / "step-0001000.summary.parquet"),
            "--out",
            str(tmp_path / "dup.parquet"),
        ]
    )
    assert rc == 2 and not (tmp_path / "dup.parquet").exists()

    # a series scored in one call: one table per kind with every checkpoint, in step order,
    # equal to the gathered single-checkpoint tables
    rc = main(
        [
            "probe",
            "score",
            "--checkpoint",
            str(checkpoint.parent / "*"),
            *SCORE_ARGS,
            "--out-scores",
            str(tmp_path / "series.scores.parquet"),
            "--out-summary",
            str(tmp_path / "series.summary.parquet"),
        ]
    )
    assert rc == 0
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "series.summary.parquet"), gathered)


def test_cli_outputs_must_differ(series, tmp_path, capsys):
    checkpoint, _ = series
    rc = main(
        [
            "probe",
            "score",
            "--checkpoint",
            str(checkpoint),
            str(checkpoint.parent / "checkpoint-*"),
            "--treebank",
            str(EWT_DEV),
            "--out-scores",
            str(tmp_path / "s.parquet"),
            "--out-summary",
            str(tmp_path / "s.parquet"),
        ]
    )
    assert rc == 2 and "two name the same file" in capsys.readouterr().err


def test_cache_dir_keeps_finished_checkpoints_and_redoes_stale_ones(series, tmp_path, caplog):
    """A retried job over a series keeps what an interrupted attempt finished."""
    import logging
    import os
    import shutil

    checkpoint, _ = series
    cache = tmp_path / "cache"
    treebank = tmp_path / EWT_DEV.name
    shutil.copyfile(EWT_DEV, treebank)
    args = [
        "probe",
        "score",
        "--checkpoint",
        str(checkpoint.parent / "*"),
        "--treebank",
        str(treebank),
        "--max-sentences",
        "20",
        "--max-pieces",
        "48",
        "--min-relation-count",
        "10",
        "--cache-dir",
        str(cache),
        "--out-scores",
        str(tmp_path / "scores.parquet"),
        "--out-summary",
        str(tmp_path / "summary.parquet"),
    ]
    assert main(args) == 0
    first = {p.name: p.stat().st_mtime_ns for p in cache.iterdir()}
    tables = {f"step-{s}.{t}.parquet" for s in (1000, 2000) for t in ("scores", "summary", "bootstrap")}
    assert set(first) == tables | {f"step-{s}.identity.json" for s in (1000, 2000)}
    (cache / "step-2000.summary.parquet").unlink()  # as if stopped before this checkpoint finished
    stale = cache / "step-1000.scores.parquet"
    old = (checkpoint / "config.json").stat().st_mtime - 10
    os.utime(cache / "step-1000.summary.parquet", (old, old))  # older than the checkpoint: redone
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="sasbert.measure.probe"):
        assert main(args) == 0
    again = {p.name: p.stat().st_mtime_ns for p in cache.iterdir()}
    assert set(again) == set(first)
    assert again["step-2000.scores.parquet"] != first["step-2000.scores.parquet"]
    assert again[stale.name] != first[stale.name]
    assert "kept" not in caplog.text  # both checkpoints needed work
    summary = pd.read_parquet(tmp_path / "summary.parquet")
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="sasbert.measure.probe"):
        assert main(args) == 0
    assert caplog.text.count("kept from") == 2
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "summary.parquet"), summary)
    # the treebank edited in place (a sentence past the 20 scored): its content is part of every
    # entry's identity, so both checkpoints are scored again, to the same tables
    import gzip

    text = gzip.decompress(treebank.read_bytes()).decode()
    treebank.write_bytes(gzip.compress(text.rsplit("\n\n", 2)[0].encode() + b"\n\n"))
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="sasbert.measure.probe"):
        assert main(args) == 0
    assert caplog.text.count("scoring again (changed: treebank)") == 2 and "kept from" not in caplog.text
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "summary.parquet"), summary)


def test_best_head_interval_bootstraps_sentences_and_reselects_the_head():
    import numpy as np

    from sasbert.measure.probe.scoring import AttentionScorer

    scorer = AttentionScorer(n_layers=1, n_heads=2, relations=["nsubj"])
    # every sentence has 2 scored words; head 0 gets 1 right in each (UAS exactly 0.5, no spread),
    # head 1 none: the interval collapses on 0.5
    scorer.sentence_correct = [np.array([[[1.0, 0.0], [0.0, 0.0]]] * 40)]
    scorer.sentence_count = [np.full(40, 2.0)]
    assert scorer.best_head_interval() == (0.5, 0.5)
    # half the sentences all right, half all wrong: UAS 0.5 with a real spread around it
    scorer.sentence_correct = [np.array([[[2.0, 0.0], [0.0, 0.0]]] * 20 + [[[0.0, 0.0], [0.0, 0.0]]] * 20)]
    low, high = scorer.best_head_interval()
    assert 0.3 < low < 0.5 < high < 0.7


@pytest.mark.parametrize("name", ["gpt2-124M", "epoch3-5000", "step-1.5k"])
def test_cli_refuses_a_name_without_a_step_rather_than_guessing_one(checkpoint, tmp_path, capsys, name):
    """Issue 31: the last integer of a name is no step (gpt2-124M is not step 124, step-1.5k not
    step 1): such a folder is refused with the naming rule, unless its step is given."""
    folder = tmp_path / name
    folder.symlink_to(checkpoint, target_is_directory=True)
    outputs = ["--out-scores", str(tmp_path / "s.parquet"), "--out-summary", str(tmp_path / "m.parquet")]
    args = ["probe", "score", "--checkpoint", str(folder), "--treebank", str(EWT_DEV), *SCORE_ARGS[2:], *outputs]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert f"{name}: no step number in the name" in err and "a name that is a number alone" in err
    assert "Traceback" not in err and not (tmp_path / "s.parquet").exists()
    assert main([*args, "--step", "7"]) == 0
    assert pd.read_parquet(tmp_path / "m.parquet")["step"].unique().tolist() == [7]
