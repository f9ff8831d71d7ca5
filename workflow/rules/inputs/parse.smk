# The input functions and settings of workflow/rules/parse.smk, which includes this file: what
# its jobs read and the flags they get, from the config (common.smk), the run plan and the parser
# backends' registry (sasbert.data.parsers.registry).


def parser_spec():
    """The parse backend's registry entry; None for a corpus that is not parsed here
    (`corpus.backend: pretokenized`: its rows hold their heads, and no parse job is planned)."""
    return sasparsers.PARSERS.get(config["corpus"]["backend"])


def parse_code():
    """The parse job's code: the shared parse code and its backend's module, not the other
    backends' nor the registry (a fix to the spaCy backend does not rerun stanza parses)."""
    if parser_spec() is None:
        return ""
    backend = config["corpus"]["backend"]
    return code_fingerprint(*sasparsers.backend_code_modules(backend), exclude=sasparsers.NOT_CODE)


def parse_models():
    """The manifest of the models the backend reads, when it needs them fetched first."""
    backend = config["corpus"]["backend"]
    spec = parser_spec()
    return [f"results/parse/{backend}-models.json"] if spec is not None and spec.needs_models else []


def parse_backend_args():
    """The parse job's backend options: only its backend's part of the corpus section (a spaCy
    setting does not rerun a stanza parse), as --options, and its one path (the spaCy model, which
    may be a folder, or the stanza models' folder) as a flag of its own."""
    spec = parser_spec()
    if spec is None or spec.options is None:
        return ""
    options = config["corpus"][spec.options]
    flags = f"--options {shlex.quote(json.dumps({spec.options: options}, sort_keys=True))}"
    if spec.path_option is not None:
        flag, key = spec.path_option
        flags = f"{flag} {shlex.quote(options[key])} {flags}"
    return flags


def parse_gpus():
    """GPUs of a parse job: its backend's ``gpus`` option, where it has one (stanza)."""
    spec = parser_spec()
    return config["corpus"][spec.options].get("gpus", 0) if spec is not None and spec.options else 0
