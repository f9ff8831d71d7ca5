"""Resume state: which saved states belong to this run, what is left to train, and starting from
another run's checkpoint.

Training is planned in segments (``plan_segments``): every scheduled checkpoint that is not yet
saved is trained from the nearest earlier saved state. Raising ``max_steps`` trains only the new
steps, a denser schedule only the stretches up to the new checkpoints, and a finished run trains
nothing.

Resume state belongs to one identity (``run_identity``): everything that shapes the weights
(the spec without max_steps and the schedule, the content of the dataset and tokenizer, the
release run's starting checkpoint, the fingerprint of the training code: ``code_identity``).
When it changes, the old state is removed and the log says what changed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
from pathlib import Path

from sasbert.atomic import atomic_path, write_text
from sasbert.code_identity import changed_modules, training_fingerprints
from sasbert.errors import InputError
from sasbert.schedules import decay_horizon

log = logging.getLogger(__name__)


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


def adopt_start(state_dir: Path, start: Path, is_main: bool) -> int:
    """A release run starts from another run's checkpoint, with its optimizer, scheduler and RNG:
    linked into this run's state as its first resumable state. Returns its step."""
    step = checkpoint_step(start)
    target = state_dir / f"checkpoint-{step}"
    if is_main and not is_complete(target):
        with atomic_path(target, is_dir=True) as tmp:
            link_tree(start, tmp)
    return step
