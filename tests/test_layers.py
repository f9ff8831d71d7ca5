"""The package's layers: a module imports only from its own layer or the ones below, the stages that
train and those that measure do not import each other, there is no import cycle, and what reads
tables alone is torch-free. What a module imports is also what a change to it reruns
(sasbert.code_identity), so these rules keep reruns narrow too."""

import subprocess
import sys

from sasbert import code_identity

# lowest first; a module may import its own layer's modules and those of the layers below
LAYERS = {
    "core": ["errors", "atomic", "textio", "progress", "schedules", "tables", "config", "options", "code_identity"],
    "sources": ["step_names", "hub", "checkpoints", "treebank", "blimp_data"],
    "data": ["corpus", "parse", "parse_quality", "stanza_models", "corpus_report", "tokenization", "pretokenized"],
    "train": ["regularizer", "pretrain"],
    "measure": ["probe", "blimp", "glue"],
    "analysis": ["phases", "figures", "figures.common", "figures.training", "figures.regularizers"]
    + ["figures.release", "figures.heads", "figures.phenomena", "figures.seeds"],
    "workflow": ["plan", "cli", "__main__"],
}
# layers side by side: neither imports the other
LEVEL = {"core": 0, "sources": 1, "data": 2, "train": 3, "measure": 3, "analysis": 4, "workflow": 5}
LAYER_OF = {module: layer for layer, modules in LAYERS.items() for module in modules}


def package_modules() -> list[str]:
    package = code_identity.PACKAGE_DIR
    found = []
    for path in package.rglob("*.py"):
        parts = path.relative_to(package).with_suffix("").parts
        if "__pycache__" in parts or parts == ("__init__",):
            continue
        found.append(".".join(parts[:-1]) if parts[-1] == "__init__" else ".".join(parts))
    return sorted(found)


def test_every_module_has_a_layer():
    assert sorted(set(package_modules()) - set(LAYER_OF)) == [], "place the new module in LAYERS"
    assert sorted(set(LAYER_OF) - set(package_modules())) == []


def test_no_module_imports_a_higher_layer_or_a_side_layer():
    wrong = []
    for module in package_modules():
        layer = LAYER_OF[module]
        for imported in sorted(code_identity.module_imports(module)):
            other = LAYER_OF[imported]
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
    modules = ["sasbert.phases", "sasbert.figures", "sasbert.plan", "sasbert.config", "sasbert.code_identity"]
    modules += ["sasbert.checkpoints", "sasbert.hub", "sasbert.textio"]
    code = f"import sys; import {', '.join(modules)}; print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
