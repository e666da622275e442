"""No import circles in cnnvis_engine, cnnvis_ui, cnnvis or pages: the module graph is read statically (ast, nothing
is imported) and must have no cycle.

What counts as an edge, module A → module B:
- `import a.b.c` → a.b.c; `from a.b import c` → a.b.c when c is a module, else a.b (the package's `__init__`);
  relative imports are resolved against A's package first.
- Imports inside functions count: a function-local import is the usual way a circle is hidden, and it still
  couples the two modules both ways (each needs the other to work, and neither can be read or tested alone).
- Imports under `if TYPE_CHECKING:` do not count: they never run, they only name types.
- The implicit import of parent packages (`import a.b.c` runs `a/__init__` and `a/b/__init__`) is not an edge:
  every submodule would otherwise form a circle with a package `__init__` that re-exports it, and that order is
  Python's, not a design choice. Importing a name *from* a package (`from ..models import ModelBundle`) is an edge
  to that package's `__init__`, because the name's definition is reached through it.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("cnnvis_engine", "cnnvis_ui", "cnnvis", "pages")


@dataclass(frozen=True)
class Edge:
    source: str
    target: str
    line: int


def module_files(root: Path, packages: Sequence[str]) -> dict[str, Path]:
    """{dotted module name: file} for every .py file under the packages (a package is named by its `__init__`)."""
    found: dict[str, Path] = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import statement, function-local ones included, skipping the bodies of `if TYPE_CHECKING:`."""
    stack: list[ast.AST] = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        elif isinstance(node, ast.If) and _is_type_checking(node.test):
            stack.extend(node.orelse)
        else:
            stack.extend(ast.iter_child_nodes(node))


def _known(name: str, modules: dict[str, Path]) -> str | None:
    """The longest prefix of `name` that is one of our modules (`a.b.func` → `a.b`), or None for outside code."""
    parts = name.split(".")
    while parts:
        candidate = ".".join(parts)
        if candidate in modules:
            return candidate
        parts.pop()
    return None


