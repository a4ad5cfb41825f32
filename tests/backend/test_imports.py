"""The import graph has no loops: no module imports one that (directly or through others) imports it back.

Every import counts, at the top of a module or inside a function, ``TYPE_CHECKING`` blocks
included: a deferred import that closes a loop still ties two modules into one. The graph is
read from the source (``ast``), so nothing is imported to check it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.backend.server_process import REPO

PACKAGES = ("backend", "addon", "render", "training")


def module_names(package: str) -> dict[str, Path]:
    """Every module of ``package`` by dotted name (a package by its own name, not ``.__init__``)."""
    out = {}
    for path in sorted((REPO / package).rglob("*.py")):
        parts = path.relative_to(REPO).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def imported_modules(name: str, path: Path, known: set[str]) -> set[str]:
    """The modules of ``known`` that module ``name`` (at ``path``) imports anywhere in its source."""
    is_package = path.name == "__init__.py"
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = name.split(".")
                anchor = anchor[:len(anchor) - node.level + (1 if is_package else 0)]
                base = ".".join(anchor + ([base] if base else []))
            # ``from a.b import c`` imports the module a.b.c when there is one, else names of a.b.
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names]
        else:
            continue
        out.update(t for t in targets if t in known and t != name)
    return out


def import_loops(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    loops = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
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
                loops.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return loops


def test_loop_finder_finds_a_two_module_loop_and_a_longer_one():
    graph = {"a": {"b"}, "b": {"a", "c"}, "c": set(), "x": {"y"}, "y": {"z"}, "z": {"x"}, "w": {"x"}}
    assert sorted(import_loops(graph)) == [["a", "b"], ["x", "y", "z"]]
    assert import_loops({"a": {"b"}, "b": {"c"}, "c": set()}) == []


def test_reader_sees_deferred_relative_and_type_checking_imports(tmp_path):
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("from .one import x\n")
    (pkg / "one.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg import two\n")
    (pkg / "two.py").write_text("def f():\n    from pkg.one import x\n    import pkg.three\n")
    (pkg / "three.py").write_text("")
    known = {"pkg", "pkg.one", "pkg.two", "pkg.three"}
    assert imported_modules("pkg", pkg / "__init__.py", known) == {"pkg.one"}
    assert imported_modules("pkg.one", pkg / "one.py", known) == {"pkg.two"}
    assert imported_modules("pkg.two", pkg / "two.py", known) == {"pkg.one", "pkg.three"}


@pytest.mark.parametrize("package", PACKAGES)
def test_no_module_imports_one_that_imports_it_back(package):
    modules = module_names(package)
    known = set(modules)
    graph = {name: imported_modules(name, path, known) for name, path in modules.items()}
    assert sum(len(v) for v in graph.values()) > len(graph) // 2        # the reader does see the imports
    loops = import_loops(graph)
    assert not loops, "import loops (move what they share below them): " + "; ".join(
        " <-> ".join(loop) for loop in loops)
