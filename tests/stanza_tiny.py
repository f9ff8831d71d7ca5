"""Tiny but real stanza models, trained offline from a UD CoNLL-U file, for tests.

build_tiny_stanza_models(conllu, out_dir) trains, with stanza's own training entry points, the four
models a stanza.Pipeline(processors="tokenize,pos,lemma,depparse") needs, on the first 200 sentences
of e.g. resources/ud/UD_English-EWT/en_ewt-ud-train.conllu.gz (dev: the first 20 sentences of the
sibling -dev file, or of the train excerpt when there is none):

- tokenize: stanza.utils.datasets.conllu_to_text + prepare_tokenizer_data build the raw text and the
  character label file, then stanza.models.tokenizer.main, 300 steps, emb 8, hidden 16, 1 RNN layer,
  --no_use_mwt. Multiword tokens (EWT has them: "don't" = do + n't) are first collapsed into one
  word with the token's surface form, since this Pipeline has no mwt processor (and the tokenizer
  cannot be trained with --no_use_mwt on labels that contain MWT ends: IndexError in the loss).
- pos: stanza.models.tagger.main, --no_pretrain, no charlm (the default), 1 layer, dims 8-16,
  60 steps of 32 sentences.
- lemma: stanza.models.lemmatizer.main, dictionary + seq2seq (hidden 16, emb 8), 1 epoch.
- depparse: stanza.models.parser.main (graph parser, MST decoding), --no_pretrain, 1 layer, dims
  8-16, 60 steps of 500 words.
All on CPU, one torch thread, seed 1234: two builds give identical parses. Dev scoring runs once,
at the last step (20 sentences). Measured on the 2-core dev machine: about 18 s for the whole build
(tokenize 4 s, pos 6 s, lemma 4.5 s, depparse 3 s, including ~3 s of importing torch/stanza); a
second call with the models present returns at once. Parsing runs at ~1,600 words/s on one thread.
Quality is what 200 sentences and a few seconds buy (dev AllTags ~0.45, LAS ~0.6): the trees are
well formed (heads in 0..len(sentence), exactly one root per sentence: stanza decodes an MST), the
labels only roughly right.

Running the Pipeline offline: Pipeline always reads a resources.json (from `dir`, or from the
`resources_filepath` kwarg) and raises ResourcesFileNotFoundError without one, even with
download_method=None. The builder writes a minimal one beside the models (RESOURCES_JSON below), so:

    paths = build_tiny_stanza_models(conllu, out_dir)
    nlp = stanza.Pipeline("en", processors="tokenize,pos,lemma,depparse", download_method=None,
                          use_gpu=False, dir=<any dir>, **pipeline_kwargs(paths))

where pipeline_kwargs(paths) = paths + {"resources_filepath": out_dir/"resources.json"} (copying
that file into `dir` works as well). download_method=None is required: anything else tries to fetch
resources.json from the network. No *_pretrain_path / *_charlm_path kwargs are needed: the minimal
resources.json lists no dependencies, so none are looked up. (Alternative: a resources.json holding
just {} plus allow_unknown_language=True, which logs "unsupported language: en".)

stanza 1.15.0 quirks met here: tagger.train() and parser.train() end with `return trainer, _`,
which raises UnboundLocalError (after saving) when the dev set was never scored, hence one dev
evaluation at the last step; tokenizer.train() crashes without --mwt_json_file although the flag is
optional; importing any training entry point sets the 'stanza' logger to DEBUG (restored here);
standard_model_file_name() collapses "__" in --save_name and prefers a same-named file in the
current directory, hence plain file names inside a private staging folder, checked after training.
"""

from __future__ import annotations

import contextlib
import gzip
import importlib
import io
import json
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path

SEED = 1234
SHORTHAND = "en_tiny"
N_DEV = 20

MODEL_FILES = {
    "tokenize_model_path": "tokenize.pt",
    "pos_model_path": "pos.pt",
    "lemma_model_path": "lemma.pt",
    "depparse_model_path": "depparse.pt",
}

# Makes lang "en" known to Pipeline without any downloaded model: "packages" and "tokenize" are
# the keys resources.add_mwt() reads, and tokenize/default must be listed or
# maintain_processor_list() drops the tokenizer ("Can not find tokenize: default ... Ignoring it").
# pos/lemma/depparse are absent, so they are loaded "anyway" from the *_model_path kwargs,
# with no dependencies (no pretrain, no charlm paths).
RESOURCES_JSON = {"en": {"lang_name": "English", "packages": {}, "tokenize": {"default": {}}}}

