"""Checkpoint series trained elsewhere (issue 15, local series): config `series:` brings them
through probe, BLiMP, tables, phases and figures with kind "external"; a config may measure
series alone, with no training run."""

import re
import shutil
import subprocess
import sys

import pandas as pd
import pytest
import yaml

from conftest import REPO, job_counts, link_workflow, snakemake, snakemake_ok
from sasbert import config as sasconfig
from sasbert.analysis import runs as run_kinds
from sasbert.measure import checkpoints
from sasbert.measure.probe.options import ProbeOptions

VOCAB = REPO / "resources" / "tokenizer" / "bert-base-uncased-vocab.txt"
STEPS = (0, 1000, 2000)


@pytest.fixture(scope="module")
def multiberts_like(tmp_path_factory):
    """Three tiny BERT checkpoints named as MultiBERTs names theirs (step_0k, step_1k, step_2k),
    each with other random weights, and the bert-base-uncased tokenizer."""
    import torch
    from transformers import BertConfig, BertForMaskedLM, BertTokenizerFast

    folder = tmp_path_factory.mktemp("multiberts")
    tokenizer = BertTokenizerFast(vocab=str(VOCAB), do_lower_case=True)
    for i, step in enumerate(STEPS):
        torch.manual_seed(i)
        model = BertForMaskedLM(
            BertConfig(
                vocab_size=tokenizer.vocab_size,
                hidden_size=32,
                num_hidden_layers=2,
                num_attention_heads=2,
                intermediate_size=64,
                max_position_embeddings=128,
            )
        )
        path = folder / f"multiberts-seed_0-step_{step // 1000}k"
        model.save_pretrained(path)
        tokenizer.save_pretrained(path)
    return folder


def series_config(folder, **extra) -> dict:
    return {
        "runs": [],
        "series": [
            {
                "name": "multiberts_s0",
                "checkpoints": [f"{folder}/multiberts-seed_0-step_*"],
                "tokens_per_step": 131072,
                **extra,
            }
        ],
        "probe": {"treebank": "resources/ud/UD_English-EWT/en_ewt-ud-dev.conllu.gz", "max_sentences": 30},
        "blimp": {"data_dir": "resources/blimp", "pairs_per_paradigm": 1, "every_steps": None},
    }


def test_a_series_name_must_not_be_a_run_name_and_its_folders_must_exist(tmp_path):
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    config["series"] = [
        {"name": config["runs"][0]["name"], "checkpoints": ["nowhere/step-*"]},
        {"name": "twice", "checkpoints": ["resources"]},
        {"name": "twice", "checkpoints": ["resources"]},
    ]
    with pytest.raises(sasconfig.ConfigError) as err:
        sasconfig.validate(config, base_dir=REPO)
    message = str(err.value)
    assert f"series[0].name: '{config['runs'][0]['name']}' is also a run's name" in message
    assert "series[0].checkpoints[0]: the pattern matches no file: nowhere/step-*" in message
    assert "series[2].name: 'twice' is used by more than one series" in message


def test_steps_given_for_a_glob_of_several_folders_are_refused_not_paired_in_text_order(tmp_path, multiberts_like):
    """m1, m2, m10 with steps [1, 2, 10]: sorted as text the glob gives m1, m10, m2, and m10 would
    be scored as step 2. The Snakefile and the CLI refuse, naming the pattern and the key."""
    nat = tmp_path / "nat"
    for name in ("m1", "m2", "m10"):
        shutil.copytree(multiberts_like / "multiberts-seed_0-step_0k", nat / name)
    workdir = link_workflow(tmp_path / "work")
    config = series_config(multiberts_like)
    config["series"] = [{"name": "nat", "checkpoints": [f"{nat}/m*"], "steps": [1, 2, 10]}]
    (workdir / "series.yaml").write_text(yaml.safe_dump(config))
    result = snakemake("-n", "--cores", "2", "--configfile", "series.yaml", cwd=workdir)
    output = result.stdout + result.stderr
    assert result.returncode != 0 and "Traceback" not in output
    assert f"series[0] (nat): {nat}/m*: steps pairs steps with checkpoints in the order they are named" in output
    cli = [sys.executable, "-m", "sasbert", "probe", "score", "--checkpoint", f"{nat}/m*", "--step", "1", "2", "10"]
    cli += ["--treebank", str(REPO / "resources/ud/UD_English-EWT/en_ewt-ud-dev.conllu.gz")]
    cli += ["--out-scores", str(tmp_path / "s.parquet"), "--out-summary", str(tmp_path / "u.parquet")]
    refused = subprocess.run(cli, capture_output=True, text=True)
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert "--step pairs steps with checkpoints in the order they are named" in refused.stderr
    # each folder named: the steps pair as given
    named = [str(nat / name) for name in ("m1", "m2", "m10")]
    assert [step for _, step in checkpoints.resolve_checkpoints(named, [1, 2, 10])] == [1, 2, 10]
    assert [p.name for p, _ in checkpoints.resolve_checkpoints(named, [1, 2, 10])] == ["m1", "m2", "m10"]


