"""The reference engine's shape: modules import no cycle, no class is oversized,
and the pieces the worker modules are built on stay below them (issue 12, item 3)."""

from __future__ import annotations

import ast
from pathlib import Path

import iii.testing

PACKAGE = Path(iii.testing.__file__).resolve().parent
#: Imports inside functions are allowed only here: the pytest plugin is loaded by
#: every pytest run, so it imports the engine when a fixture asks for it.
LAZY_IMPORTS_ALLOWED = {"iii.testing._pytest_plugin"}
MAX_CLASS_LINES = 500


def _module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _resolve(module: str, is_package: bool, level: int, target: str) -> str:
    base = module.split(".")
    if not is_package:
        base = base[:-1]
    if level > 1:
        base = base[: len(base) - (level - 1)]
    return ".".join([*base, target] if target else base)


def _modules() -> dict[str, tuple[Path, ast.Module]]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        out[_module_name(path)] = (path, ast.parse(path.read_text(encoding="utf-8")))
    return out


def _imports(name: str, path: Path, tree: ast.Module) -> list[tuple[str, bool]]:
    """(imported module, whether the import is inside a function) for every import
    of a module of this package, ``TYPE_CHECKING`` blocks included."""
    is_package = path.name == "__init__.py"
    found: list[tuple[str, bool]] = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            nested = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef))
            if isinstance(child, ast.ImportFrom):
                if child.level:
                    base = _resolve(name, is_package, child.level, child.module or "")
                else:
                    base = child.module or ""
                for alias in child.names:
                    candidate = f"{base}.{alias.name}"
                    found.append((candidate if candidate in MODULES else base, in_function))
            elif isinstance(child, ast.Import):
                found.extend((alias.name, in_function) for alias in child.names)
            visit(child, nested)

    visit(tree, False)
    return [(m, f) for m, f in found if m.startswith("iii.testing") and m != name]


MODULES = _modules()


def test_the_engine_modules_import_no_cycle():
    graph = {
        name: {m for m, _ in _imports(name, path, tree) if m in MODULES}
        for name, (path, tree) in MODULES.items()
    }
    # The package's __init__ only re-exports (lazily); it is nobody's dependency.
    for deps in graph.values():
        deps.discard("iii.testing")
    state: dict[str, int] = {}
    stack: list[str] = []

    def walk(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for dep in sorted(graph[node]):
            if state.get(dep) == 1:
                cycle = [*stack[stack.index(dep) :], dep]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if dep not in state:
                walk(dep)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            walk(node)


def test_no_imports_inside_functions():
    lazy = sorted(
        f"{name} imports {module}"
        for name, (path, tree) in MODULES.items()
        if name not in LAZY_IMPORTS_ALLOWED
        for module, in_function in _imports(name, path, tree)
        if in_function
    )
    assert lazy == []


def test_no_class_is_over_500_lines():
    big = sorted(
        f"{name}.{node.name}: {node.end_lineno - node.lineno + 1} lines"
        for name, (_, tree) in MODULES.items()
        for node in ast.walk(tree)
        if isinstance(node, ast.ClassDef)
        and node.end_lineno is not None
        and node.end_lineno - node.lineno + 1 > MAX_CLASS_LINES
    )
    assert big == []


def test_worker_modules_depend_only_on_the_interface():
    """A worker module sees the engine through ``_api`` (and shared records and
    helpers), never the core, the server or the handle."""
    allowed = {
        "iii.testing._api",
        "iii.testing._checks",
        "iii.testing._clock",
        "iii.testing._jsonio",
        "iii.testing._rbac",
        "iii.testing._records",
    }
    leaks = sorted(
        f"{name} imports {module}"
        for name, (path, tree) in MODULES.items()
        if name.startswith("iii.testing._workers.")
        for module, _ in _imports(name, path, tree)
        if not module.startswith("iii.testing._workers") and module not in allowed
    )
    assert leaks == []
