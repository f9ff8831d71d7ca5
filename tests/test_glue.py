"""GLUE fine-tuning (issue 18): the metrics against hand-computed cases and sklearn/scipy, BERT's
GLUE average, the task data (hub through a filled HF cache offline, local files, save_to_disk
folders, an acceptability task in CoLA's format from BLiMP), a real fine-tune of tiny checkpoints
(one that has learned acceptability beats the random initialisation), the GLUE jump in phases, the
GLUE panels of figures 1-3, and the real Snakefile (dry runs, one tiny real run)."""

import hashlib
import math
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import yaml

from conftest import REPO, job_counts, link_workflow, snakemake_ok, tiny_bert_config
from sasbert import config as sasconfig
from sasbert.analysis import curves, phases
from sasbert.analysis import runs as run_kinds
from sasbert.errors import InputError
from sasbert.measure.glue import cli as glue_cli
from sasbert.measure.glue import finetune as glue_finetune
from sasbert.measure.glue import metrics as glue_metrics
from sasbert.measure.glue import tasks as glue_tasks
from sasbert.measure.glue.options import FinetuneOptions

BLIMP = REPO / "resources" / "blimp"
VOCAB = REPO / "resources" / "tokenizer" / "ewt-train-wordpiece-8000.txt"
# A tiny model learns at run_glue's lr (2e-5) in 100 steps next to nothing: 1e-3 here.
TINY_OPTIONS = {"learning_rate": 1e-3, "bootstrap_samples": 100, "logging_steps": 1000}


def blimp_source(train=8, validation=4):
    return glue_cli._with_defaults(
        {
            "blimp": {
                "data_dir": str(BLIMP),
                "train_pairs_per_paradigm": train,
                "validation_pairs_per_paradigm": validation,
            }
        }
    )


# ---------------------------------------------------------------------------------------- metrics


def test_metrics_equal_hand_computed_cases():
    # accuracy 3/4; F1 with TP 2, FP 0, FN 1: P 1, R 2/3, F1 0.8
    assert glue_metrics.metric_value("accuracy", [1, 0, 1, 1], [1, 0, 0, 1]) == 0.75
    assert glue_metrics.metric_value("f1", [1, 0, 1, 1], [1, 0, 0, 1]) == pytest.approx(0.8)
    # Matthews: TP 2, TN 2, FP 1, FN 1 -> (2*2 - 1*1) / sqrt(3*3*3*3) = 1/3
    assert glue_metrics.metric_value("matthews_correlation", [1, 1, 1, 0, 0, 0], [1, 1, 0, 0, 0, 1]) == pytest.approx(
        1 / 3
    )
    # Pearson of (1, 2, 3) and (1, 2, 4): cov 3 / (sqrt(2) sqrt(42)/3) = 9 / sqrt(84)
    assert glue_metrics.metric_value("pearson", [1, 2, 4], [1, 2, 3]) == pytest.approx(9 / math.sqrt(84))
    # Spearman with a tie: ranks (1, 2.5, 2.5, 4) against (1, 2, 3, 4): 4.5 / sqrt(4.5 * 5)
    assert glue_metrics.metric_value("spearman", [1, 2, 3, 4], [1, 2, 2, 3]) == pytest.approx(4.5 / math.sqrt(22.5))
    # a constant prediction: Matthews 0 (sklearn's convention), a correlation undefined
    assert glue_metrics.metric_value("matthews_correlation", [1, 0, 1], [1, 1, 1]) == 0.0
    assert math.isnan(glue_metrics.metric_value("pearson", [1.0, 2.0, 3.0], [2.0, 2.0, 2.0]))
    low, high = glue_metrics.bootstrap_interval("accuracy", [1, 0] * 50, [1, 0] * 40 + [0, 1] * 10, samples=200)
    assert low < 0.8 < high and high - low < 0.25


