"""The real Snakefile: dry runs of the shipped configs, config errors, and a real run + rerun."""

import shlex
import shutil

import pandas as pd
import pytest

from conftest import REPO, job_counts, link_workflow, snakemake, snakemake_ok


@pytest.fixture
def workdir(tmp_path):
    return link_workflow(tmp_path)


def test_dry_run_default(workdir):
    result = snakemake("-n", "--cores", "2", cwd=workdir)
    assert result.returncode == 0, result.stderr + result.stdout
    assert "tokenize" in result.stdout


@pytest.mark.skipif(not (REPO.parent / "shared" / "data" / "corpus").is_dir(), reason="paper corpus not present")
def test_dry_run_paper_scale(workdir):
    # config/paper.yaml names the data kit's corpus as ../shared/data/...; resolve it from the repo.
    result = snakemake("-n", "--configfile", "config/paper.yaml", cwd=REPO)
    assert result.returncode == 0, result.stderr + result.stdout
    assert "parse" in result.stdout and "64" in result.stdout


def test_bad_config_stops_before_any_job(workdir):
    (workdir / "bad.yaml").write_text("train:\n  max_steps: -3\ncorpus:\n  shards: two\n")
    result = snakemake("-n", "--configfile", "bad.yaml", cwd=workdir)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "train.max_steps: -3 is less than the minimum of 1" in output
    assert "corpus.shards: 'two' is not of type 'integer'" in output


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


@pytest.mark.slow
def test_reduced_default_runs_end_to_end_then_nothing_to_do(workdir):
    first = snakemake("--cores", "2", *E2E, cwd=workdir)
    assert first.returncode == 0, (first.stdout + first.stderr)[-5000:]
    results = workdir / "results"
    assert (results / "tokenize" / "ewt" / "stats.json").is_file()
    assert (results / "logs" / "tokenize" / "ewt.log").is_file()
    release = results / "pretrain" / "sas_minus_release_10" / "seed0" / "checkpoints"
    assert sorted(p.name for p in release.glob("step-*")) == ["step-10", "step-20"]
    assert (results / "blimp" / "baseline" / "seed0" / "summary.parquet").is_file()
    uas = pd.read_parquet(results / "probe" / "sas_minus_release_10" / "seed0" / "summary.parquet")
    assert sorted(uas["step"].unique()) == [10, 20]
    second = snakemake("--cores", "2", *E2E, cwd=workdir)
    assert second.returncode == 0
    assert "Nothing to be done" in second.stdout + second.stderr
    # the report holds every figure under its caption (what `make run` writes)
    report = snakemake("--report", "report.html", *E2E, cwd=workdir, timeout=600)
    assert report.returncode == 0, (report.stdout + report.stderr)[-3000:]
    html = (workdir / "report.html").read_text(errors="replace")
    for figure in [
        "fig1_training",
        "fig2_regularizers",
        "fig3_release",
        "fig4a_heads",
        "fig4b_phenomena",
        "fig5_seeds",
    ]:
        assert f"{figure}.png" in html, figure

    # code inputs follow the imports: editing cli.py (dispatch only) reruns nothing, figures.py only
    # the figures (Snakemake checksums inputs, so the edit must change their content; the edits go to
    # a copy of src/ in this working directory, which is what its rules track)
    (workdir / "src").unlink()
    shutil.copytree(REPO / "src", workdir / "src")
    for name in ("cli.py", "figures.py"):
        shutil.copystat(REPO / "src" / "sasbert" / name, workdir / "src" / "sasbert" / name)
    assert "Nothing to be done" in snakemake_ok("-n", "--cores", "2", *E2E, cwd=workdir)
    with open(workdir / "src" / "sasbert" / "cli.py", "a") as handle:
        handle.write("# an edit\n")
    assert "Nothing to be done" in snakemake_ok("-n", "--cores", "2", *E2E, cwd=workdir)
    with open(workdir / "src" / "sasbert" / "figures.py", "a") as handle:
        handle.write("# an edit\n")
    jobs = job_counts(snakemake_ok("-n", "--cores", "2", *E2E, cwd=workdir))
    assert set(jobs) - {"all"} == {
        "figure_training",
        "figure_regularizers",
        "figure_release",
        "figure_heads",
        "figure_phenomena",
        "figure_seeds",
    }, jobs
    assert snakemake("--cores", "2", *E2E, cwd=workdir).returncode == 0

    # a new seed trains and evaluates only that seed's jobs
    (workdir / "seed1.yaml").write_text("seeds: [0, 1]\n")
    plan = snakemake("-n", "--cores", "2", *E2E, "seed1.yaml", cwd=workdir)
    assert plan.returncode == 0
    jobs = job_counts(plan.stdout)
    assert jobs["pretrain"] == jobs["probe"] == jobs["blimp"] == 3
    assert "tokenize" not in jobs and "corpus" not in jobs
    assert jobs["tables"] == jobs["phases"] == jobs["figure_training"] == 1

    # blimp.every_steps chooses which checkpoints are scored, not how: changing it reruns the BLiMP
    # jobs (and what reads them), which take every score already made from their cache folder
    (workdir / "thin.yaml").write_text("blimp:\n  every_steps: 20\n")
    jobs = job_counts(snakemake_ok("-n", "--cores", "2", *E2E, "thin.yaml", cwd=workdir))
    assert jobs["blimp"] == 3 and "pretrain" not in jobs and "probe" not in jobs
    snakemake_ok("--cores", "2", *E2E, "thin.yaml", cwd=workdir)
    log = (results / "logs" / "blimp" / "baseline" / "seed0.log").read_text()
    assert log.count("kept from") == 2 and "overall accuracy" not in log
    summary = pd.read_parquet(results / "blimp" / "baseline" / "seed0" / "summary.parquet")
    assert sorted(summary["step"].unique()) == [0, 20]

    # a deleted checkpoint is named: the dry run warns (the tables built from it stay), a job that
    # rescores its run stops at its folder, and --forcerun of the folder republishes it from the
    # training state (hard links: the very files the tables were built from)
    release_dir = results / "pretrain" / "sas_minus_release_10" / "seed0"
    shutil.rmtree(release_dir / "checkpoints" / "step-20")
    plan = snakemake_ok("-n", "--cores", "2", *E2E, "thin.yaml", cwd=workdir)
    assert "Published checkpoints are missing" in plan and "sas_minus_release_10/seed0/checkpoints/step-20" in plan
    assert "Nothing to be done" in plan
    target = "results/probe/sas_minus_release_10/seed0/summary.parquet"
    rescore = snakemake("--cores", "2", target, "--forcerun", target, *E2E, "thin.yaml", cwd=workdir)
    output = rescore.stdout + rescore.stderr
    assert rescore.returncode != 0 and "checkpoints/step-20: checkpoint directory not found" in output
    assert "Traceback" not in output and not (workdir / target).exists()
    folder = "results/pretrain/sas_minus_release_10/seed0/checkpoints"
    snakemake_ok("--cores", "2", folder, "--forcerun", folder, *E2E, "thin.yaml", cwd=workdir)
    published = release_dir / "checkpoints" / "step-20" / "model.safetensors"
    assert published.stat().st_ino == (release_dir / "state" / "checkpoint-20" / "model.safetensors").stat().st_ino
    assert "Published checkpoints are missing" not in snakemake_ok("-n", "--cores", "2", *E2E, "thin.yaml", cwd=workdir)
