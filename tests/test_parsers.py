"""The parser backends' registry: the schema's enum, the CLIs' choices and the parse rule's code
follow it; the conllu backend's output on real EWT text is what it was before the backends moved to
modules of their own."""

import argparse
import hashlib
import json

import pandas as pd

from conftest import EWT_DEV
from sasbert import code_identity
from sasbert.cli import main
from sasbert.config import load_schema
from sasbert.data import parse, parse_quality
from sasbert.data.parsers.registry import NOT_CODE, PARSERS, backend_code_modules, backend_module

# sha256 of the parsed EWT dev set (all 2,001 sentences, rows as sorted JSON, sources without their file) as the conllu backend
# wrote it while every backend lived in sasbert/data/parse.py (commit 12b61c0); the parquet file was
# byte-for-byte the same too, on this project's pyarrow.
EWT_DEV_PARSED_SHA256 = "7b2eb2960ccc44692d307b98487aa071aa4257f6f46d47b575db80d646f22467"


def content_sha256(parsed: pd.DataFrame) -> str:
    """Of the rows, with each source's file left out (its line kept): the checkout may be anywhere."""
    parsed = parsed.assign(source=parsed["source"].str.rpartition(":")[2])
    rows = [
        {k: [x.item() if hasattr(x, "item") else x for x in v] if not isinstance(v, str) else v for k, v in row.items()}
        for row in parsed.to_dict("records")
    ]
    return hashlib.sha256(json.dumps(rows, sort_keys=True).encode()).hexdigest()


def test_the_schema_enum_is_the_registry_and_pretokenized():
    enum = load_schema()["properties"]["corpus"]["properties"]["backend"]["enum"]
    assert sorted(enum) == sorted([*PARSERS, "pretokenized"])


def test_every_backend_has_its_module_its_options_section_and_the_functions_the_clis_call():
    corpus = load_schema()["properties"]["corpus"]["properties"]
    for name, spec in PARSERS.items():
        module = backend_module(name)
        assert all(callable(getattr(module, f)) for f in ("parse_shard", "parse_gold", "describe_model")), name
        assert spec.reads in ("conllu", "text")
        if spec.options is not None:
            assert corpus[spec.options]["type"] == "object", name
            assert all(flag[1]["option"].startswith(f"{spec.options}.") for flag in module.FLAGS), name
        if spec.path_option is not None:
            assert spec.path_option[1] in corpus[spec.options]["properties"]
            assert spec.path_option[0] in [flag[0] for flag in module.FLAGS]


def test_the_clis_offer_the_registry_s_backends():
    for cli in (parse, parse_quality):
        parser = argparse.ArgumentParser()
        cli.add_arguments(parser)
        backend = next(a for a in parser._actions if a.dest == "backend")
        assert backend.choices == list(PARSERS)


def test_a_parse_job_s_code_is_its_own_backend_s_and_not_the_others():
    closures = {name: code_identity.module_closure(backend_code_modules(name), exclude=NOT_CODE) for name in PARSERS}
    for name, closure in closures.items():
        backends = {m for m in closure if m.startswith("data.parsers.") and m != "data.parsers.parsed_shard"}
        assert backends == {f"data.parsers.{PARSERS[name].module}"}, name
        assert "data.parse" in closure
    assert "data.treebank" in closures["conllu"] and "data.treebank" not in closures["spacy"]
    codes = {name: code_identity.code_fingerprint(*backend_code_modules(name), exclude=NOT_CODE) for name in PARSERS}
    assert len(set(codes.values())) == len(PARSERS)


def test_the_conllu_backend_parses_ewt_as_before(tmp_path):
    shard, out = tmp_path / "shard.parquet", tmp_path / "parsed.parquet"
    assert main(["corpus", "--kind", "conllu", "--inputs", str(EWT_DEV), "--out", str(shard)]) == 0
    assert main(["parse", "--backend", "conllu", "--shard", str(shard), "--out", str(out)]) == 0
    parsed = pd.read_parquet(out)
    assert len(parsed) == 2001
    assert content_sha256(parsed) == EWT_DEV_PARSED_SHA256
