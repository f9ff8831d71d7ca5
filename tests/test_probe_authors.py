"""The authors' probe scoring (``probe.scoring: authors``; issue 17, item 3): one hand-computed
case per rule of their attention_depparse_probe.py (and the truncation of extract_attention_pt.py),
the parquet treebank in the layout of their WSJ set, the fast path against a plain loop written
from their rules on a real tiny BERT, and the workflow: the key is accepted and a change of it
reruns the probe jobs and what reads them, nothing else."""

from __future__ import annotations

import gzip
from collections import Counter
from pathlib import Path

import conllu
import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from conftest import EWT_DEV, REPO, job_counts, link_workflow, snakemake_ok, tiny_bert_config
from sasbert import config as sasconfig
from sasbert.errors import InputError
from sasbert.measure.probe import (
    alignment as probe_alignment,
)
from sasbert.measure.probe import all_runs as probe_all_runs
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

DP, PD = probe_scoring.DIRECTIONS


@pytest.fixture(scope="module")
def tokenizer(bert_tokenizer):
    return bert_tokenizer


@pytest.fixture(scope="module")
def model(tokenizer):
    from transformers import BertForMaskedLM

    torch.manual_seed(0)
    return BertForMaskedLM(
        tiny_bert_config(tokenizer.vocab_size, hidden_size=32, max_position=160, attn_implementation="eager")
    ).eval()


def piece_attention(word_maps):
    """[1, H, n + 2, n + 2] piece attention of a sentence of one-piece words ([CLS] w1..wn [SEP])
    whose word block is ``word_maps[h]`` (so the word-level map is that block, diagonal zeroed)."""
    n = len(word_maps[0])
    att = torch.zeros(1, len(word_maps), n + 2, n + 2, dtype=torch.float64)
    for h, w in enumerate(word_maps):
        att[0, h, 1 : n + 1, 1 : n + 1] = torch.tensor(w, dtype=torch.float64)
    return att, torch.tensor([[-1, *range(n), -1]])


def rows(table, **where):
    out = table
    for key, value in where.items():
        out = out[out[key] == value]
    return out


# ----------------------------------------------------------------------------------------------
# 1. one hand-computed case per rule


def test_every_word_is_scored_under_its_full_label_and_the_root_is_a_miss(tmp_path):
    # "a dog barks ." : a -> dog (det), dog -> barks (nsubj:pass), barks root, . -> barks (punct)
    text = "".join(
        f"{i}\t{w}\t_\t_\t_\t_\t{h}\t{r}\t_\t_\n"
        for i, w, h, r in [
            (1, "a", 2, "det"),
            (2, "dog", 3, "nsubj:pass"),
            (3, "barks", 0, "root"),
            (4, ".", 3, "punct"),
        ]
    )
    path = tmp_path / "s.conllu"
    path.write_text(text + "\n")
    (sentence,) = probe_sentences.read_treebank(path)
    assert probe_sentences.authors_relations(sentence, True) == ["det", "nsubj:pass", "root", "punct"]
    assert probe_sentences.scored_relations(sentence, True) == [
        "det",
        "nsubj",
        None,
        None,
    ]  # the spec scoring's, unchanged
    # One head. Word-level map (rows attend to columns): a -> dog, dog -> barks, barks -> dog (the
    # root must pick some word: a miss whatever it picks), . -> barks. dependent_to_parent: 3 of 4
    # right, the root wrong. parent_to_dependent (argmax of each column): a <- dog (.2) right,
    # dog <- barks (.6) right, barks <- . (.8) a miss, . <- a (a tie at .3: the first) wrong: 2 of 4.
    w = [[0, 0.5, 0.2, 0.3], [0.2, 0, 0.5, 0.3], [0.1, 0.6, 0, 0.3], [0.1, 0.1, 0.8, 0]]
    att, piece_word = piece_attention([w])
    names = ["det", "nsubj:pass", "punct", "root"]
    scorer = probe_scoring.AttentionScorer(1, 1, names)
    gold = torch.tensor([[1, 2, -1, 2]])  # 0-based; the root's -1
    scorer.add((att,), piece_word, gold, torch.tensor([[0, 1, 3, 2]]))
    table = scorer.table()
    dp, pd_ = rows(table, direction=DP).set_index("relation"), rows(table, direction=PD).set_index("relation")
    assert dp["correct"].to_dict() == {"det": 1, "nsubj:pass": 1, "punct": 1, "root": 0, "all": 3}
    assert pd_["correct"].to_dict() == {"det": 1, "nsubj:pass": 1, "punct": 0, "root": 0, "all": 2}
    assert dp.loc["all", "count"] == 4 and dp.loc["root", "count"] == 1 and dp.loc["punct", "count"] == 1
    assert dp.loc["root", "soft_score"] == 0  # no parent word: no weight on it


