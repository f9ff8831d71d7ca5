"""Parse speed (words/s) per backend and per number of shards, as the pipeline runs it.

    python benchmarks/parse_speed.py [--words 20000] [--shards 1 2 4] [--jobs 2] [--backends spacy stanza conllu]
        [--stanza-dir DIR --stanza-package PKG]

Takes the first --words words of the vendored Wikipedia slice (spacy, stanza) or the first sentences
of UD EWT train with about as many words (conllu), writes them as N corpus shards with ``sasbert corpus``,
then runs one ``sasbert parse`` process per shard, at most --jobs at a time (what
``snakemake --cores J`` does), and times the whole stage: words/s = parsed words / wall seconds,
model loading included (each shard job loads its own pipeline). The last line is the headline.

stanza's English models cannot be fetched on a machine without the internet; without --stanza-dir
the benchmark trains the tests' tiny stanza models (tests/stanza_tiny.py: 1-layer, 8-32 units), whose
speed is a lower bound on pipeline overhead, not the speed of the real (much larger) models.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
SASBERT = [sys.executable, "-m", "sasbert"]
INPUTS = {
    "spacy": ("text", str(ROOT / "resources/text/enwiki2015_300k.txt.gz")),
    "stanza": ("text", str(ROOT / "resources/text/enwiki2015_300k.txt.gz")),
    "conllu": ("conllu", str(ROOT / "resources/ud/UD_English-EWT/en_ewt-ud-train.conllu.gz")),
}


def make_shards(backend: str, words: int, n_shards: int, folder: Path) -> list[str]:
    kind, path = INPUTS[backend]
    outs = [str(folder / f"shard-{i}.parquet") for i in range(n_shards)]
    limit = ["--max-words", str(words)] if kind == "text" else ["--max-units", str(max(1, words // 16))]
    cmd = [*SASBERT, "corpus", "--kind", kind, "--inputs", path, *limit, "--out", *outs]
    subprocess.run(cmd, check=True, capture_output=True, env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
    return outs


def tiny_stanza_resources(folder: Path) -> tuple[str, str]:
    """Train the tests' tiny stanza models and lay them out as a stanza_resources folder."""
    sys.path.insert(0, str(ROOT / "tests"))
    from stanza_tiny import PACKAGE, build_tiny_stanza_models, install_as_resources

    paths = build_tiny_stanza_models(ROOT / "resources/ud/UD_English-EWT/en_ewt-ud-train.conllu.gz", folder / "models")
    return str(install_as_resources(paths, folder / "stanza_resources")), PACKAGE


def parse_all(backend: str, shards: list[str], jobs: int, folder: Path, extra: list[str]) -> tuple[float, int]:
    def one(shard: str) -> str:
        out = shard.replace("shard-", "parsed-")
        cmd = [*SASBERT, "parse", "--backend", backend, "--shard", shard, "--out", out, *extra]
        env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"}
        subprocess.run(cmd, check=True, capture_output=True, env=env)
        return out

    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        outs = list(pool.map(one, shards))
    seconds = time.perf_counter() - start
    words = sum(int(pd.read_parquet(o)["words"].map(len).sum()) for o in outs)
    return seconds, words


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--words", type=int, default=20000)
    parser.add_argument("--shards", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--jobs", type=int, default=min(4, os.cpu_count() or 1), help="shard jobs at a time")
    parser.add_argument("--backends", nargs="+", default=["spacy", "stanza", "conllu"], choices=sorted(INPUTS))
    parser.add_argument("--stanza-dir", default=None, help="a stanza_resources folder (default: train tiny models)")
    parser.add_argument("--stanza-package", default="default")
    parser.add_argument("--stanza-device", default="auto")
    args = parser.parse_args()

    flags = {backend: [] for backend in args.backends}
    scratch = tempfile.TemporaryDirectory()
    if "stanza" in args.backends:
        stanza_dir, package = args.stanza_dir, args.stanza_package
        if stanza_dir is None:
            stanza_dir, package = tiny_stanza_resources(Path(scratch.name))
            print(f"stanza: the tests' tiny models (trained now, {stanza_dir}); real models are far slower")
        flags["stanza"] = [
            "--stanza-dir",
            stanza_dir,
            "--stanza-package",
            package,
            "--stanza-device",
            args.stanza_device,
        ]

    print(f"{os.cpu_count()} CPUs, {args.jobs} parse jobs at a time, ~{args.words} words per run")
    print(f"{'backend':8s} {'shards':>6s} {'words':>8s} {'seconds':>8s} {'words/s':>8s}")
    rates: dict[tuple[str, int], float] = {}
    for backend in args.backends:
        for n in args.shards:
            with tempfile.TemporaryDirectory() as tmp:
                shards = make_shards(backend, args.words, n, Path(tmp))
                seconds, words = parse_all(backend, shards, args.jobs, Path(tmp), flags[backend])
            rates[(backend, n)] = words / seconds
            print(f"{backend:8s} {n:6d} {words:8d} {seconds:8.1f} {words / seconds:8.0f}", flush=True)
    head = args.backends[0]
    best = max((n for b, n in rates if b == head), key=lambda n: rates[(head, n)])
    print(
        f"headline: {head} parses {rates[(head, args.shards[0])]:.0f} words/s with {args.shards[0]} shard(s), "
        f"{rates[(head, best)]:.0f} words/s best ({best} shards, {args.jobs} jobs at a time, model load included)"
    )


if __name__ == "__main__":
    main()
