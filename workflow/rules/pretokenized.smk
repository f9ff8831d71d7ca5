# Stage 1-3 of a pre-tokenized, pre-parsed corpus (corpus.backend: pretokenized), instead of corpus,
# parse and tokenize: rows of pieces with their heads, checked and converted once into Arrow files
# that pretraining memory-maps.
# A hub dataset's files, fetched into the HF cache once (a local rule: on a cluster the login node
# has the internet); the pretokenized job then reads the cache offline.


def pretokenized_source():
    return config["corpus"]["pretokenized"]


def pretokenized_fetch_options(wildcards):
    """The fetch job's options: the hub dataset alone (repo, revision, files), so a change of any
    of them fetches again, and nothing else does."""
    return json.dumps({"pretokenized": {"hub": pretokenized_source()["hub"]}}, sort_keys=True)


def pretokenized_inputs(wildcards):
    """What the pretokenized job reads: a hub dataset's fetch manifest, local files (globs expanded,
    so Snakemake tracks every file) or a save_to_disk folder."""
    source = pretokenized_source()
    if "hub" in source:
        return {"fetched": f"results/pretokenized/{CORPUS}/fetched.json"}
    if "data_files" in source:
        return {split: textio.expand_paths(files) for split, files in source["data_files"].items()}
    return {"folder": source["path"]}


def pretokenized_file_flags(wildcards, input):
    """The pretokenized job's files as flags of their own, shell-quoted."""
    if "fetched" in input.keys():
        return f"--fetched {shlex.quote(input.fetched)}"
    if "folder" in input.keys():
        return f"--path {shlex.quote(input.folder)}"
    return " ".join(
        f"--{split}-files " + " ".join(shlex.quote(f) for f in input[split]) for split in ("train", "validation")
    )


def pretokenized_options(wildcards):
    """The pretokenized job's options: corpus.pretokenized (a hub dataset's repo, revision and files
    are parameters: a change prepares again)."""
    return json.dumps({"pretokenized": pretokenized_source()}, sort_keys=True)


def pretokenized_tokenizer_options(wildcards):
    """Of the tokenizer section, what the pretokenized job uses: the rows' length, the vocab's case,
    the held-out rows."""
    return json.dumps(
        {k: config["tokenizer"][k] for k in ("seq_len", "lowercase", "validation_blocks")}, sort_keys=True
    )


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
