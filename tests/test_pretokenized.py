"""Pre-tokenized corpora in the authors' schema (corpus.backend: pretokenized, sasbert.data.pretokenized):
rows made here from real sentences with the real bert-base-uncased vocab, written as the authors'
columns and dtypes (parquet, arrow, save_to_disk, a filled HF cache); what the regularizer receives
under each heads alignment against hand-computed positions; the alignment check on rows whose
alignment is known; bad input; and the paper configs' dry runs from a fresh clone."""

import copy
import json
import re
import shutil
import subprocess

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from test_series import fill_hf_cache

from conftest import EWT, REPO, RESOURCES, SNAKEMAKE, job_counts, link_workflow, snakemake, tiny_spec
from sasbert import cli
from sasbert import config as sasconfig
from sasbert.data import corpus, tokenization
from sasbert.data.parsers import conllu
from sasbert.train import data_order
from sasbert.train import model as train_model
from sasbert.train import pretrain as pretrain_module

VOCAB = RESOURCES / "tokenizer" / "bert-base-uncased-vocab.txt"
SEQ_LEN = 32
ALIGNMENTS = ["input_ids", "after_cls", "after_cls_both"]
TOKENIZER_OPTIONS = {"seq_len": SEQ_LEN, "lowercase": True, "validation_blocks": 4}


@pytest.fixture(scope="session")
def tokenizer():
    return tokenization.load_tokenizer(VOCAB, True)


def as_authors(heads: np.ndarray, alignment: str) -> np.ndarray:
    """The pipeline's heads (entry t: the parent position of the piece at t) written as the authors'
    array would hold them under ``alignment``: written out here by hand, not with the module's table."""
    if alignment == "input_ids":
        return heads.copy()
    shifted = np.full_like(heads, -1)
    shifted[:, :-1] = heads[:, 1:]  # entry t - 1 describes the piece at t
    if alignment == "after_cls_both":
        shifted[shifted >= 0] -= 1  # and the parent's position counts after [CLS] too
    return shifted


def authors_table(input_ids, heads, attention_mask=None, **replace) -> pa.Table:
    """Rows in the authors' schema: input_ids int32, token_type_ids int8, attention_mask int8,
    heads int64, relns int8 (a label id on labelled pieces, -1 elsewhere)."""
    input_ids = np.asarray(input_ids)
    attention_mask = np.ones_like(input_ids) if attention_mask is None else np.asarray(attention_mask)
    columns = {
        "input_ids": input_ids.astype(np.int32),
        "token_type_ids": np.zeros_like(input_ids, dtype=np.int8),
        "attention_mask": attention_mask.astype(np.int8),
        "heads": np.asarray(heads).astype(np.int64),
        "relns": np.where(np.asarray(heads) >= 0, 3, -1).astype(np.int8),
    }
    columns.update(replace)
    return pa.table({name: [list(row) for row in values] for name, values in columns.items()})


@pytest.fixture(scope="session")
def ewt_blocks(tokenizer):
    """200 EWT dev sentences (gold parses), packed as run_mlm packs them into rows of 32: input_ids
    and heads in the pipeline's convention (sasbert.data.tokenization)."""
    units = corpus.read_units([str(EWT / "en_ewt-ud-dev.conllu.gz")], "conllu", max_units=200)
    parsed = conllu.parse_shard(units)
    ids, word_ids = tokenization.encode_sentences(tokenizer, [list(w) for w in parsed["words"]])
    heads = [tokenization.piece_heads(w, list(h)) for w, h in zip(word_ids, parsed["heads"])]
    return tokenization.pack_blocks(ids, heads, None, SEQ_LEN, tokenizer.cls_token_id, tokenizer.sep_token_id)


def write_parquet_splits(folder, input_ids, heads, n_files=2):
    """Train (``n_files`` parquet files) and validation parquet files of the same rows."""
    folder.mkdir(parents=True, exist_ok=True)
    table = authors_table(input_ids, heads)
    cut = np.linspace(0, len(table), n_files + 1).astype(int)
    for i in range(n_files):
        pq.write_table(table.slice(cut[i], cut[i + 1] - cut[i]), folder / f"train-{i:05d}-of-{n_files:05d}.parquet")
    pq.write_table(table, folder / "validation-00000-of-00001.parquet")
    return folder


