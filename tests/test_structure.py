"""The package's import graph, read with ast: no module imports itself through others at import
time, and the modules that train, evaluate and read checkpoints form no circle even through the
imports inside functions (a lazy import that only dodges a circle hides a tangle)."""

import ast
from pathlib import Path

from .conftest import ROOT

PACKAGE = ROOT / "fcngraph"
# the core (spec, settings, shapes, graph, compile) still imports lazily in a circle; these may not
RUNNING = {"train", "surgery", "evaluate", "checkpoint", "compare", "predict", "infer", "export", "experiment"}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path, modules: set[str], top_level_only: bool) -> set[str]:
    """The package modules `path` imports (at module level only, or anywhere in it)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = module_name(path).split(".")[: None if path.name == "__init__.py" else -1]
    found = set()
    for node in tree.body if top_level_only else ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            base = ".".join(package[: len(package) - node.level + 1]) if node.level else ""
            source = ".".join(p for p in (base, node.module or "") if p)
            found |= {f"{source}.{a.name}" if f"{source}.{a.name}" in modules else source for a in node.names}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
    return found & modules - {module_name(path)}


def graph(top_level_only: bool) -> dict[str, set[str]]:
    files = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    return {name: imports(path, set(files), top_level_only) for name, path in files.items()}


def circles(edges: dict[str, set[str]]) -> list[list[str]]:
    """One circle per strongly connected group of two or more modules (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in edges[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while not group or group[-1] != node:
                group.append(stack.pop())
            if len(group) > 1:
                found.append(sorted(group))

    for node in edges:
        if node not in index:
            visit(node)
    return found


def test_the_graph_reader_sees_imports_and_circles():
    edges = graph(top_level_only=True)
    assert "fcngraph.checkpoint" in edges["fcngraph.surgery"] and "fcngraph.surgery" in edges["fcngraph.train"]
    assert "fcngraph.ops.base" in edges["fcngraph.ops.conv"]  # relative imports inside the subpackage
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_module_imports_itself_at_import_time():
    assert circles(graph(top_level_only=True)) == []


def test_training_evaluation_and_checkpoints_import_no_circle_even_lazily():
    tangled = [group for group in circles(graph(top_level_only=False))
               if any(name.split(".")[-1] in RUNNING for name in group)]
    assert tangled == []
