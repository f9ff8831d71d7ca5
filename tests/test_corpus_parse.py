"""Corpus sharding and the conllu parse backend, on a real UD EWT excerpt."""

import gzip

import pandas as pd
import pytest

from conftest import EWT
from sasbert.cli import main
from sasbert.data import corpus
from sasbert.data.parsers import conllu
from sasbert.errors import InputError
from sasbert.measure.probe import sentences as probe_sentences

DEV = EWT / "en_ewt-ud-dev.conllu.gz"
# Real EWT dev sentences: one with an empty node (8.1), one with a multiword token (1-2 Today's).
EMPTY_NODE_ID = "weblog-blogspot.com_aggressivevoicedaily_20060814163400_ENG_20060814_163400-0007"
MWT_ID = "weblog-blogspot.com_gettingpolitical_20030906235000_ENG_20030906_235000-0003"


def ewt_block(sent_id: str) -> str:
    text = gzip.open(DEV, "rt", encoding="utf-8").read()
    for block in text.split("\n\n"):
        if f"# sent_id = {sent_id}\n" in block:
            return block.strip("\n") + "\n"
    raise AssertionError(sent_id)


@pytest.fixture
def excerpt(tmp_path):
    path = tmp_path / "excerpt.conllu"
    path.write_text("# newdoc id = doc-a\n" + ewt_block(EMPTY_NODE_ID) + "\n" + ewt_block(MWT_ID) + "\n")
    return path


def test_conllu_units_keep_blocks_comments_and_line_numbers(excerpt):
    units = list(corpus.conllu_units(excerpt))
    assert len(units) == 2
    assert units[0]["source"] == f"{excerpt}:1"
    assert units[0]["doc_id"] == units[1]["doc_id"] == "doc-a"
    n_lines_first = len(ewt_block(EMPTY_NODE_ID).strip("\n").split("\n")) + 1  # + newdoc line
    assert units[1]["source"] == f"{excerpt}:{n_lines_first + 2}"


def test_conllu_parse_skips_empty_nodes_and_mwt_ranges(excerpt):
    units = corpus.read_units([str(excerpt)], "conllu")
    parsed = conllu.parse_shard(units)
    first, second = parsed.iloc[0], parsed.iloc[1]
    assert first["sentence_id"] == EMPTY_NODE_ID
    # 8.1 "write" (an empty node) is not a word: word 9 is "about".
    assert list(first["words"][:9]) == ['"', "They", "can", "freely", "write", "anything", "they", "like", "about"]
    assert first["heads"][8] == 11 and first["relations"][8] == "case"
    assert "write" not in list(first["words"][5:9])
    # 1-2 "Today's" (a range) is skipped; its two words stay.
    assert list(second["words"][:4]) == ["Today", "'s", "incident", "proves"]
    assert list(second["heads"][:4]) == [3, 1, 4, 0]
    assert list(second["relations"][:4]) == ["nmod:poss", "case", "nsubj", "root"]
    assert list(second["relations"]).count("root") == 1


def test_sharding_is_contiguous_and_order_preserving(tmp_path):
    units = corpus.read_units([str(DEV)], "conllu", max_units=101)
    outs = [str(tmp_path / f"s{i}.parquet") for i in range(3)]
    corpus.write_shards(units, outs)
    gathered = pd.concat([pd.read_parquet(p) for p in outs], ignore_index=True)
    assert gathered["unit_id"].tolist() == list(range(101))
    assert [len(pd.read_parquet(p)) for p in outs] == [33, 34, 34]
    assert corpus.shard_bounds(2, 4) == [(0, 0), (0, 1), (1, 1), (1, 2)]


def _one_sentence(tmp_path, rows, name="bad.conllu"):
    lines = ["# sent_id = s1"] + [
        "\t".join([str(i), w, "_", "_", "_", "_", str(h), r, "_", "_"]) for i, w, h, r in rows
    ]
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n\n")
    return path