def prepare_local(folder, out, alignment="input_ids", **options):
    """The prepare command (in-process, through the CLI) on a folder's parquet files."""
    source = {"data_files": {"train": [str(folder / "train-*")], "validation": [str(folder / "validation-*")]}}
    argv = [
        "pretokenized",
        "prepare",
        "--options",
        json.dumps({"pretokenized": {**source, "heads_alignment": alignment, **options}}),
        "--vocab",
        str(VOCAB),
        "--tokenizer-options",
        json.dumps(TOKENIZER_OPTIONS),
        "--out-dataset",
        str(out / "dataset"),
        "--out-tokenizer",
        str(out / "tokenizer"),
    ]
    return cli.main(argv)


# ------------------------------------------------------------------------------------------------
# What the regularizer receives, against hand-computed positions


def hand_row(tokenizer):
    """[CLS] the cat sat on the mat . [SEP] [PAD]...: its gold arcs by position, written by hand
    (the -> cat, cat -> sat, on -> mat, the -> mat, mat -> sat, . -> sat; sat is the root)."""
    pieces = ["[CLS]", "the", "cat", "sat", "on", "the", "mat", ".", "[SEP]"]
    assert tokenizer.tokenize("the cat sat on the mat .") == pieces[1:-1]
    ids = tokenizer.convert_tokens_to_ids(pieces) + [tokenizer.pad_token_id] * (SEQ_LEN - len(pieces))
    mask = [1] * len(pieces) + [0] * (SEQ_LEN - len(pieces))
    heads = [-1, 2, 3, -1, 6, 6, 3, 3] + [-1] * (SEQ_LEN - 8)
    return np.array([ids]), np.array([heads]), np.array([mask])


GOLD_ARCS = {(1, 2), (2, 3), (4, 6), (5, 6), (6, 3), (7, 3)}


def record_arcs(monkeypatch) -> list[set]:
    """The (dependent, parent) pairs ``arc_indices`` hands the regularizer: per call, a set per row
    of the batch (the real function, recorded on its way)."""
    seen = []

    def recording(heads):
        arcs = arc_indices(heads)
        rows = [set() for _ in range(len(heads))]
        for b, d, p in zip(*(a.tolist() for a in arcs)):
            rows[b].add((d, p))
        seen.append(rows)
        return arcs

    arc_indices = train_model.arc_indices  # the model's forward computes the arcs
    monkeypatch.setattr(train_model, "arc_indices", recording)
    return seen


@pytest.mark.parametrize(
    "written_as, read_as, expected",
    [
        *[(a, a, GOLD_ARCS) for a in ALIGNMENTS],
        # an input_ids-aligned array read as the authors' regularizer reads it: entry j is taken for
        # the piece at j + 1. Hand-computed: (1->2) and (2->3) become self-loops (2,2), (3,3), (5->6)
        # one too, (4->6) becomes (5,6), (6->3) becomes (7,3), (7->3) lands on [SEP] at 8: dropped.
        ("input_ids", "after_cls", {(5, 6), (7, 3)}),
    ],
)
def test_a_tiny_authors_dataset_trains_and_the_regularizer_sees_the_arcs_of_its_alignment(
    tmp_path, monkeypatch, tokenizer, written_as, read_as, expected
):
    ids, heads, mask = hand_row(tokenizer)
    data = tmp_path / "data"
    data.mkdir()
    # 8 copies (each its own block, masked on its own): a step of 8 sequences, some pieces masked
    table = authors_table(*(np.repeat(a, 8, axis=0) for a in (ids, as_authors(heads, written_as), mask)))
    pq.write_table(table, data / "train-00000-of-00001.parquet")
    pq.write_table(table, data / "validation-00000-of-00001.parquet")
    assert prepare_local(data, tmp_path / "prepared", read_as) == 0
    seen = record_arcs(monkeypatch)
    spec = tiny_spec(max_steps=2, checkpoint_steps=[0, 2], warmup_steps=0, **{"lambda": 1.0})
    run_dir = tmp_path / "run"
    pretrain_module.train(
        str(tmp_path / "prepared" / "dataset"), str(tmp_path / "prepared" / "tokenizer"), str(run_dir), spec
    )
    assert seen == [[expected] * 8] * 2  # one call per step, each row's arcs
    steps = pd.read_parquet(run_dir / "metrics" / "steps.parquet")
    assert list(steps.step) == [1, 2] and steps.sas.astype(float).gt(0).all()


