# Shared helpers: config validation, paths, input functions. The only rule file with real Python.
# Never import torch here: the DAG is built on login nodes and laptops alike.
import hashlib
import json
import os
import shlex
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.logging import logger

sys.path.insert(0, str(Path(workflow.basedir) / "src"))
from sasbert.measure import checkpoints as sascheckpoints  # noqa: E402
from sasbert import code_identity  # noqa: E402
from sasbert import config as sasconfig  # noqa: E402
from sasbert import hub as sashub  # noqa: E402
from sasbert import textio  # noqa: E402
from sasbert.errors import InputError  # noqa: E402
from sasbert.analysis import figures as sasfigures  # noqa: E402
from sasbert.workflow import RunPlan  # noqa: E402

try:
    sasconfig.validate(config, base_dir=Path.cwd(), schema_path=workflow.source_path("../schemas/config.schema.yaml"))
except sasconfig.ConfigError as err:
    raise WorkflowError(str(err)) from None

# Jobs call the `sasbert` CLI; find it beside the Python that runs Snakemake (the project's venv).
os.environ["PATH"] = str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", "")

# Every job runs the one `sasbert` package: `--use-conda` builds this environment for them
# (relative to the rule files, all in workflow/rules/).
CONDA_ENV = "../../envs/sasbert.yaml"

CORPUS = config["corpus"]["name"]
# What pretraining reads: the tokenize stage's dataset and tokenizer, or a pre-tokenized corpus'
# (corpus.backend pretokenized: no corpus, parse or tokenize job; pretokenized.smk).
PRETOKENIZED = config["corpus"]["backend"] == "pretokenized"
TRAINING_DATA = f"results/{'pretokenized' if PRETOKENIZED else 'tokenize'}/{CORPUS}/dataset"
TRAINING_TOKENIZER = f"results/{'pretokenized' if PRETOKENIZED else 'tokenize'}/{CORPUS}/tokenizer"
SHARDS = list(range(config["corpus"]["shards"]))
RUNS = {run["name"]: run for run in config["runs"]}
SEEDS = config["seeds"]
# which checkpoints each run saves and publishes, where its parts end, each training job's spec
PLAN = RunPlan(config)
# Checkpoint series trained elsewhere: their (folder, step) pairs, resolved and checked now, so that
# a missing folder, an unreadable step or a step given twice stops the run before any job.
# A hub series' checkpoints are hub:<repo>@<revision> specs (its folders exist once series_fetch
# has filled the HF cache), with their steps from the config or their names.
SERIES = {series["name"]: series for series in config["series"]}
HUB_SERIES = [name for name, series in SERIES.items() if "hub" in series]
SERIES_CHECKPOINTS = {}
for _i, (_name, _series) in enumerate(SERIES.items()):
    try:
        if "hub" in _series:
            SERIES_CHECKPOINTS[_name] = sascheckpoints.series_checkpoints(_series["hub"], _series["steps"])
        else:
            _pairs = sascheckpoints.resolve_checkpoints(_series["checkpoints"], _series["steps"], "steps")
            SERIES_CHECKPOINTS[_name] = [(str(folder), step) for folder, step in _pairs]
    except InputError as err:
        raise WorkflowError(f"series[{_i}] ({_name}): {err}") from None


wildcard_constraints:
    corpus=CORPUS,
    shard=r"\d+",
    run="|".join([*RUNS, *SERIES]),
    series="|".join(HUB_SERIES) or "(?!)",
    seed=r"\d+",
    step=r"\d+",
    end=r"\d+",


# The code part of every job's identity (sasbert.code_identity): a job parameter, which Snakemake
# compares by value. A real change of the code a stage runs reruns it ("Params have changed"); a
# comment, a docstring, `touch`, a moved folder or a fresh clone changes no fingerprint and reruns
# nothing. The jobs compute the same fingerprints from the code they run, for the resume state and
# the per-checkpoint caches that Snakemake cannot see into.
PACKAGE_DIR = Path(workflow.basedir) / "src" / "sasbert"


def code_fingerprint(*modules):
    """The fingerprint of the code of ``modules`` and every package module they import."""
    return code_identity.code_fingerprint(*modules, package_dir=PACKAGE_DIR)


def training_code(wildcards):
    """A run's training code: without the regularizer where lambda is 0 at every step
    (``code_identity.training_modules`` says why)."""
    return code_identity.training_fingerprint(RUNS[wildcards.run]["lambda"], package_dir=PACKAGE_DIR)