def test_the_runs_table_lists_series_after_the_runs_as_external():
    table = run_kinds.runs_table(
        [{"name": "baseline", "lambda": 0.0}], [{"name": "multiberts_s0", "checkpoints": ["x"], "tokens_per_step": 7}]
    )
    assert table["run"].tolist() == ["baseline", "multiberts_s0"]
    assert table["kind"].tolist() == ["baseline", "external"]
    assert table["label"].iloc[1] == "multiberts_s0 (external)"
    assert table["tokens_per_step"].iloc[1] == 7 and pd.isna(table["tokens_per_step"].iloc[0])


def test_a_series_checkpoint_without_weights_stops_the_dag_with_its_name(tmp_path, multiberts_like):
    workdir = link_workflow(tmp_path / "work")
    broken = tmp_path / "broken" / "step-5"
    broken.mkdir(parents=True)
    (broken / "config.json").write_text("{}")
    config = series_config(multiberts_like)
    config["series"].append({"name": "broken", "checkpoints": [str(broken)]})
    (workdir / "series.yaml").write_text(yaml.safe_dump(config))
    result = snakemake("-n", "--cores", "2", "--configfile", "series.yaml", cwd=workdir)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "series[1] (broken):" in output and "not a model checkpoint (no model weights" in output
    assert "Traceback" not in output