def test_offsets_run_from_minus_3_to_plus_2_clamped_to_the_root_and_the_last_word():
    # 4 words, 1-based heads [0, 1, 4, 2]. Prediction i + offset clamped to [0, 4] (0 = root):
    #   w1 (root):  -3,-2,-1 -> 0 right; 0 -> 1; 1 -> 2; 2 -> 3
    #   w2 (-> 1):  -3,-2 -> 0; -1 -> 1 right; 0 -> 2; 1 -> 3; 2 -> 4
    #   w3 (-> 4):  -3 -> 0; -2 -> 1; -1 -> 2; 0 -> 3; 1 -> 4 right; 2 -> 5 clamped to 4 right
    #   w4 (-> 2):  -3 -> 1; -2 -> 2 right; -1 -> 3; 0 -> 4; 1, 2 -> 4 (clamped)
    gold = [np.array([-1, 0, 3, 1])]
    cols = probe_tables.offset_columns(gold, [np.zeros(4, dtype=np.int64)], ["dep"], True, "authors")
    table = probe_tables._frame(cols)
    assert rows(table, relation="all")["offset"].tolist() == [-3, -2, -1, 0, 1, 2]
    assert rows(table, relation="all")["correct"].tolist() == [1, 2, 2, 0, 1, 1]
    assert (table["count"] == 4).all()
    # the spec scoring's offsets on the same words but the root (which the spec scoring does not score): -3..+3 without
    # 0, nothing clamped: w3's +2 falls outside the sentence and is wrong
    spec = probe_tables._frame(probe_tables.offset_columns(gold, [np.array([-1, 0, 0, 0])], ["dep"], True))
    assert rows(spec, relation="all")["offset"].tolist() == [-3, -2, -1, 1, 2, 3]
    assert rows(spec, relation="all")["correct"].tolist() == [0, 1, 1, 1, 0, 0]
    # the best offset: -2 and -1 tie at 2/4; theirs is max((score, offset)): the highest, -1
    summary = probe_tables.summarize(
        table.assign(accuracy=probe_tables.authors_accuracy(table["correct"], table["count"])), 1, True, "authors"
    )
    assert rows(summary, method="offset", relation="all")["offset"].item() == -1
    # the spec scoring's: -2, -1 and +1 tie at 1/3; the first, -2
    assert rows(probe_tables.summarize(spec, 1), method="offset", relation="all")["offset"].item() == -2


POSS_WORDS = ("John", "'s", "dog", "runs")  # John -> dog (poss), 's -> John, dog -> barks, barks root


def poss_sentence(words=POSS_WORDS, labels=("poss", "possessive", "nsubj", "root"), heads=(3, 1, 4, 0)):
    return probe_sentences.Sentence(tuple(words), tuple(heads), tuple(labels), (None,) * len(words), 0)


