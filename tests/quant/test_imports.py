"""qfcn.quant imports downward only: no cycle between its modules, nothing above it in qfcn."""

from __future__ import annotations

import ast
from pathlib import Path

import qfcn.quant

PKG = Path(qfcn.quant.__file__).parent
ALLOWED_OUTSIDE = {"qfcn.io"}  # the bottom layer


def _imports(path: Path) -> set[str]:
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
    return {m for m in out if m == "qfcn" or m.startswith("qfcn.")}


def test_no_cycle_and_no_upward_import() -> None:
    graph = {f"qfcn.quant.{p.stem}": _imports(p) for p in PKG.glob("*.py") if p.stem != "__init__"}
    for mod, deps in graph.items():
        outside = {d for d in deps if not d.startswith("qfcn.quant.")}
        assert outside <= ALLOWED_OUTSIDE, (mod, outside)
        assert "qfcn.quant" not in deps, f"{mod} imports the package __init__ (a cycle through the API)"
    done: set[str] = set()

    def visit(mod: str, path: tuple[str, ...]) -> None:
        assert mod not in path, f"import cycle: {' -> '.join(path + (mod,))}"
        if mod in done:
            return
        for dep in graph.get(mod, ()):
            visit(dep, path + (mod,))
        done.add(mod)

    for mod in graph:
        visit(mod, ())
