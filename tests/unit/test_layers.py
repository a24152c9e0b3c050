"""The package's layers point down, and no two of its parts import each other in a circle.

Read from the source with ``ast`` (no import is run): every ``import`` statement counts,
those inside functions too; an import only under ``if TYPE_CHECKING:`` does not (it is for
the type checker, never run). The lazy names of ``corral/__init__.py`` (its ``_LAZY`` table)
count as imports of the package.

A *part* is a subpackage of ``corral`` (``corral.core``, ``corral.launchers``, ...) or a
top-level module (``corral.errors``, ``corral.run``); ``corral`` itself (its ``__init__``)
is a part too, the public facade above everything.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "corral"

CONNECTOR_CONTRACT = "corral.connectors.base"


def module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imports_of(root: Path, path: Path) -> list[tuple[str, int]]:
    """``(imported module, line)`` for every import of ``path`` that runs."""
    name = module_name(root, path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: list[tuple[str, int]] = []
    top = root.name

    class Visitor(ast.NodeVisitor):
        def visit_If(self, node: ast.If) -> None:
            if _is_type_checking(node.test):
                for child in node.orelse:
                    self.visit(child)
                return
            self.generic_visit(node)

        def visit_Import(self, node: ast.Import) -> None:
            found.extend((alias.name, node.lineno) for alias in node.names)

        def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                module = ".".join([*base, *([node.module] if node.module else [])])
            else:
                module = node.module or ""
            for alias in node.names:
                sub = f"{module}.{alias.name}"
                # `from corral.core import job` imports the module corral.core.job
                is_module = (root.parent / Path(*sub.split("."))).with_suffix(".py").exists() or (
                    root.parent / Path(*sub.split(".")) / "__init__.py"
                ).exists()
                found.append((sub if is_module else module, node.lineno))

    tree = ast.parse(path.read_text(encoding="utf-8"))
    Visitor().visit(tree)
    if path.name == "__init__.py" and name == top:
        for node in tree.body:  # the facade's lazy names: {"name": "module", ...}
            if (
                isinstance(node, ast.Assign)
                and any(isinstance(t, ast.Name) and t.id == "_LAZY" for t in node.targets)
                and isinstance(node.value, ast.Dict)
            ):
                for value in node.value.values:
                    if isinstance(value, ast.Constant) and isinstance(value.value, str):
                        found.append((value.value, node.lineno))
    return [(m, line) for m, line in found if m == top or m.startswith(top + ".")]


def part_of(module: str) -> str:
    """``corral.core.job`` → ``corral.core``; ``corral.errors`` → ``corral.errors``."""
    pieces = module.split(".")
    return ".".join(pieces[:2])


def import_graph(root: Path) -> dict[str, list[tuple[str, str]]]:
    """For each module of the package: ``(imported module, 'file:line')``."""
    graph: dict[str, list[tuple[str, str]]] = {}
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root.parent)
        graph[module_name(root, path)] = [
            (target, f"{rel}:{line}") for target, line in imports_of(root, path)
        ]
    return graph


def part_edges(graph: dict[str, list[tuple[str, str]]]) -> dict[str, dict[str, list[str]]]:
    """``{part: {imported part: [where]}}``, between different parts."""
    edges: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for module, targets in graph.items():
        for target, where in targets:
            a, b = part_of(module), part_of(target)
            if a != b:
                edges[a][b].append(f"{where} imports {target}")
    return edges


def cycles(edges: dict[str, dict[str, list[str]]]) -> list[list[str]]:
    """The strongly connected components of more than one part (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges.get(v, {})):
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
                found.append(sorted(component))

    nodes = set(edges) | {w for targets in edges.values() for w in targets}
    for v in sorted(nodes):
        if v not in index:
            visit(v)
    return found


def describe_cycle(component: list[str], edges: dict[str, dict[str, list[str]]]) -> str:
    inside = set(component)
    lines = [" <-> ".join(component)]
    for a in component:
        for b, where in sorted(edges.get(a, {}).items()):
            if b in inside:
                lines.append(f"  {a} -> {b}: {where[0]}" + (f" (+{len(where) - 1})" if len(where) > 1 else ""))
    return "\n".join(lines)


