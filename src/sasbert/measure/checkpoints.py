"""Checkpoint series: the HF checkpoint folders that probe and blimp evaluate, and the one way
both load a checkpoint and pick a device.

A series is a list of folders and/or globs (``run/checkpoints/step-*``, a user's MultiBERTs
download, ...). The step of each comes from its folder name unless given explicitly
(``step_from_name``): the number after ``step``, else after ``ckpt``/``checkpoint``, a ``k`` or
``M`` suffix multiplying it (``multiberts-seed_0-step_20k`` is 20,000; OLMo's
``step20000-tokens84B`` is 20,000), or a name that is a number alone (``5000``). Any other name,
and a HF cache snapshot folder (a 40-digit commit hash), has no step: its series must give steps.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path

from sasbert.errors import InputError
from sasbert.step_names import STEP_RULE, step_from_name
from sasbert.textio import expand_paths, is_pattern

WEIGHT_FILES = (
    "model.safetensors",
    "pytorch_model.bin",
    "model.safetensors.index.json",
    "pytorch_model.bin.index.json",
)


def missing_published(run_dir: str | Path) -> list[str]:
    """The checkpoint folders a finished training job published and that are gone.

    ``metrics/eval.parquet`` lists the steps the job published into ``checkpoints/``; the probe
    and BLiMP tables were built from them. Snakemake does not look inside a directory output,
    and does not rebuild a missing intermediate whose consumers are done, so without this check
    a deleted ``checkpoints/step-40`` (or the whole folder) goes unnoticed while the tables still
    list step 40. Empty when the job has not finished (nothing was promised yet).
    """
    import pyarrow.parquet as pq

    run_dir = Path(run_dir)
    eval_table = run_dir / "metrics" / "eval.parquet"
    if not eval_table.is_file():
        return []
    steps = sorted(set(pq.read_table(eval_table, columns=["step"]).column("step").to_pylist()))
    folder = run_dir / "checkpoints"
    return [str(folder / f"step-{step}") for step in steps if not (folder / f"step-{step}").is_dir()]


def check_checkpoint_dir(path: str | Path) -> Path:
    """A folder with a model config and weights, or an InputError naming it."""
    path = Path(path)
    if not path.is_dir():
        raise InputError(f"{path}: checkpoint directory not found")
    if not (path / "config.json").is_file():
        raise InputError(f"{path}: not a model checkpoint (no config.json)")
    if not any((path / name).is_file() for name in WEIGHT_FILES):
        raise InputError(
            f"{path}: not a model checkpoint (no model weights: expected one of {', '.join(WEIGHT_FILES)})"
        )
    return path


def attach_steps(names: Sequence[str], steps: Sequence[int] | None = None, given_as: str = "--step") -> list[int]:
    """The step of each checkpoint (folder or ``hub:`` spec): ``steps`` when given (one each), else
    read from its name; a name without a step or a step given twice is an InputError (``given_as``:
    where the user gives steps, for the message)."""
    from sasbert import hub

    if steps:
        if len(steps) != len(names):
            raise InputError(f"{given_as} gives {len(steps)} step(s) for {len(names)} checkpoint(s)")
        step_list = [int(s) for s in steps]
    else:
        step_list = []
        for name in names:
            step = hub.step_of(name) if hub.is_spec(name) else step_from_name(name)
            if step is None:
                raise InputError(f"{name}: no step number in the name (the rule: {STEP_RULE}); give {given_as}")
            step_list.append(step)
    seen: dict[int, str] = {}
    for name, step in zip(names, step_list):
        if step in seen:
            raise InputError(f"step {step} given by both {seen[step]} and {name}")
        seen[step] = name
    return step_list


def series_checkpoints(hub: dict, steps: list[int] | None = None) -> list[tuple[str, int]]:
    """(spec, step) of each checkpoint of a config's ``series[].hub`` (one repo's revisions, or
    one repo per step), steps from ``steps`` or the names; the cache is not read."""
    from sasbert import hub as sashub

    specs = (
        [sashub.spec(hub["repo"], r) for r in hub["revisions"]]
        if "repo" in hub
        else [sashub.spec(r, hub.get("revision", "main")) for r in hub["repos"]]
    )
    return list(zip(specs, attach_steps(specs, steps, given_as="steps")))


def resolve_checkpoints(
    specs: Sequence[str], steps: Sequence[int] | None = None, given_as: str = "--step"
) -> list[tuple[Path, int]]:
    """Expand globs, read hub checkpoints (``hub:<repo>@<revision>``) from the local HF cache,
    attach steps (explicit, else parsed from the name), check each folder.

    Returns (folder, step) pairs sorted by step; a step given twice is an error.
    """
    from sasbert import hub

    if steps:
        # steps pair with folders in order, and a glob's matches have none the user chose: sorted as
        # text, m10 comes before m2, and m10 would get m2's step
        for spec in specs:
            matches = expand_paths([spec], what="checkpoint") if is_pattern(spec) else []
            if len(matches) > 1:
                raise InputError(
                    f"{spec}: {given_as} pairs steps with checkpoints in the order they are named, and the "
                    f"{len(matches)} matches of a pattern have no such order ({', '.join(matches[:3])}"
                    f"{', ...' if len(matches) > 3 else ''}): name each folder, or leave out {given_as} to read "
                    "each step from its folder's name"
                )
    names = list(dict.fromkeys(str(p) for p in expand_paths(specs, what="checkpoint")))
    step_list = attach_steps(names, steps, given_as)
    paths = [hub.snapshot(name) if hub.is_spec(name) else Path(name) for name in names]
    for path in paths:
        check_checkpoint_dir(path)
    return sorted(zip(paths, step_list), key=lambda pair: pair[1])


# Options that choose which checkpoints a stage scores, not how: a per-checkpoint cache entry made
# under another value is still valid.
SELECTION_OPTIONS = ("every_steps",)


def frame_sha256(frame) -> str:
    """sha256 of a DataFrame's values, index and column names (e.g. the BLiMP pairs scored)."""
    import hashlib

    import pandas as pd

    digest = hashlib.sha256(repr(list(frame.columns)).encode())
    digest.update(pd.util.hash_pandas_object(frame, index=True).to_numpy().tobytes())
    return digest.hexdigest()


