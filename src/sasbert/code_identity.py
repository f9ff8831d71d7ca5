"""The code part of a result's identity: a fingerprint of the package modules that compute it.

Every cached thing in the pipeline (Snakemake's record of a job, a run's resume state, a
per-checkpoint table) is valid for what it was computed from: the content of its inputs, its
options and its code. This module defines the code part, once, for all three:

- **Which code.** The import closure of the modules a stage runs: every ``sasbert`` module they
  import, at any depth, found by reading their import statements (imports inside functions
  included). So a module that a stage never imports never reruns it; keep imports narrow.
- **What about it.** Each module's syntax tree with its docstrings removed, without line numbers.
  Comments, docstrings, blank lines and formatting do not count; a changed name, constant,
  expression or message does.
- **Not where it lives.** Modules are named relative to the package, so a clone or a moved project
  has the same fingerprints.

The package's ``__init__`` (its name and version) and this module (it computes identity, not
results; a change to how code is fingerprinted changes every fingerprint anyway) are not part of
any closure.

Torch-free and cheap (one parse per module): the Snakefile computes fingerprints while it builds
the DAG, and jobs compute their own from the code they run.
"""

from __future__ import annotations

import ast
import functools
import hashlib
from collections.abc import Iterable
from pathlib import Path

PACKAGE = "sasbert"
PACKAGE_DIR = Path(__file__).resolve().parent
# imported by every module but computing nothing (see the module docstring)
NOT_COMPUTATION = frozenset({"__init__", "code_identity"})


def module_file(name: str, package_dir: Path = PACKAGE_DIR) -> Path | None:
    """The file of package module ``name`` (``probe``, or ``measure.probe`` in a subpackage)."""
    base = package_dir.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def module_imports(name: str, package_dir: Path = PACKAGE_DIR) -> set[str]:
    """The package modules that module ``name``'s import statements name, anywhere in it (and the
    packages a subpackage's module runs first)."""
    found: set[str] = set()
    for node in ast.walk(_tree(module_file(name, package_dir))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            parts = node.module.split(".")
            if parts[0] != PACKAGE:
                continue
            base = ".".join(parts[1:])
            if base:
                found.add(base)
            # `from sasbert import probe` or `from sasbert.measure import probe`: the names may be modules
            for alias in node.names:
                named = f"{base}.{alias.name}" if base else alias.name
                if module_file(named, package_dir) is not None:
                    found.add(named)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == PACKAGE and len(parts) > 1:
                    found.add(".".join(parts[1:]))
    # a module in a subpackage runs its packages' __init__ first
    for imported in list(found):
        parts = imported.split(".")
        found.update(".".join(parts[:i]) for i in range(1, len(parts)))
    return found - {name}


def module_closure(modules: Iterable[str], package_dir: Path = PACKAGE_DIR, exclude: Iterable[str] = ()) -> list[str]:
    """``modules`` and every package module they import, at any depth, sorted; ``exclude``d modules
    are left out and not followed (the modules they import may still come in by other paths)."""
    skip = NOT_COMPUTATION | set(exclude)
    seen: set[str] = set()
    todo = [m for m in modules if m not in skip]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        if module_file(name, package_dir) is None:
            raise ValueError(f"{PACKAGE}.{name}: no such module in {package_dir}")
        seen.add(name)
        todo += [m for m in module_imports(name, package_dir) if m not in skip and m not in seen]
    return sorted(seen)


def _strip_docstrings(tree: ast.AST) -> ast.AST:
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                if isinstance(body[0].value.value, str):
                    node.body = body[1:] or [ast.Pass()]
    return tree


@functools.cache
def _stripped_tree(path: str, mtime_ns: int, size: int) -> ast.AST:
    """A module's syntax tree without its docstrings, parsed once per version of the file (its
    imports and its fingerprint are both read off it)."""
    return _strip_docstrings(ast.parse(Path(path).read_text(encoding="utf-8"), filename=path))


def _tree(path: Path) -> ast.AST:
    stat = path.stat()
    return _stripped_tree(str(path), stat.st_mtime_ns, stat.st_size)


def module_fingerprint(path: Path) -> str:
    """sha256 of a module's syntax tree without docstrings, line numbers or comments."""
    return hashlib.sha256(ast.dump(_tree(path), include_attributes=False).encode()).hexdigest()


def module_fingerprints(
    modules: Iterable[str], package_dir: Path = PACKAGE_DIR, exclude: Iterable[str] = ()
) -> dict[str, str]:
    """{module: its fingerprint} over the import closure of ``modules``."""
    return {
        name: module_fingerprint(module_file(name, package_dir))
        for name in module_closure(modules, package_dir, exclude)
    }


def combine(fingerprints: dict[str, str]) -> str:
    """One short fingerprint for a closure's modules (their names and fingerprints)."""
    text = "\n".join(f"{name} {value}" for name, value in sorted(fingerprints.items()))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def code_fingerprint(*modules: str, package_dir: Path = PACKAGE_DIR, exclude: Iterable[str] = ()) -> str:
    """The fingerprint of the code that ``modules`` run (see the module docstring)."""
    return combine(module_fingerprints(modules, package_dir, exclude))


def changed_modules(old: dict[str, str], new: dict[str, str]) -> list[str]:
    """The modules whose code differs between two {module: fingerprint} maps (added or gone too)."""
    return sorted(name for name in set(old) | set(new) if old.get(name) != new.get(name))


# What the training code of a run is. A run whose lambda is 0 at every step never computes the
# regularizer: its loss, gradients and weights are the MLM's alone (train.trainer.SASTrainer calls into
# regularizer.py only where lambda != 0, and the one call made at lambda 0, the logged R's weight,
# is discarded). So a fix to the regularizer retrains the regularized runs and not the baselines,
# which are the reference every other run is read against and the most costly to redo.
#
# Nor is the spec's check (train.spec, which imports the config's code) training code: the spec it
# completes, not the one given, is in the run's identity (train/spec.py's docstring says why).
TRAINING_MODULES = ("train.pretrain",)
REGULARIZER_MODULES = ("train.regularizer",)
SPEC_MODULES = ("train.spec",)


def training_modules(lambda_schedule) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(modules, excluded modules) of the training code of a run with this lambda schedule."""
    from sasbert.schedules import is_zero

    return TRAINING_MODULES, SPEC_MODULES + (REGULARIZER_MODULES if is_zero(lambda_schedule) else ())


def training_fingerprints(lambda_schedule, package_dir: Path = PACKAGE_DIR) -> dict[str, str]:
    modules, exclude = training_modules(lambda_schedule)
    return module_fingerprints(modules, package_dir, exclude)


def training_fingerprint(lambda_schedule, package_dir: Path = PACKAGE_DIR) -> str:
    return combine(training_fingerprints(lambda_schedule, package_dir))
