"""GLUE fine-tuning cost: the time of one training step of a sequence classifier (BERT-base by
default, random weights: no hub) at run_glue's batch of 32, at a short and at run_glue's full 128
pieces, and from them the time of each task's fine-tune (3 epochs over its training split, as
``glue`` runs it) between two bounds: every batch as short as the short length, or every batch
padded to 128 (run_glue's pad_to_max_length; our per-batch padding is never longer). Scoring the
validation split is a forward pass over a few thousand examples, small beside training (MNLI's
20K and QQP's 40K: about a tenth of one training epoch's passes).

    python benchmarks/glue_speed.py                                  # CPU, BERT-base
    python benchmarks/glue_speed.py --device cuda --precision bf16   # on a GPU

Prints a table and ends with one line holding the headline: all nine tasks, one fine-tuning seed,
one checkpoint, in minutes.
"""

from __future__ import annotations

import argparse
import math
import time

import torch
from transformers import BertConfig, BertForSequenceClassification

# GLUE's training split sizes (nyu-mll/glue).
TRAIN_EXAMPLES = {
    "cola": 8551,
    "sst2": 67349,
    "mrpc": 3668,
    "qqp": 363846,
    "stsb": 5749,
    "mnli": 392702,
    "qnli": 104743,
    "rte": 2490,
    "wnli": 635,
}


def step_seconds(model, optimizer, batch_size, length, steps, device, dtype) -> float:
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(1000, model.config.vocab_size, (batch_size, length), generator=generator).to(device)
    labels = torch.randint(0, model.config.num_labels, (batch_size,), generator=generator).to(device)
    times = []
    for _ in range(steps + 1):  # the first is warm-up
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        with torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
            loss = model(input_ids=ids, attention_mask=torch.ones_like(ids), labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return sorted(times[1:])[len(times[1:]) // 2]  # the median


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", choices=("fp32", "bf16", "fp16"), default="fp32")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--short", type=int, default=32, help="the short length (pieces)")
    parser.add_argument("--long", type=int, default=128, help="run_glue's max_seq_length")
    parser.add_argument("--epochs", type=float, default=3)
    parser.add_argument("--steps", type=int, default=3, help="timed steps per length")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[args.precision]
    torch.manual_seed(0)
    model = BertForSequenceClassification(BertConfig(num_labels=2)).to(device)  # BERT-base, vocab 30,522
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-5)
    short = step_seconds(model, optimizer, args.batch_size, args.short, args.steps, device, dtype)
    long = step_seconds(model, optimizer, args.batch_size, args.long, args.steps, device, dtype)
    print(f"device {device}, {args.precision}, batch {args.batch_size}: a step takes {short:.3f} s at {args.short}")
    print(f"pieces and {long:.3f} s at {args.long} pieces\n")
    print(f"{'task':6} {'train':>8} {'steps':>7} {'minutes (short)':>16} {'minutes (128)':>14}")
    total_short = total_long = 0.0
    for task, examples in TRAIN_EXAMPLES.items():
        steps = math.ceil(examples / args.batch_size) * args.epochs
        low, high = steps * short / 60, steps * long / 60
        total_short, total_long = total_short + low, total_long + high
        print(f"{task:6} {examples:8d} {steps:7.0f} {low:16.1f} {high:14.1f}")
    print(f"all nine tasks, one seed, one checkpoint: {total_short:.1f} to {total_long:.1f} minutes")


if __name__ == "__main__":
    main()