# ------------------------------------------------------------------------------------------------
# The forms the backend reads, conversion and memory-mapping


def test_every_alignment_converts_back_to_the_pipelines_heads_and_pretraining_memory_maps_them(tmp_path, ewt_blocks):
    for alignment in ALIGNMENTS:
        data = write_parquet_splits(
            tmp_path / alignment, ewt_blocks["input_ids"], as_authors(ewt_blocks["heads"], alignment)
        )
        assert prepare_local(data, tmp_path / f"prepared-{alignment}", alignment) == 0
        prepared = tmp_path / f"prepared-{alignment}"
        _, train_blocks, val_blocks, _ = data_order.load_data(
            str(prepared / "dataset"), str(prepared / "tokenizer"), tiny_spec()
        )
        assert all(f["filename"].endswith(".arrow") for f in train_blocks.cache_files)  # memory-mapped
        assert np.array_equal(np.array(train_blocks["heads"]), ewt_blocks["heads"])
        assert np.array_equal(np.array(train_blocks["input_ids"]), ewt_blocks["input_ids"])
        wanted = tokenization.validation_indices(len(ewt_blocks["heads"]), 4)
        assert np.array_equal(np.array(val_blocks["heads"]), ewt_blocks["heads"][wanted])
        manifest = json.loads((prepared / "dataset" / "manifest.json").read_text())
        assert manifest["stats"]["train"]["arcs_kept"] == int((ewt_blocks["heads"] >= 0).sum())
        # under after_cls the first entry is never read; under input_ids it is [CLS]'s: -1 either way
        assert manifest["stats"]["train"]["dropped_special"] == 0


def test_arrow_files_a_save_to_disk_folder_and_a_hub_dataset_give_the_same_rows(tmp_path, ewt_blocks, monkeypatch):
    from datasets import Dataset, DatasetDict
    from test_series import fill_hf_cache

    data = write_parquet_splits(tmp_path / "parquet", ewt_blocks["input_ids"], ewt_blocks["heads"])
    assert prepare_local(data, tmp_path / "from-parquet") == 0

    def rows(prepared):
        _, train_blocks, val_blocks, _ = data_order.load_data(
            str(prepared / "dataset"), str(prepared / "tokenizer"), {}
        )
        return [
            np.array(blocks[c])
            for blocks in (train_blocks, val_blocks)
            for c in ("input_ids", "attention_mask", "heads")
        ]

    reference = rows(tmp_path / "from-parquet")
    assert np.array_equal(reference[2], ewt_blocks["heads"])

    table = authors_table(ewt_blocks["input_ids"], ewt_blocks["heads"])
    DatasetDict({"train": Dataset(table), "validation": Dataset(table)}).save_to_disk(str(tmp_path / "saved"))
    arrow = tmp_path / "arrow"
    arrow.mkdir()
    for split in ("train", "validation"):
        shutil.copy(next((tmp_path / "saved" / split).glob("*.arrow")), arrow / f"{split}-00000-of-00001.arrow")
    hub_repo = tmp_path / "repo"
    shutil.copytree(data, hub_repo / "data")
    cache = tmp_path / "hub"
    fill_hf_cache(cache, "org/pretraining-rows", {"main": hub_repo}, repo_type="dataset")
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(cache))
    fetched = tmp_path / "fetched.json"
    hub = {"hub": {"repo": "org/pretraining-rows", "revision": "main"}}
    assert (
        cli.main(["pretokenized", "fetch", "--options", json.dumps({"pretokenized": hub}), "--out", str(fetched)]) == 0
    )
    sources = {
        "arrow": ["--train-files", str(arrow / "train-*"), "--validation-files", str(arrow / "validation-*")],
        "saved": ["--path", str(tmp_path / "saved")],
        "hub": ["--options", json.dumps({"pretokenized": hub}), "--fetched", str(fetched)],
    }
    for name, flags in sources.items():
        out = tmp_path / f"from-{name}"
        argv = ["pretokenized", "prepare", *flags, "--heads-alignment", "input_ids", "--vocab", str(VOCAB)]
        argv += ["--tokenizer-options"]
        argv += [
            json.dumps(TOKENIZER_OPTIONS),
            "--out-dataset",
            str(out / "dataset"),
            "--out-tokenizer",
            str(out / "tokenizer"),
        ]
        assert cli.main(argv) == 0, name
        assert all(np.array_equal(a, b) for a, b in zip(rows(out), reference)), name
    # the alignment check reads the same cache offline
    check = ["pretokenized", "check", "--repo", "org/pretraining-rows", "--offline", "--vocab", str(VOCAB)]
    assert cli.main([*check, "--out", str(tmp_path / "check.json")]) == 0
    assert json.loads((tmp_path / "check.json").read_text())["best"] == "input_ids"
    manifest = json.loads((tmp_path / "from-hub" / "dataset" / "manifest.json").read_text())
    assert manifest["source"]["repo"] == "org/pretraining-rows" and len(manifest["source"]["commit"]) == 40
    assert manifest["source_files"]["train"] == ["train-00000-of-00002.parquet", "train-00001-of-00002.parquet"]


