# Stage 2: dependency parses of each shard (a separate job per shard, so a cluster parses in
# parallel and a rerun after a killed job parses only the missing shards).


include: "inputs/parse.smk"


STANZA_MANIFEST = "results/parse/stanza-models.json"


rule parse:
    input:
        shard="results/corpus/{corpus}/shard-{shard}.parquet",
        models=parse_models(),
    output:
        "results/parse/{corpus}/shard-{shard}.parquet",
    log:
        "results/logs/parse/{corpus}/shard-{shard}.log",
    benchmark:
        "results/benchmarks/parse/{corpus}/shard-{shard}.tsv"
    conda:
        CONDA_ENV
    threads: config["corpus"]["parse_threads"]
    resources:
        gpu=parse_gpus(),
    params:
        code=parse_code(),
        backend=config["corpus"]["backend"],
        backend_args=parse_backend_args(),
    shell:
        "sasbert parse --backend {params.backend} --shard {input.shard:q} --out {output:q}"
        " {params.backend_args} --threads {threads} > {log} 2>&1"


# The stanza models: checked in (or, when the machine is online, fetched into) the local
# stanza_resources folder. A local rule: on a cluster the login node usually has the internet.
localrules:
    stanza_models,


rule stanza_models:
    output:
        STANZA_MANIFEST,
    log:
        "results/logs/parse/stanza-models.log",
    benchmark:
        "results/benchmarks/parse/stanza-models.tsv"
    conda:
        CONDA_ENV
    params:
        code=code_fingerprint("data.stanza_models"),
        dir=config["corpus"]["stanza"]["resources_dir"],
        # only what chooses the models (a batch size or device change does not recheck them)
        options=json.dumps(
            {
                "stanza": {
                    k: config["corpus"]["stanza"][k] for k in ("resources_dir", "lang", "package", "resources_url")
                }
            },
            sort_keys=True,
        ),
    shell:
        "sasbert stanza-models --dir {params.dir:q} --options {params.options:q} --out {output:q} > {log} 2>&1"


# Not part of `all`: request it by path (results/parse/<corpus>/report.csv) to tabulate the corpus.
rule corpus_report:
    input:
        corpus=expand("results/corpus/{{corpus}}/shard-{shard}.parquet", shard=SHARDS),
        parsed=expand("results/parse/{{corpus}}/shard-{shard}.parquet", shard=SHARDS),
        stats="results/tokenize/{corpus}/stats.json",
    output:
        "results/parse/{corpus}/report.csv",
    log:
        "results/logs/corpus_report/{corpus}.log",
    conda:
        CONDA_ENV
    params:
        code=code_fingerprint("data.corpus_report", "tables"),
        backend=config["corpus"]["backend"],
        benchmarks=expand("results/benchmarks/parse/{{corpus}}/shard-{shard}.tsv", shard=SHARDS),
    shell:
        "sasbert corpus-report --name {wildcards.corpus} --backend {params.backend}"
        " --corpus {input.corpus:q} --parsed {input.parsed:q} --stats {input.stats:q}"
        " --benchmarks {params.benchmarks:q} --out {output:q} > {log} 2>&1"
