import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
RESOURCES = REPO / "resources"
EWT = RESOURCES / "ud" / "UD_English-EWT"
EWT_DEV = EWT / "en_ewt-ud-dev.conllu.gz"
BERT_VOCAB = RESOURCES / "tokenizer" / "bert-base-uncased-vocab.txt"

# Two cores: tests must not oversubscribe them.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")


SNAKEMAKE = str(Path(sys.executable).parent / "snakemake")

# The test files that run the longest (end-to-end runs of the real Snakefile), collected first.
# Under `make test-e2e` this only breaks ties: xdist's --dist loadfile hands out the files with the
# most tests first, so the default's one test starts last. Measured (2026-12-03, this VM): forcing
# this order (--no-loadscope-reorder) does not shorten the suite, since its end-to-end runs use
# both cores either way (43.5 min, the default's run cut off, vs 47 min), and the default's run,
# sharing the cores from the start, then outlasted what was its 1,500 s guard.
LONGEST_FIRST = ("test_default.py", "test_slurm.py", "test_reruns.py", "test_cache.py", "test_seeds.py")


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))


WORKFLOW_FILES = ["Snakefile", "workflow", "src", "resources", "config.yaml", "config", "profiles"]


def tiny_bert_config(vocab_size: int, hidden_size: int = 64, max_position: int = 128, **overrides):
    """A 2-layer x 2-head BERT configuration for models made in a test (feed-forward 2 x hidden)."""
    from transformers import BertConfig

    return BertConfig(
        vocab_size=vocab_size,
        hidden_size=hidden_size,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=2 * hidden_size,
        max_position_embeddings=max_position,
        **overrides,
    )


@pytest.fixture(scope="module")
def bert_tokenizer():
    """bert-base-uncased's WordPiece tokenizer, from the vendored vocabulary."""
    from transformers import BertTokenizerFast

    return BertTokenizerFast(vocab=str(BERT_VOCAB))


@pytest.fixture
def minicons_scorer(monkeypatch):
    """minicons' scorer module (the independent PLL reference), with the one tokenizer call it
    makes that transformers 5 removed: ``batch_encode_plus``, which was ``__call__`` on a list of
    texts. The shim only forwards, so minicons' own arithmetic is what the tests compare with."""
    from minicons import scorer
    from transformers import PreTrainedTokenizerBase

    if not hasattr(PreTrainedTokenizerBase, "batch_encode_plus"):

        def batch_encode_plus(self, batch_text_or_text_pairs, **kwargs):
            return self(batch_text_or_text_pairs, **kwargs)

        monkeypatch.setattr(PreTrainedTokenizerBase, "batch_encode_plus", batch_encode_plus, raising=False)
    return scorer


@pytest.fixture
def repo() -> Path:
    return REPO


def link_workflow(folder: Path) -> Path:
    """Make ``folder`` a working directory that sees the repository's workflow (linked) but writes
    its own results/."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in WORKFLOW_FILES:
        (folder / name).symlink_to(REPO / name)
    return folder


def snakemake(*args, cwd=REPO, timeout=1800, env=None) -> subprocess.CompletedProcess:
    """The project's real snakemake, run in ``cwd`` (``env``: variables to add)."""
    return subprocess.run(
        [SNAKEMAKE, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
    )


def snakemake_ok(*args, cwd, timeout=1800, env=None) -> str:
    """Run snakemake, fail the test with the log's end unless it succeeds; return its output."""
    result = snakemake(*args, cwd=cwd, timeout=timeout, env=env)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    return output


def job_counts(output: str) -> dict[str, int]:
    """The "Job stats" table of a (dry) run as {rule: count}."""
    table = output.split("Job stats:")[1].split("\n\n")[0]
    rows = [line.split() for line in table.strip().splitlines()[2:]]
    return {name: int(count) for name, count in rows if name != "total"}


def plan_optional_measure(workdir: Path, measure: str, figure: str) -> str:
    """The dry run (-p) of tests/configs/e2e.yaml with the optional ``measure`` switched on, after
    checking the one with it off (e2e.yaml's setting): no job, no all-runs table, and ``figure``
    planned without it. Checks that the figure reads the table when it is on."""
    e2e = str(REPO / "tests" / "configs" / "e2e.yaml")
    table = f"results/tables/{measure}.parquet"
    off = snakemake_ok("-n", "-p", "--cores", "1", "--configfile", e2e, cwd=workdir)
    assert not {measure, f"{measure}_part"} & set(job_counts(off))
    assert f"sasbert {measure} score" not in off and f"--{measure}-" not in off and table not in off
    assert f"--figure {figure}" in off
    (workdir / "on.yaml").write_text(f"{measure}: {{enabled: true}}\n")
    on = snakemake_ok("-n", "-p", "--cores", "1", "--configfile", e2e, "on.yaml", cwd=workdir)
    assert table in next(line for line in on.splitlines() if f"--figure {figure}" in line)
    return on


def score_twice(args: list) -> str:
    """``python -m sasbert <args>`` (a measure's ``score`` with a ``--cache-dir``) run twice in a
    clean environment, each succeeding; the second run's stderr (where it says what it kept)."""
    env = {"PYTHONPATH": str(REPO / "src"), "PATH": "", "OMP_NUM_THREADS": "1"}
    for _attempt in range(2):
        done = subprocess.run([sys.executable, "-m", "sasbert", *args], capture_output=True, text=True, env=env)
        assert done.returncode == 0, done.stderr[-2000:]
    return done.stderr


def refused_measure_options(capsys, measure: str, checkpoint: Path, flags: list) -> str:
    """``sasbert <measure> score`` of one checkpoint against EWT dev with bad ``flags``: it exits 2
    and writes nothing; the last line of its error, which must be the CLI's one-line message."""
    from sasbert import cli

    out = checkpoint.parent / "refused.parquet"
    args = [measure, "score", "--checkpoint", str(checkpoint), "--treebank", str(EWT_DEV), "--out-summary", str(out)]
    assert cli.main([*args, *flags]) == 2
    assert not out.exists()
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error.startswith(f"sasbert {measure}: error:"), error
    return error


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory):
    """A tokenized slice of real EWT train text (300 sentences, blocks of 32) with the vendored
    bert-base-uncased vocab: a fixed vocab keeps these tests' numbers the same in every session
    (a trained vocab may break frequency ties differently from process to process)."""
    from sasbert.data import corpus, tokenization
    from sasbert.data.parsers import conllu

    out = tmp_path_factory.mktemp("tiny_corpus")
    units = corpus.read_units([str(EWT / "en_ewt-ud-train.conllu.gz")], "conllu", max_units=300)
    parsed = conllu.parse_shard(units)
    tokenizer = tokenization.load_tokenizer(RESOURCES / "tokenizer" / "bert-base-uncased-vocab.txt", True)
    tokenizer.save_pretrained(str(out / "tokenizer"))
    dataset, _ = tokenization.build_dataset(parsed, tokenizer, seq_len=32, n_validation=8, keep_relations=True)
    dataset.save_to_disk(str(out / "dataset"))
    return {"dataset": str(out / "dataset"), "tokenizer": str(out / "tokenizer")}


