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