def newer_than_checkpoint(outputs: Sequence[str | Path], checkpoint: str | Path) -> bool:
    """True when every output exists and was written after the checkpoint's files."""
    checkpoint = Path(checkpoint)
    newest_input = max(p.stat().st_mtime for p in checkpoint.iterdir() if p.is_file())
    return all(Path(o).is_file() and Path(o).stat().st_mtime > newest_input for o in outputs)


def score_series(
    series: Sequence[tuple[Path, int]],
    score: Callable[[Path, int], dict],
    tables: Sequence[str],
    cache_dir: str | Path | None,
    log: logging.Logger,
    identity: dict | None = None,
) -> dict:
    """Score every (folder, step) of a series: ``score(folder, step)`` returns one DataFrame per
    name in ``tables``; the result stacks each table over the series, in its order.

    The one way a stage resumes per-checkpoint work: with ``cache_dir``, each checkpoint's tables
    are kept there (``step-<step>.<table>.parquet``), beside the identity they were computed with
    (``step-<step>.identity.json``: the scoring code's fingerprint, the options, the content of
    what the checkpoint is scored against; see ``sasbert.code_identity``). An entry is reused only
    when its identity equals ``identity`` and its tables are newer than the checkpoint's files, so
    a retried job (Slurm time limit, preemption) redoes only what is missing, a run's job takes
    what its parts' jobs scored, and a retrained checkpoint, a fix to the scoring code or another
    option is scored again, never served from the cache.
    """
    import json

    import pandas as pd

    from sasbert.atomic import write_parquet, write_text

    identity_text = json.dumps(identity or {}, sort_keys=True, indent=1) + "\n"
    stacked: dict = {name: [] for name in tables}
    for path, step in series:
        result = None
        if cache_dir:
            cached = {name: Path(cache_dir) / f"step-{step}.{name}.parquet" for name in tables}
            identity_file = Path(cache_dir) / f"step-{step}.identity.json"
            stale = cache_entry_stale(cached, identity_file, identity or {}, path)
            if stale is None:
                log.info("step %d (%s): kept from %s", step, path, Path(cache_dir))
                result = {name: pd.read_parquet(cached[name]) for name in tables}
            elif stale != "not scored yet":
                log.info("step %d (%s): scoring again (%s)", step, path, stale)
        if result is None:
            result = score(path, step)
            if cache_dir:
                identity_file.unlink(missing_ok=True)  # the entry is valid only once all is written
                for name in tables:
                    write_parquet(result[name], cached[name])
                write_text(identity_text, identity_file)
        for name in tables:
            stacked[name].append(result[name])
    return {name: pd.concat(frames, ignore_index=True) for name, frames in stacked.items()}


