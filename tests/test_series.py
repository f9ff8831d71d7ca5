"""Checkpoint series trained elsewhere (issue 15, local series): config `series:` brings them
through probe, BLiMP, tables, phases and figures with kind "external"; a config may measure
series alone, with no training run."""

import pandas as pd
import pytest
import yaml

from conftest import REPO, job_counts, link_workflow, snakemake, snakemake_ok
from sasbert import config as sasconfig
from sasbert import phases

VOCAB = REPO / "resources" / "tokenizer" / "bert-base-uncased-vocab.txt"
STEPS = (0, 1000, 2000)


@pytest.fixture(scope="module")
def multiberts_like(tmp_path_factory):
    """Three tiny BERT checkpoints named as MultiBERTs names theirs (step_0k, step_1k, step_2k),
    each with other random weights, and the bert-base-uncased tokenizer."""
    import torch
    from transformers import BertConfig, BertForMaskedLM, BertTokenizerFast

    folder = tmp_path_factory.mktemp("multiberts")
    tokenizer = BertTokenizerFast(vocab_file=str(VOCAB), do_lower_case=True)
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


def test_the_runs_table_lists_series_after_the_runs_as_external():
    table = phases.runs_table(
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
def test_a_series_alone_runs_through_probe_blimp_tables_phases_and_figures(tmp_path, multiberts_like):
    workdir = link_workflow(tmp_path / "work")
    (workdir / "series.yaml").write_text(yaml.safe_dump(series_config(multiberts_like)))
    plan = job_counts(snakemake_ok("-n", "--cores", "2", "--configfile", "series.yaml", cwd=workdir))
    assert {"corpus", "parse", "tokenize", "pretrain"}.isdisjoint(plan), plan
    assert plan["probe"] == plan["blimp"] == plan["tables"] == plan["phases"] == 1
    snakemake_ok("--cores", "2", "--configfile", "series.yaml", cwd=workdir)
    tables = workdir / "results" / "tables"
    runs = pd.read_parquet(tables / "runs.parquet")
    assert runs[["run", "kind", "tokens_per_step"]].values.tolist() == [["multiberts_s0", "external", 131072]]
    uas = pd.read_parquet(tables / "uas.parquet")
    assert sorted(uas["step"]) == list(STEPS) and set(uas["seed"]) == {0}
    blimp = pd.read_parquet(tables / "blimp.parquet")
    assert sorted(blimp["step"].unique()) == list(STEPS)
    assert pd.read_parquet(tables / "loss.parquet").empty  # trained elsewhere: no held-out loss here
    events = pd.read_parquet(tables / "phases.parquet").set_index("event")
    assert set(events["kind"]) == {"external"}
    assert not events.at["loss_drop", "detected"]
    for figure in ("fig1_training", "fig5_seeds"):
        assert (workdir / "results" / "figures" / f"{figure}.png").stat().st_size > 0
    assert "Nothing to be done" in snakemake_ok("-n", "--cores", "2", "--configfile", "series.yaml", cwd=workdir)
