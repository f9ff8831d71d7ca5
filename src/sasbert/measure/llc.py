"""``sasbert llc score``: the local learning coefficient (LLC) of every checkpoint, estimated by
SGLD (Lau et al. 2023) with devinterp's sampler (docs/method.md, "Local learning coefficient").

The LLC measures a model's effective complexity at a point of its loss landscape: how fast the
volume of near-optimal parameters shrinks as the loss bound tightens (Watanabe's learning
coefficient, localized to the checkpoint w*). A regular model of d parameters has LLC d/2; a
degenerate one less. Developmental interpretability reads its changes over training as stages;
this measure sets it beside the structure onset, as the TwoNN dimension of ``complexity`` is.

**The loss** L is the MLM loss of a text's sentences with masks fixed once (the same draw as the
context measure's: ``sasbert.measure.context.masked_sentences``, every masked piece [MASK]),
model in eval mode (no dropout, so L is a function of the weights alone). The text is
``llc.treebank``: the default is the default corpus's own text (EWT train), so L is the training
loss of the runs trained here; point it at the training text of another corpus. L_n(w*) (the
``init_loss``) is L's mean over every batch at the checkpoint.

**The estimate**, per chain c = 0 .. num_chains - 1: a copy of the model samples from the
localized tempered posterior exp(-nβ L(w) - γ/2 |w - w*|²) with devinterp's SGLD
(``devinterp.optim.SGMCMC.sgld``: w += -ε/2 (nβ ∇L_batch(w) + γ (w - w*)) + N(0, ε)), its noise
from a torch generator seeded from (seed, NOISE_STREAM, c), its batches the text's batches in
permutations drawn by ``numpy.random.default_rng([seed, ORDER_STREAM, c])`` (streams of their own,
apart from each other and from the masks' ``default_rng([seed, sentence])``). Each step records
the batch's loss before the update, less the same batch's loss at w*; the first
``num_burnin_steps`` are left out and the next ``num_draws`` kept:
LLC_c = nβ (mean of the kept differences). This is Lau et al.'s nβ (E_w L_n(w) - L_n(w*)) with
each draw paired to its own batch: the same value in expectation as the mean draw loss less
L_n(w*), without the noise of which batches the kept draws happen to cover (batches are of like
lengths, so their losses differ; measured on the default, that noise is small beside the chains'
spread). ``llc`` is the mean over chains, ``llc_std`` their standard deviation, ``llc_low,
llc_high`` the 95% t-interval of the mean over chains (all three NaN with one chain). nβ defaults
to devinterp's ``default_nbeta`` of the batch size (m / log m); ε (``lr``), γ (``localization``)
and the draws are the sampler settings, which the LLC depends on: compare LLCs made with the same
settings only (devinterp's calibration guide).

Table ``summary``, one row per checkpoint: ``step, checkpoint, llc, llc_std, llc_low, llc_high,
init_loss, nbeta, n_chains, n_draws, n_sentences`` (``n_sentences``: the treebank's sentences
that fit the model, as in ``context``; those with no masked piece add nothing to L). A causal LM
has no MLM loss: a series' causal checkpoint gets no rows (logged).
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from sasbert.errors import InputError
from sasbert.measure.command import score_command

log = logging.getLogger(__name__)

COLUMNS = [
    "step",
    "checkpoint",
    "llc",
    "llc_std",
    "llc_low",
    "llc_high",
    "init_loss",
    "nbeta",
    "n_chains",
    "n_draws",
    "n_sentences",
]
# the options passed to ``local_learning_coefficient`` as they are
SAMPLER_OPTIONS = ("lr", "localization", "num_chains", "num_burnin_steps", "num_draws", "seed")
# the tags that give a chain's batch order and its SGLD noise random streams of their own
ORDER_STREAM, NOISE_STREAM = 1, 2


def check_options(options: dict) -> None:
    """What the flags may set outside the schema's checks of --options, named by flag."""
    for key in ("num_chains", "num_draws", "batch_size"):
        if options[key] < 1:
            raise InputError(f"--{key.replace('_', '-')} must be >= 1 (got {options[key]})")
    for key in ("max_sentences", "every_steps"):
        if options.get(key) is not None and options[key] < 1:
            raise InputError(f"--{key.replace('_', '-')} must be >= 1 or null (got {options[key]})")
    for key in ("num_burnin_steps", "seed"):
        if options[key] < 0:
            raise InputError(f"--{key.replace('_', '-')} must be >= 0 (got {options[key]})")
    if not options["lr"] > 0:
        raise InputError(f"--lr must be > 0 (got {options['lr']})")
    if options["localization"] < 0:
        raise InputError(f"--localization must be >= 0 (got {options['localization']})")
    if options["nbeta"] is not None and not options["nbeta"] > 0:
        raise InputError(f"--nbeta must be > 0 or null (got {options['nbeta']})")
    if not 0 < options["mlm_probability"] < 1:
        raise InputError(f"--mlm-probability must be in (0, 1) (got {options['mlm_probability']})")
    if options["batch_size"] < 2 and options["nbeta"] is None:
        raise InputError("--batch-size 1 has no default nβ (m / log m): give --nbeta")


def default_nbeta(batch_size: int) -> float:
    """devinterp's default inverse temperature for batches of ``batch_size``: m / log m."""
    from devinterp.utils import default_nbeta as devinterp_default

    return float(devinterp_default(batch_size))


