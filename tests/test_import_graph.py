"""The import graph of ``convc/``: no cycles, and data flows forward only.

Every ``import`` in every module counts, at module level or inside a function (an import moved
into a function to dodge a cycle is still a cycle), except those under ``if TYPE_CHECKING:``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent / "convc"

FRONT_END = (
    "convc.syntax",
    "convc.evaluate",
    "convc.values",
    "convc.prelude",
    "convc.resolve",
    "convc.layers",
    "convc.importer",
    "convc.compiler",
)
"""What turns text and files into a ``Model``; the lowering and the reference know none of it."""

BOUNDARIES = {
    # module prefix: (what it must not reach, even transitively; why)
    "convc.lower": (FRONT_END + ("convc.api", "convc.cli"), "lowering reads the resolved Model"),
    "convc.reference": (
        FRONT_END + ("convc.lower", "convc.geometry", "convc.api", "onnx"),
        "the reference is a second derivation: no shared shape helpers, lowering or ONNX",
    ),
    "convc.model": (FRONT_END + ("convc.lower",), "the IR knows no pass"),
    "convc.specs": (FRONT_END + ("convc.lower", "convc.model"), "specs are leaf data"),
}


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(path): path for path in ROOT.rglob("*.py")}


def _under_type_checking(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> bool:
    while node in parents:
        node = parents[node]
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            return True
    return False


def _imports(name: str) -> set[str]:
    """The modules ``name`` imports: convc's own, and the top-level names of others."""
    tree = ast.parse(MODULES[name].read_text())
    parents = {child: parent for parent in ast.walk(tree) for child in ast.iter_child_nodes(parent)}
    package = name if MODULES[name].name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if _under_type_checking(node, parents):
            continue
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                found.add(submodule if submodule in MODULES else base)
    return {
        module if module.startswith("convc") else module.split(".")[0]
        for module in found
        if module != name
    }


GRAPH = {name: _imports(name) for name in MODULES}


def _cycles() -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    components = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in sorted(GRAPH.get(node, ())):
            if target not in GRAPH:
                continue
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for node in sorted(GRAPH):
        if node not in index:
            visit(node)
    return components


def _reaches(start: str) -> set[str]:
    seen: set[str] = set()
    frontier = [start]
    while frontier:
        for target in GRAPH.get(frontier.pop(), ()):
            if target not in seen:
                seen.add(target)
                frontier.append(target)
    return seen


def test_no_import_cycles():
    assert _cycles() == []


@pytest.mark.parametrize("prefix", sorted(BOUNDARIES))
def test_data_flows_forward(prefix):
    forbidden, why = BOUNDARIES[prefix]
    for name in sorted(m for m in MODULES if m == prefix or m.startswith(prefix + ".")):
        bad = sorted(
            target
            for target in _reaches(name)
            if any(target == f or target.startswith(f + ".") for f in forbidden)
        )
        assert not bad, f"{name} reaches {bad}: {why}"


def test_the_graph_sees_imports_inside_functions():
    """A function-level import counts: the check that found the old cycles still looks."""
    cli = MODULES["convc.cli"].read_text()
    assert "\nfrom convc.api" not in cli and "    from convc.api import" in cli
    assert "convc.api" in GRAPH["convc.cli"]
