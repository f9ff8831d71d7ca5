"""The conda environment cluster users get must pin exactly what the package pins."""

import re
import tomllib

import yaml

from conftest import REPO


def test_conda_env_pins_match_pyproject():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    pins = set(project["dependencies"])
    env = yaml.safe_load((REPO / "envs" / "sasbert.yaml").read_text())
    pip_block = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    env_pins = {p for p in pip_block if re.match(r"^[A-Za-z0-9_.\[\]-]+==", p)}
    assert env_pins == pins


def test_wheel_ships_the_config_schema(tmp_path):
    """A non-editable install validates configs too: the schema is package data, and the
    workflow's copy is a link to the same file."""
    import subprocess
    import sys
    import zipfile

    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            str(REPO),
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    (wheel,) = tmp_path.glob("sasbert-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        shipped = archive.read("sasbert/config.schema.yaml")
    assert shipped == (REPO / "src" / "sasbert" / "config.schema.yaml").read_bytes()
    assert (REPO / "workflow" / "schemas" / "config.schema.yaml").resolve() == (
        REPO / "src" / "sasbert" / "config.schema.yaml"
    ).resolve()


def test_nothing_in_the_repository_points_outside_it():
    """The method is docs/method.md; data is vendored under resources/ or named by config: no
    tracked file sends the reader to SPEC.md or to the shared folder beside the checkout."""
    import subprocess

    tracked = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout
    offenders = []
    for name in tracked.splitlines():
        path = REPO / name
        if name == "tests/test_packaging.py" or not path.is_file() or path.suffix in (".gz", ".parquet", ".png"):
            continue
        text = path.read_text(errors="ignore")
        for needle in ("SPEC.md", "../shared/"):
            if needle in text:
                offenders.append(f"{name}: {needle}")
    assert offenders == []
