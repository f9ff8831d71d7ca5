"""Stage 4, pretrain: BERT MLM pretraining with the SAS regularizer, on HF Trainer.

What this module adds to the Trainer, and why:
- ``MaskedHeadBertForMaskedLM``: the prediction head runs on the masked positions only (the
  largest saving at small scale, SPEC.md performance notes); the loss is BertForMaskedLM's.
  The model is built with SDPA attention; a step with lambda != 0 asks for the attentions, which
  makes BERT fall back to eager attention for that step only.
- ``SASTrainer.compute_loss``: L = L_MLM + lambda(step) * R (``sasbert.regularizer``); R is not
  computed when lambda is 0. The MLM loss is normalised by the number of masked tokens of the whole
  optimizer step (all accumulation micro-batches and all DDP processes), so one process and N
  processes with the same global batch take the same step.
- A checkpoint schedule (``control.should_save`` at the scheduled steps), the held-out MLM loss at
  every checkpoint on fixed masks (a seeded collator, so the training RNG is untouched), a per-step
  table (step, MLM loss, regularizer, lambda, LR, grad norm, tokens/s), SIGTERM -> checkpoint and a
  clean exit, NaN/inf -> an error naming the step.

Layout of a run directory ``<run_dir>``:
- ``state/checkpoint-<step>/``: the Trainer's working checkpoints (model, tokenizer, optimizer,
  scheduler, RNG, trainer state). Resume reads these. They live outside the rule's declared
  outputs because Snakemake deletes declared outputs before it reruns a job.
- ``checkpoints/step-<step>/``: the published checkpoints, one per scheduled step (hard links to
  the state files: no extra space). ``AutoModelForMaskedLM.from_pretrained`` loads them; they also
  hold the resume state, which is what a release run SAS-(k) starts from.
- ``metrics/steps.parquet`` (every optimizer step), ``metrics/eval.parquet`` (every checkpoint).
"""

from __future__ import annotations

import csv
import json
import logging
import os
import re
import shutil
import signal
import time
from pathlib import Path

import pandas as pd
import torch
import torch.nn.functional as F
from transformers import (
    AutoTokenizer,
    BertConfig,
    BertForMaskedLM,
    Trainer,
    TrainerCallback,
    TrainingArguments,
    set_seed,
)

from sasbert.atomic import atomic_path, write_parquet, write_text
from sasbert.errors import InputError, TrainingDiverged, TrainingInterrupted
from sasbert.regularizer import arc_indices, combine_arcs, install_arc_taps, lambda_at

log = logging.getLogger(__name__)

STEP_COLUMNS = ["step", "mlm_loss", "sas", "lambda", "lr", "grad_norm", "tokens_per_s", "seconds"]
EVAL_MASK_SEED = 1234  # fixed masks of the validation slice, the same for every run and checkpoint


class MaskedHeadBertForMaskedLM(BertForMaskedLM):
    """BertForMaskedLM whose prediction head sees only the masked positions.

    ``forward`` returns the summed MLM loss, the number of masked tokens and, when asked, the SAS
    regularizer of the batch; the Trainer combines them. Weights and config are BertForMaskedLM's.
    """

    sas_options: dict = {}

    def forward(self, input_ids, attention_mask=None, labels=None, heads=None, compute_sas=False):
        if not compute_sas:
            out = self.bert(input_ids, attention_mask=attention_mask, return_dict=True)
            sas = None
        else:
            # output_attentions makes HF take the eager attention path, whose dropout the taps wrap;
            # they read the arc attentions as they pass (see regularizer.ArcTap).
            if self.training and self.bert.is_gradient_checkpointing:
                # recomputed layers would run without the taps (the regularizer silently does
                # nothing, or the recomputation fails): refuse rather than train unregularized
                raise ValueError("the SAS regularizer does not work with gradient checkpointing")
            options = dict(self.sas_options)
            arcs = arc_indices(heads)
            taps = install_arc_taps(self.bert)
            for tap in taps:
                tap.arcs, tap.direction = arcs, options.get("direction", "both")
            try:
                out = self.bert(input_ids, attention_mask=attention_mask, output_attentions=True, return_dict=True)
                sas = combine_arcs([tap.values for tap in taps], len(arcs[0]), **options)
            finally:
                for tap in taps:
                    tap.arcs = tap.values = None
        masked = labels != -100
        logits = self.cls(out.last_hidden_state[masked])
        mlm_sum = F.cross_entropy(logits.float(), labels[masked], reduction="sum")
        return {"mlm_sum": mlm_sum, "n_masked": masked.sum(), "sas": sas}

    def save_pretrained(self, save_directory, *args, **kwargs):
        super().save_pretrained(save_directory, *args, **kwargs)
        # The weights are plain BertForMaskedLM's: say so, so that every tool loads them as such.
        config_path = Path(save_directory) / "config.json"
        if config_path.is_file():
            saved = json.loads(config_path.read_text())
            saved["architectures"] = ["BertForMaskedLM"]
            config_path.write_text(json.dumps(saved, indent=2, sort_keys=True) + "\n")


