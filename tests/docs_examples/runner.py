"""Run one docs example as its own process: ``python -m tests.docs_examples.runner NAME``.

``III_URL`` names the engine. The runner executes, in one ``__main__`` namespace:

1. the example's prelude from ``manifest.py`` (ours: the names a fragment assumes);
2. ``snippets/NAME.py``, compiled from its text as it is (a block with top-level ``await``
   runs on an asyncio loop, as in the asyncio REPL; a block that is the body of a function,
   with a bare ``return``, runs as the body of one, and its outcome is reported);
3. the epilogue (ours: reads what the block left behind, ``report(key=value)``).

Then it makes one round trip to the engine on every worker the namespace holds (so every
frame those workers sent before is processed), prints ``READY <json of the reports>`` and
keeps the process alive, as the official SDK's non-daemon thread keeps a worker script alive,
until its stdin closes. Then it shuts the workers down and exits 0.
"""

from __future__ import annotations

import ast
import asyncio
import inspect
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import iii

from .manifest import EXAMPLES, SNIPPETS

READY = "READY "


class Runner:
    def __init__(self, name: str) -> None:
        self.example = EXAMPLES[name]
        self.reports: dict[str, Any] = {}
        self.concurrent: list[Callable[[], Coroutine[Any, Any, Any]]] = []
        self.children: list[subprocess.Popen[bytes]] = []
        self.ns: dict[str, Any] = {
            "__name__": "__main__",
            "__builtins__": __builtins__,
            "report": self.report,
            "connect": connect,
            "docs": self.docs,
            "wait_until": wait_until,
            "alongside": self.concurrent.append,
            "child": self.child,
        }

    # -- helpers the preludes and epilogues use ---------------------------------------------

    def report(self, **values: Any) -> None:
        """Values for the test, sent with the READY line."""
        self.reports.update(values)

    def docs(self, name: str) -> None:
        """Run another docs example, unchanged, in this namespace (the page's earlier block)."""
        path = SNIPPETS / f"{name}.py"
        exec(compile(path.read_text(encoding="utf-8"), str(path), "exec"), self.ns)

    def child(self, code: str) -> subprocess.Popen[bytes]:
        """A helper process running ``code`` (with ``III_URL``), ended with the runner."""
        proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.DEVNULL)
        self.children.append(proc)
        return proc

    # -- the run -----------------------------------------------------------------------------

    def run(self) -> None:
        example = self.example
        path = SNIPPETS / f"{example.name}.py"
        self.ns["__file__"] = str(path)
        if example.prelude:
            exec(compile(example.prelude, f"<prelude of {example.name}>", "exec"), self.ns)
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        if example.as_function_body:
            # The block is a function's body (it returns): run it as one, and say how it ended.
            fn = ast.parse("def docs_block():\n    pass\n").body[0]
            assert isinstance(fn, ast.FunctionDef)
            fn.body = [*tree.body, *ast.parse("return 'ran to the end'").body]
            tree.body = [fn]
            ast.fix_missing_locations(tree)
        code = compile(tree, str(path), "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
        try:
            if code.co_flags & inspect.CO_COROUTINE:
                asyncio.run(self._run_async(code))
            else:
                exec(code, self.ns)
        except iii.IIIInvocationError as exc:
            if not example.fails_on_the_real_engine:
                raise
            # Known to fail on the real engine too (the manifest says why): say how.
            self.report(raised={"code": exc.code, "message": exc.message})
        if example.as_function_body:
            self.report(returned=self.ns["docs_block"]())
        if example.epilogue:
            exec(compile(example.epilogue, f"<epilogue of {example.name}>", "exec"), self.ns)
        workers = self.workers()
        for worker in workers:
            worker.trigger({"function_id": "engine::functions::list", "payload": {}})
        print(READY + json.dumps(self.reports, default=repr), flush=True)
        try:
            sys.stdin.read()
        finally:
            for worker in workers:
                worker.shutdown()
            for proc in self.children:
                proc.kill()
                proc.wait()

    async def _run_async(self, code: Any) -> None:
        helpers = [asyncio.ensure_future(fn()) for fn in self.concurrent]
        await eval(code, self.ns)
        await asyncio.gather(*helpers)

    def workers(self) -> list[iii.III]:
        found: list[iii.III] = []
        for value in self.ns.values():
            if isinstance(value, iii.III) and value not in found:
                found.append(value)
        return found


def connect(name: str) -> iii.III:
    """A worker of our own on the engine (the prelude's stand-in for the docs' others)."""
    return iii.register_worker(os.environ["III_URL"], iii.InitOptions(worker_name=name))


def wait_until(predicate: Callable[[], Any], timeout: float = 30.0) -> Any:
    """Poll ``predicate`` until it is truthy; fail after ``timeout`` (a hang guard only)."""
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        if time.monotonic() > deadline:
            raise TimeoutError(f"never true: {predicate}")
        time.sleep(0.01)
    return value


if __name__ == "__main__":
    sys.path.insert(0, str(Path.cwd()))
    Runner(sys.argv[1]).run()
