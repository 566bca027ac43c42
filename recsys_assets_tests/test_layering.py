"""The package's layers, checked on the source: the base of lib/ imports nothing above it,
lib/ never imports defs/ or the CLI, and no module-level import circle exists anywhere.

Only module-level imports count (an import inside a function is a deliberate late binding,
e.g. the CLI loading Dagster definitions on demand).
"""

from __future__ import annotations

import ast
from pathlib import Path

import recsys_assets

PKG = Path(recsys_assets.__file__).parent
# The base of lib/: plain data, paths, snapshots and numerics; everything else builds on it.
BASE = {"errors", "confighash", "schema", "lake", "artifacts", "snapshot", "interactions", "topk", "wheels", "progress", "markdown"}


def _module_name(path: Path) -> str:
    rel = path.relative_to(PKG.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _top_level_imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    out: set[str] = set()
    pkg = _module_name(path) if path.name == "__init__.py" else _module_name(path).rpartition(".")[0]
    for node in tree.body:  # module level only
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(pkg.split(".")[: len(pkg.split(".")) - node.level + 1] + ([base] if base else []))
            out.add(base)
            out |= {f"{base}.{a.name}" for a in node.names}
    return {m for m in out if m.startswith("recsys_assets")}


def _graph() -> dict[str, set[str]]:
    modules = {_module_name(p): p for p in PKG.rglob("*.py")}
    return {name: {m for m in _top_level_imports(p) if m in modules and m != name} for name, p in modules.items()}


def test_base_of_lib_imports_only_the_base():
    graph = _graph()
    base = {f"recsys_assets.lib.{b}" for b in BASE}
    assert base <= graph.keys(), base - graph.keys()
    offenders = {m: sorted(graph[m] - base - {"recsys_assets", "recsys_assets.lib"}) for m in base}
    assert not {m: v for m, v in offenders.items() if v}, offenders


def test_lib_never_imports_defs_or_the_cli():
    graph = _graph()
    bad = {m: sorted(d for d in deps if not d.startswith("recsys_assets.lib") and d != "recsys_assets")
           for m, deps in graph.items() if m.startswith("recsys_assets.lib")}
    assert not {m: v for m, v in bad.items() if v}, bad


def test_no_import_circles():
    graph = _graph()
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for dep in sorted(graph[node]):
            if state.get(dep) == 1:
                cycles.append(stack[stack.index(dep):] + [dep] if dep in stack else [node, dep])
            elif dep not in state:
                visit(dep, stack + [dep])
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    assert not cycles, cycles[:5]
