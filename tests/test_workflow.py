"""The real Snakefile: dry runs of the shipped configs, config errors, paths with spaces, the launcher
(the real run of the default and its reruns: test_default.py)."""

import shlex
import shutil

import pytest

from conftest import REPO, WORKFLOW_FILES, job_counts, link_workflow, snakemake, snakemake_ok


@pytest.fixture
def workdir(tmp_path):
    return link_workflow(tmp_path)


def test_dry_run_default(workdir):
    result = snakemake("-n", "--cores", "2", cwd=workdir)
    assert result.returncode == 0, result.stderr + result.stdout
    assert "tokenize" in result.stdout
    assert not [rule for rule in job_counts(result.stdout) if rule.startswith("glue")]  # only with a glue section


def test_bad_config_stops_before_any_job(workdir):
    (workdir / "bad.yaml").write_text("train:\n  max_steps: -3\ncorpus:\n  shards: two\n")
    result = snakemake("-n", "--configfile", "bad.yaml", cwd=workdir)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "train.max_steps: -3 is less than the minimum of 1" in output
    assert "corpus.shards: 'two' is not of type 'integer'" in output


@pytest.mark.parametrize("text, what", [("", "is empty"), ("- train\n- probe\n", "is a list, not a mapping")])
def test_a_config_file_that_is_no_mapping_is_named(tmp_path, text, what):
    """Issue 31: Snakemake's own message for an empty or list config file names no file."""
    workdir = tmp_path / "work"
    workdir.mkdir()
    for name in WORKFLOW_FILES:
        if name != "config.yaml":
            (workdir / name).symlink_to(REPO / name)
    (workdir / "config.yaml").write_text(text)
    result = snakemake("-n", "--cores", "1", cwd=workdir)
    output = result.stdout + result.stderr
    assert result.returncode == 1 and f"config.yaml: the config file {what}" in output, output[-2000:]


def test_config_overrides_on_the_command_line_are_read_as_yaml(workdir):
    """Issue 31: Snakemake gives nested --config values as strings ('40'); they are typed as a
    config file's values are, so an override works, and a wrong one still names its key."""
    typed = snakemake("-n", "--cores", "1", "--config", "train={max_steps: 1000, warmup_steps: 100}", cwd=workdir)
    assert typed.returncode == 0, typed.stderr[-2000:]
    wrong = snakemake("-n", "--cores", "1", "--config", "train={max_steps: -4}", cwd=workdir)
    assert wrong.returncode == 1 and "train.max_steps: -4 is less than the minimum of 1" in wrong.stderr + wrong.stdout


def test_a_warmup_as_long_as_the_run_warns(workdir):
    """Issue 31: max_steps at or below warmup_steps trains its first step at lr 0 and never
    reaches train.lr: the run is valid, and the user is told."""
    result = snakemake("-n", "--cores", "1", "--config", "train={max_steps: 300, warmup_steps: 400}", cwd=workdir)
    output = result.stdout + result.stderr
    assert "train.warmup_steps (400) >= train.max_steps (300)" in output, output[-2000:]
    quiet = snakemake("-n", "--cores", "1", cwd=workdir)
    assert "train.warmup_steps" not in quiet.stdout + quiet.stderr


@pytest.mark.parametrize(
    "overrides, launcher",
    [
        ([], "sasbert pretrain"),
        (["--set-resources", "pretrain:gpu=2"], "torchrun --standalone --nproc_per_node 2 -m sasbert pretrain"),
        # sites that reject --gpus ask for GRES; the world size then comes from its count
        (
            ["--set-resources", "pretrain:gpu=0", 'pretrain:gres="gpu:a100:4"'],
            "torchrun --standalone --nproc_per_node 4 -m sasbert pretrain",
        ),
        (
            ["--set-resources", "pretrain:gpu=0", 'pretrain:gres="gpu:3"'],
            "torchrun --standalone --nproc_per_node 3 -m sasbert pretrain",
        ),
        (
            ["--set-resources", "pretrain:gpu=0", 'pretrain:gres="tmp:10G,gpu:2"'],
            "torchrun --standalone --nproc_per_node 2 -m sasbert pretrain",
        ),
        (["--set-resources", "pretrain:gpu=0", 'pretrain:gres="gpu"'], "sasbert pretrain"),
    ],
)
def test_pretrain_launcher_follows_the_gpu_request(workdir, overrides, launcher):
    target = "results/pretrain/baseline/seed0/metrics/eval.parquet"
    result = snakemake("-n", "-p", "--cores", "2", target, *overrides, cwd=workdir)
    assert result.returncode == 0, result.stderr[-3000:]
    commands = [line for line in result.stdout.splitlines() if "pretrain --dataset" in line]
    assert commands and commands[0].startswith(f"Shell command: {launcher} --dataset"), commands


E2E = ["--configfile", str(REPO / "tests" / "configs" / "e2e.yaml")]


