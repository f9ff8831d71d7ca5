"""Stage 4, pretrain: BERT MLM pretraining with the SAS regularizer, on HF Trainer.

What this module adds to the Trainer, and why:
- ``MaskedHeadBertForMaskedLM``: the prediction head runs on the masked positions only (the
  largest saving at small scale: docs/method.md, "Performance notes"); the loss is
  BertForMaskedLM's.
  The model is built with SDPA attention; a step with lambda != 0 asks for the attentions, which
  makes BERT fall back to eager attention for that step only.
- The data order is a function of the step alone (``BlockOrder``): the blocks in a fresh seeded
  permutation every epoch, the epochs concatenated into one stream, step s (0-based) training on
  stream positions [s * batch, (s + 1) * batch). Each block's mask is seeded by (seed, epoch,
  block). So a run resumed at any step, inside an epoch or across epoch boundaries, split over N
  DDP processes or accumulation micro-batches, or released from another run's checkpoint, draws
  exactly the blocks and masks of one uninterrupted process. The Trainer's own data skipping is
  off (``ignore_data_skip``): the sampler starts at the resumed step by construction.
- ``SASTrainer.compute_loss``: L = L_MLM + lambda(step) * R (``sasbert.regularizer``); R is not
  computed when lambda is 0. Both terms are normalised over the whole optimizer step (all
  accumulation micro-batches and all DDP processes): the MLM loss per masked token, R per labelled
  arc (``reduction: mean``) or summed and scaled to ``reference_sequences`` sequences
  (``reduction: sum``, the authors' strength: their sum over 64 sequences per device, gradients
  averaged over devices). So lambda means the same on 1 or 8 processes and with any accumulation.
- Training is planned in segments (``plan_segments``): every scheduled checkpoint that is not yet
  saved is trained from the nearest earlier saved state. Raising ``max_steps`` trains only the new
  steps, a denser schedule only the stretches up to the new checkpoints, and a finished run trains
  nothing. A checkpoint schedule (``control.should_save`` at the scheduled steps), the held-out
  MLM loss at every checkpoint on fixed masks, a per-step table (step, MLM loss, regularizer,
  lambda, LR, grad norm, tokens/s), SIGTERM -> checkpoint and a clean exit, NaN/inf -> an error
  naming the step.
- Resume state belongs to one identity (``run_identity``): everything that shapes the weights
  (the spec without max_steps and the schedule, the content of the dataset and tokenizer, the
  release run's starting checkpoint, the fingerprint of the training code: ``code_identity``).
  When it changes, the old state is removed and the log says what changed.

Layout of a run directory ``<run_dir>``:
- ``state/checkpoint-<step>/``: the Trainer's working checkpoints (model, tokenizer, optimizer,
  scheduler, RNG, trainer state). Resume reads these. They live outside the rule's declared
  outputs because Snakemake deletes declared outputs before it reruns a job.
- ``checkpoints/step-<step>/``: the published checkpoints, one per scheduled step (hard links to
  the state files: no extra space, and a republished checkpoint keeps its files' modification
  times). ``AutoModelForMaskedLM.from_pretrained`` loads them; they also hold the resume state,
  which is what a release run SAS-(k) starts from.
- ``metrics/steps.parquet`` (every optimizer step), ``metrics/eval.parquet`` (every checkpoint).
"""

from __future__ import annotations

import csv
import hashlib
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
from sasbert.code_identity import changed_modules, training_fingerprints
from sasbert.errors import InputError, OutputError, TrainingDiverged, TrainingInterrupted, write_failure
from sasbert.progress import LOG_INTERVAL_S, is_terminal
from sasbert.regularizer import (
    SAS_ATTENTION,
    arc_indices,
    combine_arcs,
    install_arc_taps,
    install_fused_arcs,
    sas_weight,
)
from sasbert.schedules import decay_horizon, lambda_at

log = logging.getLogger(__name__)

STEP_COLUMNS = ["step", "mlm_loss", "sas", "lambda", "lr", "grad_norm", "tokens_per_s", "seconds"]
PRETOKENIZED_MANIFEST = "manifest.json"  # in a dataset folder: a pre-tokenized corpus (sasbert.pretokenized)
EVAL_MASK_SEED = 1234  # fixed masks of the validation slice, the same for every run and checkpoint


