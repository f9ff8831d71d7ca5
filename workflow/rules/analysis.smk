# Stages 7-8: all-runs tables, phases (onsets) and the figures, from tables alone.
# `tables` stacks every run x seed's pretrain/probe/BLiMP tables into results/tables/; `phases`
# finds the onsets there; each figure rule reads only results/tables/, so a figure option or an
# edit of figures.py reruns the figure jobs and nothing else, and figures can be redrawn from a
# results/ folder copied from a cluster without its checkpoints:
#     snakemake figures --cores 1 --allowed-rules tables phases figure_training \
#         figure_regularizers figure_release figure_heads figure_phenomena figure_seeds
# (--allowed-rules makes the copied per-run tables source files, so nothing upstream reruns),
# or, with results/tables/ alone, `sasbert figures --tables results/tables ...` by hand.
# Captions for `snakemake --report report.html` live in workflow/report/.


rule tables:
    input:
        steps=expand("results/pretrain/{run}/seed{seed}/metrics/steps.parquet", run=RUNS, seed=SEEDS),
        eval=expand("results/pretrain/{run}/seed{seed}/metrics/eval.parquet", run=RUNS, seed=SEEDS),
        probe=expand("results/probe/{run}/seed{seed}/summary.parquet", run=RUNS, seed=SEEDS),
        scores=expand("results/probe/{run}/seed{seed}/scores.parquet", run=RUNS, seed=SEEDS),
        blimp=expand("results/blimp/{run}/seed{seed}/summary.parquet", run=RUNS, seed=SEEDS),
        code=stage_code("phases", "tables"),
    output:
        runs="results/tables/runs.parquet",
        train="results/tables/train.parquet",
        loss="results/tables/loss.parquet",
        uas="results/tables/uas.parquet",
        heads="results/tables/heads.parquet",
        blimp="results/tables/blimp.parquet",
    params:
        runs=json.dumps(config["runs"], sort_keys=True),
        seeds=" ".join(str(seed) for seed in SEEDS),
    localrule: True
    log:
        "results/logs/tables/tables.log",
    benchmark:
        "results/benchmarks/tables/tables.tsv"
    shell:
        "sasbert phases gather --results-dir results --runs {params.runs:q} --seeds {params.seeds}"
        " --out-dir results/tables > {log} 2>&1"


rule phases:
    input:
        runs="results/tables/runs.parquet",
        loss="results/tables/loss.parquet",
        uas="results/tables/uas.parquet",
        blimp="results/tables/blimp.parquet",
        code=stage_code("phases", "tables"),
    output:
        table="results/tables/phases.parquet",
        csv=report(
            "results/tables/phases.csv",
            caption="../report/phases.rst",
            category="Tables",
            labels={"table": "phases (onsets per run x seed)"},
        ),
    params:
        smoothing_window=config["phases"]["smoothing_window"],
        min_rise=config["phases"]["min_rise"],
        noise_factor=config["phases"]["noise_factor"],
        min_points=config["phases"]["min_points"],
        min_step=config["phases"]["min_step"],
        # the early unigram-learning drop of the loss is skipped: search from the end of warmup
        loss_min_step=(
            config["train"]["warmup_steps"]
            if config["phases"]["loss_min_step"] is None
            else config["phases"]["loss_min_step"]
        ),
    localrule: True
    log:
        "results/logs/phases/phases.log",
    benchmark:
        "results/benchmarks/phases/phases.tsv"
    shell:
        "sasbert phases detect --runs {input.runs:q} --loss {input.loss:q} --uas {input.uas:q}"
        " --blimp {input.blimp:q} --out {output.table:q} --csv {output.csv:q}"
        " --smoothing-window {params.smoothing_window} --min-rise {params.min_rise}"
        " --noise-factor {params.noise_factor} --min-points {params.min_points}"
        " --min-step {params.min_step} --loss-min-step {params.loss_min_step} > {log} 2>&1"


# Every figure job passes the same options (all of config["figures"]).
FIGURE_FLAGS = (
    f"--dpi {config['figures']['dpi']} --width {config['figures']['width']}"
    f" --xscale {config['figures']['xscale']} --band {config['figures']['band']}"
    f" --train-loss-window {config['figures']['train_loss_window']}"
    f" --heads-checkpoints {config['figures']['heads_checkpoints']}"
)
FIGURE_SHELL = (
    "sasbert figures --tables results/tables --phases {input.phases:q} --out-dir results/figures"
    " --figure {params.figure} {params.flags} > {log} 2>&1"
)


rule figure_training:
    input:
        runs="results/tables/runs.parquet",
        train="results/tables/train.parquet",
        loss="results/tables/loss.parquet",
        uas="results/tables/uas.parquet",
        blimp="results/tables/blimp.parquet",
        phases="results/tables/phases.parquet",
        code=stage_code("figures", "phases", "tables"),
    output:
        png=report(
            "results/figures/fig1_training.png",
            caption="../report/fig1_training.rst",
            category="Figures",
            subcategory="1. Training dynamics",
            labels={"figure": "1", "content": "baseline: loss, UAS, BLiMP"},
        ),
        pdf="results/figures/fig1_training.pdf",
    params:
        figure="fig1_training",
        flags=FIGURE_FLAGS,
    localrule: True
    log:
        "results/logs/figures/fig1_training.log",
    benchmark:
        "results/benchmarks/figures/fig1_training.tsv"
    shell:
        FIGURE_SHELL


