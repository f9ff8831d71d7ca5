"""The Trainer of pretraining: the regularized loss, the per-step table, the checkpoint schedule.

``SASTrainer.compute_loss``: L = L_MLM + lambda(step) * R (``sasbert.train.regularizer``); R is not
computed when lambda is 0. Both terms are normalised over the whole optimizer step (all
accumulation micro-batches and all DDP processes): the MLM loss per masked token, R per labelled
arc (``reduction: mean``) or summed and scaled to ``reference_sequences`` sequences
(``reduction: sum``, the authors' strength: their sum over 64 sequences per device, gradients
averaged over devices). So lambda means the same on 1 or 8 processes and with any accumulation.

A checkpoint schedule (``control.should_save`` at the scheduled steps), the held-out
MLM loss at every checkpoint on fixed masks, a per-step table (step, MLM loss, regularizer,
lambda, LR, grad norm, tokens/s), SIGTERM -> checkpoint and a clean exit, NaN/inf -> an error
naming the step.
"""

from __future__ import annotations

import csv
import logging
import os
import time
from pathlib import Path

import torch
from transformers import (
    Trainer,
    TrainerCallback,
    TrainingArguments,
)

from sasbert.atomic import atomic_path
from sasbert.errors import InputError, TrainingDiverged
from sasbert.progress import LOG_INTERVAL_S, is_terminal
from sasbert.schedules import decay_horizon, lambda_at
from sasbert.train.data_order import StepBatchSampler
from sasbert.train.regularizer import sas_weight

log = logging.getLogger(__name__)


STEP_COLUMNS = ["step", "mlm_loss", "sas", "lambda", "lr", "grad_norm", "tokens_per_s", "seconds"]


class StepRecorder:
    """The per-step table, appended to a CSV as training goes (so a killed run keeps it).

    A step is recorded once: a stretch trained again (a denser schedule) reproduces its rows
    bit for bit, so they are not written twice.
    """

    def __init__(self, path: Path):
        self.path = path
        self.recorded: set[int] = set()

    def keep_until(self, step: int) -> None:
        """Keep the complete rows up to ``step`` (the furthest saved state) and drop the rest: a
        killed process may have written rows past its last checkpoint, or half a row."""
        rows = [r for r in self.rows() if int(r["step"]) <= step]
        with atomic_path(self.path) as tmp:
            with open(tmp, "w", newline="") as handle:
                writer = csv.DictWriter(handle, STEP_COLUMNS)
                writer.writeheader()
                writer.writerows(rows)
        self.recorded = {int(r["step"]) for r in rows}

    def append(self, row: dict) -> None:
        if row["step"] in self.recorded:
            return
        new = not self.path.exists()
        with open(self.path, "a", newline="") as handle:
            writer = csv.DictWriter(handle, STEP_COLUMNS)
            if new:
                writer.writeheader()
            writer.writerow(row)
        self.recorded.add(row["step"])

    def rows(self) -> list[dict]:
        """The complete rows (a row cut off by a kill has empty or unreadable fields)."""
        if not self.path.exists():
            return []
        with open(self.path, newline="") as handle:
            rows = list(csv.DictReader(handle))
        good = []
        for row in rows:
            try:
                int(row["step"]), float(row["mlm_loss"]), float(row["seconds"])
            except (TypeError, ValueError, KeyError):
                continue
            if None not in row.values() and None not in row:
                good.append(row)
        return good


