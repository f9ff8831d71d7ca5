"""Where a pre-tokenized corpus's files are: local globs or a hub dataset's split files in the HF cache (fetched once), and a sample of them."""

from __future__ import annotations

import fnmatch
import glob
import json
from pathlib import Path

from sasbert.data.pretokenized.rows import BATCH_ROWS, evenly_spaced
from sasbert.errors import InputError

SPLITS = ("train", "validation")


def source_files(options: dict, fetched: str | None = None, splits=SPLITS) -> dict[str, list[str]]:
    """Each split's files, in order: a hub dataset's from the fetch manifest, local files (globs
    sorted), or the arrow files of a save_to_disk DatasetDict."""
    source = options["pretokenized"]
    if "hub" in source:
        if fetched is None:
            raise InputError("corpus.pretokenized.hub: the fetch manifest is needed (--fetched)")
        return json.loads(Path(fetched).read_text())["files"]
    if "data_files" in source:
        files = {}
        for split in splits:
            matched = []
            for pattern in source["data_files"].get(split) or []:
                found = sorted(glob.glob(pattern, recursive=True)) if glob.has_magic(pattern) else [pattern]
                if not found or not all(Path(f).is_file() for f in found):
                    raise InputError(f"corpus.pretokenized.data_files.{split}: no such file: {pattern}")
                matched += found
            if not matched:
                raise InputError(f"corpus.pretokenized.data_files.{split}: no files given")
            files[split] = matched
        return files
    if "path" in source:
        from datasets import load_from_disk

        try:
            data = load_from_disk(source["path"])
        except Exception as err:  # noqa: BLE001 - datasets raises several kinds for a bad folder
            raise InputError(f"corpus.pretokenized.path: {source['path']}: not a save_to_disk folder ({err})") from None
        missing = [s for s in splits if s not in data]
        if missing:
            raise InputError(f"corpus.pretokenized.path: {source['path']} has no {', '.join(missing)} split")
        return {s: [f["filename"] for f in data[s].cache_files] for s in splits}
    raise InputError("corpus.pretokenized: give one of hub, data_files and path")


def open_file(path: str):
    """(schema, number of rows, a function yielding record batches) of a parquet or arrow file."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    def unreadable(err):
        return InputError(f"{path}: not a readable parquet or arrow file ({type(err).__name__}: {err})")

    try:
        if str(path).endswith(".parquet"):
            handle = pq.ParquetFile(path)
            schema, n_rows = handle.schema_arrow, handle.metadata.num_rows

            def read(columns):
                return handle.iter_batches(batch_size=BATCH_ROWS, columns=columns)
        else:
            source = pa.memory_map(str(path))
            try:
                reader = pa.ipc.open_stream(source)  # what datasets writes
            except pa.ArrowInvalid:
                reader = pa.ipc.open_file(source)
            table = reader.read_all()
            schema, n_rows = table.schema, table.num_rows

            def read(columns):
                return table.select(columns).to_batches(BATCH_ROWS)
    except (OSError, pa.ArrowException) as err:
        raise unreadable(err) from None

    def batches(columns):
        try:  # a file cut short or corrupt part-way fails here, not on opening
            yield from read(columns)
        except (OSError, pa.ArrowException) as err:
            raise unreadable(err) from None

    return schema, n_rows, batches


def cached_split_files(hub: dict, splits=SPLITS, download: bool = False) -> tuple[Path, dict[str, list[str]]]:
    """(snapshot folder, each split's files) of a hub dataset in the HF cache (``download``: fetched
    into it first where missing)."""
    from sasbert import hub as sashub

    patterns = {split: hub["files"][split] for split in splits}
    folder = sashub.snapshot(
        sashub.spec(hub["repo"], hub["revision"]),
        download=download,
        repo_type="dataset",
        allow_patterns=list(patterns.values()),
        fetch_rule="pretokenized_fetch",
    )
    present = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())
    files = {}
    for split, pattern in patterns.items():
        names = [name for name in present if fnmatch.fnmatch(name, pattern)]
        if not names:
            raise InputError(
                f"corpus.pretokenized.hub.files.{split}: {pattern!r} matches no file of {hub['repo']} at "
                f"{hub['revision']} in the HF cache ({folder})"
            )
        files[split] = [str(folder / name) for name in names]
    return folder, files


def fetch(hub: dict, download: bool = True) -> dict:
    """A hub dataset's split files in the HF cache (downloaded where missing): the fetch manifest."""
    folder, files = cached_split_files(hub, download=download)
    return {"repo": hub["repo"], "revision": hub["revision"], "commit": folder.name, "files": files}


def sample_files(options: dict, n_files: int, download: bool) -> list[str]:
    """Up to ``n_files`` train files spread over the split. A hub dataset downloads just those
    (offline: those in the HF cache)."""
    source = options["pretokenized"]
    if "hub" not in source:
        train = source_files(options, splits=["train"])["train"]
        return [train[i] for i in evenly_spaced(len(train), n_files)]
    from huggingface_hub import HfApi, hf_hub_download

    hub = source["hub"]
    pattern = hub["files"]["train"]
    if download:
        try:
            names = HfApi().list_repo_files(hub["repo"], repo_type="dataset", revision=hub["revision"])
        except Exception as err:  # noqa: BLE001 - offline, missing repo, HTTP
            raise InputError(
                f"{hub['repo']}: cannot list its files ({type(err).__name__}: {err}); --offline reads the HF cache"
            ) from None
        names = sorted(n for n in names if fnmatch.fnmatch(n, pattern))
        if not names:
            raise InputError(f"corpus.pretokenized.hub.files.train: {pattern!r} matches no file of {hub['repo']}")
        chosen = [names[i] for i in evenly_spaced(len(names), n_files)]
        return [hf_hub_download(hub["repo"], n, repo_type="dataset", revision=hub["revision"]) for n in chosen]
    train = cached_split_files(hub, splits=["train"])[1]["train"]
    return [train[i] for i in evenly_spaced(len(train), n_files)]