def corpus_inputs():
    """Corpus files (or globs) to track; a HF dataset contributes its local files or folder only."""
    corpus = config["corpus"]
    kind = corpus_kind()
    if PRETOKENIZED:  # read by the pretokenized job (pretokenized_inputs)
        return []
    if kind != "hf":
        return corpus[kind]
    hf = corpus["hf_dataset"]
    if hf["data_files"]:
        return hf["data_files"]
    return [hf["path"]] if Path(hf["path"]).is_dir() else []


def corpus_kind():
    """What the corpus stage reads: conllu files, text files, or a HF dataset (hf)."""
    corpus = config["corpus"]
    if corpus["backend"] == "conllu":
        return "conllu"
    return "hf" if corpus.get("hf_dataset") else "text"


def options_key(options):
    """A short fingerprint of a stage's options. Per-checkpoint results that a job keeps across
    attempts live in a folder named by it, so results made with other options are never reused."""
    return hashlib.sha1(json.dumps(options, sort_keys=True).encode()).hexdigest()[:10]


def by_step_dir(stage, wildcards):
    """Where a probe or BLiMP job of a run x seed keeps its per-checkpoint tables (each entry also
    records the code, options and data it was computed from, and is reused only for the same)."""
    # options that choose which checkpoints are scored, not how: a change keeps the scores made
    scoring = {k: v for k, v in config[stage].items() if k not in sascheckpoints.SELECTION_OPTIONS}
    return f"results/{stage}/{wildcards.run}/seed{wildcards.seed}/by_step-{options_key(scoring)}"


def probe_by_step(wildcards):
    return by_step_dir("probe", wildcards)


def blimp_by_step(wildcards):
    return by_step_dir("blimp", wildcards)


def stage_options(section, **derived):
    """A stage's options: its config section (defaults filled by validation) as the JSON its CLI
    takes with --options, with any values the workflow derives from other sections."""
    return json.dumps({**config[section], **derived}, sort_keys=True)


def command(*parts):
    """A shell command from parts (a shared command and what one rule adds to it)."""
    return " ".join(parts)


def optional_flag(flag, value):
    """``flag value`` (the value shell-quoted: paths may hold spaces), or nothing for None."""
    return "" if value is None else f"{flag} {shlex.quote(str(value))}"


def measured(stage, table):
    """A stage's table of every run x seed (runs in config order, seeds within each run), then of
    every series (at its own seed): the order `phases gather` reads them in."""
    return [
        *expand(f"results/{stage}/{{run}}/seed{{seed}}/{table}", run=RUNS, seed=SEEDS),
        *[f"results/{stage}/{name}/seed{series['seed']}/{table}" for name, series in SERIES.items()],
    ]


def final_outputs():
    """What `snakemake` builds by default: every stage implemented so far (without training runs,
    a config that only measures series has no corpus, tokenize or pretrain job)."""
    return [
        *([TRAINING_DATA if PRETOKENIZED else f"results/tokenize/{CORPUS}/stats.json"] if RUNS else []),
        *expand(f"{run_dir('{run}', '{seed}')}/metrics/eval.parquet", run=RUNS, seed=SEEDS),
        *measured("probe", "summary.parquet"),
        *measured("blimp", "summary.parquet"),
        "results/tables/phases.csv",
        *glue_tables(),
        *expand(
            "results/figures/{figure}.{ext}",
            ext=["png", "pdf"],
            figure=sasfigures.FIGURES,
        ),
    ]


def run_dir(run, seed):
    return f"results/pretrain/{run}/seed{seed}"


def run_dir_of(wildcards):
    return run_dir(wildcards.run, wildcards.seed)


def checkpoint_folder(run, seed, step):
    """The published folder that holds a run's checkpoint at ``step``: its part's, or the run's."""
    end = PLAN.part_holding(run, step)
    return part_dir(run, seed, end) if end is not None else f"{run_dir(run, seed)}/checkpoints"


def spec_json(wildcards):
    return json.dumps(PLAN.spec(wildcards.run, wildcards.seed), sort_keys=True)


def part_spec_json(wildcards):
    return json.dumps(PLAN.part_spec(wildcards.run, wildcards.seed, int(wildcards.end)), sort_keys=True)


def part_publish_after(wildcards):
    return PLAN.publish_after(wildcards.run, int(wildcards.end))


