"""Pre-tokenized, pre-parsed corpora (``corpus.backend: pretokenized``): rows of pieces that carry
their dependency heads already, as the authors released their training data
(``angie-chen55/bert_pretraining_data``: BookCorpus + Wikipedia in bert-base-uncased pieces, rows of
512; Wikipedia rows parsed, BookCorpus rows all -1). No corpus, parse or tokenize job runs.

The schema (one row = one training block): ``input_ids``, ``attention_mask`` and ``heads`` (-1 = no
arc), lists of integers of length ``tokenizer.seq_len``; ``token_type_ids`` and ``relns`` may be
there too (the authors' int8 columns). Pretraining does not read them: a row with token types other
than 0 is counted, and the prepare log warns, because the model here is given none.

Commands (``sasbert pretokenized ...``):
- ``fetch``: a hub dataset's split files into the HF cache (the workflow's local rule
  ``pretokenized_fetch``; offline it only checks the cache), and a manifest of them.
- ``prepare``: checks every row of every file (columns, integer types, row length, heads and ids in
  range; an error names the file, row and column), converts ``heads`` into the pipeline's
  convention, and writes the train rows and ``tokenizer.validation_blocks`` validation rows spread
  evenly over the validation split as Arrow files, which pretraining memory-maps (one pass over the
  data, batch by batch: nothing the size of the corpus is ever in memory), a manifest pretraining
  reads and the tokenizer (from ``tokenizer.vocab``).
- ``check``: for a sample of rows, the fraction of arcs whose two ends are word-initial pieces (not
  ``##`` continuations, not special) under each alignment, to settle ``heads_alignment``.

Alignment (``heads_alignment``) -> (dependent offset d, parent offset v): the entry ``heads[j] = h``
is the arc from the piece at position ``j + d`` to the piece at position ``h + v``:
- ``input_ids`` (0, 0): heads aligned with input_ids, values positions in the row; the pipeline's
  own convention (``sasbert.data.tokenization``: positions count [CLS]).
- ``after_cls`` (1, 0): ``heads[t-1]`` belongs to the piece at t, its value a position in the row;
  what the authors' regularizer reads (query t with ``heads[:, :511]`` at t - 1, the value as key).
- ``after_cls_both`` (1, 1): as after_cls, with the value counted after [CLS] too.

Conversion into the pipeline's convention (``heads[t] = p``: the piece at t has its parent at p,
-1 elsewhere): an arc is kept when both ends are inside the row, distinct, and neither is [CLS],
[SEP], [PAD] or a position the attention mask hides. The others are dropped (and counted): the
method's arcs join word pieces (docs/method.md, "Head mapping policy"), and under the right
alignment none of them should occur; the authors' code kept them (a -1 entry read a zero, values
past 511 were clamped to 511).
"""

from __future__ import annotations

import argparse
import fnmatch
import glob
import json
import logging
from pathlib import Path

import numpy as np

from sasbert.atomic import atomic_path, write_text
from sasbert.errors import InputError
from sasbert.options import add_option_flags
from sasbert.options import default as schema_default
from sasbert.options import resolve as resolve_options

log = logging.getLogger(__name__)

ALIGNMENTS = {"input_ids": (0, 0), "after_cls": (1, 0), "after_cls_both": (1, 1)}
REQUIRED = ("input_ids", "attention_mask", "heads")
OPTIONAL = ("token_type_ids", "relns")
SPLITS = ("train", "validation")
# What pretraining reads, in the narrowest types that hold it (heads < seq_len <= 32767)
OUTPUT_TYPES = {"input_ids": "int32", "attention_mask": "int8", "heads": "int16"}
MANIFEST = "manifest.json"  # the name pretraining looks for in a dataset folder (pretrain.PRETOKENIZED_MANIFEST)
MANIFEST_FORMAT = "sasbert-pretokenized/1"
BATCH_ROWS = 1024


# ------------------------------------------------------------------------------------------------
# Where the rows are: each split's files


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


