"""``sasbert complexity score``: the TwoNN intrinsic dimension of every layer's token
representations at every checkpoint (docs/method.md, "Complexity").

The paper reads model complexity over pretraining against information-bottleneck theory (it rises,
then falls once structure is acquired). Here complexity is the intrinsic dimension (ID) of the
token representations of a treebank's sentences, estimated by TwoNN (Facco et al. 2017) with
scikit-dimension's ``skdim.id.TwoNN``:

* the sentences (the config's ``complexity.treebank``, its first ``max_sentences``) are tokenized
  with the checkpoint's own tokenizer (words joined by single spaces, as the probe does:
  ``sasbert.measure.probe.alignment``); sentences longer than the model's positions are skipped;
* each hidden state (``embeddings``: the embedding layer's output; ``1`` .. ``L``: each layer's
  output) gives one point per word piece; [CLS], [SEP], [PAD] (any special token) give none;
* at most ``max_tokens`` pieces are kept (a seeded draw without replacement, the same pieces for
  every layer);
* duplicates are removed per layer before the estimate (identical points have zero neighbour
  distance, and TwoNN's ratio r2 / r1 is then undefined): a piece repeats an earlier one when it
  has the same input (``embeddings``: the same piece id at the same position; a layer's output:
  the same position in a sentence of the same pieces, for a causal LM in a sentence that begins
  with the same pieces up to it: the same point up to floating point, ``output_classes``), or
  the same vector bit for bit; ``n_points`` counts what is left, ``n_tokens`` the pieces drawn;
* r1, r2 = each point's distances to its first and second nearest neighbour
  (``skdim.get_nn``, Euclidean), and the ID is ``TwoNN(discard_fraction, dist=True,
  method).fit([r1, r2])``: ``linear`` (default) is Facco et al.'s fit through the origin of
  -log(1 - F(mu)) against log(mu), mu = r2 / r1, the largest ``discard_fraction`` of the ratios
  left out; ``mle`` the closed-form maximum-likelihood estimate;
* the 95% interval (``id_low``, ``id_high``): scikit-dimension gives no error estimate, so it is a
  seeded percentile bootstrap over sentences (``bootstrap_samples`` resamples): each resample
  draws the sentences with replacement and refits TwoNN on the drawn sentences' points' (r1, r2),
  their neighbours found once on all the points (a point drawn twice would be its own neighbour at
  distance 0); the same draws for every layer.

Table ``summary``: one row per checkpoint x layer (``embeddings``, ``1`` .. ``L``) and one row
``mean`` (CURVE_LAYER): the mean ID over the layers ``1`` .. ``L`` (the embeddings left out: a
lookup, not a computed representation), its interval the bootstrap's percentiles of that mean,
its ``n_points`` the smallest of those layers'. Phases (the complexity peak and fall) and Figure 1
read the ``mean`` rows (``sasbert.analysis.curves.complexity_curve``).
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from sasbert.errors import InputError
from sasbert.measure.command import score_command
from sasbert.measure.registry import AllRunsTable

log = logging.getLogger(__name__)

SUMMARY_COLUMNS = [
    "step",
    "checkpoint",
    "layer",
    "intrinsic_dim",
    "id_low",
    "id_high",
    "n_points",
    "n_tokens",
    "n_sentences",
]
CURVE_LAYER = "mean"  # the row phases and figures read
MIN_POINTS = 10  # fewer points after deduplication: no estimate

# the all-runs table ``complexity`` (sasbert.analysis.gather): the summary as it is
ALL_RUNS = {"summary": AllRunsTable(required=SUMMARY_COLUMNS, what="complexity summary", columns=SUMMARY_COLUMNS)}


def check_options(options: dict) -> None:
    """What the schema cannot check once a flag overrides it: a bad value names its flag."""
    if not 0 <= options["discard_fraction"] < 1:
        raise InputError(f"--discard-fraction must be in [0, 1) (got {options['discard_fraction']})")
    if options["discard_fraction"] == 0 and options["method"] == "linear":
        raise InputError("--discard-fraction 0 needs --method mle (the linear fit's last point is -log(1 - 1))")
    if options["max_tokens"] is not None and options["max_tokens"] < MIN_POINTS:
        raise InputError(f"--max-tokens must be >= {MIN_POINTS} or null (got {options['max_tokens']})")
    for key in ("max_sentences", "batch_size", "bootstrap_samples", "every_steps"):
        if options.get(key) is not None and options[key] < 1:
            raise InputError(f"--{key.replace('_', '-')} must be >= 1 (got {options[key]})")
    if options["seed"] < 0:
        raise InputError(f"--seed must be >= 0 (got {options['seed']})")
    if options["method"] not in ("linear", "mle"):
        raise InputError(f"--method must be linear or mle (got {options['method']!r})")


def neighbour_distances(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(r1, r2): each point's Euclidean distance to its first and second nearest neighbour."""
    from skdim import get_nn

    distances, _ = get_nn(np.asarray(points, dtype=np.float64), k=2)
    return distances[:, 0], distances[:, 1]