def violations(root: Path) -> list[str]:
    """Every broken rule, one line each."""
    graph = import_graph(root)
    top = root.name
    core, connectors, plugins = f"{top}.core", f"{top}.connectors", f"{top}.plugins"
    allowed_below_core = {f"{top}.errors", f"{top}._version", f"{top}.connectors.base"}
    found = []

    def inside(module: str, part: str) -> bool:
        return module == part or module.startswith(part + ".")

    for module, targets in graph.items():
        for target, where in targets:
            if inside(module, core) and not (inside(target, core) or target in allowed_below_core):
                found.append(f"{where}: the core imports {target} (only corral.errors, "
                             "corral._version and the connector contract, "
                             "corral.connectors.base)")
            if inside(module, connectors) and part_of(target) in (core, f"{top}.launchers"):
                found.append(f"{where}: a connector imports {target} (connectors know "
                             "nothing of jobs or launchers)")
            if inside(module, plugins) and part_of(target) == f"{top}.launchers":
                found.append(f"{where}: the plugin layer imports {target} (the composition "
                             "root registers the built-in launchers)")
    edges = part_edges(graph)
    found += [f"circle of imports: {describe_cycle(c, edges)}" for c in cycles(edges)]
    return found


def test_the_package_keeps_its_layers_and_has_no_circle_of_imports() -> None:
    problems = violations(PACKAGE)
    assert not problems, "\n".join(problems)


# --- the checker itself, on small packages written for the purpose -----------------------


def write_package(tmp_path: Path, files: dict[str, str]) -> Path:
    root = tmp_path / "corral"
    for rel, text in {"__init__.py": "", **files}.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        for parent in path.relative_to(root).parents:
            (root / parent / "__init__.py").touch()
        path.write_text(text)
    return root


def test_an_import_inside_a_function_counts_and_one_for_the_type_checker_does_not(tmp_path):
    root = write_package(tmp_path, {
        "core/job.py": "def f():\n    from corral.launchers import local\n",
        "core/task.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from corral.app import x\n",
        "launchers/local.py": "from corral.core import job\n",
        "errors.py": "",
    })
    problems = violations(root)
    assert any("core/job.py:2: the core imports corral.launchers.local" in p for p in problems)
    assert any(p.startswith("circle of imports: corral.core <-> corral.launchers") for p in problems)
    assert not any("corral.app" in p for p in problems)


def test_connector_and_plugin_rules_are_enforced(tmp_path):
    root = write_package(tmp_path, {
        "connectors/ssh.py": "import corral.core.job\n",
        "plugins/manager.py": "from corral.launchers.local import LocalLauncher\n",
        "core/job.py": "from corral.connectors.base import Connector\nfrom corral.errors import E\n",
        "connectors/base.py": "from corral.errors import E\n",
        "launchers/local.py": "",
        "errors.py": "",
    })
    problems = violations(root)
    assert any("connectors/ssh.py:1: a connector imports corral.core.job" in p for p in problems)
    assert any("plugins/manager.py:1: the plugin layer imports corral.launchers.local" in p
               for p in problems)
    # errors and the connector contract are what the core may import
    assert not any("the core imports" in p for p in problems)


def test_the_facade_lazy_names_count_as_imports(tmp_path):
    root = write_package(tmp_path, {
        "__init__.py": '_LAZY = {"experiment": "corral.app.experiment"}\n',
        "app/experiment.py": "import corral\n",
    })
    assert any(p.startswith("circle of imports: corral <-> corral.app") for p in violations(root))


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("from . import job", "corral.core.job"),
        ("from .job import Job", "corral.core.job"),
        ("from ..errors import E", "corral.errors"),
    ],
)
def test_relative_imports_are_resolved(tmp_path, source, expected):
    root = write_package(tmp_path, {"core/task.py": source + "\n", "core/job.py": "", "errors.py": ""})
    (target, _), = imports_of(root, root / "core" / "task.py")
    assert target == expected
