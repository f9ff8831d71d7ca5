"""House style, checked on every CI run: ruff (lint and format) over the Python, snakefmt over the
Snakefile and rules, and `snakemake --lint` with no remaining lints. Settings: pyproject.toml."""

import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO

BIN = Path(sys.executable).parent
PYTHON_DIRS = ["src", "tests", "benchmarks"]
SNAKEMAKE_FILES = ["Snakefile", "workflow/rules"]


def run(*args):
    return subprocess.run([str(BIN / args[0]), *args[1:]], cwd=REPO, capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize(
    "command",
    [
        ("ruff", "check", *PYTHON_DIRS),
        ("ruff", "format", "--check", *PYTHON_DIRS),
        ("snakefmt", "--check", *SNAKEMAKE_FILES),
    ],
    ids=["ruff-check", "ruff-format", "snakefmt"],
)
def test_formatted_and_linted(command):
    result = run(*command)
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]


def test_snakemake_lint_is_clean():
    result = run("snakemake", "--lint")
    output = result.stdout + result.stderr
    assert "Lints for" not in output, output[-4000:]
    assert result.returncode == 0, output[-3000:]
