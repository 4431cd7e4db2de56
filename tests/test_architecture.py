"""The dependency rule of docs/architecture.md, checked on the source: every import (at module
level, inside functions, or under ``TYPE_CHECKING``) points down the layers, and no two modules
import each other, directly or through others."""

from __future__ import annotations

import ast
import graphlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("testbed", "attacks", "analysis", "bench")
LAYERS = ("core", "plug-in", "engine", "analysis", "bench")
#: Every module's layer, by name; a package entry covers the modules inside it. A module that is
#: not listed fails the test: a new module states where it belongs.
MODULE_LAYERS = {
    "core": ["testbed", "testbed.registry", "testbed.config", "testbed.messages", "testbed.logit_map", "testbed.files", "testbed.seeding",
             "testbed.metrics", "testbed.timing", "testbed.memory", "testbed.result_schema", "testbed.network"],
    "plug-in": ["testbed.datasets", "testbed.splits", "testbed.models", "testbed.attackers", "testbed.shares", "testbed.plugins", "testbed.filters",
                "testbed.schemes", "testbed.protocols", "testbed.mpc_cost", "attacks"],
    "engine": ["testbed.party", "testbed.training", "testbed.cluster", "testbed.inprocess", "testbed.driver", "testbed.results", "testbed.run", "testbed.cli",
               "testbed.docs"],
    "analysis": ["analysis"],
    "bench": ["bench"],
}
#: Inside the plug-in layer: families that never import these others (a filter needs no attack to
#: judge an answer, a scheme no protocol to evaluate a model).
PLUGIN_RULES = {
    "testbed.filters": ("attacks", "testbed.protocols", "testbed.schemes", "testbed.attackers", "testbed.shares"),
    "testbed.schemes": ("attacks", "testbed.protocols", "testbed.filters", "testbed.attackers", "testbed.shares"),
    "testbed.models": ("attacks", "testbed.protocols", "testbed.filters", "testbed.schemes"),
    "attacks": ("testbed.protocols", "testbed.filters", "testbed.schemes", "testbed.attackers", "testbed.shares"),
}


#: Entries that cover only themselves (a package's __init__), not the modules inside.
EXACT = {"testbed"}


def within(module: str, package: str) -> bool:
    return module == package or (package not in EXACT and module.startswith(package + "."))


def layer(module: str) -> str | None:
    """The layer of the most specific entry of MODULE_LAYERS that covers ``module``."""
    found = [(len(entry), name) for name, entries in MODULE_LAYERS.items() for entry in entries if within(module, entry)]
    return max(found)[1] if found else None


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


def unlisted(graph: dict[str, set[str]]) -> list[str]:
    return [m for m in graph if layer(m) is None]


def upward(graph: dict[str, set[str]]) -> list[str]:
    return [
        f"{module} ({layer(module)}) imports {target} ({layer(target)})"
        for module, targets in graph.items()
        for target in targets
        if layer(module) and layer(target) and LAYERS.index(layer(target)) > LAYERS.index(layer(module))
    ]


def crossing(graph: dict[str, set[str]]) -> list[str]:
    return [
        f"{module} imports {target}"
        for module, targets in graph.items()
        for family, forbidden in PLUGIN_RULES.items() if within(module, family)
        for target in targets if any(within(target, f) for f in forbidden)
    ]


def test_the_graph_is_read(graph):
    # A walker that found nothing would pass the rules below vacuously.
    assert {"testbed.config", "testbed.party", "attacks.backdoor", "analysis.sweep"} <= set(graph)
    assert "testbed.registry" in graph["testbed.config"]
    assert {"testbed.protocols.base", "testbed.schemes.base"} <= graph["testbed.party"]
    assert "attacks.backdoor" in graph["testbed.plugins"]


def test_every_module_has_a_layer(graph):
    assert unlisted(graph) == []


def test_no_module_imports_a_layer_above_its_own(graph):
    assert upward(graph) == []


def test_plug_in_families_keep_to_themselves(graph):
    assert crossing(graph) == []


def test_no_import_cycles(graph):
    try:
        graphlib.TopologicalSorter(graph).prepare()
    except graphlib.CycleError as err:
        pytest.fail(f"import cycle: {' -> '.join(err.args[1])}")


def test_each_rule_catches_a_misplaced_import():
    assert unlisted({"testbed.new_engine_module": set(), "testbed.config": set()}) == ["testbed.new_engine_module"]
    assert upward({"testbed.config": {"testbed.party"}, "testbed.party": {"testbed.config"}}) == ["testbed.config (core) imports testbed.party (engine)"]
    assert upward({"testbed.driver": {"analysis.sweep"}}) == ["testbed.driver (engine) imports analysis.sweep (analysis)"]
    assert crossing({"testbed.filters.base": {"attacks.base", "testbed.metrics"}}) == ["testbed.filters.base imports attacks.base"]
