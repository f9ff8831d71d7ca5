# Stage 1: the corpus, split into contiguous shards (one parse job each).
import glob as _glob
import shlex


def corpus_files():
    """The corpus inputs with text globs expanded (sorted), so Snakemake tracks every file."""
    files = []
    for path in corpus_inputs():
        files.extend(sorted(_glob.glob(path, recursive=True)) if any(c in path for c in "*?[") else [path])
    return files


def corpus_source_flags():
    """--inputs for files; the --hf-* flags for a HF dataset (hub names are params, not files)."""
    if corpus_kind() != "hf":
        return "--inputs " + " ".join(shlex.quote(f) for f in corpus_files())
    hf = config["corpus"]["hf_dataset"]
    flags = [f"--hf-path {shlex.quote(hf['path'])}", f"--hf-split {shlex.quote(hf['split'])}"]
    flags.append(f"--hf-text-column {shlex.quote(hf['text_column'])}")
    if hf["name"]:
        flags.append(f"--hf-name {shlex.quote(hf['name'])}")
    if hf["revision"]:
        flags.append(f"--hf-revision {shlex.quote(hf['revision'])}")
    if hf["data_files"]:
        flags.append("--hf-data-files " + " ".join(shlex.quote(f) for f in corpus_files()))
    if hf["streaming"]:
        flags.append("--hf-streaming")
    return " ".join(flags)


def text_cleaning_flags():
    if corpus_kind() == "conllu":
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
        source=corpus_source_flags(),
        max_units=optional_flag("--max-units", config["corpus"]["max_units"]),
        cleaning=text_cleaning_flags(),
    log:
        "results/logs/corpus/{corpus}.log",
    benchmark:
        "results/benchmarks/corpus/{corpus}.tsv"
    shell:
        "sasbert corpus --kind {params.kind} {params.source} {params.max_units} {params.cleaning}"
        " --out {output.shards:q} > {log} 2>&1"
