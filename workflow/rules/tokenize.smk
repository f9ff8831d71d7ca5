# Stage 3: WordPiece vocab, heads mapped onto pieces, blocks packed into a HF datasets dataset.


rule tokenize:
    input:
        parsed=expand("results/parse/{{corpus}}/shard-{shard}.parquet", shard=SHARDS),
        vocab=config["tokenizer"]["vocab"] or [],
        code=stage_code("tokenization"),
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
        vocab=optional_flag("--vocab", config["tokenizer"]["vocab"]),
        vocab_size=config["tokenizer"]["vocab_size"],
        min_frequency=config["tokenizer"]["min_frequency"],
        lowercase="--lowercase" if config["tokenizer"]["lowercase"] else "--no-lowercase",
        seq_len=config["tokenizer"]["seq_len"],
        validation_blocks=config["tokenizer"]["validation_blocks"],
        packing=config["tokenizer"]["packing"],
        relations="--keep-relations" if config["tokenizer"]["keep_relations"] else "--no-keep-relations",
    shell:
        "sasbert tokenize --parsed {input.parsed:q} {params.vocab} --vocab-size {params.vocab_size}"
        " --min-frequency {params.min_frequency} {params.lowercase} --seq-len {params.seq_len}"
        " --validation-blocks {params.validation_blocks} --packing {params.packing} {params.relations}"
        " --out-dataset {output.dataset:q} --out-tokenizer {output.tokenizer:q}"
        " --out-stats {output.stats:q} > {log} 2>&1"