def test_the_poss_rule_scores_a_possessor_by_the_next_words_prediction():
    sentence = poss_sentence()
    assert probe_sentences.poss_limits(sentence, 4).tolist() == [4, 0, 0, 0]
    # their condition `i < len(words) and words[i + 1] == "'s" or words[i + 1] == "s'"` groups as
    # (a and b) or c; a always holds, so s' counts as well as 's, with or without the grouping
    assert probe_sentences.poss_limits(poss_sentence(words=("Jones", "s'", "dog", "runs")), 4).tolist() == [4, 0, 0, 0]
    # only the label "poss" exactly (UD's nmod:poss never triggers it), and only before 's / s'
    assert (
        probe_sentences.poss_limits(poss_sentence(labels=("nmod:poss", "case", "nsubj", "root")), 4).tolist() == [0] * 4
    )
    assert probe_sentences.poss_limits(poss_sentence(words=("John", "his", "dog", "runs")), 4).tolist() == [0] * 4
    # the next word must have a prediction: not when truncation keeps only John
    assert probe_sentences.poss_limits(sentence, 1).tolist() == [0] * 4
    # and never on the last word (their code would index past the sentence there)
    last = poss_sentence(
        words=("dog", "runs", "John", "'s"), labels=("nsubj", "root", "dep", "poss"), heads=(2, 0, 2, 3)
    )
    assert probe_sentences.poss_limits(last, 4).tolist() == [0] * 4

    # Offsets (n = 4). John's own predictions: -3..-1 -> 0, 0 -> 1, 1 -> 2, 2 -> 3 (the gold, 3),
    # all below len(words) = 4, so the rule applies at every offset: John is right where 's's
    # prediction is 3, i.e. at +1 ('s is word 2), and WRONG at +2 although his own was right.
    # 's (-> 1) is right at -1; dog (-> 4) at +1 and +2 (5 clamped to 4); barks (root) never.
    gold = [np.array([2, 0, 3, -1])]
    rel = [np.array([1, 2, 0, 3])]  # ["nsubj", "poss", "possessive", "root"]
    names = ["nsubj", "poss", "possessive", "root"]
    table = probe_tables._frame(
        probe_tables.offset_columns(gold, rel, names, True, "authors", [probe_sentences.poss_limits(sentence, 4)])
    )
    assert rows(table, relation="poss")["correct"].tolist() == [0, 0, 0, 0, 1, 0]
    assert rows(table, relation="all")["correct"].tolist() == [0, 0, 1, 0, 2, 1]
    plain = probe_tables._frame(probe_tables.offset_columns(gold, rel, names, True, "authors"))  # the rule off
    assert rows(plain, relation="poss")["correct"].tolist() == [0, 0, 0, 0, 0, 1]

    # Attention, one head per case. Head 0: John -> 's (p = 2 < 4: the rule applies) and 's ->
    # dog: John right by 's's prediction. Head 1: John -> barks (p = 4, not below 4: the rule does
    # not apply) : John wrong. Head 2: John -> dog (right on its own) but 's -> John: the rule
    # applies (p = 3 < 4) and makes John wrong.
    maps = [
        [[0, 0.9, 0, 0.1], [0.1, 0, 0.8, 0.1], [0, 0, 0, 1], [0, 0, 1, 0]],
        [[0, 0.1, 0.2, 0.7], [0.1, 0, 0.8, 0.1], [0, 0, 0, 1], [0, 0, 1, 0]],
        [[0, 0.1, 0.8, 0.1], [0.9, 0, 0.1, 0], [0, 0, 0, 1], [0, 0, 1, 0]],
    ]
    att, piece_word = piece_attention(maps)
    scorer = probe_scoring.AttentionScorer(1, 3, names)
    poss = torch.from_numpy(probe_sentences.poss_limits(sentence, 4)).unsqueeze(0)
    scorer.add(
        (att,),
        piece_word,
        torch.from_numpy(gold[0]).unsqueeze(0),
        torch.from_numpy(rel[0]).unsqueeze(0),
        poss_limit=poss,
    )
    got = rows(scorer.table(), relation="poss", direction=DP).set_index("head")["correct"].to_dict()
    assert got == {0: 1, 1: 0, 2: 0}


def test_ties_go_to_the_highest_layer_head_and_direction():
    # 2 layers x 2 heads, every head the same uniform map over 3 one-piece words: the first
    # maximum, word 0 (or word 1 for word 0's own row), everywhere. Gold (0-based) [1, -1, 0]:
    # dependent_to_parent predicts [1, 0, 0]: words 0 and 2 right; parent_to_dependent (columns)
    # the same. Every (layer, head, direction) ties at 2 of 3.
    uniform = [[1.0] * 3] * 3
    att, piece_word = piece_attention([uniform, uniform])
    scorer = probe_scoring.AttentionScorer(2, 2, ["dep", "root"])
    gold, rel = torch.tensor([[1, -1, 0]]), torch.tensor([[0, 1, 0]])
    scorer.add((att, att), piece_word, gold, rel)
    table = scorer.table()
    assert set(rows(table, relation="all")["correct"]) == {2}
    authors = probe_tables.summarize(
        table.assign(accuracy=probe_tables.authors_accuracy(table["correct"], table["count"])), 1, True, "authors"
    )
    spec = probe_tables.summarize(table, 1, True)
    best = rows(authors, method="attention", relation="all")[["layer", "head", "direction"]].iloc[0].tolist()
    assert best == [1, 1, PD]  # their sorted(...)[-1]; "head<-dep" sorts after "dep->head"
    assert rows(spec, method="attention", relation="all")[["layer", "head", "direction"]].iloc[0].tolist() == [0, 0, DP]


