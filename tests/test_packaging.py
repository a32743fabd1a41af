"""Packaging: what the shipped packages import is what ``pyproject.toml`` declares.

* every third-party module a shipped package imports at module level is a
  declared dependency, every declared dependency is imported, and the optional
  ones (trio, hypothesis, OpenTelemetry, pytest) are imported only where their
  extra says;
* asyncio and thread workers (and the reference engine) run without trio or
  hypothesis installed, and the modules that need them say which extra to
  install;
* the version is written once.
"""

from __future__ import annotations

import ast
import importlib.metadata
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from packaging.requirements import Requirement

if sys.version_info >= (3, 11):
    import tomllib
else:
    tomllib = pytest.importorskip("tomli")

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("iii", "iii_protocol", "iii_transports", "iii_observability")

#: Modules that may import an optional distribution at module level: importing
#: them is what asks for the extra (each names it in its error).
OPTIONAL_MODULES = {
    "iii_transports/trio.py": {"trio"},
    "iii_protocol/strategies.py": {"hypothesis"},
    # Loaded by pytest only (the ``pytest11`` entry point), never by ``import iii``.
    "iii/testing/_pytest_plugin.py": {"pytest"},
}

#: Optional distributions imported lazily (inside a function), each from an extra.
LAZY = {"trio": "trio", "opentelemetry-api": "otel"}


def _pyproject() -> dict[str, Any]:
    with open(ROOT / "pyproject.toml", "rb") as fh:
        data: dict[str, Any] = tomllib.load(fh)
    return data


#: Namespace packages that several distributions share: the one we import from.
NAMESPACES = {"opentelemetry": "opentelemetry-api"}  # only ``context`` and ``propagate``


def _dist_of(module: str) -> str:
    if module in NAMESPACES:
        return NAMESPACES[module]
    dists = importlib.metadata.packages_distributions().get(module)
    assert dists, f"no installed distribution provides {module!r}"
    return Requirement(dists[0]).name.lower()


def _third_party_imports() -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    """``(module level, inside functions)``: distribution -> files importing it.

    ``if TYPE_CHECKING:`` blocks are skipped (nothing runs them).
    """
    ours = set(PACKAGES)
    top: dict[str, set[str]] = {}
    lazy: dict[str, set[str]] = {}

    def visit(node: ast.AST, rel: str, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                for sub in child.orelse:
                    visit(sub, rel, in_function)
                continue
            names: list[str] = []
            if isinstance(child, ast.Import):
                names = [alias.name for alias in child.names]
            elif isinstance(child, ast.ImportFrom) and child.level == 0 and child.module:
                names = [child.module]
            for name in names:
                root = name.partition(".")[0]
                if root in ours or root in sys.stdlib_module_names or root == "__future__":
                    continue
                (lazy if in_function else top).setdefault(_dist_of(root), set()).add(rel)
            nested = in_function or isinstance(
                child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)
            )
            visit(child, rel, nested)

    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            visit(ast.parse(path.read_text(), rel), rel, False)
    return top, lazy


def test_dependencies_are_declared_exactly_as_imported() -> None:
    project = _pyproject()["project"]
    required = {Requirement(r).name.lower() for r in project["dependencies"]}
    extras = {
        name: {Requirement(r).name.lower() for r in reqs}
        for name, reqs in project["optional-dependencies"].items()
    }
    top, lazy = _third_party_imports()

    undeclared = {}
    for dist, files in top.items():
        if dist in required:
            continue
        outside = {f for f in files if dist not in OPTIONAL_MODULES.get(f, set())}
        if outside:
            undeclared[dist] = sorted(outside)
    assert not undeclared, f"imported at module level but not a dependency: {undeclared}"

    unused = required - set(top)
    assert not unused, f"declared dependencies nothing imports: {sorted(unused)}"

    for module, dists in OPTIONAL_MODULES.items():
        for dist in dists - {"pytest"}:
            assert dist not in required, f"{dist} must stay optional ({module} needs it)"
            assert any(dist in reqs for name, reqs in extras.items() if name != "test"), dist
    for dist, files in lazy.items():
        if dist in required:
            continue
        assert dist in LAZY, f"{dist} imported lazily in {sorted(files)} but not declared"
        assert dist in extras[LAZY[dist]], f"{dist} missing from the {LAZY[dist]!r} extra"
    # The test suite itself needs every optional piece.
    assert {"trio", "hypothesis", "pytest", "pdoc"} <= extras["test"]


# Runs with trio and hypothesis made unimportable; records any attempt to import them.
_WITHOUT_EXTRAS = textwrap.dedent(
    """
    import sys
    from importlib.abc import MetaPathFinder

    ATTEMPTS = []

    class Block(MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.partition(".")[0] in ("trio", "hypothesis"):
                ATTEMPTS.append(name)
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
            return None

    sys.meta_path.insert(0, Block())

    import asyncio

    import iii
    import iii_observability
    import iii_protocol
    import iii_transports
    import iii_transports.anyio
    import iii_transports.blocking
    from iii.testing import EngineThread

    engine = EngineThread().start()
    try:
        worker = iii.register_worker(engine.url, iii.InitOptions(worker_name="threads"))
        try:
            worker.register_function("pkg::add", lambda d: d["a"] + d["b"])
            engine.wait_for_function("pkg::add")
            assert worker.trigger({"function_id": "pkg::add", "payload": {"a": 2, "b": 3}}) == 5

            async def on_asyncio():
                options = iii.InitOptions(worker_name="asyncio")
                async with iii.register_worker_async(engine.url, options) as aw:
                    return await aw.trigger_async(
                        {"function_id": "pkg::add", "payload": {"a": 1, "b": 1}}
                    )

            assert asyncio.run(on_asyncio()) == 2
        finally:
            worker.shutdown()
    finally:
        engine.stop()
    assert not ATTEMPTS, f"asyncio/thread paths tried to import {ATTEMPTS}"

    NEEDS = (("iii_transports.trio", "trio"), ("iii_protocol.strategies", "hypothesis"))
    for module, extra in NEEDS:
        try:
            __import__(module)
        except ModuleNotFoundError as exc:
            assert f"pip install 'iii-sdk[{extra}]'" in str(exc), exc
            assert exc.name == extra, exc.name
        else:
            raise AssertionError(f"{module} imported without {extra}")
    print("ok")
    """
)


def test_asyncio_and_thread_workers_need_neither_trio_nor_hypothesis() -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-c", _WITHOUT_EXTRAS],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "ok"


def test_the_version_is_written_once() -> None:
    import iii
    from iii._version import __version__

    project = _pyproject()["project"]
    assert "version" not in project and "version" in project["dynamic"]
    assert _pyproject()["tool"]["setuptools"]["dynamic"]["version"] == {
        "attr": "iii._version.__version__"
    }
    assert iii.__version__ == __version__
    assert importlib.metadata.version("iii-sdk") == __version__
