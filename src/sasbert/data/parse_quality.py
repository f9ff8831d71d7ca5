"""Parse quality: how close a backend's parses are to a gold treebank (UAS / LAS).

``sasbert parse-quality --treebank en_ewt-ud-test.conllu.gz --backend spacy`` reads the gold
sentences of a CoNLL-U file, parses their words with the backend (gold tokens and gold sentence
boundaries: one Doc per gold sentence, so the scores measure attachment, not tokenization), and
reports UAS (head correct) and LAS (head and relation correct, relation subtypes stripped) over all
words and over non-punctuation words (gold ``punct``), plus the parse speed in words/s. Labels are
compared as strings: a backend with another label scheme (en_core_web_sm: ClearNLP-style) has a LAS
that measures the scheme mismatch as much as the parser, and its heads follow that scheme too.
``--backend stanza`` takes the gold words as pre-tokenized input (``tokenize_pretokenized``).
``--backend conllu`` scores the gold against itself (a check: 100%).
"""

from __future__ import annotations

import json
import logging
import time

from sasbert.data import corpus, parse
from sasbert.data.parsers.conllu import parse_conllu_unit
from sasbert.data.parsers.registry import PARSERS, backend_module
from sasbert.errors import InputError

log = logging.getLogger(__name__)


def gold_sentences(path: str, max_sentences: int | None = None) -> list[dict]:
    sentences = []
    for unit in corpus.conllu_units(path):
        sentences.append(parse_conllu_unit(unit["text"], unit["source"]))
        if max_sentences is not None and len(sentences) >= max_sentences:
            break
    if not sentences:
        raise InputError(f"{path}: no sentences in the treebank")
    return sentences


def score(gold: list[dict], predicted: list[dict]) -> dict:
    def base(rel: str) -> str:
        return rel.split(":")[0].lower()

    counts = {"words": 0, "uas": 0, "las": 0, "words_nopunct": 0, "uas_nopunct": 0, "las_nopunct": 0}
    for g, p in zip(gold, predicted, strict=True):
        if len(g["words"]) != len(p["words"]):
            raise InputError(
                f"sentence {g['sentence_id']}: the backend returned {len(p['words'])} words for {len(g['words'])}"
            )
        for gh, gr, ph, pr in zip(g["heads"], g["relations"], p["heads"], p["relations"]):
            head_ok = gh == ph
            label_ok = head_ok and base(gr) == base(pr)
            counts["words"] += 1
            counts["uas"] += head_ok
            counts["las"] += label_ok
            if base(gr) != "punct":
                counts["words_nopunct"] += 1
                counts["uas_nopunct"] += head_ok
                counts["las_nopunct"] += label_ok
    n, m = counts["words"], max(counts["words_nopunct"], 1)
    return {
        "sentences": len(gold),
        "words": n,
        "uas": 100 * counts["uas"] / n,
        "las": 100 * counts["las"] / n,
        "uas_nopunct": 100 * counts["uas_nopunct"] / m,
        "las_nopunct": 100 * counts["las_nopunct"] / m,
    }


def evaluate(
    treebank: str, backend: str, options: dict | None = None, max_sentences: int | None = None, threads: int = 1
) -> dict:
    """Scores of ``backend`` (a name in the parsers' registry) with ``options`` (its corpus.<options>
    subsection; missing keys take the schema's defaults) against ``treebank``'s gold."""
    if backend not in PARSERS:
        raise InputError(f"--backend: unknown backend {backend!r} (known: {', '.join(PARSERS)})")
    module = backend_module(backend)
    gold = gold_sentences(treebank, max_sentences)
    start = time.perf_counter()
    predicted = module.parse_gold(gold, options, threads)
    seconds = time.perf_counter() - start
    result = {"treebank": treebank, "backend": backend, **score(gold, predicted)}
    model = module.describe_model(options)
    if model is not None:
        result["model"] = model
    result["seconds"] = seconds
    result["words_per_s"] = result["words"] / seconds if seconds > 0 else float("inf")
    return result


def add_arguments(parser) -> None:
    parser.add_argument("--treebank", required=True, help="gold CoNLL-U file (plain or .gz)")
    parser.add_argument("--backend", choices=list(PARSERS), required=True, help=parse.backends_help())
    parser.add_argument("--max-sentences", type=int, default=None, help="score the first N sentences")
    parser.add_argument("--threads", type=int, default=1, help="spaCy n_process")
    parser.add_argument("--out", default=None, help="also write the scores as JSON here")
    parse.add_backend_arguments(parser)


def run(args) -> None:
    options = parse.backend_options(args, args.backend)
    result = evaluate(args.treebank, args.backend, options, args.max_sentences, args.threads)
    print(f"{'treebank':14s} {result['treebank']}")
    print(f"{'backend':14s} {result['backend']}" + (f" ({result['model']})" if "model" in result else ""))
    print(f"{'sentences':14s} {result['sentences']}")
    print(f"{'words':14s} {result['words']}")
    for key in ("uas", "las", "uas_nopunct", "las_nopunct"):
        print(f"{key:14s} {result[key]:.1f}")
    print(f"{'words/s':14s} {result['words_per_s']:.0f} (model load included)")
    if args.out:
        with open(args.out, "w", encoding="utf-8") as handle:
            json.dump(result, handle, indent=2)