class BlockCollator:
    """MLM masking (BERT's: ``mlm_probability`` of the non-special pieces; of those 80% [MASK],
    10% a random piece, 10% unchanged) with the blocks' ``heads`` passed through.

    Each block's mask is drawn from its own generator seeded by (seed, epoch, block index), so it
    is new every epoch (dynamic masking, as HF run_mlm) yet independent of the process that draws
    it and of the global RNG: a run resumed from a checkpoint and a run split over N DDP processes
    mask exactly as one uninterrupted process does.
    """

    def __init__(self, tokenizer, mlm_probability: float, seed: int):
        self.mlm_probability = mlm_probability
        self.seed = seed
        self.epoch = 0
        self.mask_id = tokenizer.mask_token_id
        self.vocab_size = len(tokenizer)
        self.special_ids = torch.tensor(sorted(tokenizer.all_special_ids))

    def block_generator(self, block: int) -> torch.Generator:
        return torch.Generator().manual_seed(((self.seed * 1_000_003 + self.epoch) * 1_000_000_007 + block) % 2**63)

    def mask_block(self, input_ids: torch.Tensor, block: int) -> tuple[torch.Tensor, torch.Tensor]:
        generator = self.block_generator(block)
        draws = torch.rand(3, len(input_ids), generator=generator)
        random_pieces = torch.randint(self.vocab_size, (len(input_ids),), generator=generator)
        selected = (draws[0] < self.mlm_probability) & ~torch.isin(input_ids, self.special_ids)
        labels = torch.where(selected, input_ids, -100)
        masked = input_ids.clone()
        to_mask = selected & (draws[1] < 0.8)
        to_random = selected & ~to_mask & (draws[2] < 0.5)
        masked[to_mask] = self.mask_id
        masked[to_random] = random_pieces[to_random]
        return masked, labels

    def __call__(self, examples):
        inputs, labels = zip(*(self.mask_block(torch.tensor(ex["input_ids"]), ex["block"]) for ex in examples))
        return {
            "input_ids": torch.stack(inputs),
            "attention_mask": torch.tensor([ex["attention_mask"] for ex in examples]),
            "labels": torch.stack(labels),
            "heads": torch.tensor([ex["heads"] for ex in examples], dtype=torch.long),
        }


class EpochCallback(TrainerCallback):
    """Tell the collator which epoch its blocks belong to (the masks change every epoch)."""

    def __init__(self, collator: BlockCollator):
        self.collator = collator

    def on_epoch_begin(self, args, state, control, **kwargs):
        self.collator.epoch = int(state.epoch or 0)


def build_model(model_kwargs: dict, vocab_size: int, seed: int, max_position: int) -> MaskedHeadBertForMaskedLM:
    set_seed(seed)
    config = BertConfig(vocab_size=vocab_size, max_position_embeddings=max_position, **model_kwargs)
    return MaskedHeadBertForMaskedLM._from_config(config, attn_implementation="sdpa")


