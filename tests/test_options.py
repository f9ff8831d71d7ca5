"""One options object per stage (sasbert.options): the schema's defaults, then --options (a config
section as JSON), then the flags given; bad JSON or values named like config errors."""

import argparse
import json
import subprocess
import sys

import pytest
import yaml

from sasbert import config, options
from sasbert.data import corpus
from sasbert.data.parsers import stanza as stanza_parser
from sasbert.errors import InputError
from sasbert.measure.probe import cli as probe_cli


def probe_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser()
    probe_cli.add_arguments(parser)
    return parser


REQUIRED = ["score", "--checkpoint", "c", "--treebank", "t", "--out-scores", "s", "--out-summary", "u"]


def test_defaults_come_from_the_schema():
    schema = yaml.safe_load(config.SCHEMA_PATH.read_text())
    assert (
        options.defaults("probe")["max_pieces"] == schema["properties"]["probe"]["properties"]["max_pieces"]["default"]
    )
    assert corpus.TextCleaning().min_words == options.defaults("corpus")["text_cleaning"]["min_words"]
    assert stanza_parser.StanzaOptions().batch_size == options.defaults("corpus")["stanza"]["batch_size"]


def test_a_flag_wins_over_options_which_win_over_the_schema():
    args = probe_parser().parse_args(REQUIRED)
    assert options.resolve(args, "probe")["max_pieces"] == options.defaults("probe")["max_pieces"]
    given = json.dumps({"max_pieces": 64, "batch_size": 8, "treebank": "t"})
    args = probe_parser().parse_args([*REQUIRED, "--options", given])
    resolved = options.resolve(args, "probe")
    assert (resolved["max_pieces"], resolved["batch_size"]) == (64, 8)
    args = probe_parser().parse_args([*REQUIRED, "--options", given, "--max-pieces", "32"])
    assert options.resolve(args, "probe")["max_pieces"] == 32


def test_nested_options_map_to_their_flags():
    parser = argparse.ArgumentParser()
    corpus.add_arguments(parser)
    given = json.dumps({"text_cleaning": {"min_words": 4, "dedup": True}})
    args = parser.parse_args(["--kind", "text", "--out", "o", "--options", given, "--min-words", "2"])
    cleaning = options.resolve(args, "corpus")["text_cleaning"]
    assert (cleaning["min_words"], cleaning["dedup"], cleaning["max_words"]) == (2, True, None)
    args = parser.parse_args(["--kind", "hf", "--out", "o", "--hf-path", "json", "--hf-split", "validation"])
    hf = options.resolve(args, "corpus")["hf_dataset"]
    assert hf == {**hf, "path": "json", "split": "validation", "text_column": "text"}  # the rest from the schema


@pytest.mark.parametrize(
    "given, message",
    [
        ('{"max_pieces": 2}', "--options: probe.max_pieces: 2 is less than the minimum of 3"),
        ('{"max_piece": 64}', "--options: probe: Additional properties are not allowed"),
        ('{"max_pieces": 64', "--options: not JSON"),
        ("[1, 2]", "--options: expected a JSON object"),
    ],
)
def test_bad_options_are_named(given, message):
    args = probe_parser().parse_args([*REQUIRED, "--options", given])
    with pytest.raises(InputError) as err:
        options.resolve(args, "probe")
    assert str(err.value).startswith(message)


def test_the_cli_refuses_bad_options_with_a_message(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "sasbert", "blimp", "score", "--checkpoint", str(tmp_path), "--data-dir", str(tmp_path)]
        + ["--out-pairs", "p.parquet", "--out-summary", "s.parquet", "--options", '{"variant": "sideways"}'],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert result.returncode == 2
    assert "sasbert blimp: error: --options: blimp.variant: 'sideways' is not one of" in result.stderr
    assert "Traceback" not in result.stderr and not list(tmp_path.iterdir())


def test_each_stage_options_object_is_its_config_section_with_the_schema_defaults():
    """Probe, BLiMP and GLUE take their options as one dataclass; its fields are the config
    section's keys (GLUE: those a fine-tuning job reads) and its defaults the schema's."""
    import dataclasses

    from sasbert.measure.blimp.options import BlimpOptions
    from sasbert.measure.glue.options import SELECTION_KEYS, FinetuneOptions
    from sasbert.measure.probe.options import ProbeOptions

    for cls, section, left_out, path in (
        (ProbeOptions, "probe", (), {"treebank": None}),
        (BlimpOptions, "blimp", (), {"data_dir": None}),
        (FinetuneOptions, "glue", SELECTION_KEYS, {}),
    ):
        expected = {k: v for k, v in options.defaults(section).items() if k not in left_out}
        assert dataclasses.asdict(cls()) == {**path, **expected}, section
        assert set(dataclasses.asdict(cls())) | set(left_out) == set(options.section_schema(section)["properties"])
    glue_section = {**options.defaults("glue"), "tasks": ["cola"], "epochs": 1}
    assert FinetuneOptions.from_section(glue_section).epochs == 1