def check_schema(path: str, schema) -> list[str]:
    """The columns to read from a file; an InputError names a missing column or a wrong type."""
    import pyarrow.types as pat

    columns = []
    for name in (*REQUIRED, *OPTIONAL):
        if name not in schema.names:
            if name in REQUIRED:
                raise InputError(
                    f"{path}: no column {name!r} (it has {', '.join(schema.names)}; needed: {', '.join(REQUIRED)})"
                )
            continue
        kind = schema.field(name).type
        is_list = pat.is_list(kind) or pat.is_large_list(kind) or pat.is_fixed_size_list(kind)
        if not is_list:
            raise InputError(f"{path}: column {name!r} is {kind}, not a list of integers")
        if not pat.is_integer(kind.value_type):
            raise InputError(f"{path}: column {name!r} holds {kind.value_type} values, not integers")
        columns.append(name)
    return columns


def batch_arrays(path: str, batch, first_row: int, seq_len: int) -> dict[str, np.ndarray]:
    """A record batch's columns as (rows, seq_len) arrays; an InputError names a row of the wrong
    length or with missing values."""
    import pyarrow.compute as pc

    arrays = {}
    for name in batch.schema.names:
        column = batch.column(name)
        lengths = pc.list_value_length(column).to_numpy(zero_copy_only=False)
        bad = np.flatnonzero(np.isnan(lengths.astype(float)) | (lengths != seq_len))
        if len(bad):
            row = int(bad[0])
            what = "is missing" if column[row].as_py() is None else f"has {int(lengths[row])} values"
            raise InputError(
                f"{path}: row {first_row + row}: column {name!r} {what}, not tokenizer.seq_len ({seq_len})"
            )
        values = pc.list_flatten(column)
        if values.null_count:  # every row holds seq_len values: value k is in row k // seq_len
            row = int(np.flatnonzero(values.is_null().to_numpy(zero_copy_only=False))[0]) // seq_len
            raise InputError(f"{path}: row {first_row + row}: column {name!r} holds a missing value")
        arrays[name] = values.to_numpy().astype(np.int64).reshape(len(batch), seq_len)
    return arrays


def check_ranges(path: str, arrays: dict, first_row: int, seq_len: int, vocab_size: int, out_of_range: str) -> int:
    """Stop at an input id outside the vocabulary, or (``out_of_range: error``) a heads value
    outside -1 .. seq_len - 1; with ``drop`` those heads become -1. Returns how many were dropped."""
    ids = arrays["input_ids"]
    bad = np.argwhere((ids < 0) | (ids >= vocab_size))
    if len(bad):
        row, col = bad[0]
        raise InputError(
            f"{path}: row {first_row + row}: column 'input_ids' holds {ids[row, col]} at position {col}, "
            f"outside the vocabulary of tokenizer.vocab ({vocab_size} pieces)"
        )
    heads = arrays["heads"]
    outside = (heads < -1) | (heads >= seq_len)
    if outside.any() and out_of_range == "error":
        row, col = np.argwhere(outside)[0]
        raise InputError(
            f"{path}: row {first_row + row}: column 'heads' holds {heads[row, col]} at position {col}, outside "
            f"-1 .. {seq_len - 1} (corpus.pretokenized.out_of_range: drop drops such arcs)"
        )
    heads[outside] = -1
    return int(outside.sum())


# ------------------------------------------------------------------------------------------------
# Alignment and conversion


def special_positions(input_ids: np.ndarray, attention_mask: np.ndarray, special_ids) -> np.ndarray:
    """Positions no arc may touch: special pieces ([CLS], [SEP], [PAD], ...) and masked positions."""
    return np.isin(input_ids, list(special_ids)) | (attention_mask == 0)


def arcs_under(heads: np.ndarray, alignment: str):
    """(row, dependent, parent, inside) of every labelled entry read under ``alignment``; ``inside``:
    both ends fall inside the row."""
    d, v = ALIGNMENTS[alignment]
    rows, index = np.nonzero(heads >= 0)
    dependent, parent = index + d, heads[rows, index] + v
    inside = (dependent < heads.shape[1]) & (parent < heads.shape[1])
    return rows, dependent, parent, inside


