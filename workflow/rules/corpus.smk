# Stage 1: the corpus, split into contiguous shards (one parse job each).


rule corpus:
    input:
        data=corpus_files(),
        code=stage_code("corpus"),
    output:
        shards=expand("results/corpus/{{corpus}}/shard-{shard}.parquet", shard=SHARDS),
    log:
        "results/logs/corpus/{corpus}.log",
    benchmark:
        "results/benchmarks/corpus/{corpus}.tsv"
    conda:
        CONDA_ENV
    params:
        kind=corpus_kind(),
        source=corpus_source_flags(),
        max_units=optional_flag("--max-units", config["corpus"]["max_units"]),
        cleaning=text_cleaning_flags(),
    shell:
        "sasbert corpus --kind {params.kind} {params.source} {params.max_units} {params.cleaning}"
        " --out {output.shards:q} > {log} 2>&1"
