"""The one list of parser backends: what the ``parse`` and ``parse-quality`` CLIs offer and
dispatch to, what the workflow's parse rule gives each job, and (``tests/test_parsers.py`` holds
it) the config schema's ``corpus.backend`` enum, less ``pretokenized``, which is no parser.

Data only, imported by no backend: the parse rule leaves it out of a job's code fingerprint (as the
figure rules leave out the figures' registry), so adding or rewording an entry reruns no parse. What
an entry decides that shapes a job's output is tracked anyway: its module is in the job's code, its
options in the job's parameters.

A backend's module, ``sasbert.data.parsers.<module>``, defines:

- ``FLAGS``: its command-line flags, ``(flag, argparse keywords, help)`` with ``option`` the dotted
  key inside the ``corpus`` section (``spacy.model``), as ``options.add_option_flags`` takes them;
- ``parse_shard(units, options, threads) -> DataFrame``: a corpus shard's units (columns
  ``unit_id``, ``doc_id``, ``source``, ``text``) in, the parsed-shard format
  (``parsed_shard.PARSED_COLUMNS``) out; ``options`` is its ``corpus.<options>`` subsection ({}
  when it has none), ``threads`` the job's threads;
- ``parse_gold(gold, options, threads) -> list[dict]``: gold sentences (``words``, ``heads``,
  ``relations``) in, the backend's parse of the same words out (``words``, ``heads``,
  ``relations``), one per sentence: what ``parse-quality`` scores;
- ``describe_model(options) -> str | None``: the model it parses with, for ``parse-quality``'s report.

Library imports go inside those functions, so loading a module (to read its flags) is cheap.
"""

from __future__ import annotations

import dataclasses
import importlib
from types import ModuleType


@dataclasses.dataclass(frozen=True)
class ParserSpec:
    """One backend: its module, what it reads, and what of the config its parse jobs get."""

    module: str  # sasbert.data.parsers.<module>
    summary: str  # one line, for the CLIs' help
    reads: str  # the corpus stage's units it parses: "conllu" (CoNLL-U sentence blocks) or "text" (paragraphs)
    options: str | None = None  # its options, the corpus.<options> subsection: all of the config its jobs get
    path_option: tuple[str, str] | None = None  # (flag, key in its options): a path its jobs get as a flag of its own
    needs_models: bool = False  # its jobs wait for results/parse/<name>-models.json (the <name>_models rule)


# The one list of backends: the CLIs, the workflow's parse rule and the schema's enum follow it.
PARSERS: dict[str, ParserSpec] = {
    "conllu": ParserSpec("conllu", "gold parses read from CoNLL-U files", reads="conllu"),
    "stanza": ParserSpec(
        "stanza",
        "stanza's UD parser, from a local stanza_resources folder",
        reads="text",
        options="stanza",
        path_option=("--stanza-dir", "resources_dir"),
        needs_models=True,
    ),
    "spacy": ParserSpec(
        "spacy", "any installed spaCy pipeline", reads="text", options="spacy", path_option=("--spacy-model", "model")
    ),
}


def backend_module(name: str) -> ModuleType:
    """The module of backend ``name`` (a key of ``PARSERS``)."""
    return importlib.import_module(f"sasbert.data.parsers.{PARSERS[name].module}")


def backend_code_modules(name: str) -> tuple[str, ...]:
    """The package modules whose import closure is a parse job's code: the parse CLI and the
    backend's own module (the registry is left out: see the module docstring)."""
    return ("data.parse", f"data.parsers.{PARSERS[name].module}")


NOT_CODE = ("data.parsers.registry",)  # excluded from a parse job's code fingerprint