@pytest.mark.filterwarnings("ignore:A single label was found")  # sklearn, on the degenerate cases
def test_metrics_equal_sklearn_and_scipy():
    """The independent implementations (what HF evaluate's glue metric calls), on random
    predictions: binary, three classes, with ties for the rank correlation, and degenerate ones."""
    from scipy import stats
    from sklearn import metrics

    rng = np.random.default_rng(0)
    for classes in (2, 3):
        labels, predictions = rng.integers(0, classes, 300), rng.integers(0, classes, 300)
        assert glue_metrics.metric_value("accuracy", labels, predictions) == metrics.accuracy_score(labels, predictions)
        assert glue_metrics.metric_value("matthews_correlation", labels, predictions) == pytest.approx(
            metrics.matthews_corrcoef(labels, predictions), abs=1e-12
        )
    labels, predictions = rng.integers(0, 2, 300), rng.integers(0, 2, 300)
    assert glue_metrics.metric_value("f1", labels, predictions) == pytest.approx(metrics.f1_score(labels, predictions))
    for labels, predictions in (([0, 0, 1], [0, 0, 0]), ([1, 1], [1, 1]), ([0, 0], [0, 0])):
        assert glue_metrics.metric_value("f1", labels, predictions) == metrics.f1_score(
            labels, predictions, zero_division=0.0
        )
        assert glue_metrics.metric_value("matthews_correlation", labels, predictions) == metrics.matthews_corrcoef(
            labels, predictions
        )
    scores, guesses = rng.uniform(0, 5, 200), np.round(rng.uniform(0, 5, 200))  # rounded: many ties
    assert glue_metrics.metric_value("pearson", scores, guesses) == pytest.approx(stats.pearsonr(guesses, scores)[0])
    assert glue_metrics.metric_value("spearman", scores, guesses) == pytest.approx(stats.spearmanr(guesses, scores)[0])


def test_the_glue_average_is_berts_nine_entries_without_wnli():
    """BERT's Table 1 (Devlin et al. 2019): BERT-base 84.6/83.4, 71.2, 90.5, 93.5, 52.1, 85.8, 88.9,
    66.4 -> 79.6; BERT-large 86.7/85.9, 72.1, 92.7, 94.9, 60.5, 86.5, 89.3, 70.1 -> 82.1."""
    published = {
        "base": ([84.6, 83.4, 71.2, 90.5, 93.5, 52.1, 85.8, 88.9, 66.4], 79.6),
        "large": ([86.7, 85.9, 72.1, 92.7, 94.9, 60.5, 86.5, 89.3, 70.1], 82.1),
    }
    entries = {  # the order of the published columns
        "mnli_m": ("mnli", "validation_matched", "accuracy"),
        "mnli_mm": ("mnli", "validation_mismatched", "accuracy"),
        "qqp": ("qqp", "validation", "f1"),
        "qnli": ("qnli", "validation", "accuracy"),
        "sst2": ("sst2", "validation", "accuracy"),
        "cola": ("cola", "validation", "matthews_correlation"),
        "stsb": ("stsb", "validation", "spearman"),
        "mrpc": ("mrpc", "validation", "f1"),
        "rte": ("rte", "validation", "accuracy"),
    }
    assert set(entries.values()) == set(glue_metrics.AVERAGE_ENTRIES)
    rows = []
    for run, (numbers, _) in published.items():
        for (task, split, metric), value in zip(entries.values(), numbers):
            rows.append((run, task, split, metric, value / 100))
        rows += [(run, "wnli", "validation", "accuracy", 0.0), (run, "qqp", "validation", "accuracy", 0.0)]
    table = pd.DataFrame(rows, columns=["run", "task", "split", "metric", "value"]).assign(
        seed=0, step=0, finetune_seed=0, n_examples=100
    )
    table["ci_low"], table["ci_high"] = table["value"] - 0.01, table["value"] + 0.01
    average = glue_metrics.glue_average(table).set_index("run")
    for run, (_, expected) in published.items():
        assert round(100 * average.at[run, "value"], 1) == expected
        assert average.at[run, "metric"] == "average" and average.at[run, "task"] == "glue"
        # nine independent half-widths of 0.01: sqrt(9) * 0.01 / 9
        assert average.at[run, "ci_high"] - average.at[run, "value"] == pytest.approx(0.01 / 3)
    partial = glue_metrics.glue_average(table[table["task"] == "cola"])
    assert partial["metric"].tolist() == ["partial_average", "partial_average"]


