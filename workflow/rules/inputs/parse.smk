# The input functions and settings of workflow/rules/parse.smk, which includes this file: what
# its jobs read and the flags they get, from the config (common.smk) and the run plan.


def parse_backend_args():
    """The parse job's backend options: only its backend's part of the corpus section (a spaCy
    setting does not rerun a stanza parse), as --options, and its one path (the spaCy model, which
    may be a folder, or the stanza models' folder) as a flag of its own."""
    corpus = config["corpus"]
    backend = corpus["backend"]
    if backend == "conllu":
        return ""
    if backend == "spacy":
        path_flag = f"--spacy-model {shlex.quote(corpus['spacy']['model'])}"
    else:
        path_flag = f"--stanza-dir {shlex.quote(corpus['stanza']['resources_dir'])}"
    return f"{path_flag} --options {shlex.quote(json.dumps({backend: corpus[backend]}, sort_keys=True))}"


def parse_gpus():
    corpus = config["corpus"]
    return corpus["stanza"]["gpus"] if corpus["backend"] == "stanza" else 0
