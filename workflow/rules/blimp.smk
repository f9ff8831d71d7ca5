# Stage 6: BLiMP accuracy (pseudo-log-likelihood) of the checkpoints of a run x seed (every one, or
# those on blimp.every_steps), in one job per run x seed (model loading and torch start-up are paid
# once, not once per checkpoint). Each
# checkpoint's pair scores are kept in <dir>/by_step-<options>/, so a retried job keeps the
# checkpoints it had finished.


BLIMP_SCORE = (
    "OMP_NUM_THREADS={threads} sasbert blimp score --checkpoint {params.checkpoints}"
    " --data-dir {input.data:q} --options {params.options:q}"
    " --cache-dir {params.by_step:q} --out-pairs {output.pairs:q} --out-summary {output.summary:q}"
)


rule blimp_part:
    """The checkpoints of one finished part of a run (train.job_steps), while the next part trains."""
    input:
        checkpoints="results/pretrain/{run}/seed{seed}/parts/until-{end}",
        data=config["blimp"]["data_dir"],
    output:
        pairs="results/blimp/{run}/seed{seed}/parts/until-{end}.pairs.parquet",
        summary="results/blimp/{run}/seed{seed}/parts/until-{end}.summary.parquet",
    log:
        "results/logs/blimp/{run}/seed{seed}.until-{end}.log",
    benchmark:
        "results/benchmarks/blimp/{run}/seed{seed}.until-{end}.tsv"
    conda:
        CONDA_ENV
    threads: 1
    resources:
        gpu=0,
        mem_mb=4000,
    params:
        code=code_fingerprint("measure.blimp.cli"),
        checkpoints=checkpoint_args,
        options=stage_options("blimp"),
        by_step=blimp_by_step,
    shell:
        command(BLIMP_SCORE, "> {log} 2>&1")


rule blimp:
    input:
        checkpoints=scored_checkpoints,
        parts=scored_parts("blimp", "summary.parquet"),
        data=config["blimp"]["data_dir"],
    output:
        pairs="results/blimp/{run}/seed{seed}/pairs.parquet",
        summary="results/blimp/{run}/seed{seed}/summary.parquet",
    log:
        "results/logs/blimp/{run}/seed{seed}.log",
    benchmark:
        "results/benchmarks/blimp/{run}/seed{seed}.tsv"
    conda:
        CONDA_ENV
    threads: 1
    resources:
        gpu=0,
        mem_mb=4000,
    params:
        code=code_fingerprint("measure.blimp.cli"),
        checkpoints=checkpoint_args,
        options=stage_options("blimp"),
        by_step=blimp_by_step,
    shell:
        command(BLIMP_SCORE, "> {log} 2>&1")