def local_learning_coefficient(
    model,
    batches: Sequence,
    loss_of: Callable,
    *,
    lr: float,
    nbeta: float,
    localization: float,
    num_chains: int,
    num_burnin_steps: int,
    num_draws: int,
    seed: int,
    device="cpu",
) -> dict:
    """{llc, llc_std, llc_low, llc_high, init_loss, per_chain} of ``model`` at its weights, the loss
    of a batch being ``loss_of(model, batch)`` (a scalar tensor, the batch's mean loss); see the
    module docstring. ``model`` itself is not changed."""
    import torch
    from devinterp.optim import SGMCMC

    with torch.no_grad():
        init_losses = [loss_of(model, batch).item() for batch in batches]
    init_loss = float(np.mean(init_losses))
    per_chain = []
    for chain in range(num_chains):
        sampled = copy.deepcopy(model)
        sampler = SGMCMC.sgld(sampled.parameters(), lr=lr, nbeta=nbeta, localization=localization)
        noise = torch.Generator(device=device)
        noise.manual_seed(int(np.random.SeedSequence([seed, NOISE_STREAM, chain]).generate_state(1)[0]))
        rng = np.random.default_rng([seed, ORDER_STREAM, chain])
        steps = num_burnin_steps + num_draws
        order = np.concatenate([rng.permutation(len(batches)) for _ in range(-(-steps // len(batches)))])
        kept = []
        for t in range(steps):
            sampler.zero_grad()
            loss = loss_of(sampled, batches[order[t]])
            loss.backward()
            sampler.step(noise_generator=noise)
            if t >= num_burnin_steps:
                kept.append(loss.item() - init_losses[order[t]])
        if not np.isfinite(kept).all():
            raise InputError(f"SGLD chain {chain} diverged (a non-finite loss): lower --lr or raise --localization")
        per_chain.append(nbeta * float(np.mean(kept)))
    return {**over_chains(per_chain), "init_loss": init_loss, "per_chain": per_chain}


def over_chains(per_chain: Sequence[float]) -> dict:
    """{llc, llc_std, llc_low, llc_high}: the chains' mean, their standard deviation (ddof 1) and
    the 95% t-interval of the mean (NaN but the mean with one chain)."""
    from scipy import stats

    values = np.asarray(per_chain, dtype=float)
    mean = float(values.mean())
    if len(values) < 2:
        return {"llc": mean, "llc_std": float("nan"), "llc_low": float("nan"), "llc_high": float("nan")}
    std = float(values.std(ddof=1))
    half = float(stats.t.ppf(0.975, len(values) - 1)) * std / np.sqrt(len(values))
    return {"llc": mean, "llc_std": std, "llc_low": mean - half, "llc_high": mean + half}


def mlm_batches(examples, batch_size: int, device) -> list[tuple]:
    """The masked ``examples`` in the context measure's padded batches, on ``device``."""
    from sasbert.measure.context import padded_batches

    return [tuple(t.to(device) for t in batch) for batch in padded_batches(examples, batch_size)]


def mlm_loss(model, batch):
    """The batch's mean cross-entropy over its masked pieces, from the context measure's
    ``masked_logits`` (for BERT the prediction head on the masked pieces alone: the same loss, and
    the head over every position would be most of a step's cost at a small model's vocabulary)."""
    import torch.nn.functional as F

    from sasbert.measure.context import masked_logits

    ids, mask, labels = batch
    selected = labels != -100
    return F.cross_entropy(masked_logits(model, ids, mask, selected), labels[selected])


def prepare(options: dict, data: dict[str, Path], device):
    """The treebank's sentences (read once per job) and its content, for the cache's identity."""
    from sasbert.hub import content_id
    from sasbert.measure.context import read_sentences

    check_options(options)
    sentences = read_sentences(data["treebank"], options["max_sentences"])
    log.info("%s: %d sentences", data["treebank"], len(sentences))
    return sentences, {"treebank": content_id(data["treebank"])}


def score(path: Path, step: int, sentences, options: dict, device) -> dict[str, pd.DataFrame]:
    """One checkpoint's ``summary`` (see the module docstring)."""
    from sasbert.measure.context import masked_lm_examples

    loaded = masked_lm_examples(path, step, sentences, options, device)
    if loaded is None:  # a causal LM
        return {"summary": _table([])}
    start = time.perf_counter()
    model, examples, kept = loaded
    model.eval()  # no dropout: the loss is a function of the weights
    if not examples:
        raise InputError(f"{path}: no sentence of --treebank fits the model with a masked piece")
    nbeta = options["nbeta"] if options["nbeta"] is not None else default_nbeta(options["batch_size"])
    batches = mlm_batches(examples, options["batch_size"], device)
    sampler = {key: options[key] for key in SAMPLER_OPTIONS}
    estimate = local_learning_coefficient(model, batches, mlm_loss, nbeta=nbeta, device=device, **sampler)
    row = {key: value for key, value in estimate.items() if key != "per_chain"}
    row.update(step=step, checkpoint=path.name, nbeta=nbeta, n_chains=options["num_chains"])
    row.update(n_draws=options["num_draws"], n_sentences=kept)
    log.info(
        "step %d (%s): LLC %.2f [%.2f, %.2f] (chains %s; init loss %.4f; %.1f s)",
        step,
        path.name,
        row["llc"],
        row["llc_low"],
        row["llc_high"],
        " ".join(f"{v:.2f}" for v in estimate["per_chain"]),
        row["init_loss"],
        time.perf_counter() - start,
    )
    return {"summary": _table([row])}


def _table(rows: list[dict]) -> pd.DataFrame:
    """The summary's rows with its columns and their types (none: an empty table)."""
    integers = ("step", "n_chains", "n_draws", "n_sentences")
    types = {c: "object" if c == "checkpoint" else "int64" if c in integers else "float64" for c in COLUMNS}
    return pd.DataFrame(rows, columns=COLUMNS).astype(types)


add_arguments, run = score_command("llc", prepare, score)
