"""Workflow configuration: schema validation with defaults, and the checks a schema cannot say.

Torch-free on purpose: the Snakefile imports this module while it builds the DAG.
Every error names the config key it is about, as a dotted path (``train.max_steps``,
``runs[3].resume_from.step``).
"""

from __future__ import annotations

import copy
import glob
import math
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from sasbert.textio import is_pattern

# The schema ships inside the package, so a non-editable install finds it too;
# workflow/schemas/config.schema.yaml (where the workflow layout puts it) is a link to it.
SCHEMA_PATH = Path(__file__).with_name("config.schema.yaml")

# Architecture presets: (layers, heads, hidden). Intermediate size is 4 x hidden as in BERT.
MODEL_PRESETS = {
    "tiny": dict(num_hidden_layers=2, num_attention_heads=4, hidden_size=128),
    "mini": dict(num_hidden_layers=4, num_attention_heads=4, hidden_size=256),
    "small": dict(num_hidden_layers=4, num_attention_heads=8, hidden_size=512),
    "base": dict(num_hidden_layers=12, num_attention_heads=12, hidden_size=768),
}


class ConfigError(Exception):
    """The workflow configuration is invalid; the message names every offending key."""


def _key_path(path) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def _fill_defaults(instance: Any, schema: dict, root: dict) -> None:
    """Fill ``default`` values of object properties, recursively, like Snakemake's validate()."""
    if "$ref" in schema:
        schema = _resolve(schema["$ref"], root)
    if isinstance(instance, dict):
        for key, sub in schema.get("properties", {}).items():
            if "$ref" in sub:
                sub = {**_resolve(sub["$ref"], root), **{k: v for k, v in sub.items() if k != "$ref"}}
            if key not in instance and "default" in sub:
                instance[key] = copy.deepcopy(sub["default"])
            if key in instance:
                _fill_defaults(instance[key], sub, root)
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict):  # a map of named items (glue.data: task -> source)
            for key in set(instance) - set(schema.get("properties", {})):
                _fill_defaults(instance[key], extra, root)
    elif isinstance(instance, list) and isinstance(schema.get("items"), dict):
        for item in instance:
            _fill_defaults(item, schema["items"], root)


def _resolve(ref: str, root: dict) -> dict:
    node = root
    for part in ref.lstrip("#/").split("/"):
        node = node[part]
    return node


def load_schema(path: str | Path = SCHEMA_PATH) -> dict:
    return yaml.safe_load(Path(path).read_text())


def validate(
    config: dict, base_dir: str | Path = ".", check_paths: bool = True, schema_path: str | Path = SCHEMA_PATH
) -> dict:
    """Validate ``config`` (in place: defaults are filled in) and return it.

    Relative data paths are checked against ``base_dir`` (the workflow's working directory).
    Raises ConfigError naming every offending key.
    """
    schema = load_schema(schema_path)
    # JSON Schema's bounds let NaN through (every comparison with it is false), and YAML reads
    # .nan and .inf as numbers: no key of this schema may hold one.
    not_finite = [f"{key}: {value} is not a finite number" for key, value in _non_finite(config)]
    if not_finite:
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(not_finite))
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(config), key=lambda e: list(map(str, e.absolute_path)))
    if errors:
        lines = []
        for err in errors:
            key = _key_path(err.absolute_path)
            if err.validator == "additionalProperties":
                known = set(err.schema.get("properties", {}))
                prefix = "" if not err.absolute_path else key + "."
                lines += [f"{prefix}{extra}: unknown key" for extra in sorted(set(err.instance) - known)]
            elif err.validator == "oneOf" and err.context:
                lines.append(f"{key}: {err.message}; it must be a number or a list of stages")
            else:
                lines.append(f"{key}: {err.message}")
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(lines))
    _fill_defaults(config, schema, schema)
    problems = _semantic_problems(config)
    if check_paths:
        problems += _missing_paths(config, Path(base_dir))
    if problems:
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(problems))
    return config


