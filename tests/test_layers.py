"""The package's shape, measured from its source: layers that import only downwards, no import
cycle between files, a short top level and short modules.

Every import statement counts, inside functions too; only ``if TYPE_CHECKING:`` blocks are left
out (they never run). A cycle held apart by an import inside a function still makes two modules
that cannot be understood, tested or moved one without the other.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from functools import cache
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = "peft_ser"

LAYERS: tuple[frozenset[str], ...] = tuple(
    frozenset(layer.split())
    for layer in (
        "utils",
        "data",
        "corpora",
        "models",
        "zoo",
        "config",
        "runs",
        "inference",
        "evaluation",
        "training",
        "export serving sweep demo",
        "cli",
    )
)
"""Subpackages from the bottom up. A module may import its own layer's package and any lower
layer; siblings on one line do not import each other."""

MAX_TOP_LEVEL_MODULES = 6
MAX_LINES = 500


@cache
def modules() -> dict[str, Path]:
    """Dotted module name → file, for every module of the package."""
    found = {}
    for path in (SRC / PACKAGE).rglob("*.py"):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _import_statements(node: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.If) and _is_type_checking(child):
            for branch in child.orelse:
                yield from _import_statements_of(branch)
        else:
            yield from _import_statements_of(child)


def _import_statements_of(node: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    if isinstance(node, (ast.Import, ast.ImportFrom)):
        yield node
    yield from _import_statements(node)


def _known(name: str) -> str | None:
    """The package's module that ``name`` is, or lies in (``a.b.Name`` → ``a.b``)."""
    while name and name not in modules():
        name = name.rpartition(".")[0]
    return name or None


def _imported_names(module: str, statement: ast.Import | ast.ImportFrom) -> list[str]:
    if isinstance(statement, ast.Import):
        return [alias.name for alias in statement.names]
    base = statement.module or ""
    if statement.level:
        is_package = modules()[module].name == "__init__.py"
        parts = module.split(".")[: len(module.split(".")) - statement.level + is_package]
        base = ".".join([*parts, base] if base else parts)
    return [f"{base}.{alias.name}" for alias in statement.names]


@cache
def imports() -> dict[str, frozenset[str]]:
    """Module → the package's modules it imports anywhere (not under TYPE_CHECKING)."""
    graph = {}
    for module, path in modules().items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        targets = set()
        for statement in _import_statements(tree):
            for name in _imported_names(module, statement):
                target = _known(name) if name.startswith(PACKAGE) else None
                if target is not None and target != module:
                    targets.add(target)
        graph[module] = frozenset(targets)
    return graph


def cycles(graph: dict[str, frozenset[str]]) -> list[list[str]]:
    """The graph's strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for successor in graph[node]:
            if successor not in index:
                visit(successor)
                low[node] = min(low[node], low[successor])
            elif successor in stack:
                low[node] = min(low[node], index[successor])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def layer_of(module: str) -> int | None:
    """The layer of a module's subpackage; None for the top-level modules (the public API)."""
    parts = module.split(".")
    if len(parts) < 2:
        return None
    for position, layer in enumerate(LAYERS):
        if parts[1] in layer:
            return position
    return None


def test_no_import_cycle_between_files() -> None:
    assert cycles(dict(imports())) == []


def test_cycles_are_found() -> None:
    """The check itself: a cycle through three modules, one import inside a function."""
    graph = {"a": frozenset({"b"}), "b": frozenset({"c"}), "c": frozenset({"a"}), "d": frozenset()}
    assert cycles(graph) == [["a", "b", "c"]]


def test_every_subpackage_has_a_layer() -> None:
    subpackages = {name.split(".")[1] for name in modules() if name.count(".") >= 1}
    top_level = {name.split(".")[1] for name, path in modules().items() if name.count(".") == 1}
    placed = set().union(*LAYERS)
    assert subpackages - placed <= {
        name for name in top_level if modules()[f"{PACKAGE}.{name}"].name != "__init__.py"
    }


def test_layers_import_only_downwards() -> None:
    upward = []
    for module, targets in imports().items():
        mine = layer_of(module)
        if mine is None:
            continue
        for target in targets - {PACKAGE}:
            theirs = layer_of(target)
            same_package = module.split(".")[1] == target.split(".")[1]
            if theirs is None or theirs > mine or (theirs == mine and not same_package):
                upward.append(f"{module} -> {target}")
    assert sorted(upward) == []


def test_the_public_api_is_for_users_only() -> None:
    """Modules inside the package reach each other directly, never through ``peft_ser``."""
    assert [module for module, targets in imports().items() if PACKAGE in targets] == []


def test_top_level_holds_few_modules() -> None:
    top = [path.name for path in (SRC / PACKAGE).glob("*.py")]
    assert len(set(top) - {"__init__.py", "__main__.py"}) <= MAX_TOP_LEVEL_MODULES


def test_no_module_is_too_long() -> None:
    long = {
        name: length
        for name, path in modules().items()
        if (length := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES
    }
    assert long == {}
