"""docs/extending.md's recipes followed for real, on a copy of the package: a new figure (one
module, one registry entry) is drawn by the real CLI, gets its own rule from the real Snakefile, and
changes the code of no other figure's rule; a new parser backend (one module, one registry entry,
one schema section) parses a shard through the real CLIs and Snakefile, and changes the code of no
other backend's parse jobs."""

import json
import shutil
import subprocess
import sys

import pandas as pd
import pytest
from test_figures import phases_of, synthetic_tables

from conftest import EWT_DEV, REPO, WORKFLOW_FILES, job_counts, snakemake_ok
from sasbert import code_identity
from sasbert.analysis.figures.registry import FIGURES
from sasbert.data import parse_quality

NEW_FIGURE = '''"""Held-out loss against tokens seen, one curve per run (the recipe's example)."""

from sasbert.analysis.figures.common import new_figure, run_colors


def draw(tables, phases, options):
    fig = new_figure(options.width, 3.0)
    ax = fig.subplots()
    colors = run_colors(tables["runs"])
    for run, curve in tables["loss"].groupby("run"):
        ax.plot(curve["step"], curve["val_mlm_loss"], color=colors[run], gid=f"curve:{run}:val_mlm_loss")
    ax.set_xlabel("step")
    ax.set_ylabel("held-out MLM loss")
    return fig
'''
ENTRY = """    "fig6_loss": FigureSpec("loss", ("runs", "loss"), "6", "6. Loss", "held-out loss of every run"),
"""


def figure_codes(package):
    """Each figure rule's code, as workflow/rules/analysis.smk computes it."""
    return {
        name: code_identity.code_fingerprint(
            f"analysis.figures.{spec.module}",
            "analysis.figures.cli",
            package_dir=package,
            exclude=["analysis.figures.registry"],
        )
        for name, spec in FIGURES.items()
    }


def test_a_new_figure_takes_one_module_and_one_entry_and_redraws_no_other(tmp_path):
    workdir = tmp_path / "work"
    workdir.mkdir()
    for name in WORKFLOW_FILES:
        if name != "src":
            (workdir / name).symlink_to(REPO / name)
    shutil.copytree(REPO / "src", workdir / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    package = workdir / "src" / "sasbert"
    before = figure_codes(package)

    # step 1: the figure's module; step 2: its entry in FIGURES
    (package / "analysis" / "figures" / "loss.py").write_text(NEW_FIGURE)
    registry = package / "analysis" / "figures" / "registry.py"
    text = registry.read_text()
    anchor = "FIGURES: dict[str, FigureSpec] = {\n"
    assert anchor in text
    registry.write_text(text.replace(anchor, anchor + ENTRY))

    assert figure_codes(package) == before  # no other figure's rule changes

    # the real CLI draws it from tables alone
    tables = synthetic_tables()
    folder = tmp_path / "tables"
    folder.mkdir()
    for name in ("runs", "loss"):
        tables[name].to_parquet(folder / f"{name}.parquet")
    phases_of(tables).to_parquet(folder / "phases.parquet")
    out = tmp_path / "figures"
    args = ["--tables", str(folder), "--phases", str(folder / "phases.parquet"), "--out-dir", str(out)]
    drawn = subprocess.run(
        [sys.executable, "-m", "sasbert", "figures", *args, "--figure", "fig6_loss", "--dpi", "40"],
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(workdir / "src"), "PATH": ""},
    )
    assert drawn.returncode == 0, drawn.stderr[-2000:]
    assert sorted(p.name for p in out.iterdir()) == ["fig6_loss.pdf", "fig6_loss.png"]

    # the real Snakefile makes its rule, and `all` asks for its files
    planned = snakemake_ok("-n", "--cores", "1", cwd=workdir, env={"PYTHONPATH": str(workdir / "src")})
    assert job_counts(planned)["figure_loss"] == 1


