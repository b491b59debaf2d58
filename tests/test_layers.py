"""The package's import graph: no cycles, and no module imports a layer above its own.

Layers, lowest first (README "Architecture"): core facts, config and engines -> Trainer callbacks -> the recipe ->
applications. Every import of a ``phi3_lora_hub`` module counts, wherever it is written (module level, inside a
function, under ``TYPE_CHECKING``), because each one is a dependency of the importing module. The package façade
(``phi3_lora_hub/__init__.py``) sits above everything and is imported by nobody inside the package.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping
from pathlib import Path

import pytest

PACKAGE = "phi3_lora_hub"
ROOT = Path(__file__).resolve().parents[1] / PACKAGE

# Layer of each module: the longest matching prefix wins. Lower layers never import higher ones.
LAYERS: dict[str, int] = {
    # 0. Core: Phi-3 facts, errors, config, data, models, generation, cards, the Hub client, launch and processes.
    "version": 0,
    "errors": 0,
    "logs": 0,
    "lazy_exports": 0,
    "phi3_format": 0,
    "hardware": 0,
    "local_paths": 0,
    "run_file_names": 0,
    "file_digest": 0,
    "atomic_write": 0,
    "generation": 0,
    "decoding": 0,
    "progress_bars": 0,
    "config": 0,
    "data": 0,
    "model": 0,
    "cards": 0,
    "hub": 0,
    "distributed": 0,
    "loralib_backend": 0,
    "evaluation": 0,
    # 1. Trainer callbacks, each usable in any Trainer on its own.
    "callbacks": 1,
    # 2. The recipe that composes them with TRL's SFTTrainer.
    "training": 2,
    "loralib_backend.trainer": 2,
    "recipe": 2,
    "result": 2,
    # 3. Applications.
    "arena.compare": 3,
    "arena": 3,
    "space": 3,
    "local_hub": 3,
    "cli": 3,
    "quickstart": 3,
    "__main__": 3,
}
LAYER_NAMES = ("core", "callbacks", "recipe", "applications")


def module_names(root: Path = ROOT) -> dict[str, Path]:
    """Every module of the package: dotted name -> file."""
    names = {}
    for path in root.rglob("*.py"):
        parts = path.relative_to(root.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        names[".".join(parts)] = path
    return names


def imported_modules(name: str, path: Path, modules: Iterable[str]) -> set[str]:
    """The package modules ``name`` imports anywhere in its file (``from a import b`` means ``a.b`` if a module)."""
    known = set(modules)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name in known)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                target = f"{base}.{alias.name}"
                found.add(target if target in known else base)
    return {target for target in found if target in known and target != name}


def import_graph(root: Path = ROOT) -> dict[str, set[str]]:
    modules = module_names(root)
    return {name: imported_modules(name, path, modules) for name, path in modules.items()}


def cycles(graph: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for start in graph:
        if start in index:
            continue
        work = [(start, iter(sorted(graph.get(start, ()))))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, edges = work[-1]
            child = next(edges, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def layer_of(module: str) -> int | None:
    """The layer of a package module (None for the façade itself)."""
    relative = module.removeprefix(PACKAGE).lstrip(".")
    if not relative:
        return None
    parts = relative.split(".")
    for length in range(len(parts), 0, -1):
        layer = LAYERS.get(".".join(parts[:length]))
        if layer is not None:
            return layer
    raise AssertionError(f"{module} has no layer: add its folder to LAYERS in {Path(__file__).name}")


def upward_edges(graph: Mapping[str, Iterable[str]]) -> list[str]:
    """Imports of a higher layer (or of the façade) from inside the package, as readable lines."""
    found = []
    for source, targets in graph.items():
        source_layer = layer_of(source)
        if source_layer is None:
            continue
        for target in sorted(targets):
            target_layer = layer_of(target)
            if target_layer is None:
                found.append(f"{source} imports the package façade {PACKAGE}: import the defining module")
            elif target_layer > source_layer:
                found.append(f"{source} ({LAYER_NAMES[source_layer]}) imports {target} ({LAYER_NAMES[target_layer]})")
    return found


def test_the_package_has_no_import_cycle():
    found = cycles(import_graph())
    assert not found, "import cycles:\n" + "\n".join(" <-> ".join(component) for component in found)


def test_no_module_imports_a_layer_above_its_own():
    found = upward_edges(import_graph())
    assert not found, "upward imports:\n" + "\n".join(found)


def test_every_module_belongs_to_a_layer():
    for module in module_names():
        layer_of(module)


@pytest.mark.parametrize(
    "graph",
    [
        {"a": {"b"}, "b": {"a"}},
        {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()},
    ],
)
def test_the_cycle_check_finds_a_cycle(graph):
    assert cycles(graph)


def test_the_layer_check_finds_an_upward_import():
    assert upward_edges({f"{PACKAGE}.config.lora": {f"{PACKAGE}.recipe"}})
    assert not upward_edges({f"{PACKAGE}.recipe": {f"{PACKAGE}.config.lora"}})


def test_the_checks_read_imports_inside_functions_and_type_checking_blocks(tmp_path):
    package = tmp_path / PACKAGE
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "recipe.py").write_text("")
    (package / "config.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from phi3_lora_hub import recipe\n"
        "def f():\n    from phi3_lora_hub.recipe import x\n"
    )
    graph = import_graph(package)
    assert graph[f"{PACKAGE}.config"] == {f"{PACKAGE}.recipe"}