def test_summary_is_mean_and_spread_over_finetune_seeds():
    table = pd.DataFrame(
        {"run": "r", "seed": 0, "step": 5, "task": "cola", "split": "validation", "metric": "matthews_correlation"},
        index=range(3),
    ).assign(value=[0.1, 0.2, 0.6], finetune_seed=[0, 1, 2])
    (row,) = glue_metrics.summarize(table).to_dict("records")
    assert row["mean"] == pytest.approx(0.3) and row["sd"] == pytest.approx(np.std([0.1, 0.2, 0.6], ddof=1))
    assert (row["min"], row["max"], row["n_finetune_seeds"]) == (0.1, 0.6, 3)


# ------------------------------------------------------------------------------------------- data


def test_blimp_makes_an_acceptability_task_in_colas_format():
    splits = glue_tasks.load_task("cola", blimp_source(), "unused/hub")
    assert list(splits) == ["train", "validation"]
    assert len(splits["train"]) == 67 * 8 * 2 and len(splits["validation"]) == 67 * 4 * 2
    for frame in splits.values():
        assert frame.columns.tolist() == ["idx", "sentence", "label"]
        assert frame["label"].tolist() == [1, 0] * (len(frame) // 2)  # each pair: good, then bad

    # a pair's two sentences are in one split: no validation pair has its twin in training
    def pairs(frame):
        return set(zip(frame["sentence"][::2], frame["sentence"][1::2]))

    assert not pairs(splits["train"]) & pairs(splits["validation"])
    more = glue_tasks.load_task("cola", blimp_source(12, 2), "unused/hub")  # a longer draw starts with the same pairs
    assert set(splits["train"]["sentence"]) <= set(more["train"]["sentence"])


def test_local_files_and_saved_folders_give_the_same_task(tmp_path):
    splits = glue_tasks.load_task("cola", blimp_source(2, 1), "unused/hub")
    files = {}
    for split, frame in splits.items():
        data = frame.drop(columns="idx")
        for suffix in (".csv", ".tsv", ".jsonl", ".parquet"):
            path = tmp_path / f"{split}{suffix}"
            if suffix == ".csv":
                data.to_csv(path, index=False)
            elif suffix == ".tsv":
                data.to_csv(path, sep="\t", index=False)
            elif suffix == ".jsonl":
                data.to_json(path, orient="records", lines=True)
            else:
                data.to_parquet(path)
            files.setdefault(suffix, {})[split] = str(path)
    glue_tasks.save_task(splits, tmp_path / "saved")
    sources = [{"data_files": f} for f in files.values()] + [{"saved": str(tmp_path / "saved")}]
    for source in sources:
        loaded = glue_tasks.load_task("cola", source, "unused/hub")
        for split in splits:
            pd.testing.assert_frame_equal(loaded[split], splits[split], check_dtype=False)


def test_bad_task_data_is_named(tmp_path):
    pd.DataFrame({"sentence": ["a b", "c d"], "label": [1, -1]}).to_csv(tmp_path / "test.csv", index=False)
    pd.DataFrame({"text": ["a b"], "label": [1]}).to_csv(tmp_path / "other.csv", index=False)
    good = tmp_path / "good.csv"
    pd.DataFrame({"sentence": ["a b"], "label": [1]}).to_csv(good, index=False)
    bad = {"data_files": {"train": str(good), "validation": str(tmp_path / "test.csv")}}
    with pytest.raises(InputError, match=r"cola .*split validation, row 1: label -1 is not one of 0, 1 \(-1: unlab"):
        glue_tasks.load_task("cola", bad, "x")
    with pytest.raises(InputError, match="split train: no column sentence"):
        glue_tasks.load_task(
            "cola", {"data_files": {"train": str(tmp_path / "other.csv"), "validation": str(good)}}, "x"
        )
    with pytest.raises(InputError, match="GLUE task sst2 .*no validation split"):
        glue_tasks.load_task("sst2", {"data_files": {"train": str(tmp_path / "test.csv")}}, "x")


def fill_dataset_cache(cache, repo: str, task: str, splits: dict) -> None:
    """The HF hub cache as huggingface_hub lays out a dataset repo (nyu-mll/glue's parquet files:
    <task>/<split>-00000-of-00001.parquet), filled by hand: no hub here."""
    base = cache / f"datasets--{repo.replace('/', '--')}"
    commit = hashlib.sha1(repo.encode()).hexdigest()
    (base / "refs").mkdir(parents=True, exist_ok=True)
    (base / "refs" / "main").write_text(commit)
    folder = base / "snapshots" / commit / task
    folder.mkdir(parents=True)
    for split, frame in splits.items():
        blob = base / "blobs" / f"{split}-{task}"
        blob.parent.mkdir(exist_ok=True)
        frame.to_parquet(blob)
        (folder / f"{split}-00000-of-00001.parquet").symlink_to(os.path.relpath(blob, folder))


def test_a_hub_task_is_read_from_the_hf_cache_offline_and_a_missing_one_says_how_to_provide_it(tmp_path, monkeypatch):
    splits = glue_tasks.load_task("cola", blimp_source(1, 1), "unused/hub")
    unlabelled = splits["validation"].assign(label=-1)
    fill_dataset_cache(tmp_path / "hub", "nyu-mll/glue", "cola", {**splits, "test": unlabelled})
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))  # read when huggingface_hub was imported
    prepared = glue_tasks.load_task("cola", None, "nyu-mll/glue")
    assert sorted(prepared) == ["train", "validation"]  # the unlabelled test split is left out
    assert prepared["validation"]["sentence"].tolist() == splits["validation"]["sentence"].tolist()
    cli = [sys.executable, "-m", "sasbert", "glue", "prepare", "--out", str(tmp_path / "rte"), "--task", "rte"]
    failed = subprocess.run(cli, env=dict(os.environ), capture_output=True, text=True)
    assert failed.returncode == 2 and "Traceback" not in failed.stderr
    assert "GLUE task rte: no data (nyu-mll/glue, config rte, is not in the HF cache" in failed.stderr
    assert "snakemake glue_data" in failed.stderr and "glue.data.rte" in failed.stderr
    assert not (tmp_path / "rte").exists()


