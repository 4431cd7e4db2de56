"""The dependency rule of docs/architecture.md, checked on the source: every import (at module
level, inside functions, or under ``TYPE_CHECKING``) points down the layers, and no two modules
import each other, directly or through others."""

from __future__ import annotations

import ast
import graphlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("testbed", "attacks", "analysis")
LAYERS = ("core", "plug-in", "engine", "analysis")
CORE = {"testbed", "testbed.registry", "testbed.config", "testbed.messages", "testbed.files", "testbed.seeding", "testbed.metrics", "testbed.timing", "testbed.memory"}
ENGINE = {"testbed.party", "testbed.training", "testbed.cluster", "testbed.inprocess", "testbed.runner", "testbed.results", "testbed.run", "testbed.cli"}


def layer(module: str) -> str:
    if module.startswith("analysis"):
        return "analysis"
    return "core" if module in CORE else "engine" if module in ENGINE else "plug-in"


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path, modules: set[str]) -> set[str]:
    """The project's modules that ``path`` imports, anywhere in the file."""
    name, found = module_name(path), set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([node.module] if node.module else []))
            # ``from pkg import mod`` imports the module pkg.mod; ``from mod import name`` imports mod.
            found |= {f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names}
    return {m for m in found if m in modules and m != name}


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    paths = [p for package in PACKAGES for p in (ROOT / package).rglob("*.py")]
    modules = {module_name(p) for p in paths}
    return {module_name(p): imports_of(p, modules) for p in paths}


def test_the_graph_is_read(graph):
    # A walker that found nothing would pass the rules below vacuously.
    assert {"testbed.config", "testbed.party", "attacks.backdoor", "analysis.sweep"} <= set(graph)
    assert "testbed.registry" in graph["testbed.config"]
    assert {"testbed.protocols.base", "testbed.schemes.base"} <= graph["testbed.party"]
    assert "attacks.backdoor" in graph["testbed.plugins"]


def test_no_module_imports_a_layer_above_its_own(graph):
    upward = [
        f"{module} ({layer(module)}) imports {target} ({layer(target)})"
        for module, targets in graph.items()
        for target in targets
        if LAYERS.index(layer(target)) > LAYERS.index(layer(module))
    ]
    assert upward == []


def test_no_import_cycles(graph):
    try:
        graphlib.TopologicalSorter(graph).prepare()
    except graphlib.CycleError as err:
        pytest.fail(f"import cycle: {' -> '.join(err.args[1])}")


def test_the_engine_and_plug_ins_never_import_analysis(graph):
    assert not any(t.startswith("analysis") for m, ts in graph.items() if not m.startswith("analysis") for t in ts)
