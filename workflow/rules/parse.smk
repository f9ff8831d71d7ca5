# Stage 2: dependency parses of each shard (a separate job per shard, so a cluster parses in
# parallel and a rerun after a killed job parses only the missing shards).


rule parse:
    input:
        shard="results/corpus/{corpus}/shard-{shard}.parquet",
        code=stage_code("parse"),
    output:
        "results/parse/{corpus}/shard-{shard}.parquet",
    params:
        backend=config["corpus"]["backend"],
    log:
        "results/logs/parse/{corpus}/shard-{shard}.log",
    benchmark:
        "results/benchmarks/parse/{corpus}/shard-{shard}.tsv"
    shell:
        "sasbert parse --backend {params.backend} --shard {input.shard:q} --out {output:q} > {log} 2>&1"
