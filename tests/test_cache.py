"""The cache is sound both ways (issue 26): a result follows its inputs, its options and its code.

- The code fingerprint (``sasbert.code_identity``): comments, docstrings and formatting change
  nothing; a changed constant or expression changes it; it follows imports and not the folder.
- A run's resume state and the per-checkpoint caches are keyed by it: a changed training or scoring
  code is never served from them.
- The real Snakefile on a tiny config: a real change of the regularizer, the probe's scoring or the
  PLL reruns exactly the jobs that run that code and equals a fresh run of the changed code; a
  comment, a docstring, `touch`, a `git checkout` round trip, a moved folder or a fresh clone with
  the results moved in plans nothing and leaves every output as it was.
"""

import json
import logging
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest
import yaml

from conftest import REPO, WORKFLOW_FILES, assert_same_weights, job_counts, snakemake_ok, weights
from sasbert import code_identity
from sasbert.measure import checkpoints
from sasbert.train import resume

PACKAGE = REPO / "src" / "sasbert"

# ------------------------------------------------------------------------------ the fingerprint


def write_package(folder: Path, modules: dict[str, str]) -> Path:
    package = folder / "sasbert"
    package.mkdir(parents=True, exist_ok=True)
    for name, text in modules.items():
        (package / f"{name}.py").write_text(textwrap.dedent(text))
    return package


TOY = {
    "__init__": '"""The package."""\n__version__ = "1"\n',
    "stage": """
        '''A stage.'''
        from sasbert.helper import scale


        def compute(x):
            '''Its computation.'''
            return scale(x) + 1
        """,
    "helper": """
        def scale(x):
            return 2 * x
        """,
    "other": """
        def unused():
            return 3
        """,
}


def test_comments_docstrings_and_formatting_change_no_fingerprint_and_code_does(tmp_path):
    package = write_package(tmp_path / "a", TOY)
    before = code_identity.code_fingerprint("stage", package_dir=package)
    assert code_identity.module_closure(["stage"], package_dir=package) == ["helper", "stage"]

    cosmetic = {
        **TOY,
        "stage": """
            '''A stage, its docstring rewritten.'''
            # a comment
            from sasbert.helper import (
                scale,
            )

            def compute(x):  # another comment
                '''Another docstring.'''

                return scale( x )+1
            """,
        "helper": "def scale(x):\n    'now with a docstring'\n    return 2*x  # and a comment\n",
        "__init__": '__version__ = "2"\n',  # the package's version is not computation
        "other": "def unused():\n    return 4\n",  # not imported by the stage
    }
    package = write_package(tmp_path / "b", cosmetic)
    assert code_identity.code_fingerprint("stage", package_dir=package) == before

    for name, text in (("helper", "def scale(x):\n    return 3 * x\n"), ("stage", TOY["stage"].replace("+ 1", "- 1"))):
        package = write_package(tmp_path / f"changed-{name}", {**TOY, name: text})
        assert code_identity.code_fingerprint("stage", package_dir=package) != before, name


def test_the_fingerprint_names_modules_not_paths_and_follows_every_kind_of_import(tmp_path):
    for folder in ("here", "elsewhere/deeper"):
        write_package(tmp_path / folder, TOY)
    a = code_identity.code_fingerprint("stage", package_dir=tmp_path / "here" / "sasbert")
    b = code_identity.code_fingerprint("stage", package_dir=tmp_path / "elsewhere" / "deeper" / "sasbert")
    assert a == b
    package = write_package(
        tmp_path / "imports",
        {
            "a": "import sasbert.b\n\ndef f():\n    from sasbert import c\n",
            "b": "",
            "c": "from sasbert.d import x\n",
            "d": "x = 1\n",
        },
    )
    assert code_identity.module_closure(["a"], package_dir=package) == ["a", "b", "c", "d"]
    (package / "sub").mkdir()
    (package / "sub" / "__init__.py").write_text("")
    (package / "sub" / "e.py").write_text("")
    (package / "d.py").write_text("from sasbert.sub import e\n")  # a subpackage's module runs its __init__
    assert code_identity.module_closure(["a"], package_dir=package) == ["a", "b", "c", "d", "sub", "sub.e"]