def twonn(r1: np.ndarray, r2: np.ndarray, discard_fraction: float = 0.1, method: str = "linear") -> float:
    """scikit-dimension's TwoNN estimate from the points' neighbour distances."""
    import warnings

    from skdim.id import TwoNN

    estimator = TwoNN(discard_fraction=discard_fraction, dist=True, method=method)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # a zero distance (a duplicate left) is a bug here
        return float(estimator.fit(np.column_stack([r1, r2])).dimension_)


def unique_rows(points: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """Indices (ascending) of the points kept: the first of each input ``keys`` row, then the first
    of each identical vector."""
    _, first = np.unique(keys, axis=0, return_index=True)
    first = np.sort(first)
    _, again = np.unique(points[first], axis=0, return_index=True)
    return first[np.sort(again)]


def intrinsic_dimensions(
    layers: list[np.ndarray], keys: list[np.ndarray], sentence: np.ndarray, options: dict
) -> list[dict]:
    """One row (layer, intrinsic_dim, id_low, id_high, n_points) per hidden state and one for the
    mean over all but the first (see the module docstring). ``layers``: (points x hidden) arrays of
    the same pieces; ``keys``: each layer's input identity of each piece; ``sentence``: each
    piece's sentence."""
    rng = np.random.default_rng(options["seed"])
    n_sentences = int(sentence.max()) + 1 if len(sentence) else 0
    # how often each sentence is drawn, per resample: the same draws for every layer
    draws = [
        np.bincount(rng.integers(0, n_sentences, n_sentences), minlength=n_sentences)
        for _ in range(options["bootstrap_samples"])
    ]
    fit = {"discard_fraction": options["discard_fraction"], "method": options["method"]}
    estimates, samples, counts = [], [], []
    for points, key in zip(layers, keys):
        kept = unique_rows(points, key)
        counts.append(len(kept))
        if len(kept) < MIN_POINTS:
            estimates.append(np.nan)
            samples.append(np.full(len(draws), np.nan))
            continue
        r1, r2 = neighbour_distances(points[kept])
        owner = sentence[kept]
        estimates.append(twonn(r1, r2, **fit))
        resampled = []
        for weights in draws:
            rows = np.repeat(np.arange(len(kept)), weights[owner])
            resampled.append(twonn(r1[rows], r2[rows], **fit) if len(rows) >= MIN_POINTS else np.nan)
        samples.append(np.asarray(resampled))
    names = ["embeddings", *(str(k) for k in range(1, len(layers)))]
    rows = []
    for name, value, boot, n in zip(names, estimates, samples, counts):
        rows.append({"layer": name, "intrinsic_dim": value, **_interval(boot), "n_points": n})
    if len(layers) > 1:
        mean = np.mean(np.vstack(samples[1:]), axis=0)
        rows.append(
            {
                "layer": CURVE_LAYER,
                "intrinsic_dim": float(np.mean(estimates[1:])),
                **_interval(mean),
                "n_points": min(counts[1:]),
            }
        )
    return rows


def _interval(samples: np.ndarray) -> dict:
    samples = samples[np.isfinite(samples)]
    if len(samples) < 2:
        return {"id_low": np.nan, "id_high": np.nan}
    low, high = np.percentile(samples, [2.5, 97.5])
    return {"id_low": float(low), "id_high": float(high)}


def hidden_states(model, encoded: list, batch_size: int, device) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    """Every hidden state's vectors of the sentences' non-special pieces, in sentence order; each
    piece's sentence, and its (piece id, position)."""
    import torch

    base = model.base_model if hasattr(model, "base_model") else model
    order = sorted(range(len(encoded)), key=lambda i: -len(encoded[i][0]))
    per_sentence: dict[int, list[np.ndarray]] = {}
    with torch.inference_mode():
        for b in range(0, len(order), batch_size):
            rows = order[b : b + batch_size]
            width = max(len(encoded[i][0]) for i in rows)
            ids = torch.zeros((len(rows), width), dtype=torch.long)
            mask = torch.zeros((len(rows), width), dtype=torch.long)
            for r, i in enumerate(rows):
                ids[r, : len(encoded[i][0])] = torch.tensor(encoded[i][0])
                mask[r, : len(encoded[i][0])] = 1
            out = base(input_ids=ids.to(device), attention_mask=mask.to(device), output_hidden_states=True)
            states = [h.float().cpu().numpy() for h in out.hidden_states]
            for r, i in enumerate(rows):
                pieces = np.flatnonzero(encoded[i][1] >= 0)
                per_sentence[i] = [h[r, pieces] for h in states]
    layers = [np.concatenate([per_sentence[i][k] for i in range(len(encoded))]) for k in range(len(states))]
    sentence = np.concatenate([np.full(int((enc[1] >= 0).sum()), i) for i, enc in enumerate(encoded)])
    pieces = [np.flatnonzero(enc[1] >= 0) for enc in encoded]
    piece_key = np.concatenate([np.column_stack([np.asarray(enc[0])[p], p]) for enc, p in zip(encoded, pieces)])
    return layers, sentence, piece_key


def output_classes(encoded: list, sentence: np.ndarray, position: np.ndarray, causal: bool) -> np.ndarray:
    """For each piece (its sentence's index in ``encoded``, its position), the class of the input
    a layer's output at it is a function of: the whole sentence's pieces for a bidirectional model,
    the pieces up to it for a causal one (sentences that begin alike give the same outputs there,
    up to floating point, which only this key tells apart from distinct points)."""
    pieces = [tuple(enc[0]) for enc in encoded]
    classes: dict[tuple, int] = {}
    found = []
    for s, p in zip(sentence.tolist(), position.tolist()):
        found.append(classes.setdefault((pieces[s][: p + 1] if causal else pieces[s], p), len(classes)))
    return np.asarray(found, dtype=np.int64)


def prepare(options: dict, data: dict, device) -> tuple[list, dict]:
    from sasbert.hub import content_id
    from sasbert.measure.probe.sentences import read_treebank

    check_options(options)
    sentences = read_treebank(data["treebank"], options["max_sentences"])
    return sentences, {"treebank": content_id(data["treebank"])}


def score(path, step: int, sentences: list, options: dict, device) -> dict[str, pd.DataFrame]:
    from sasbert.measure.checkpoints import load_language_model, model_kind
    from sasbert.measure.probe.alignment import encode_sentences, fitting_sentences, max_model_pieces

    model, tokenizer = load_language_model(path, device)
    causal = model_kind(path) == "causal"
    encoded = encode_sentences(tokenizer, sentences)
    keep, too_long, unaligned = fitting_sentences(encoded, max_model_pieces(model))
    if too_long or unaligned:
        log.info(
            "%s: %d sentence(s) too long for the model, %d with a word without pieces: skipped",
            path.name,
            too_long,
            unaligned,
        )
    if not keep:
        raise InputError(f"{path}: no sentence of the treebank fits the model")
    encoded = [encoded[k] for k in keep]
    layers, sentence, piece_key = hidden_states(model, encoded, options["batch_size"], device)
    n_tokens = len(sentence)
    if options["max_tokens"] is not None and n_tokens > options["max_tokens"]:
        chosen = np.sort(np.random.default_rng(options["seed"]).choice(n_tokens, options["max_tokens"], replace=False))
        layers, sentence, piece_key = [h[chosen] for h in layers], sentence[chosen], piece_key[chosen]
    # a layer's output is the same for the same input it reads (the embeddings: piece and position)
    outputs = output_classes(encoded, sentence, piece_key[:, 1], causal)
    keys = [piece_key] + [np.column_stack([outputs, piece_key[:, 1]])] * (len(layers) - 1)
    _, sentence = np.unique(sentence, return_inverse=True)  # the sentences that kept a piece, 0..n-1
    rows = intrinsic_dimensions(layers, keys, sentence, options)
    table = pd.DataFrame(rows).assign(
        step=step, checkpoint=path.name, n_tokens=len(sentence), n_sentences=int(sentence.max()) + 1
    )
    return {"summary": table[SUMMARY_COLUMNS]}


add_arguments, run = score_command("complexity", prepare, score)