@pytest.mark.parametrize(
    "rows, message",
    [
        ([(1, "a", 2, "det"), (2, "b", 0, "root"), (3, "c", 7, "obj")], ":4: HEAD 7 out of range"),
        ([(1, "a", 2, "det"), (2, "b", 1, "nsubj"), (3, "c", 0, "root")], "cycle"),
        ([(1, "a", 0, "root"), (2, "b", 0, "root")], "2 roots"),
    ],
)
def test_bad_trees_name_file_and_line(tmp_path, rows, message):
    path = _one_sentence(tmp_path, rows)
    units = corpus.read_units([str(path)], "conllu")
    with pytest.raises(InputError, match=message) as err:
        conllu.parse_shard(units)
    assert str(path) in str(err.value)


@pytest.mark.parametrize("columns", [7, 9, 11])
def test_a_token_line_without_ten_columns_is_named_at_its_own_line(tmp_path, columns):
    """The parse stage and the probe share one CoNLL-U reader: both refuse a token line with the
    wrong number of columns, at that line (line 4 here: after a comment and two good words)."""
    good = ["1\ta\t_\t_\t_\t_\t2\tdet\t_\t_", "2\tdog\t_\t_\t_\t_\t0\troot\t_\t_"]
    bad = "\t".join(["3", "barks", "_", "_", "_", "_", "2", "dep", "_", "_", "_"][:columns])
    path = tmp_path / "cols.conllu"
    path.write_text("\n".join(["# sent_id = s1", *good, bad]) + "\n\n")
    message = rf"cols\.conllu:4: expected 10 tab-separated CoNLL-U columns, got {columns}"
    with pytest.raises(InputError, match=message):
        conllu.parse_shard(corpus.read_units([str(path)], "conllu"))
    with pytest.raises(InputError, match=message):
        probe_sentences.read_treebank(path)


def test_cli_errors_exit_nonzero_and_leave_no_output(tmp_path, capsys):
    path = _one_sentence(tmp_path, [(1, "a", 2, "det"), (2, "b", 0, "root"), (3, "c", 9, "obj")])
    shard, out = tmp_path / "shard.parquet", tmp_path / "parsed.parquet"
    assert main(["corpus", "--kind", "conllu", "--inputs", str(path), "--out", str(shard)]) == 0
    assert main(["parse", "--backend", "conllu", "--shard", str(shard), "--out", str(out)]) == 2
    assert "HEAD 9 out of range" in capsys.readouterr().err
    assert not out.exists()
    assert not list(tmp_path.glob(".parsed.parquet.tmp-*"))


@pytest.mark.parametrize(
    "content, message",
    [(b"", "corpus is empty"), (b"\x00\x01\x02binary", "binary data"), (b"\xff\xfe\xfa", "not UTF-8")],
)
def test_bad_corpus_files(tmp_path, content, message):
    path = tmp_path / "input.txt"
    path.write_bytes(content)
    with pytest.raises(InputError, match=message) as err:
        corpus.read_units([str(path)], "text")
    assert str(path) in str(err.value)


def test_unreadable_gzip(tmp_path):
    path = tmp_path / "broken.conllu.gz"
    path.write_bytes(b"not gzip at all")
    with pytest.raises(InputError, match=r"broken.conllu.gz:1: cannot read"):
        corpus.read_units([str(path)], "conllu")


def test_a_byte_order_mark_is_read_as_nothing(tmp_path, excerpt):
    """A CoNLL-U file saved with a UTF-8 byte-order mark (as some editors do) parses as without it,
    through the real corpus and parse CLIs; it used to fail at line 1 as a line of one column."""
    with_bom = tmp_path / "bom.conllu"
    with_bom.write_bytes(b"\xef\xbb\xbf" + excerpt.read_bytes())
    tables = []
    for source in (excerpt, with_bom):
        shard, parsed = tmp_path / f"{source.stem}.shard.parquet", tmp_path / f"{source.stem}.parsed.parquet"
        assert main(["corpus", "--kind", "conllu", "--inputs", str(source), "--out", str(shard)]) == 0
        assert main(["parse", "--backend", "conllu", "--shard", str(shard), "--out", str(parsed)]) == 0
        tables.append(pd.read_parquet(parsed).drop(columns=["source"], errors="ignore"))
    pd.testing.assert_frame_equal(tables[0], tables[1])
