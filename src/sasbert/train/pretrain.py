"""Stage 4, pretrain: BERT MLM pretraining with the SAS regularizer, on HF Trainer.

The stage's parts, one module each: ``model`` (the masked-head BERT), ``data_order`` (blocks and
masks as a function of the step), ``trainer`` (the regularized loss, per-step table, checkpoint
schedule), ``resume`` (the run's identity, its saved states, the segments left to train) and
``sasbert.train.regularizer`` (R). This module runs them: plans the segments, trains them and
publishes the checkpoints.

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

import json
import logging
import signal
from pathlib import Path

import pandas as pd
import torch

from sasbert.atomic import atomic_path, write_parquet, write_text
from sasbert.errors import InputError, OutputError, TrainingInterrupted, write_failure
from sasbert.progress import is_terminal
from sasbert.train.data_order import (
    PRETOKENIZED_MANIFEST,
    BlockCollator,
    BlockOrder,
    StreamBlocks,
    held_out_loss,
    load_data,
)
from sasbert.train.model import build_model
from sasbert.train.resume import (
    adopt_start,
    discard_incomplete,
    discard_stale_state,
    fingerprint,
    link_tree,
    plan_segments,
    run_identity,
    saved_steps,
)
from sasbert.train.trainer import (
    STEP_COLUMNS,
    ProgressLog,
    SASTrainer,
    ScheduleCallback,
    StepRecorder,
    per_device_batch,
    training_arguments,
)

log = logging.getLogger(__name__)


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
    # checked and completed from the config schema; imported here, not training code (train.spec says why)
    from sasbert.train.spec import read_spec

    spec = read_spec(args.spec, args.spec_file, args.threads)
    train(
        args.dataset,
        args.tokenizer,
        args.run_dir,
        spec,
        resume_from=args.resume_from,
        part_dir=args.part_dir,
        publish_after=args.publish_after,
    )
