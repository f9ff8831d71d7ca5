"""The one CoNLL-U sentence reader and tree checker, used by every stage that reads gold trees:
the corpus's ``conllu`` backend (parse stage, parse-quality) and the probe's treebank.

One set of rules for a sentence block (comment lines start with ``#``):

* every token line has the 10 tab-separated CoNLL-U columns (the error names that line);
* multiword-token ranges (``3-4``) and empty nodes (``8.1``) are skipped: the words are the
  integer-id lines, as the UD guidelines define the basic tree;
* word ids run 1, 2, 3, ...; every word has an integer HEAD;
* the heads form a tree: each in range, none its own head, no cycle, exactly one root.

Errors are InputErrors located ``file:line``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import conllu

from sasbert.errors import InputError
from sasbert.textio import blocks

COLUMNS = 10


@dataclasses.dataclass(frozen=True)
class TreeSentence:
    words: tuple[str, ...]
    heads: tuple[int, ...]  # 1-based head of each word, 0 = root
    deprels: tuple[str | None, ...]  # as written (subtypes kept), None for "_"
    xpos: tuple[str | None, ...]
    word_lines: tuple[int, ...]  # the file line of each word
    start: int  # the file line where the block starts
    metadata: dict


def read_sentence(lines: list[str], path: str | Path, start: int) -> TreeSentence | None:
    """The sentence of one block (its lines, the first at file line ``start``); None for a block
    of comments only."""
    token_lines = []
    for number, line in enumerate(lines, start):
        if line.startswith("#"):
            continue
        columns = len(line.split("\t"))
        if columns != COLUMNS:
            raise InputError(f"{path}:{number}: expected {COLUMNS} tab-separated CoNLL-U columns, got {columns}")
        token_lines.append(number)
    if not token_lines:
        return None
    try:
        parsed = conllu.parse("\n".join(lines) + "\n\n")
    except conllu.exceptions.ParseException as err:
        raise InputError(f"{path}:{start}: malformed CoNLL-U sentence: {err}") from None
    if len(parsed) != 1:
        raise InputError(f"{path}:{start}: expected one sentence block, found {len(parsed)}")
    (tokens,) = parsed
    words, heads, deprels, xpos, word_lines = [], [], [], [], []
    for token, number in zip(tokens, token_lines):
        if not isinstance(token["id"], int):  # multiword range (3, '-', 4) or empty node (8, '.', 1)
            continue
        if token["id"] != len(words) + 1:
            raise InputError(f"{path}:{number}: word id {token['id']} out of order (expected {len(words) + 1})")
        if not isinstance(token["head"], int):
            raise InputError(
                f"{path}:{number}: word {token['id']} has a missing or non-integer HEAD ({token['head']!r})"
            )
        words.append(str(token["form"]))
        heads.append(token["head"])
        deprels.append(None if token["deprel"] in (None, "_") else str(token["deprel"]))
        xpos.append(token["xpos"])
        word_lines.append(number)
    if not words:
        raise InputError(f"{path}:{start}: sentence has no words")
    check_tree(heads, word_lines, path)
    return TreeSentence(
        tuple(words), tuple(heads), tuple(deprels), tuple(xpos), tuple(word_lines), start, dict(tokens.metadata)
    )


def check_tree(heads: list[int], lines: list[int] | list[str], path: str | Path) -> None:
    """Heads in range, none its own head, no cycle, exactly one root; errors name the line (each
    word's location: its file line, or e.g. "row 3, word 2" in a parquet treebank)."""
    n = len(heads)
    for i, head in enumerate(heads):
        if not 0 <= head <= n:
            raise InputError(f"{path}:{lines[i]}: HEAD {head} out of range (sentence has {n} words)")
        if head == i + 1:
            raise InputError(f"{path}:{lines[i]}: word {i + 1} is its own head (a cycle)")
    # From each word, follow heads; reaching a word seen on this walk is a cycle.
    state = [0] * (n + 1)  # 0 unvisited, 1 on the current walk, 2 known to reach the root
    state[0] = 2
    for i in range(1, n + 1):
        walk, node = [], i
        while state[node] == 0:
            state[node] = 1
            walk.append(node)
            node = heads[node - 1]
        if state[node] == 1:
            raise InputError(f"{path}:{lines[node - 1]}: cycle in the dependency tree through word {node}")
        for w in walk:
            state[w] = 2
    roots = [i for i, head in enumerate(heads) if head == 0]
    if len(roots) != 1:
        raise InputError(
            f"{path}:{lines[roots[1]] if roots else lines[0]}: sentence has {len(roots)} roots (expected exactly 1)"
        )


def read_sentences(path: str | Path) -> Iterator[TreeSentence]:
    """Every sentence of a CoNLL-U file (plain or gzip), in order."""
    for start, lines in blocks(path):
        sentence = read_sentence(lines, path, start)
        if sentence is not None:
            yield sentence
