"""``sasbert glue prepare|finetune|gather``: GLUE's command line."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from sasbert.errors import InputError
from sasbert.measure.glue.finetune import finetune
from sasbert.measure.glue.metrics import METRIC_COLUMNS, PREDICTION_COLUMNS, gather, labelled
from sasbert.measure.glue.options import FinetuneOptions
from sasbert.measure.glue.tasks import TASKS, load_prepared, load_task, save_task, task_of
from sasbert.options import add_option_flags
from sasbert.options import resolve as resolve_options

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="glue_command", required=True, metavar="COMMAND")
    pr = sub.add_parser(
        "prepare",
        help="one GLUE task's data (hub, local files, a save_to_disk folder or BLiMP) as a checked DatasetDict",
        description="Read a GLUE task (by default from the hub dataset, through the HF cache) and save its train "
        "and validation splits, checked, for the fine-tuning jobs to read offline.",
    )
    pr.add_argument("--task", required=True, choices=list(TASKS))
    pr.add_argument(
        "--hub-dataset", default=None, help="the hub dataset (default: the config schema's glue.hub_dataset)"
    )
    source = pr.add_mutually_exclusive_group()
    source.add_argument(
        "--split-file",
        nargs=2,
        action="append",
        metavar=("SPLIT", "FILE"),
        help="a local file of one split (give one for train and each validation split)",
    )
    source.add_argument("--saved", metavar="DIR", help="a save_to_disk folder (DatasetDict)")
    source.add_argument("--blimp-dir", metavar="DIR", help="BLiMP .jsonl files: an acceptability task (cola)")
    pr.add_argument("--blimp-options", default="{}", help="with --blimp-dir: glue.data.cola.blimp as JSON")
    pr.add_argument("--offline", action="store_true", help="read the hub dataset from the HF cache only")
    pr.add_argument("--out", required=True, help="the prepared task's folder")

    ft = sub.add_parser(
        "finetune",
        help="fine-tune one checkpoint on one prepared task with one seed; score its validation split(s)",
    )
    ft.add_argument("--checkpoint", required=True, help="HF checkpoint folder (or hub:<repo>@<revision> in the cache)")
    ft.add_argument("--step", type=int, required=True, help="the checkpoint's training step (for the tables)")
    ft.add_argument("--run", default="", help="the run or series name (for the tables)")
    ft.add_argument("--seed", type=int, default=0, help="the run's training seed (for the tables)")
    ft.add_argument("--task", required=True, choices=list(TASKS))
    ft.add_argument("--data", required=True, help="the prepared task (sasbert glue prepare)")
    ft.add_argument("--finetune-seed", type=int, default=0)
    add_option_flags(
        ft,
        "glue",
        [
            ("--max-length", {"type": int}, "pieces per example"),
            ("--learning-rate", {"type": float}, ""),
            ("--batch-size", {"type": int}, "training examples per step"),
            ("--epochs", {"type": float}, ""),
            ("--max-train-samples", {"type": int}, "train on the first n examples"),
            ("--max-eval-samples", {"type": int}, "score the first n examples of each validation split"),
            ("--precision", {"choices": ("fp32", "bf16", "fp16")}, ""),
        ],
    )
    ft.add_argument("--device", default="auto", help="auto (cuda when available), cpu, cuda:0 ...")
    ft.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    ft.add_argument("--out-metrics", required=True, help="metrics parquet")
    ft.add_argument("--out-predictions", required=True, help="predictions parquet")

    ga = sub.add_parser("gather", help="stack the fine-tunes' metrics, add the GLUE average, summarize over seeds")
    ga.add_argument("--inputs", nargs="+", required=True, help="metrics parquet files")
    ga.add_argument("--out", required=True, help="the glue table (tables/glue.parquet)")
    ga.add_argument("--out-summary", help="also the mean and spread over fine-tuning seeds")


def _prepare(args: argparse.Namespace) -> None:
    from sasbert.options import default

    repo = args.hub_dataset or default("glue", "hub_dataset")
    source: dict = {}
    if args.split_file:
        source = {"data_files": dict(args.split_file)}
    elif args.saved:
        source = {"saved": args.saved}
    elif args.blimp_dir:
        try:
            options = json.loads(args.blimp_options)
        except json.JSONDecodeError as err:
            raise InputError(f"--blimp-options: not JSON ({err})") from None
        source = {"blimp": {**options, "data_dir": args.blimp_dir}}
    source = _with_defaults(source)
    splits = load_task(args.task, source, repo, download=not args.offline)
    for split, frame in splits.items():
        log.info("%s %s: %d examples", args.task, split, len(frame))
    save_task(splits, args.out)


def _with_defaults(source: dict) -> dict:
    """A glue.data entry with its defaults from the config schema (what validation fills in)."""
    from sasbert import config as sasconfig

    root = sasconfig.load_schema()
    sasconfig._fill_defaults(source, root["$defs"]["glue_source"], root)
    return source


def run(args: argparse.Namespace) -> None:
    from sasbert.atomic import write_parquet

    if args.glue_command == "prepare":
        _prepare(args)
        return
    if args.glue_command == "gather":
        table, summary = gather(args.inputs)
        write_parquet(table, args.out)
        if args.out_summary:
            write_parquet(summary, args.out_summary)
        return
    from sasbert.measure.checkpoints import resolve_checkpoints

    options = FinetuneOptions.from_section(resolve_options(args, "glue"))
    if args.threads > 0:
        import torch

        torch.set_num_threads(args.threads)
    ((folder, step),) = resolve_checkpoints([args.checkpoint], [args.step])
    dataset = load_prepared(args.data, args.task)
    log.info(
        "GLUE %s: fine-tuning %s (step %d), seed %d; scored on %s",
        args.task,
        folder,
        step,
        args.finetune_seed,
        " and ".join(task_of(args.task).eval_splits),
    )
    metrics, predictions = finetune(
        folder, dataset, args.task, options, args.finetune_seed, args.device, Path(args.out_metrics).parent
    )
    Path(args.out_metrics).parent.mkdir(parents=True, exist_ok=True)
    write_parquet(labelled(metrics, METRIC_COLUMNS, args.run, args.seed, step), args.out_metrics)
    write_parquet(labelled(predictions, PREDICTION_COLUMNS, args.run, args.seed, step), args.out_predictions)