class SASTrainer(Trainer):
    def __init__(self, *args, spec: dict, recorder: StepRecorder | None, **kwargs):
        super().__init__(*args, **kwargs)
        # Our compute_loss normalises by num_items_in_batch itself (all micro-batches, all devices).
        self.model_accepts_loss_kwargs = True
        self.spec = spec
        self.lambda_schedule = spec["lambda"]
        self.tokens_per_step = spec["batch_size"] * len(self.train_dataset.blocks[0]["input_ids"])
        self.recorder = recorder
        self._step_arcs = 0
        self._reset_step_sums()
        self._step_started = time.perf_counter()

    def _reset_step_sums(self):
        self._mlm_sum = 0.0
        self._n_masked = 0
        self._sas_sum = 0.0
        self._local_arcs = 0
        self._local_sequences = 0
        self._micro_batches = 0
        self._lr = None

    def get_train_dataloader(self):
        global_batch = self.spec["batch_size"]
        sampler = StepBatchSampler(
            global_batch,
            self.args.per_device_train_batch_size,
            steps_per_pass=max(1, len(self.train_dataset) // global_batch),
            start_step=lambda: self.state.global_step,
        )
        # Its own generator: creating a loader iterator draws a seed, which must not come from the
        # global RNG (the dropout RNG a resumed run restores before it starts iterating).
        loader = torch.utils.data.DataLoader(
            self.train_dataset, batch_sampler=sampler, collate_fn=self.data_collator, generator=torch.Generator()
        )
        return self.accelerator.prepare(loader)

    def get_batch_samples(self, epoch_iterator, num_batches, device):
        batch_samples, num_items = super().get_batch_samples(epoch_iterator, num_batches, device)
        if lambda_at(self.lambda_schedule, self.state.global_step) != 0:
            # R is normalised over the whole step, like the MLM loss: count its arcs everywhere
            arcs = torch.tensor(sum(int((b["heads"] >= 0).sum()) for b in batch_samples), device=device)
            if self.accelerator.num_processes > 1:
                arcs = self.accelerator.reduce(arcs, reduction="sum")
            self._step_arcs = int(arcs)
        return batch_samples, num_items

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        step = self.state.global_step + 1  # the optimizer step this micro-batch belongs to
        lam = lambda_at(self.lambda_schedule, step - 1)
        outputs = model(**inputs, compute_sas=lam != 0)
        n_items = num_items_in_batch if num_items_in_batch is not None else outputs["n_masked"]
        # DDP averages gradients over processes; scale back so the step sees the global token mean.
        world = self.accelerator.num_processes
        loss = outputs["mlm_sum"] / n_items * world
        if lam != 0:
            weight = sas_weight(self.spec["regularizer"], n_arcs=self._step_arcs, n_sequences=self.spec["batch_size"])
            loss = loss + lam * weight * world * outputs["sas"]
            self._sas_sum += outputs["sas"].item()
            self._local_arcs += int((inputs["heads"] >= 0).sum())
            self._local_sequences += len(inputs["heads"])
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
            # R as the step's loss weighs it, from this process's share of the step
            sas = self._sas_sum * sas_weight(self.spec["regularizer"], self._local_arcs, self._local_sequences)
            self.recorder.append(
                {
                    "step": step,
                    "mlm_loss": self._mlm_sum / max(self._n_masked, 1),
                    "sas": sas if lam != 0 else "",
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

    def create_scheduler(self, num_training_steps: int, optimizer=None):
        # Linear warmup, then linear decay to zero at the run's horizon (which may lie past
        # max_steps), never at the end of this segment of training.
        return super().create_scheduler(decay_horizon(self.spec), optimizer)


class ProgressLog(TrainerCallback):
    """Off a terminal (a job's log), one plain progress line every ``LOG_INTERVAL_S`` seconds and
    at the end: step, share done, time a step and ETA (tqdm's bar would be one line of thousands
    of carriage returns)."""

    def __init__(self, interval_s: float = LOG_INTERVAL_S):
        self.interval_s = interval_s

    def on_train_begin(self, args, state, control, **kwargs):
        self.start_time = self.last_time = time.monotonic()
        self.start_step = state.global_step

    def on_step_end(self, args, state, control, **kwargs):
        now = time.monotonic()
        if now - self.last_time < self.interval_s and state.global_step < state.max_steps:
            return
        self.last_time = now
        done = state.global_step - self.start_step
        per_step = (now - self.start_time) / max(done, 1)
        eta = per_step * (state.max_steps - state.global_step)
        log.info(
            "step %d/%d (%.0f%%), %.3f s a step, ETA %d min %02d s",
            state.global_step,
            state.max_steps,
            100 * state.global_step / state.max_steps,
            per_step,
            eta // 60,
            eta % 60,
        )


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


def training_arguments(spec: dict, state_dir: Path, per_device: int, last_step: int) -> TrainingArguments:
    """HF TrainingArguments of one stretch of training (run_mlm's names, our schedule and data)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    return TrainingArguments(
        output_dir=str(state_dir),
        max_steps=last_step,
        per_device_train_batch_size=per_device,
        gradient_accumulation_steps=spec["grad_accumulation"],
        learning_rate=spec["lr"],
        weight_decay=spec["weight_decay"],
        adam_beta1=spec["adam_beta1"],
        adam_beta2=spec["adam_beta2"],
        adam_epsilon=spec["adam_epsilon"],
        max_grad_norm=spec["max_grad_norm"] or 0.0,  # 0: no clipping
        remove_unused_columns=False,  # the collator needs ``block`` and ``epoch``
        lr_scheduler_type="linear",
        warmup_steps=spec["warmup_steps"],
        seed=spec["seed"],
        data_seed=spec["seed"],
        ignore_data_skip=True,  # StepBatchSampler starts at the resumed step itself
        fp16=spec["precision"] == "fp16",
        bf16=spec["precision"] == "bf16",
        save_strategy="no",  # ScheduleCallback decides
        save_only_model=False,
        logging_strategy="steps",
        logging_steps=spec["logging_steps"],
        report_to=[],
        disable_tqdm=not is_terminal(),  # off a terminal ProgressLog writes plain lines instead
        dataloader_num_workers=0,
        ddp_backend="gloo" if not torch.cuda.is_available() and world > 1 else None,
        use_cpu=not torch.cuda.is_available(),
        ddp_find_unused_parameters=False,
    )


def per_device_batch(spec: dict) -> int:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    accumulation = spec["grad_accumulation"]
    per_device, remainder = divmod(spec["batch_size"], world * accumulation)
    if remainder or per_device == 0:
        raise InputError(
            f"train.batch_size: {spec['batch_size']} sequences cannot be split over {world} process(es) "
            f"x {accumulation} accumulation steps"
        )
    return per_device