# ------------------------------------------------------------------------------------ fine-tuning


def matthews(labels, predictions) -> float:
    """Matthews' correlation of binary predictions by its textbook formula from the four counts (an
    implementation independent of the stage's), and equal to sklearn's."""
    labels, predictions = np.asarray(labels) == 1, np.asarray(predictions) == 1
    tp, tn = np.sum(labels & predictions), np.sum(~labels & ~predictions)
    fp, fn = np.sum(~labels & predictions), np.sum(labels & ~predictions)
    denominator = math.sqrt(float((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn)))
    value = float(tp * tn - fp * fn) / denominator if denominator else 0.0
    from sklearn.metrics import matthews_corrcoef

    assert value == pytest.approx(matthews_corrcoef(labels, predictions))
    return value


# The learned checkpoint's lesson: 100 pairs per paradigm after the task's 8 + 4 (the same draw, so
# disjoint from both splits of the task), 3 epochs. With the 20 pairs x 8 epochs this fixture once
# used, the encoder reached 0.53-0.55 on the task's validation pairs and the fine-tune's Matthews
# interval touched 0 on some CPUs (issue 32); with this lesson it reaches 0.61-0.62 and every
# fine-tuning seed's interval lies above 0.1 (measured under ATEN_CPU_CAPABILITY default, avx2 and
# avx512: docs/testing.md, "Margins").
LESSON_PAIRS_PER_PARADIGM, LESSON_EPOCHS, LESSON_LR = 100, 3, 1e-3
# What the fixture must reach on the task's validation pairs before it stands for "a checkpoint that
# has learned": a fixture too weak to carry the claim fails here, named, not in the comparison.
LESSON_MIN_ACCURACY = 0.58
FINETUNE_SEEDS = (0, 1)


