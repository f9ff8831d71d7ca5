"""A training run's spec (``sasbert pretrain --spec``), checked and completed from the config schema.

The spec is what ``sasbert.workflow.RunPlan.spec`` gives each training job: the config's ``train``
section but for what is no spec key (``gpus``, ``job_steps``: resources and how the run is cut into
jobs), its ``regularizer``, the ``model`` as BertConfig keyword arguments (the preset expanded:
``config.model_config``), the ``seed``, the run's ``lambda`` and its ``checkpoint_steps``. Its schema
is made here from the config schema's sections (``train``, ``model``, ``runs``' lambda, ``seeds``),
so bounds and defaults live in the schema alone: a spec written by hand (the tests' ``tiny_spec``)
gives what differs from the defaults, and a wrong key or value stops the CLI with one line naming it.

**Why this module is not training code.** Training must not import the config's code
(``tests/test_pretrain.py``): every job's code fingerprint is its import closure
(``sasbert.code_identity``), and an edit of config validation would retrain every run. This module
imports it, so the CLI (``train.pretrain.run``) imports this module inside the function, and
``code_identity.training_modules`` leaves it out of the training code (not followed: the config code
it imports stays out too). That is sound because what it does is in a run's identity by another
path: the completed spec, not the spec as given, is what ``train.resume.run_identity`` records, so a
default that changes changes the identity of a run that relied on it, and its old state is not
resumed. The workflow's specs come from a validated config with every default filled, so for them
completing adds nothing (``tests/test_pretrain_spec.py`` checks it on every shipped config):
Snakemake's record of a job (its spec parameter and its code) stays what shapes its weights.
"""

from __future__ import annotations

import copy
import json
from functools import cache
from pathlib import Path

import jsonschema

from sasbert import config as sasconfig
from sasbert import options
from sasbert.errors import InputError

# train keys that are no spec keys: a job's resources and how a run is cut into jobs
NOT_SPEC_KEYS = ("gpus", "job_steps")
# BertConfig keywords every spec's model gives (config.model_config always does)
MODEL_KEYS = ("num_hidden_layers", "num_attention_heads", "hidden_size", "intermediate_size")


@cache
def spec_schema() -> dict:
    """The JSON schema of a run's spec, made of the config schema's sections."""
    train = options.section_schema("train")
    model = options.section_schema("model")
    run = options.section_schema("runs")["items"]
    seed = options.section_schema("seeds")["items"]
    properties = {key: value for key, value in train["properties"].items() if key not in NOT_SPEC_KEYS}
    properties["model"] = {
        "type": "object",
        "additionalProperties": False,
        "required": list(MODEL_KEYS),
        "properties": {key: value for key, value in model["properties"].items() if key != "preset"},
    }
    properties["seed"] = seed
    properties["lambda"] = run["properties"]["lambda"]
    properties["checkpoint_steps"] = {"type": "array", "minItems": 1, "items": {"$ref": "#/$defs/non_negative_int"}}
    return {
        "type": "object",
        "additionalProperties": False,
        "required": ["model", "seed", "lambda", "checkpoint_steps"],
        "properties": properties,
        "$defs": train["$defs"],
    }


def complete_spec(spec: dict, source: str = "--spec") -> dict:
    """``spec`` checked against ``spec_schema`` and completed with the schema's defaults (a new
    dict); ``InputError`` naming every bad key, on one line, prefixed by ``source``."""
    if not isinstance(spec, dict):
        raise InputError(f"{source}: expected a JSON object (a run's spec), got {type(spec).__name__}")
    schema = spec_schema()
    errors = sorted(
        jsonschema.Draft202012Validator(schema).iter_errors(spec), key=lambda e: list(map(str, e.absolute_path))
    )
    if errors:
        problems = []
        for error in errors:
            key = sasconfig._key_path(error.absolute_path)
            prefix = f"{key}." if error.absolute_path else ""
            if error.validator == "additionalProperties":
                known = set(error.schema.get("properties", {}))
                problems += [f"{prefix}{extra}: unknown key" for extra in sorted(set(error.instance) - known)]
            elif error.validator == "required":
                problems += [
                    f"{prefix}{name}: required" for name in error.validator_value if name not in error.instance
                ]
            elif error.validator == "oneOf" and error.context:  # lambda
                problems.append(f"{key}: {error.message}; it must be a number or a list of stages")
            else:
                problems.append(f"{key}: {error.message}")
        raise InputError(f"{source}: " + "; ".join(dict.fromkeys(problems)))  # one line, each problem once
    completed = copy.deepcopy(spec)
    sasconfig._fill_defaults(completed, schema, schema)
    return completed


def read_spec(text: str | None, path: str | None, threads: int) -> dict:
    """The spec of ``--spec`` (JSON text) or ``--spec-file`` (a JSON file), with ``threads`` (the
    CLI's ``--threads``) where it gives none, checked and completed."""
    source = "--spec" if text is not None else path
    try:
        spec = json.loads(text if text is not None else Path(path).read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise InputError(f"{source}: not JSON ({err.msg} at character {err.pos})") from None
    except OSError as err:
        raise InputError(f"{path}: cannot read the spec ({err.strerror})") from None
    if isinstance(spec, dict):
        spec.setdefault("threads", threads)
    return complete_spec(spec, source)
