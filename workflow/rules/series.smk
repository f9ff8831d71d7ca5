# Stage 4b: checkpoint series trained elsewhere (config series:). Local series need no job of their
# own: their folders are read where the DAG is built.
# A hub series' checkpoints, fetched into the HF cache once (a local rule: on a cluster the login
# node has the internet); the probe and BLiMP jobs then read the cache offline.


localrules:
    series_fetch,


rule series_fetch:
    output:
        "results/series/{series}/fetched.json",
    log:
        "results/logs/series/{series}.fetch.log",
    benchmark:
        "results/benchmarks/series/{series}.fetch.tsv"
    conda:
        CONDA_ENV
    params:
        code=code_fingerprint("hub"),
        specs=lambda w: " ".join(shlex.quote(name) for name, _ in SERIES_CHECKPOINTS[w.series]),
    shell:
        "sasbert series-fetch --checkpoint {params.specs} --out {output:q} > {log} 2>&1"
