"""Reconnect rounds: a worker dropped by the engine N times leaves nothing behind.

For each runtime, one worker stays up for the whole phase while the engine
drops its connection round after round, cycling through close codes 1000, 1001
and 1011 and a cut with no Close frame. After each drop the harness waits
until the worker has reconnected and the engine has accepted its function again,
then calls the function once.  The figures (threads, fds, the tasks of the
worker's loop, memory still allocated) are read after a warm-up and at the end;
growth must stay within ``soak.leaks.BOUNDS``.  The asyncio and trio workers run
inside their loops, so their task counts are read from inside those loops.

On trio the memory figure grows by about 0.4 KiB a drop, then stops near 240 KiB.
That is trio keeping a cancel scope in its deadline heap until the deadline
passes or the heap is pruned (at 1 000 stale entries). The 120 s waits of each
round leave such entries.  Measured over 1 500 drops, flat from the 1 000th;
the default 60 drops grow it by about 25 KiB.
"""

from __future__ import annotations

import asyncio
import functools
import time
import tracemalloc
from collections import Counter
from collections.abc import Callable
from typing import Any, Optional

import anyio
import anyio.to_thread

import iii
from iii import InitOptions, ReconnectionConfig

from . import probes
from ._engine import EngineProcess
from .leaks import BOUNDS, AsyncioHost, TrioHost
from .workers import RUNTIMES

#: close codes of the drops, in turn (None: no Close frame)
CODES: tuple[Optional[int], ...] = (1000, 1001, 1011, None)
FUNCTION = "soak::reconnect"


def _options(name: str) -> InitOptions:
    # A short backoff: the phase is about what a reconnect leaves, not about waiting.
    return InitOptions(
        worker_name=name,
        reconnection_config=ReconnectionConfig(initial_delay_ms=10, max_delay_ms=200),
        register_timeout_ms=120_000,
        shutdown_grace_ms=1_000,
    )


def _handler(data: Any) -> Any:
    return {"n": data["n"] + 1}


async def _async_handler(data: Any) -> Any:
    return {"n": data["n"] + 1}


