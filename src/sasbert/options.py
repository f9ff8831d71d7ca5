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


def defaults(section: str, subsection: str | None = None) -> dict:
    """The schema's defaults of a section (what a config that leaves the section out gets), or of
    one of its subsections (``corpus``, ``hf_dataset``: even one without a default of its own)."""
    schema = section_schema(section)
    if subsection is not None:
        schema = schema["properties"][subsection]
    options: dict = {}
    sasconfig._fill_defaults(options, schema, _root())
    return options


def default(section: str, key: str):
    """The schema's default of an option, ``key`` dotted inside the section (``stanza.lang``)."""
    value = defaults(section)
    for part in key.split("."):
        value = value[part]
    return value


def add_option_flags(parser: argparse.ArgumentParser, section: str, flags) -> None:
    """``--options`` and one flag per option: (flag, argparse keywords, help). The option is the
    flag's name (``--max-pieces``: ``max_pieces``) unless the keywords name it (``option``, dotted
    for a nested one). Each flag's help shows the schema's default; an option not given is absent
    from the parsed arguments (``argparse.SUPPRESS``), so ``resolve`` takes it from --options or
    the schema."""
    parser.add_argument(
        "--options",
        metavar="JSON",
        default=None,
        help=f"the config's {section} section as JSON (what the Snakemake rule passes); a flag given beside it wins",
    )
    dests = {}
    for flag, keywords, text in flags:
        keywords = dict(keywords)
        key = keywords.pop("option", flag[2:].replace("-", "_"))
        dests[key] = keywords.get("dest", flag[2:].replace("-", "_"))
        try:
            shown = default(section, key)
            text = f"{text} (default: {shown!r})" if text else f"default: {shown!r}"
        except (KeyError, TypeError):  # a subsection without defaults (corpus.hf_dataset)
            pass
        parser.add_argument(flag, default=argparse.SUPPRESS, help=text, **keywords)
    parser.set_defaults(option_dests=dests)  # for resolve: which flag sets which option


def resolve(args: argparse.Namespace, section: str, dests: Mapping[str, str] | None = None) -> dict:
    """The stage's options: the schema's defaults, then ``--options``, then the flags given.

    Which flag sets which option (a dotted key inside the section, ``text_cleaning.min_words``)
    is what ``add_option_flags`` recorded, or ``dests``. The JSON is validated against the
    section's schema, so a wrong key or value is named like a config error.
    """
    dests = {**getattr(args, "option_dests", {}), **(dests or {})}
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
