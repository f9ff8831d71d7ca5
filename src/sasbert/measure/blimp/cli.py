"""``sasbert blimp score|gather``: BLiMP's command line, over a checkpoint series with its per-checkpoint cache."""

from __future__ import annotations

import argparse
import dataclasses
import logging
from pathlib import Path

from sasbert.code_identity import code_fingerprint
from sasbert.data.blimp_pairs import load_blimp, subset_pairs
from sasbert.errors import InputError
from sasbert.measure.blimp.options import BlimpOptions
from sasbert.measure.blimp.scoring import CAUSAL_METHOD, VARIANTS, CausalScorer, PLLScorer, score_pairs
from sasbert.measure.blimp.tables import _sort_summary, gather, summarize
from sasbert.measure.checkpoints import (
    SELECTION_OPTIONS,
    frame_sha256,
    model_kind,
    resolve_checkpoints,
    score_series,
    thin_series,
)
from sasbert.options import add_option_flags
from sasbert.options import resolve as resolve_options

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="blimp_command", required=True, metavar="COMMAND")
    sc = sub.add_parser(
        "score",
        help="score checkpoint(s) on BLiMP",
        description="Score one checkpoint or a series (several dirs / globs) on "
        "BLiMP by PLL; all steps go into the same two tables.",
    )
    sc.add_argument(
        "--checkpoint",
        nargs="+",
        required=True,
        metavar="DIR",
        help="HF masked-LM dir(s) or glob(s) (e.g. 'run/checkpoints/step-*')",
    )
    sc.add_argument("--data-dir", required=True, help="dir of BLiMP *.jsonl / *.jsonl.gz files")
    sc.add_argument("--out-pairs", required=True, help="per-pair parquet")
    sc.add_argument("--out-summary", required=True, help="accuracy summary parquet")
    sc.add_argument(
        "--step",
        type=int,
        nargs="+",
        default=None,
        help="step(s), one per checkpoint (default: read from the dir name: step-400, step_20k, ...)",
    )
    add_option_flags(
        sc,
        "blimp",
        [
            ("--pairs-per-paradigm", {"type": _int_or_none}, "n pairs per paradigm ('all' or 'null': all)"),
            ("--subset-seed", {"type": int}, ""),
            ("--variant", {"choices": VARIANTS}, ""),
            ("--batch-size", {"type": int}, "masked copies per forward pass"),
            (
                "--every-steps",
                {"type": _int_or_none, "metavar": "N"},
                "score only the checkpoints whose step is a multiple of N, and the first and last of the "
                "series ('all' or 'null': every checkpoint)",
            ),
        ],
    )
    sc.add_argument("--device", default="auto", help="auto (cuda when available), cpu, cuda:0 ...")
    sc.add_argument(
        "--threads", type=int, default=0, help="torch CPU threads (0: torch's default); match the job's cores"
    )
    sc.add_argument(
        "--cache-dir",
        default=None,
        help="keep each checkpoint's pair scores here, with what they were computed from (the "
        "scoring code's fingerprint, the options, the pairs), and reuse those computed from the "
        "same and newer than the checkpoint (resume a job stopped part-way through a series)",
    )
    ga = sub.add_parser("gather", help="stack per-checkpoint summaries into one table")
    ga.add_argument("--inputs", nargs="+", required=True, help="summary parquet files")
    ga.add_argument("--out", required=True, help="output parquet")


def _int_or_none(text: str) -> int | None:
    if text.lower() in ("null", "none", "all"):
        return None
    return int(text)


def run(args: argparse.Namespace) -> None:
    from sasbert.atomic import write_parquet

    if args.blimp_command == "gather":
        write_parquet(gather(args.inputs), args.out)
        return
    options = BlimpOptions(**resolve_options(args, "blimp"))
    options.check()
    if args.threads < 0:
        raise InputError(f"--threads must be >= 0 (got {args.threads})")
    if args.threads > 0:
        import torch

        torch.set_num_threads(args.threads)
    checkpoints = thin_series(resolve_checkpoints(args.checkpoint, args.step), options.every_steps)
    kinds = {model_kind(path) for path, _ in checkpoints}
    if len(kinds) > 1:
        raise InputError("the checkpoints mix masked and causal LMs: score each kind as its own series")
    scorer_class, method = (CausalScorer, CAUSAL_METHOD) if kinds == {"causal"} else (PLLScorer, options.variant)
    pairs = subset_pairs(load_blimp(args.data_dir), options.pairs_per_paradigm, options.subset_seed)
    log.info(
        "BLiMP: %d pairs from %d paradigms; %d checkpoint(s); %s",
        len(pairs),
        pairs["UID"].nunique(),
        len(checkpoints),
        f"PLL variant {method}" if method != CAUSAL_METHOD else "causal LM: summed token log-probability",
    )

    def score(path: Path, step: int) -> dict:
        scorer = scorer_class.from_pretrained(path, device=args.device, batch_size=options.batch_size, progress=True)
        scored = score_pairs(scorer, pairs, method, step)
        log.info("step %d (%s): overall accuracy %.4f", step, path, scored.groupby("UID")["correct"].mean().mean())
        return {"pairs": scored}

    identity = {
        "code": code_fingerprint(__name__.removeprefix("sasbert.")),
        "options": {k: v for k, v in dataclasses.asdict(options).items() if k not in SELECTION_OPTIONS},
        "method": method,
        "pairs": frame_sha256(pairs),
    }
    all_pairs = score_series(checkpoints, score, ["pairs"], args.cache_dir, log, identity)["pairs"]
    summary = _sort_summary(summarize(all_pairs, method))
    write_parquet(all_pairs, args.out_pairs)
    write_parquet(summary, args.out_summary)