class StepRecorder:
    """The per-step table, appended to a CSV as training goes (so a killed run keeps it)."""

    def __init__(self, path: Path):
        self.path = path

    def truncate_after(self, step: int) -> None:
        """Drop rows a killed process wrote after its last checkpoint: the resumed run redoes them."""
        if not self.path.exists():
            return
        rows = self.rows()
        with atomic_path(self.path) as tmp:
            with open(tmp, "w", newline="") as handle:
                writer = csv.DictWriter(handle, STEP_COLUMNS)
                writer.writeheader()
                writer.writerows(r for r in rows if int(r["step"]) <= step)

    def append(self, row: dict) -> None:
        new = not self.path.exists()
        with open(self.path, "a", newline="") as handle:
            writer = csv.DictWriter(handle, STEP_COLUMNS)
            if new:
                writer.writeheader()
            writer.writerow(row)

    def rows(self) -> list[dict]:
        with open(self.path, newline="") as handle:
            return list(csv.DictReader(handle))


class SASTrainer(Trainer):
    def __init__(self, *args, lambda_schedule, tokens_per_step: int, recorder: StepRecorder | None, **kwargs):
        super().__init__(*args, **kwargs)
        # Our compute_loss normalises by num_items_in_batch itself (all micro-batches, all devices).
        self.model_accepts_loss_kwargs = True
        self.lambda_schedule = lambda_schedule
        self.tokens_per_step = tokens_per_step
        self.recorder = recorder
        self._reset_step_sums()
        self._step_started = time.perf_counter()

    def _reset_step_sums(self):
        self._mlm_sum = 0.0
        self._n_masked = 0
        self._sas_sum = 0.0
        self._micro_batches = 0
        self._lr = None

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        step = self.state.global_step + 1  # the optimizer step this micro-batch belongs to
        lam = lambda_at(self.lambda_schedule, step - 1)
        outputs = model(**inputs, compute_sas=lam != 0)
        n_items = num_items_in_batch if num_items_in_batch is not None else outputs["n_masked"]
        # DDP averages gradients over processes; scale back so the step sees the global token mean.
        loss = outputs["mlm_sum"] / n_items * self.accelerator.num_processes
        if lam != 0:
            loss = loss + lam * outputs["sas"] / self.current_gradient_accumulation_steps
            self._sas_sum += outputs["sas"].item()
        if not torch.isfinite(loss):
            raise TrainingDiverged(
                f"loss is {loss.item()} at step {step} (lambda {lam}); the last good checkpoint is kept "
                f"in {self.args.output_dir}"
            )
        self._mlm_sum += outputs["mlm_sum"].item()
        self._n_masked += int(outputs["n_masked"])
        self._micro_batches += 1
        self._lr = self.optimizer.param_groups[0]["lr"]  # the rate this step is taken with
        return (loss, outputs) if return_outputs else loss

    def _maybe_log_save_evaluate(self, tr_loss, grad_norm, *args, **kwargs):
        # Called once per optimizer step, after it: record the step's row before any saving.
        if self.recorder is not None and self._micro_batches:
            now = time.perf_counter()
            step = self.state.global_step
            lam = lambda_at(self.lambda_schedule, step - 1)
            seconds = now - self._step_started
            self.recorder.append(
                {
                    "step": step,
                    "mlm_loss": self._mlm_sum / max(self._n_masked, 1),
                    "sas": self._sas_sum / self._micro_batches if lam != 0 else "",
                    "lambda": lam,
                    "lr": self._lr,
                    "grad_norm": float(grad_norm) if grad_norm is not None else "",
                    "tokens_per_s": self.tokens_per_step / seconds,
                    "seconds": seconds,
                }
            )
        self._reset_step_sums()
        super()._maybe_log_save_evaluate(tr_loss, grad_norm, *args, **kwargs)
        self._step_started = time.perf_counter()

    def _load_optimizer_and_scheduler(self, checkpoint):
        # Under DDP the Trainer maps the optimizer state to args.device, which on CPU is "cpu:0",
        # a location torch.load cannot restore to; load it onto the CPU like one process does.
        if checkpoint is None or self.args.world_size == 1 or self.args.device.type != "cpu":
            return super()._load_optimizer_and_scheduler(checkpoint)
        self.optimizer.load_state_dict(
            torch.load(Path(checkpoint) / "optimizer.pt", map_location="cpu", weights_only=True)
        )
        self.lr_scheduler.load_state_dict(torch.load(Path(checkpoint) / "scheduler.pt", weights_only=True))

    def create_scheduler(self, num_training_steps: int, optimizer=None):
        # Linear warmup, then linear decay to zero at the horizon (which may lie past max_steps).
        horizon = getattr(self, "decay_horizon", None) or num_training_steps
        return super().create_scheduler(horizon, optimizer)


