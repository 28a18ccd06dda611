"""The modules of scai.models import each other without cycles, and only at top level.

Every import counts, function-local and ``TYPE_CHECKING`` ones included: a cycle hidden behind a
local import is still a cycle (it only moves the failure to the first call). torch is a hard
dependency of scai.models, so a local import there protects nothing either.
"""

from __future__ import annotations

import ast
from pathlib import Path

import scai.models

PACKAGE = Path(scai.models.__file__).parent
MODULES = sorted(p.stem for p in PACKAGE.glob("*.py"))


def _imported(node: ast.Import | ast.ImportFrom) -> list[str]:
    """Dotted names an import statement may load (``from a import b`` may load ``a.b``)."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    base = node.module or ""
    if node.level:  # relative: resolve against scai.models
        base = "scai.models" + (f".{base}" if base else "")
    return [base] + [f"{base}.{a.name}" for a in node.names]


def _graph() -> tuple[dict[str, set[str]], list[str]]:
    """Module -> scai.models modules it imports; and every import not at module top level."""
    graph: dict[str, set[str]] = {}
    not_top: list[str] = []
    for name in MODULES:
        path = PACKAGE / f"{name}.py"
        tree = ast.parse(path.read_text(encoding="utf-8"))
        top = {id(node) for node in tree.body}
        edges: set[str] = set()
        for node in ast.walk(tree):
            if not isinstance(node, (ast.Import, ast.ImportFrom)):
                continue
            if id(node) not in top:
                not_top.append(f"{path.name}:{node.lineno}")
            for dotted in _imported(node):
                parts = dotted.split(".")
                if parts[:2] != ["scai", "models"]:
                    continue
                target = parts[2] if len(parts) > 2 else "__init__"
                if target in MODULES and target != name:
                    edges.add(target)
        graph[name] = edges
    return graph, not_top


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    found: list[list[str]] = []
    state: dict[str, int] = {}  # 1 = on the stack, 2 = done

    def visit(u: str, stack: list[str]) -> None:
        state[u] = 1
        stack.append(u)
        for v in sorted(graph[u]):
            if state.get(v) == 1:
                found.append(stack[stack.index(v):] + [v])
            elif v not in state:
                visit(v, stack)
        stack.pop()
        state[u] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [])
    return found


def test_no_import_cycles_in_scai_models():
    graph, _ = _graph()
    assert {"pa_block", "_sparse", "_pa_common"} <= set(graph)
    assert _cycles(graph) == []
    assert "pa_block" not in graph["_sparse"]  # the sparse path depends on _pa_common only


def test_imports_are_at_top_level():
    _, not_top = _graph()
    assert not_top == [], f"function-local or conditional imports in scai.models: {not_top}"


def test_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == [["a", "b", "c", "a"]]
