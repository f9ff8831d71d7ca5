# Stage 1: the corpus, split into contiguous shards (one parse job each).


include: "inputs/corpus.smk"


rule corpus:
    input:
        data=corpus_files(),
    output:
        shards=expand("results/corpus/{{corpus}}/shard-{shard}.parquet", shard=SHARDS),
    log:
        "results/logs/corpus/{corpus}.log",
    benchmark:
        "results/benchmarks/corpus/{corpus}.tsv"
    conda:
        CONDA_ENV
    params:
        code=code_fingerprint("data.corpus"),
        kind=corpus_kind(),
        files=corpus_file_flags(),
        options=corpus_options(),
    shell:
        "sasbert corpus --kind {params.kind} {params.files} --options {params.options:q}"
        " --out {output.shards:q} > {log} 2>&1"
