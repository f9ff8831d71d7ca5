"""The package's layers: a module imports only from its own layer or the ones below, the stages that
train and those that measure do not import each other, there is no import cycle, and what reads
tables alone is torch-free. What a module imports is also what a change to it reruns
(sasbert.code_identity), so these rules keep reruns narrow too."""

import subprocess
import sys

from sasbert import code_identity

# The package's layout is its layering: a module's layer is its subpackage (sasbert.data.corpus is
# in "data"); the top-level modules are the core every stage uses, or the workflow above them all.
# Lowest first; a module may import its own layer's modules and those of the layers below.
LEVEL = {"core": 0, "data": 1, "train": 2, "measure": 2, "analysis": 3, "workflow": 4}  # equal: side by side
WORKFLOW = {"workflow", "cli", "__main__"}
SUBPACKAGES = {"data", "train", "measure", "analysis"}


def layer_of(module: str) -> str:
    top = module.split(".")[0]
    if top in SUBPACKAGES:
        return top
    return "workflow" if module in WORKFLOW else "core"


def package_modules() -> list[str]:
    package = code_identity.PACKAGE_DIR
    found = []
    for path in package.rglob("*.py"):
        parts = path.relative_to(package).with_suffix("").parts
        if "__pycache__" in parts or parts == ("__init__",):
            continue
        found.append(".".join(parts[:-1]) if parts[-1] == "__init__" else ".".join(parts))
    return sorted(found)


def test_the_top_level_holds_only_the_core_and_the_workflow():
    """A stage's module lives in its stage's subpackage; the top level is for what every stage uses."""
    core = {m for m in package_modules() if layer_of(m) == "core"}
    shared = {"errors", "atomic", "textio", "progress", "tables", "config", "options", "code_identity"}
    # lambda schedules are read by the plan, the analysis and training; the hub and step names by data
    # and measures
    assert core == shared | {"schedules", "hub", "step_names"}


def test_no_module_imports_a_higher_layer_or_a_side_layer():
    wrong = []
    for module in package_modules():
        layer = layer_of(module)
        for imported in sorted(code_identity.module_imports(module)):
            other = layer_of(imported)
            if LEVEL[other] > LEVEL[layer] or (LEVEL[other] == LEVEL[layer] and other != layer):
                wrong.append(f"{module} ({layer}) imports {imported} ({other})")
    assert wrong == []


def test_no_import_cycle():
    graph = {module: code_identity.module_imports(module) for module in package_modules()}
    cycles, state = [], {}

    def visit(module, path):
        state[module] = "open"
        for imported in sorted(graph[module]):
            if state.get(imported) == "open":
                cycles.append(" -> ".join([*path[path.index(imported) :], imported]))
            elif imported not in state:
                visit(imported, [*path, imported])
        state[module] = "done"

    for module in graph:
        if module not in state:
            visit(module, [module])
    assert cycles == []


def test_what_reads_tables_alone_is_torch_free():
    """The DAG is built on login nodes and laptops: the workflow's imports and the analysis stage
    must not load torch or transformers."""
    reads_tables = [m for m in package_modules() if layer_of(m) in ("core", "analysis") or m == "workflow"]
    modules = [f"sasbert.{m}" for m in reads_tables + ["measure.checkpoints", "hub"]]
    code = f"import sys; import {', '.join(modules)}; print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
