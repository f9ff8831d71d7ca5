"""The probe's gold sentences: reading a treebank (CoNLL-U or parquet) and which of its words are scored."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from sasbert import textio
from sasbert.data import treebank
from sasbert.errors import InputError
from sasbert.tables import read_table

DEFAULT_EXCLUDED_RELATIONS = ("root", "punct")


# PTB punctuation tags (as excluded in the usual WSJ dependency evaluations).
PTB_PUNCT_TAGS = ("``", "''", ",", ".", ":", "-LRB-", "-RRB-", "#", "$")


POSS_RELATION = "poss"


POSS_MARKERS = ("'s", "s'")


# The columns read from a parquet treebank in the layout of the authors' WSJ set.
PARQUET_COLUMNS = ("words", "heads", "relns")


ALL = "all"


@dataclasses.dataclass(frozen=True)
class Sentence:
    """One gold sentence: words only (no multiword-token ranges, no empty nodes)."""

    words: tuple[str, ...]
    heads: tuple[int, ...]  # 1-based gold head per word; 0 = root
    relations: tuple[str | None, ...]  # universal relation (subtype stripped); None if unlabelled
    xpos: tuple[str | None, ...]
    line: int  # line of the sentence's first line in the file (1-based); a parquet's row (0-based)
    labels: tuple[str | None, ...] | None = None  # the relations as written (subtypes kept); None: = relations

    def full_labels(self) -> tuple[str | None, ...]:
        return self.relations if self.labels is None else self.labels


def _sentence(path: Path, start: int, lines: list[str]) -> Sentence | None:
    """A block read by the project's one CoNLL-U reader (``sasbert.data.treebank``); relations are the
    universal part of the UD deprel (subtypes stripped: nmod:poss -> nmod)."""
    tree = treebank.read_sentence(lines, path, start)
    if tree is None:
        return None
    return Sentence(tree.words, tree.heads, _universal(tree.deprels), tree.xpos, start, tree.deprels)


def _universal(labels) -> tuple[str | None, ...]:
    return tuple(None if rel is None else rel.split(":")[0] for rel in labels)


def read_treebank(path: str | Path, max_sentences: int | None = None) -> list[Sentence]:
    """Read a CoNLL-U treebank (plain or gzip), or a parquet one (``read_parquet_treebank``),
    validating heads; errors name file and line (row)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: treebank file not found")
    if path.suffix == ".parquet":
        return read_parquet_treebank(path, max_sentences)
    sentences: list[Sentence] = []
    labelled_line = unlabelled_line = None
    for start, lines in textio.blocks(path):
        if max_sentences is not None and len(sentences) >= max_sentences:
            break
        sentence = _sentence(path, start, lines)
        if sentence is None:
            continue
        for rel in sentence.relations:
            if rel is None and unlabelled_line is None:
                unlabelled_line = sentence.line
            if rel is not None and labelled_line is None:
                labelled_line = sentence.line
        sentences.append(sentence)
    if not sentences:
        raise InputError(f"{path}: no sentences")
    if labelled_line is not None and unlabelled_line is not None:
        raise InputError(
            f"{path}:{unlabelled_line}: sentence with a word without DEPREL, but the sentence "
            f"at line {labelled_line} has relations (all or none must be labelled)"
        )
    return sentences


