"""Checkpoints on the HF hub, named ``hub:<repo>@<revision>`` (``hub:EleutherAI/pythia-70m@step1000``,
``hub:google/multiberts-seed_0-step_20k@main``).

Only ``sasbert series-fetch`` downloads: the workflow runs it as a local rule, so on a cluster the
login node (which has the internet) fills the HF cache, and every compute job reads the cache
offline. Reading a spec that is not in the cache is an InputError naming the repo and revision
and saying how to fill the cache. The manifest ``series-fetch`` writes lists each checkpoint's
snapshot folder, commit and weights hash, and flags revisions whose weights are identical (some
published branch series repeat a checkpoint under several step names).
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from sasbert.errors import InputError

log = logging.getLogger(__name__)

PREFIX = "hub:"
# What a checkpoint needs: config, PyTorch weights (safetensors or .bin, sharded or not), tokenizer.
CHECKPOINT_FILES = ["*.json", "*.safetensors", "pytorch_model*.bin", "*.txt", "*.model"]
WEIGHT_SUFFIXES = (".safetensors", ".bin")


def is_spec(text: str | Path) -> bool:
    return str(text).startswith(PREFIX)


def spec(repo: str, revision: str = "main") -> str:
    return f"{PREFIX}{repo}@{revision}"


def parse(text: str) -> tuple[str, str]:
    """(repo, revision) of ``hub:<repo>@<revision>`` (revision ``main`` when left out)."""
    body = str(text)[len(PREFIX) :]
    repo, _, revision = body.partition("@")
    if repo.count("/") != 1 or not all(repo.split("/")):
        raise InputError(f"{text}: not hub:<owner>/<name>@<revision>")
    return repo, revision or "main"


def step_of(text: str) -> int | None:
    """A hub checkpoint's step: from its revision (Pythia's step1000, OLMo's step20000-tokens84B),
    else, for the default branch, from the repo's name (MultiBERTs' ...-step_20k)."""
    from sasbert.step_names import step_from_name

    repo, revision = parse(text)
    if revision != "main":
        return step_from_name(revision)
    return step_from_name(repo.split("/")[1])


def snapshot(
    text: str,
    download: bool = False,
    repo_type: str = "model",
    allow_patterns: list[str] = CHECKPOINT_FILES,
    fetch_rule: str = "series_fetch",
) -> Path:
    """The local snapshot folder of a hub checkpoint (or, ``repo_type`` dataset, of a dataset's
    ``allow_patterns`` files): from the HF cache, or (``download``) fetched into it first."""
    from huggingface_hub import constants, snapshot_download

    repo, revision = parse(text)
    cli = f"hf download {repo} --revision {revision}" + (f" --repo-type {repo_type}" if repo_type != "model" else "")
    try:
        return Path(
            snapshot_download(
                repo,
                repo_type=repo_type,
                revision=revision,
                allow_patterns=allow_patterns,
                local_files_only=not download,
            )
        )
    except Exception as err:  # noqa: BLE001 - huggingface_hub raises many kinds (offline, missing, HTTP)
        where = constants.HF_HUB_CACHE
        if download:
            raise InputError(
                f"{repo} at revision {revision}: cannot download it ({type(err).__name__}: {err}). On a machine "
                f"offline, fill the HF cache ({where}) elsewhere: `{cli}`, and copy it here (or point HF_HOME at it)"
            ) from None
        raise InputError(
            f"{repo} at revision {revision}: not in the HF cache ({where}); jobs read it offline. Fetch it first "
            f"where there is internet: `snakemake {fetch_rule}` (the workflow's local rule) or `{cli}`"
        ) from None


def content_id(path: Path) -> str:
    """What identifies a file's content: its blob's name in the HF cache (the cache names an LFS
    file's blob by its SHA-256), or its own SHA-256 outside a cache."""
    import hashlib

    target = Path(path).resolve()
    if Path(path).is_symlink() and target.parent.name == "blobs":
        return target.name
    digest = hashlib.sha256()
    with open(target, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def weights_id(folder: Path) -> str:
    """What identifies a snapshot's weights: the content ids of its weight files."""
    return ",".join(content_id(p) for p in sorted(p for p in folder.iterdir() if p.suffix in WEIGHT_SUFFIXES))


def fetch(specs: list[str], download: bool = True) -> list[dict]:
    """Each spec's snapshot (downloaded where missing), as manifest rows; identical weights flagged."""
    rows, first_with = [], {}
    for text in specs:
        folder = snapshot(text, download=download)
        weights = weights_id(folder)
        same = first_with.setdefault(weights, text)
        if same != text:
            log.warning("%s has the same weights as %s: not two training steps", text, same)
        rows.append(
            {
                "checkpoint": text,
                "folder": str(folder),
                "commit": folder.name,
                "weights": weights,
                "same_weights_as": None if same == text else same,
            }
        )
        log.info("%s: %s", text, folder)
    return rows


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", nargs="+", required=True, metavar="SPEC", help="hub:<repo>@<revision> ...")
    parser.add_argument("--out", required=True, help="manifest JSON: each checkpoint's folder, commit and weights")
    parser.add_argument(
        "--offline", action="store_true", help="only check that the HF cache holds them (download nothing)"
    )


def run(args: argparse.Namespace) -> None:
    from sasbert.atomic import write_text

    for text in args.checkpoint:
        if not is_spec(text):
            raise InputError(f"{text}: not a hub:<repo>@<revision> checkpoint")
    rows = fetch(args.checkpoint, download=not args.offline)
    write_text(json.dumps(rows, indent=2) + "\n", args.out)