# The package name install_as_resources gives the models in a stanza_resources folder.
PACKAGE = "tiny"
PROCESSORS = ["tokenize", "pos", "lemma", "depparse"]

TIMINGS: dict[str, float] = {}  # seconds per model, from the last build in this process

STEPS = {"tokenize": 300, "pos": 60, "depparse": 60}


def _read_sentences(path: Path, limit: int) -> list[list[str]]:
    """The first `limit` sentence blocks (comment + token lines) of a CoNLL-U file, plain or gzip."""
    opener = gzip.open if str(path).endswith(".gz") else open
    sentences, block = [], []
    with opener(path, "rt", encoding="utf-8") as fin:
        for line in fin:
            line = line.rstrip("\n")
            if line.strip():
                block.append(line)
                continue
            if block:
                sentences.append(block)
                block = []
                if len(sentences) >= limit:
                    break
    if block and len(sentences) < limit:
        sentences.append(block)
    return sentences


def _flatten_mwt(sentence: list[str]) -> list[str]:
    """Replace each multiword token range by a single word with the token's surface form.

    The Pipeline asked for here has no mwt processor, so the tokenizer must not predict MWTs; and
    stanza's tokenizer cannot be trained with --no_use_mwt on data whose labels contain MWT ends
    (3/4): the 3-class output would meet labels 3/4 in the loss.
    """
    out, skip_to = [], 0
    for line in sentence:
        if line.startswith("#"):
            out.append(line)
            continue
        cols = line.split("\t")
        if "-" in cols[0]:
            start, end = (int(x) for x in cols[0].split("-"))
            cols[0] = str(start)
            out.append("\t".join(cols))
            skip_to = end
            continue
        if "." not in cols[0] and int(cols[0]) <= skip_to:
            continue
        out.append(line)
    return out


@contextlib.contextmanager
def _training_context(level=logging.ERROR):
    """Quiet, single-threaded training.

    stanza.models._training_logging sets the 'stanza' logger to DEBUG when a training entry point is
    first imported, so import them all first, then hold the logger at `level`. Torch runs on one
    thread (faster for these tiny tensors on 2 cores, and deterministic); both are restored after.
    """
    import torch

    importlib.import_module("stanza")  # configures the 'stanza' logger: capture its level after this

    logger = logging.getLogger("stanza")
    old_level, old_threads = logger.level, torch.get_num_threads()
    for module in ("tokenizer", "tagger", "lemmatizer", "parser"):
        importlib.import_module(f"stanza.models.{module}")

    logger.setLevel(level)
    torch.set_num_threads(1)
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # prepare_tokenizer_data/print_config print
            yield
    finally:
        logger.setLevel(old_level)
        torch.set_num_threads(old_threads)


def _check(path: Path, what: str) -> str:
    if not path.is_file():
        raise RuntimeError(f"stanza {what} training did not write {path}")
    return str(path)


def _train_tokenizer(work: Path, train_conllu: Path, dev_conllu: Path) -> str:
    from stanza.models import tokenizer
    from stanza.utils.datasets import conllu_to_text, prepare_tokenizer_data

    files = {}
    for split, conllu in (("train", train_conllu), ("dev", dev_conllu)):
        flat = work / f"tokenize.{split}.conllu"
        _write_conllu(flat, [_flatten_mwt(s) for s in _read_sentences(conllu, 10**9)])
        txt, labels, mwt = (work / f"tokenize.{split}.{ext}" for ext in ("txt", "toklabels", "mwt.json"))
        conllu_to_text.convert_text(str(flat), str(txt))
        prepare_tokenizer_data.main([str(txt), str(flat), "-o", str(labels), "-m", str(mwt)])
        files[split] = (txt, labels, mwt)
    tokenizer.main(
        [
            "--mode",
            "train",
            "--cpu",
            "--seed",
            str(SEED),
            "--lang",
            "en",
            "--shorthand",
            SHORTHAND,
            "--txt_file",
            str(files["train"][0]),
            "--label_file",
            str(files["train"][1]),
            "--mwt_json_file",
            str(files["train"][2]),
            "--dev_txt_file",
            str(files["dev"][0]),
            "--dev_label_file",
            str(files["dev"][1]),
            "--no_use_mwt",
            "--emb_dim",
            "8",
            "--hidden_dim",
            "16",
            "--rnn_layers",
            "1",
            "--conv_filters",
            "1,5",
            "--max_seqlen",
            "100",
            "--batch_size",
            "16",
            "--lr0",
            "0.01",
            "--dropout",
            "0.1",
            "--unit_dropout",
            "0.05",
            "--tok_noise",
            "0.0",
            "--steps",
            str(STEPS["tokenize"]),
            "--eval_steps",
            str(10**9),
            "--report_steps",
            str(10**9),
            "--save_dir",
            str(work),
            "--save_name",
            MODEL_FILES["tokenize_model_path"],
        ]
    )
    return _check(work / MODEL_FILES["tokenize_model_path"], "tokenizer")


