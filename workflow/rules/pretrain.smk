# Stage 4: MLM pretraining of each run x seed. A release run SAS-(k) depends on its parent's
# checkpoints and starts from the one at step k. Resume state lives in <run>/seed<seed>/state/,
# outside the declared outputs (Snakemake deletes those before rerunning a job), so a killed or
# preempted job resumes from its last checkpoint when it is run again.


rule pretrain:
    input:
        dataset=f"results/tokenize/{CORPUS}/dataset",
        tokenizer=f"results/tokenize/{CORPUS}/tokenizer",
        parent=parent_checkpoints,
        code=stage_code("pretrain", "regularizer"),
    output:
        checkpoints=directory("results/pretrain/{run}/seed{seed}/checkpoints"),
        steps="results/pretrain/{run}/seed{seed}/metrics/steps.parquet",
        eval="results/pretrain/{run}/seed{seed}/metrics/eval.parquet",
    params:
        spec=spec_json,
        resume=resume_flag,
        launcher=launcher,
        run_dir=run_dir_of,
    threads: config["train"]["threads"]
    resources:
        gpu=config["train"]["gpus"],
        mem_mb=4000,
    log:
        "results/logs/pretrain/{run}/seed{seed}.log",
    benchmark:
        "results/benchmarks/pretrain/{run}/seed{seed}.tsv"
    shell:
        "{params.launcher} pretrain --dataset {input.dataset:q} --tokenizer {input.tokenizer:q}"
        " --run-dir {params.run_dir:q} --spec {params.spec:q} {params.resume} --threads {threads}"
        " > {log} 2>&1"
