"""How a corpus's heads are aligned with its pieces (``heads_alignment``): converting them into the pipeline's convention, and measuring which alignment a corpus uses."""

from __future__ import annotations

import numpy as np

from sasbert.data.pretokenized.files import open_file
from sasbert.data.pretokenized.rows import batch_arrays, check_ranges, check_schema, evenly_spaced

ALIGNMENTS = {"input_ids": (0, 0), "after_cls": (1, 0), "after_cls_both": (1, 1)}


def special_positions(input_ids: np.ndarray, attention_mask: np.ndarray, special_ids) -> np.ndarray:
    """Positions no arc may touch: special pieces ([CLS], [SEP], [PAD], ...) and masked positions."""
    return np.isin(input_ids, list(special_ids)) | (attention_mask == 0)


def arcs_under(heads: np.ndarray, alignment: str):
    """(row, dependent, parent, inside) of every labelled entry read under ``alignment``; ``inside``:
    both ends fall inside the row."""
    d, v = ALIGNMENTS[alignment]
    rows, index = np.nonzero(heads >= 0)
    dependent, parent = index + d, heads[rows, index] + v
    inside = (dependent < heads.shape[1]) & (parent < heads.shape[1])
    return rows, dependent, parent, inside


def convert_heads(
    heads: np.ndarray, input_ids: np.ndarray, attention_mask: np.ndarray, alignment: str, special_ids
) -> tuple[np.ndarray, dict]:
    """The rows' heads in the pipeline's convention (see the module docstring), and counts of the
    arcs kept and of those dropped for each reason."""
    rows, dependent, parent, inside = arcs_under(heads, alignment)
    special = special_positions(input_ids, attention_mask, special_ids)
    r, dep, par = rows[inside], dependent[inside], parent[inside]
    touches_special = special[r, dep] | special[r, par]
    self_loop = (dep == par) & ~touches_special
    keep = ~touches_special & ~self_loop
    out = np.full(heads.shape, -1, dtype=np.int64)
    out[r[keep], dep[keep]] = par[keep]
    counts = {
        "arcs": len(rows),
        "arcs_kept": int(keep.sum()),
        "dropped_outside_row": int((~inside).sum()),
        "dropped_special": int(touches_special.sum()),
        "dropped_self_loop": int(self_loop.sum()),
    }
    return out, counts


def word_initial_pieces(tokenizer) -> np.ndarray:
    """By piece id: True where a piece can start a word (not a ``##`` continuation, not special)."""
    vocab = tokenizer.get_vocab()
    initial = np.zeros(max(vocab.values()) + 1, dtype=bool)
    for piece, index in vocab.items():
        initial[index] = not piece.startswith("##")
    initial[list(tokenizer.all_special_ids)] = False
    return initial


def alignment_counts(arrays: dict, alignment: str, initial: np.ndarray) -> dict:
    """Over a batch's labelled entries read under ``alignment``: how many have both ends on
    word-initial pieces, only the dependent, only the parent (an end outside the row is not)."""
    rows, dependent, parent, inside = arcs_under(arrays["heads"], alignment)
    ids = arrays["input_ids"]
    length = ids.shape[1]
    dep_initial = inside & initial[ids[rows, np.minimum(dependent, length - 1)]]
    par_initial = inside & initial[ids[rows, np.minimum(parent, length - 1)]]
    return {
        "arcs": len(rows),
        "both_word_initial": int((dep_initial & par_initial).sum()),
        "dependent_word_initial": int(dep_initial.sum()),
        "parent_word_initial": int(par_initial.sum()),
        "outside_row": int((~inside).sum()),
        "self_loop": int((inside & (dependent == parent)).sum()),
    }


def check_alignment(files: list[str], tokenizer, rows_per_file: int) -> dict:
    """Per alignment, the counts of ``alignment_counts`` over ``rows_per_file`` rows spread over
    each file (rows without arcs, BookCorpus's, are skipped), and rows read."""
    initial = word_initial_pieces(tokenizer)
    totals = {name: {} for name in ALIGNMENTS}
    read = labelled = 0
    for path in files:
        schema, n_rows, batches = open_file(path)
        columns = [c for c in check_schema(path, schema) if c in ("input_ids", "heads")]
        wanted = evenly_spaced(n_rows, rows_per_file)
        start = 0
        for batch in batches(columns):
            take = wanted[(wanted >= start) & (wanted < start + len(batch))] - start
            if len(take):
                seq_len = len(batch.column("input_ids")[0])
                arrays = batch_arrays(path, batch.take(take), start, seq_len)
                # ids outside the vocabulary stop the check; heads out of range are left out of it
                check_ranges(path, arrays, start, seq_len, len(initial), "drop")
                read += len(take)
                labelled += int((arrays["heads"] >= 0).any(axis=1).sum())
                for name in ALIGNMENTS:
                    for key, value in alignment_counts(arrays, name, initial).items():
                        totals[name][key] = totals[name].get(key, 0) + value
            start += len(batch)
    return {"rows": read, "rows_with_arcs": labelled, "alignments": totals}


def alignment_report(result: dict) -> tuple[str, str | None]:
    """The check's table as text, and the alignment under which most arcs join word-initial pieces."""
    lines = [
        f"rows read: {result['rows']}, with arcs: {result['rows_with_arcs']}",
        f"{'heads_alignment':<16} {'arcs':>9} {'both ends word-initial':>23} {'dependent':>10} {'parent':>8} "
        f"{'self-loops':>11} {'outside row':>12}",
    ]
    best, best_fraction = None, -1.0
    for name, counts in result["alignments"].items():
        arcs = counts.get("arcs", 0)
        if not arcs:
            continue

        def share(key, arcs=arcs, counts=counts):
            return counts[key] / arcs

        lines.append(
            f"{name:<16} {arcs:>9} {share('both_word_initial'):>23.4f} {share('dependent_word_initial'):>10.4f} "
            f"{share('parent_word_initial'):>8.4f} {share('self_loop'):>11.4f} {share('outside_row'):>12.4f}"
        )
        if share("both_word_initial") > best_fraction:
            best, best_fraction = name, share("both_word_initial")
    if best is None:
        lines.append("no arcs in the rows read (BookCorpus rows have none): sample more files (--files)")
    else:
        lines.append(f"best: heads_alignment: {best} (set corpus.pretokenized.heads_alignment)")
    return "\n".join(lines), best