def pair_accuracy(classifier, tokenizer, frame) -> float:
    import torch

    classifier.eval()
    inputs = tokenizer(frame["sentence"].tolist(), padding=True, return_tensors="pt")
    with torch.no_grad():
        predictions = classifier(**inputs).logits.argmax(-1).numpy()
    classifier.train()
    return float(np.mean(predictions == frame["label"].to_numpy()))


@pytest.fixture(scope="module")
def tiny_checkpoints(tmp_path_factory):
    """A tiny BERT at its random initialisation (step-0) and the same BERT after learning
    acceptability (step-1000): its encoder trained, with a plain loop, to tell BLiMP's good
    sentences from bad ones on pairs that are in neither split of the task, then saved as a masked
    LM (the classifier head dropped), as a checkpoint of a pretraining run would be."""
    import torch
    from transformers import BertForMaskedLM, BertForSequenceClassification, BertTokenizerFast

    folder = tmp_path_factory.mktemp("glue_series")
    tokenizer = BertTokenizerFast(vocab=str(VOCAB), do_lower_case=True)
    config = tiny_bert_config(tokenizer.vocab_size)
    torch.manual_seed(0)
    random_init = BertForMaskedLM(config)
    random_init.save_pretrained(folder / "step-0")
    tokenizer.save_pretrained(folder / "step-0")
    lesson = glue_tasks.load_task("cola", blimp_source(12, LESSON_PAIRS_PER_PARADIGM), "unused/hub")["validation"]
    torch.manual_seed(1)
    classifier = BertForSequenceClassification(config)
    classifier.bert.load_state_dict(random_init.bert.state_dict(), strict=False)
    optimizer = torch.optim.AdamW(classifier.parameters(), lr=LESSON_LR)
    labels = torch.tensor(lesson["label"].to_numpy())
    inputs = tokenizer(lesson["sentence"].tolist(), padding=True, return_tensors="pt")
    order = torch.Generator().manual_seed(0)
    for _ in range(LESSON_EPOCHS):
        for batch in torch.randperm(len(labels), generator=order).split(128):
            mask = inputs["attention_mask"][batch]
            width = int(mask.sum(1).max())  # the batch's longest sentence
            loss = classifier(inputs["input_ids"][batch, :width], mask[:, :width], labels=labels[batch]).loss
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    accuracy = pair_accuracy(
        classifier, tokenizer, glue_tasks.load_task("cola", blimp_source(), "unused/hub")["validation"]
    )
    assert accuracy >= LESSON_MIN_ACCURACY, f"the learned fixture reached only {accuracy:.3f} on the task's pairs"
    learned = BertForMaskedLM(config)
    learned.bert.load_state_dict(classifier.bert.state_dict(), strict=False)
    learned.save_pretrained(folder / "step-1000")
    tokenizer.save_pretrained(folder / "step-1000")
    return folder


@pytest.fixture(scope="module")
def blimp_task(tmp_path_factory):
    folder = tmp_path_factory.mktemp("glue_task") / "cola"
    glue_tasks.save_task(glue_tasks.load_task("cola", blimp_source(), "unused/hub"), folder)
    return folder