class ScheduleCallback(TrainerCallback):
    """Save at the scheduled steps; save and stop on SIGTERM; evaluate every saved checkpoint."""

    def __init__(self, steps: list[int], evaluate):
        self.steps = set(steps)
        self.evaluate = evaluate
        self.terminated = False

    def on_step_end(self, args, state, control, **kwargs):
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            # SIGTERM reaches the processes at slightly different times: all stop at the same step.
            flag = torch.tensor([int(self.terminated)], device=args.device)
            torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
            self.terminated = bool(flag.item())
        if state.global_step in self.steps or self.terminated:
            control.should_save = True
        if self.terminated:
            control.should_training_stop = True
        return control

    def on_save(self, args, state, control, model=None, **kwargs):
        if state.is_world_process_zero:
            self.evaluate(model, state.global_step)
        return control


def checkpoint_step(path: Path) -> int:
    match = re.search(r"(\d+)$", path.name)
    if not match:
        raise InputError(f"{path}: cannot read a step from the checkpoint's name")
    return int(match.group(1))


def is_complete(checkpoint: Path) -> bool:
    """Written to the end: the Trainer writes trainer_state.json after the model, optimizer,
    scheduler and RNG state, and we write eval.json (atomically) after that."""
    try:
        json.loads((checkpoint / "trainer_state.json").read_text())
    except (OSError, ValueError):
        return False
    return (checkpoint / "eval.json").is_file()


def last_checkpoint(state_dir: Path) -> Path | None:
    """The latest complete checkpoint; one a kill interrupted mid-write is ignored (and redone)."""
    done = [p for p in state_dir.glob("checkpoint-*") if is_complete(p)]
    return max(done, key=checkpoint_step, default=None)


def link_tree(src: Path, dst: Path) -> None:
    """Copy a checkpoint folder as hard links where the filesystem allows, copies elsewhere."""
    dst.mkdir(parents=True, exist_ok=True)
    for item in src.iterdir():
        if item.is_dir():
            shutil.copytree(item, dst / item.name)
            continue
        try:
            os.link(item, dst / item.name)
        except OSError:
            shutil.copy2(item, dst / item.name)


# Spec keys that do not change the weights: a rerun with other values may resume the old state.
RUNTIME_KEYS = ("threads", "logging_steps")


def discard_stale_state(state_dir: Path, spec: dict, resume_from: str | None) -> None:
    """Resume state belongs to one specification: when the run is redefined (another lambda,
    schedule, model...), its old checkpoints must not be resumed from, so they are removed."""
    identity = {k: v for k, v in spec.items() if k not in RUNTIME_KEYS}
    identity["resume_from"] = resume_from
    text = json.dumps(identity, sort_keys=True, indent=1) + "\n"
    spec_file = state_dir / "spec.json"
    if spec_file.is_file() and spec_file.read_text() != text:
        log.warning("%s: the run's specification changed; starting again from scratch", state_dir)
        shutil.rmtree(state_dir)
        steps_csv = state_dir.parent / "metrics" / "steps.csv"
        steps_csv.unlink(missing_ok=True)
    state_dir.mkdir(parents=True, exist_ok=True)
    if not spec_file.is_file():
        write_text(text, spec_file)


def held_out_loss(model, dataset, tokenizer, mlm_probability: float, batch_size: int) -> float:
    """Mean MLM loss over the validation blocks with fixed masks (its own seeded generator)."""
    if len(dataset) == 0:
        return float("nan")
    collator = BlockCollator(tokenizer, mlm_probability, seed=EVAL_MASK_SEED)  # epoch 0 always
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    device = next(model.parameters()).device
    with torch.inference_mode():
        for start in range(0, len(dataset), batch_size):
            batch = collator([dataset[i] for i in range(start, min(start + batch_size, len(dataset)))])
            out = model(**{k: v.to(device) for k, v in batch.items()})
            total += out["mlm_sum"].item()
            count += int(out["n_masked"])
    model.train(was_training)
    return total / max(count, 1)


