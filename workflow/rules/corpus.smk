# Stage 1: the corpus, split into contiguous shards (one parse job each).


rule corpus:
    input:
        data=corpus_inputs(),
        code=stage_code("corpus"),
    output:
        shards=expand("results/corpus/{{corpus}}/shard-{shard}.parquet", shard=SHARDS),
    params:
        kind=corpus_kind(),
        max_units=optional_flag("--max-units", config["corpus"]["max_units"]),
    log:
        "results/logs/corpus/{corpus}.log",
    benchmark:
        "results/benchmarks/corpus/{corpus}.tsv"
    shell:
        "sasbert corpus --kind {params.kind} --inputs {input.data:q} {params.max_units}"
        " --out {output.shards:q} > {log} 2>&1"