# ------------------------------------------------------------------------------------------------
# The alignment check


@pytest.mark.parametrize("alignment", ALIGNMENTS)
def test_the_check_picks_the_alignment_the_rows_were_written_with(tmp_path, ewt_blocks, alignment, capsys):
    data = write_parquet_splits(tmp_path, ewt_blocks["input_ids"], as_authors(ewt_blocks["heads"], alignment))
    out = tmp_path / "check.json"
    argv = ["pretokenized", "check", "--train-files", str(data / "train-*"), "--vocab", str(VOCAB)]
    assert cli.main([*argv, "--files", "2", "--rows", "60", "--out", str(out)]) == 0
    assert f"best: heads_alignment: {alignment}" in capsys.readouterr().out
    result = json.loads(out.read_text())
    assert result["rows"] == 120 and result["best"] == alignment
    counts = result["alignments"][alignment]
    assert counts["both_word_initial"] == counts["arcs"] > 500  # every gold arc joins first pieces
    for other in set(ALIGNMENTS) - {alignment}:
        wrong = result["alignments"][other]
        assert wrong["both_word_initial"] < 0.95 * wrong["arcs"]  # most words are one piece: about 0.82-0.92


# ------------------------------------------------------------------------------------------------
# Bad input: one line naming the file and column, exit 2, no output


def bad_tables(ids, heads):
    good = authors_table(ids, heads)

    def replaced(name, values):
        return good.set_column(good.schema.get_field_index(name), name, pa.array([list(r) for r in values]))

    return {
        "missing heads": (good.drop_columns(["heads"]), "no column 'heads'"),
        "float heads": (
            replaced("heads", heads.astype(np.float64)),
            "column 'heads' holds double values, not integers",
        ),
        "short row": (
            replaced("attention_mask", np.ones((len(ids), SEQ_LEN - 1), dtype=np.int8)),
            "row 0: column 'attention_mask' has 31 values, not tokenizer.seq_len (32)",
        ),
        "head out of range": (replaced("heads", np.where(heads == 3, 40, heads)), "column 'heads' holds 40"),
        "id out of range": (replaced("input_ids", ids + 40000), "column 'input_ids' holds"),
    }


@pytest.mark.parametrize("case", ["missing heads", "float heads", "short row", "head out of range", "id out of range"])
def test_bad_rows_stop_with_the_file_and_column(tmp_path, tokenizer, case, capsys):
    ids, heads, mask = hand_row(tokenizer)
    table, message = bad_tables(ids, heads)[case]
    data = tmp_path / "data"
    data.mkdir()
    pq.write_table(authors_table(ids, heads, mask), data / "train-00000-of-00001.parquet")
    pq.write_table(table, data / "validation-00000-of-00001.parquet")
    assert prepare_local(data, tmp_path / "out") == 2
    err = capsys.readouterr().err
    assert "validation-00000-of-00001.parquet: " in err and message in err, err
    assert "Traceback" not in err and not (tmp_path / "out" / "dataset").exists()