def _common_tagger_args(out: Path, train_conllu: Path, dev_conllu: Path, name: str, steps: int) -> list[str]:
    # One dev evaluation, at the last step: tagger.train() and parser.train() end with
    # `return trainer, _`, where `_` is only bound by the dev-scoring code, so a run that never
    # evaluates saves its model and then raises UnboundLocalError (stanza 1.15.0).
    return [
        "--mode",
        "train",
        "--cpu",
        "--seed",
        str(SEED),
        "--lang",
        "en",
        "--shorthand",
        SHORTHAND,
        "--train_file",
        str(train_conllu),
        "--eval_file",
        str(dev_conllu),
        "--save_dir",
        str(out),
        "--save_name",
        name,
        "--no_pretrain",
        "--word_cutoff",
        "1",
        "--log_step",
        str(10**9),
        "--max_steps",
        str(steps),
        "--eval_interval",
        str(steps),
        "--no_second_optim",
        "--num_layers",
        "1",
    ]


def _train_pos(out: Path, train_conllu: Path, dev_conllu: Path) -> str:
    from stanza.models import tagger

    tagger.main(
        _common_tagger_args(out, train_conllu, dev_conllu, MODEL_FILES["pos_model_path"], STEPS["pos"])
        + [
            "--hidden_dim",
            "16",
            "--char_hidden_dim",
            "16",
            "--char_emb_dim",
            "8",
            "--word_emb_dim",
            "16",
            "--tag_emb_dim",
            "8",
            "--transformed_dim",
            "16",
            "--deep_biaff_hidden_dim",
            "16",
            "--composite_deep_biaff_hidden_dim",
            "8",
            "--batch_size",
            "32",
            "--lr",
            "0.02",
            "--dropout",
            "0.1",
            "--word_dropout",
            "0.1",
            "--fix_eval_interval",
        ]
    )
    return _check(out / MODEL_FILES["pos_model_path"], "tagger")


def _train_lemma(out: Path, train_conllu: Path, dev_conllu: Path) -> str:
    from stanza.models import lemmatizer

    lemmatizer.main(
        [
            "--mode",
            "train",
            "--cpu",
            "--seed",
            str(SEED),
            "--shorthand",
            SHORTHAND,
            "--train_file",
            str(train_conllu),
            "--eval_file",
            str(dev_conllu),
            "--save_dir",
            str(out),
            "--save_name",
            MODEL_FILES["lemma_model_path"],
            "--hidden_dim",
            "16",
            "--emb_dim",
            "8",
            "--pos_dim",
            "8",
            "--num_layers",
            "1",
            "--batch_size",
            "500",
            "--num_epoch",
            "1",
            "--log_step",
            str(10**9),
        ]
    )
    return _check(out / MODEL_FILES["lemma_model_path"], "lemmatizer")


def _train_depparse(out: Path, train_conllu: Path, dev_conllu: Path) -> str:
    from stanza.models import parser

    parser.main(
        _common_tagger_args(out, train_conllu, dev_conllu, MODEL_FILES["depparse_model_path"], STEPS["depparse"])
        + [
            "--hidden_dim",
            "16",
            "--char_hidden_dim",
            "16",
            "--char_emb_dim",
            "8",
            "--word_emb_dim",
            "16",
            "--tag_emb_dim",
            "8",
            "--transformed_dim",
            "16",
            "--deep_biaff_hidden_dim",
            "16",
            "--deep_biaff_output_dim",
            "8",
            "--batch_size",
            "500",
            "--optim",
            "adam",
            "--lr",
            "0.02",
            "--dropout",
            "0.1",
            "--word_dropout",
            "0.1",
            "--no_checkpoint",
            "--no_plateau",
        ]
    )
    return _check(out / MODEL_FILES["depparse_model_path"], "parser")


def _write_conllu(path: Path, sentences: list[list[str]]) -> None:
    from stanza.utils.datasets.common import write_sentences_to_conllu

    write_sentences_to_conllu(str(path), sentences)