def convert_heads(
    heads: np.ndarray, input_ids: np.ndarray, attention_mask: np.ndarray, alignment: str, special_ids
) -> tuple[np.ndarray, dict]:
    """The rows' heads in the pipeline's convention (see the module docstring), and counts of the
    arcs kept and of those dropped for each reason."""
    rows, dependent, parent, inside = arcs_under(heads, alignment)
    special = special_positions(input_ids, attention_mask, special_ids)
    r, dep, par = rows[inside], dependent[inside], parent[inside]
    touches_special = special[r, dep] | special[r, par]
    self_loop = (dep == par) & ~touches_special
    keep = ~touches_special & ~self_loop
    out = np.full(heads.shape, -1, dtype=np.int64)
    out[r[keep], dep[keep]] = par[keep]
    counts = {
        "arcs": len(rows),
        "arcs_kept": int(keep.sum()),
        "dropped_outside_row": int((~inside).sum()),
        "dropped_special": int(touches_special.sum()),
        "dropped_self_loop": int(self_loop.sum()),
    }
    return out, counts


def word_initial_pieces(tokenizer) -> np.ndarray:
    """By piece id: True where a piece can start a word (not a ``##`` continuation, not special)."""
    vocab = tokenizer.get_vocab()
    initial = np.zeros(max(vocab.values()) + 1, dtype=bool)
    for piece, index in vocab.items():
        initial[index] = not piece.startswith("##")
    initial[list(tokenizer.all_special_ids)] = False
    return initial


def alignment_counts(arrays: dict, alignment: str, initial: np.ndarray) -> dict:
    """Over a batch's labelled entries read under ``alignment``: how many have both ends on
    word-initial pieces, only the dependent, only the parent (an end outside the row is not)."""
    rows, dependent, parent, inside = arcs_under(arrays["heads"], alignment)
    ids = arrays["input_ids"]
    length = ids.shape[1]
    dep_initial = inside & initial[ids[rows, np.minimum(dependent, length - 1)]]
    par_initial = inside & initial[ids[rows, np.minimum(parent, length - 1)]]
    return {
        "arcs": len(rows),
        "both_word_initial": int((dep_initial & par_initial).sum()),
        "dependent_word_initial": int(dep_initial.sum()),
        "parent_word_initial": int(par_initial.sum()),
        "outside_row": int((~inside).sum()),
        "self_loop": int((inside & (dependent == parent)).sum()),
    }


# ------------------------------------------------------------------------------------------------
# fetch


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


# ------------------------------------------------------------------------------------------------
# prepare


def evenly_spaced(n_rows: int, n_wanted: int) -> np.ndarray:
    from sasbert.data.tokenization import validation_indices

    return validation_indices(n_rows, min(n_wanted, n_rows))


