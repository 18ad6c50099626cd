"""dsedge/train/: `loop.py` split by concern (issue 24) — one entry, no cycle, the old names still importable."""

from __future__ import annotations

import ast
from pathlib import Path

import dsedge.train.loop as loop

TRAIN = Path(loop.__file__).parent


def _imports(path: Path) -> set[str]:
    """dsedge.train.* modules that `path` imports (top-level and function-local)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("dsedge.train"):
            out.update(f"{node.module}.{a.name}" if node.module == "dsedge.train" else node.module
                       for a in node.names)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.startswith("dsedge.train."))
    return {m.removeprefix("dsedge.train.") for m in out}


def test_no_module_is_a_manual() -> None:
    """loop.py was 1,034 lines with every concern in it; each module now holds one."""
    sizes = {p.name: len(p.read_text(encoding="utf-8").splitlines()) for p in TRAIN.glob("*.py")}
    assert max(sizes.values()) <= 300, sizes


def test_loop_is_on_top_and_the_modules_form_no_cycle() -> None:
    graph = {p.stem: _imports(p) - {p.stem} for p in TRAIN.glob("*.py")}
    assert not [m for m, deps in graph.items() if "loop" in deps]  # nothing below imports the entry
    done: set[str] = set()

    def visit(m: str, path: tuple[str, ...]) -> None:
        assert m not in path, " -> ".join((*path, m))
        if m not in done:
            for dep in graph.get(m, ()):
                visit(dep, (*path, m))
            done.add(m)

    for m in graph:
        visit(m, ())


def test_old_names_stay_importable_and_patchable_on_loop() -> None:
    """Benchmarks and tests import these from loop; tests replace `loop.predict` and `loop.FocalLoss.forward`."""
    for name in ("train", "resume_config", "check_config", "HISTORY_FIELDS", "build_optimizer", "resolve_amp",
                 "compile_scope", "data_warnings", "predict", "FocalLoss", "_unstarted"):
        assert hasattr(loop, name), name
    assert "predict" in loop._evaluate.__code__.co_names and loop._evaluate.__globals__ is vars(loop)
