"""The package's layers: imports only go down, never sideways between units of one layer (except
the pairs in ALLOWED), and no two modules import each other, directly or round a cycle.

A module's *unit* is its top-level module or package under qfcn (``qfcn/study/runs.py`` ->
``study``); its layer is LAYERS[unit]. Every import is counted, also those inside functions."""
import ast
from pathlib import Path


LAYERS = {
    "io": 0,
    "data": 1, "models": 1, "quant": 1, "metrics": 1, "matching": 1, "figures": 1,
    "infer": 2, "postprocess": 2,
    "train": 3,
    "score": 4,
    "suggest": 5,
    "study": 6,
    "cli": 7, "__main__": 7, "_bootstrap": 7,
}
# same layer, importer -> imported: postprocess scores with metrics, infer runs models, metrics may
# split its matching out, and the entry point checks the environment before it calls the cli
ALLOWED = {("postprocess", "metrics"), ("infer", "models"), ("metrics", "matching"),
           ("__main__", "_bootstrap"), ("__main__", "cli")}


def _modules(root: Path) -> dict[str, Path]:
    """Dotted name -> file of every module of the package at ``root`` (``root.name`` is the package)."""
    out = {}
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root.parent).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """Modules of the package that module ``name`` imports (the most specific existing module)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            found.update(f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names)
    root = next(iter(modules)).split(".")[0]
    return {m for m in found if m == root or m.startswith(root + ".")} - {name}


def _unit(name: str) -> str | None:
    parts = name.split(".")
    return parts[1] if len(parts) > 1 else None  # None: the package's own __init__ (its version)


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def layer_violations(root: Path) -> list[str]:
    """Every import of the package at ``root`` that goes up a layer, sideways between units of one
    layer (outside ALLOWED) or into a unit without a layer, and every import cycle."""
    modules = _modules(Path(root))
    graph = {name: _imports(name, path, modules) for name, path in modules.items()}
    problems = []
    for name, targets in sorted(graph.items()):
        src = _unit(name)
        for target in sorted(targets):
            dst = _unit(target)
            if dst is None or src == dst or src is None:
                continue
            if src not in LAYERS or dst not in LAYERS:
                problems.append(f"{name} -> {target}: unit {src if src not in LAYERS else dst!r} has no layer")
            elif LAYERS[dst] > LAYERS[src]:
                problems.append(f"{name} -> {target}: upward import (layer {LAYERS[src]} -> {LAYERS[dst]})")
            elif LAYERS[dst] == LAYERS[src] and (src, dst) not in ALLOWED:
                problems.append(f"{name} -> {target}: sideways import within layer {LAYERS[src]}")
    problems += [f"import cycle: {' -> '.join(c)}" for c in _cycles(graph)]
    return problems


def _package(root: Path, files: dict[str, str]) -> Path:
    for rel, text in {"__init__.py": "__version__ = '0'\n", **files}.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


def test_layer_violations_accepts_downward_imports(tmp_path):
    pkg = _package(tmp_path / "qfcn", {
        "io.py": "from qfcn import __version__\n",
        "models.py": "from qfcn.io import ROOT\n",
        "study/__init__.py": "",
        "study/runs.py": "from qfcn import io\nfrom . import params\n",
        "study/params.py": "from qfcn.study.records import X\n",
        "study/records.py": "import qfcn.models\n",
        "cli.py": "from qfcn.study import runs\n",
    })
    assert layer_violations(pkg) == []


def test_layer_violations_finds_upward_sideways_and_unknown(tmp_path):
    pkg = _package(tmp_path / "qfcn", {
        "io.py": "def f():\n    from qfcn.study import runs\n",
        "data.py": "from qfcn import models\n",
        "models.py": "",
        "splits.py": "",
        "train.py": "from qfcn.splits import x\n",
        "study/__init__.py": "",
        "study/runs.py": "",
    })
    assert layer_violations(pkg) == [
        "qfcn.data -> qfcn.models: sideways import within layer 1",
        "qfcn.io -> qfcn.study.runs: upward import (layer 0 -> 6)",
        "qfcn.train -> qfcn.splits: unit 'splits' has no layer",
    ]


def test_layer_violations_finds_a_cycle(tmp_path):
    pkg = _package(tmp_path / "qfcn", {
        "quant/__init__.py": "from qfcn.quant.inq import f\n",
        "quant/inq.py": "from qfcn.quant.uniform import g\n",
        "quant/uniform.py": "from qfcn.quant import f\n",
    })
    assert layer_violations(pkg) == ["import cycle: qfcn.quant -> qfcn.quant.inq -> qfcn.quant.uniform"]


def test_qfcn_has_no_upward_import_and_no_cycle():
    root = Path(__file__).resolve().parent.parent / "qfcn"
    assert layer_violations(root) == []