def write_split(
    files: list[str],
    out_file: Path,
    seq_len: int,
    tokenizer,
    options: dict,
    keep_rows: np.ndarray | None,
    stats: dict,
) -> int:
    """Check and convert the rows of a split's files (only ``keep_rows``, global row numbers, when
    given) into one Arrow stream file; returns the rows written."""
    import pyarrow as pa

    schema = pa.schema([(name, pa.list_(getattr(pa, kind)())) for name, kind in OUTPUT_TYPES.items()])
    special_ids = tokenizer.all_special_ids
    written = 0
    first_row = 0
    with pa.OSFile(str(out_file), "wb") as sink, pa.ipc.new_stream(sink, schema) as writer:
        for path in files:
            file_schema, n_rows, batches = open_file(path)
            columns = check_schema(path, file_schema)
            local = None
            if keep_rows is not None:  # every row is checked, only these are written
                local = keep_rows[(keep_rows >= first_row) & (keep_rows < first_row + n_rows)] - first_row
            start = 0
            for batch in batches(columns):
                arrays = batch_arrays(path, batch, start, seq_len)
                stats["heads_out_of_range_dropped"] += check_ranges(
                    path, arrays, start, seq_len, tokenizer.vocab_size, options["out_of_range"]
                )
                if local is not None:
                    take = local[(local >= start) & (local < start + len(batch))] - start
                    arrays = {name: values[take] for name, values in arrays.items()}
                start += len(batch)
                if not len(arrays["input_ids"]):
                    continue
                heads, counts = convert_heads(
                    arrays["heads"],
                    arrays["input_ids"],
                    arrays["attention_mask"],
                    options["heads_alignment"],
                    special_ids,
                )
                for key, value in counts.items():
                    stats[key] += value
                stats["rows_with_arcs"] += int((heads >= 0).any(axis=1).sum())
                if "token_type_ids" in arrays:
                    stats["rows_with_token_types"] += int((arrays["token_type_ids"] != 0).any(axis=1).sum())
                out = {"input_ids": arrays["input_ids"], "attention_mask": arrays["attention_mask"], "heads": heads}
                offsets = pa.array(np.arange(0, len(heads) * seq_len + 1, seq_len, dtype=np.int32))
                lists = [
                    pa.ListArray.from_arrays(offsets, out[n].reshape(-1).astype(k)) for n, k in OUTPUT_TYPES.items()
                ]
                writer.write_batch(pa.record_batch(lists, schema=schema))
                written += len(heads)
            first_row += n_rows
    return written


STAT_KEYS = (
    "arcs",
    "arcs_kept",
    "dropped_outside_row",
    "dropped_special",
    "dropped_self_loop",
    "rows_with_arcs",
    "rows_with_token_types",
    "heads_out_of_range_dropped",
)


def prepare(
    files: dict[str, list[str]],
    options: dict,
    tokenizer_options: dict,
    vocab: str,
    out_dataset: Path,
    out_tokenizer: Path,
    source: dict,
) -> dict:
    """Write ``out_dataset`` (manifest.json, train.arrow, validation.arrow) and ``out_tokenizer``
    (from ``vocab``); returns the manifest."""
    from sasbert.data.tokenization import load_tokenizer
    from sasbert.hub import content_id

    seq_len = tokenizer_options["seq_len"]
    if seq_len > np.iinfo(np.int16).max:
        raise InputError(f"tokenizer.seq_len: {seq_len} is too long for the pretokenized backend's int16 heads")
    tokenizer = load_tokenizer(vocab, tokenizer_options["lowercase"])
    splits, stats = {}, {}
    with atomic_path(out_dataset, is_dir=True) as tmp:
        for split in SPLITS:
            keep = None
            if split == "validation":
                total = sum(open_file(f)[1] for f in files[split])
                keep = evenly_spaced(total, tokenizer_options["validation_blocks"])
            stats[split] = dict.fromkeys(STAT_KEYS, 0)
            rows = write_split(files[split], tmp / f"{split}.arrow", seq_len, tokenizer, options, keep, stats[split])
            if rows == 0 and split == "train":
                raise InputError(f"corpus.pretokenized: the train split has no rows ({', '.join(files[split])})")
            splits[split] = {"files": [f"{split}.arrow"], "rows": rows}
            if stats[split]["rows_with_token_types"]:
                log.warning(
                    "%s: %d rows have token_type_ids other than 0; pretraining gives the model none",
                    split,
                    stats[split]["rows_with_token_types"],
                )
            log.info("%s: %d rows, %s", split, rows, json.dumps(stats[split]))
        manifest = {
            "format": MANIFEST_FORMAT,
            "source": source,
            "source_files": {s: [Path(f).name for f in files[s]] for s in SPLITS},
            "seq_len": seq_len,
            "heads_alignment": options["heads_alignment"],
            "out_of_range": options["out_of_range"],
            "splits": splits,
            "stats": stats,
            # what the rows written are: pretraining's run identity hashes this manifest, not the rows
            "content": {name: content_id(tmp / name) for s in SPLITS for name in splits[s]["files"]},
        }
        write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", tmp / MANIFEST)
    with atomic_path(out_tokenizer, is_dir=True) as tmp:
        tokenizer.save_pretrained(str(tmp))
    return manifest


