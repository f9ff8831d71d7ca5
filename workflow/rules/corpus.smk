# Stage 1: the corpus, split into contiguous shards (one parse job each).
import glob as _glob


def corpus_files():
    """The corpus inputs with text globs expanded (sorted), so Snakemake tracks every file."""
    files = []
    for path in corpus_inputs():
        files.extend(sorted(_glob.glob(path, recursive=True)) if any(c in path for c in "*?[") else [path])
    return files


def text_cleaning_flags():
    if corpus_kind() != "text":
        return ""
    clean = config["corpus"].get("text_cleaning", {})
    flags = [f"--min-words {clean.get('min_words', 1)}"]
    if clean.get("normalize"):
        flags.append(f"--normalize {clean['normalize']}")
    if clean.get("drop_headings"):
        flags.append(f"--drop-headings --heading-max-words {clean.get('heading_max_words', 6)}")
    if clean.get("dedup"):
        flags.append("--dedup")
    if clean.get("max_words") is not None:
        flags.append(f"--max-words {clean['max_words']}")
    return " ".join(flags)


rule corpus:
    input:
        data=corpus_files(),
        code=stage_code("corpus"),
    output:
        shards=expand("results/corpus/{{corpus}}/shard-{shard}.parquet", shard=SHARDS),
    params:
        kind=corpus_kind(),
        max_units=optional_flag("--max-units", config["corpus"]["max_units"]),
        cleaning=text_cleaning_flags(),
    log:
        "results/logs/corpus/{corpus}.log",
    benchmark:
        "results/benchmarks/corpus/{corpus}.tsv"
    shell:
        "sasbert corpus --kind {params.kind} --inputs {input.data:q} {params.max_units} {params.cleaning}"
        " --out {output.shards:q} > {log} 2>&1"