def pretrain_cmd(corpus, run_dir, spec, *extra):
    """The real pretrain CLI on a tokenized corpus (the ``tiny_corpus`` fixture) and a spec."""
    return [
        sys.executable,
        "-m",
        "sasbert",
        "pretrain",
        "--dataset",
        corpus["dataset"],
        "--tokenizer",
        corpus["tokenizer"],
        "--run-dir",
        str(run_dir),
        "--spec",
        json.dumps(spec),
        *extra,
    ]


def tiny_spec(**overrides):
    """A run specification (what the Snakemake rule passes) for a 2 x 2 x 32 BERT: the config
    schema's train defaults (completed by the pretrain CLI's own ``complete_spec``), but for the
    values these tests rely on, given here."""
    from sasbert.train.spec import complete_spec

    spec = {
        "model": {"num_hidden_layers": 2, "num_attention_heads": 2, "hidden_size": 32, "intermediate_size": 64},
        "seed": 0,
        "lambda": 0.0,
        "checkpoint_steps": [0, 4, 8, 12],
        # a few steps of a tiny model, at a learning rate that moves it
        "max_steps": 12,
        "batch_size": 8,
        "lr": 0.002,
        "warmup_steps": 2,
        "decay_horizon": 24,
        "logging_steps": 4,
    }
    spec.update(overrides)
    return complete_spec(spec)


def weights(run_dir, step):
    """The published weights of a run's checkpoint at ``step``."""
    from safetensors.torch import load_file

    return load_file(str(Path(run_dir) / "checkpoints" / f"step-{step}" / "model.safetensors"))


def assert_same_weights(a, b):
    """Bit for bit."""
    import torch

    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name


def save_tiny_causal_lm(folder, architecture: str):
    """A tiny causal LM (random weights) of ``architecture`` (gpt2, gpt_neox: Pythia's, or llama:
    OLMo's and Llama's) with a
    byte-level BPE tokenizer trained on real EWT text, as a folder laid out like a hub checkpoint
    (no hub here)."""
    import torch
    from tokenizers import ByteLevelBPETokenizer
    from transformers import (
        GPT2Config,
        GPT2LMHeadModel,
        GPTNeoXConfig,
        GPTNeoXForCausalLM,
        LlamaConfig,
        LlamaForCausalLM,
        PreTrainedTokenizerFast,
    )

    from sasbert.data import treebank

    texts = [" ".join(s.words) for s in treebank.read_sentences(EWT / "en_ewt-ud-dev.conllu.gz")]
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(
        texts, vocab_size=600, min_frequency=2, special_tokens=["<|endoftext|>"], show_progress=False
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe, bos_token="<|endoftext|>", eos_token="<|endoftext|>", unk_token="<|endoftext|>"
    )
    torch.manual_seed(0)
    if architecture == "gpt2":
        model = GPT2LMHeadModel(GPT2Config(vocab_size=len(tokenizer), n_positions=256, n_embd=32, n_layer=2, n_head=2))
    elif architecture == "llama":
        config = LlamaConfig(
            vocab_size=len(tokenizer),
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            num_key_value_heads=2,
            max_position_embeddings=256,
        )
        model = LlamaForCausalLM(config)
    else:
        config = GPTNeoXConfig(
            vocab_size=len(tokenizer),
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=64,
            max_position_embeddings=256,
        )
        model = GPTNeoXForCausalLM(config)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_gpt2(tmp_path_factory):
    return save_tiny_causal_lm(tmp_path_factory.mktemp("gpt2") / "step-1000", "gpt2")


@pytest.fixture(scope="session", params=["gpt2", "gpt_neox", "llama"])
def tiny_causal_lm(request, tmp_path_factory):
    """A tiny GPT-2, GPT-NeoX (Pythia's architecture) and Llama (OLMo's family)."""
    return save_tiny_causal_lm(tmp_path_factory.mktemp(request.param) / "step-1000", request.param)