@pytest.mark.slow
def test_series_alone_run_through_probe_blimp_tables_phases_and_figures(
    tmp_path, monkeypatch, multiberts_like, tiny_gpt2
):
    """A masked series (MultiBERTs-named), a causal one (a GPT-2) and a hub one (read from a filled
    HF cache, offline, one revision repeating another's weights), with no training run."""
    workdir = link_workflow(tmp_path / "work")
    local = tmp_path / "multiberts"  # a copy: this test changes a checkpoint
    shutil.copytree(multiberts_like, local)
    folders = sorted(multiberts_like.iterdir())
    fill_hf_cache(
        tmp_path / "hub", "org/tiny-bert", {"step0": folders[0], "step1000": folders[1], "step2000": folders[1]}
    )
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    config = series_config(local)
    config["series"].append({"name": "gpt2_tiny", "checkpoints": [str(tiny_gpt2)], "seed": 3})
    config["series"].append(
        {"name": "tiny_hub", "hub": {"repo": "org/tiny-bert", "revisions": ["step0", "step1000", "step2000"]}}
    )
    (workdir / "series.yaml").write_text(yaml.safe_dump(config))
    plan = job_counts(snakemake_ok("-n", "--cores", "2", "--configfile", "series.yaml", cwd=workdir))
    assert {"corpus", "parse", "tokenize", "pretrain"}.isdisjoint(plan), plan
    assert plan["probe"] == plan["blimp"] == 3 and plan["series_fetch"] == plan["tables"] == plan["phases"] == 1
    snakemake_ok("--cores", "2", "--configfile", "series.yaml", cwd=workdir)
    tables = workdir / "results" / "tables"
    runs = pd.read_parquet(tables / "runs.parquet")
    assert runs["run"].tolist() == ["multiberts_s0", "gpt2_tiny", "tiny_hub"] and set(runs["kind"]) == {"external"}
    hub_uas = pd.read_parquet(tables / "uas.parquet").query("run == 'tiny_hub'").set_index("step")
    assert hub_uas["same_weights_as"].to_dict() == {0: None, 1000: None, 2000: "hub:org/tiny-bert@step1000"}
    assert hub_uas.at[2000, "uas"] == hub_uas.at[1000, "uas"]
    assert runs["tokens_per_step"].iloc[0] == 131072 and pd.isna(runs["tokens_per_step"].iloc[1])
    uas = pd.read_parquet(tables / "uas.parquet").set_index("run")
    assert sorted(uas.loc["multiberts_s0", "step"]) == list(STEPS) and uas.loc["gpt2_tiny", "seed"] == 3
    assert (uas.loc["multiberts_s0", "reachable"] == 1).all() and 0 < uas.loc["gpt2_tiny", "reachable"] < 1
    blimp = pd.read_parquet(tables / "blimp.parquet")
    assert sorted(blimp[blimp["run"] == "multiberts_s0"]["step"].unique()) == list(STEPS)
    variants = blimp.groupby("run")["variant"].unique().map(list).to_dict()
    assert variants == {"multiberts_s0": ["original"], "gpt2_tiny": ["causal_logprob"], "tiny_hub": ["original"]}
    assert pd.read_parquet(tables / "loss.parquet").empty  # trained elsewhere: no held-out loss here
    events = pd.read_parquet(tables / "phases.parquet")
    assert set(events["kind"]) == {"external"} and set(events["run"]) == {"multiberts_s0", "gpt2_tiny", "tiny_hub"}
    assert not events[events["event"] == "loss_drop"]["detected"].any()
    for figure in ("fig1_training", "fig5_seeds"):
        assert (workdir / "results" / "figures" / f"{figure}.png").stat().st_size > 0
    assert "Nothing to be done" in snakemake_ok("-n", "--cores", "2", "--configfile", "series.yaml", cwd=workdir)

    # a series checkpoint changed between runs (retrained elsewhere): only that series' jobs and
    # what reads them rerun, and only the changed checkpoint is scored again
    import torch
    from transformers import BertConfig, BertForMaskedLM

    changed = local / "multiberts-seed_0-step_1k"
    torch.manual_seed(99)
    BertForMaskedLM(BertConfig.from_pretrained(changed)).save_pretrained(changed)
    plan = job_counts(snakemake_ok("-n", "--cores", "2", "--configfile", "series.yaml", cwd=workdir))
    assert plan["probe"] == plan["blimp"] == 1 and "series_fetch" not in plan, plan
    before = uas.loc["multiberts_s0"].set_index("step")["uas"]
    snakemake_ok("--cores", "2", "--configfile", "series.yaml", cwd=workdir)
    log = (workdir / "results" / "logs" / "probe" / "multiberts_s0" / "seed0.log").read_text()
    assert log.count("kept from") == 2 and re.search(r"step 1000 \(.*\): UAS\(all\)", log)
    after = pd.read_parquet(tables / "uas.parquet").query("run == 'multiberts_s0'").set_index("step")["uas"]
    assert after[0] == before[0] and after[2000] == before[2000]
    blimp_log = (workdir / "results" / "logs" / "blimp" / "multiberts_s0" / "seed0.log").read_text()
    assert blimp_log.count("kept from") == 2 and blimp_log.count("overall accuracy") == 1


# ----------------------------------------------------------------------------------------------
# Causal LMs (GPT-2 here; GPT-NeoX/Pythia and Llama-style models load the same way)


def test_a_causal_checkpoint_is_recognised_from_its_config(tiny_causal_lm, multiberts_like):
    from sasbert.measure.checkpoints import model_kind

    assert model_kind(tiny_causal_lm) == "causal"
    assert model_kind(next(multiberts_like.iterdir())) == "masked"


def test_causal_blimp_score_is_the_summed_token_log_probability(tiny_causal_lm):
    """Equal to a hand loop over log_softmax of the logits, one sentence at a time, and to
    minicons' IncrementalLMScorer (an independent implementation) with its BOS token."""
    import torch
    from minicons import scorer as mscorer

    from sasbert.measure.blimp import scoring as blimp_scoring

    sentences = ["The cat sat on the mat .", "Who did you see ?", "The cat sat on the mat .", "Dogs bark ."]
    ours = blimp_scoring.CausalScorer.from_pretrained(tiny_causal_lm, batch_size=3).score(sentences)
    model, tokenizer = checkpoints.load_language_model(tiny_causal_lm, kind="causal")
    for sentence, score in zip(sentences, ours):
        ids = [tokenizer.bos_token_id] + tokenizer(sentence, add_special_tokens=False)["input_ids"]
        with torch.no_grad():
            logp = torch.log_softmax(model(torch.tensor([ids])).logits[0].double(), dim=-1)
        assert score == pytest.approx(sum(float(logp[t - 1, ids[t]]) for t in range(1, len(ids))), abs=1e-4)
    theirs = mscorer.IncrementalLMScorer(str(tiny_causal_lm), "cpu").sequence_score(
        sentences, reduction=lambda x: x.sum(0).item(), bos_token=True
    )
    assert ours == pytest.approx(theirs, abs=1e-3)