def read_parquet_treebank(path: str | Path, max_sentences: int | None = None) -> list[Sentence]:
    """A parquet treebank in the layout of the authors' WSJ set (angie-chen55/wsj-dep-parses-1k):
    one row per sentence with list columns ``words`` (strings), ``heads`` (integers, 1-based, 0 =
    root) and ``relns`` (relation labels, kept as written); other columns are ignored. Rows are
    numbered from 0 in errors, as pandas and the datasets viewer number them; the heads must form a
    tree (``treebank.check_tree``, the CoNLL-U reader's rule)."""
    path = Path(path)
    table = read_table(path, PARQUET_COLUMNS, "treebank")
    if max_sentences is not None:
        table = table.head(max_sentences)
    sentences = []
    for row, values in enumerate(zip(*(table[c] for c in PARQUET_COLUMNS))):
        columns = {}
        for name, value in zip(PARQUET_COLUMNS, values):
            if isinstance(value, (str, bytes)) or not hasattr(value, "__len__"):
                raise InputError(f"{path}: row {row}: column '{name}' is not a list ({value!r})")
            columns[name] = list(value)
        words, heads, labels = columns["words"], columns["heads"], columns["relns"]
        if not words:
            raise InputError(f"{path}: row {row}: sentence has no words")
        for name in ("heads", "relns"):
            if len(columns[name]) != len(words):
                raise InputError(f"{path}: row {row}: {len(words)} words but {len(columns[name])} {name}")
        for k, (word, head, label) in enumerate(zip(words, heads, labels), start=1):
            if not isinstance(word, str) or not word:
                raise InputError(f"{path}: row {row}, word {k}: words entry {word!r} is not a non-empty string")
            # a float column (pandas writes one where a value is missing) holds integers too
            if isinstance(head, (bool, np.bool_)) or not (
                isinstance(head, (int, np.integer))
                or (isinstance(head, (float, np.floating)) and float(head).is_integer())
            ):
                raise InputError(f"{path}: row {row}, word {k}: heads entry {head} is not an integer")
            if not isinstance(label, str) or not label:
                raise InputError(f"{path}: row {row}, word {k}: relns entry {label!r} is not a non-empty string")
        heads = [int(h) for h in heads]
        treebank.check_tree(heads, [f"row {row}, word {k}" for k in range(1, len(words) + 1)], path)
        labels = tuple(labels)
        sentences.append(Sentence(tuple(words), tuple(heads), _universal(labels), (None,) * len(words), row, labels))
    if not sentences:
        raise InputError(f"{path}: no sentences")
    return sentences


def is_labelled(sentences: Sequence[Sentence]) -> bool:
    return any(rel is not None for s in sentences for rel in s.relations)


def scored_relations(
    sentence: Sentence,
    labelled: bool,
    excluded_relations: Iterable[str] = DEFAULT_EXCLUDED_RELATIONS,
    punct_tags: Iterable[str] = PTB_PUNCT_TAGS,
) -> list[str | None]:
    """Relation name under which each word is scored, None if it is not scored.

    The root has no parent word and is never scored. Labelled: words whose (subtype-stripped)
    relation is excluded are not scored. Unlabelled: punctuation by XPOS tag is not scored and every
    other word is scored under "all".
    """
    excluded, punct = set(excluded_relations), set(punct_tags)
    out: list[str | None] = []
    for head, rel, tag in zip(sentence.heads, sentence.relations, sentence.xpos):
        if head == 0:
            out.append(None)
        elif labelled:
            out.append(None if rel in excluded else rel)
        else:
            out.append(None if tag in punct else ALL)
    return out


def authors_relations(sentence: Sentence, labelled: bool) -> list[str]:
    """Scoring "authors": every word is scored, the root and punctuation too, under its relation
    as written (``nmod:poss`` stays ``nmod:poss``), or under "all" in an unlabelled treebank."""
    return list(sentence.full_labels()) if labelled else [ALL] * len(sentence.words)


def poss_limits(sentence: Sentence, n_candidates: int) -> np.ndarray:
    """The authors' "poss" special case, per word: where it may apply, the sentence's word count n,
    else 0. It applies to word i (1-based) labelled exactly "poss" whose next word is 's or s' when
    its predicted parent p < n; the word is then right when the NEXT word's prediction is i's gold
    parent. Their condition reads ``i < len(words) and words[i + 1] == "'s" or words[i + 1] ==
    "s'"``, which Python groups as ``(a and b) or c``; ``a`` (i below the word count) always holds,
    so the grouping changes nothing, and its missing bound on i + 1 makes their code fail on a
    "poss" last word. Here the rule does not apply where the next word has no prediction: the last
    word, or the last of the ``n_candidates`` words a truncated sentence keeps."""
    n = len(sentence.words)
    labels, words = sentence.full_labels(), sentence.words
    out = np.zeros(n, dtype=np.int64)
    for i in range(min(n, n_candidates) - 1):
        if labels[i] == POSS_RELATION and words[i + 1] in POSS_MARKERS:
            out[i] = n
    return out