def test_the_package_fingerprints_of_this_repository():
    """Every stage's closure is found, and the fingerprint ignores this very file's edits (a
    copy of the package with a comment and a docstring added to each module is the same)."""
    closure = code_identity.module_closure(["train.pretrain"])
    assert {"train.pretrain", "train.regularizer", "schedules"} <= set(closure) and "code_identity" not in closure
    assert "train.regularizer" not in code_identity.training_fingerprints(0.0)
    assert "train.regularizer" in code_identity.training_fingerprints(1.0)
    staged = [{"value": 1.0, "until_step": 10}, {"value": 0.0}]
    assert "train.regularizer" in code_identity.training_fingerprints(staged)


def test_gathering_and_detection_are_separate_code():
    """The tables and phases rules (workflow/rules/analysis.smk) name their command's module beside
    analysis.cli, which imports neither: a change to onset detection does not regather the tables,
    and a change to gathering does not redetect onsets."""
    tables_rule = code_identity.module_closure(["analysis.cli", "analysis.gather"])
    phases_rule = code_identity.module_closure(["analysis.cli", "analysis.phases"])
    assert "analysis.phases" not in tables_rule and "analysis.curves" not in tables_rule
    assert "analysis.gather" not in phases_rule and "analysis.runs" not in phases_rule
    # the across-seeds rule: its own module, neither gathering nor onset detection
    seeds_rule = code_identity.module_closure(["analysis.cli", "analysis.seeds"])
    assert not {"analysis.gather", "analysis.runs", "analysis.phases"} & set(seeds_rule)


def test_every_module_of_the_package_keeps_its_fingerprint_under_comments_and_docstrings(tmp_path):
    copy = tmp_path / "sasbert"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    for path in copy.rglob("*.py"):
        path.write_text("# a comment\n" + path.read_text().replace('"""', '"""Reworded. ', 1) + "\n# the end\n")
    modules = [".".join(p.relative_to(PACKAGE).with_suffix("").parts) for p in PACKAGE.rglob("*.py")]
    modules = sorted(m.removesuffix(".__init__") for m in modules if m not in code_identity.NOT_COMPUTATION)
    assert "measure.checkpoints" in modules and "analysis.figures" in modules
    for module in modules:
        assert code_identity.code_fingerprint(module, package_dir=copy) == code_identity.code_fingerprint(module)


# -------------------------------------------------------------------- resume state and caches


def test_a_state_without_the_code_fingerprint_is_completed_in_place_and_other_code_discards_it(tmp_path, caplog):
    state = tmp_path / "run" / "state"
    identity = resume.run_identity({"lambda": 1.0, "max_steps": 10}, "data", None, code={"regularizer": "r1"})
    legacy = {k: v for k, v in identity.items() if k != "code"}
    (state / "checkpoint-10").mkdir(parents=True)
    (state / "identity.json").write_text(json.dumps(legacy))
    with caplog.at_level(logging.INFO):
        resume.discard_stale_state(state, identity)
    assert (state / "checkpoint-10").is_dir() and "completed with the training code" in caplog.text
    assert json.loads((state / "identity.json").read_text()) == identity

    changed = resume.run_identity({"lambda": 1.0, "max_steps": 10}, "data", None, code={"regularizer": "r2"})
    caplog.clear()
    resume.discard_stale_state(state, changed)
    assert not (state / "checkpoint-10").exists()
    assert "changed: the training code (regularizer)" in caplog.text
    # a legacy identity that differs in anything else is not completed: that state is another run's
    (state / "checkpoint-5").mkdir()
    (state / "identity.json").write_text(json.dumps({**legacy, "lambda": 0.5}))
    resume.discard_stale_state(state, identity)
    assert not (state / "checkpoint-5").exists()