def check_config_file(path: str | Path) -> None:
    """A config file must be a mapping of sections. Snakemake's own message for an empty file or a
    list ("Config file must be given as JSON or YAML with keys at top level") names no file."""
    try:
        loaded = yaml.safe_load(Path(path).read_text(encoding="utf-8-sig"))
    except OSError as err:
        raise ConfigError(f"{path}: cannot read the config file ({err.strerror})") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML ({err})") from None
    if not isinstance(loaded, dict):
        what = "empty" if loaded is None else f"a {type(loaded).__name__}, not a mapping of sections"
        raise ConfigError(f"{path}: the config file is {what} (give sections such as 'train:' at its top level)")


def type_command_line_values(config: dict, given: dict) -> None:
    """Read the values given with ``snakemake --config`` as YAML, in place, as a config file's are.

    Snakemake reads a nested ``--config`` value with YAML's base loader, where every scalar is a
    string (``train={max_steps: 40}`` gives ``'40'``), and every section of this config is nested.
    A value is retyped only where ``config`` still holds what ``given`` gave there."""
    for key, value in given.items():
        where = config.get(key)
        if isinstance(value, dict) and isinstance(where, dict):
            type_command_line_values(where, value)
        elif where == value:
            config[key] = _yaml_scalar(value)


def _yaml_scalar(value):
    if isinstance(value, dict):
        return {k: _yaml_scalar(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_yaml_scalar(v) for v in value]
    if not isinstance(value, str):
        return value
    try:
        return yaml.safe_load(value) if value.strip() else value
    except yaml.YAMLError:
        return value


def config_warnings(config: dict) -> list[str]:
    """What a valid config may not mean: settings that run but waste the run."""
    train = config["train"]
    found = []
    if config["runs"] and train["warmup_steps"] >= train["max_steps"]:
        found.append(
            f"train.warmup_steps ({train['warmup_steps']}) >= train.max_steps ({train['max_steps']}): the learning"
            " rate rises for the whole run and never reaches train.lr (and the first step always"
            " trains at learning rate 0)"
        )
    return found


def _non_finite(value, path=()) -> list[tuple[str, float]]:
    """(key, value) of every NaN or infinite number in a parsed config."""
    if isinstance(value, float) and not math.isfinite(value):
        return [(_key_path(path), value)]
    if isinstance(value, dict):
        return [hit for key, item in value.items() for hit in _non_finite(item, (*path, key))]
    if isinstance(value, list):
        return [hit for i, item in enumerate(value) for hit in _non_finite(item, (*path, i))]
    return []


def _resume_cycles(runs: list[dict]) -> list[str]:
    """runs[i].resume_from problems: a chain of resume_from that comes back to where it began."""
    parent = {run["name"]: (run.get("resume_from") or {}).get("run") for run in runs}
    problems = []
    for i, run in enumerate(runs):
        seen, name = [run["name"]], parent.get(run["name"])
        while name is not None and name not in seen and name in parent:
            seen.append(name)
            name = parent[name]
        if name == run["name"] and len(seen) > 1:
            chain = " -> ".join([*seen, name])
            problems.append(f"runs[{i}].resume_from: the runs resume from each other in a cycle ({chain})")
    return problems


def _missing_paths(config: dict, base_dir: Path) -> list[str]:
    corpus = config["corpus"]
    named = [(f"corpus.conllu[{i}]", p) for i, p in enumerate(corpus.get("conllu", []))]
    named += [(f"corpus.text[{i}]", p) for i, p in enumerate(corpus.get("text", []))]
    hf_files = (corpus.get("hf_dataset") or {}).get("data_files") or []
    named += [(f"corpus.hf_dataset.data_files[{i}]", p) for i, p in enumerate(hf_files)]
    pretokenized = corpus.get("pretokenized") or {}  # a hub repo is a parameter, not a path
    for split, paths in (pretokenized.get("data_files") or {}).items():
        named += [(f"corpus.pretokenized.data_files.{split}[{i}]", p) for i, p in enumerate(paths)]
    named += [("corpus.pretokenized.path", pretokenized.get("path"))]
    named += [("tokenizer.vocab", config["tokenizer"].get("vocab"))]
    named += [("probe.treebank", config["probe"].get("treebank"))]
    named += [("blimp.data_dir", config["blimp"].get("data_dir"))]
    for i, series in enumerate(config.get("series", [])):
        named += [(f"series[{i}].checkpoints[{j}]", p) for j, p in enumerate(series.get("checkpoints", []))]
    for task, source in ((config.get("glue") or {}).get("data") or {}).items():
        named += [(f"glue.data.{task}.data_files.{split}", p) for split, p in (source.get("data_files") or {}).items()]
        named += [(f"glue.data.{task}.saved", source.get("saved"))]
        named += [(f"glue.data.{task}.blimp.data_dir", (source.get("blimp") or {}).get("data_dir"))]
    problems = []
    for key, path in named:
        if path is None:
            continue
        if is_pattern(path):  # a glob of text files: it must match something
            if not glob.glob(str(base_dir / path), recursive=True):
                problems.append(f"{key}: the pattern matches no file: {path}")
        elif not (base_dir / path).exists():
            problems.append(f"{key}: path does not exist: {path}")
    return problems


def _semantic_problems(config: dict) -> list[str]:
    problems = []
    corpus = config["corpus"]
    if corpus["backend"] == "conllu":
        if not corpus.get("conllu"):
            problems.append("corpus.conllu: required when corpus.backend is 'conllu'")
    elif corpus["backend"] == "pretokenized":
        given = [k for k in ("hub", "data_files", "path") if k in (corpus.get("pretokenized") or {})]
        if "pretokenized" not in corpus:
            problems.append("corpus.pretokenized: required when corpus.backend is 'pretokenized'")
        elif len(given) != 1:
            problems.append("corpus.pretokenized: give exactly one of hub, data_files and path")
        if not config["tokenizer"].get("vocab"):
            problems.append("tokenizer.vocab: required when corpus.backend is 'pretokenized' (the rows' pieces)")
    elif bool(corpus.get("text")) == bool(corpus.get("hf_dataset")):
        problems.append(
            f"corpus.text: give exactly one of corpus.text and corpus.hf_dataset when corpus.backend is "
            f"{corpus['backend']!r}"
        )

    train = config["train"]
    if train["batch_size"] % train["grad_accumulation"]:
        problems.append(
            f"train.batch_size: {train['batch_size']} is not divisible by "
            f"train.grad_accumulation ({train['grad_accumulation']})"
        )
    if train["decay_horizon"] is not None and train["decay_horizon"] < train["max_steps"]:
        problems.append(
            f"train.decay_horizon: {train['decay_horizon']} is before train.max_steps ({train['max_steps']})"
        )
    model = model_config(config)
    if model["hidden_size"] % model["num_attention_heads"]:
        problems.append(
            f"model.hidden_size: {model['hidden_size']} is not divisible by "
            f"model.num_attention_heads ({model['num_attention_heads']})"
        )

    names = [run["name"] for run in config["runs"]]
    series_names = [series["name"] for series in config.get("series", [])]
    for i, series in enumerate(config.get("series", [])):
        if ("checkpoints" in series) == ("hub" in series):
            problems.append(f"series[{i}]: give exactly one of checkpoints (local folders) and hub")
        hub = series.get("hub") or {}
        if "hub" in series and ("repo" in hub) == ("repos" in hub):
            problems.append(f"series[{i}].hub: give repo with revisions, or repos (one per step)")
        elif "repo" in hub and not hub.get("revisions"):
            problems.append(f"series[{i}].hub.revisions: required with hub.repo")
    for i, name in enumerate(series_names):
        if name in names:
            problems.append(f"series[{i}].name: {name!r} is also a run's name")
        elif series_names.count(name) > 1:
            problems.append(f"series[{i}].name: {name!r} is used by more than one series")
    for i, series in enumerate(config.get("series", [])):
        if series.get("group") in names:
            problems.append(
                f"series[{i}].group: {series['group']!r} is a run's name (a run's seeds are a group of their own)"
            )
    for i, run in enumerate(config["runs"]):
        if names.count(run["name"]) > 1:
            problems.append(f"runs[{i}].name: {run['name']!r} is used by more than one run")
        if isinstance(run["lambda"], list):
            problems += _lambda_stage_problems(f"runs[{i}].lambda", run["lambda"], train["max_steps"])
        parent = run.get("resume_from")
        if parent is None:
            continue
        key = f"runs[{i}].resume_from"
        if parent["run"] not in names:
            problems.append(f"{key}.run: no run named {parent['run']!r}")
        elif parent["run"] == run["name"]:
            problems.append(f"{key}.run: a run cannot resume from itself")
        if parent["step"] >= train["max_steps"]:
            problems.append(f"{key}.step: {parent['step']} is not before train.max_steps ({train['max_steps']})")
    return problems + _glue_problems(config) + _resume_cycles(config["runs"])


def _glue_problems(config: dict) -> list[str]:
    glue = config.get("glue")
    if not glue:
        return []
    problems = []
    measured = {run["name"] for run in config["runs"]} | {series["name"] for series in config.get("series", [])}
    for i, name in enumerate(glue["runs"] or []):
        if name not in measured:
            problems.append(f"glue.runs[{i}]: no run or series named {name!r}")
    if glue["steps"] is not None and glue["every_steps"] is not None:
        problems.append("glue.steps: give steps or every_steps, not both")
    for task, source in glue["data"].items():
        given = [key for key in ("data_files", "saved", "blimp") if key in source]
        if len(given) != 1:
            problems.append(f"glue.data.{task}: give exactly one of data_files, saved and blimp")
        elif given == ["blimp"] and task != "cola":
            problems.append(f"glue.data.{task}.blimp: BLiMP makes an acceptability task in CoLA's format (cola only)")
    return problems


def _lambda_stage_problems(key: str, stages: list[dict], max_steps: int) -> list[str]:
    problems = []
    previous = 0
    for j, stage in enumerate(stages):
        until = stage.get("until_step")
        last = j == len(stages) - 1
        if until is None and not last:
            problems.append(f"{key}[{j}].until_step: only the last stage may leave until_step out")
        elif until is not None and until <= previous:
            problems.append(f"{key}[{j}].until_step: {until} must be after the previous stage's ({previous})")
        elif until is not None and until >= max_steps:
            problems.append(
                f"{key}[{j}].until_step: {until} is not before train.max_steps ({max_steps}): the stage would "
                "outlast the run, which would train at one lambda throughout and never be released"
            )
        previous = until or previous
    return problems


def model_config(config: dict) -> dict:
    """BertConfig keyword arguments: the preset with any explicit overrides."""
    model = dict(MODEL_PRESETS[config["model"].get("preset", "tiny")])
    model.update({k: v for k, v in config["model"].items() if k != "preset"})
    model.setdefault("intermediate_size", 4 * model["hidden_size"])
    return model


def checkpoint_steps(config: dict) -> list[int]:
    """Sorted checkpoint steps: 0, the explicit list, the piecewise rules, and max_steps.

    Rules apply in order: each starts where the previous one ended (the first at 0) and saves every
    ``every`` steps up to and including ``until``. Steps past max_steps are dropped.
    """
    max_steps = config["train"]["max_steps"]
    ckpt = config["checkpoints"]
    steps = {0, max_steps, *ckpt.get("steps", [])}
    start = 0
    for rule in ckpt.get("every", []):
        steps.update(range(start + rule["every"], min(rule["until"], max_steps) + 1, rule["every"]))
        start = max(start, rule["until"])
    return sorted(s for s in steps if s <= max_steps)