def test_the_blimp_cli_names_the_causal_method_in_its_tables(tiny_gpt2, tmp_path):
    from sasbert.cli import main

    out = tmp_path / "summary.parquet"
    args = ["blimp", "score", "--checkpoint", str(tiny_gpt2), "--data-dir", str(REPO / "resources" / "blimp")]
    assert (
        main(
            [*args, "--pairs-per-paradigm", "1", "--out-pairs", str(tmp_path / "p.parquet"), "--out-summary", str(out)]
        )
        == 0
    )
    summary = pd.read_parquet(out)
    assert set(summary["variant"]) == {"causal_logprob"} and set(summary["step"]) == {1000}
    assert summary.query("level == 'overall'")["n_pairs"].iloc[0] == 67


def test_the_probe_reads_a_causal_lm_as_a_plain_loop_does_and_names_what_each_direction_can_reach(tiny_causal_lm):
    """Per-head UAS of a GPT-2 and a GPT-NeoX against a deliberately plain loop (one sentence at a time, each
    word's pieces tokenized on their own, with the space before it, as byte-level BPE does), and
    the reachable fractions: left-headed arcs for dependent_to_parent, right-headed ones for
    parent_to_dependent, which bound each direction's accuracy under the causal mask."""
    import torch

    from sasbert.measure.probe import scoring as probe_scoring
    from sasbert.measure.probe import sentences as probe_sentences

    ewt = REPO / "resources" / "ud" / "UD_English-EWT" / "en_ewt-ud-dev.conllu.gz"
    model, tokenizer = probe_scoring.load_checkpoint(tiny_causal_lm)
    model = model.double()
    sentences = probe_sentences.read_treebank(ewt, max_sentences=40)
    result = probe_scoring.score_model(
        model, tokenizer, sentences, ProbeOptions(max_pieces=200, batch_size=7, min_relation_count=1)
    )
    tally, left, total = {}, 0, 0
    for sentence in sentences:
        pieces = [
            tokenizer(w if k == 0 else " " + w, add_special_tokens=False)["input_ids"]
            for k, w in enumerate(sentence.words)
        ]
        ids = [p for ps in pieces for p in ps]
        assert ids == tokenizer(" ".join(sentence.words))["input_ids"]
        owner = [w for w, ps in enumerate(pieces) for _ in ps]
        n = len(sentence.words)
        with torch.no_grad():
            attentions = model(torch.tensor([ids]), output_attentions=True).attentions
        scored = [
            (i, sentence.heads[i] - 1)
            for i in range(n)
            if sentence.heads[i] != 0 and sentence.relations[i] not in probe_sentences.DEFAULT_EXCLUDED_RELATIONS
        ]
        left += sum(parent < i for i, parent in scored)
        total += len(scored)
        for layer, a in enumerate(attentions):
            for head in range(a.shape[1]):
                att = a[0, head].tolist()
                W = [[0.0] * n for _ in range(n)]
                for i in range(n):
                    rows = [p for p in range(len(ids)) if owner[p] == i]
                    for j in range(n):
                        if j != i:  # a word's attention to itself is not a prediction
                            W[i][j] = sum(att[p][q] for p in rows for q in range(len(ids)) if owner[q] == j) / len(rows)
                for i, parent in scored:
                    for direction, pred in (
                        ("dependent_to_parent", max(range(n), key=lambda j: W[i][j])),
                        ("parent_to_dependent", max(range(n), key=lambda j: W[j][i])),
                    ):
                        tally[(layer, head, direction)] = tally.get((layer, head, direction), 0) + (pred == parent)
    ours = result.scores.query("method == 'attention' and relation == 'all'")
    assert {(int(r.layer), int(r.head), r.direction): int(r.correct) for r in ours.itertuples()} == tally
    reach = result.summary.query("method == 'attention' and relation == 'all'").iloc[0]
    fraction = left / total if reach["direction"] == "dependent_to_parent" else 1 - left / total
    assert reach["reachable"] == pytest.approx(fraction)
    for r in ours.itertuples():  # no head beats what its direction can reach
        bound = left if r.direction == "dependent_to_parent" else total - left
        assert r.correct <= bound