def test_a_per_checkpoint_cache_entry_is_reused_only_for_the_same_identity(tmp_path, caplog):
    folder = tmp_path / "step-10"
    folder.mkdir()
    (folder / "model.safetensors").write_bytes(b"weights")
    calls = []

    def score(path, step):
        calls.append(step)
        return {"table": pd.DataFrame({"step": [step], "value": [len(calls)]})}

    log = logging.getLogger("test")
    cache = tmp_path / "cache"
    series = [(folder, 10)]

    def scored(identity):
        return checkpoints.score_series(series, score, ["table"], cache, log, identity)["table"]["value"].tolist()

    with caplog.at_level(logging.INFO):
        assert scored({"code": "a", "options": {"x": 1}}) == [1]
        assert scored({"code": "a", "options": {"x": 1}}) == [1] and calls == [10]  # kept
        assert scored({"code": "b", "options": {"x": 1}}) == [2]  # other scoring code
        assert "scoring again (changed: the scoring code)" in caplog.text
        assert scored({"code": "b", "options": {"x": 2}}) == [3]  # other options
        (cache / "step-10.identity.json").unlink()  # an entry made before code counted
        assert scored({"code": "b", "options": {"x": 2}}) == [4]
        assert "has no identity" in caplog.text
        os.utime(folder / "model.safetensors")  # a retrained checkpoint
        assert scored({"code": "b", "options": {"x": 2}}) == [5]


# ---------------------------------------------------------------- the real Snakefile, tiny config

CONFIG = {
    "corpus": {
        "name": "ewt",
        "backend": "conllu",
        "conllu": ["resources/ud/UD_English-EWT/en_ewt-ud-train.conllu.gz"],
        "shards": 1,
        "max_units": 300,
    },
    "tokenizer": {"vocab": "resources/tokenizer/bert-base-uncased-vocab.txt", "seq_len": 32, "validation_blocks": 8},
    "model": {"preset": "tiny", "num_hidden_layers": 2, "hidden_size": 64, "num_attention_heads": 2},
    "train": {"max_steps": 10, "batch_size": 8, "warmup_steps": 2, "decay_horizon": 20},
    "runs": [{"name": "baseline", "lambda": 0.0}, {"name": "sas_minus", "lambda": 1.0}],
    "seeds": [0],
    "checkpoints": {"steps": [0, 10], "every": []},
    "probe": {"treebank": "resources/ud/UD_English-EWT/en_ewt-ud-dev.conllu.gz", "max_sentences": 20},
    "blimp": {"data_dir": "resources/blimp", "pairs_per_paradigm": 1},
    # the optional measures off: the edits below are of the regularizer, the probe and the PLL
    "complexity": {"enabled": False},
    "context": {"enabled": False},
}
RUNS = [run["name"] for run in CONFIG["runs"]]
TARGETS = [
    *(f"results/{stage}/{run}/seed0/summary.parquet" for run in RUNS for stage in ("probe", "blimp")),
    "results/tables/phases.csv",
]
# the edits of the code that are real changes of a computation (issue 26's)
REGULARIZER_FIX = ("train/regularizer.py", "return 1.0 / max(n_arcs, 1)", "return 2.0 / max(n_arcs, 1)")
PROBE_FIX = ("measure/probe/scoring.py", "self.correct += tally[0]", "self.correct += 0 * tally[0]")
PLL_FIX = ("measure/blimp/scoring.py", "np.bincount(sent, weights=logp,", "np.bincount(sent, weights=2 * logp,")


