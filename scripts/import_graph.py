"""The import graph of the ``provision`` package, from its source (ast; nothing is imported).

An edge A -> B: module A imports B, at module level or inside a function (a deferred import is a
dependency all the same), except under ``if TYPE_CHECKING:``. Importing ``provision.x.y`` also runs
``provision.x`` (its ``__init__``), so that is an edge too. ``python scripts/import_graph.py`` prints
the graph (one line per module: what it imports) and the cycles, if any.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

PACKAGE = "provision"


def _modules(src: Path) -> dict[str, Path]:
    out = {}
    for path in sorted((src / PACKAGE).rglob("*.py")):
        parts = path.relative_to(src).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    hidden: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for stmt in node.body:
                hidden.update(id(n) for n in ast.walk(stmt))
    return hidden


def _targets(name: str, is_package: bool, node: ast.Import | ast.ImportFrom, modules: dict[str, Path]) -> set[str]:
    found: set[str] = set()
    if isinstance(node, ast.Import):
        candidates = [alias.name for alias in node.names]
    else:
        if node.level:
            base = name.split(".") if is_package else name.split(".")[:-1]
            base = base[: len(base) - (node.level - 1)]
            module = ".".join([*base, *([node.module] if node.module else [])])
        else:
            module = node.module or ""
        candidates = [
            f"{module}.{alias.name}" if f"{module}.{alias.name}" in modules else module for alias in node.names
        ]
    for candidate in candidates:
        parts = candidate.split(".")
        # the module itself and every package above it (below the top-level package) are imported
        for end in range(2, len(parts) + 1):
            target = ".".join(parts[:end])
            if target in modules and target != name and not name.startswith(target + "."):
                found.add(target)
    return found


def import_graph(src: Path) -> dict[str, set[str]]:
    """``{module: the provision modules it imports}`` for every module under ``src/provision``."""
    modules = _modules(src)
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        hidden = _type_checking_nodes(tree)
        deps: set[str] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import | ast.ImportFrom) and id(node) not in hidden:
                deps |= _targets(name, path.name == "__init__.py", node, modules)
        graph[name] = deps
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10 * len(graph) + 100))
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(out)


def describe_cycle(graph: dict[str, set[str]], component: list[str]) -> str:
    """Each module of a cycle with the modules of the same cycle it imports."""
    members = set(component)
    return "; ".join(f"{m} -> {', '.join(sorted(graph[m] & members))}" for m in component)


def as_text(graph: dict[str, set[str]]) -> str:
    short = {m: m.removeprefix(PACKAGE + ".") for m in graph}
    lines = [
        f"{short[m]} -> {', '.join(short[d] for d in sorted(graph[m])) or '(nothing of provision)'}"
        for m in sorted(graph)
    ]
    found = cycles(graph)
    lines.append("")
    lines.append("cycles: " + ("none" if not found else " | ".join(describe_cycle(graph, c) for c in found)))
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.stdout.write(as_text(import_graph(Path(__file__).resolve().parent.parent)))