def import_edges(modules: dict[str, Path]) -> list[Edge]:
    edges: list[Edge] = []
    for source, path in modules.items():
        is_package = path.name == "__init__.py"
        package = source if is_package else source.rpartition(".")[0]
        for node in _imports(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
            targets: list[str | None] = []
            if isinstance(node, ast.Import):
                targets = [_known(alias.name, modules) for alias in node.names]
            else:
                if node.level:
                    base_parts = package.split(".") if package else []
                    base_parts = base_parts[: len(base_parts) - (node.level - 1)]
                    base = ".".join([*base_parts, *([node.module] if node.module else [])])
                else:
                    base = node.module or ""
                for alias in node.names:
                    submodule = f"{base}.{alias.name}" if base else alias.name
                    targets.append(submodule if submodule in modules else _known(base, modules))
            edges += [Edge(source, t, node.lineno) for t in dict.fromkeys(targets) if t and t != source]
    return edges


def find_cycles(edges: Sequence[Edge]) -> list[list[Edge]]:
    """One cycle (as its edges, in order) per strongly connected component of more than one module (Tarjan)."""
    graph: dict[str, list[Edge]] = {}
    for edge in edges:
        graph.setdefault(edge.source, []).append(edge)
        graph.setdefault(edge.target, [])
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    components: list[list[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for edge in graph[node]:
            if edge.target not in index:
                connect(edge.target)
                low[node] = min(low[node], low[edge.target])
            elif edge.target in on_stack:
                low[node] = min(low[node], index[edge.target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(component)

    for node in sorted(graph):
        if node not in index:
            connect(node)
    return [_cycle_in(sorted(component), graph) for component in components]


def _cycle_in(component: list[str], graph: dict[str, list[Edge]]) -> list[Edge]:
    """The shortest way from the component's first module back to itself, inside the component (breadth first)."""
    members = set(component)
    start = component[0]
    came: dict[str, Edge] = {}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for edge in graph[node]:
                if edge.target == start:
                    path = [edge]
                    while path[0].source != start:
                        path.insert(0, came[path[0].source])
                    return path
                if edge.target in members and edge.target not in came:
                    came[edge.target] = edge
                    following.append(edge.target)
        frontier = following
    raise AssertionError(f"no cycle found through {start}")  # a component of >1 always has one


def describe(cycle: Sequence[Edge], modules: dict[str, Path], root: Path) -> str:
    steps = [f"{e.source} → {e.target} ({modules[e.source].relative_to(root)}:{e.line})" for e in cycle]
    return "import circle: " + "; ".join(steps)


# Edges that cross into another process, not within this one: the module is the entry of a process it starts, and the
# import runs only there. Each must still exist (a stale entry fails), and no other edge is excused.
PROCESS_ENTRIES = {
    # The locked-in worker of an uploaded ONNX model (`python -I contained_worker.py`, started by models.contained)
    # runs the whole engine in that process: its main() imports onnx_worker there, never in the server.
    ("cnnvis_engine.models.contained_worker", "cnnvis_engine.onnx_worker"),
}


def test_no_import_circles() -> None:
    modules = module_files(ROOT, PACKAGES)
    assert "cnnvis_engine.models.registry" in modules and "pages.explore" in modules
    edges = import_edges(modules)
    assert PROCESS_ENTRIES <= {(e.source, e.target) for e in edges}, "an excused edge is gone: drop it from the list"
    cycles = find_cycles([e for e in edges if (e.source, e.target) not in PROCESS_ENTRIES])
    assert not cycles, "\n".join(describe(cycle, modules, ROOT) for cycle in cycles)


def test_the_model_registry_is_a_leaf() -> None:
    """The registry imports no model source: zoo and python_models register their names into it (as in timm)."""
    modules = module_files(ROOT, PACKAGES)
    below = {e.target for e in import_edges(modules) if e.source == "cnnvis_engine.models.registry"}
    assert below <= {"cnnvis_engine.errors", "cnnvis_engine.models.bundle", "cnnvis_engine.models.weights"}, below


def _write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")


def test_a_circle_is_found_and_named(tmp_path: Path) -> None:
    _write(
        tmp_path,
        {
            "pkg/__init__.py": "",
            "pkg/a.py": "from . import b\n",
            "pkg/sub/__init__.py": "from .c import thing\n",
            "pkg/sub/c.py": "import os\n\ndef thing():\n    from ..a import x  # hidden in a function\n    return x\n",
            "pkg/b.py": "from .sub import thing\n",
            "pkg/typed.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .a import x\nimport pkg.b\n",
        },
    )
    modules = module_files(tmp_path, ["pkg"])
    edges = import_edges(modules)
    assert {(e.source, e.target) for e in edges} == {
        ("pkg.a", "pkg.b"),
        ("pkg.b", "pkg.sub"),
        ("pkg.sub", "pkg.sub.c"),
        ("pkg.sub.c", "pkg.a"),
        ("pkg.typed", "pkg.b"),  # and not pkg.a: the TYPE_CHECKING import is left out
    }
    (cycle,) = find_cycles(edges)
    assert [(e.source, e.target) for e in cycle] == [
        ("pkg.a", "pkg.b"),
        ("pkg.b", "pkg.sub"),
        ("pkg.sub", "pkg.sub.c"),
        ("pkg.sub.c", "pkg.a"),
    ]
    message = describe(cycle, modules, tmp_path)
    assert "pkg.sub.c → pkg.a (pkg/sub/c.py:4)" in message


@pytest.mark.parametrize(
    ("files", "circles"),
    [
        ({"p/__init__.py": "", "p/a.py": "import p.b\n", "p/b.py": "x = 1\n"}, 0),
        ({"p/__init__.py": "", "p/a.py": "from p import b\n", "p/b.py": "from p.a import y\n"}, 1),
        ({"p/__init__.py": "from .a import y\n", "p/a.py": "y = 1\n", "p/b.py": "from . import y\n"}, 0),
    ],
)
def test_edges_resolve_modules_and_names(tmp_path: Path, files: dict[str, str], circles: int) -> None:
    _write(tmp_path, files)
    assert len(find_cycles(import_edges(module_files(tmp_path, ["p"])))) == circles