rule figure_regularizers:
    input:
        runs="results/tables/runs.parquet",
        loss="results/tables/loss.parquet",
        uas="results/tables/uas.parquet",
        blimp="results/tables/blimp.parquet",
        phases="results/tables/phases.parquet",
        code=stage_code("figures", "phases", "tables"),
    output:
        png=report(
            "results/figures/fig2_regularizers.png",
            caption="../report/fig2_regularizers.rst",
            category="Figures",
            subcategory="2. Regularizers",
            labels={"figure": "2", "content": "baseline vs SAS+ vs SAS-"},
        ),
        pdf="results/figures/fig2_regularizers.pdf",
    params:
        figure="fig2_regularizers",
        flags=FIGURE_FLAGS,
    localrule: True
    log:
        "results/logs/figures/fig2_regularizers.log",
    benchmark:
        "results/benchmarks/figures/fig2_regularizers.tsv"
    shell:
        FIGURE_SHELL


rule figure_release:
    input:
        runs="results/tables/runs.parquet",
        loss="results/tables/loss.parquet",
        uas="results/tables/uas.parquet",
        blimp="results/tables/blimp.parquet",
        phases="results/tables/phases.parquet",
        code=stage_code("figures", "phases", "tables"),
    output:
        png=report(
            "results/figures/fig3_release.png",
            caption="../report/fig3_release.rst",
            category="Figures",
            subcategory="3. Release SAS-(k)",
            labels={"figure": "3", "content": "release runs, final values against k"},
        ),
        pdf="results/figures/fig3_release.pdf",
    params:
        figure="fig3_release",
        flags=FIGURE_FLAGS,
    localrule: True
    log:
        "results/logs/figures/fig3_release.log",
    benchmark:
        "results/benchmarks/figures/fig3_release.tsv"
    shell:
        FIGURE_SHELL


rule figure_heads:
    input:
        runs="results/tables/runs.parquet",
        heads="results/tables/heads.parquet",
        uas="results/tables/uas.parquet",
        phases="results/tables/phases.parquet",
        code=stage_code("figures", "phases", "tables"),
    output:
        png=report(
            "results/figures/fig4a_heads.png",
            caption="../report/fig4a_heads.rst",
            category="Figures",
            subcategory="4. Heads and phenomena",
            labels={"figure": "4a", "content": "per-head UAS across checkpoints"},
        ),
        pdf="results/figures/fig4a_heads.pdf",
    params:
        figure="fig4a_heads",
        flags=FIGURE_FLAGS,
    localrule: True
    log:
        "results/logs/figures/fig4a_heads.log",
    benchmark:
        "results/benchmarks/figures/fig4a_heads.tsv"
    shell:
        FIGURE_SHELL


rule figure_phenomena:
    input:
        runs="results/tables/runs.parquet",
        blimp="results/tables/blimp.parquet",
        phases="results/tables/phases.parquet",
        code=stage_code("figures", "phases", "tables"),
    output:
        png=report(
            "results/figures/fig4b_phenomena.png",
            caption="../report/fig4b_phenomena.rst",
            category="Figures",
            subcategory="4. Heads and phenomena",
            labels={"figure": "4b", "content": "BLiMP per phenomenon across checkpoints"},
        ),
        pdf="results/figures/fig4b_phenomena.pdf",
    params:
        figure="fig4b_phenomena",
        flags=FIGURE_FLAGS,
    localrule: True
    log:
        "results/logs/figures/fig4b_phenomena.log",
    benchmark:
        "results/benchmarks/figures/fig4b_phenomena.tsv"
    shell:
        FIGURE_SHELL


rule figure_seeds:
    input:
        runs="results/tables/runs.parquet",
        loss="results/tables/loss.parquet",
        uas="results/tables/uas.parquet",
        blimp="results/tables/blimp.parquet",
        phases="results/tables/phases.parquet",
        code=stage_code("figures", "phases", "tables"),
    output:
        png=report(
            "results/figures/fig5_seeds.png",
            caption="../report/fig5_seeds.rst",
            category="Figures",
            subcategory="5. Across seeds",
            labels={"figure": "5", "content": "UAS vs loss vs BLiMP"},
        ),
        pdf="results/figures/fig5_seeds.pdf",
    params:
        figure="fig5_seeds",
        flags=FIGURE_FLAGS,
    localrule: True
    log:
        "results/logs/figures/fig5_seeds.log",
    benchmark:
        "results/benchmarks/figures/fig5_seeds.tsv"
    shell:
        FIGURE_SHELL


rule figures:
    input:
        rules.phases.output.csv,
        rules.figure_training.output,
        rules.figure_regularizers.output,
        rules.figure_release.output,
        rules.figure_heads.output,
        rules.figure_phenomena.output,
        rules.figure_seeds.output,