def train(
    dataset_dir: str,
    tokenizer_dir: str,
    run_dir: str,
    spec: dict,
    resume_from: str | None = None,
) -> None:
    """Train one run x seed to ``spec['max_steps']``, resuming from ``run_dir/state`` when possible.

    ``spec`` keys: model (BertConfig kwargs), seed, lambda (schedule), regularizer (type, direction,
    reduction), checkpoint_steps, and the train section of the config (max_steps, batch_size, ...).
    """
    from datasets import load_from_disk

    run_dir = Path(run_dir)
    state_dir = run_dir / "state"
    discard_stale_state(state_dir, spec, resume_from)
    torch.set_num_threads(spec.get("threads", 1))

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    data = load_from_disk(dataset_dir)
    columns = ["input_ids", "attention_mask", "heads"]
    # ``block`` (the index) seeds each block's mask; the model never sees it.
    train_data = data["train"].select_columns(columns).add_column("block", list(range(len(data["train"]))))
    val_data = data["validation"].select_columns(columns).add_column("block", list(range(len(data["validation"]))))
    seq_len = len(train_data[0]["input_ids"])
    max_position = max(seq_len, spec.get("max_position_embeddings", 512))
    tokenizer.model_max_length = max_position

    world = int(os.environ.get("WORLD_SIZE", "1"))
    accumulation = spec["grad_accumulation"]
    per_device, remainder = divmod(spec["batch_size"], world * accumulation)
    if remainder or per_device == 0:
        raise InputError(
            f"train.batch_size: {spec['batch_size']} sequences cannot be split over {world} process(es) "
            f"x {accumulation} accumulation steps"
        )

    model = build_model(spec["model"], tokenizer.vocab_size, spec["seed"], max_position)
    model.sas_options = spec["regularizer"]
    steps = sorted(s for s in spec["checkpoint_steps"] if s <= spec["max_steps"])

    args = TrainingArguments(
        output_dir=str(state_dir),
        max_steps=spec["max_steps"],
        per_device_train_batch_size=per_device,
        gradient_accumulation_steps=accumulation,
        learning_rate=spec["lr"],
        weight_decay=spec["weight_decay"],
        adam_beta1=0.9,
        adam_beta2=0.999,
        adam_epsilon=1e-6,
        max_grad_norm=1.0,
        remove_unused_columns=False,  # the collator needs ``block``
        lr_scheduler_type="linear",
        warmup_steps=spec["warmup_steps"],
        seed=spec["seed"],
        data_seed=spec["seed"],
        fp16=spec["precision"] == "fp16",
        bf16=spec["precision"] == "bf16",
        save_strategy="no",  # ScheduleCallback decides
        save_only_model=False,
        logging_strategy="steps",
        logging_steps=spec["logging_steps"],
        report_to=[],
        disable_tqdm=False,
        dataloader_num_workers=0,
        ddp_backend="gloo" if not torch.cuda.is_available() and world > 1 else None,
        use_cpu=not torch.cuda.is_available(),
        ddp_find_unused_parameters=False,
    )
    is_main = args.process_index == 0
    recorder = StepRecorder(run_dir / "metrics" / "steps.csv") if is_main else None
    (run_dir / "metrics").mkdir(parents=True, exist_ok=True)

    def evaluate(model_to_eval, step: int) -> None:
        loss = held_out_loss(model_to_eval, val_data, tokenizer, spec["mlm_probability"], per_device)
        checkpoint = state_dir / f"checkpoint-{step}"
        checkpoint.mkdir(parents=True, exist_ok=True)
        write_text(json.dumps({"step": step, "val_mlm_loss": loss}) + "\n", checkpoint / "eval.json")
        log.info("step %d: held-out MLM loss %.4f", step, loss)

    schedule = ScheduleCallback(steps, evaluate)
    collator = BlockCollator(tokenizer, spec["mlm_probability"], seed=spec["seed"])
    trainer = SASTrainer(
        model=model,
        args=args,
        train_dataset=train_data,
        data_collator=collator,
        processing_class=tokenizer,
        callbacks=[schedule, EpochCallback(collator)],
        lambda_schedule=spec["lambda"],
        tokens_per_step=spec["batch_size"] * seq_len,
        recorder=recorder,
    )
    trainer.decay_horizon = spec.get("decay_horizon")

    resume = last_checkpoint(state_dir)
    if resume is None and resume_from is not None:
        # A release run starts from another run's checkpoint, with its optimizer, scheduler and RNG.
        start = Path(resume_from)
        if not (start / "trainer_state.json").is_file():
            raise InputError(f"{start}: not a resumable checkpoint (no trainer_state.json)")
        if is_main:
            with atomic_path(state_dir / f"checkpoint-{checkpoint_step(start)}", is_dir=True) as tmp:
                link_tree(start, tmp)
        trainer.accelerator.wait_for_everyone()
        resume = state_dir / f"checkpoint-{checkpoint_step(start)}"
    if resume is None and 0 in steps:
        # Step 0 (the random initialisation) is a checkpoint too: nothing to resume from it.
        trainer.save_model(str(state_dir / "checkpoint-0"))
        if is_main:
            evaluate(model, 0)
    if recorder is not None:
        recorder.truncate_after(checkpoint_step(resume) if resume else 0)

    previous_handler = signal.signal(signal.SIGTERM, lambda *_: setattr(schedule, "terminated", True))
    try:
        log.info("training %s from %s", run_dir, resume or "scratch")
        trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    finally:
        signal.signal(signal.SIGTERM, previous_handler)
    if schedule.terminated:
        raise TrainingInterrupted(
            f"SIGTERM at step {trainer.state.global_step}: checkpoint saved in {state_dir}; rerun to resume"
        )
    if is_main:
        publish(run_dir, steps, first_step=checkpoint_step(Path(resume_from)) if resume_from else 0)


