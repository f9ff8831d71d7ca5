"""How much the attention probe costs beyond the forward passes it needs.

    python benchmarks/probe_speed.py [--sentences 300] [--layers 4] [--heads 4] [--hidden 128] ...

Builds a random BERT (bert-base-uncased vocab) as a checkpoint dir, then times, in one process and
interleaved (best of --repeats):
  * probe:   ``sasbert.measure.probe.scoring.score_model`` end to end (tokenization, length-sorted batches, forward
             passes, word pooling, argmaxes, tallies, score and summary tables);
  * forward: a bare batched forward of the same encoder with ``output_attentions=True`` over the
             same sentences (pre-tokenized, same length-sorted batches, same batch size);
  * mlm fwd: the same with the full masked-LM model (logits over the vocabulary at every position),
             for reference only.
The last line holds the headline ratio probe / forward.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from sasbert.measure.checkpoints import resolve_device  # noqa: E402
from sasbert.measure.probe import alignment as probe_alignment  # noqa: E402
from sasbert.measure.probe import scoring as probe_scoring  # noqa: E402
from sasbert.measure.probe import sentences as probe_sentences  # noqa: E402
from sasbert.measure.probe.options import ProbeOptions  # noqa: E402

VOCAB = ROOT / "resources" / "tokenizer" / "bert-base-uncased-vocab.txt"
EWT_DEV = ROOT / "resources" / "ud" / "UD_English-EWT" / "en_ewt-ud-dev.conllu.gz"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--treebank", default=str(EWT_DEV))
    p.add_argument("--sentences", type=int, default=300)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--max-pieces", type=int, default=128)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (0: torch's default)")
    p.add_argument("--device", default="auto")
    return p.parse_args(argv)


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def forward_batches(tokenizer, sentences, keep, batch_size, device):
    """The probe's batches, as bare (input_ids, attention_mask) tensors."""
    enc = tokenizer([" ".join(sentences[k].words) for k in keep], add_special_tokens=True)["input_ids"]
    order = sorted(range(len(enc)), key=lambda i: -len(enc[i]))
    batches = []
    for b in range(0, len(order), batch_size):
        rows = [enc[i] for i in order[b : b + batch_size]]
        S = max(map(len, rows))
        ids = np.full((len(rows), S), tokenizer.pad_token_id, dtype=np.int64)
        mask = np.zeros((len(rows), S), dtype=np.int64)
        for r, row in enumerate(rows):
            ids[r, : len(row)] = row
            mask[r, : len(row)] = 1
        batches.append((torch.from_numpy(ids).to(device), torch.from_numpy(mask).to(device)))
    return batches


def time_forward(module, batches, device):
    sync(device)
    t0 = time.perf_counter()
    with torch.inference_mode():
        for ids, mask in batches:
            module(input_ids=ids, attention_mask=mask, output_attentions=True)
    sync(device)
    return time.perf_counter() - t0


def main(argv=None):
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    from transformers import BertConfig, BertForMaskedLM, BertTokenizerFast

    device = resolve_device(args.device)
    tokenizer = BertTokenizerFast(vocab=str(VOCAB))
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=args.hidden,
        num_hidden_layers=args.layers,
        num_attention_heads=args.heads,
        intermediate_size=4 * args.hidden,
        max_position_embeddings=max(512, args.max_pieces),
    )
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = Path(tmp) / "step-0000000"
        BertForMaskedLM(config).save_pretrained(ckpt)
        tokenizer.save_pretrained(ckpt)
        t0 = time.perf_counter()
        model, tokenizer = probe_scoring.load_checkpoint(ckpt, device=device)
        t_load = time.perf_counter() - t0

    t0 = time.perf_counter()
    sentences = probe_sentences.read_treebank(args.treebank, max_sentences=args.sentences)
    t_read = time.perf_counter() - t0

    # the sentences the probe runs: within max_pieces and with at least one scored word
    labelled = probe_sentences.is_labelled(sentences)
    encoded = probe_alignment.encode_sentences(tokenizer, sentences)
    keep = [
        k
        for k, e in enumerate(encoded)
        if e is not None
        and len(e[0]) <= args.max_pieces
        and any(r is not None for r in probe_sentences.scored_relations(sentences[k], labelled))
    ]
    batches = forward_batches(tokenizer, sentences, keep, args.batch_size, device)
    n_pieces = sum(len(encoded[k][0]) for k in keep)
    n_padded = sum(ids.numel() for ids, _ in batches)

    def run_probe():
        sync(device)
        t = time.perf_counter()
        probe_scoring.score_model(
            model,
            tokenizer,
            sentences,
            ProbeOptions(max_pieces=args.max_pieces, batch_size=args.batch_size),
            device=device,
        )
        sync(device)
        return time.perf_counter() - t

    # warm-up (allocator, kernels, tokenizer caches)
    run_probe()
    time_forward(model.base_model, batches, device)
    times = {"probe": [], "forward": [], "mlm fwd": []}
    for _ in range(args.repeats):
        times["forward"].append(time_forward(model.base_model, batches, device))
        times["probe"].append(run_probe())
        times["mlm fwd"].append(time_forward(model, batches, device))

    print(
        f"device {device}, torch threads {torch.get_num_threads()}, model {args.layers} layers x "
        f"{args.heads} heads x {args.hidden} hidden, vocab {config.vocab_size}"
    )
    print(
        f"{len(sentences)} sentences read ({t_read:.2f} s), {len(keep)} probed, {n_pieces} pieces "
        f"({n_padded} with padding), {len(batches)} batches of <= {args.batch_size}; "
        f"checkpoint load {t_load:.2f} s"
    )
    print(f"{'':10s} {'best s':>8s} {'median s':>9s} {'sent/s':>8s}")
    for name, ts in times.items():
        print(f"{name:10s} {min(ts):8.3f} {statistics.median(ts):9.3f} {len(keep) / min(ts):8.0f}")
    ratio = min(times["probe"]) / min(times["forward"])
    print(f"probe/mlm-forward time ratio: {min(times['probe']) / min(times['mlm fwd']):.2f}")
    print(f"probe/forward time ratio: {ratio:.2f}")


if __name__ == "__main__":
    main()
