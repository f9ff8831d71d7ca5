# Stage 4b: checkpoint series trained elsewhere (config series:). Local series need no job of their
# own: their folders are read where the DAG is built.
# A hub series' checkpoints, fetched into the HF cache once (a local rule: on a cluster the login
# node has the internet); the probe and BLiMP jobs then read the cache offline.


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


localrules:
    series_fetch,


rule series_fetch:
    output:
        "results/series/{series}/fetched.json",
    log:
        "results/logs/series/{series}.fetch.log",
    benchmark:
        "results/benchmarks/series/{series}.fetch.tsv"
    conda:
        CONDA_ENV
    params:
        code=code_fingerprint("hub"),
        specs=lambda w: " ".join(shlex.quote(name) for name, _ in SERIES_CHECKPOINTS[w.series]),
    shell:
        "sasbert series-fetch --checkpoint {params.specs} --out {output:q} > {log} 2>&1"
