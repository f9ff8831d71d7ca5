# Stage 4: MLM pretraining of each run x seed. A release run SAS-(k) depends on its parent's
# checkpoint at step k and starts from it. Resume state lives in <run>/seed<seed>/state/, outside
# the declared outputs (Snakemake deletes those before rerunning a job), so a killed or preempted
# job resumes from its last checkpoint when it is run again, and a longer max_steps or a denser
# schedule trains only what is new. With train.job_steps, a run is a chain of jobs of at most that
# many steps: pretrain_part publishes each part's checkpoints in parts/until-<end>/ (probe and
# BLiMP start on them while the next part trains); the pretrain job trains the last part and
# publishes the whole run.


def training_code(wildcards):
    """A run's training code: without the regularizer where lambda is 0 at every step
    (``code_identity.training_modules`` says why)."""
    return code_identity.training_fingerprint(RUNS[wildcards.run]["lambda"], package_dir=PACKAGE_DIR)


def spec_json(wildcards):
    return json.dumps(PLAN.spec(wildcards.run, wildcards.seed), sort_keys=True)


def part_spec_json(wildcards):
    return json.dumps(PLAN.part_spec(wildcards.run, wildcards.seed, int(wildcards.end)), sort_keys=True)


def part_publish_after(wildcards):
    return PLAN.publish_after(wildcards.run, int(wildcards.end))


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


def missing_published_checkpoints():
    """Checkpoints a finished training job published that are gone (see `missing_published`):
    the tables built from them stay valid, but nothing could score them again."""
    return [p for run in RUNS for seed in SEEDS for p in sascheckpoints.missing_published(run_dir(run, seed))]


# Only the invocation a user runs warns (a job's own Snakemake, on a cluster node, does not).
if workflow.is_main_process and (missing := missing_published_checkpoints()):
    logger.warning(
        "Published checkpoints are missing; the probe and BLiMP tables built from them remain, but a job that"
        " rescores their run will stop:\n  "
        + "\n  ".join(missing)
        + "\nTo republish them (their training job relinks them from state/, or retrains them where the state is"
        " gone), add to the command:\n  --forcerun " + " ".join(sorted({str(Path(p).parent) for p in missing}))
    )


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