# ----------------------------------------------------------------------------------------------
# Hub series, offline: a HF cache laid out as huggingface_hub lays it


def fill_hf_cache(cache, repo: str, revisions: dict, repo_type: str = "model") -> None:
    """``<type>s--<owner>--<name>/{refs/<revision>, snapshots/<commit>/<file> -> ../../blobs/<sha256>}``
    (files in subfolders keep their relative paths)."""
    import hashlib
    import os

    base = cache / f"{repo_type}s--{repo.replace('/', '--')}"
    for revision, folder in revisions.items():
        commit = hashlib.sha1(f"{repo}@{revision}".encode()).hexdigest()
        (base / "refs").mkdir(parents=True, exist_ok=True)
        (base / "refs" / revision).write_text(commit)
        snap = base / "snapshots" / commit
        snap.mkdir(parents=True)
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            data = path.read_bytes()
            blob = base / "blobs" / hashlib.sha256(data).hexdigest()
            blob.parent.mkdir(exist_ok=True)
            if not blob.exists():
                blob.write_bytes(data)
            link = snap / path.relative_to(folder)
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(os.path.relpath(blob, link.parent))


def test_hub_series_steps_come_from_revisions_or_repo_names():
    from sasbert import hub

    pythia = checkpoints.series_checkpoints(
        {"repo": "EleutherAI/pythia-70m", "revisions": ["step0", "step1000", "step143000"]}
    )
    assert pythia == [(f"hub:EleutherAI/pythia-70m@step{s}", s) for s in (0, 1000, 143000)]
    multiberts = checkpoints.series_checkpoints(
        {"repos": ["google/multiberts-seed_0-step_0k", "google/multiberts-seed_0-step_20k"]}
    )
    assert [step for _, step in multiberts] == [0, 20000]
    assert hub.parse("hub:allenai/OLMo-1B@step20000-tokens84B") == ("allenai/OLMo-1B", "step20000-tokens84B")
    assert hub.step_of("hub:allenai/OLMo-1B@step20000-tokens84B") == 20000
    with pytest.raises(hub.InputError, match="no step number"):
        checkpoints.series_checkpoints({"repo": "org/model", "revisions": ["main"]})


def test_hub_checkpoints_are_read_from_the_cache_and_identical_weights_flagged(tmp_path, monkeypatch, multiberts_like):
    import json
    import subprocess
    import sys

    cache = tmp_path / "hub"
    folders = sorted(multiberts_like.iterdir())
    # step2000 repeats step1000's files: the same blobs, as some published branch series do
    fill_hf_cache(cache, "org/tiny-bert", {"step0": folders[0], "step1000": folders[1], "step2000": folders[1]})
    env = {"HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1"}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    specs = [f"hub:org/tiny-bert@step{s}" for s in (0, 1000, 2000)]
    out = tmp_path / "fetched.json"
    result = subprocess.run(
        [sys.executable, "-m", "sasbert", "series-fetch", "--checkpoint", *specs, "--out", str(out)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    rows = json.loads(out.read_text())
    assert [r["same_weights_as"] for r in rows] == [None, None, specs[1]]
    assert all((cache / "models--org--tiny-bert" / "snapshots" / r["commit"]).is_dir() for r in rows)
    assert "has the same weights as" in result.stderr
    # the probe and BLiMP read the same cache offline (huggingface_hub reads HF_HUB_CACHE at import:
    # a fresh process, as a job is)
    code = "import sys; from sasbert.measure.checkpoints import resolve_checkpoints; print(resolve_checkpoints(sys.argv[1:]))"
    resolved = subprocess.run([sys.executable, "-c", code, *specs], capture_output=True, text=True)
    assert resolved.returncode == 0, resolved.stderr
    assert "step-" not in resolved.stdout and ", 0), " in resolved.stdout and ", 2000)]" in resolved.stdout

    # a revision the cache does not hold: named, with how to fill the cache, no traceback, no output
    missing = subprocess.run(
        [sys.executable, "-m", "sasbert", "series-fetch", "--checkpoint", "hub:org/tiny-bert@step3000"]
        + ["--out", str(tmp_path / "none.json")],
        capture_output=True,
        text=True,
    )
    assert missing.returncode == 2 and "Traceback" not in missing.stderr
    assert "org/tiny-bert at revision step3000: cannot download it" in missing.stderr
    assert "hf download org/tiny-bert --revision step3000" in missing.stderr
    assert not (tmp_path / "none.json").exists()
