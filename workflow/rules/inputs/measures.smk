# The input functions and settings of workflow/rules/measures.smk, which includes this file: what
# a per-checkpoint measure's jobs read and the flags they get, from its registry entry
# (sasbert.measure.registry), the config (common.smk) and the run plan.


def by_step_dir(stage):
    """Where a measure's job of a run x seed keeps its per-checkpoint tables (each entry also
    records the code, options and data it was computed from, and is reused only for the same)."""
    # options that choose which checkpoints are scored, not how, and an optional measure's switch:
    # a change keeps the scores made
    scoring = {
        k: v for k, v in config[stage].items() if k not in sascheckpoints.SELECTION_OPTIONS and k != sasmeasures.ENABLED
    }

    def folder(wildcards):
        return f"results/{stage}/{wildcards.run}/seed{wildcards.seed}/by_step-{options_key(scoring)}"

    return folder


def measure_data(measure):
    """A measure's data inputs: the files or folders its config section names (registry `inputs`)."""
    return {key: config[measure.name][key] for key in measure.inputs}


# `sasbert <measure> score` over a run x seed's checkpoints (or one part's): its data, its options,
# the per-checkpoint cache folder and one flag per table it writes. One template for every measure,
# its measure-specific parts in params: a rule made in a loop evaluates its shell expression again
# when a job runs, by then with the loop's last measure (the figure rules do the same).
MEASURE_COMMAND = (
    "sasbert {params.measure} score --checkpoint {params.checkpoints}{params.data}"
    " --options {params.options:q} --threads {threads} --cache-dir {params.by_step:q}{params.tables}"
    " > {log} 2>&1"
)


def measure_data_flags(measure):
    """The job's --<key> flag for each data input of the measure (registry `inputs`)."""

    def flags(wildcards, input):
        return "".join(f" {measure.input_flag(key)} {shlex.quote(str(getattr(input, key)))}" for key in measure.inputs)

    return flags


def measure_table_flags(measure):
    """The job's --out-<table> flag for each table the measure writes."""

    def flags(wildcards, output):
        return "".join(f" {measure.out_flag(t)} {shlex.quote(str(getattr(output, t)))}" for t in measure.tables)

    return flags


def scored_checkpoints(wildcards):
    """What a measure's job of a run x seed reads: the run's published checkpoints folder,
    or a series' checkpoint folders."""
    if wildcards.run in HUB_SERIES:
        return f"results/series/{wildcards.run}/fetched.json"
    if wildcards.run in SERIES:
        return [folder for folder, _ in SERIES_CHECKPOINTS[wildcards.run]]
    return f"{run_dir_of(wildcards)}/checkpoints"


def scored_parts(stage, suffix):
    """The part jobs a measure's job of a run takes over from (none for a series)."""

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
