"""Fine-tuning one checkpoint on one task with one seed (HF Trainer, run_glue's conventions) and predicting its validation splits."""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np
import pandas as pd

from sasbert.errors import InputError
from sasbert.measure.glue.metrics import score
from sasbert.measure.glue.options import FinetuneOptions
from sasbert.measure.glue.tasks import task_of

log = logging.getLogger(__name__)


def warmup_steps(options: FinetuneOptions, n_train: int) -> float:
    """The ``warmup_ratio`` option as TrainingArguments' ``warmup_steps``: transformers 5 dropped
    warmup_ratio and reads a float in [0, 1) as the ratio, but 1 as one step; a ratio of 1 is
    every step of the run (one process, no accumulation: the Trainer's count of steps)."""
    ratio = options.warmup_ratio
    if ratio < 1:
        return ratio
    return math.ceil(options.epochs * max(math.ceil(n_train / options.batch_size), 1))


def load_classifier(path: str | Path, num_labels: int):
    """(model, tokenizer) from a checkpoint folder: its encoder with a new classification (or, for
    one label, regression) head, as run_glue's AutoModelForSequenceClassification makes it. A
    masked LM's checkpoint has no pooler (MLM-only pretraining): BERT's is initialised anew too."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from sasbert.measure.checkpoints import check_checkpoint_dir

    path = check_checkpoint_dir(path)
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True, use_fast=True)
    except Exception as err:  # noqa: BLE001 - transformers raises many kinds
        raise InputError(f"{path}: cannot load the tokenizer ({type(err).__name__}: {err})") from None
    if tokenizer.pad_token is None:  # causal LMs (GPT-2): pad with the end-of-text token
        tokenizer.pad_token = tokenizer.eos_token
    try:
        model = AutoModelForSequenceClassification.from_pretrained(
            path,
            num_labels=num_labels,
            problem_type="regression" if num_labels == 1 else "single_label_classification",
            local_files_only=True,
        )
    except Exception as err:  # noqa: BLE001
        raise InputError(f"{path}: cannot load it as a sequence classifier ({type(err).__name__}: {err})") from None
    model.config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer


def finetune(
    checkpoint: str | Path,
    dataset,
    task: str,
    options: FinetuneOptions,
    finetune_seed: int,
    device: str = "auto",
    work_dir: str | Path | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Fine-tune ``checkpoint`` on ``dataset`` (a prepared task) and score it on the task's
    validation splits: (metric rows, prediction rows), without run, seed and step."""
    import tempfile

    import datasets
    from transformers import DataCollatorWithPadding, Trainer, TrainingArguments, set_seed

    from sasbert.measure.checkpoints import resolve_device

    datasets.disable_progress_bars()  # job logs hold plain lines, not redrawn bars
    spec = task_of(task)
    torch_device = resolve_device(device)
    if options.precision != "fp32" and torch_device.type != "cuda":
        raise InputError(f"glue.precision: {options.precision} needs a GPU (this job runs on {torch_device})")
    set_seed(finetune_seed)  # before the head is made: its initialisation is part of the seed
    model, tokenizer = load_classifier(checkpoint, spec.num_labels)
    # a model with fewer positions than max_length reads no further than it can
    positions = getattr(model.config, "max_position_embeddings", None) or options.max_length
    max_length = min(options.max_length, positions)
    if max_length < options.max_length:
        log.warning(
            "%s has %d positions: examples are cut at %d pieces, not %d",
            checkpoint,
            positions,
            max_length,
            options.max_length,
        )

    def encode(batch):
        texts = [batch[c] for c in spec.columns]
        return tokenizer(*texts, truncation=True, max_length=max_length)

    def prepare(split: str, limit):
        part = dataset[split]
        if limit is not None:
            part = part.select(range(min(limit, len(part))))
        return part.map(encode, batched=True, remove_columns=[*spec.columns, "idx"]).rename_column("label", "labels")

    train = prepare("train", options.max_train_samples)
    evaluation = {split: prepare(split, options.max_eval_samples) for split in spec.eval_splits}
    with tempfile.TemporaryDirectory(dir=work_dir) as scratch:
        arguments = TrainingArguments(
            output_dir=scratch,
            learning_rate=options.learning_rate,
            per_device_train_batch_size=options.batch_size,
            per_device_eval_batch_size=options.eval_batch_size,
            num_train_epochs=options.epochs,
            weight_decay=options.weight_decay,
            warmup_steps=warmup_steps(options, len(train)),
            lr_scheduler_type="linear",
            seed=finetune_seed,
            bf16=options.precision == "bf16",
            fp16=options.precision == "fp16",
            use_cpu=torch_device.type == "cpu",
            eval_strategy="no",
            save_strategy="no",
            logging_strategy="steps",
            logging_steps=options.logging_steps,
            report_to=[],
            disable_tqdm=True,
            dataloader_num_workers=0,
        )
        trainer = Trainer(
            model=model,
            args=arguments,
            train_dataset=train,
            data_collator=DataCollatorWithPadding(tokenizer),
        )
        result = trainer.train()
        log.info("%s: trained %d steps, mean training loss %.4f", task, result.global_step, result.training_loss)
        metrics, predictions = [], []
        for split, part in evaluation.items():
            output = trainer.predict(part)
            logits = np.asarray(output.predictions)
            predicted = logits[:, 0] if spec.num_labels == 1 else logits.argmax(axis=-1)
            labels = np.asarray(part["labels"])
            rows = score(task, split, labels, predicted, options.bootstrap_samples)
            for row in rows:
                log.info(
                    "%s %s: %s %.4f [%.4f, %.4f] (%d examples)",
                    task,
                    split,
                    row["metric"],
                    row["value"],
                    row["ci_low"],
                    row["ci_high"],
                    row["n_examples"],
                )
            metrics += rows
            predictions.append(
                pd.DataFrame(
                    {
                        "task": task,
                        "split": split,
                        "idx": np.asarray(dataset[split]["idx"][: len(labels)], dtype=np.int64),
                        "label": labels.astype(float),
                        "prediction": predicted.astype(float),
                    }
                )
            )
    metric_table = pd.DataFrame(metrics).assign(finetune_seed=finetune_seed)
    prediction_table = pd.concat(predictions, ignore_index=True).assign(finetune_seed=finetune_seed)
    return metric_table, prediction_table
