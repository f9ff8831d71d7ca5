"""``sasbert probe score|gather``: the probe's command line, over a checkpoint series with its per-checkpoint cache."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import time
from pathlib import Path

from sasbert import textio
from sasbert.atomic import write_parquet
from sasbert.code_identity import code_fingerprint
from sasbert.errors import InputError
from sasbert.hub import content_id
from sasbert.measure.checkpoints import (
    SELECTION_OPTIONS,
    resolve_checkpoints,
    resolve_device,
    score_series,
)
from sasbert.measure.probe.options import SCORINGS, ProbeOptions
from sasbert.measure.probe.scoring import _DTYPES, load_checkpoint, score_model
from sasbert.measure.probe.sentences import DEFAULT_EXCLUDED_RELATIONS, PTB_PUNCT_TAGS, is_labelled, read_treebank
from sasbert.measure.probe.tables import gather
from sasbert.options import add_option_flags
from sasbert.options import resolve as resolve_options

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="probe_command", required=True, metavar="COMMAND")
    score = sub.add_parser(
        "score",
        help="score checkpoints' attention heads against a gold treebank",
        description="Per-head UAS of one or more checkpoints (one scores + one summary parquet each).",
    )
    score.add_argument(
        "--checkpoint",
        nargs="+",
        required=True,
        metavar="DIR",
        help="HF checkpoint dir(s) or quoted glob(s); the step is read from the dir name "
        "(step-400, checkpoint-500, step_20k, ...) unless --step is given",
    )
    score.add_argument(
        "--treebank",
        required=True,
        help="gold CoNLL-U file (plain or .gz), or a .parquet in the authors' WSJ layout (words, heads, relns)",
    )
    score.add_argument("--out-scores", required=True, help="per-head scores parquet of every checkpoint")
    score.add_argument("--out-summary", required=True, help="summary parquet of every checkpoint")
    score.add_argument(
        "--out-bootstrap",
        help="the best-head UAS in each paired bootstrap resample of the sentences, of every checkpoint "
        "(the onsets' intervals)",
    )
    score.add_argument("--step", type=int, nargs="+", help="step(s), one per checkpoint")
    score.add_argument(
        "--cache-dir",
        default=None,
        help="keep each checkpoint's tables here, with what they were computed from (the scoring "
        "code's fingerprint, the options, the treebank's content), and reuse those computed from "
        "the same and newer than the checkpoint (resume a job stopped part-way through a series)",
    )
    add_option_flags(
        score,
        "probe",
        [
            (
                "--max-pieces",
                {"type": int},
                "longer sentences (pieces incl. [CLS]/[SEP]) are skipped and counted (spec) or cut (authors)",
            ),
            (
                "--scoring",
                {"choices": SCORINGS},
                "the method's scoring (docs/method.md), or the authors' attention_depparse_probe.py's",
            ),
            ("--max-sentences", {"type": int}, "use the first N sentences"),
            ("--batch-size", {"type": int}, ""),
            ("--min-relation-count", {"type": int}, "relations with fewer words are left out of the 'mean' row"),
        ],
    )
    score.add_argument(
        "--exclude-relations",
        nargs="*",
        default=list(DEFAULT_EXCLUDED_RELATIONS),
        help="relations not scored (labelled treebanks; subtypes are stripped first; scoring spec only)",
    )
    score.add_argument(
        "--punct-tags",
        nargs="*",
        default=list(PTB_PUNCT_TAGS),
        help="XPOS tags not scored in unlabelled treebanks (default: PTB punctuation; scoring spec only)",
    )
    score.add_argument("--treebank-name", default=None, help="treebank column (default: file name)")
    score.add_argument("--device", default="auto", help="auto (cuda if available), cpu, cuda, cuda:1, ...")
    score.add_argument("--dtype", default="float32", choices=_DTYPES, help="model weights' dtype")
    score.add_argument(
        "--threads", type=int, default=0, help="torch CPU threads (0: torch's default); match the job's cores"
    )
    gather = sub.add_parser(
        "gather",
        help="stack per-checkpoint parquets of one run into one table",
        description="Stack per-checkpoint summary (or scores) parquets into one table, sorted by step.",
    )
    gather.add_argument("--inputs", nargs="+", required=True, help="parquet files (or quoted globs)")
    gather.add_argument("--out", required=True, help="output parquet")


def run(args: argparse.Namespace) -> None:
    if args.probe_command == "gather":
        _run_gather(args)
    else:
        _run_score(args)


def _run_score(args: argparse.Namespace) -> None:
    options = ProbeOptions(**resolve_options(args, "probe"))
    options.check()
    if args.threads < 0:
        raise InputError(f"--threads must be >= 0 (got {args.threads})")
    outputs = [Path(p).resolve() for p in (args.out_scores, args.out_summary, args.out_bootstrap) if p]
    if len(set(outputs)) < len(outputs):
        raise InputError("--out-scores, --out-summary and --out-bootstrap: two name the same file")
    series = resolve_checkpoints(args.checkpoint, args.step)
    treebank = Path(args.treebank)
    sentences = read_treebank(treebank, options.max_sentences)
    name = args.treebank_name or treebank.name
    log.info(
        "%s: %d sentences (%s), scoring %s",
        treebank,
        len(sentences),
        "labelled" if is_labelled(sentences) else "unlabelled: scoring 'all' only",
        options.scoring,
    )
    device = resolve_device(args.device)
    if args.threads > 0:
        import torch

        torch.set_num_threads(args.threads)

    def score(path: Path, step: int) -> dict:
        t0 = time.perf_counter()
        model, tokenizer = load_checkpoint(path, device=device, dtype=args.dtype)
        result = score_model(
            model,
            tokenizer,
            sentences,
            options,
            excluded_relations=args.exclude_relations,
            punct_tags=args.punct_tags,
            device=device,
            step=step,
            checkpoint=path.name,
            treebank=name,
        )
        uas = result.summary.query("method == 'attention' and relation == 'all'")["accuracy"].iloc[0]
        log.info(
            "step %d (%s): UAS(all) %.4f over %d sentences, %d skipped too long, %d unaligned; "
            "probe %.1fs, total %.1fs",
            step,
            path,
            uas,
            result.n_sentences,
            result.n_skipped_too_long,
            result.n_skipped_unaligned,
            result.seconds,
            time.perf_counter() - t0,
        )
        return {"scores": result.scores, "summary": result.summary, "bootstrap": result.bootstrap}

    identity = {
        "code": code_fingerprint(__name__.removeprefix("sasbert.")),
        "options": {k: v for k, v in dataclasses.asdict(options).items() if k not in SELECTION_OPTIONS},
        "treebank": content_id(treebank),
        "treebank_name": name,
        "exclude_relations": sorted(args.exclude_relations),
        "punct_tags": sorted(args.punct_tags),
        "dtype": args.dtype,
    }
    tables = score_series(series, score, ["scores", "summary", "bootstrap"], args.cache_dir, log, identity)
    write_parquet(tables["scores"], args.out_scores)
    write_parquet(tables["summary"], args.out_summary)
    if args.out_bootstrap:
        write_parquet(tables["bootstrap"], args.out_bootstrap)


def _run_gather(args: argparse.Namespace) -> None:
    paths = textio.expand_paths(args.inputs)
    table = gather(paths)
    write_parquet(table, args.out)
    log.info("gathered %d files, %d rows -> %s", len(paths), len(table), args.out)
