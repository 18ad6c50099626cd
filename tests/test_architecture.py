"""The import graph of dsedge/ (an AST scan, DESIGN §2): no package cycle, no upward arrow, no circle in models/.

Every `import` / `from ... import` statement counts, function-local ones included: a lazy import is
still a dependency, it only moves the moment it is paid. Packages are the first name under
`dsedge` (`dsedge.runtime.predict` -> `runtime`; top-level modules such as `stats.py` are their own
package; `dsedge/__init__.py` is `__init__`).
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "dsedge"

#: DESIGN §2, lowest first. A package may import its own tier and the tiers below, never above.
LAYERS: list[set[str]] = [
    {"__init__", "errors", "stats", "utils", "config", "bundle"},  # ground floor: no stage, no torch
    {"models", "metrics", "comparator", "machine"},
    {"engines"},
    {"runtime"},
    {"data", "train", "export", "calibration", "clinical"},  # stages (data checks with the runtime's checks)
    {"bench"},
    {"cli", "doctor", "__main__"},
]
TIER = {pkg: i for i, tier in enumerate(LAYERS) for pkg in tier}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> list[str]:
    """Every dsedge module named by an import statement in `path` (relative imports resolved)."""
    name = _module_name(path)
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package[: len(package) - node.level + 1] + ([node.module] if node.module else []))
            out += [base] + [f"{base}.{a.name}" for a in node.names]
    return [m for m in out if m == "dsedge" or m.startswith("dsedge.")]


def _package(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def module_graph() -> dict[str, set[str]]:
    modules = {_module_name(p): p for p in ROOT.rglob("*.py")}
    graph: dict[str, set[str]] = defaultdict(set)
    for name, path in modules.items():
        for target in _imports(path):
            while target not in modules and "." in target:  # `from dsedge.x import name`: the module x
                target = target.rsplit(".", 1)[0]
            if target in modules and target != name:
                graph[name].add(target)
    return graph


def package_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = defaultdict(set)
    for src, targets in module_graph().items():
        for dst in targets:
            if _package(src) != _package(dst):
                graph[_package(src)].add(_package(dst))
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle per strongly connected component of more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in list(graph):
        if v not in index:
            visit(v)
    return found


def test_every_package_has_a_tier() -> None:
    packages = {_package(m) for m in module_graph()} | {_package(_module_name(p)) for p in ROOT.rglob("*.py")}
    assert packages - set(TIER) == set(), "add the new package to LAYERS (and DESIGN §2)"


def test_no_package_cycle() -> None:
    assert cycles(package_graph()) == []


def test_no_upward_arrow() -> None:
    upward = sorted(f"{src} -> {dst}" for src, dsts in package_graph().items() for dst in dsts
                    if TIER[dst] > TIER[src])
    assert upward == []


def test_models_has_no_import_circle() -> None:
    """checkpoint <-> weights <-> zoo imported each other (issue 24): no cycle among models' modules."""
    graph = {m: {t for t in ts if t.startswith("dsedge.models")} for m, ts in module_graph().items()
             if m.startswith("dsedge.models")}
    assert cycles(graph) == []


@pytest.mark.parametrize("graph, expected", [
    ({"a": {"b"}, "b": {"a"}}, [["a", "b"]]),
    ({"a": {"b"}, "b": {"c"}}, []),
])
def test_the_cycle_finder_finds_cycles(graph: dict[str, set[str]], expected: list[list[str]]) -> None:
    assert cycles(graph) == expected


def test_the_scan_sees_function_local_imports() -> None:
    """data/check.py imports the runtime's quality checks inside a function: the scan must see that edge."""
    assert "dsedge.runtime.quality" in module_graph()["dsedge.data.check"]
