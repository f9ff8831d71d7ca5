"""The stanza backend with real stanza: tiny models trained here by stanza's own trainers (the model
hub is unreachable), loaded by a real stanza.Pipeline, run on raw Wikipedia text.

The models are too small to parse well, so the tests check structure (one head per word, heads
within the sentence, exactly one root per sentence), sharding, the CLI, the workflow rules and the
errors, not accuracy.
"""

import dataclasses
import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from conftest import job_counts, link_workflow, snakemake_ok
from sasbert.cli import main
from sasbert.data import corpus, parse_quality
from sasbert.data.parsers import stanza as stanza_parser
from sasbert.data.parsers.parsed_shard import PARSED_COLUMNS
from sasbert.errors import InputError

stanza = pytest.importorskip("stanza")

from stanza_tiny import PACKAGE, PROCESSORS, build_tiny_stanza_models, install_as_resources, pipeline_kwargs  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
EWT = REPO / "resources" / "ud" / "UD_English-EWT"
WIKI = REPO / "resources" / "text" / "enwiki2015_300k.txt.gz"


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory):
    return build_tiny_stanza_models(EWT / "en_ewt-ud-train.conllu.gz", tmp_path_factory.mktemp("stanza-tiny"))


@pytest.fixture(scope="session")
def resources_dir(tiny_models, tmp_path_factory):
    return install_as_resources(tiny_models, tmp_path_factory.mktemp("stanza_resources"))


@pytest.fixture(scope="session")
def options(resources_dir):
    return stanza_parser.StanzaOptions(str(resources_dir), package=PACKAGE, device="cpu")


@pytest.fixture(scope="session")
def wiki_units():
    cleaning = corpus.TextCleaning(min_words=5, drop_headings=True, max_words=800)
    return corpus.read_units([str(WIKI)], "text", cleaning=cleaning)


def assert_trees(parsed: pd.DataFrame) -> None:
    assert len(parsed) > 0 and list(parsed.columns) == PARSED_COLUMNS
    for row in parsed.itertuples(index=False):
        n = len(row.words)
        assert n > 0 and len(row.heads) == n and len(row.relations) == n
        assert all(0 <= h <= n for h in row.heads), row
        assert sum(1 for h in row.heads if h == 0) == 1, row  # exactly one root
        assert all(h != i + 1 for i, h in enumerate(row.heads))  # no word heads itself
        assert all(isinstance(r, str) and r for r in row.relations)


def test_a_real_pipeline_from_explicit_model_paths(tiny_models, tmp_path):
    """The issue's check, literally: explicit model paths, download_method=None, raw text in."""
    nlp = stanza.Pipeline(
        "en",
        dir=str(tmp_path),
        processors="tokenize,pos,lemma,depparse",
        download_method=None,
        use_gpu=False,
        **pipeline_kwargs(tiny_models),
    )
    doc = nlp("The cat sat on the mat. It was happy.\n\nA second paragraph follows here.")
    rows = [stanza_parser.stanza_sentence(s) for s in doc.sentences]
    assert len(rows) >= 2
    assert_trees(
        pd.DataFrame([{"sentence_id": "", "doc_id": "", "source": "", **r} for r in rows], columns=PARSED_COLUMNS)
    )
    assert "".join(w for r in rows for w in r["words"]).startswith("Thecatsat")


def test_stanza_backend_on_wikipedia_text(options, wiki_units):
    parsed = stanza_parser.parse_units(wiki_units, options)
    assert_trees(parsed)
    # every paragraph is parsed, in order, and its words are its text's characters
    assert parsed["source"].unique().tolist() == wiki_units["source"].tolist()
    for unit in wiki_units.itertuples(index=False):
        words = "".join(w for ws in parsed.loc[parsed["source"] == unit.source, "words"] for w in ws)
        assert words == unit.text.replace(" ", "")
    assert parsed["sentence_id"].is_unique and parsed["sentence_id"].iloc[0] == "0-0"


def test_stanza_sharding_gives_the_same_gathered_result(options, wiki_units, tmp_path):
    one = stanza_parser.parse_units(wiki_units, options)
    outs = [str(tmp_path / f"shard-{i}.parquet") for i in range(3)]
    corpus.write_shards(wiki_units, outs)
    gathered = pd.concat([stanza_parser.parse_units(pd.read_parquet(o), options) for o in outs], ignore_index=True)
    pd.testing.assert_frame_equal(one, gathered)


def test_stanza_parse_cli(resources_dir, wiki_units, tmp_path):
    shard, out = tmp_path / "shard-0.parquet", tmp_path / "parsed-0.parquet"
    corpus.write_shards(wiki_units.iloc[:5], [str(shard)])
    args = [
        "parse",
        "--backend",
        "stanza",
        "--shard",
        str(shard),
        "--out",
        str(out),
        "--stanza-dir",
        str(resources_dir),
    ]
    args += ["--stanza-package", PACKAGE, "--stanza-device", "cpu", "--stanza-batch-size", "depparse=300", "pos=300"]
    assert main(args) == 0
    assert_trees(pd.read_parquet(out))
    assert main([*args[:-2], "parser=3", "--out", str(tmp_path / "bad.parquet")]) == 2
    assert not (tmp_path / "bad.parquet").exists()