def cache_entry_stale(cached: dict, identity_file: Path, wanted: dict, checkpoint: Path) -> str | None:
    """Why a per-checkpoint cache entry may not be reused, or None when it may."""
    import json

    if not all(Path(p).is_file() for p in cached.values()):
        return "not scored yet"
    try:
        kept = json.loads(identity_file.read_text())
    except (OSError, ValueError):
        return "its entry has no identity: made before scoring code was tracked, or cut short"
    changed = sorted(k for k in set(kept) | set(wanted) if kept.get(k) != wanted.get(k))
    if changed:
        names = {"code": "the scoring code"}
        return "changed: " + ", ".join(names.get(k, k) for k in changed)
    if not newer_than_checkpoint(list(cached.values()), checkpoint):
        return "the checkpoint is newer than its scores"
    return None


def resolve_device(name: str):
    """A torch device from a ``--device`` value: ``auto`` (CUDA when there is one), ``cpu``,
    ``cuda:0``, ...; asking for CUDA where there is none is an InputError."""
    import torch

    if name in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as err:
        raise InputError(f"--device {name}: {err}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"--device {name}: no CUDA device here")
    return device


def model_kind(path: str | Path) -> str:
    """``masked`` or ``causal``: what a checkpoint folder's model is, from the architecture its
    config.json names (``BertForMaskedLM``; ``GPT2LMHeadModel``, ``GPTNeoXForCausalLM``,
    ``OlmoForCausalLM``, ...). A config that names neither is taken as a masked LM."""
    import json

    try:
        architectures = json.loads((Path(path) / "config.json").read_text()).get("architectures") or []
    except (OSError, ValueError) as err:
        raise InputError(f"{path}: cannot read config.json ({err})") from None
    return architecture_kind(architectures)


def architecture_kind(architectures: Sequence[str]) -> str:
    """``masked`` or ``causal`` from HF architecture (model class) names; neither: masked."""
    if any(a.endswith("ForMaskedLM") for a in architectures):
        return "masked"
    if any(a.endswith(("ForCausalLM", "LMHeadModel")) for a in architectures):
        return "causal"
    return "masked"


def load_masked_lm(path: str | Path, device="cpu", dtype: str = "float32", attn_implementation: str | None = None):
    """(model in eval mode on ``device``, fast tokenizer) from a local HF checkpoint folder; a
    folder that does not load is an InputError naming it. ``dtype``: a torch dtype name or "auto"."""
    return load_language_model(path, device, dtype, attn_implementation, kind="masked")


def load_language_model(
    path: str | Path, device="cpu", dtype: str = "float32", attn_implementation: str | None = None, kind=None
):
    """``load_masked_lm`` for a masked or a causal LM (``kind``; default: ``model_kind``)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoModelForMaskedLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    from sasbert.progress import is_terminal

    if not is_terminal():
        # transformers 5 draws a "Loading weights" bar per model; in a job's log that is a line of
        # carriage returns (sasbert.progress writes plain lines there instead)
        hf_logging.disable_progress_bar()
    path = check_checkpoint_dir(path)
    kind = kind or model_kind(path)
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True, use_fast=True)
    except Exception as err:  # noqa: BLE001 - transformers raises many kinds
        raise InputError(f"{path}: cannot load the tokenizer ({type(err).__name__}: {err})") from None
    auto = AutoModelForCausalLM if kind == "causal" else AutoModelForMaskedLM
    try:
        model = auto.from_pretrained(
            path,
            local_files_only=True,
            attn_implementation=attn_implementation,
            dtype="auto" if dtype == "auto" else getattr(torch, dtype),
        )
    except Exception as err:  # noqa: BLE001
        raise InputError(f"{path}: cannot load the {kind} LM ({type(err).__name__}: {err})") from None
    return model.to(device).eval(), tokenizer


def thin_series(checkpoints: list[tuple[Path, int]], every_steps: int | None) -> list[tuple[Path, int]]:
    """The (folder, step) pairs, sorted by step, whose step is a multiple of ``every_steps``, and
    the first and last (a run's start and end are always scored); all of them for None."""
    if every_steps is None:
        return checkpoints
    if every_steps < 1:
        raise InputError(f"--every-steps must be >= 1, got {every_steps}")
    last = len(checkpoints) - 1
    return [c for i, c in enumerate(checkpoints) if i in (0, last) or c[1] % every_steps == 0]