def build_tiny_stanza_models(conllu_path: str | Path, out_dir: str | Path, max_sentences: int = 200) -> dict[str, str]:
    """Train tiny tokenize/pos/lemma/depparse models on the first max_sentences sentences of a UD CoNLL-U file
    (plain or .gz) and return {"tokenize_model_path": ..., "pos_model_path": ..., "lemma_model_path": ...,
    "depparse_model_path": ...} (keys named as stanza.Pipeline's kwargs). Reuses models already in out_dir
    (idempotent). Also writes out_dir/resources.json, which Pipeline needs (see pipeline_kwargs)."""
    conllu_path, out = Path(conllu_path), Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {key: str(out / name) for key, name in MODEL_FILES.items()}
    resources = out / "resources.json"
    if not resources.is_file():
        tmp = out / f".resources.json.{os.getpid()}"
        tmp.write_text(json.dumps(RESOURCES_JSON))
        os.replace(tmp, resources)
    missing = [key for key, path in paths.items() if not Path(path).is_file()]
    if not missing:
        return paths

    # Train in a private staging folder and move finished models into place, so neither a
    # failed/killed build nor a concurrent one can leave a partial model for a later call to reuse.
    stage = Path(tempfile.mkdtemp(prefix=".build-", dir=out))
    try:
        train, dev = stage / "train.conllu", stage / "dev.conllu"
        train_sents = _read_sentences(conllu_path, max_sentences)
        if not train_sents:
            raise ValueError(f"no sentences in {conllu_path}")
        _write_conllu(train, train_sents)
        dev_source = conllu_path.with_name(conllu_path.name.replace("-train.", "-dev."))
        if dev_source != conllu_path and dev_source.is_file():
            _write_conllu(dev, _read_sentences(dev_source, N_DEV))
        else:
            _write_conllu(dev, train_sents[:N_DEV])

        trainers = {
            "tokenize_model_path": _train_tokenizer,
            "pos_model_path": _train_pos,
            "lemma_model_path": _train_lemma,
            "depparse_model_path": _train_depparse,
        }
        with _training_context():
            for key in missing:
                t0 = time.perf_counter()
                model = trainers[key](stage, train, dev)
                TIMINGS[key] = time.perf_counter() - t0
                os.replace(model, paths[key])
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return paths


def pipeline_kwargs(paths: dict[str, str]) -> dict[str, str]:
    """The model paths plus resources_filepath (the resources.json written beside the models).

    Use as stanza.Pipeline("en", processors="tokenize,pos,lemma,depparse", download_method=None,
    use_gpu=False, dir=<any dir>, **pipeline_kwargs(paths)).
    """
    out = Path(paths["tokenize_model_path"]).parent
    return {**paths, "resources_filepath": str(out / "resources.json")}


def install_as_resources(paths: dict[str, str], folder: str | Path, package: str = PACKAGE) -> Path:
    """Lay the models out as a stanza_resources folder (what stanza.download makes): resources.json
    naming the package, and <lang>/<processor>/<package>.pt; the stanza backend reads such a folder."""
    folder = Path(folder)
    lang = {"lang_name": "English", "packages": {package: {p: package for p in PROCESSORS}}}
    lang["default_processors"] = {p: package for p in PROCESSORS}
    for proc in PROCESSORS:
        target = folder / "en" / proc / f"{package}.pt"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(paths[f"{proc}_model_path"], target)
        lang[proc] = {package: {}}
    (folder / "resources.json").write_text(json.dumps({"en": lang}))
    return folder


def _demo() -> None:
    import stanza

    src = Path(__file__).resolve().parents[1] / "resources/ud/UD_English-EWT/en_ewt-ud-train.conllu.gz"
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        models = build_tiny_stanza_models(src, Path(tmp) / "models")
        print(f"built in {time.perf_counter() - t0:.1f}s ({', '.join(f'{k}: {v:.1f}s' for k, v in TIMINGS.items())})")
        t0 = time.perf_counter()
        assert build_tiny_stanza_models(src, Path(tmp) / "models") == models
        print(f"second call (reuse) in {time.perf_counter() - t0:.3f}s")
        empty = Path(tmp) / "empty"
        empty.mkdir()
        nlp = stanza.Pipeline(
            "en",
            processors="tokenize,pos,lemma,depparse",
            download_method=None,
            use_gpu=False,
            dir=str(empty),
            logging_level="WARN",
            **pipeline_kwargs(models),
        )
        doc = nlp("The cat sat on the mat. It was happy.")
        for sent in doc.sentences:
            n = len(sent.words)
            assert all(0 <= w.head <= n for w in sent.words)
            assert sum(w.head == 0 for w in sent.words) == 1
            for w in sent.words:
                print(w.id, w.text, w.upos, w.lemma, w.head, w.deprel, sep="\t")
            print()


if __name__ == "__main__":
    _demo()
