"""Atomic outputs: a killed write leaves no final path, and what is written gets the mode any new
file would (the umask's), not the temporaries' owner-only 0600 / 0700."""

import os
import stat

import pandas as pd
import pytest

from conftest import EWT
from sasbert.atomic import atomic_path, write_parquet
from sasbert.cli import main


def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture(params=[0o022, 0o027])
def umask(request):
    previous = os.umask(request.param)
    yield request.param
    os.umask(previous)


def test_files_and_folders_follow_the_umask(tmp_path, umask):
    write_parquet(pd.DataFrame({"a": [1]}), tmp_path / "t.parquet")
    assert mode(tmp_path / "t.parquet") == 0o666 & ~umask
    with atomic_path(tmp_path / "folder", is_dir=True) as tmp:
        (tmp / "inner.txt").write_text("x")
    assert mode(tmp_path / "folder") == 0o777 & ~umask
    assert mode(tmp_path / "folder" / "inner.txt") == 0o666 & ~umask


def test_a_stage_output_is_readable_by_the_group(tmp_path, umask):
    out = tmp_path / "shard.parquet"
    assert (
        main(["corpus", "--kind", "conllu", "--inputs", str(EWT / "en_ewt-ud-dev.conllu.gz"), "--out", str(out)]) == 0
    )
    assert mode(out) == 0o666 & ~umask
    assert mode(out) & stat.S_IRGRP


def test_a_failed_write_leaves_nothing(tmp_path):
    with pytest.raises(RuntimeError), atomic_path(tmp_path / "t.txt") as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []


def test_a_new_write_clears_what_a_killed_one_left(tmp_path):
    stale_dir = tmp_path / ".tokenizer.tmp-abc123"
    stale_dir.mkdir()
    (stale_dir / "vocab.txt").write_text("half")
    (tmp_path / ".tokenizer.tmp-def456").write_text("half")
    other = tmp_path / ".other.tmp-xyz"  # another output's temporary is left alone
    other.write_text("x")
    with atomic_path(tmp_path / "tokenizer", is_dir=True) as tmp:
        (tmp / "vocab.txt").write_text("whole")
    assert sorted(p.name for p in tmp_path.iterdir()) == [".other.tmp-xyz", "tokenizer"]
