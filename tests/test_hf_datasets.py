"""HF `datasets` corpora: local files through a packaged builder, save_to_disk folders, the real
corpus rule, and the errors a user meets (missing column, split or file; a hub name offline)."""

import gzip
import itertools
import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from conftest import job_counts, link_workflow, snakemake_ok
from sasbert import config as sasconfig
from sasbert.cli import main
from sasbert.data import corpus
from sasbert.errors import InputError

REPO = Path(__file__).resolve().parents[1]
WIKI = REPO / "resources" / "text" / "enwiki2015_300k.txt.gz"


def wiki_documents(n_docs: int) -> list[str]:
    """The first documents of the vendored Wikipedia slice (blank-line separated), one string each."""
    docs, current = [], []
    with gzip.open(WIKI, "rt", encoding="utf-8") as handle:
        for line in itertools.islice(handle, 2000):
            line = line.rstrip("\n")
            if line.strip():
                current.append(line)
            elif current:
                docs.append("\n".join(current))
                current = []
            if len(docs) == n_docs:
                break
    return docs


@pytest.fixture(scope="module")
def wiki_rows(tmp_path_factory):
    """The same documents three ways: a text file, a JSON-lines file for the json builder, and a
    save_to_disk folder."""
    import datasets

    folder = tmp_path_factory.mktemp("hf")
    docs = wiki_documents(6)
    (folder / "wiki.txt").write_text("\n\n".join(docs) + "\n", encoding="utf-8")
    with open(folder / "wiki.jsonl", "w", encoding="utf-8") as handle:
        for i, doc in enumerate(docs):
            handle.write(json.dumps({"id": i, "text": doc}) + "\n")
    datasets.DatasetDict(
        {"train": datasets.Dataset.from_list([{"id": i, "text": d} for i, d in enumerate(docs)])}
    ).save_to_disk(str(folder / "saved"))
    return folder


def test_json_builder_and_save_to_disk_give_the_text_files_units(wiki_rows):
    from_text = corpus.read_units([str(wiki_rows / "wiki.txt")], "text")
    from_json = corpus.read_units(
        None, "hf", hf_dataset=corpus.HFDataset("json", data_files=[str(wiki_rows / "wiki.jsonl")])
    )
    from_disk = corpus.read_units(None, "hf", hf_dataset=corpus.HFDataset(str(wiki_rows / "saved")))
    streamed = corpus.read_units(
        None, "hf", hf_dataset=corpus.HFDataset("json", data_files=[str(wiki_rows / "wiki.jsonl")], streaming=True)
    )
    assert len(from_text) > 6
    for frame in (from_json, from_disk, streamed):
        assert list(frame["text"]) == list(from_text["text"])
        # one document per row, in row order
        assert frame["doc_id"].nunique() == 6 == from_text["doc_id"].nunique()
        assert list(frame.groupby("doc_id", sort=False).size()) == list(from_text.groupby("doc_id", sort=False).size())
    assert from_json["source"].iloc[0] == "json[train]:0.0"


def test_cleaning_and_word_cap_apply_to_datasets(wiki_rows):
    spec = corpus.HFDataset("json", data_files=[str(wiki_rows / "wiki.jsonl")], streaming=True)
    cleaning = corpus.TextCleaning(min_words=5, drop_headings=True, dedup=True, max_words=300)
    units = corpus.read_units(None, "hf", cleaning=cleaning, hf_dataset=spec)
    words = units["text"].map(lambda t: len(t.split()))
    assert (words >= 5).all()
    assert words.sum() >= 300 and words.iloc[:-1].sum() < 300  # stops at the line that reaches the cap
    assert units["text"].is_unique


def test_corpus_cli_with_a_dataset(wiki_rows, tmp_path):
    outs = [str(tmp_path / f"shard-{i}.parquet") for i in range(2)]
    args = ["corpus", "--kind", "hf", "--hf-path", "json", "--hf-data-files", str(wiki_rows / "wiki.jsonl")]
    assert main([*args, "--min-words", "3", "--out", *outs]) == 0
    gathered = pd.concat([pd.read_parquet(o) for o in outs], ignore_index=True)
    assert list(gathered["unit_id"]) == list(range(len(gathered)))
    assert gathered["source"].str.startswith("json[train]:").all()


@pytest.mark.parametrize(
    "spec, message",
    [
        (
            dict(path="json", text_column="body"),
            r"corpus.hf_dataset.text_column: .* no column 'body' \(it has id, text\)",
        ),
        (dict(path="json", text_column="id"), r"corpus.hf_dataset.text_column: .* row 0: column 'id' holds int"),
        (dict(path="saved", split="test"), r"corpus.hf_dataset.split: .*saved has no split 'test' \(it has train\)"),
        (
            dict(path="json", data_files=["missing.jsonl"]),
            r"corpus.hf_dataset.data_files: .*missing.jsonl: no such file",
        ),
    ],
)
def test_bad_datasets_name_the_key(wiki_rows, spec, message):
    spec = dict(spec)
    if spec["path"] == "saved":
        spec["path"] = str(wiki_rows / "saved")
    spec.setdefault("data_files", [str(wiki_rows / "wiki.jsonl")] if spec["path"] == "json" else None)
    if spec["data_files"]:
        spec["data_files"] = [str(wiki_rows / f) if not Path(f).is_absolute() else f for f in spec["data_files"]]
    with pytest.raises(InputError, match=message):
        corpus.read_units(None, "hf", hf_dataset=corpus.HFDataset(**spec))