def missing_published_checkpoints():
    """Checkpoints a finished training job published that are gone (see `missing_published`):
    the tables built from them stay valid, but nothing could score them again."""
    return [p for run in RUNS for seed in SEEDS for p in sascheckpoints.missing_published(run_dir(run, seed))]


def scored_checkpoints(wildcards):
    """What a probe or BLiMP job of a run x seed reads: the run's published checkpoints folder,
    or a series' checkpoint folders."""
    if wildcards.run in HUB_SERIES:
        return f"results/series/{wildcards.run}/fetched.json"
    if wildcards.run in SERIES:
        return [folder for folder, _ in SERIES_CHECKPOINTS[wildcards.run]]
    return f"{run_dir_of(wildcards)}/checkpoints"


def scored_parts(stage, suffix):
    """The part jobs a probe or BLiMP job of a run takes over from (none for a series)."""

    def parts(wildcards):
        ends = [] if wildcards.run in SERIES else PLAN.part_ends(wildcards.run)
        return [f"results/{stage}/{wildcards.run}/seed{wildcards.seed}/parts/until-{e}.{suffix}" for e in ends]

    return parts


def checkpoint_args(wildcards, input):
    """The scored checkpoint folders, one per published step, shell-quoted: a job that scores a
    series names each folder it expects, so a deleted one stops it with the folder's name instead
    of leaving a silent gap in its table. A series' steps are given with --step."""
    if wildcards.run in SERIES:
        pairs = SERIES_CHECKPOINTS[wildcards.run]
        names = " ".join(shlex.quote(name) for name, _ in pairs)
        return f"{names} --step {' '.join(str(step) for _, step in pairs)}"
    steps = PLAN.published_by(wildcards.run, getattr(wildcards, "end", None))
    return " ".join(shlex.quote(f"{input.checkpoints}/step-{s}") for s in steps)


def part_dir(run, seed, end):
    return f"{run_dir(run, seed)}/parts/until-{end}"


def previous_part(wildcards):
    """The part a training job continues from (its output orders the chain)."""
    end = PLAN.previous_end(wildcards.run, getattr(wildcards, "end", config["train"]["max_steps"]))
    return [part_dir(wildcards.run, wildcards.seed, end)] if end is not None else []


def parent_checkpoints(wildcards):
    parent = RUNS[wildcards.run].get("resume_from")
    return [checkpoint_folder(parent["run"], wildcards.seed, parent["step"])] if parent else []


def resume_flag(wildcards):
    parent = RUNS[wildcards.run].get("resume_from")
    if not parent:
        return ""
    return f"--resume-from {checkpoint_folder(parent['run'], wildcards.seed, parent['step'])}/step-{parent['step']}"


def gpu_count(resources):
    """GPUs of a job: the `gpu` resource, or the count in a `gres` like gpu:a100:4 (sites that
    reject --gpus request GPUs as GRES; their profile then sets gpu=0)."""
    if int(resources.get("gpu", 0) or 0):
        return int(resources.gpu)
    for item in str(resources.get("gres", "") or "").split(","):  # e.g. "gpu:a100:4,tmp:10G"
        parts = item.strip().split(":")
        if parts[0] == "gpu":
            return int(parts[-1]) if len(parts) > 1 and parts[-1].isdigit() else 1
    return 0


def launcher(wildcards, threads, resources):
    """One process, or torchrun with one process per GPU (DDP keeps the global batch)."""
    gpus = gpu_count(resources)
    if gpus > 1:
        return f"torchrun --standalone --nproc_per_node {gpus} -m sasbert"
    return "sasbert"


# The corpus and parse stages' files and options.


def corpus_files():
    """The corpus inputs with text globs expanded (sorted), so Snakemake tracks every file."""
    return textio.expand_paths(corpus_inputs())


def corpus_file_flags():
    """The corpus files (--inputs), or a HF dataset's path and local files (hub names are
    options, not files): paths travel as flags of their own, shell-quoted."""
    if corpus_kind() != "hf":
        return "--inputs " + " ".join(shlex.quote(f) for f in corpus_files())
    hf = config["corpus"]["hf_dataset"]
    flags = f"--hf-path {shlex.quote(hf['path'])}"
    if hf["data_files"]:
        flags += " --hf-data-files " + " ".join(shlex.quote(f) for f in corpus_files())
    return flags


