"""Checking a pre-tokenized corpus's rows batch by batch: columns, integer types, row length, ids and heads in range; an error names the file, row and column."""

from __future__ import annotations

import numpy as np

from sasbert.errors import InputError

REQUIRED = ("input_ids", "attention_mask", "heads")


OPTIONAL = ("token_type_ids", "relns")


# What pretraining reads, in the narrowest types that hold it (heads < seq_len <= 32767)
OUTPUT_TYPES = {"input_ids": "int32", "attention_mask": "int8", "heads": "int16"}


BATCH_ROWS = 1024


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


def evenly_spaced(n_rows: int, n_wanted: int) -> np.ndarray:
    from sasbert.data.tokenization import validation_indices

    return validation_indices(n_rows, min(n_wanted, n_rows))