def test_stanza_empty_shard_gives_an_empty_parsed_shard():
    empty = pd.DataFrame(columns=["unit_id", "doc_id", "source", "text"])
    assert list(stanza_parser.parse_units(empty, stanza_parser.StanzaOptions("nowhere")).columns) == PARSED_COLUMNS


def test_missing_model_folder_names_the_key_and_leaves_nothing(wiki_units, tmp_path, capsys):
    shard, out = tmp_path / "shard-0.parquet", tmp_path / "parsed-0.parquet"
    corpus.write_shards(wiki_units.iloc[:2], [str(shard)])
    empty = tmp_path / "stanza_resources"
    empty.mkdir()
    args = ["parse", "--backend", "stanza", "--shard", str(shard), "--out", str(out), "--stanza-dir", str(empty)]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert f"corpus.stanza.resources_dir: {empty}: no stanza models here" in err
    assert "sasbert stanza-models" in err and "offline, copy a stanza_resources folder" in err
    assert not out.exists()


def test_a_missing_model_file_is_named(resources_dir, tmp_path):
    broken = shutil.copytree(resources_dir, tmp_path / "broken")
    (broken / "en" / "depparse" / f"{PACKAGE}.pt").unlink()
    with pytest.raises(InputError, match=r"corpus.stanza.resources_dir: .*a model is missing .*depparse"):
        stanza_parser.load_stanza(stanza_parser.StanzaOptions(str(broken), package=PACKAGE, device="cpu"))


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="checks the machine without a GPU")
def test_asking_for_a_gpu_without_one_names_the_key(resources_dir):
    with pytest.raises(InputError, match="corpus.stanza.device: 'cuda' asked for, but torch sees no GPU"):
        stanza_parser.load_stanza(stanza_parser.StanzaOptions(str(resources_dir), package=PACKAGE, device="cuda"))


def test_stanza_models_checks_a_local_folder_and_writes_a_manifest(resources_dir, tmp_path):
    out = tmp_path / "manifest.json"
    args = ["stanza-models", "--dir", str(resources_dir), "--package", PACKAGE, "--out", str(out)]
    # an unreachable mirror: models that load locally are never fetched
    assert main([*args, "--resources-url", "http://127.0.0.1:9/"]) == 0
    manifest = json.loads(out.read_text())
    assert manifest["package"] == PACKAGE and manifest["stanza_version"] == stanza.__version__
    assert set(manifest["files"]) == {"resources.json", *(f"en/{p}/{PACKAGE}.pt" for p in PROCESSORS)}


def test_stanza_models_offline_with_an_empty_folder_says_how_to_provide_them(tmp_path, capsys):
    out = tmp_path / "manifest.json"
    args = [
        "stanza-models",
        "--dir",
        str(tmp_path / "empty"),
        "--resources-url",
        "http://127.0.0.1:9/",
        "--out",
        str(out),
    ]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "fetching them failed (ConnectionError" in err and "offline, copy a stanza_resources folder" in err
    assert not out.exists()


def test_parse_quality_with_stanza(options, tmp_path):
    gold = str(EWT / "en_ewt-ud-dev.conllu.gz")
    result = parse_quality.evaluate(gold, "stanza", dataclasses.asdict(options), max_sentences=30)
    assert result["sentences"] == 30 and result["words"] > 200
    assert 0 <= result["las"] <= result["uas"] <= 100  # tiny models: structure, not accuracy
    assert result["model"].endswith(f"(en, {PACKAGE})")


@pytest.mark.slow
def test_stanza_through_the_rules_and_a_lost_shard_alone_is_redone(resources_dir, tmp_path):
    """The real Snakefile with backend stanza: stanza_models checks the folder, three parse jobs
    run; after one parsed shard is deleted, only that shard's job runs again."""
    link_workflow(tmp_path)
    (tmp_path / "stanza.yaml").write_text(
        "corpus:\n  name: wiki_stanza\n  backend: stanza\n  text: [resources/text/enwiki2015_300k.txt.gz]\n"
        "  shards: 3\n  text_cleaning: {min_words: 5, drop_headings: true, max_words: 600}\n"
        f"  stanza: {{resources_dir: {resources_dir}, package: {PACKAGE}, device: cpu, resources_url: 'http://127.0.0.1:9/'}}\n"
    )
    targets = [f"results/parse/wiki_stanza/shard-{i}.parquet" for i in range(3)]
    configs = ["--configfile", "config.yaml", "stanza.yaml"]

    def run(*extra):
        return snakemake_ok(*targets, "--cores", "2", *extra, *configs, cwd=tmp_path, timeout=900)

    assert job_counts(run()) == {"corpus": 1, "stanza_models": 1, "parse": 3}
    first = [pd.read_parquet(tmp_path / t) for t in targets]
    for frame in first:
        assert_trees(frame)
    (tmp_path / targets[1]).unlink()
    plan = run("-n")
    assert job_counts(plan) == {"parse": 1}, plan[-3000:]
    assert "results/parse/wiki_stanza/shard-1.parquet" in plan
    run()
    pd.testing.assert_frame_equal(first[1], pd.read_parquet(tmp_path / targets[1]))
