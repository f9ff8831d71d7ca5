# The input functions and settings of workflow/rules/pretrain.smk, which includes this file: what
# its jobs read and the flags they get, from the config (common.smk) and the run plan.


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
