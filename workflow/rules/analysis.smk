# Stages 7-8: all-runs tables, phases (onsets) and the figures, from tables alone.
# `tables` stacks every run x seed's pretrain/probe/BLiMP tables into results/tables/; `phases`
# finds the onsets there; each figure rule reads only results/tables/, so a figure option or a
# change of sasbert/analysis/figures/ reruns figure jobs and nothing else, and figures can be redrawn from a
# results/ folder copied from a cluster without its checkpoints:
#     snakemake figures --cores 1 --allowed-rules tables phases seeds figure_training \
#         figure_regularizers figure_release figure_heads figure_phenomena figure_seeds
# (--allowed-rules makes the copied per-run tables source files, so nothing upstream reruns),
# or, with results/tables/ alone, `sasbert figures --tables results/tables ...` by hand.
# Captions for `snakemake --report report.html` live in workflow/report/.


include: "inputs/analysis.smk"


rule tables:
    input:
        **{
            f"{m.name}_{table}": measured(m.name, f"{table}.parquet")
            for m, table, _ in sasmeasures.gathered_tables(MEASURES)
        },
        steps=expand("results/pretrain/{run}/seed{seed}/metrics/steps.parquet", run=RUNS, seed=SEEDS),
        eval=expand("results/pretrain/{run}/seed{seed}/metrics/eval.parquet", run=RUNS, seed=SEEDS),
        # each gathered table of each registered measure (sasbert.measure.registry), as --<measure>-<table>
        fetched=[f"results/series/{name}/fetched.json" for name in HUB_SERIES],
    output:
        **{table: f"results/tables/{table}.parquet" for table in ALL_RUNS_TABLES},
    log:
        "results/logs/tables/tables.log",
    benchmark:
        "results/benchmarks/tables/tables.tsv"
    localrule: True
    conda:
        CONDA_ENV
    params:
        # not the registry: what it says of a measure reaches this job as its inputs, flags, outputs
        # and all_runs modules, so adding a measure (switched off) regathers nothing
        code=code_fingerprint(
            "analysis.cli",
            "analysis.gather",
            *sasmeasures.all_runs_modules(),
            exclude=sasmeasure_command.NOT_SCORING_CODE,
        ),
        # a trained run's tokens per step: the global batch's sequence positions
        runs=json.dumps(
            [
                {**run, "tokens_per_step": config["train"]["batch_size"] * config["tokenizer"]["seq_len"]}
                for run in config["runs"]
            ],
            sort_keys=True,
        ),
        series=json.dumps(config["series"], sort_keys=True),
        seeds=" ".join(str(seed) for seed in SEEDS),
    shell:
        GATHER_COMMAND


rule phases:
    input:
        **{table: f"results/tables/{table}.parquet" for m in MEASURES for table in m.phases},
        runs="results/tables/runs.parquet",
        loss="results/tables/loss.parquet",
        # the all-runs tables of the measures that have events (sasbert.measure.registry), as --<table>
        glue=glue_tables(),
    output:
        table="results/tables/phases.parquet",
        csv=report(
            "results/tables/phases.csv",
            caption="../report/phases.rst",
            category="Tables",
            labels={"table": "phases (onsets per run x seed)"},
        ),
    log:
        "results/logs/phases/phases.log",
    benchmark:
        "results/benchmarks/phases/phases.tsv"
    localrule: True
    conda:
        CONDA_ENV
    params:
        code=code_fingerprint("analysis.cli", "analysis.phases"),
        # the early unigram-learning drop of the loss is skipped: search from the end of warmup
        options=stage_options(
            "phases",
            loss_min_step=(
                config["train"]["warmup_steps"]
                if config["phases"]["loss_min_step"] is None
                else config["phases"]["loss_min_step"]
            ),
        ),
        glue=glue_flag,
    shell:
        DETECT_COMMAND


rule seeds:
    input:
        runs="results/tables/runs.parquet",
        loss="results/tables/loss.parquet",
        uas="results/tables/uas.parquet",
        blimp="results/tables/blimp.parquet",
    output:
        table="results/tables/seeds.parquet",
        csv=report(
            "results/tables/seeds.csv",
            caption="../report/seeds.rst",
            category="Tables",
            labels={"table": "seeds (correlations across seed replicates)"},
        ),
    log:
        "results/logs/seeds/seeds.log",
    benchmark:
        "results/benchmarks/seeds/seeds.tsv"
    localrule: True
    conda:
        CONDA_ENV
    params:
        code=code_fingerprint("analysis.cli", "analysis.seeds"),
        options=stage_options("seed_stats"),
    shell:
        "sasbert phases seeds --runs {input.runs:q} --loss {input.loss:q} --uas {input.uas:q}"
        " --blimp {input.blimp:q} --out {output.table:q} --csv {output.csv:q}"
        " --options {params.options:q} > {log} 2>&1"


# One rule per figure (so changing one figure's module or options reruns only that figure), made
# from sasbert.analysis.figures.registry.FIGURES, the one list of figures: the tables each reads, its number and
# section in the report. Each job is passed exactly the table files it reads and the files it writes.
for figure, spec in sasfigures.FIGURES.items():

    rule:
        name:
            sasfigures.figure_rule(figure)
        input:
            # its tables, those of its optional tables this config makes, and GLUE's where it was run
            tables=[
                f"results/tables/{table}.parquet"
                for table in (*spec.tables, *spec.optional_tables)
                if table in spec.tables or table in ALL_RUNS_TABLES
            ]
            + (glue_tables() if "glue" in spec.optional_tables else []),
            phases="results/tables/phases.parquet",
        output:
            png=report(
                f"results/figures/{figure}.png",
                caption=f"../report/{figure}.rst",
                category="Figures",
                subcategory=spec.section,
                labels={"figure": spec.number, "content": spec.content},
            ),
            pdf=f"results/figures/{figure}.pdf",
        log:
            f"results/logs/figures/{figure}.log",
        benchmark:
            f"results/benchmarks/figures/{figure}.tsv"
        localrule: True
        conda:
            CONDA_ENV
        params:
            # its module, the shared drawing code and the CLI, not the list of figures: adding a
            # figure redraws no other (sasbert.analysis.figures.registry)
            code=code_fingerprint(
                f"analysis.figures.{spec.module}", "analysis.figures.cli", exclude=["analysis.figures.registry"]
            ),
            figure=figure,
            options=stage_options("figures"),  # every figure job gets all of config["figures"]
        shell:
            command(
                "sasbert figures --tables {input.tables:q} --phases {input.phases:q}",
                "--out {output.png:q} {output.pdf:q} --figure {params.figure} --options {params.options:q} > {log} 2>&1",
            )


rule figures:
    input:
        rules.phases.output.csv,
        rules.seeds.output.csv,
        expand("results/figures/{figure}.{ext}", figure=sasfigures.FIGURES, ext=["png", "pdf"]),