def test_an_empty_dataset_is_an_error(tmp_path):
    (tmp_path / "empty.jsonl").write_text(json.dumps({"text": "   "}) + "\n")
    with pytest.raises(InputError, match=r"corpus is empty: no text in json\[train\]"):
        corpus.read_units(None, "hf", hf_dataset=corpus.HFDataset("json", data_files=[str(tmp_path / "empty.jsonl")]))


def test_a_hub_dataset_offline_fails_clearly_and_writes_nothing(tmp_path):
    out = tmp_path / "shard-0.parquet"
    cmd = [sys.executable, "-m", "sasbert", "corpus", "--kind", "hf", "--hf-path", "wikimedia/wikipedia"]
    cmd += ["--hf-name", "20231101.en", "--hf-streaming", "--out", str(out)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf-home")}
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 2
    assert "corpus.hf_dataset: cannot load 'wikimedia/wikipedia'" in result.stderr
    assert "online" in result.stderr
    assert not out.exists()


def test_config_takes_exactly_one_text_source():
    import yaml

    cfg = yaml.safe_load((REPO / "config.yaml").read_text())
    cfg["corpus"].update({"backend": "spacy", "hf_dataset": {"path": "wikimedia/wikipedia", "name": "20231101.en"}})
    checked = sasconfig.validate(cfg, base_dir=REPO)
    assert (
        checked["corpus"]["hf_dataset"]["split"] == "train" and checked["corpus"]["hf_dataset"]["text_column"] == "text"
    )
    cfg["corpus"]["text"] = ["resources/text/*.txt.gz"]
    with pytest.raises(sasconfig.ConfigError, match="exactly one of corpus.text and corpus.hf_dataset"):
        sasconfig.validate(cfg, base_dir=REPO)
    del cfg["corpus"]["text"]
    cfg["corpus"]["hf_dataset"] = {"path": "json", "data_files": ["nothing-*.jsonl"]}
    with pytest.raises(sasconfig.ConfigError, match=r"corpus.hf_dataset.data_files\[0\]: the pattern matches no file"):
        sasconfig.validate(cfg, base_dir=REPO)


def test_the_corpus_rule_reads_a_dataset(wiki_rows, tmp_path):
    """The real corpus rule on a json dataset: shards written; editing the data file reruns it."""
    link_workflow(tmp_path)
    data = tmp_path / "wiki.jsonl"
    data.write_text((wiki_rows / "wiki.jsonl").read_text())
    (tmp_path / "hf.yaml").write_text(
        "corpus:\n  name: wiki_hf\n  backend: spacy\n  shards: 2\n"
        "  hf_dataset: {path: json, data_files: [wiki.jsonl]}\n  text_cleaning: {min_words: 3}\n"
    )
    targets = [f"results/corpus/wiki_hf/shard-{i}.parquet" for i in range(2)]
    configs = ["--configfile", "config.yaml", "hf.yaml"]
    snakemake_ok(*targets, "--cores", "1", *configs, cwd=tmp_path, timeout=600)
    gathered = pd.concat([pd.read_parquet(tmp_path / t) for t in targets], ignore_index=True)
    expected = corpus.read_units([str(wiki_rows / "wiki.txt")], "text", cleaning=corpus.TextCleaning(min_words=3))
    assert list(gathered["text"]) == list(expected["text"])
    with open(data, "a", encoding="utf-8") as handle:
        handle.write(json.dumps({"id": 99, "text": "One more document with a few words."}) + "\n")
    assert job_counts(snakemake_ok(*targets, "-n", *configs, cwd=tmp_path, timeout=600)) == {"corpus": 1}


def test_streaming_errors_name_the_key_and_the_row(wiki_rows, tmp_path):
    spec = corpus.HFDataset("json", data_files=[str(wiki_rows / "wiki.jsonl")], text_column="body", streaming=True)
    with pytest.raises(
        InputError, match=r"corpus.hf_dataset.text_column: json\[train\] has no column 'body' \(it has id, text\)"
    ):
        corpus.read_units(None, "hf", hf_dataset=spec)
    broken = tmp_path / "broken.jsonl"
    broken.write_text(json.dumps({"text": "A fine first document here."}) + "\n{not json\n")
    spec = corpus.HFDataset("json", data_files=[str(broken)], streaming=True)
    with pytest.raises(
        InputError,
        match=r"corpus.hf_dataset: json\[train\]: reading failed at row \d+ .*ArrowInvalid: JSON parse error",
    ):
        corpus.read_units(None, "hf", hf_dataset=spec)
