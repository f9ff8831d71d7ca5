# Stage 3: WordPiece vocab, heads mapped onto pieces, blocks packed into a HF datasets dataset.


rule tokenize:
    input:
        parsed=expand("results/parse/{{corpus}}/shard-{shard}.parquet", shard=SHARDS),
        vocab=config["tokenizer"]["vocab"] or [],
    output:
        dataset=directory("results/tokenize/{corpus}/dataset"),
        tokenizer=directory("results/tokenize/{corpus}/tokenizer"),
        stats="results/tokenize/{corpus}/stats.json",
    log:
        "results/logs/tokenize/{corpus}.log",
    benchmark:
        "results/benchmarks/tokenize/{corpus}.tsv"
    conda:
        CONDA_ENV
    params:
        code=code_fingerprint("data.tokenization"),
        vocab=optional_flag("--vocab", config["tokenizer"]["vocab"]),
        options=stage_options("tokenizer"),
    shell:
        "sasbert tokenize --parsed {input.parsed:q} {params.vocab} --options {params.options:q}"
        " --out-dataset {output.dataset:q} --out-tokenizer {output.tokenizer:q}"
        " --out-stats {output.stats:q} > {log} 2>&1"
