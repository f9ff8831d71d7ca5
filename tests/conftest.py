import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
RESOURCES = REPO / "resources"
EWT = RESOURCES / "ud" / "UD_English-EWT"

# Two cores: tests must not oversubscribe them.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture
def repo() -> Path:
    return REPO


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory):
    """A tokenized slice of real EWT train text (300 sentences, blocks of 32) with the vendored
    bert-base-uncased vocab: a fixed vocab keeps these tests' numbers the same in every session
    (a trained vocab may break frequency ties differently from process to process)."""
    from sasbert import corpus, parse, tokenization

    out = tmp_path_factory.mktemp("tiny_corpus")
    units = corpus.read_units([str(EWT / "en_ewt-ud-train.conllu.gz")], "conllu", max_units=300)
    parsed = parse.parse_conllu_shard(units)
    tokenizer = tokenization.load_tokenizer(RESOURCES / "tokenizer" / "bert-base-uncased-vocab.txt", True)
    tokenizer.save_pretrained(str(out / "tokenizer"))
    dataset, _ = tokenization.build_dataset(parsed, tokenizer, seq_len=32, n_validation=8, keep_relations=True)
    dataset.save_to_disk(str(out / "dataset"))
    return {"dataset": str(out / "dataset"), "tokenizer": str(out / "tokenizer")}


def tiny_spec(**overrides):
    """A run specification (what the Snakemake rule passes) for a 2 x 2 x 32 BERT."""
    spec = {
        "model": {"num_hidden_layers": 2, "num_attention_heads": 2, "hidden_size": 32, "intermediate_size": 64},
        "seed": 0, "lambda": 0.0,
        "regularizer": {"type": "max", "direction": "both", "reduction": "mean"},
        "checkpoint_steps": [0, 4, 8, 12], "max_steps": 12, "batch_size": 8, "grad_accumulation": 1,
        "lr": 0.002, "weight_decay": 0.01, "warmup_steps": 2, "decay_horizon": 24, "mlm_probability": 0.15,
        "precision": "fp32", "logging_steps": 4, "threads": 1,
    }
    spec.update(overrides)
    return spec
