# The input functions and settings of workflow/rules/glue.smk, which includes this file: what
# its jobs read and the flags they get, from the config (common.smk) and the run plan.


# GLUE fine-tuning (config glue:, off when the section is absent): one job per checkpoint x task x
# fine-tuning seed. Which checkpoints, tasks and seeds are chosen here; the jobs get only the
# training settings, so choosing more checkpoints or tasks runs the new jobs alone.
GLUE = config.get("glue")
from sasbert.measure.glue.options import SELECTION_KEYS as GLUE_SELECTION_KEYS  # noqa: E402


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