def test_a_relation_without_a_miss_scores_zero_as_their_defaultdict_answers():
    assert probe_tables.authors_accuracy(np.array([2, 1, 0, 0]), np.array([2, 2, 3, 0])).tolist() == [
        0.0,
        0.5,
        0.0,
        0.0,
    ]
    # so a head right on both "dep" words (2/2 -> 0) loses to one right on one (1/2)
    table = pd.DataFrame(
        {
            "method": ["attention"] * 2 + ["offset"],
            "layer": [0, 0, np.nan],
            "head": [0, 1, np.nan],
            "direction": [DP, DP, None],
            "offset": [np.nan, np.nan, 1],
            "relation": ["dep"] * 3,
            "correct": [2, 1, 0],
            "count": [2, 2, 2],
            "soft_score": [0.5, 0.5, np.nan],
        }
    )
    table["accuracy"] = probe_tables.authors_accuracy(table["correct"], table["count"])
    best = rows(probe_tables.summarize(table, 1, False, "authors"), method="attention").iloc[0]
    assert (best["head"], best["correct"], best["accuracy"]) == (1, 1, 0.5)


def scores_table(counts: dict[str, int], accuracy: dict[str, float]) -> pd.DataFrame:
    """A scores table of one head and one offset with these word counts and accuracies."""
    records = []
    for relation, n in [*counts.items(), ("all", sum(counts.values()))]:
        acc = accuracy.get(relation, 0.0)
        common = {"relation": relation, "correct": round(acc * n), "count": n, "accuracy": acc}
        records.append(
            {
                "method": "attention",
                "layer": 0,
                "head": 0,
                "direction": DP,
                "offset": np.nan,
                "soft_score": 0.1,
                **common,
            }
        )
        records.append(
            {
                "method": "offset",
                "layer": np.nan,
                "head": np.nan,
                "direction": None,
                "offset": 1,
                "soft_score": np.nan,
                **common,
            }
        )
    return pd.DataFrame(records)


def test_mean_is_over_their_table_relations_not_root_or_punct_and_at_least_100_words():
    # their table: "all", then relations by count, root and punct left out, stopping at the first
    # relation with fewer than 100 words: nsubj (150) and det (100), not amod (99)
    table = scores_table(
        {"root": 150, "punct": 120, "nsubj": 150, "det": 100, "amod": 99},
        {"root": 0.0, "punct": 0.9, "nsubj": 0.2, "det": 0.4, "amod": 1.0 - 1 / 99},
    )
    mean = rows(probe_tables.summarize(table, 100, True, "authors"), method="attention", relation="mean").iloc[0]
    assert mean["n_relations"] == 2 and mean["accuracy"] == pytest.approx(0.3)
    # the spec scoring's mean on the same table takes root and punct too (the spec scoring never scores them, so they
    # would not be in a spec-scoring table): 4 relations
    spec = rows(probe_tables.summarize(table, 100, True), method="attention", relation="mean").iloc[0]
    assert spec["n_relations"] == 4