def workflow_with_own_package(tmp_path):
    """A working directory that sees the repository's workflow with a copy of the package and of
    workflow/ (whose schema link then points at the copy's schema): (its folder, the package)."""
    workdir = tmp_path / "work"
    workdir.mkdir()
    for name in WORKFLOW_FILES:
        if name not in ("src", "workflow"):
            (workdir / name).symlink_to(REPO / name)
    shutil.copytree(REPO / "src", workdir / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    shutil.copytree(REPO / "workflow", workdir / "workflow", symlinks=True)
    return workdir, workdir / "src" / "sasbert"


CHAIN_BACKEND = '''"""A rightward chain (the recipe's example): each word's head is the next word, the last word is
the root; words are the paragraph's whitespace-separated tokens."""

from __future__ import annotations

import pandas as pd

from sasbert.data.parsers.parsed_shard import PARSED_COLUMNS

FLAGS = [("--chain-relation", {"option": "chain.relation"}, "the relation of every arc")]


def chain(words, relation):
    n = len(words)
    return {"words": list(words), "heads": list(range(2, n + 1)) + [0], "relations": [relation] * (n - 1) + ["root"]}


def parse_shard(units, options, threads):
    rows = [
        {"sentence_id": f"{unit.unit_id}-0", "doc_id": unit.doc_id, "source": unit.source,
         **chain(unit.text.split(), options["relation"])}
        for unit in units.itertuples(index=False)
    ]
    return pd.DataFrame(rows, columns=PARSED_COLUMNS)


def parse_gold(gold, options, threads):
    return [chain(sentence["words"], options["relation"]) for sentence in gold]


def describe_model(options):
    return None
'''
CHAIN_ENTRY = """    "chain": ParserSpec("chain", "rightward chains", reads="text", options="chain"),
"""
CHAIN_SCHEMA = """      chain:
        type: object
        additionalProperties: false
        default: {}
        description: "the chain backend"
        properties:
          relation: {type: string, default: dep}
"""


def parse_codes(package):
    """Each backend's parse-job code, as workflow/rules/inputs/parse.smk computes it."""
    from sasbert.data.parsers.registry import NOT_CODE, PARSERS, backend_code_modules

    return {
        name: code_identity.code_fingerprint(*backend_code_modules(name), package_dir=package, exclude=NOT_CODE)
        for name in PARSERS
    }


def test_a_new_parser_backend_takes_one_module_one_entry_and_one_schema_section(tmp_path):
    """docs/extending.md's parser recipe, followed on a copy of the package: the backend's module,
    its registry entry, its schema section; the real parse and parse-quality CLIs run it, the real
    Snakefile plans its parse jobs, and no other backend's parse jobs change code."""
    workdir, package = workflow_with_own_package(tmp_path)
    before = parse_codes(package)

    (package / "data" / "parsers" / "chain.py").write_text(CHAIN_BACKEND)
    registry = package / "data" / "parsers" / "registry.py"
    anchor = "PARSERS: dict[str, ParserSpec] = {\n"
    assert anchor in registry.read_text()
    registry.write_text(registry.read_text().replace(anchor, anchor + CHAIN_ENTRY))
    schema = package / "config.schema.yaml"
    enum, section = "enum: [conllu, stanza, spacy, pretokenized]", "      stanza:\n        type: object\n"
    assert enum in schema.read_text() and section in schema.read_text()
    text = schema.read_text().replace(enum, "enum: [conllu, stanza, spacy, chain, pretokenized]")
    schema.write_text(text.replace(section, CHAIN_SCHEMA + section))

    assert parse_codes(package) == before  # no other backend's parse jobs rerun

    env = {"PYTHONPATH": str(workdir / "src"), "PATH": "", "OMP_NUM_THREADS": "1"}
    text_file = tmp_path / "two.txt"
    text_file.write_text("The cat sat .\n\nA dog barks loudly .\n")
    shard, parsed = tmp_path / "shard.parquet", tmp_path / "parsed.parquet"

    def sasbert(*args):
        done = subprocess.run([sys.executable, "-m", "sasbert", *args], capture_output=True, text=True, env=env)
        assert done.returncode == 0, done.stderr[-2000:]
        return done

    sasbert("corpus", "--kind", "text", "--inputs", str(text_file), "--out", str(shard))
    sasbert("parse", "--backend", "chain", "--shard", str(shard), "--out", str(parsed), "--chain-relation", "nmod")
    rows = pd.read_parquet(parsed)
    assert [list(w) for w in rows["words"]] == [["The", "cat", "sat", "."], ["A", "dog", "barks", "loudly", "."]]
    assert [list(h) for h in rows["heads"]] == [[2, 3, 4, 0], [2, 3, 4, 5, 0]]
    assert [list(r) for r in rows["relations"]] == [["nmod"] * 3 + ["root"], ["nmod"] * 4 + ["root"]]

    # parse-quality scores it against the gold: UAS is the share of words whose gold head is the next word
    scores = tmp_path / "quality.json"
    sasbert(
        "parse-quality", "--treebank", str(EWT_DEV), "--backend", "chain", "--max-sentences", "50", "--out", str(scores)
    )
    gold = parse_quality.gold_sentences(str(EWT_DEV), 50)
    rightward = sum(h == (i + 2 if i + 1 < len(g["heads"]) else 0) for g in gold for i, h in enumerate(g["heads"]))
    result = json.loads(scores.read_text())
    assert result["words"] == sum(len(g["words"]) for g in gold)
    assert result["uas"] == pytest.approx(100 * rightward / result["words"])

    # the real Snakefile plans its parse jobs from the config alone (no rule written)
    (workdir / "chain.yaml").write_text("corpus:\n  backend: chain\n  chain: {relation: dep}\n")
    planned = snakemake_ok(
        "-n",
        "--cores",
        "1",
        "--configfile",
        "config.yaml",
        "config/wiki-small.yaml",
        "chain.yaml",
        cwd=workdir,
        env={"PYTHONPATH": str(workdir / "src")},
    )
    assert job_counts(planned)["parse"] == 4


NEW_MEASURE = '''"""The embeddings' mean L2 norm at every checkpoint (the recipe's example)."""

from __future__ import annotations

import pandas as pd

from sasbert.measure.command import score_command


def prepare(options, data, device):
    return None, {}


def score(path, step, state, options, device):
    from sasbert.measure.checkpoints import load_masked_lm

    model, _ = load_masked_lm(path, device)
    weights = model.get_input_embeddings().weight
    norm = weights.norm(p=options["p"], dim=1).mean().item()
    return {"summary": pd.DataFrame({"step": [step], "checkpoint": [path.name], "mean_norm": [norm]})}


add_arguments, run = score_command("embedding_norm", prepare, score)
'''
MEASURE_ENTRY = """        Measure(
            name="embedding_norm",
            cli="measure.embedding_norm",
            help="mean L2 norm of the input embeddings",
            tables=("summary",),
            gathered={"summary": "embedding_norm"},
        ),
"""
MEASURE_SCHEMA = """  embedding_norm:
    type: object
    additionalProperties: false
    default: {}
    description: "the embeddings' norm (the recipe's example)"
    properties:
      p: {type: number, default: 2, description: "the norm's order"}
      every_steps: {type: [integer, "null"], default: null, description: "score every Nth step only"}
"""


def measure_codes(package):
    """Each measure rule's code, as workflow/rules/measures.smk computes it, and the tables rule's
    as workflow/rules/analysis.smk does."""
    from sasbert.measure.command import NOT_SCORING_CODE
    from sasbert.measure.registry import MEASURES, all_runs_modules

    gather = ("analysis.cli", "analysis.gather", *all_runs_modules())
    return {
        **{
            name: code_identity.code_fingerprint(measure.cli, package_dir=package, exclude=NOT_SCORING_CODE)
            for name, measure in MEASURES.items()
        },
        "tables": code_identity.code_fingerprint(*gather, package_dir=package, exclude=NOT_SCORING_CODE),
    }


def test_a_new_measure_takes_one_module_one_entry_and_one_schema_section(tmp_path, bert_tokenizer):
    """docs/extending.md's measure recipe, followed on a copy of the package: the measure's module,
    its registry entry, its schema section. The real CLI scores a series with it, the real Snakefile
    plans its rules for every run x seed, gathers its table and asks for it by default, and no
    other measure's jobs change code."""
    import torch
    from transformers import BertForMaskedLM

    from conftest import tiny_bert_config

    workdir, package = workflow_with_own_package(tmp_path)
    before = measure_codes(package)

    (package / "measure" / "embedding_norm.py").write_text(NEW_MEASURE)
    registry = package / "measure" / "registry.py"
    anchor = "    for measure in (\n"
    assert anchor in registry.read_text()
    registry.write_text(registry.read_text().replace(anchor, anchor + MEASURE_ENTRY))
    schema = package / "config.schema.yaml"
    section = "  blimp:\n    type: object\n"
    assert section in schema.read_text()
    schema.write_text(schema.read_text().replace(section, MEASURE_SCHEMA + section))

    assert measure_codes(package) == before  # no other measure's jobs rerun

    # the real CLI scores a series of two checkpoints, and a cached score is kept
    norms = {}
    for step in (0, 10):
        torch.manual_seed(step)
        model = BertForMaskedLM(tiny_bert_config(bert_tokenizer.vocab_size))
        folder = tmp_path / "run" / f"step-{step}"
        model.save_pretrained(folder)
        bert_tokenizer.save_pretrained(folder)
        norms[step] = model.bert.embeddings.word_embeddings.weight.norm(p=1, dim=1).mean().item()
    env = {"PYTHONPATH": str(workdir / "src"), "PATH": "", "OMP_NUM_THREADS": "1"}
    out, cache = tmp_path / "summary.parquet", tmp_path / "by_step"
    args = ["embedding_norm", "score", "--checkpoint", str(tmp_path / "run" / "step-*"), "--out-summary", str(out)]
    args += ["--cache-dir", str(cache), "--options", '{"p": 1}']
    for _attempt in range(2):
        done = subprocess.run([sys.executable, "-m", "sasbert", *args], capture_output=True, text=True, env=env)
        assert done.returncode == 0, done.stderr[-2000:]
    assert done.stderr.count("kept from") == 2
    table = pd.read_parquet(out)
    assert table["step"].tolist() == [0, 10]
    assert table["mean_norm"].tolist() == pytest.approx([norms[0], norms[10]], rel=1e-6)

    # the real Snakefile: its two rules for every run x seed, its table gathered and asked for
    planned = snakemake_ok(
        "-n",
        "-p",
        "--cores",
        "1",
        "--configfile",
        str(REPO / "tests" / "configs" / "e2e.yaml"),
        cwd=workdir,
        env={"PYTHONPATH": str(workdir / "src")},
    )
    jobs = job_counts(planned)
    assert jobs["embedding_norm"] == 3 and jobs["embedding_norm_part"] == 1 and jobs["probe"] == 3
    assert "--embedding-norm-summary results/embedding_norm/baseline/seed0/summary.parquet" in planned
    assert "results/tables/embedding_norm.parquet" in planned


def test_a_measures_flags_follow_its_schema_section_shared_definitions_included():
    """score_command's flags parse each option as its schema types it, $ref definitions too."""
    import argparse

    from sasbert.measure.command import schema_flags

    flags = {flag: keywords for flag, keywords, _ in schema_flags("blimp", skip=("data_dir",))}
    assert "--data-dir" not in flags
    assert flags["--batch-size"]["type"]("64") == 64  # $ref: positive_int
    assert flags["--subset-seed"]["type"]("3") == 3  # $ref: non_negative_int
    assert flags["--pairs-per-paradigm"]["type"]("null") is None  # [integer, "null"]
    with pytest.raises(argparse.ArgumentTypeError, match="expected integer"):
        flags["--batch-size"]["type"]("many")


def test_an_optional_measure_has_a_switch_in_its_schema_section_and_no_other_measure_has_one():
    """``optional`` in the registry and ``enabled`` in the schema say the same; the switch is not
    a scoring option (no flag of its own, and not in a cached score's identity)."""
    from sasbert.measure.command import schema_flags
    from sasbert.measure.registry import ENABLED, MEASURES, enabled_measures
    from sasbert.options import section_schema

    for name, measure in MEASURES.items():
        switch = section_schema(name).get("properties", {}).get(ENABLED)
        if measure.optional:
            assert switch is not None and switch["type"] == "boolean" and isinstance(switch["default"], bool), name
            assert "--enabled" not in {flag for flag, _, _ in schema_flags(name, skip=(*measure.inputs, ENABLED))}
        else:
            assert switch is None, name
    config = {name: {ENABLED: True} if MEASURES[name].optional else {} for name in MEASURES}
    assert [m.name for m in enabled_measures(config)] == list(MEASURES)
    config["context"][ENABLED] = False
    assert [m.name for m in enabled_measures(config)] == [n for n in MEASURES if n != "context"]
    # the schema's defaults: complexity and context on, the costly LLC off
    assert {
        name for name in MEASURES if section_schema(name).get("properties", {}).get(ENABLED, {}).get("default") is False
    } == {"llc"}
