"""A stage's options as one object: its config section, which the Snakemake rule passes whole
(``--options JSON``), with every default taken from the config schema and nowhere else.

Each option also has a CLI flag for use outside Snakemake. A flag given on the command line wins
over ``--options``, which wins over the schema's default: the flags are declared with
``argparse.SUPPRESS`` as their default, so an option not given is absent from the parsed
arguments, not restated. A new option therefore goes in two places: the schema, and (where it
should be settable alone) its stage's ``add_arguments``.
"""

from __future__ import annotations

import argparse
import copy
import json
from collections.abc import Mapping
from functools import cache

import jsonschema

from sasbert import config as sasconfig
from sasbert.errors import InputError


@cache
def _root() -> dict:
    return sasconfig.load_schema()


def section_schema(section: str) -> dict:
    """The schema of one top-level config section, able to resolve the schema's shared $defs."""
    root = _root()
    schema = root["properties"][section]
    if "$ref" in schema:
        schema = sasconfig._resolve(schema["$ref"], root)
    return {**schema, "$defs": root.get("$defs", {})}


def defaults(section: str) -> dict:
    """The schema's defaults of a section (what a config that leaves the section out gets)."""
    options: dict = {}
    sasconfig._fill_defaults(options, section_schema(section), _root())
    return options


def default(section: str, key: str):
    return defaults(section)[key]


def add_options_argument(parser: argparse.ArgumentParser, section: str) -> None:
    parser.add_argument(
        "--options",
        metavar="JSON",
        default=None,
        help=f"the config's {section} section as JSON (what the Snakemake rule passes); a flag given beside it wins",
    )


def flag_help(text: str, section: str, key: str) -> str:
    """A flag's help with its default, read from the schema."""
    return f"{text} (default: {default(section, key)!r})" if text else f"default: {default(section, key)!r}"


def resolve(args: argparse.Namespace, section: str, dests: Mapping[str, str] | None = None) -> dict:
    """The stage's options: the schema's defaults, then ``--options``, then the flags given.

    ``dests`` maps an option, as a dotted key inside the section (``text_cleaning.min_words``), to
    its argparse destination where the two differ; a top-level option's flag defaults to its own
    name. The JSON is validated against the section's schema, so a wrong key or value is named
    like a config error.
    """
    dests = dests or {}
    given = {}
    if getattr(args, "options", None):
        try:
            given = json.loads(args.options)
        except json.JSONDecodeError as err:
            raise InputError(f"--options: not JSON ({err.msg} at character {err.pos})") from None
        if not isinstance(given, dict):
            raise InputError(f"--options: expected a JSON object (the config's {section} section)")
    options = copy.deepcopy(given)
    sasconfig._fill_defaults(options, section_schema(section), _root())
    # A section's required keys are files, which the stage takes as flags of their own.
    schema = {k: v for k, v in section_schema(section).items() if k != "required"}
    errors = sorted(jsonschema.Draft202012Validator(schema).iter_errors(options), key=str)
    if errors:
        messages = [
            f"{section}.{sasconfig._key_path(e.absolute_path)}: {e.message}"
            if e.absolute_path
            else f"{section}: {e.message}"
            for e in errors
        ]
        raise InputError("--options: " + "; ".join(messages))
    for key in options:
        if hasattr(args, dests.get(key, key)):
            options[key] = getattr(args, dests.get(key, key))
    for dotted, dest in dests.items():
        *parents, leaf = dotted.split(".")
        if not parents or not hasattr(args, dest):
            continue
        node = options
        for parent in parents:
            if not isinstance(node.get(parent), dict):
                node[parent] = {}
            node = node[parent]
        node[leaf] = getattr(args, dest)
    sasconfig._fill_defaults(options, section_schema(section), _root())  # of subsections the flags opened
    return options
