# Stage 4: MLM pretraining of each run x seed. A release run SAS-(k) depends on its parent's
# checkpoint at step k and starts from it. Resume state lives in <run>/seed<seed>/state/, outside
# the declared outputs (Snakemake deletes those before rerunning a job), so a killed or preempted
# job resumes from its last checkpoint when it is run again, and a longer max_steps or a denser
# schedule trains only what is new. With train.job_steps, a run is a chain of jobs of at most that
# many steps: pretrain_part publishes each part's checkpoints in parts/until-<end>/ (probe and
# BLiMP start on them while the next part trains); the pretrain job trains the last part and
# publishes the whole run.


include: "inputs/pretrain.smk"


PRETRAIN = (
    "{params.launcher} pretrain --dataset {input.dataset:q} --tokenizer {input.tokenizer:q}"
    " --run-dir {params.run_dir:q} --spec {params.spec:q} {params.resume} --threads {threads}"
)


rule pretrain_part:
    input:
        dataset=TRAINING_DATA,
        tokenizer=TRAINING_TOKENIZER,
        parent=parent_checkpoints,
        previous=previous_part,
    output:
        checkpoints=directory("results/pretrain/{run}/seed{seed}/parts/until-{end}"),
    log:
        "results/logs/pretrain/{run}/seed{seed}.until-{end}.log",
    benchmark:
        "results/benchmarks/pretrain/{run}/seed{seed}.until-{end}.tsv"
    conda:
        CONDA_ENV
    threads: config["train"]["threads"]
    resources:
        gpu=config["train"]["gpus"],
        mem_mb=4000,
    params:
        code=training_code,
        spec=part_spec_json,
        resume=resume_flag,
        launcher=launcher,
        run_dir=run_dir_of,
        after=part_publish_after,
    shell:
        command(PRETRAIN, "--part-dir {output.checkpoints:q} --publish-after {params.after} > {log} 2>&1")


rule pretrain:
    input:
        dataset=TRAINING_DATA,
        tokenizer=TRAINING_TOKENIZER,
        parent=parent_checkpoints,
        previous=previous_part,
    output:
        checkpoints=directory("results/pretrain/{run}/seed{seed}/checkpoints"),
        steps="results/pretrain/{run}/seed{seed}/metrics/steps.parquet",
        eval="results/pretrain/{run}/seed{seed}/metrics/eval.parquet",
    log:
        "results/logs/pretrain/{run}/seed{seed}.log",
    benchmark:
        "results/benchmarks/pretrain/{run}/seed{seed}.tsv"
    conda:
        CONDA_ENV
    threads: config["train"]["threads"]
    resources:
        gpu=config["train"]["gpus"],
        mem_mb=4000,
    params:
        code=training_code,
        spec=spec_json,
        resume=resume_flag,
        launcher=launcher,
        run_dir=run_dir_of,
    shell:
        command(PRETRAIN, "> {log} 2>&1")
