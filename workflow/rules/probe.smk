# Stage 5: attention-head UAS of every checkpoint of a run x seed against the gold treebank, in one
# job per run x seed (torch start-up and treebank tokenization are paid once). Each checkpoint's
# tables are kept in <dir>/by_step-<options>/ (undeclared, so they survive a failed attempt), so a
# retried job keeps the checkpoints it had finished and a run's job takes what its parts scored.


PROBE_SCORE = (
    "sasbert probe score --checkpoint {params.checkpoints} --treebank {input.treebank:q}"
    " --options {params.options:q} --threads {threads}"
    " --cache-dir {params.by_step:q} --out-scores {output.scores:q} --out-summary {output.summary:q}"
)


rule probe_part:
    """The checkpoints of one finished part of a run (train.job_steps), while the next part trains."""
    input:
        checkpoints="results/pretrain/{run}/seed{seed}/parts/until-{end}",
        treebank=config["probe"]["treebank"],
    output:
        summary="results/probe/{run}/seed{seed}/parts/until-{end}.summary.parquet",
        scores="results/probe/{run}/seed{seed}/parts/until-{end}.scores.parquet",
    log:
        "results/logs/probe/{run}/seed{seed}.until-{end}.log",
    benchmark:
        "results/benchmarks/probe/{run}/seed{seed}.until-{end}.tsv"
    conda:
        CONDA_ENV
    threads: 1
    resources:
        gpu=0,
        mem_mb=4000,
    params:
        code=code_fingerprint("measure.probe.cli"),
        checkpoints=checkpoint_args,
        by_step=probe_by_step,
        options=stage_options("probe"),
    shell:
        command(PROBE_SCORE, "> {log} 2>&1")


rule probe:
    input:
        checkpoints=scored_checkpoints,
        parts=scored_parts("probe", "summary.parquet"),
        treebank=config["probe"]["treebank"],
    output:
        summary="results/probe/{run}/seed{seed}/summary.parquet",
        scores="results/probe/{run}/seed{seed}/scores.parquet",
    log:
        "results/logs/probe/{run}/seed{seed}.log",
    benchmark:
        "results/benchmarks/probe/{run}/seed{seed}.tsv"
    conda:
        CONDA_ENV
    threads: 1
    resources:
        gpu=0,
        mem_mb=4000,
    params:
        code=code_fingerprint("measure.probe.cli"),
        checkpoints=checkpoint_args,
        by_step=probe_by_step,
        options=stage_options("probe"),
    shell:
        command(PROBE_SCORE, "> {log} 2>&1")