# ------------------------------------------------------------------------------------------------
# check


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


def check_alignment(files: list[str], tokenizer, rows_per_file: int) -> dict:
    """Per alignment, the counts of ``alignment_counts`` over ``rows_per_file`` rows spread over
    each file (rows without arcs, BookCorpus's, are skipped), and rows read."""
    initial = word_initial_pieces(tokenizer)
    totals = {name: {} for name in ALIGNMENTS}
    read = labelled = 0
    for path in files:
        schema, n_rows, batches = open_file(path)
        columns = [c for c in check_schema(path, schema) if c in ("input_ids", "heads")]
        wanted = evenly_spaced(n_rows, rows_per_file)
        start = 0
        for batch in batches(columns):
            take = wanted[(wanted >= start) & (wanted < start + len(batch))] - start
            if len(take):
                seq_len = len(batch.column("input_ids")[0])
                arrays = batch_arrays(path, batch.take(take), start, seq_len)
                # ids outside the vocabulary stop the check; heads out of range are left out of it
                check_ranges(path, arrays, start, seq_len, len(initial), "drop")
                read += len(take)
                labelled += int((arrays["heads"] >= 0).any(axis=1).sum())
                for name in ALIGNMENTS:
                    for key, value in alignment_counts(arrays, name, initial).items():
                        totals[name][key] = totals[name].get(key, 0) + value
            start += len(batch)
    return {"rows": read, "rows_with_arcs": labelled, "alignments": totals}


def alignment_report(result: dict) -> tuple[str, str | None]:
    """The check's table as text, and the alignment under which most arcs join word-initial pieces."""
    lines = [
        f"rows read: {result['rows']}, with arcs: {result['rows_with_arcs']}",
        f"{'heads_alignment':<16} {'arcs':>9} {'both ends word-initial':>23} {'dependent':>10} {'parent':>8} "
        f"{'self-loops':>11} {'outside row':>12}",
    ]
    best, best_fraction = None, -1.0
    for name, counts in result["alignments"].items():
        arcs = counts.get("arcs", 0)
        if not arcs:
            continue

        def share(key, arcs=arcs, counts=counts):
            return counts[key] / arcs

        lines.append(
            f"{name:<16} {arcs:>9} {share('both_word_initial'):>23.4f} {share('dependent_word_initial'):>10.4f} "
            f"{share('parent_word_initial'):>8.4f} {share('self_loop'):>11.4f} {share('outside_row'):>12.4f}"
        )
        if share("both_word_initial") > best_fraction:
            best, best_fraction = name, share("both_word_initial")
    if best is None:
        lines.append("no arcs in the rows read (BookCorpus rows have none): sample more files (--files)")
    else:
        lines.append(f"best: heads_alignment: {best} (set corpus.pretokenized.heads_alignment)")
    return "\n".join(lines), best


# ------------------------------------------------------------------------------------------------
# command line