class MaskedHeadBertForMaskedLM(BertForMaskedLM):
    """BertForMaskedLM whose prediction head sees only the masked positions.

    ``forward`` returns the summed MLM loss, the number of masked tokens and, when asked, the SAS
    regularizer summed over the batch's arcs; the Trainer normalises and combines them. Weights
    and config are BertForMaskedLM's.
    """

    # the run's regularizer section (type, direction, attention, ...), set by train(); not read from
    # the schema here, which would make config.py and options.py code inputs of every training job
    sas_options: dict = {}

    def forward(self, input_ids, attention_mask=None, labels=None, heads=None, compute_sas=False):
        if not compute_sas:
            out = self.bert(input_ids, attention_mask=attention_mask, return_dict=True)
            sas = None
        else:
            if self.training and self.bert.is_activation_checkpointing:  # transformers 5 name
                # recomputed layers would run without the arc readers (the regularizer silently
                # does nothing, or the recomputation fails): refuse rather than train unregularized
                raise ValueError("the SAS regularizer does not work with gradient checkpointing")
            options = self.sas_options
            arcs = arc_indices(heads)
            # post_dropout: output_attentions makes the model's attention take the eager path, whose
            # dropout the taps wrap (regularizer.ArcTap); pre_dropout: the fused kernels, read at the arcs
            # from q, k and the rows' log-sum-exp (regularizer.FusedArcSelfAttention)
            fused = options["attention"] == "pre_dropout"
            readers = install_fused_arcs(self.bert) if fused else install_arc_taps(self.bert)
            for reader in readers:
                reader.arcs, reader.direction = arcs, options["direction"]
            try:
                out = self.bert(input_ids, attention_mask=attention_mask, output_attentions=not fused, return_dict=True)
                # the sum over this micro-batch's arcs; the trainer normalises it over the whole step
                sas = combine_arcs(
                    [reader.values for reader in readers],
                    len(arcs[0]),
                    type=options["type"],
                    direction=options["direction"],
                    reduction="sum",
                )
            finally:
                for reader in readers:
                    reader.arcs = reader.values = None
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

    Each block's mask is drawn from its own generator seeded by (seed, epoch, block index); the
    example carries its ``epoch`` (see ``StreamBlocks``). So the mask is new every epoch (dynamic
    masking, as HF run_mlm) yet independent of the process that draws it and of the global RNG.
    """

    def __init__(self, tokenizer, mlm_probability: float, seed: int):
        self.mlm_probability = mlm_probability
        self.seed = seed
        self.mask_id = tokenizer.mask_token_id
        self.vocab_size = len(tokenizer)
        self.special_ids = torch.tensor(sorted(tokenizer.all_special_ids))

    def block_generator(self, block: int, epoch: int) -> torch.Generator:
        return torch.Generator().manual_seed(((self.seed * 1_000_003 + epoch) * 1_000_000_007 + block) % 2**63)

    def mask_block(self, input_ids: torch.Tensor, block: int, epoch: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        generator = self.block_generator(block, epoch)
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
        inputs, labels = zip(
            *(self.mask_block(torch.tensor(ex["input_ids"]), ex["block"], ex.get("epoch", 0)) for ex in examples)
        )
        return {
            "input_ids": torch.stack(inputs),
            "attention_mask": torch.tensor([ex["attention_mask"] for ex in examples]),
            "labels": torch.stack(labels),
            "heads": torch.tensor([ex["heads"] for ex in examples], dtype=torch.long),
        }


class BlockOrder:
    """The training stream: epoch e is a permutation of the blocks seeded by (seed, e), and the
    epochs follow each other, so stream position p holds block ``perm_{p // n}[p % n]``.
    A step may straddle two epochs; no block is dropped and none is seen twice in an epoch."""

    def __init__(self, n_blocks: int, seed: int):
        if n_blocks == 0:
            raise InputError("the training split has no blocks")
        self.n_blocks = n_blocks
        self.seed = seed
        self._permutations: dict[int, torch.Tensor] = {}

    def permutation(self, epoch: int) -> torch.Tensor:
        if epoch not in self._permutations:
            if len(self._permutations) > 2:  # a step reads at most two epochs
                self._permutations.pop(min(self._permutations))
            generator = torch.Generator().manual_seed((self.seed * 1_000_003 + epoch) % 2**63)
            self._permutations[epoch] = torch.randperm(self.n_blocks, generator=generator)
        return self._permutations[epoch]

    def at(self, position: int) -> tuple[int, int]:
        """(block, epoch) at a stream position."""
        epoch, offset = divmod(position, self.n_blocks)
        return int(self.permutation(epoch)[offset]), epoch


class StreamBlocks(torch.utils.data.Dataset):
    """Stream positions -> examples: the block at that position with its index and epoch."""

    def __init__(self, blocks, order: BlockOrder):
        self.blocks = blocks
        self.order = order

    def __len__(self):
        return self.order.n_blocks

    def __getitem__(self, position: int) -> dict:
        block, epoch = self.order.at(position)
        return {**self.blocks[block], "block": block, "epoch": epoch}


class StepBatchSampler(torch.utils.data.Sampler):
    """Micro-batches of stream positions, starting at the step the trainer is at.

    The start is read when iteration begins (every Trainer epoch, and after a resume), so the
    positions depend on the optimizer step alone. Consecutive micro-batches of ``micro_batch``
    sequences make up a step of ``global_batch``; accelerate hands every N-th micro-batch to each
    of N DDP processes, which keeps every step's set of sequences the same.
    """

    def __init__(self, global_batch: int, micro_batch: int, steps_per_pass: int, start_step):
        self.global_batch = global_batch
        self.batch_size = micro_batch  # accelerate reads it
        self.steps_per_pass = steps_per_pass
        self.start_step = start_step

    def __len__(self) -> int:
        return self.steps_per_pass * (self.global_batch // self.batch_size)

    def __iter__(self):
        start = self.start_step() * self.global_batch
        for k in range(len(self)):
            first = start + k * self.batch_size
            yield list(range(first, first + self.batch_size))


def build_model(model_kwargs: dict, vocab_size: int, seed: int, max_position: int) -> MaskedHeadBertForMaskedLM:
    set_seed(seed)
    config = BertConfig(vocab_size=vocab_size, max_position_embeddings=max_position, **model_kwargs)
    # SDPA with transformers 4's eager fallback for calls that ask for the attentions (regularizer)
    return MaskedHeadBertForMaskedLM._from_config(config, attn_implementation=SAS_ATTENTION)


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


def checkpoint_step(path: Path) -> int:
    """The step of a checkpoint this stage saved: a Trainer working state (``checkpoint-<step>``)
    or a published one (``step-<step>``, where a release run starts). Parsed here, not by
    ``checkpoints.step_from_name``: a change to how outside series are named must not rerun
    training (each stage's code inputs follow its imports)."""
    match = re.fullmatch(r"(?:checkpoint|step)-(\d+)", Path(path).name)
    if match is None:
        raise InputError(f"{path}: not a checkpoint name this stage writes (checkpoint-<step> or step-<step>)")
    return int(match.group(1))


def is_complete(checkpoint: Path) -> bool:
    """Written to the end: the Trainer writes trainer_state.json after the model, optimizer,
    scheduler and RNG state, and we write eval.json (atomically) after that."""
    try:
        json.loads((checkpoint / "trainer_state.json").read_text())
    except (OSError, ValueError):
        return False
    return (checkpoint / "eval.json").is_file()


def discard_incomplete(state_dir: Path) -> None:
    """Remove the states written part-way (a job killed, or a full disk, while saving), saying so:
    they are never resumed from, and a checkpoint saved again at that step must not mix with them.
    Step 0 is the initialisation, saved with its held-out loss but no trainer state."""
    for checkpoint in sorted(state_dir.glob("checkpoint-*")):
        if not re.fullmatch(r"checkpoint-\d+", checkpoint.name):
            continue
        step = checkpoint_step(checkpoint)
        complete = (checkpoint / "eval.json").is_file() if step == 0 else is_complete(checkpoint)
        if checkpoint.is_dir() and not complete:
            log.warning("%s: written part-way (no trainer state or held-out loss); discarded", checkpoint)
            shutil.rmtree(checkpoint)


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


# Spec keys that do not change the weights, or only say how far to train and what to save: a
# rerun with other values resumes the same state (max_steps: extend; checkpoint_steps: densify).
NOT_IDENTITY_KEYS = ("threads", "logging_steps", "max_steps", "checkpoint_steps")


def fingerprint(*folders: str | Path, skip: tuple[str, ...] = ("state.json",)) -> str:
    """sha256 over the content of every file in the folders (relative names included).

    ``state.json`` of a saved HF dataset is skipped: it holds bookkeeping, not data. Cost: one read
    of the dataset per training job (about 1 GB/s).
    """
    digest = hashlib.sha256()
    for folder in folders:
        folder = Path(folder)
        files = [folder] if folder.is_file() else sorted(p for p in folder.rglob("*") if p.is_file())
        for path in files:
            if path.name in skip:
                continue
            digest.update(str(path.relative_to(folder) if path != folder else path.name).encode() + b"\0")
            with open(path, "rb") as handle:
                for chunk in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(chunk)
    return digest.hexdigest()


def run_identity(
    spec: dict, data_fingerprint: str, start_fingerprint: str | None, code: dict[str, str] | None = None
) -> dict:
    """Everything that shapes a run's weights: what decides whether ``state/`` may be resumed.
    ``code``: the training code's module fingerprints (``code_identity.training_fingerprints``,
    computed from the code this process runs when not given)."""
    identity = {k: v for k, v in spec.items() if k not in NOT_IDENTITY_KEYS}
    identity["decay_horizon"] = decay_horizon(spec)
    identity["data"] = data_fingerprint
    identity["start"] = start_fingerprint  # a release run's starting checkpoint (its weights)
    identity["code"] = code if code is not None else training_fingerprints(spec["lambda"])
    return identity


def discard_stale_state(state_dir: Path, identity: dict) -> None:
    """Resume state belongs to one identity: when the run is redefined (another lambda, model,
    corpus, tokenizer, starting checkpoint, training code...), its old checkpoints must not be
    resumed from, so they are removed, with the reason in the log.

    A state saved before the training code was part of the identity (an identity.json without
    ``code``, otherwise equal) is taken as made by the code that runs now: its identity is
    completed in place, and nothing is retrained (docs/reruns.md, "What counts as code")."""
    text = json.dumps(identity, sort_keys=True, indent=1) + "\n"
    identity_file = state_dir / "identity.json"
    if state_dir.exists() and (not identity_file.is_file() or identity_file.read_text() != text):
        try:
            old = json.loads(identity_file.read_text())
        except (OSError, ValueError):
            old = None
        if old is not None and "code" not in old and old == {k: v for k, v in identity.items() if k != "code"}:
            log.info(
                "%s: identity.json completed with the training code's fingerprint (saved before it counted)", state_dir
            )
            write_text(text, identity_file)
            return
        if old is None:
            reason = "it has no readable identity.json"
        else:
            changed = sorted(k for k in set(old) | set(identity) if old.get(k) != identity.get(k))
            reason = "changed: " + ", ".join(_identity_change(k, old, identity) for k in changed)
        if any(state_dir.iterdir()):
            log.warning("%s: not resuming the saved state (%s); training again from scratch", state_dir, reason)
        shutil.rmtree(state_dir)
        steps_csv = state_dir.parent / "metrics" / "steps.csv"
        steps_csv.unlink(missing_ok=True)
    state_dir.mkdir(parents=True, exist_ok=True)
    if not identity_file.is_file():
        write_text(text, identity_file)


def _identity_change(key: str, old: dict, new: dict) -> str:
    """How the log names a changed identity key."""
    if key == "code":
        modules = changed_modules(old.get("code") or {}, new.get("code") or {})
        return f"the training code ({', '.join(modules)})"
    return {"data": "the dataset or tokenizer content", "start": "the starting checkpoint"}.get(key, key)


def saved_steps(state_dir: Path) -> list[int]:
    """Steps of the complete, resumable states (scheduled or saved on SIGTERM)."""
    return sorted(checkpoint_step(p) for p in state_dir.glob("checkpoint-*") if is_complete(p))


def plan_segments(saved: list[int], wanted: list[int]) -> list[tuple[int | None, int]]:
    """(resume step or None = from scratch, last step) of each stretch to train so that every
    wanted checkpoint exists: each missing one is trained from the nearest earlier saved state,
    and consecutive missing ones with no saved state between them share one stretch."""
    have = set(saved)
    segments: list[list] = []
    for step in sorted(set(wanted) - have):
        if step == 0:
            continue  # the initialisation is saved without training
        resume = max((s for s in have if s < step), default=None)
        if segments and segments[-1][1] == resume:
            segments[-1][1] = step
        else:
            segments.append([resume, step])
        have.add(step)
    return [(a, b) for a, b in segments]


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
            batch = collator([{**dataset[i], "block": i} for i in range(start, min(start + batch_size, len(dataset)))])
            out = model(**{k: v.to(device) for k, v in batch.items()})
            total += out["mlm_sum"].item()
            count += int(out["n_masked"])
    model.train(was_training)
    return total / max(count, 1)


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


def adopt_start(state_dir: Path, start: Path, is_main: bool) -> int:
    """A release run starts from another run's checkpoint, with its optimizer, scheduler and RNG:
    linked into this run's state as its first resumable state. Returns its step."""
    step = checkpoint_step(start)
    target = state_dir / f"checkpoint-{step}"
    if is_main and not is_complete(target):
        with atomic_path(target, is_dir=True) as tmp:
            link_tree(start, tmp)
    return step


def train(
    dataset_dir: str,
    tokenizer_dir: str,
    run_dir: str,
    spec: dict,
    resume_from: str | None = None,
    part_dir: str | None = None,
    publish_after: int | None = None,
) -> None:
    """Train one run x seed so that every scheduled checkpoint up to ``spec['max_steps']`` exists,
    resuming from ``run_dir/state`` where possible, then publish them.

    One job of a run split into parts (``train.job_steps``) trains to its part's end
    (``spec['max_steps']``) and publishes the part's checkpoints after ``publish_after`` into
    ``part_dir`` instead of ``run_dir/checkpoints``; the run's last job publishes everything.

    ``spec`` keys: model (BertConfig kwargs), seed, lambda (schedule), regularizer (type, direction,
    reduction, reference_sequences), checkpoint_steps, and the train section of the config
    (max_steps, batch_size, ...).
    """
    run_dir = Path(run_dir)
    state_dir = run_dir / "state"
    torch.set_num_threads(spec.get("threads", 1))
    per_device = per_device_batch(spec)
    # the arguments set up the device and, under torchrun, the process group (for barrier())
    is_main = training_arguments(spec, state_dir, per_device, spec["max_steps"]).process_index == 0
    start = Path(resume_from) if resume_from else None
    keep_state_if_same_run(spec, state_dir, dataset_dir, tokenizer_dir, start, is_main)
    if is_main:
        discard_incomplete(state_dir)
    barrier()
    tokenizer, train_blocks, val_data, max_position = load_data(dataset_dir, tokenizer_dir, spec)
    order = BlockOrder(len(train_blocks), spec["seed"])

    first_step = adopt_start(state_dir, start, is_main) if start else 0
    barrier()
    # the run's own start (0, or a release run's k) and its end are always published
    wanted = sorted(
        {s for s in spec["checkpoint_steps"] if first_step <= s <= spec["max_steps"]} | {first_step, spec["max_steps"]}
    )
    saved = saved_steps(state_dir)
    recorder = StepRecorder(run_dir / "metrics" / "steps.csv") if is_main else None
    (run_dir / "metrics").mkdir(parents=True, exist_ok=True)
    if recorder is not None:
        recorder.keep_until(max(saved, default=0))

    def evaluate(model_to_eval, step: int) -> None:
        loss = held_out_loss(model_to_eval, val_data, tokenizer, spec["mlm_probability"], per_device)
        checkpoint = state_dir / f"checkpoint-{step}"
        checkpoint.mkdir(parents=True, exist_ok=True)
        write_text(json.dumps({"step": step, "val_mlm_loss": loss}) + "\n", checkpoint / "eval.json")
        log.info("step %d: held-out MLM loss %.4f", step, loss)

    def new_trainer(last_step: int, schedule: ScheduleCallback) -> SASTrainer:
        model = build_model(spec["model"], tokenizer.vocab_size, spec["seed"], max_position)
        model.sas_options = spec["regularizer"]
        return SASTrainer(
            model=model,
            args=training_arguments(spec, state_dir, per_device, last_step),
            train_dataset=StreamBlocks(train_blocks, order),
            data_collator=BlockCollator(tokenizer, spec["mlm_probability"], seed=spec["seed"]),
            processing_class=tokenizer,
            callbacks=[schedule] if is_terminal() else [schedule, ProgressLog()],
            spec=spec,
            recorder=recorder,
        )

    if 0 in wanted and not (state_dir / "checkpoint-0" / "eval.json").is_file():
        # Step 0 (the random initialisation) is a checkpoint too: saved, not trained.
        if is_main:
            initial = build_model(spec["model"], tokenizer.vocab_size, spec["seed"], max_position)
            initial.save_pretrained(state_dir / "checkpoint-0")
            tokenizer.save_pretrained(state_dir / "checkpoint-0")
            evaluate(initial, 0)
        barrier()

    segments = plan_segments(saved, wanted)
    if not segments:
        log.info("nothing to train: every checkpoint up to step %d is saved in %s", spec["max_steps"], state_dir)
    for resume_step, last_step in segments:
        resume = state_dir / f"checkpoint-{resume_step}" if resume_step is not None else None
        where = f"resuming at step {resume_step} from {resume}" if resume else "training from scratch"
        log.info("%s: %s, training to %d", run_dir, where, last_step)
        schedule = ScheduleCallback(wanted, evaluate)
        train_segment(new_trainer(last_step, schedule), schedule, resume, state_dir)
    if is_main and part_dir is not None:
        after = first_step - 1 if publish_after is None else publish_after
        scheduled = set(spec["checkpoint_steps"]) | {first_step}  # not the part's end, unless scheduled
        publish_checkpoints(state_dir, [s for s in wanted if s > after and s in scheduled], Path(part_dir))
    elif is_main:
        publish(run_dir, wanted, spec["max_steps"], first_step)


def keep_state_if_same_run(
    spec: dict, state_dir: Path, dataset_dir: str, tokenizer_dir: str, start: Path | None, is_main: bool
) -> None:
    """Discard ``state_dir`` unless it was trained by this very run: the same spec, data,
    tokenizer and (a release run) start weights (see ``run_identity``)."""
    if start is not None and not (start / "trainer_state.json").is_file():
        raise InputError(f"{start}: not a resumable checkpoint (no trainer_state.json)")
    # a pre-tokenized corpus' manifest names the content of its rows: hashing it stands for them
    manifest = Path(dataset_dir) / PRETOKENIZED_MANIFEST
    identity = run_identity(
        spec,
        data_fingerprint=fingerprint(manifest if manifest.is_file() else dataset_dir, tokenizer_dir),
        start_fingerprint=fingerprint(start / "model.safetensors") if start else None,
    )
    if is_main:
        discard_stale_state(state_dir, identity)
    barrier()


def load_data(dataset_dir: str, tokenizer_dir: str, spec: dict):
    """(tokenizer, train blocks, validation blocks, max_position_embeddings) of a tokenized corpus."""
    from datasets import Dataset, concatenate_datasets, load_from_disk

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    manifest = Path(dataset_dir) / PRETOKENIZED_MANIFEST
    if manifest.is_file():
        # a pre-tokenized corpus (sasbert.pretokenized prepare): its splits' Arrow files, memory-mapped
        splits = json.loads(manifest.read_text())["splits"]
        data = {
            name: concatenate_datasets([Dataset.from_file(str(Path(dataset_dir) / f)) for f in split["files"]])
            for name, split in splits.items()
        }
    else:
        data = load_from_disk(dataset_dir)
    columns = ["input_ids", "attention_mask", "heads"]
    train_blocks = data["train"].select_columns(columns)
    val_data = data["validation"].select_columns(columns)
    seq_len = len(train_blocks[0]["input_ids"])
    max_position = max(seq_len, spec.get("max_position_embeddings", 512))
    tokenizer.model_max_length = max_position
    return tokenizer, train_blocks, val_data, max_position


def train_segment(trainer: SASTrainer, schedule: ScheduleCallback, resume: Path | None, state_dir: Path) -> None:
    """Train one stretch; a SIGTERM saves a checkpoint at the current step and stops the run."""
    previous_handler = signal.signal(signal.SIGTERM, lambda *_: setattr(schedule, "terminated", True))
    try:
        trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    except Exception as err:  # each writer raises its own kind (OSError, RuntimeError, SafetensorError)
        reason = write_failure(err, state_dir)
        if reason is None:
            raise
        checkpoint = state_dir / f"checkpoint-{trainer.state.global_step}"
        written = sorted(checkpoint.glob("*"), key=lambda f: f.stat().st_mtime_ns) if checkpoint.is_dir() else []
        raise OutputError(
            f"{written[-1] if written else checkpoint}: cannot save the checkpoint ({reason}); free space (or raise "
            "the limit) and rerun: training resumes from the last complete checkpoint"
        ) from None
    finally:
        signal.signal(signal.SIGTERM, previous_handler)
    if schedule.terminated:
        raise TrainingInterrupted(
            f"SIGTERM at step {trainer.state.global_step}: checkpoint saved in {state_dir}; rerun to resume"
        )


def barrier() -> None:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.barrier()


def publish(run_dir: Path, steps: list[int], max_steps: int, first_step: int = 0) -> None:
    """Publish the scheduled checkpoints (from ``first_step`` on) and the metric tables.

    ``checkpoints/`` appears at once, complete, so Snakemake never sees a partial one. The per-step
    table holds steps first_step + 1 .. max_steps in order, whatever order they were trained in.
    """
    state_dir = run_dir / "state"
    published = [s for s in steps if first_step <= s <= max_steps]
    publish_checkpoints(state_dir, published, run_dir / "checkpoints")
    metrics = run_dir / "metrics"
    steps_csv = metrics / "steps.csv"
    steps_table = pd.read_csv(steps_csv) if steps_csv.exists() else pd.DataFrame(columns=STEP_COLUMNS)
    steps_table = steps_table[(steps_table.step > first_step) & (steps_table.step <= max_steps)]
    steps_table = steps_table.drop_duplicates("step").sort_values("step", ignore_index=True)
    write_parquet(steps_table, metrics / "steps.parquet")
    evals = [json.loads((state_dir / f"checkpoint-{s}" / "eval.json").read_text()) for s in published]
    write_parquet(pd.DataFrame(evals, columns=["step", "val_mlm_loss"]), metrics / "eval.parquet")


def publish_checkpoints(state_dir: Path, steps: list[int], folder: Path) -> None:
    """``folder/step-<s>`` for each step, hard-linked from the state; the folder appears at once."""
    with atomic_path(folder, is_dir=True) as tmp:
        for step in steps:
            source = state_dir / f"checkpoint-{step}"
            if not source.is_dir():
                raise InputError(f"{source}: scheduled checkpoint missing; delete {state_dir} and rerun")
            link_tree(source, tmp / f"step-{step}")


def add_arguments(parser) -> None:
    parser.add_argument("--dataset", required=True, help="tokenized dataset folder (tokenize stage)")
    parser.add_argument("--tokenizer", required=True, help="tokenizer folder (tokenize stage)")
    parser.add_argument("--run-dir", required=True, help="output folder of this run x seed")
    spec = parser.add_mutually_exclusive_group(required=True)
    spec.add_argument("--spec", help="run specification as JSON (what the Snakemake rule passes)")
    spec.add_argument("--spec-file", help="run specification as a JSON file")
    parser.add_argument("--resume-from", default=None, help="another run's checkpoint to start from (release runs)")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads (intra-op)")
    parser.add_argument(
        "--part-dir",
        default=None,
        help="one job of a run split into parts: publish this part's checkpoints here "
        "(the spec's max_steps is the part's end)",
    )
    parser.add_argument(
        "--publish-after",
        type=int,
        default=None,
        help="with --part-dir: publish the checkpoints after this step (the previous part's end)",
    )


def run(args) -> None:
    spec = json.loads(args.spec) if args.spec else json.loads(Path(args.spec_file).read_text())
    spec.setdefault("threads", args.threads)
    train(
        args.dataset,
        args.tokenizer,
        args.run_dir,
        spec,
        resume_from=args.resume_from,
        part_dir=args.part_dir,
        publish_after=args.publish_after,
    )
