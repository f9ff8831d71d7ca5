# The settings of workflow/rules/analysis.smk, which includes this file: the all-runs tables and the
# commands that name them, from the measures' registry (sasbert.measure.registry).

# what `phases gather` writes: the training tables, then each measure's gathered tables
ALL_RUNS_TABLES = [
    "runs",
    "train",
    "loss",
    *dict.fromkeys(table for _, _, table in sasmeasures.gathered_tables(MEASURES)),
]
# the tables rule: a flag --<measure>-<table> per gathered table, reading its input of that name
GATHER_COMMAND = " ".join(
    [
        "sasbert phases gather --runs {params.runs:q} --series {params.series:q} --seeds {params.seeds}",
        "--steps {input.steps:q} --eval {input.eval:q}",
        *(
            f"{m.gathered_flag(table)} {{input.{m.name}_{table}:q}}"
            for m, table, _ in sasmeasures.gathered_tables(MEASURES)
        ),
        "--fetched {input.fetched:q} --out {output:q} > {log} 2>&1",
    ]
)
# the phases rule: a flag --<table> per all-runs table that `phases detect` reads
DETECT_COMMAND = " ".join(
    [
        "sasbert phases detect --runs {input.runs:q} --loss {input.loss:q}",
        *(f"--{table.replace('_', '-')} {{input.{table}:q}}" for m in MEASURES for table in m.phases),
        "{params.glue} --out {output.table:q} --csv {output.csv:q} --options {params.options:q} > {log} 2>&1",
    ]
)