def corpus_options():
    """The corpus stage's options: only what it reads for this kind of corpus (a text-cleaning
    change does not rerun a CoNLL-U corpus, nor a parser setting any corpus)."""
    corpus = config["corpus"]
    options = {"max_units": corpus["max_units"]}
    if corpus_kind() != "conllu":
        options["text_cleaning"] = corpus["text_cleaning"]
    if corpus_kind() == "hf":
        options["hf_dataset"] = corpus["hf_dataset"]
    return json.dumps(options, sort_keys=True)


def parse_backend_args():
    """The parse job's backend options: only its backend's part of the corpus section (a spaCy
    setting does not rerun a stanza parse), as --options, and its one path (the spaCy model, which
    may be a folder, or the stanza models' folder) as a flag of its own."""
    corpus = config["corpus"]
    backend = corpus["backend"]
    if backend == "conllu":
        return ""
    if backend == "spacy":
        path_flag = f"--spacy-model {shlex.quote(corpus['spacy']['model'])}"
    else:
        path_flag = f"--stanza-dir {shlex.quote(corpus['stanza']['resources_dir'])}"
    return f"{path_flag} --options {shlex.quote(json.dumps({backend: corpus[backend]}, sort_keys=True))}"


# The pretokenized stage's files and options.


def pretokenized_source():
    return config["corpus"]["pretokenized"]


def pretokenized_fetch_options(wildcards):
    """The fetch job's options: the hub dataset alone (repo, revision, files), so a change of any
    of them fetches again, and nothing else does."""
    return json.dumps({"pretokenized": {"hub": pretokenized_source()["hub"]}}, sort_keys=True)


def pretokenized_inputs(wildcards):
    """What the pretokenized job reads: a hub dataset's fetch manifest, local files (globs expanded,
    so Snakemake tracks every file) or a save_to_disk folder."""
    source = pretokenized_source()
    if "hub" in source:
        return {"fetched": f"results/pretokenized/{CORPUS}/fetched.json"}
    if "data_files" in source:
        return {split: textio.expand_paths(files) for split, files in source["data_files"].items()}
    return {"folder": source["path"]}


def pretokenized_file_flags(wildcards, input):
    """The pretokenized job's files as flags of their own, shell-quoted."""
    if "fetched" in input.keys():
        return f"--fetched {shlex.quote(input.fetched)}"
    if "folder" in input.keys():
        return f"--path {shlex.quote(input.folder)}"
    return " ".join(
        f"--{split}-files " + " ".join(shlex.quote(f) for f in input[split]) for split in ("train", "validation")
    )


def pretokenized_options(wildcards):
    """The pretokenized job's options: corpus.pretokenized (a hub dataset's repo, revision and files
    are parameters: a change prepares again)."""
    return json.dumps({"pretokenized": pretokenized_source()}, sort_keys=True)


def pretokenized_tokenizer_options(wildcards):
    """Of the tokenizer section, what the pretokenized job uses: the rows' length, the vocab's case,
    the held-out rows."""
    return json.dumps(
        {k: config["tokenizer"][k] for k in ("seq_len", "lowercase", "validation_blocks")}, sort_keys=True
    )


def parse_gpus():
    corpus = config["corpus"]
    return corpus["stanza"]["gpus"] if corpus["backend"] == "stanza" else 0


# Only the invocation a user runs warns (a job's own Snakemake, on a cluster node, does not).
if workflow.is_main_process and (missing := missing_published_checkpoints()):
    logger.warning(
        "Published checkpoints are missing; the probe and BLiMP tables built from them remain, but a job that"
        " rescores their run will stop:\n  "
        + "\n  ".join(missing)
        + "\nTo republish them (their training job relinks them from state/, or retrains them where the state is"
        " gone), add to the command:\n  --forcerun " + " ".join(sorted({str(Path(p).parent) for p in missing}))
    )


# GLUE fine-tuning (config glue:, off when the section is absent): one job per checkpoint x task x
# fine-tuning seed. Which checkpoints, tasks and seeds are chosen here; the jobs get only the
# training settings, so choosing more checkpoints or tasks runs the new jobs alone.
GLUE = config.get("glue")
GLUE_SELECTION_KEYS = {"tasks", "runs", "steps", "every_steps", "finetune_seeds", "hub_dataset", "data"}


