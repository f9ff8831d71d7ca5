"""Preparing a pre-tokenized corpus for pretraining: checked, converted rows as Arrow files, the validation rows spread evenly, a manifest and the tokenizer."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from sasbert.atomic import atomic_path, write_text
from sasbert.data.pretokenized.alignment import convert_heads
from sasbert.data.pretokenized.files import SPLITS, open_file
from sasbert.data.pretokenized.rows import OUTPUT_TYPES, batch_arrays, check_ranges, check_schema, evenly_spaced
from sasbert.errors import InputError

log = logging.getLogger(__name__)


MANIFEST = "manifest.json"  # the name pretraining looks for in a dataset folder (pretrain.PRETOKENIZED_MANIFEST)


MANIFEST_FORMAT = "sasbert-pretokenized/1"


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
