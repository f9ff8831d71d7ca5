"""The model of pretraining.

``MaskedHeadBertForMaskedLM``: the prediction head runs on the masked positions only (the
largest saving at small scale: docs/method.md, "Performance notes"); the loss is
BertForMaskedLM's.
The model is built with SDPA attention; a step with lambda != 0 asks for the attentions, which
makes BERT fall back to eager attention for that step only.
"""

from __future__ import annotations

import contextlib
import json
import math
from pathlib import Path

import torch
import torch.nn.functional as F
from transformers import (
    BertConfig,
    BertForMaskedLM,
    set_seed,
)

from sasbert.train.regularizer import SAS_ATTENTION, arc_indices, combine_arcs, install_arc_taps, install_fused_arcs


@contextlib.contextmanager
def decoder_bias_drawn_as_in_transformers_4(config: BertConfig):
    """Build BERT's MLM decoder as transformers 4 did, without drawing its bias.

    transformers 5 makes the decoder ``nn.Linear(hidden, vocab, bias=True)`` and then ties that
    bias to ``cls.predictions.bias`` (zeros), so the vocab_size uniform numbers drawn for it are
    thrown away; transformers 4 made it without a bias. The extra draw shifts the random stream,
    and with it ``cls.predictions.transform.dense.weight`` and every draw after (dropout included):
    a seed would give another run than it did under transformers 4. Inside this context a Linear of
    the decoder's shape draws its weight as ``nn.Linear`` does and leaves its bias at zero, which
    gives the same initial weights and random state as transformers 4 (tests/test_pretrain.py).
    """
    reset = torch.nn.Linear.reset_parameters
    shape = (config.vocab_size, config.hidden_size)

    def reset_parameters(linear: torch.nn.Linear) -> None:
        if linear.bias is None or tuple(linear.weight.shape) != shape:
            return reset(linear)
        torch.nn.init.kaiming_uniform_(linear.weight, a=math.sqrt(5))  # nn.Linear's own weight draw
        torch.nn.init.zeros_(linear.bias)

    torch.nn.Linear.reset_parameters = reset_parameters
    try:
        yield
    finally:
        torch.nn.Linear.reset_parameters = reset


class MaskedHeadBertForMaskedLM(BertForMaskedLM):
    """BertForMaskedLM whose prediction head sees only the masked positions.

    ``forward`` returns the summed MLM loss, the number of masked tokens and, when asked, the SAS
    regularizer summed over the batch's arcs; the Trainer normalises and combines them. Weights
    and config are BertForMaskedLM's.
    """

    # the run's regularizer section (type, direction, attention, ...), set by train(); not read from
    # the schema here, which would make config.py and options.py code inputs of every training job
    sas_options: dict = {}

    def __init__(self, config: BertConfig):
        with decoder_bias_drawn_as_in_transformers_4(config):
            super().__init__(config)

    def forward(self, input_ids, attention_mask=None, labels=None, heads=None, compute_sas=False):
        if not compute_sas:
            out = self.bert(input_ids, attention_mask=attention_mask, return_dict=True)
            sas = None
        else:
            if self.training and self.bert.is_activation_checkpointing:  # transformers 5 name
                # recomputed layers would run without the arc readers (the regularizer silently
                # does nothing, or the recomputation fails): refuse rather than train unregularized
                raise ValueError("the SAS regularizer does not work with gradient checkpointing")
            options = self.sas_options
            arcs = arc_indices(heads)
            # post_dropout: output_attentions makes the model's attention take the eager path, whose
            # dropout the taps wrap (regularizer.ArcTap); pre_dropout: the fused kernels, read at the arcs
            # from q, k and the rows' log-sum-exp (regularizer.FusedArcSelfAttention)
            fused = options["attention"] == "pre_dropout"
            readers = install_fused_arcs(self.bert) if fused else install_arc_taps(self.bert)
            for reader in readers:
                reader.arcs, reader.direction = arcs, options["direction"]
            try:
                out = self.bert(input_ids, attention_mask=attention_mask, output_attentions=not fused, return_dict=True)
                # the sum over this micro-batch's arcs; the trainer normalises it over the whole step
                sas = combine_arcs(
                    [reader.values for reader in readers],
                    len(arcs[0]),
                    type=options["type"],
                    direction=options["direction"],
                    reduction="sum",
                )
            finally:
                for reader in readers:
                    reader.arcs = reader.values = None
        masked = labels != -100
        logits = self.cls(out.last_hidden_state[masked])
        mlm_sum = F.cross_entropy(logits.float(), labels[masked], reduction="sum")
        return {"mlm_sum": mlm_sum, "n_masked": masked.sum(), "sas": sas}

    def save_pretrained(self, save_directory, *args, **kwargs):
        super().save_pretrained(save_directory, *args, **kwargs)
        # The weights are plain BertForMaskedLM's: say so, so that every tool loads them as such.
        config_path = Path(save_directory) / "config.json"
        if config_path.is_file():
            saved = json.loads(config_path.read_text())
            saved["architectures"] = ["BertForMaskedLM"]
            config_path.write_text(json.dumps(saved, indent=2, sort_keys=True) + "\n")


def build_model(model_kwargs: dict, vocab_size: int, seed: int, max_position: int) -> MaskedHeadBertForMaskedLM:
    set_seed(seed)
    config = BertConfig(vocab_size=vocab_size, max_position_embeddings=max_position, **model_kwargs)
    # SDPA with transformers 4's eager fallback for calls that ask for the attentions (regularizer)
    return MaskedHeadBertForMaskedLM._from_config(config, attn_implementation=SAS_ATTENTION)
