# Stages 5-6: the per-checkpoint measures (sasbert.measure.registry: the probe's attention-head UAS
# against a gold treebank, BLiMP accuracy, ...), each scoring every checkpoint of a run x seed in
# one job (torch start-up and data reading are paid once). Two rules per measure, made from its
# registry entry: `<measure>_part` scores the checkpoints of one finished part of a run
# (train.job_steps) while the next part trains; `<measure>` scores the run x seed's series and
# takes over what its parts scored. Each checkpoint's tables are kept in <dir>/by_step-<options>/
# (undeclared, so they survive a failed attempt), so a retried job keeps the checkpoints it had
# finished.


include: "inputs/measures.smk"


for measure in MEASURES:

    rule:
        name:
            f"{measure.name}_part"
        input:
            **measure_data(measure),
            checkpoints="results/pretrain/{run}/seed{seed}/parts/until-{end}",
        output:
            **{
                table: f"results/{measure.name}/{{run}}/seed{{seed}}/parts/until-{{end}}.{table}.parquet"
                for table in measure.tables
            },
        log:
            f"results/logs/{measure.name}/{{run}}/seed{{seed}}.until-{{end}}.log",
        benchmark:
            f"results/benchmarks/{measure.name}/{{run}}/seed{{seed}}.until-{{end}}.tsv"
        conda:
            CONDA_ENV
        threads: 1
        resources:
            gpu=0,
            mem_mb=4000,
        params:
            code=code_fingerprint(measure.cli, exclude=sasmeasure_command.NOT_SCORING_CODE),
            checkpoints=checkpoint_args,
            by_step=by_step_dir(measure.name),
            options=stage_options(measure.name),
            measure=measure.name,
            data=measure_data_flags(measure),
            tables=measure_table_flags(measure),
        shell:
            MEASURE_COMMAND

    rule:
        name:
            measure.name
        input:
            **measure_data(measure),
            checkpoints=scored_checkpoints,
            parts=scored_parts(measure.name, f"{measure.tables[-1]}.parquet"),
        output:
            **{table: f"results/{measure.name}/{{run}}/seed{{seed}}/{table}.parquet" for table in measure.tables},
        log:
            f"results/logs/{measure.name}/{{run}}/seed{{seed}}.log",
        benchmark:
            f"results/benchmarks/{measure.name}/{{run}}/seed{{seed}}.tsv"
        conda:
            CONDA_ENV
        threads: 1
        resources:
            gpu=0,
            mem_mb=4000,
        params:
            code=code_fingerprint(measure.cli, exclude=sasmeasure_command.NOT_SCORING_CODE),
            checkpoints=checkpoint_args,
            by_step=by_step_dir(measure.name),
            options=stage_options(measure.name),
            measure=measure.name,
            data=measure_data_flags(measure),
            tables=measure_table_flags(measure),
        shell:
            MEASURE_COMMAND
