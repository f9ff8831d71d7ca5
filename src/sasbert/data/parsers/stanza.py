"""The ``stanza`` backend (the paper's parser): raw-text units (one paragraph each) through
``tokenize,pos,lemma,depparse`` (UD v2 labels; multiword tokens expanded into their words, as UD
counts words), from a local ``stanza_resources`` folder, never downloading: ``sasbert
stanza-models`` (``sasbert.data.stanza_models``) fetches the models into that folder when the
machine is online and checks them. Sentence ids are ``<unit_id>-<k>``; ``source`` is the
paragraph's ``file:line``. Options: config ``corpus.stanza``; ``threads`` is torch's CPU threads.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from sasbert.data.parsers.parsed_shard import PARSED_COLUMNS
from sasbert.errors import InputError
from sasbert.options import defaults as schema_defaults
from sasbert.progress import progress

DEFAULTS = schema_defaults("corpus")["stanza"]  # the config schema's corpus.stanza

STANZA_PROCESSORS = "tokenize,pos,lemma,depparse"
# stanza's own defaults: tokenize in paragraphs-chunks, pos/depparse in words, lemma in sentences.
STANZA_BATCH_SIZES = DEFAULTS["batch_size"]
# Paragraphs handed to stanza per call: its processors batch within a call (by the sizes above),
# and the progress bar advances per call; large enough to fill the batches, small enough for memory.
STANZA_PARAGRAPHS_PER_CALL = 256

FLAGS = [
    ("--stanza-dir", {"option": "stanza.resources_dir"}, "local stanza_resources folder"),
    ("--stanza-lang", {"option": "stanza.lang"}, "stanza language"),
    ("--stanza-package", {"option": "stanza.package"}, "stanza package"),
    ("--stanza-device", {"option": "stanza.device"}, "auto (GPU if any), cpu, cuda, cuda:1, ..."),
    (
        "--stanza-batch-size",
        {"nargs": "*", "metavar": "PROC=N", "option": "stanza.batch_size"},
        "stanza batch sizes, e.g. depparse=5000",
    ),
]


@dataclass
class StanzaOptions:
    """Where the stanza models are and how to run them (config ``corpus.stanza``)."""

    resources_dir: str = DEFAULTS["resources_dir"]
    lang: str = DEFAULTS["lang"]
    package: str = DEFAULTS["package"]
    device: str = DEFAULTS["device"]  # auto: the GPU when torch sees one, else the CPU
    batch_size: dict = field(default_factory=lambda: dict(STANZA_BATCH_SIZES))
    resources_url: str | None = DEFAULTS["resources_url"]  # only to download; None: stanza's


def stanza_options(options: dict | None) -> StanzaOptions:
    """The corpus.stanza options as StanzaOptions, with ``--stanza-batch-size``'s PROC=N items
    (a list, from the flag) read into batch_size."""
    options = {**DEFAULTS, **(options or {})}
    sizes = options["batch_size"]
    if isinstance(sizes, list):  # from the flag
        parsed = dict(STANZA_BATCH_SIZES)
        for item in sizes:
            proc, _, value = item.partition("=")
            if proc not in parsed or not value.isdigit() or int(value) < 1:
                raise InputError(f"corpus.stanza.batch_size: {item!r} is not PROC=N with PROC in {', '.join(parsed)}")
            parsed[proc] = int(value)
        sizes = parsed
    return StanzaOptions(
        options["resources_dir"],
        options["lang"],
        options["package"],
        options["device"],
        dict(sizes),
        options["resources_url"],
    )


def missing_stanza_models_message(options: StanzaOptions, detail: str) -> str:
    return (
        f"corpus.stanza.resources_dir: {options.resources_dir}: {detail}. The stanza backend reads its "
        f"models from this local stanza_resources folder and never downloads while parsing. On a machine "
        f"that is online, `sasbert stanza-models --dir {options.resources_dir} --lang {options.lang} "
        f"--package {options.package}` (the workflow's stanza_models rule) fetches them; offline, copy a "
        f"stanza_resources folder made that way (resources.json and {options.lang}/) from another machine "
        "into it, or set corpus.stanza.resources_dir to where one is"
    )


def load_stanza(options: StanzaOptions, pretokenized: bool = False):
    """A stanza.Pipeline from the local folder only (download_method=None); clear errors otherwise.

    ``pretokenized``: the input is already split into sentences and words (gold tokens).
    """
    import stanza
    from stanza.resources.common import ResourcesFileNotFoundError

    folder = Path(options.resources_dir)
    if not (folder / "resources.json").is_file():
        raise InputError(missing_stanza_models_message(options, "no stanza models here (no resources.json)"))
    unknown = set(options.batch_size) - set(STANZA_BATCH_SIZES)
    if unknown:
        raise InputError(f"corpus.stanza.batch_size: unknown processor(s) {', '.join(sorted(unknown))}")
    if options.device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise InputError(f"corpus.stanza.device: {options.device!r} asked for, but torch sees no GPU here")
    kwargs = {f"{proc}_batch_size": size for proc, size in options.batch_size.items()}
    if pretokenized:
        kwargs["tokenize_pretokenized"] = True
    device = None if options.device == "auto" else options.device
    try:
        return stanza.Pipeline(
            options.lang,
            dir=str(folder),
            package=options.package,
            processors=STANZA_PROCESSORS,
            download_method=None,
            device=device,
            logging_level="WARN",
            **kwargs,
        )
    except (ResourcesFileNotFoundError, FileNotFoundError) as err:
        raise InputError(missing_stanza_models_message(options, f"a model is missing ({err})")) from err
    except ValueError as err:  # unknown language / package
        raise InputError(
            f"corpus.stanza: cannot build the {options.lang!r} pipeline (package {options.package!r}) from "
            f"{folder}: {err}"
        ) from err


def stanza_sentence(sentence) -> dict:
    """words, heads and relations of one stanza sentence (its words: multiword tokens expanded)."""
    return {
        "words": [w.text for w in sentence.words],
        "heads": [int(w.head) for w in sentence.words],
        "relations": [w.deprel or "dep" for w in sentence.words],
    }


def parse_units(units: pd.DataFrame, options: StanzaOptions | None = None) -> pd.DataFrame:
    """Parse a shard's paragraphs with the stanza pipeline ``options`` describe."""
    if units.empty:
        return pd.DataFrame(columns=PARSED_COLUMNS)
    import stanza

    nlp = load_stanza(options or StanzaOptions())
    docs = [stanza.Document([], text=text) for text in units["text"]]
    rows = []
    chunk = STANZA_PARAGRAPHS_PER_CALL
    for start in progress(range(0, len(docs), chunk), desc="stanza", unit="chunk", mininterval=10):
        done = nlp.bulk_process(docs[start : start + chunk])
        for unit, doc in zip(units.iloc[start : start + chunk].itertuples(index=False), done):
            for k, sentence in enumerate(doc.sentences):
                rows.append(
                    {
                        "sentence_id": f"{unit.unit_id}-{k}",
                        "doc_id": unit.doc_id,
                        "source": unit.source,
                        **stanza_sentence(sentence),
                    }
                )
    return pd.DataFrame(rows, columns=PARSED_COLUMNS)


def parse_shard(units: pd.DataFrame, options: dict | None = None, threads: int = 1) -> pd.DataFrame:
    """The parse job's entry: ``threads`` torch CPU threads, then ``parse_units``."""
    stanza = stanza_options(options)
    import torch

    torch.set_num_threads(max(1, threads))
    return parse_units(units, stanza)


def parse_gold(gold: list[dict], options: dict | None = None, threads: int = 1) -> list[dict]:
    """Parse the gold sentences' words (gold words, gold sentence boundaries: stanza's
    tokenize_pretokenized). ``threads`` is not used: torch keeps its own default here."""
    nlp = load_stanza(stanza_options(options), pretokenized=True)
    doc = nlp([g["words"] for g in gold])
    if len(doc.sentences) != len(gold):
        raise InputError(f"stanza returned {len(doc.sentences)} sentences for {len(gold)} gold sentences")
    return [stanza_sentence(sentence) for sentence in doc.sentences]


def describe_model(options: dict | None = None) -> str:
    stanza = stanza_options(options)
    return f"{stanza.resources_dir} ({stanza.lang}, {stanza.package})"