def test_long_sentences_are_cut_at_max_pieces_as_their_extraction_cuts_them(tokenizer, model):
    assert tokenizer.tokenize("unaffable") == ["una", "##ffa", "##ble"]
    # 125 one-piece words, a 3-piece word at pieces 126-128, then 2 more: 130 pieces + 2 specials
    words = ["the"] * 125 + ["unaffable", "dog", "runs"]
    heads = [128] * 125 + [128, 128, 0]
    sentence = probe_sentences.Sentence(tuple(words), tuple(heads), ("dep",) * 127 + ("root",), (None,) * 128, 0)
    (enc,) = probe_alignment.encode_sentences(tokenizer, [sentence])
    assert len(enc[0]) == 132
    (ids, piece_word), n = probe_alignment.truncate(enc, 128)
    # [CLS] + 126 pieces + [SEP]: the cut word keeps one piece ("una") in the input but no word;
    # the 125 words that fit are scored, and only they can be predicted
    assert len(ids) == 128 and ids[0] == tokenizer.cls_token_id and ids[-1] == tokenizer.sep_token_id
    assert ids[126] == tokenizer.convert_tokens_to_ids("una") and piece_word[126] == -1
    assert n == 125 and piece_word[1:126].tolist() == list(range(125))
    # a word that ends on piece 126 fits; the word starting at piece 127 is cut off
    exact = probe_sentences.Sentence(
        ("the",) * 126 + ("dog", "runs"), tuple(heads), sentence.relations, sentence.xpos, 0
    )
    (ids2, pw2), n2 = probe_alignment.truncate(probe_alignment.encode_sentences(tokenizer, [exact])[0], 128)
    assert n2 == 126 and len(ids2) == 128 and pw2[126] == 125 and pw2[127] == -1
    # exactly 128 pieces with [CLS] and [SEP]: nothing is cut
    fits = probe_sentences.Sentence(
        ("the",) * 126, (2,) + (0,) + (2,) * 124, ("dep", "root") + ("dep",) * 124, (None,) * 126, 0
    )
    enc3 = probe_alignment.encode_sentences(tokenizer, [fits])[0]
    assert len(enc3[0]) == 128 and probe_alignment.truncate(enc3, 128)[1] == 126

    # through score_model: the sentence is kept (not skipped); attention scores its 125 words
    # that fit, the offsets all 128
    result = probe_scoring.score_model(
        model, tokenizer, [sentence], ProbeOptions(scoring="authors", min_relation_count=1)
    )
    assert (result.n_sentences, result.n_skipped_too_long) == (1, 0)
    scores = result.scores
    assert set(rows(scores, method="attention", relation="all")["count"]) == {125}
    assert set(rows(scores, method="offset", relation="all")["count"]) == {128}
    assert set(rows(scores, method="attention", relation="root")["count"]) == {0}  # "runs" was cut
    with pytest.raises(InputError, match="no sentence fits"):
        probe_scoring.score_model(
            model, tokenizer, [sentence], ProbeOptions(max_pieces=128)
        )  # the spec scoring skips it


# ----------------------------------------------------------------------------------------------
# 2. their WSJ set's parquet layout


def wsj_like(path: Path, sentences, extra: bool = True) -> Path:
    """A parquet laid out as angie-chen55/wsj-dep-parses-1k is assumed to be: words, heads, relns
    (+ columns the reader ignores, such as a tokenization)."""
    table = pd.DataFrame(
        {
            "words": [list(s[0]) for s in sentences],
            "heads": [list(s[1]) for s in sentences],
            "relns": [list(s[2]) for s in sentences],
        }
    )
    if extra:
        table["text"] = [" ".join(s[0]) for s in sentences]
        table["input_ids"] = [[101, 102]] * len(sentences)
    table.to_parquet(path)
    return path


TWO = [
    (["A", "dog", "runs", "."], [2, 3, 0, 3], ["det", "nsubj", "root", "punct"]),
    (["John", "'s", "cat", "sleeps"], [3, 1, 4, 0], ["nmod:poss", "case", "nsubj", "root"]),
]


def test_parquet_treebank_reads_words_heads_and_full_labels(tmp_path):
    path = wsj_like(tmp_path / "train-00000-of-00001.parquet", TWO)
    sentences = probe_sentences.read_treebank(path)
    assert [s.words for s in sentences] == [tuple(s[0]) for s in TWO]
    assert sentences[1].heads == (3, 1, 4, 0)
    assert sentences[1].full_labels() == ("nmod:poss", "case", "nsubj", "root")
    assert sentences[1].relations == ("nmod", "case", "nsubj", "root")  # the spec scoring's relations
    assert [s.line for s in sentences] == [0, 1] and probe_sentences.is_labelled(sentences)
    assert len(probe_sentences.read_treebank(path, max_sentences=1)) == 1


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda t: t.drop(columns=["relns"]), r"x\.parquet: not a treebank table \(missing relns\)"),
        (lambda t: t.assign(heads=[[2, 3, 0, 3], [3, 1, 4]]), r"x\.parquet: row 1: 4 words but 3 heads"),
        (lambda t: t.assign(heads=[[2, 3, 0, 3], [3, 1, 9, 0]]), r"x\.parquet:row 1, word 3: HEAD 9 out of range"),
        (
            lambda t: t.assign(heads=[[2, 3, 0, 3], [3.5, 1, 4, 0]]),
            r"x\.parquet: row 1, word 1: heads entry 3\.5 is not an integer",
        ),
        (lambda t: t.assign(heads=[[2, 3, 0, 3], [0, 1, 4, 0]]), r"x\.parquet:row 1, word 4: sentence has 2 roots"),
        (
            lambda t: t.assign(relns=[["det", "nsubj", "root", "punct"], ["nmod:poss", "", "nsubj", "root"]]),
            r"row 1, word 2: relns entry '' is not",
        ),
        (
            lambda t: t.assign(words=["A dog barks .", "John 's cat sleeps"]),
            r"x\.parquet: row 0: column 'words' is not a list",
        ),
    ],
)
def test_bad_parquet_treebank_names_file_row_and_column(tmp_path, change, message):
    good = wsj_like(tmp_path / "good.parquet", TWO, extra=False)
    change(pd.read_parquet(good)).to_parquet(tmp_path / "x.parquet")
    with pytest.raises(InputError, match=message):
        probe_sentences.read_treebank(tmp_path / "x.parquet")


