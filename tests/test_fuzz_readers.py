"""Property-based fuzzing of every reader (issue 20, item 8): real files with random corruption
(truncation, byte flips, dropped columns, duplicated or deleted lines, empty sentences), plain and
gzip, must give a parse or an InputError that names the file and the line, never another
exception; and the CLI that reads them leaves no output behind when it refuses one."""

import gzip
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import REPO
from sasbert import textio
from sasbert.data import blimp_pairs, treebank
from sasbert.errors import InputError

UD = REPO / "resources" / "ud" / "UD_English-EWT" / "en_ewt-ud-dev.conllu.gz"
BLIMP = REPO / "resources" / "blimp" / "adjunct_island.jsonl.gz"
TEXT = REPO / "resources" / "text" / "enwiki2015_300k.txt.gz"
FUZZ = settings(
    max_examples=int(os.environ.get("FUZZ_EXAMPLES", 60)), deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


def head_lines(path: Path, n: int) -> list[bytes]:
    with gzip.open(path, "rb") as handle:
        return [handle.readline() for _ in range(n)]


SAMPLES = {  # a few real sentences, paradigm pairs and paragraphs of each input kind
    "conllu": head_lines(UD, 60),
    "blimp": head_lines(BLIMP, 8),
    "text": head_lines(TEXT, 30),
}


def drop_column(line: bytes, index: int) -> bytes:
    columns = line.rstrip(b"\n").split(b"\t")
    del columns[index % len(columns)]
    return b"\t".join(columns) + b"\n"


# One corruption of a file's lines: (kind, a line index, a byte index, a byte value).
corruption = st.tuples(
    st.sampled_from(["flip", "drop_column", "duplicate", "delete", "empty_sentence", "truncate", "nul"]),
    st.integers(0, 10_000),
    st.integers(0, 10_000),
    st.integers(1, 255),
)


def corrupt(lines: list[bytes], edits) -> bytes:
    lines = list(lines)
    truncate_at = None
    for kind, line_index, byte_index, value in edits:
        i = line_index % len(lines)
        if kind == "flip" and lines[i]:
            j = byte_index % len(lines[i])
            lines[i] = lines[i][:j] + bytes([lines[i][j] ^ value]) + lines[i][j + 1 :]
        elif kind == "drop_column":
            lines[i] = drop_column(lines[i], byte_index)
        elif kind == "duplicate":
            lines.insert(i, lines[i])
        elif kind == "delete" and len(lines) > 1:
            del lines[i]
        elif kind == "empty_sentence":
            lines[i:i] = [b"\n", b"# sent_id = empty\n", b"\n"]
        elif kind == "nul" and lines[i]:
            j = byte_index % len(lines[i])
            lines[i] = lines[i][:j] + b"\x00" + lines[i][j:]
        elif kind == "truncate":
            truncate_at = byte_index
    data = b"".join(lines)
    return data[: truncate_at % (len(data) + 1)] if truncate_at is not None else data


READERS = {
    "conllu": lambda path: list(treebank.read_sentences(path)),
    "blimp": blimp_pairs.read_paradigm_file,
    "text": lambda path: list(textio.read_lines(path)),
}
SUFFIX = {"conllu": ".conllu", "blimp": ".jsonl", "text": ".txt"}


def parses_or_names_the_line(kind: str, data: bytes, compress: bool, truncate_gzip: int | None = None) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"input{SUFFIX[kind]}{'.gz' if compress else ''}"
        if compress:
            data = gzip.compress(data, mtime=0)
            if truncate_gzip is not None:
                data = data[: truncate_gzip % (len(data) + 1)]
        path.write_bytes(data)
        try:
            READERS[kind](path)
        except InputError as err:
            assert re.match(rf"{re.escape(str(path))}:\d+: \S", str(err)), str(err)


@pytest.mark.parametrize("kind", SAMPLES)
@FUZZ
@given(edits=st.lists(corruption, min_size=1, max_size=4), compress=st.booleans())
def test_a_corrupted_file_parses_or_names_its_line(kind, edits, compress):
    parses_or_names_the_line(kind, corrupt(SAMPLES[kind], edits), compress)


@pytest.mark.parametrize("kind", SAMPLES)
@FUZZ
@given(cut=st.integers(0, 100_000), flip=st.tuples(st.integers(0, 100_000), st.integers(1, 255)))
def test_a_corrupted_gzip_stream_parses_or_names_its_line(kind, cut, flip):
    """Corruption of the compressed bytes: a cut stream, or a flipped byte inside it."""
    parses_or_names_the_line(kind, b"".join(SAMPLES[kind]), compress=True, truncate_gzip=cut)
    compressed = bytearray(gzip.compress(b"".join(SAMPLES[kind]), mtime=0))
    index = flip[0] % len(compressed)
    compressed[index] ^= flip[1]
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"input{SUFFIX[kind]}.gz"
        path.write_bytes(bytes(compressed))
        try:
            READERS[kind](path)
        except InputError as err:
            assert re.match(rf"{re.escape(str(path))}(:\d+)?: \S", str(err)), str(err)


def test_the_readers_accept_their_samples_as_they_are():
    """The samples are real, valid files: the fuzzing starts from a parse, not from an error."""
    for kind, lines in SAMPLES.items():
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / f"input{SUFFIX[kind]}"
            path.write_bytes(b"".join(lines))
            assert READERS[kind](path)


@pytest.mark.parametrize(
    "kind, flags",
    [("conllu", ["--kind", "conllu"]), ("text", ["--kind", "text", "--min-words", "1"])],
)
def test_the_corpus_cli_refuses_a_cut_gzip_without_traceback_or_output(tmp_path, kind, flags):
    data = gzip.compress(b"".join(SAMPLES[kind]) * 20, mtime=0)
    source = tmp_path / f"input{SUFFIX[kind]}.gz"
    source.write_bytes(data[: len(data) // 2])
    out = tmp_path / "shard-0.parquet"
    result = subprocess.run(
        [sys.executable, "-m", "sasbert", "corpus", *flags, "--inputs", str(source), "--out", str(out)],
        capture_output=True,
        text=True,
    )
    assert result.returncode != 0
    assert re.search(rf"{re.escape(str(source))}:\d+: cannot read", result.stderr), result.stderr
    assert "Traceback" not in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == [source.name]