def test_finetuned_scores_equal_matthews_on_the_predictions_and_learning_beats_random_init(
    tiny_checkpoints, blimp_task
):
    dataset = glue_tasks.load_prepared(blimp_task, "cola")
    options = FinetuneOptions(**TINY_OPTIONS)
    scores = {}
    for name in ("step-0", "step-1000"):
        for finetune_seed in FINETUNE_SEEDS:
            metrics, predictions = glue_finetune.finetune(
                tiny_checkpoints / name, dataset, "cola", options, finetune_seed
            )
            (row,) = metrics.to_dict("records")
            assert (row["task"], row["split"], row["metric"]) == ("cola", "validation", "matthews_correlation")
            assert row["n_examples"] == len(predictions) == 67 * 4 * 2
            assert predictions["label"].tolist() == dataset["validation"]["label"]  # in the split's order
            assert row["value"] == pytest.approx(matthews(predictions["label"], predictions["prediction"]))
            scores[name, finetune_seed] = row
    # the random init never leaves the majority class at this size (Matthews 0); the learned encoder,
    # with a new head, tells acceptable from unacceptable sentences it has never seen, whatever the
    # fine-tuning seed: every learned interval lies above every random one
    for finetune_seed in FINETUNE_SEEDS:
        assert scores["step-0", finetune_seed]["value"] == pytest.approx(0.0, abs=0.05)
    random_high = max(scores["step-0", s]["ci_high"] for s in FINETUNE_SEEDS)
    learned_low = min(scores["step-1000", s]["ci_low"] for s in FINETUNE_SEEDS)
    assert learned_low > random_high, scores


