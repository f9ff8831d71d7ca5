# The input functions and settings of workflow/rules/pretokenized.smk, which includes this file: what
# its jobs read and the flags they get, from the config (common.smk) and the run plan.


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