def project(folder: Path) -> Path:
    """A project folder as a clone gives it: its own copy of src/ (which the tests edit, and which
    its jobs run: PYTHONPATH), the rest of the workflow linked, and the tiny config."""
    folder.mkdir(parents=True)
    for name in WORKFLOW_FILES:
        if name == "src":
            shutil.copytree(REPO / "src", folder / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        else:
            (folder / name).symlink_to(REPO / name)
    (folder / "tiny.yaml").write_text(yaml.safe_dump(CONFIG))
    return folder


def run(folder: Path, *args, targets=TARGETS) -> str:
    """The real snakemake on the tiny config, its jobs running this folder's src/."""
    env = {"PYTHONPATH": str(folder / "src"), "PYTHONDONTWRITEBYTECODE": "1"}
    return snakemake_ok(*targets, *args, "--cores", "2", "--configfile", "tiny.yaml", cwd=folder, env=env)


def plan(folder: Path) -> dict[str, int]:
    output = run(folder, "-n")
    return {} if "Nothing to be done" in output else job_counts(output)


def edit(folder: Path, change: tuple[str, str, str]) -> None:
    name, old, new = change
    path = folder / "src" / "sasbert" / name
    text = path.read_text()
    assert text.count(old) == 1, f"{name}: the edit's anchor is gone: {old}"
    path.write_text(text.replace(old, new))


def outputs(folder: Path) -> dict[str, tuple[int, bytes]]:
    """{path: (mtime, bytes)} of every file under results/ but the logs and job benchmarks."""
    found = {}
    for path in sorted((folder / "results").rglob("*")):
        relative = path.relative_to(folder).as_posix()
        if path.is_file() and not relative.startswith(("results/logs/", "results/benchmarks/")):
            found[relative] = (path.stat().st_mtime_ns, path.read_bytes())
    return found


def log_of(folder: Path, stage: str, run_name: str) -> str:
    return (folder / "results" / "logs" / stage / run_name / "seed0.log").read_text()


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A tiny project whose results are all made."""
    folder = project(tmp_path_factory.mktemp("cache") / "project")
    run(folder)
    return folder


@pytest.mark.slow
def test_what_changes_no_computation_plans_nothing_and_touches_nothing(finished, tmp_path):
    before = outputs(finished)
    # a comment in each module the issue measured (28 of 28 jobs, 24, 19, 14 before)
    for name in (
        "config.py",
        "options.py",
        "textio.py",
        "train/regularizer.py",
        "measure/checkpoints.py",
        "measure/blimp/scoring.py",
    ):
        path = finished / "src" / "sasbert" / name
        original = path.read_text()
        path.write_text(original + "\n# a comment\n")
        assert plan(finished) == {}, name
        path.write_text(original)
    # a comment and a docstring in every module, then `touch` on every file under src/
    sources = sorted((finished / "src" / "sasbert").rglob("*.py"))
    originals = {path: path.read_text() for path in sources}
    for path in sources:
        path.write_text("# a comment\n" + path.read_text().replace('"""', '"""Reworded. ', 1) + "\n# the end\n")
    assert "Nothing to be done" in run(finished)
    for path, text in originals.items():
        path.write_text(text)
    for path in (finished / "src").rglob("*"):
        path.touch()
    assert "Nothing to be done" in run(finished)

    # `git checkout` away (a real change) and back
    git = ["git", "-c", "user.email=t@t", "-c", "user.name=t"]
    src = finished / "src"
    subprocess.run([*git, "init", "-q"], cwd=src, check=True)
    subprocess.run([*git, "add", "-A"], cwd=src, check=True)
    subprocess.run([*git, "commit", "-qm", "clone"], cwd=src, check=True)
    edit(finished, REGULARIZER_FIX)
    subprocess.run([*git, "commit", "-qam", "a fix"], cwd=src, check=True)
    assert plan(finished)  # the fix is a real change ...
    subprocess.run([*git, "checkout", "-q", "HEAD~1"], cwd=src, check=True)
    assert "Nothing to be done" in run(finished)  # ... and back without it, nothing
    shutil.rmtree(src / ".git")
    assert outputs(finished) == before

    # the project folder moved, then a fresh clone in another folder with the results moved in
    moved = tmp_path / "renamed project"
    shutil.move(finished, moved)
    try:
        assert "Nothing to be done" in run(moved)
        assert outputs(moved) == before
        clone = project(tmp_path / "clone")
        for name in ("results", ".snakemake"):
            shutil.move(moved / name, clone / name)
        assert "Nothing to be done" in run(clone)
        assert outputs(clone) == before
        for name in ("results", ".snakemake"):
            shutil.move(clone / name, moved / name)
    finally:
        shutil.move(moved, finished)


@pytest.mark.slow
def test_a_code_fix_reruns_what_runs_that_code_and_equals_a_fresh_run_of_it(finished, tmp_path):
    # the regularizer: the regularized run retrains from scratch (the log names why), the baseline,
    # which never computes R, is not planned; the weights are a fresh run's, bit for bit
    edit(finished, REGULARIZER_FIX)
    jobs = plan(finished)
    assert jobs["pretrain"] == 1 and jobs["probe"] == jobs["blimp"] == 1, jobs
    assert not {"corpus", "parse", "tokenize"} & set(jobs), jobs
    assert "results/pretrain/sas_minus/seed0/checkpoints" in run(finished, "-n")
    run(finished)
    training_log = log_of(finished, "pretrain", "sas_minus")
    assert "changed: the training code (train.regularizer)" in training_log
    assert "nothing to train" not in training_log
    fresh = project(tmp_path / "fresh")
    edit(fresh, REGULARIZER_FIX)
    run(fresh, targets=["results/pretrain/sas_minus/seed0/checkpoints"])
    for step in (0, 10):
        assert_same_weights(
            weights(finished / "results/pretrain/sas_minus/seed0", step),
            weights(fresh / "results/pretrain/sas_minus/seed0", step),
        )

    # the probe's scoring and the PLL: every run's job rescores, none is kept from its cache, and
    # the tables equal a fresh scoring of the same checkpoints by the changed code
    for change, stage, table in ((PROBE_FIX, "probe", "summary"), (PLL_FIX, "blimp", "pairs")):
        edit(finished, change)
        jobs = plan(finished)
        assert jobs[stage] == len(RUNS) and "pretrain" not in jobs, jobs
        run(finished)
        for run_name in RUNS:
            assert "kept from" not in log_of(finished, stage, run_name)
            assert "scoring again (changed: the scoring code)" in log_of(finished, stage, run_name)
            ours = pd.read_parquet(finished / f"results/{stage}/{run_name}/seed0/{table}.parquet")
            theirs = fresh_scores(finished, stage, run_name, tmp_path / f"{stage}-{run_name}")
            pd.testing.assert_frame_equal(ours, theirs)
        if stage == "probe":
            assert (ours.query("method == 'attention'")["correct"] == 0).all()


def fresh_scores(folder: Path, stage: str, run_name: str, out: Path) -> pd.DataFrame:
    """The stage's CLI with the folder's (changed) code and no cache, on the run's published
    checkpoints, with the options the workflow gives it (config.yaml, then tiny.yaml, validated)."""
    from snakemake.utils import update_config

    from sasbert import config as sasconfig

    merged = yaml.safe_load((REPO / "config.yaml").read_text())
    update_config(merged, CONFIG)
    options = sasconfig.validate(merged, base_dir=REPO)[stage]
    out.mkdir()
    checkpoints_dir = folder / f"results/pretrain/{run_name}/seed0/checkpoints"
    steps = [str(checkpoints_dir / f"step-{s}") for s in CONFIG["checkpoints"]["steps"]]
    if stage == "probe":
        args = ["probe", "score", "--treebank", str(REPO / CONFIG["probe"]["treebank"]), "--threads", "1"]
        args += ["--out-scores", str(out / "scores.parquet"), "--out-summary", str(out / "summary.parquet")]
        table = out / "summary.parquet"
    else:
        args = ["blimp", "score", "--data-dir", str(REPO / CONFIG["blimp"]["data_dir"])]
        args += ["--out-pairs", str(out / "pairs.parquet"), "--out-summary", str(out / "summary.parquet")]
        table = out / "pairs.parquet"
    subprocess.run(
        [sys.executable, "-m", "sasbert", *args, "--checkpoint", *steps, "--options", json.dumps(options)],
        env={**os.environ, "PYTHONPATH": str(folder / "src")},
        check=True,
        capture_output=True,
    )
    return pd.read_parquet(table)