def test_a_truncated_file_stops_with_its_name(tmp_path, tokenizer, capsys):
    ids, heads, mask = hand_row(tokenizer)
    data = tmp_path / "data"
    data.mkdir()
    for split in ("train", "validation"):
        pq.write_table(authors_table(ids, heads, mask), data / f"{split}-0.parquet")
    whole = (data / "train-0.parquet").read_bytes()
    (data / "train-0.parquet").write_bytes(whole[: len(whole) // 2])
    assert prepare_local(data, tmp_path / "out") == 2
    err = capsys.readouterr().err
    assert "train-0.parquet: not a readable parquet or arrow file" in err and "Traceback" not in err, err


def test_out_of_range_heads_are_dropped_when_asked(tmp_path, tokenizer):
    ids, heads, mask = hand_row(tokenizer)
    data = tmp_path / "data"
    data.mkdir()
    for split in ("train", "validation"):
        pq.write_table(authors_table(ids, np.where(heads == 2, 600, heads), mask), data / f"{split}-0.parquet")
    assert prepare_local(data, tmp_path / "out", out_of_range="drop") == 0
    manifest = json.loads((tmp_path / "out" / "dataset" / "manifest.json").read_text())
    assert manifest["stats"]["train"]["heads_out_of_range_dropped"] == 1
    assert manifest["stats"]["train"]["arcs_kept"] == len(GOLD_ARCS) - 1


# ------------------------------------------------------------------------------------------------
# The real Snakefile: fetch and prepare from a filled HF cache, offline


@pytest.mark.slow
def test_the_workflow_fetches_and_prepares_a_hub_dataset_and_a_new_revision_reruns_both(
    tmp_path, ewt_blocks, monkeypatch
):
    data = write_parquet_splits(
        tmp_path / "repo" / "data", ewt_blocks["input_ids"], as_authors(ewt_blocks["heads"], "after_cls")
    )
    cache = tmp_path / "hub"
    fill_hf_cache(cache, "org/rows", {"main": data.parent, "v2": data.parent}, repo_type="dataset")
    work = link_workflow(tmp_path / "work")
    config = {
        "corpus": {"name": "authors", "backend": "pretokenized", "pretokenized": {"hub": {"repo": "org/rows"}}},
        "tokenizer": {"vocab": "resources/tokenizer/bert-base-uncased-vocab.txt", **TOKENIZER_OPTIONS},
    }
    (work / "authors.yaml").write_text(yaml.safe_dump(config))
    target = "results/pretokenized/authors/dataset"
    args = ["--cores", "1", target, "--configfile", "config.yaml", "authors.yaml"]
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))  # the jobs read the filled cache, offline
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    result = snakemake(*args, cwd=work)
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    manifest = json.loads((work / target / "manifest.json").read_text())
    assert manifest["heads_alignment"] == "after_cls" and manifest["stats"]["train"]["arcs_kept"] == int(
        (ewt_blocks["heads"] >= 0).sum()
    )
    config["corpus"]["pretokenized"]["hub"]["revision"] = "v2"
    (work / "authors.yaml").write_text(yaml.safe_dump(config))
    result = snakemake("-n", *args, cwd=work)
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    reasons = result.stdout.split("params have changed since last execution:")[1].split("\n")[1]
    assert "pretokenized_fetch" in reasons, result.stdout[-2000:]
    assert job_counts(result.stdout) == {"pretokenized_fetch": 1, "pretokenized": 1}


# ------------------------------------------------------------------------------------------------
# Configuration and the paper configs from a fresh clone


def test_a_hub_dataset_needs_no_local_path_and_local_files_must_exist(tmp_path):
    base = yaml.safe_load((REPO / "config" / "paper.yaml").read_text())
    sasconfig.validate(base, base_dir=REPO)  # the hub repo is a parameter: nothing to find locally
    local = {
        **base,
        "corpus": {
            **base["corpus"],
            "pretokenized": {"data_files": {"train": ["no/such-*"], "validation": ["v.parquet"]}},
        },
    }
    with pytest.raises(sasconfig.ConfigError) as err:
        sasconfig.validate(local, base_dir=tmp_path)
    assert "corpus.pretokenized.data_files.train[0]: the pattern matches no file" in str(err.value)
    assert "corpus.pretokenized.data_files.validation[0]: path does not exist" in str(err.value)
    both = {**base, "corpus": {**base["corpus"], "pretokenized": {**base["corpus"]["pretokenized"], "path": "x"}}}
    with pytest.raises(sasconfig.ConfigError, match="give exactly one of hub, data_files and path"):
        sasconfig.validate(both, base_dir=REPO, check_paths=False)