def test_parquet_treebank_errors_reach_the_cli_as_one_line(tmp_path, capsys, model, tokenizer):
    from sasbert.cli import main

    checkpoint = tmp_path / "step-10"
    model.save_pretrained(checkpoint)
    tokenizer.save_pretrained(checkpoint)
    pd.read_parquet(wsj_like(tmp_path / "good.parquet", TWO)).drop(columns=["heads"]).to_parquet(tmp_path / "x.parquet")
    out = ["--out-scores", str(tmp_path / "s.parquet"), "--out-summary", str(tmp_path / "u.parquet")]
    rc = main(
        [
            "probe",
            "score",
            "--checkpoint",
            str(checkpoint),
            "--treebank",
            str(tmp_path / "x.parquet"),
            "--scoring",
            "authors",
            *out,
        ]
    )
    err = capsys.readouterr().err
    assert rc == 2 and "x.parquet: not a treebank table (missing heads)" in err and "Traceback" not in err
    assert not (tmp_path / "s.parquet").exists()


# ----------------------------------------------------------------------------------------------
# 3. the fast path against a plain loop written from their code's rules, on a real tiny BERT


def their_word_pieces(tokenizer, words, max_seq_len):
    """Their piece -> word map: [CLS], the words, [SEP], each word's pieces numbered in turn,
    stopping at the word that holds piece max_seq_len - 1 (that word then is the map's last)."""
    groups, i = [], 0
    for pieces in [["[CLS]"], *[tokenizer.tokenize(w) for w in words], ["[SEP]"]]:
        group = []
        for _ in pieces:
            group.append(i)
            i += 1
            if i >= max_seq_len:
                break
        groups.append(group)
        if i >= max_seq_len:
            break
    return groups


def their_evaluation(predictions, example, tally):
    """Their evaluate_predictor on one sentence: counts right and wrong per relation and "all"."""
    words = example["words"]
    for i, (p, y, r) in enumerate(zip(predictions, example["heads"], example["relns"])):
        right = p == y
        if r == "poss" and p < len(words) and words[i + 1] in ("'s", "s'") and i + 1 < len(predictions):
            right = predictions[i + 1] == y
        for key in (r, "all"):
            tally.setdefault(key, [0, 0])[0 if right else 1] += 1


def their_score(tally):
    """Their scores: correct / (correct + wrong) for the relations with a miss, 0.0 for the others."""
    return lambda r: tally[r][0] / sum(tally[r]) if r in tally and tally[r][1] else 0.0


