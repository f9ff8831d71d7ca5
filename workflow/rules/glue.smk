# Stage 6b: GLUE fine-tuning (config glue:, absent from the default run). glue_data, a local rule
# (on a cluster the login node, which has the internet), reads each task once (from the hub into the
# HF cache, or from local files, a save_to_disk folder or BLiMP) into a checked DatasetDict; each
# checkpoint x task x fine-tuning seed is then one job that reads it offline (one GPU each in
# profiles/slurm, so a cluster runs them side by side) and scores the task's validation split(s).
# glue_gather stacks a run x seed's fine-tunes, glue_table every run's, with the GLUE average and
# the mean and spread over fine-tuning seeds.


include: "inputs/glue.smk"


localrules:
    glue_data,
    glue_gather,
    glue_table,


rule glue_data:
    input:
        files=glue_data_files,
    output:
        directory("results/glue/data/{task}"),
    log:
        "results/logs/glue/data/{task}.log",
    benchmark:
        "results/benchmarks/glue/data/{task}.tsv"
    conda:
        CONDA_ENV
    params:
        code=code_fingerprint("measure.glue.cli"),
        source=glue_source_args,
    shell:
        "sasbert glue prepare --task {wildcards.task} {params.source} --out {output:q} > {log} 2>&1"


rule glue:
    input:
        checkpoint=glue_checkpoint,
        data="results/glue/data/{task}",
    output:
        metrics="results/glue/{run}/seed{seed}/{task}/step-{step}.ft{fseed}.metrics.parquet",
        predictions="results/glue/{run}/seed{seed}/{task}/step-{step}.ft{fseed}.predictions.parquet",
    log:
        "results/logs/glue/{run}/seed{seed}/{task}/step-{step}.ft{fseed}.log",
    benchmark:
        "results/benchmarks/glue/{run}/seed{seed}/{task}/step-{step}.ft{fseed}.tsv"
    wildcard_constraints:
        task="|".join(GLUE["tasks"]) if GLUE else "(?!)",
        fseed=r"\d+",
    conda:
        CONDA_ENV
    threads: 1
    resources:
        gpu=0,
        mem_mb=8000,
    params:
        code=code_fingerprint("measure.glue.cli"),
        checkpoint=glue_checkpoint_arg,
        options=glue_options() if GLUE else "",
    shell:
        "sasbert glue finetune --checkpoint {params.checkpoint} --step {wildcards.step} --run {wildcards.run}"
        " --seed {wildcards.seed} --task {wildcards.task} --data {input.data:q} --finetune-seed {wildcards.fseed}"
        " --options {params.options:q} --threads {threads} --out-metrics {output.metrics:q}"
        " --out-predictions {output.predictions:q} > {log} 2>&1"


rule glue_gather:
    input:
        metrics=glue_run_metrics,
    output:
        "results/glue/{run}/seed{seed}/metrics.parquet",
    log:
        "results/logs/glue/{run}/seed{seed}.gather.log",
    benchmark:
        "results/benchmarks/glue/{run}/seed{seed}.gather.tsv"
    conda:
        CONDA_ENV
    params:
        code=code_fingerprint("measure.glue.cli"),
    shell:
        "sasbert glue gather --inputs {input.metrics:q} --out {output:q} > {log} 2>&1"


rule glue_table:
    input:
        runs=[f"results/glue/{run}/seed{seed}/metrics.parquet" for run, seed in glue_measured()] if GLUE else [],
    output:
        table="results/tables/glue.parquet",
        summary="results/tables/glue_summary.parquet",
    log:
        "results/logs/glue/table.log",
    benchmark:
        "results/benchmarks/glue/table.tsv"
    conda:
        CONDA_ENV
    params:
        code=code_fingerprint("measure.glue.cli"),
    shell:
        "sasbert glue gather --inputs {input.runs:q} --out {output.table:q} --out-summary {output.summary:q}"
        " > {log} 2>&1"
