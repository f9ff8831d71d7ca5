# The input functions and settings of workflow/rules/corpus.smk, which includes this file: what
# its jobs read and the flags they get, from the config (common.smk) and the run plan.


def corpus_inputs():
    """Corpus files (or globs) to track; a HF dataset contributes its local files or folder only."""
    corpus = config["corpus"]
    kind = corpus_kind()
    if PRETOKENIZED:  # read by the pretokenized job (pretokenized_inputs)
        return []
    if kind != "hf":
        return corpus[kind]
    hf = corpus["hf_dataset"]
    if hf["data_files"]:
        return hf["data_files"]
    return [hf["path"]] if Path(hf["path"]).is_dir() else []


def corpus_kind():
    """What the corpus stage reads: conllu files, text files, or a HF dataset (hf), as the parser
    backend's entry in the registry says (a pretokenized corpus has none: it has no corpus job)."""
    corpus = config["corpus"]
    parser = sasparsers.PARSERS.get(corpus["backend"])
    if parser is not None and parser.reads == "conllu":
        return "conllu"
    return "hf" if corpus.get("hf_dataset") else "text"


def corpus_files():
    """The corpus inputs with text globs expanded (sorted), so Snakemake tracks every file."""
    return textio.expand_paths(corpus_inputs())


def corpus_file_flags():
    """The corpus files (--inputs), or a HF dataset's path and local files (hub names are
    options, not files): paths travel as flags of their own, shell-quoted."""
    if corpus_kind() != "hf":
        return "--inputs " + " ".join(shlex.quote(f) for f in corpus_files())
    hf = config["corpus"]["hf_dataset"]
    flags = f"--hf-path {shlex.quote(hf['path'])}"
    if hf["data_files"]:
        flags += " --hf-data-files " + " ".join(shlex.quote(f) for f in corpus_files())
    return flags


def corpus_options():
    """The corpus stage's options: only what it reads for this kind of corpus (a text-cleaning
    change does not rerun a CoNLL-U corpus, nor a parser setting any corpus)."""
    corpus = config["corpus"]
    options = {"max_units": corpus["max_units"]}
    if corpus_kind() != "conllu":
        options["text_cleaning"] = corpus["text_cleaning"]
    if corpus_kind() == "hf":
        options["hf_dataset"] = corpus["hf_dataset"]
    return json.dumps(options, sort_keys=True)