def shell_arguments(dry_run_output: str) -> list[list[str]]:
    """Each job's command of a dry run with -p, split into arguments as bash splits it."""
    prefix = "Shell command: "
    return [shlex.split(line[len(prefix) :]) for line in dry_run_output.splitlines() if line.startswith(prefix)]


UD = "resources/ud/UD_English-EWT"
# Every config key that names a file or folder, with a space in the name, in four configs (one per
# corpus source): (key, override, the path its job must get, what to put there: a file or folder
# to link, or None for an empty folder).
SPACED = {
    "conllu": [
        (
            "corpus.conllu",
            "corpus: {conllu: ['my corpus/train.conllu.gz']}",
            "my corpus/train.conllu.gz",
            f"{UD}/en_ewt-ud-train.conllu.gz",
        ),
        (
            "tokenizer.vocab",
            "tokenizer: {vocab: 'my vocab/vocab.txt'}",
            "my vocab/vocab.txt",
            "resources/tokenizer/bert-base-uncased-vocab.txt",
        ),
        (
            "probe.treebank",
            "probe: {treebank: 'my gold/dev.conllu.gz'}",
            "my gold/dev.conllu.gz",
            f"{UD}/en_ewt-ud-dev.conllu.gz",
        ),
        ("blimp.data_dir", "blimp: {data_dir: 'my blimp'}", "my blimp", "resources/blimp"),
    ],
    "stanza": [
        (
            "corpus.text",
            "corpus: {backend: stanza, text: ['my text/*.txt.gz']}",
            "my text/wiki.txt.gz",
            "resources/text/enwiki2015_300k.txt.gz",
        ),
        ("corpus.stanza.resources_dir", "corpus: {stanza: {resources_dir: 'my stanza'}}", "my stanza", None),
    ],
    "spacy": [
        (
            "corpus.hf_dataset.data_files",
            "corpus: {backend: spacy, hf_dataset: {path: text, data_files: ['my hf/part.txt.gz']}}",
            "my hf/part.txt.gz",
            "resources/text/enwiki2015_300k.txt.gz",
        ),
        ("corpus.spacy.model", "corpus: {spacy: {model: 'my models/en core'}}", "my models/en core", None),
    ],
    "glue": [  # the glue section's data (one task per kind of source)
        (
            f"glue.data.{task}.{key}",
            f"glue: {{tasks: [cola, sst2, rte], data: {{{task}: {{{key}: {value}}}}}}}",
            path,
            target,
        )
        for task, key, value, path, target in (
            ("cola", "blimp", "{data_dir: 'my glue blimp'}", "my glue blimp", "resources/blimp"),
            ("sst2", "data_files", "{train: 'my glue/train.csv'}", "my glue/train.csv", "config.yaml"),
            ("rte", "saved", "'my glue saved'", "my glue saved", None),
        )
    ],
    "saved": [
        (
            "corpus.hf_dataset.path",
            "corpus: {backend: spacy, hf_dataset: {path: 'my saved/dataset'}}",
            "my saved/dataset",
            None,
        ),
    ],
}


@pytest.mark.parametrize("source", SPACED)
def test_each_path_key_with_a_space_reaches_its_job_as_one_argument(workdir, source):
    """A dry run prints each job's command; split as bash splits it, each path with a space must be
    one argument (an unquoted one reaches its job as two, as tokenizer.vocab's once did)."""
    configs = []
    for i, (_key, override, path, target) in enumerate(SPACED[source]):
        (workdir / path).parent.mkdir(parents=True, exist_ok=True)
        if target is None:
            (workdir / path).mkdir()
        else:
            (workdir / path).symlink_to(REPO / target)
        (workdir / f"spaced{i}.yaml").write_text(override + "\n")
        configs.append(f"spaced{i}.yaml")
    output = snakemake_ok("-n", "-p", "--cores", "2", *E2E, *configs, cwd=workdir)
    arguments = [argument for command in shell_arguments(output) for argument in command]
    for key, _override, path, _target in SPACED[source]:
        assert path in arguments, f"{key}: {path!r} is not one argument of any job"
        assert path.split(" ")[0] not in arguments, f"{key}: {path!r} reaches a job split in two"


@pytest.mark.slow
def test_a_vocab_path_with_a_space_reaches_the_tokenize_job(workdir):
    folder = workdir / "my vocab"
    folder.mkdir()
    shutil.copy(REPO / "resources" / "tokenizer" / "bert-base-uncased-vocab.txt", folder / "vocab.txt")
    (workdir / "spaced.yaml").write_text("tokenizer:\n  vocab: my vocab/vocab.txt\n")
    snakemake_ok("--cores", "2", "results/tokenize/ewt/stats.json", *E2E, "spaced.yaml", cwd=workdir)
    stats = (workdir / "results" / "tokenize" / "ewt" / "stats.json").read_text()
    assert '"vocab_size": 30522' in stats
