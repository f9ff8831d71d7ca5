"""Training step time and peak memory: lambda = 0 (SDPA and eager attention) vs lambda != 0 with
the SAS regularizer on each path (``regularizer.attention``): pre_dropout (the fused SDPA kernel, R
read at the arcs from q, k and the rows' log-sum-exp) and post_dropout (eager attention, R read by
the arc taps), same weights, batch and process. Targets (issue 16): the fused regularized step
<= 1.10x the SDPA step on a GPU at BERT-base 32 x 512 bf16, <= 1.15x at 64 x 128, peak memory
within 10% of SDPA's; <= 1.05x on this CPU on the default model. A last row times R gathered from
the attention maps BERT returns (the reference implementation, sas_regularizer).

    python benchmarks/pretrain_speed.py                      # tiny default model, seq 64, batch 32
    python benchmarks/pretrain_speed.py --preset base --seq-len 128 --batch-size 8 --steps 5
    python benchmarks/pretrain_speed.py --preset base --seq-len 512 --batch-size 32 --device cuda --precision bf16

Each row also gives the model FLOP utilisation (MFU): model FLOPs per second over the device's
dense peak (``--peak-tflops``, else $SASBERT_PEAK_TFLOPS, else PEAK_TFLOPS by device name; bf16
peak for --precision bf16, fp32 otherwise; "-" where none is known). Model FLOPs per token
(``model_flops_per_token``): 6 x the encoder's matrix-multiply weights (fwd 2, bwd 4 FLOPs per
weight), plus 12 x layers x seq x hidden for the attention products (QK^T and PV, fwd + bwd),
plus 6 x (hidden^2 + hidden x vocab) x the masked fraction for the MLM head, which runs on the
masked positions only; embedding look-ups, norms, softmax and the regularizer count nothing, so
every path does the same model FLOPs and a slower path shows a lower MFU. With --profile-dir, when
the unregularized SDPA step is below --profile-below MFU, a torch.profiler summary of a few such
steps (top ops by device time) is written there.

Prints a table and ends with one line holding the headline ratio.
"""

from __future__ import annotations

import argparse
import copy
import os
import resource
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from transformers.utils import logging as hf_logging

from sasbert.config import MODEL_PRESETS
from sasbert.train.model import build_model
from sasbert.train.regularizer import sas_regularizer

# Dense (no sparsity) peak TFLOP/s by device-name substring, first match wins: (bf16, fp32).
# The fp32 figure is the plain (non-TF32) one. Override with --peak-tflops or $SASBERT_PEAK_TFLOPS.
PEAK_TFLOPS = [
    ("H200", (989.0, 67.0)),
    ("H100", (989.0, 67.0)),
    ("A100", (312.0, 19.5)),
    ("L40S", (362.0, 91.6)),
    ("A10G", (70.0, 35.0)),
]


def peak_tflops(device, precision, override=None):
    """(peak TFLOP/s, where it came from) or (None, why not)."""
    if override is not None:
        return override, "--peak-tflops"
    if os.environ.get("SASBERT_PEAK_TFLOPS"):
        return float(os.environ["SASBERT_PEAK_TFLOPS"]), "$SASBERT_PEAK_TFLOPS"
    if device.type != "cuda":
        return None, "no peak known for this device (set --peak-tflops)"
    name = torch.cuda.get_device_name(device)
    for key, (bf16, fp32) in PEAK_TFLOPS:
        if key in name:
            return (bf16 if precision == "bf16" else fp32), f"{name}, {precision} dense peak"
    return None, f"no peak known for {name} (set --peak-tflops)"


def model_flops_per_token(model_kwargs, vocab, seq_len, masked_fraction):
    """Training FLOPs (forward + backward) per token of the model itself; see the module docstring."""
    layers = model_kwargs["num_hidden_layers"]
    hidden = model_kwargs["hidden_size"]
    inter = model_kwargs["intermediate_size"]
    encoder_weights = layers * (4 * hidden * hidden + 2 * hidden * inter)  # Q, K, V, O and the two FFN
    attention = 12 * layers * seq_len * hidden  # QK^T and PV: 2 x 2 x S x hidden forward, x 3 with backward
    head = 6 * (hidden * hidden + hidden * vocab) * masked_fraction  # transform + decoder, masked rows only
    return 6 * encoder_weights + attention + head