def publish(run_dir: Path, steps: list[int], first_step: int = 0) -> None:
    """Publish the scheduled checkpoints (from ``first_step`` on) and the metric tables.

    ``checkpoints/`` appears at once, complete, so Snakemake never sees a partial one.
    """
    state_dir = run_dir / "state"
    published = [s for s in steps if s >= first_step]
    with atomic_path(run_dir / "checkpoints", is_dir=True) as tmp:
        for step in published:
            source = state_dir / f"checkpoint-{step}"
            if not source.is_dir():
                raise InputError(f"{source}: scheduled checkpoint missing; delete {state_dir} and rerun")
            link_tree(source, tmp / f"step-{step}")
    metrics = run_dir / "metrics"
    steps_csv = metrics / "steps.csv"
    steps_table = pd.read_csv(steps_csv) if steps_csv.exists() else pd.DataFrame(columns=STEP_COLUMNS)
    write_parquet(steps_table, metrics / "steps.parquet")
    evals = [json.loads((state_dir / f"checkpoint-{s}" / "eval.json").read_text()) for s in published]
    write_parquet(pd.DataFrame(evals, columns=["step", "val_mlm_loss"]), metrics / "eval.parquet")


def add_arguments(parser) -> None:
    parser.add_argument("--dataset", required=True, help="tokenized dataset folder (tokenize stage)")
    parser.add_argument("--tokenizer", required=True, help="tokenizer folder (tokenize stage)")
    parser.add_argument("--run-dir", required=True, help="output folder of this run x seed")
    spec = parser.add_mutually_exclusive_group(required=True)
    spec.add_argument("--spec", help="run specification as JSON (what the Snakemake rule passes)")
    spec.add_argument("--spec-file", help="run specification as a JSON file")
    parser.add_argument("--resume-from", default=None, help="another run's checkpoint to start from (release runs)")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads (intra-op)")


def run(args) -> None:
    spec = json.loads(args.spec) if args.spec else json.loads(Path(args.spec_file).read_text())
    spec.setdefault("threads", args.threads)
    train(args.dataset, args.tokenizer, args.run_dir, spec, resume_from=args.resume_from)