def reference_authors_probe(model, tokenizer, examples, max_seq_len, min_count):
    """One sentence at a time: their truncation ([CLS] + pieces + [SEP], cut to max_seq_len),
    their word map (sum over the columns of a word's pieces, mean over its rows), the map's diagonal
    zeroed and its first and last rows and columns dropped, argmax + 1."""
    n_layers, n_heads = model.config.num_hidden_layers, model.config.num_attention_heads
    tallies = {(layer, head, d): {} for layer in range(n_layers) for head in range(n_heads) for d in (DP, PD)}
    for ex in examples:
        pieces = [p for w in ex["words"] for p in tokenizer.tokenize(w)]
        ids = tokenizer.convert_tokens_to_ids(["[CLS]", *pieces, "[SEP]"])
        if len(ids) > max_seq_len:
            ids = ids[: max_seq_len - 1] + [tokenizer.sep_token_id]
        groups = their_word_pieces(tokenizer, ex["words"], len(ids))
        with torch.no_grad():
            attentions = model(torch.tensor([ids]), output_attentions=True).attentions
        for layer in range(n_layers):
            for head in range(n_heads):
                a = attentions[layer][0, head].double().numpy()
                cols = np.stack([a[:, g].sum(1) for g in groups], 1)  # to a word: sum
                w = np.stack([cols[g].mean(0) for g in groups], 0)  # from a word: mean
                for direction, m in ((DP, w.copy()), (PD, w.T.copy())):
                    np.fill_diagonal(m, 0)
                    m = m[1:-1, 1:-1]
                    their_evaluation(list(np.argmax(m, axis=-1) + 1), ex, tallies[(layer, head, direction)])
    offsets = {}
    for off in range(-3, 3):
        offsets[off] = {}
        for ex in examples:
            n = len(ex["words"])
            their_evaluation([max(0, min(i + off + 1, n)) for i in range(n)], ex, offsets[off])
    counts = Counter(r for ex in examples for r in ex["relns"])
    table = [r for r, c in counts.most_common() if r not in ("root", "punct") and c >= min_count]
    return tallies, offsets, counts, table


def test_authors_scoring_matches_a_plain_loop_of_their_rules(tmp_path, model, tokenizer):
    with gzip.open(EWT_DEV, "rt", encoding="utf-8") as fh:
        parsed = conllu.parse(fh.read())[:40]
    examples = []
    for sentence in parsed:
        words = [t for t in sentence if isinstance(t["id"], int)]
        forms = [t["form"] for t in words]
        relns = [t["deprel"] for t in words]
        # EWT's possessors are nmod:poss; relabel those before 's as "poss" so that the rule fires
        relns = [
            "poss" if r == "nmod:poss" and i + 1 < len(forms) and forms[i + 1] in ("'s", "s'") else r
            for i, r in enumerate(relns)
        ]
        examples.append({"words": forms, "heads": [t["head"] for t in words], "relns": relns})
    examples.append(
        {"words": ["Smith", "'s", "dog", "runs"], "heads": [3, 1, 4, 0], "relns": ["poss", "case", "nsubj", "root"]}
    )
    assert sum(r == "poss" for ex in examples for r in ex["relns"]) >= 2
    path = wsj_like(tmp_path / "wsj.parquet", [(e["words"], e["heads"], e["relns"]) for e in examples])
    max_pieces, min_count = 24, 20
    sentences = probe_sentences.read_treebank(path)
    model64 = model.double()
    try:
        tallies, offsets, counts, table = reference_authors_probe(model64, tokenizer, examples, max_pieces, min_count)
        result = probe_scoring.score_model(
            model64,
            tokenizer,
            sentences,
            ProbeOptions(max_pieces=max_pieces, batch_size=8, min_relation_count=min_count, scoring="authors"),
        )
    finally:
        model.float()
    truncated = sum(len(tokenizer(" ".join(e["words"]))["input_ids"]) > max_pieces for e in examples)
    assert truncated >= 10 and result.n_skipped_too_long == 0 and result.n_sentences == len(examples)

    scores = result.scores
    attention = rows(scores, method="attention")
    assert len(attention) == 2 * 2 * 2 * (len(counts) + 1)
    for row in attention.itertuples():
        tally = tallies[(row.layer, row.head, row.direction)]
        right, wrong = tally.get(row.relation, [0, 0])
        assert (row.correct, row.count) == (right, right + wrong), row
        assert row.accuracy == their_score(tally)(row.relation), row
    for row in rows(scores, method="offset").itertuples():
        right, wrong = offsets[row.offset].get(row.relation, [0, 0])
        assert (row.correct, row.count, row.accuracy) == (
            right,
            right + wrong,
            their_score(offsets[row.offset])(row.relation),
        )

    summary = result.summary.set_index(["method", "relation"])
    for relation in ["all", *counts]:
        candidates = [(their_score(t)(relation), layer, head, d) for (layer, head, d), t in tallies.items()]
        uas, layer, head, direction = sorted(candidates)[-1]
        got = summary.loc[("attention", relation)]
        assert (got["accuracy"], got["layer"], got["head"], got["direction"]) == (uas, layer, head, direction), relation
        baseline, offset = max((their_score(t)(relation), off) for off, t in offsets.items())
        assert (summary.loc[("offset", relation), "accuracy"], summary.loc[("offset", relation), "offset"]) == (
            baseline,
            offset,
        )
    mean = summary.loc[("attention", "mean")]
    assert len(table) >= 3 and mean["n_relations"] == len(table)
    assert mean["accuracy"] == pytest.approx(np.mean([summary.loc[("attention", r), "accuracy"] for r in table]))
    # the tables job reads this summary as it reads the spec scoring's: uas = the "all" best head, uas_mean, the offset baseline
    (uas,) = probe_all_runs.uas_rows(result.summary.assign(step=1000, treebank="wsj.parquet")).itertuples()
    assert (uas.uas, uas.uas_mean) == (summary.loc[("attention", "all"), "accuracy"], mean["accuracy"])
    assert (uas.offset_uas, uas.offset) == tuple(summary.loc[("offset", "all"), ["accuracy", "offset"]])


