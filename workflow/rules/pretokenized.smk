# Stage 1-3 of a pre-tokenized, pre-parsed corpus (corpus.backend: pretokenized), instead of corpus,
# parse and tokenize: rows of pieces with their heads, checked and converted once into Arrow files
# that pretraining memory-maps.
# A hub dataset's files, fetched into the HF cache once (a local rule: on a cluster the login node
# has the internet); the pretokenized job then reads the cache offline.


include: "inputs/pretokenized.smk"


localrules:
    pretokenized_fetch,


rule pretokenized_fetch:
    output:
        "results/pretokenized/{corpus}/fetched.json",
    log:
        "results/logs/pretokenized/{corpus}.fetch.log",
    benchmark:
        "results/benchmarks/pretokenized/{corpus}.fetch.tsv"
    conda:
        CONDA_ENV
    params:
        code=code_fingerprint("data.pretokenized.cli"),
        options=pretokenized_fetch_options,
    shell:
        "sasbert pretokenized fetch --options {params.options:q} --out {output:q} > {log} 2>&1"


rule pretokenized:
    input:
        unpack(pretokenized_inputs),
        vocab=config["tokenizer"]["vocab"] or [],
    output:
        dataset=directory("results/pretokenized/{corpus}/dataset"),
        tokenizer=directory("results/pretokenized/{corpus}/tokenizer"),
    log:
        "results/logs/pretokenized/{corpus}.log",
    benchmark:
        "results/benchmarks/pretokenized/{corpus}.tsv"
    conda:
        CONDA_ENV
    params:
        code=code_fingerprint("data.pretokenized.cli"),
        files=pretokenized_file_flags,
        options=pretokenized_options,
        tokenizer=pretokenized_tokenizer_options,
    shell:
        "sasbert pretokenized prepare {params.files} --vocab {input.vocab:q} --options {params.options:q}"
        " --tokenizer-options {params.tokenizer:q} --out-dataset {output.dataset:q}"
        " --out-tokenizer {output.tokenizer:q} > {log} 2>&1"