SOURCE_FLAGS = [
    ("--repo", {"option": "pretokenized.hub.repo"}, "a hub dataset repo (owner/name)"),
    ("--revision", {"option": "pretokenized.hub.revision"}, "its revision"),
    ("--train-files", {"nargs": "+", "option": "pretokenized.data_files.train"}, "local train files (globs)"),
    (
        "--validation-files",
        {"nargs": "+", "option": "pretokenized.data_files.validation"},
        "local validation files (globs)",
    ),
    ("--path", {"option": "pretokenized.path"}, "a save_to_disk DatasetDict folder"),
    ("--heads-alignment", {"option": "pretokenized.heads_alignment", "choices": list(ALIGNMENTS)}, ""),
    ("--out-of-range", {"option": "pretokenized.out_of_range", "choices": ["error", "drop"]}, ""),
]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="pretokenized_command", required=True, metavar="COMMAND")
    fe = sub.add_parser("fetch", help="fetch a hub dataset's split files into the HF cache, once")
    add_option_flags(fe, "corpus", SOURCE_FLAGS[:2])
    fe.add_argument("--offline", action="store_true", help="only check that the HF cache holds them")
    fe.add_argument("--out", required=True, help="fetch manifest JSON: each split's files in the cache")

    pr = sub.add_parser("prepare", help="check every row, convert heads, write Arrow files pretraining memory-maps")
    add_option_flags(pr, "corpus", SOURCE_FLAGS)
    pr.add_argument("--fetched", help="a hub dataset's fetch manifest (from fetch)")
    pr.add_argument("--vocab", required=True, help="the vocab.txt of the rows' pieces")
    pr.add_argument(
        "--tokenizer-options",
        metavar="JSON",
        required=True,
        help="the config's tokenizer section (seq_len, lowercase, validation_blocks) as JSON",
    )
    pr.add_argument("--out-dataset", required=True, help="output folder: manifest.json, train.arrow, validation.arrow")
    pr.add_argument("--out-tokenizer", required=True, help="output folder: the tokenizer (HF format)")

    ch = sub.add_parser(
        "check",
        help="fraction of arcs whose ends are word-initial pieces under each heads_alignment",
        description="For a sample of train rows, the fraction of arcs whose two ends are word-initial "
        "pieces (not ## continuations, not special) under each heads_alignment: the right alignment "
        "puts (nearly) every arc on word-initial pieces. A hub dataset downloads only the files sampled.",
    )
    add_option_flags(ch, "corpus", SOURCE_FLAGS[:5])
    ch.add_argument("--vocab", required=True, help="the vocab.txt of the rows' pieces")
    ch.add_argument(
        "--lowercase",
        action=argparse.BooleanOptionalAction,
        default=schema_default("tokenizer", "lowercase"),
        help="lowercase as the vocab does (default: tokenizer.lowercase's)",
    )
    ch.add_argument("--files", type=int, default=3, help="train files sampled, spread over the split")
    ch.add_argument("--rows", type=int, default=300, help="rows read from each file, spread over it")
    ch.add_argument("--offline", action="store_true", help="read the HF cache only")
    ch.add_argument("--out", help="also write the counts as JSON")


def source_options(args) -> dict:
    options = resolve_options(args, "corpus")
    given = [k for k in ("hub", "data_files", "path") if k in options.get("pretokenized", {})]
    if len(given) != 1:
        raise InputError("corpus.pretokenized: give exactly one of hub (--repo), data_files and path")
    return options


def run(args) -> None:
    options = source_options(args)
    source = options["pretokenized"]
    if args.pretokenized_command == "fetch":
        if "hub" not in source:
            raise InputError("pretokenized fetch: corpus.pretokenized.hub (--repo) is needed")
        write_text(json.dumps(fetch(source["hub"], download=not args.offline), indent=2) + "\n", args.out)
    elif args.pretokenized_command == "prepare":
        try:
            tokenizer_options = json.loads(args.tokenizer_options)
        except json.JSONDecodeError as err:
            raise InputError(f"--tokenizer-options: not JSON ({err.msg})") from None
        files = source_files(options, args.fetched)
        described = (
            {k: v for k, v in json.loads(Path(args.fetched).read_text()).items() if k != "files"}
            if "hub" in source
            else {k: v for k, v in source.items() if k in ("data_files", "path")}
        )
        prepare(
            files, source, tokenizer_options, args.vocab, Path(args.out_dataset), Path(args.out_tokenizer), described
        )
    else:
        from sasbert.data.tokenization import load_tokenizer

        tokenizer = load_tokenizer(args.vocab, args.lowercase)
        files = sample_files(options, args.files, download=not args.offline)
        result = check_alignment(files, tokenizer, args.rows)
        text, best = alignment_report(result)
        print(text)
        if args.out:
            write_text(json.dumps({**result, "best": best, "files": [Path(f).name for f in files]}, indent=2), args.out)