# ----------------------------------------------------------------------------------------------
# 4. the workflow


def series_config(folder, scoring):
    return {
        "runs": [],
        "series": [{"name": "tiny", "checkpoints": [f"{folder}/step-*"]}],
        "probe": {
            "treebank": "resources/ud/UD_English-EWT/en_ewt-ud-dev.conllu.gz",
            "max_sentences": 20,
            "min_relation_count": 10,
            "scoring": scoring,
        },
        "blimp": {"data_dir": "resources/blimp", "pairs_per_paradigm": 1, "every_steps": None},
        "complexity": {"enabled": False},  # the optional measures: not what this test is about
        "context": {"enabled": False},
    }


@pytest.fixture(scope="module")
def tiny_series(tmp_path_factory, model, tokenizer):
    folder = tmp_path_factory.mktemp("series")
    for step in (0, 10):
        model.save_pretrained(folder / f"step-{step}")
        tokenizer.save_pretrained(folder / f"step-{step}")
    return folder


def test_scoring_is_a_config_key_with_two_values():
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    assert sasconfig.validate(config, base_dir=REPO)["probe"]["scoring"] == "spec"  # the schema's default
    config["probe"]["scoring"] = "clark"
    with pytest.raises(sasconfig.ConfigError, match=r"probe\.scoring: 'clark' is not one of \['spec', 'authors'\]"):
        sasconfig.validate(config, base_dir=REPO)


@pytest.mark.slow
def test_a_change_of_scoring_reruns_the_probe_jobs_only(tmp_path, tiny_series):
    """A series probed with the authors' scoring through the real Snakefile (its BLiMP too); going
    back to the spec scoring's reruns the probe job, with the new option, into its own per-checkpoint cache,
    and not the BLiMP job. (The tables, phases and figures read the probe's tables, so they
    follow it; here only the two jobs run, to keep the test short.)"""
    workdir = link_workflow(tmp_path / "work")
    for scoring in ("authors", "spec"):
        (workdir / f"{scoring}.yaml").write_text(yaml.safe_dump(series_config(tiny_series, scoring)))
    probed = workdir / "results" / "probe" / "tiny" / "seed0"
    targets = [str(probed.relative_to(workdir) / "summary.parquet"), "results/blimp/tiny/seed0/summary.parquet"]
    snakemake_ok(*targets, "--cores", "2", "--configfile", "authors.yaml", cwd=workdir)
    summary, scores = pd.read_parquet(probed / "summary.parquet"), pd.read_parquet(probed / "scores.parquet")
    assert {"root", "punct", "nmod:poss", "all", "mean"} <= set(summary["relation"])
    assert set(rows(scores, method="offset")["offset"]) == {-3, -2, -1, 0, 1, 2}
    assert sorted(summary["step"].unique()) == [0, 10]
    plan = snakemake_ok(*targets, "-n", "-p", "--cores", "2", "--configfile", "spec.yaml", cwd=workdir)
    assert job_counts(plan) == {"probe": 1}, plan
    (command,) = [line for line in plan.splitlines() if "sasbert probe score" in line]
    assert '"scoring": "spec"' in command.replace('\\"', '"'), command