def glue_measured():
    """(run or series, seed) of everything the glue section fine-tunes (every run x seed and
    series when glue.runs is null)."""
    names = GLUE["runs"] if GLUE["runs"] is not None else [*RUNS, *SERIES]
    return [
        pair
        for name in names
        for pair in ([(name, s) for s in SEEDS] if name in RUNS else [(name, SERIES[name]["seed"])])
    ]


def glue_steps(name):
    """The steps of a run's (or series') checkpoints that are fine-tuned: glue.steps where it has
    them, else those on glue.every_steps and its first and last (BLiMP's rule), else all."""
    steps = [step for _, step in SERIES_CHECKPOINTS[name]] if name in SERIES else PLAN.published(name)
    if GLUE["steps"] is not None:
        return [s for s in steps if s in set(GLUE["steps"])]
    return [s for _, s in sascheckpoints.thin_series([(None, s) for s in steps], GLUE["every_steps"])]


def glue_metrics(run, seed):
    """The metric tables of a run x seed's fine-tunes."""
    return [
        f"results/glue/{run}/seed{seed}/{task}/step-{step}.ft{fseed}.metrics.parquet"
        for step in glue_steps(run)
        for task in GLUE["tasks"]
        for fseed in GLUE["finetune_seeds"]
    ]


def glue_run_metrics(wildcards):
    return glue_metrics(wildcards.run, wildcards.seed)


def glue_tables():
    """The GLUE table, where the config has a glue section (the phases and figures 1-3 read it)."""
    return ["results/tables/glue.parquet"] if GLUE else []


def glue_flag(wildcards, input):
    return optional_flag("--glue", input.glue[0] if GLUE else None)


def glue_checkpoint(wildcards):
    """What a GLUE job reads: the published folder (or part) that holds a run's checkpoint, a local
    series' checkpoint folder, or a hub series' fetch manifest."""
    if wildcards.run in HUB_SERIES:
        return f"results/series/{wildcards.run}/fetched.json"
    if wildcards.run in SERIES:
        return [folder for folder, step in SERIES_CHECKPOINTS[wildcards.run] if step == int(wildcards.step)]
    return checkpoint_folder(wildcards.run, wildcards.seed, int(wildcards.step))


def glue_checkpoint_arg(wildcards, input):
    """The fine-tuned checkpoint, shell-quoted: a series' folder or hub spec, or a run's step-N."""
    if wildcards.run in SERIES:
        (name,) = [name for name, step in SERIES_CHECKPOINTS[wildcards.run] if step == int(wildcards.step)]
        return shlex.quote(name)
    return shlex.quote(f"{input.checkpoint}/step-{wildcards.step}")


def glue_options():
    """The fine-tuning jobs' options: the glue section without what chooses the jobs."""
    return json.dumps({k: v for k, v in GLUE.items() if k not in GLUE_SELECTION_KEYS}, sort_keys=True)


def glue_source(task):
    return (GLUE["data"] or {}).get(task) or {}


def glue_data_files(wildcards):
    """A task's local data (files, a save_to_disk folder, a BLiMP folder), tracked as inputs; a hub
    task has none (its name is a parameter)."""
    source = glue_source(wildcards.task)
    if "data_files" in source:
        return list(source["data_files"].values())
    if "saved" in source:
        return [source["saved"]]
    return [source["blimp"]["data_dir"]] if "blimp" in source else []


def glue_source_args(wildcards):
    """The prepare job's source: local paths as flags of their own, shell-quoted, or the hub dataset."""
    source = glue_source(wildcards.task)
    if "data_files" in source:
        return " ".join(
            f"--split-file {shlex.quote(split)} {shlex.quote(path)}" for split, path in source["data_files"].items()
        )
    if "saved" in source:
        return f"--saved {shlex.quote(source['saved'])}"
    if "blimp" in source:
        options = {k: v for k, v in source["blimp"].items() if k != "data_dir"}
        return (
            f"--blimp-dir {shlex.quote(source['blimp']['data_dir'])}"
            f" --blimp-options {shlex.quote(json.dumps(options, sort_keys=True))}"
        )
    return f"--hub-dataset {shlex.quote(GLUE['hub_dataset'])}"


if GLUE:  # glue.runs is checked with the config; a series' steps are known only now
    _empty = [name for name, _ in glue_measured() if not glue_steps(name)]
    if _empty:
        raise WorkflowError(
            f"glue.steps: {', '.join(dict.fromkeys(_empty))} has no checkpoint at any of {GLUE['steps']}"
        )