class Reconnects:
    """Runs the rounds for every runtime and keeps the figures."""

    def __init__(self, engine: EngineProcess, *, timeout: float = 120.0) -> None:
        self.engine = engine
        self.timeout = timeout
        self.wrong: list[str] = []

    def run(self, rounds: int, warmup: int, say: Callable[[str], None] = print) -> dict[str, Any]:
        tracing = tracemalloc.is_tracing()
        if not tracing:
            tracemalloc.start()
        aio, tri = AsyncioHost(), TrioHost()
        per_runtime: dict[str, Any] = {}
        started = time.monotonic()
        try:
            for runtime in RUNTIMES:
                name = f"soak-reconnect-{runtime}"
                if runtime == "thread":
                    figures = self._thread_rounds(name, rounds, warmup)
                else:
                    host = aio if runtime.endswith("asyncio") else tri
                    library = "asyncio" if host is aio else "trio"
                    make = functools.partial(
                        self._async_rounds, name, runtime, library, rounds, warmup
                    )
                    figures = host.run(make, self.timeout * (rounds + 1))
                per_runtime[runtime] = figures
                say(
                    f"  reconnects {runtime}: {rounds} drops, growth "
                    + ", ".join(f"{k} {v:+d}" for k, v in figures["growth"].items())
                )
        finally:
            aio.close()
            tri.close()
            if not tracing:
                tracemalloc.stop()
        over = {
            f"{runtime}: {key}": grew
            for runtime, figures in per_runtime.items()
            for key, grew in figures["growth"].items()
            if grew > BOUNDS[key]
        }
        return {
            "rounds": rounds,
            "warmup": warmup,
            "seconds": round(time.monotonic() - started, 1),
            "runtimes": per_runtime,
            "bounds": dict(BOUNDS),
            "over_bound": over,
            "wrong_values": list(self.wrong),
        }

    # -- one runtime ---------------------------------------------------------------------

    def _drop(self, name: str, round: int) -> None:
        self.engine.command("drop", name=name, code=CODES[round % len(CODES)])

    def _check(self, name: str, round: int, value: Any) -> None:
        if value != {"n": round + 1}:
            self.wrong.append(f"{name} after drop {round}: got {value!r}")

    def _thread_rounds(self, name: str, rounds: int, warmup: int) -> dict[str, Any]:
        worker = iii.register_worker(self.engine.url, _options(name))
        try:
            seen: Counter[str] = Counter()
            worker.add_connection_state_listener(lambda state: seen.update([state]))
            ref = worker.register_function(FUNCTION, _handler)
            ref.wait_accepted(self.timeout)
            before: dict[str, int] = {}
            for r in range(rounds):
                connects = seen["connected"]
                self._drop(name, r)
                deadline = time.monotonic() + self.timeout
                while seen["connected"] == connects and time.monotonic() < deadline:
                    time.sleep(0.005)
                ref.wait_accepted(self.timeout)
                value = worker.trigger({"function_id": FUNCTION, "payload": {"n": r}})
                self._check(name, r, value)
                if r + 1 == warmup:
                    before = _figures(0, quiet=True)
            after = _figures(0, before)
            return _result(before, after, seen)
        finally:
            worker.shutdown()

    async def _async_rounds(
        self, name: str, runtime: str, library: str, rounds: int, warmup: int
    ) -> dict[str, Any]:
        if runtime.startswith("bound-"):
            worker = iii.register_worker(self.engine.url, _options(name))
            try:
                return await self._serve(worker, name, library, rounds, warmup)
            finally:
                await worker.shutdown_async()
        async with iii.register_worker_async(self.engine.url, _options(name)) as worker:
            return await self._serve(worker, name, library, rounds, warmup)

    async def _serve(
        self, worker: iii.III, name: str, library: str, rounds: int, warmup: int
    ) -> dict[str, Any]:
        tasks = _asyncio_tasks if library == "asyncio" else _trio_tasks
        seen: Counter[str] = Counter()
        worker.add_connection_state_listener(lambda state: seen.update([state]))
        ref = worker.register_function(FUNCTION, _async_handler)
        await ref.wait_accepted_async(self.timeout)
        before: dict[str, int] = {}
        for r in range(rounds):
            connects = seen["connected"]
            await anyio.to_thread.run_sync(self._drop, name, r)
            with anyio.move_on_after(self.timeout):
                while seen["connected"] == connects:
                    await anyio.sleep(0.005)
            await ref.wait_accepted_async(self.timeout)
            value = await worker.trigger_async({"function_id": FUNCTION, "payload": {"n": r}})
            self._check(name, r, value)
            if r + 1 == warmup:
                before = await _async_figures(tasks, quiet=True)
        after = await _async_figures(tasks, before)
        return _result(before, after, seen)


def _asyncio_tasks() -> int:
    return len(asyncio.all_tasks())


def _trio_tasks() -> int:
    import trio

    return int(trio.lowlevel.current_statistics().tasks_living)


def _figures(
    tasks: int, before: Optional[dict[str, int]] = None, quiet: bool = False
) -> dict[str, int]:
    if quiet:
        probes.quiet(probes.threads)
    if before:
        probes.settle(probes.threads, before["threads"])
        probes.settle(probes.fds, before["fds"])
    return {
        "threads": probes.threads(),
        "fds": probes.fds(),
        "tasks": tasks,
        "traced_kib": probes.traced_kib(),
        "rss_kib": probes.rss_kib(),
    }


async def _async_figures(
    tasks: Callable[[], int], before: Optional[dict[str, int]] = None, quiet: bool = False
) -> dict[str, int]:
    """The figures, read on the worker's loop (its task count) once counts settled."""
    if before:
        with anyio.move_on_after(10):
            while tasks() > before["tasks"]:
                await anyio.sleep(0.05)
    measured = tasks()
    figures: dict[str, int] = await anyio.to_thread.run_sync(
        functools.partial(_figures, measured, before, quiet)
    )
    return figures


def _result(before: dict[str, int], after: dict[str, int], seen: Counter[str]) -> dict[str, Any]:
    keys = ("threads", "fds", "tasks", "traced_kib")
    return {
        "before": before,
        "after": after,
        "growth": {k: after[k] - before[k] for k in keys},
        "reconnects": seen["connected"],
    }