def profile_steps(net, optimizer, batch, mode, device, dtype, steps, path):
    """A torch.profiler summary of ``steps`` optimizer steps: the top ops by device (else CPU) time."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        for _ in range(steps):
            one_step(net, optimizer, batch, mode, device, dtype)
    sort_by = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    table = prof.key_averages().table(sort_by=sort_by, row_limit=25)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(f"{steps} step(s), mode {mode}, sorted by {sort_by}\n{table}\n")


def make_batch(batch_size, seq_len, vocab, generator):
    input_ids = torch.randint(5, vocab, (batch_size, seq_len), generator=generator)
    labels = torch.full_like(input_ids, -100)
    masked = torch.rand(batch_size, seq_len, generator=generator) < 0.15
    labels[masked] = input_ids[masked]
    input_ids[masked] = 4
    # about 70% of positions labelled (as on UD EWT), parents within 8 positions
    heads = (torch.arange(seq_len) + torch.randint(-8, 9, (batch_size, seq_len), generator=generator)).clamp(
        1, seq_len - 1
    )
    heads[torch.rand(batch_size, seq_len, generator=generator) > 0.7] = -1
    heads[:, 0] = -1
    return {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids), "labels": labels, "heads": heads}


def forward_with_maps(model, batch):
    """The reference: R from the attention maps BERT returns (sas_regularizer), no taps."""
    out = model.bert(batch["input_ids"], attention_mask=batch["attention_mask"], output_attentions=True)
    masked = batch["labels"] != -100
    logits = model.cls(out.last_hidden_state[masked])
    mlm_sum = F.cross_entropy(logits.float(), batch["labels"][masked], reduction="sum")
    options = model.sas_options
    sas = sas_regularizer(out.attentions, batch["heads"], options["type"], options["direction"], options["reduction"])
    return {"mlm_sum": mlm_sum, "n_masked": masked.sum(), "sas": sas}


def one_step(model, optimizer, batch, mode, device, dtype):
    """One optimizer step; mode: none (lambda 0), post_dropout / pre_dropout (R on that path),
    maps (R from the returned maps). Returns (seconds, peak GPU memory in bytes or 0)."""
    sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    if mode in ("pre_dropout", "post_dropout"):
        model.sas_options = {**model.sas_options, "attention": mode}
    # autocast as HF Trainer's bf16 does: fp32 master weights, bf16 matrix products
    with torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
        if mode == "maps":
            out = forward_with_maps(model, batch)
        else:
            out = model(**batch, compute_sas=mode != "none")
        loss = out["mlm_sum"] / out["n_masked"]
        if mode != "none":
            loss = loss + 1.0 * out["sas"]
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    sync(device)
    seconds = time.perf_counter() - start
    return seconds, torch.cuda.max_memory_allocated(device) if device.type == "cuda" else 0


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median(values):
    return sorted(values)[len(values) // 2]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="tiny", choices=sorted(MODEL_PRESETS))
    parser.add_argument("--layers", type=int, default=None, help="override the preset's number of layers")
    parser.add_argument("--vocab-size", type=int, default=8000)
    parser.add_argument("--seq-len", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--reduction", default="mean", choices=["sum", "mean"])
    parser.add_argument("--type", default="max", choices=["max", "uniform"])
    # dropout off by default, as in config.yaml's model; BERT-base uses 0.1 for both
    parser.add_argument("--hidden-dropout", type=float, default=0.0, help="hidden_dropout_prob")
    parser.add_argument("--attention-dropout", type=float, default=0.0, help="attention_probs_dropout_prob")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16"], help="autocast dtype")
    parser.add_argument("--peak-tflops", type=float, default=None, help="the device's dense peak, for MFU")
    parser.add_argument("--profile-dir", default=None, help="write a torch.profiler summary here (see --profile-below)")
    parser.add_argument("--profile-below", type=float, default=0.40, help="profile when SDPA's MFU is below this")
    parser.add_argument("--profile-steps", type=int, default=3)
    args = parser.parse_args()
    device = torch.device(args.device)
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[args.precision]
    torch.set_num_threads(args.threads)
    hf_logging.set_verbosity_error()  # transformers' one-time notes

    model_kwargs = dict(MODEL_PRESETS[args.preset])
    model_kwargs["intermediate_size"] = 4 * model_kwargs["hidden_size"]
    model_kwargs["hidden_dropout_prob"] = args.hidden_dropout
    model_kwargs["attention_probs_dropout_prob"] = args.attention_dropout
    if args.layers:
        model_kwargs["num_hidden_layers"] = args.layers
    model = build_model(model_kwargs, args.vocab_size, seed=0, max_position=max(512, args.seq_len))
    model.sas_options = {"type": args.type, "direction": "both", "reduction": args.reduction}
    model.train()
    # The same weights with eager attention: separates the regularizer's own cost from the
    # attention kernel's.
    # (a copy of the config: transformers 5's _from_config sets the attention on the config it is given)
    eager = type(model)._from_config(copy.deepcopy(model.config), attn_implementation="eager")
    eager.load_state_dict(model.state_dict())
    eager.sas_options = model.sas_options
    eager.train()
    model.to(device)
    eager.to(device)
    optimizers = {id(m): torch.optim.AdamW(m.parameters(), lr=1e-4) for m in (model, eager)}
    batch = make_batch(args.batch_size, args.seq_len, args.vocab_size, torch.Generator().manual_seed(0))
    batch = {k: v.to(device) for k, v in batch.items()}
    tokens = args.batch_size * args.seq_len

    # Interleave the two settings step by step, so a change in machine load hits both alike.
    settings = [
        ("lambda = 0 (sdpa)", model, "none"),
        ("lambda = 0 (eager)", eager, "none"),
        ("lambda != 0 (fused + R, pre_dropout)", model, "pre_dropout"),
        ("lambda != 0 (eager + R, post_dropout)", model, "post_dropout"),
        ("  reference: R from maps", eager, "maps"),
    ]
    times = {label: [] for label, _, _ in settings}
    peaks = {label: 0 for label, _, _ in settings}
    for i in range(args.warmup + args.steps):
        for label, net, mode in settings:
            seconds, peak = one_step(net, optimizers[id(net)], batch, mode, device, dtype)
            if i >= args.warmup:
                times[label].append(seconds)
                peaks[label] = max(peaks[label], peak)
    rows = [(label, median(times[label]), tokens / median(times[label])) for label, _, _ in settings]
    masked_fraction = float((batch["labels"] != -100).float().mean())
    flops_token = model_flops_per_token(model_kwargs, args.vocab_size, args.seq_len, masked_fraction)
    peak_tf, peak_source = peak_tflops(device, args.precision, args.peak_tflops)
    mfu = {label: (tps * flops_token / (peak_tf * 1e12) if peak_tf else None) for label, _, tps in rows}
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    print(
        f"model {args.preset} {model_kwargs['num_hidden_layers']}x{model_kwargs['num_attention_heads']}x"
        f"{model_kwargs['hidden_size']}, vocab {args.vocab_size}, batch {args.batch_size} x {args.seq_len}, "
        f"{args.device}, {args.precision}, {args.threads} thread(s), median of {args.steps} steps"
    )
    sdpa = rows[0][1]
    print(f"{'setting':<38} {'s/step':>8} {'tokens/s':>10} {'x sdpa':>7} {'peak GPU MB':>12} {'MFU':>6}")
    for label, seconds, tps in rows:
        memory = f"{peaks[label] / 2**20:.0f}" if device.type == "cuda" else "-"
        util = f"{mfu[label]:.1%}" if mfu[label] is not None else "-"
        print(f"{label:<38} {seconds:>8.4f} {tps:>10.0f} {seconds / sdpa:>7.3f} {memory:>12} {util:>6}")
    print(f"peak RSS of the process: {peak_mb:.0f} MB")
    print(
        f"model FLOPs per token {flops_token / 1e6:.1f}M (masked fraction {masked_fraction:.3f}); "
        f"MFU peak: {f'{peak_tf:g} TFLOP/s, ' if peak_tf else ''}{peak_source}"
    )
    sdpa_mfu = mfu[rows[0][0]]
    if args.profile_dir and sdpa_mfu is not None and sdpa_mfu < args.profile_below:
        path = Path(args.profile_dir) / f"profile_{args.preset}_{args.batch_size}x{args.seq_len}_sdpa.txt"
        profile_steps(model, optimizers[id(model)], batch, "none", device, dtype, args.profile_steps, path)
        print(f"SDPA MFU {sdpa_mfu:.1%} < {args.profile_below:.0%}: torch.profiler summary in {path}")
    elif args.profile_dir:
        print(
            f"SDPA MFU {'unknown' if sdpa_mfu is None else f'{sdpa_mfu:.1%}'}: no profile (threshold {args.profile_below:.0%})"
        )
    if device.type == "cuda":
        label = rows[2][0]
        print(
            f"fused peak GPU memory / SDPA's: {peaks[label] / peaks[rows[0][0]]:.3f} "
            f"({torch.cuda.get_device_name(device)})"
        )
    print(f"regularized (fused, pre_dropout) / unregularized (sdpa) step time ratio: {rows[2][1] / sdpa:.3f}")


if __name__ == "__main__":
    main()