def test_regression_and_pair_tasks_score_pearson_and_spearman_like_scipy(tiny_checkpoints, tmp_path):
    """STS-B's form: a sentence pair and a float label, a regression head."""
    rng = np.random.default_rng(0)
    pairs = glue_tasks.load_task("cola", blimp_source(1, 1), "unused/hub")
    splits = {
        split: pd.DataFrame(
            {
                "sentence1": frame["sentence"][::2].to_numpy(),
                "sentence2": frame["sentence"][1::2].to_numpy(),
                "label": rng.uniform(0, 5, len(frame) // 2),
            }
        )
        for split, frame in pairs.items()
    }
    glue_tasks.save_task(glue_tasks.check_splits("stsb", splits, "test"), tmp_path / "stsb")
    options = FinetuneOptions(**TINY_OPTIONS, epochs=1)
    metrics, predictions = glue_finetune.finetune(
        tiny_checkpoints / "step-0", glue_tasks.load_prepared(tmp_path / "stsb", "stsb"), "stsb", options, 0
    )
    values = metrics.set_index("metric")["value"]
    predicted, labels = predictions["prediction"], predictions["label"]
    assert values["pearson"] == pytest.approx(np.corrcoef(predicted, labels)[0, 1])
    assert values["spearman"] == pytest.approx(np.corrcoef(predicted.rank(), labels.rank())[0, 1])
    from scipy import stats

    assert values["pearson"] == pytest.approx(stats.pearsonr(predicted, labels)[0])
    assert values["spearman"] == pytest.approx(stats.spearmanr(predicted, labels)[0])


# ---------------------------------------------------------------------------- phases and figures


def glue_table(scores: dict[str, list[float]], steps, half_width=0.01) -> pd.DataFrame:
    rows = []
    for run, values in scores.items():
        for step, value in zip(steps, values):
            for fseed, shift in ((0, -0.005), (1, 0.005)):
                rows.append((run, 0, step, "cola", "validation", "matthews_correlation", value + shift, fseed))
    table = pd.DataFrame(rows, columns=["run", "seed", "step", "task", "split", "metric", "value", "finetune_seed"])
    table = table.assign(ci_low=table["value"] - half_width, ci_high=table["value"] + half_width, n_examples=500)
    return pd.concat([table, glue_metrics.glue_average(table)], ignore_index=True)


def test_the_glue_jump_follows_the_blimp_jump_rule():
    steps = np.arange(0, 2100, 100)
    curve = 0.1 + 0.4 / (1 + np.exp(-(steps - 900) / 80))
    table = glue_table({"base": curve, "flat": 0.2 + 0 * curve}, steps)
    score = curves.glue_score(table)
    assert score["score"].tolist()[:3] == pytest.approx(curve[:3])  # the mean over fine-tuning seeds
    runs = run_kinds.runs_table([{"name": "base", "lambda": 0.0}, {"name": "flat", "lambda": 0.0}])
    empty = {"loss": ["run", "seed", "step", "val_mlm_loss"], "uas": ["run", "seed", "step", "treebank", "uas"]}
    empty = {name: pd.DataFrame(columns=cols) for name, cols in empty.items()}
    blimp = pd.DataFrame(columns=["run", "seed", "step", "variant", "level", "accuracy", "ci_low", "ci_high"])
    found = phases.detect(runs, empty["loss"], empty["uas"], blimp, glue=table)
    jumps = found[found["event"] == "glue_jump"].set_index("run")
    expected = phases.blimp_events(steps, curve, curves.PhaseOptions(), np.full(len(steps), 0.02))[0]
    assert jumps.at["base", "detected"] and jumps.at["base", "step"] == expected["step"] == 900
    assert jumps.at["base", "metric"] == "glue" and not jumps.at["flat", "detected"]
    # a rise inside the score's own 95% interval is no jump (BLiMP's rule)
    wide = phases.detect(runs, empty["loss"], empty["uas"], blimp, glue=glue_table({"base": curve}, steps, 0.3))
    (row,) = wide[wide["event"] == "glue_jump"].to_dict("records")
    assert not row["detected"] and "within the 95% interval" in row["reason"]
    assert "glue_jump" not in set(phases.detect(runs, empty["loss"], empty["uas"], blimp)["event"])


def test_figures_1_to_3_get_a_glue_panel_when_glue_was_run():
    from sasbert.analysis.figures import cli as figures_cli
    from sasbert.analysis.figures import common as figures_common

    steps = np.arange(0, 600, 100)
    runs = run_kinds.runs_table(
        [
            {"name": "base", "lambda": 0.0},
            {"name": "minus", "lambda": 1.0},
            {
                "name": "rel",
                "lambda": [{"value": 1.0, "until_step": 200}, {"value": 0.0}],
                "resume_from": {"run": "minus", "step": 200},
            },
        ]
    )

    def frame(column, value):
        rows = [(r, 0, s, value) for r in ("base", "minus") for s in steps] + [("rel", 0, s, value) for s in steps[2:]]
        return pd.DataFrame(rows, columns=["run", "seed", "step", column])

    uas = frame("uas", 0.2).assign(treebank="ewt", offset_uas=0.3)
    blimp = frame("accuracy", 0.55).assign(variant="original", level="overall", name="overall", ci_low=0.5, ci_high=0.6)
    tables = {"runs": runs, "train": None, "loss": frame("val_mlm_loss", 6.0), "uas": uas, "blimp": blimp}
    curve = np.linspace(0.0, 0.3, len(steps))
    with_glue = {**tables, "glue": glue_table({"base": curve, "minus": curve / 2, "rel": curve[2:]}, steps)}
    none = phases.detect(runs, tables["loss"], uas, blimp).iloc[:0]
    for name in ("fig1_training", "fig2_regularizers", "fig3_release"):
        plain = figures_cli.draw(name, tables, none, figures_common.FigureOptions())
        drawn = figures_cli.draw(name, with_glue, none, figures_common.FigureOptions())
        assert len(drawn.axes) == len(plain.axes) * 4 // 3
        gids = {line.get_gid() for ax in drawn.axes for line in ax.lines}
        assert "curve:base:glue" in gids or "curve:rel:glue" in gids
        assert any("GLUE" in ax.get_title() for ax in drawn.axes)


# ------------------------------------------------------------------------------------ the workflow


def glue_config(folder, **glue_extra) -> dict:
    return {
        "runs": [],
        "series": [{"name": "tiny", "checkpoints": [f"{folder}/step-*"]}],
        "probe": {"treebank": "resources/ud/UD_English-EWT/en_ewt-ud-dev.conllu.gz", "max_sentences": 20},
        "blimp": {"data_dir": "resources/blimp", "pairs_per_paradigm": 1},
        "glue": {"tasks": ["cola"], "data": {"cola": {"blimp": {"data_dir": "resources/blimp"}}}, **TINY_OPTIONS}
        | glue_extra,
    }


def test_glue_config_errors_name_the_key():
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    config["glue"] = {
        "tasks": ["cola", "rte"],
        "runs": ["baseline", "nothing"],
        "steps": [0],
        "every_steps": 100,
        "data": {"rte": {"blimp": {"data_dir": "resources/blimp"}}, "cola": {"saved": "nowhere"}},
    }
    with pytest.raises(sasconfig.ConfigError) as err:
        sasconfig.validate(config, base_dir=REPO)
    message = str(err.value)
    assert "glue.runs[1]: no run or series named 'nothing'" in message
    assert "glue.steps: give steps or every_steps, not both" in message
    assert "glue.data.rte.blimp: BLiMP makes an acceptability task in CoLA's format (cola only)" in message
    assert "glue.data.cola.saved: path does not exist: nowhere" in message
    config["glue"] = {"tasks": ["cola", "ax"]}
    with pytest.raises(sasconfig.ConfigError, match=r"glue.tasks\[1\]: 'ax' is not one of"):
        sasconfig.validate(config, base_dir=REPO)


@pytest.mark.slow
def test_the_glue_rules_fine_tune_a_series_for_real(tmp_path, tiny_checkpoints):
    """The real Snakefile on the two tiny checkpoints and the BLiMP acceptability task: the GLUE
    table equals Matthews' correlation of the jobs' predictions; more tasks and fine-tuning seeds
    add their jobs only. (The default run has no glue job: tests/test_workflow.py's dry run.)"""
    workdir = link_workflow(tmp_path / "work")
    config = glue_config(tiny_checkpoints, max_train_samples=128, epochs=1)  # the plumbing, not the learning
    (workdir / "glue.yaml").write_text(yaml.safe_dump(config))
    target = "results/tables/glue.parquet"
    snakemake_ok(target, "--cores", "2", "--configfile", "glue.yaml", cwd=workdir)
    table = pd.read_parquet(workdir / target)
    assert table.columns.tolist() == glue_metrics.METRIC_COLUMNS
    cola = table[table["task"] == "cola"].set_index("step")
    for step in (0, 1000):
        predictions = pd.read_parquet(workdir / f"results/glue/tiny/seed0/cola/step-{step}.ft0.predictions.parquet")
        assert cola.at[step, "value"] == pytest.approx(matthews(predictions["label"], predictions["prediction"]))
    average = table[table["task"] == "glue"]
    assert set(average["metric"]) == {"partial_average"} and average["value"].tolist() == cola["value"].tolist()
    summary = pd.read_parquet(workdir / "results/tables/glue_summary.parquet")
    assert (summary["n_finetune_seeds"] == 1).all()
    # one job per chosen checkpoint x task x fine-tuning seed, and only those not yet run
    more = {"glue": {"tasks": ["cola", "rte"], "finetune_seeds": [0, 1, 2], "steps": [1000]}}
    (workdir / "more.yaml").write_text(yaml.safe_dump(more))
    plan = job_counts(snakemake_ok(target, "-n", "--cores", "2", "--configfile", "glue.yaml", "more.yaml", cwd=workdir))
    assert plan == {"glue": 1 * 2 * 3 - 1, "glue_data": 1, "glue_gather": 1, "glue_table": 1}, plan
