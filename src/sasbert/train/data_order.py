"""The data order and masks of pretraining, a function of the step alone, and the held-out loss.

The data order is a function of the step alone (``BlockOrder``): the blocks in a fresh seeded
permutation every epoch, the epochs concatenated into one stream, step s (0-based) training on
stream positions [s * batch, (s + 1) * batch). Each block's mask is seeded by (seed, epoch,
block). So a run resumed at any step, inside an epoch or across epoch boundaries, split over N
DDP processes or accumulation micro-batches, or released from another run's checkpoint, draws
exactly the blocks and masks of one uninterrupted process. The Trainer's own data skipping is
off (``ignore_data_skip``): the sampler starts at the resumed step by construction.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from transformers import (
    AutoTokenizer,
)

from sasbert.errors import InputError

PRETOKENIZED_MANIFEST = "manifest.json"  # in a dataset folder: a pre-tokenized corpus (sasbert.data.pretokenized)


EVAL_MASK_SEED = 1234  # fixed masks of the validation slice, the same for every run and checkpoint


class BlockCollator:
    """MLM masking (BERT's: ``mlm_probability`` of the non-special pieces; of those 80% [MASK],
    10% a random piece, 10% unchanged) with the blocks' ``heads`` passed through.

    Each block's mask is drawn from its own generator seeded by (seed, epoch, block index); the
    example carries its ``epoch`` (see ``StreamBlocks``). So the mask is new every epoch (dynamic
    masking, as HF run_mlm) yet independent of the process that draws it and of the global RNG.
    """

    def __init__(self, tokenizer, mlm_probability: float, seed: int):
        self.mlm_probability = mlm_probability
        self.seed = seed
        self.mask_id = tokenizer.mask_token_id
        self.vocab_size = len(tokenizer)
        self.special_ids = torch.tensor(sorted(tokenizer.all_special_ids))

    def block_generator(self, block: int, epoch: int) -> torch.Generator:
        return torch.Generator().manual_seed(((self.seed * 1_000_003 + epoch) * 1_000_000_007 + block) % 2**63)

    def mask_block(self, input_ids: torch.Tensor, block: int, epoch: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        generator = self.block_generator(block, epoch)
        draws = torch.rand(3, len(input_ids), generator=generator)
        random_pieces = torch.randint(self.vocab_size, (len(input_ids),), generator=generator)
        selected = (draws[0] < self.mlm_probability) & ~torch.isin(input_ids, self.special_ids)
        labels = torch.where(selected, input_ids, -100)
        masked = input_ids.clone()
        to_mask = selected & (draws[1] < 0.8)
        to_random = selected & ~to_mask & (draws[2] < 0.5)
        masked[to_mask] = self.mask_id
        masked[to_random] = random_pieces[to_random]
        return masked, labels

    def __call__(self, examples):
        inputs, labels = zip(
            *(self.mask_block(torch.tensor(ex["input_ids"]), ex["block"], ex.get("epoch", 0)) for ex in examples)
        )
        return {
            "input_ids": torch.stack(inputs),
            "attention_mask": torch.tensor([ex["attention_mask"] for ex in examples]),
            "labels": torch.stack(labels),
            "heads": torch.tensor([ex["heads"] for ex in examples], dtype=torch.long),
        }


class BlockOrder:
    """The training stream: epoch e is a permutation of the blocks seeded by (seed, e), and the
    epochs follow each other, so stream position p holds block ``perm_{p // n}[p % n]``.
    A step may straddle two epochs; no block is dropped and none is seen twice in an epoch."""

    def __init__(self, n_blocks: int, seed: int):
        if n_blocks == 0:
            raise InputError("the training split has no blocks")
        self.n_blocks = n_blocks
        self.seed = seed
        self._permutations: dict[int, torch.Tensor] = {}

    def permutation(self, epoch: int) -> torch.Tensor:
        if epoch not in self._permutations:
            if len(self._permutations) > 2:  # a step reads at most two epochs
                self._permutations.pop(min(self._permutations))
            generator = torch.Generator().manual_seed((self.seed * 1_000_003 + epoch) % 2**63)
            self._permutations[epoch] = torch.randperm(self.n_blocks, generator=generator)
        return self._permutations[epoch]

    def at(self, position: int) -> tuple[int, int]:
        """(block, epoch) at a stream position."""
        epoch, offset = divmod(position, self.n_blocks)
        return int(self.permutation(epoch)[offset]), epoch


class StreamBlocks(torch.utils.data.Dataset):
    """Stream positions -> examples: the block at that position with its index and epoch."""

    def __init__(self, blocks, order: BlockOrder):
        self.blocks = blocks
        self.order = order

    def __len__(self):
        return self.order.n_blocks

    def __getitem__(self, position: int) -> dict:
        block, epoch = self.order.at(position)
        return {**self.blocks[block], "block": block, "epoch": epoch}


class StepBatchSampler(torch.utils.data.Sampler):
    """Micro-batches of stream positions, starting at the step the trainer is at.

    The start is read when iteration begins (every Trainer epoch, and after a resume), so the
    positions depend on the optimizer step alone. Consecutive micro-batches of ``micro_batch``
    sequences make up a step of ``global_batch``; accelerate hands every N-th micro-batch to each
    of N DDP processes, which keeps every step's set of sequences the same.
    """

    def __init__(self, global_batch: int, micro_batch: int, steps_per_pass: int, start_step):
        self.global_batch = global_batch
        self.batch_size = micro_batch  # accelerate reads it
        self.steps_per_pass = steps_per_pass
        self.start_step = start_step

    def __len__(self) -> int:
        return self.steps_per_pass * (self.global_batch // self.batch_size)

    def __iter__(self):
        start = self.start_step() * self.global_batch
        for k in range(len(self)):
            first = start + k * self.batch_size
            yield list(range(first, first + self.batch_size))


def held_out_loss(model, dataset, tokenizer, mlm_probability: float, batch_size: int) -> float:
    """Mean MLM loss over the validation blocks with fixed masks (its own seeded generator)."""
    if len(dataset) == 0:
        return float("nan")
    collator = BlockCollator(tokenizer, mlm_probability, seed=EVAL_MASK_SEED)  # epoch 0 always
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    device = next(model.parameters()).device
    with torch.inference_mode():
        for start in range(0, len(dataset), batch_size):
            batch = collator([{**dataset[i], "block": i} for i in range(start, min(start + batch_size, len(dataset)))])
            out = model(**{k: v.to(device) for k, v in batch.items()})
            total += out["mlm_sum"].item()
            count += int(out["n_masked"])
    model.train(was_training)
    return total / max(count, 1)


def load_data(dataset_dir: str, tokenizer_dir: str, spec: dict):
    """(tokenizer, train blocks, validation blocks, max_position_embeddings) of a tokenized corpus."""
    from datasets import Dataset, concatenate_datasets, load_from_disk

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    manifest = Path(dataset_dir) / PRETOKENIZED_MANIFEST
    if manifest.is_file():
        # a pre-tokenized corpus (sasbert.data.pretokenized prepare): its splits' Arrow files, memory-mapped
        splits = json.loads(manifest.read_text())["splits"]
        data = {
            name: concatenate_datasets([Dataset.from_file(str(Path(dataset_dir) / f)) for f in split["files"]])
            for name, split in splits.items()
        }
    else:
        data = load_from_disk(dataset_dir)
    columns = ["input_ids", "attention_mask", "heads"]
    train_blocks = data["train"].select_columns(columns)
    val_data = data["validation"].select_columns(columns)
    seq_len = len(train_blocks[0]["input_ids"])
    max_position = max(seq_len, spec.get("max_position_embeddings", 512))
    tokenizer.model_max_length = max_position
    return tokenizer, train_blocks, val_data, max_position