def test_paper_lite_is_paper_with_one_seed_three_runs_and_40k_steps():
    paper = yaml.safe_load((REPO / "config" / "paper.yaml").read_text())
    lite = yaml.safe_load((REPO / "config" / "paper-lite.yaml").read_text())
    assert lite["seeds"] == [0] and [r["name"] for r in lite["runs"]] == [
        "baseline",
        "sas_minus",
        "sas_minus_release_3k",
    ]
    assert lite["runs"] == [r for r in paper["runs"] if r["name"] in {"baseline", "sas_minus", "sas_minus_release_3k"}]
    assert lite["train"] == {**paper["train"], "max_steps": 40000} and paper["train"]["max_steps"] == 500000
    assert {k: v for k, v in lite.items() if k not in ("seeds", "runs", "train")} == {
        k: v for k, v in paper.items() if k not in ("seeds", "runs", "train")
    }


@pytest.mark.parametrize("name", ["paper.yaml", "paper-lite.yaml"])
def test_nothing_of_config_yaml_leaks_into_the_paper_configs(name):
    """`snakemake --configfile config/paper.yaml` extends config.yaml (the Snakefile's configfile):
    the merged config must be the paper config's own (config.yaml's tiny model has no dropout, its
    probe reads 300 sentences). Only keys the pretokenized backend does not read may differ."""
    from snakemake.utils import update_config

    paper = yaml.safe_load((REPO / "config" / name).read_text())
    merged = yaml.safe_load((REPO / "config.yaml").read_text())
    update_config(merged, paper)
    merged, alone = (sasconfig.validate(c, check_paths=False) for c in (merged, copy.deepcopy(paper)))
    for config in (merged, alone):
        config["corpus"].pop("conllu", None), config["corpus"].pop("shards")
    assert merged == alone
    assert merged["model"]["hidden_dropout_prob"] == merged["model"]["attention_probs_dropout_prob"] == 0.1


@pytest.fixture(scope="module")
def fresh_clone(tmp_path_factory):
    """The repository's files (tracked, and new ones git does not ignore) copied into an empty folder
    with nothing beside it: no ../shared, no data, no results."""
    clone = tmp_path_factory.mktemp("fresh") / "clone"
    files = (
        subprocess.run(
            ["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO, capture_output=True, check=True
        )
        .stdout.decode()
        .split("\0")
    )
    for name in filter(None, files):
        if name == ".venv":  # this checkout's link to its environment, not a file of the project
            continue
        source = REPO / name
        if source.is_file() and not source.is_symlink():
            (clone / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, clone / name)
        elif source.is_symlink():
            (clone / name).parent.mkdir(parents=True, exist_ok=True)
            (clone / name).symlink_to(source.readlink())
    assert not (clone.parent / "shared").exists() and not (clone / "results").exists()
    return clone


@pytest.mark.parametrize(
    "config_file, profile, runs",
    [("config/paper.yaml", ["--workflow-profile", "profiles/slurm"], 12), ("config/paper-lite.yaml", [], 3)],
)
def test_the_paper_configs_dry_run_from_a_fresh_clone(fresh_clone, config_file, profile, runs):
    assert "../shared" not in (fresh_clone / config_file).read_text()
    result = subprocess.run(
        [SNAKEMAKE, "-n", *profile, "--configfile", config_file],
        cwd=fresh_clone,
        capture_output=True,
        text=True,
        timeout=300,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    counts = job_counts(output)
    assert counts["pretokenized_fetch"] == 1 and counts["pretokenized"] == 1 and counts["pretrain"] == runs
    assert not {"corpus", "parse", "tokenize", "stanza_models"} & set(counts)
    # the hub dataset is a parameter of the fetch and prepare jobs (a change of it reruns them)
    for rule in ("pretokenized_fetch", "pretokenized"):
        command = re.search(rf"rule {rule}:\n(?:.*\n)*?Shell command: (.*)", output).group(1)
        assert '"repo": "angie-chen55/bert_pretraining_data", "revision": "main"' in command, command
    if profile:  # the profile sizes the prepare job
        assert re.search(r"rule pretokenized:\n(?:.*\n)*?\s+resources: .*\bmem_mb=8000\b", output)
