"""The stanza backend's models: make sure a local ``stanza_resources`` folder holds them.

``sasbert stanza-models --dir resources/stanza --lang en --package default --out manifest.json``
checks that the folder's models load into a ``tokenize,pos,lemma,depparse`` pipeline (on the CPU,
without any download); if they do not and the machine is online, it fetches them with
``stanza.download`` first. Offline with an empty folder it stops with a message that says how to
provide the models. The manifest (JSON) lists the model files with their sizes, so the parse jobs
that depend on it rerun when the models change folder, language or package.

In the workflow this is the ``stanza_models`` rule, a local rule: on a cluster it runs on the
login node, which usually reaches the internet when compute nodes do not.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from sasbert.atomic import write_text
from sasbert.data.parsers import stanza as stanza_parser
from sasbert.errors import InputError
from sasbert.options import add_option_flags
from sasbert.options import resolve as resolve_options

log = logging.getLogger(__name__)


def model_files(folder: str | Path, lang: str) -> dict[str, int]:
    """Every file under the language's folder (and resources.json): relative path -> bytes."""
    folder = Path(folder)
    files = [folder / "resources.json", *sorted(p for p in (folder / lang).rglob("*") if p.is_file())]
    return {str(p.relative_to(folder)): p.stat().st_size for p in files if p.is_file()}


def download(options: stanza_parser.StanzaOptions) -> None:
    import stanza

    kwargs = {"resources_url": options.resources_url} if options.resources_url else {}
    log.info("fetching stanza %s/%s models into %s", options.lang, options.package, options.resources_dir)
    try:
        stanza.download(
            options.lang,
            model_dir=options.resources_dir,
            package=options.package,
            processors=stanza_parser.STANZA_PROCESSORS,
            logging_level="WARN",
            **kwargs,
        )
    except Exception as err:  # requests' connection errors, HTTP errors, unknown packages...
        detail = f"no usable stanza models here, and fetching them failed ({type(err).__name__}: {err})"
        raise InputError(stanza_parser.missing_stanza_models_message(options, detail)) from err


def ensure_models(options: stanza_parser.StanzaOptions) -> dict:
    """Load the local models (downloading them first if they do not load); return the manifest."""
    check = stanza_parser.StanzaOptions(
        options.resources_dir, options.lang, options.package, "cpu", options.batch_size, options.resources_url
    )
    try:
        stanza_parser.load_stanza(check)
        log.info("the stanza models in %s load", options.resources_dir)
    except InputError as first:
        log.info("%s", first)
        download(options)
        stanza_parser.load_stanza(check)
    import stanza

    return {
        "resources_dir": options.resources_dir,
        "lang": options.lang,
        "package": options.package,
        "processors": stanza_parser.STANZA_PROCESSORS,
        "stanza_version": stanza.__version__,
        "files": model_files(options.resources_dir, options.lang),
    }


def add_arguments(parser) -> None:
    parser.add_argument("--out", required=True, help="manifest (JSON)")
    add_option_flags(
        parser,
        "corpus",
        [
            ("--dir", {"option": "stanza.resources_dir"}, "the stanza_resources folder"),
            ("--lang", {"option": "stanza.lang"}, "stanza language"),
            ("--package", {"option": "stanza.package"}, "stanza package"),
            ("--resources-url", {"option": "stanza.resources_url"}, "where resources.json is fetched from"),
        ],
    )


def run(args) -> None:
    stanza = resolve_options(args, "corpus")["stanza"]
    options = stanza_parser.StanzaOptions(
        stanza["resources_dir"], stanza["lang"], stanza["package"], resources_url=stanza["resources_url"]
    )
    manifest = ensure_models(options)
    write_text(json.dumps(manifest, indent=2) + "\n", args.out)
    log.info("%d model files, %.1f MB", len(manifest["files"]), sum(manifest["files"].values()) / 1e6)
