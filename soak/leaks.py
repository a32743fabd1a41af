"""Connect/shutdown cycles: a worker made and shut down N times leaves nothing behind.

The cycles go round the five runtimes (``thread``, ``asyncio``, ``trio``,
``bound-asyncio``, ``bound-trio``); each connects a worker, registers a
function, waits for the engine to accept it, calls it once and shuts the worker
down.  The asyncio cycles run on one long-lived loop and the trio ones in one
long-lived ``trio.run``, so that a task left behind by a worker shows up in
that loop's task count.

Figures are read after a warm-up (the first ``warmup`` cycles: imports, caches,
thread pools that are made once) and again at the end; the growth between the
two must stay within ``BOUNDS``.
"""

from __future__ import annotations

import asyncio
import functools
import threading
import tracemalloc
from collections.abc import Awaitable, Callable
from concurrent.futures import Future
from typing import Any, Optional

import iii

from . import probes
from .workers import RUNTIMES, worker_options

#: allowed growth from the warm-up to the end (memory in KiB); ``tasks``: those of
#: the loop a worker of the reconnect rounds runs on
BOUNDS = {
    "threads": 2,
    "fds": 4,
    "asyncio_tasks": 1,
    "trio_tasks": 1,
    "tasks": 1,
    "traced_kib": 256,
}


class AsyncioHost:
    """One asyncio loop on a thread for the whole run."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(
            target=self.loop.run_forever, name="soak-cycles-asyncio", daemon=True
        )
        self.thread.start()

    def run(self, fn: Callable[[], Awaitable[Any]], timeout: float) -> Any:
        async def wrap() -> Any:
            return await fn()

        return asyncio.run_coroutine_threadsafe(wrap(), self.loop).result(timeout)

    def tasks(self) -> int:
        async def count() -> int:
            return len(asyncio.all_tasks()) - 1  # this one

        return int(self.run(count, 30))

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(30)
        self.loop.close()


class TrioHost:
    """One ``trio.run`` on a thread for the whole run."""

    def __init__(self) -> None:
        import trio

        self._trio = trio
        self._token: Future[Any] = Future()
        self._done: Optional[trio.Event] = None
        self.thread = threading.Thread(target=self._main, name="soak-cycles-trio", daemon=True)
        self.thread.start()
        self.token = self._token.result(30)

    def _main(self) -> None:
        trio = self._trio

        async def main() -> None:
            self._done = trio.Event()
            self._token.set_result(trio.lowlevel.current_trio_token())
            await self._done.wait()

        trio.run(main)

    def run(self, fn: Callable[[], Awaitable[Any]], timeout: float) -> Any:
        trio = self._trio

        async def wrap() -> Any:
            with trio.fail_after(timeout):
                return await fn()

        return trio.from_thread.run(wrap, trio_token=self.token)

    def tasks(self) -> int:
        def count() -> int:
            return int(self._trio.lowlevel.current_statistics().tasks_living)

        return int(self._trio.from_thread.run_sync(count, trio_token=self.token))

    def close(self) -> None:
        done = self._done
        if done is not None:
            self._trio.from_thread.run_sync(done.set, trio_token=self.token)
        self.thread.join(30)


def _handler(data: Any) -> Any:
    return {"n": data["n"] + 1}


async def _async_handler(data: Any) -> Any:
    return {"n": data["n"] + 1}


class Cycles:
    """Runs the cycles and keeps the figures."""

    def __init__(self, url: str, *, timeout: float = 120.0) -> None:
        self.url = url
        self.timeout = timeout
        self.wrong: list[str] = []

    def _opts(self, i: int) -> iii.InitOptions:
        return worker_options("soak-cycle", 30_000, 1_000)

    def _check(self, i: int, kind: str, value: Any) -> None:
        if value != {"n": i + 1}:
            self.wrong.append(f"cycle {i} ({kind}): got {value!r}")

    def thread_cycle(self, i: int) -> None:
        worker = iii.register_worker(self.url, self._opts(i))
        try:
            worker.register_function("soak::cycle", _handler).wait_accepted(self.timeout)
            self._check(
                i, "thread", worker.trigger({"function_id": "soak::cycle", "payload": {"n": i}})
            )
        finally:
            worker.shutdown()

    async def native_cycle(self, i: int) -> None:
        async with iii.register_worker_async(self.url, self._opts(i)) as worker:
            await worker.register_function("soak::cycle", _async_handler).wait_accepted_async(
                self.timeout
            )
            value = await worker.trigger_async({"function_id": "soak::cycle", "payload": {"n": i}})
            self._check(i, "native", value)

    async def bound_cycle(self, i: int) -> None:
        worker = iii.register_worker(self.url, self._opts(i))
        try:
            await worker.register_function("soak::cycle", _async_handler).wait_accepted_async(
                self.timeout
            )
            value = await worker.trigger_async({"function_id": "soak::cycle", "payload": {"n": i}})
            self._check(i, "bound", value)
        finally:
            await worker.shutdown_async()

    def run(self, cycles: int, warmup: int, say: Callable[[str], None] = print) -> dict[str, Any]:
        """``cycles`` cycles; returns the figures and the bound checks."""
        tracing = tracemalloc.is_tracing()
        if not tracing:
            tracemalloc.start()
        aio, tri = AsyncioHost(), TrioHost()

        def figures() -> dict[str, int]:
            return {
                "threads": probes.threads(),
                "fds": probes.fds(),
                "asyncio_tasks": aio.tasks(),
                "trio_tasks": tri.tasks(),
                "traced_kib": probes.traced_kib(),
                "rss_kib": probes.rss_kib(),
            }

        before: dict[str, int] = {}
        samples: list[dict[str, int]] = []
        try:
            for i in range(cycles):
                kind = RUNTIMES[i % len(RUNTIMES)]
                if kind == "thread":
                    self.thread_cycle(i)
                else:
                    host = aio if kind.endswith("asyncio") else tri
                    cycle = self.bound_cycle if kind.startswith("bound-") else self.native_cycle
                    host.run(functools.partial(cycle, i), self.timeout)
                done = i + 1
                if done == warmup:
                    before = self._settled(figures, (aio, tri))
                    samples.append({"cycle": done, **before})
                elif done % 50 == 0 or done == cycles:
                    samples.append({"cycle": done, **self._settled(figures, (aio, tri), before)})
                    say(f"  cycles {done}/{cycles}: {_fmt(samples[-1])}")
            after = samples[-1]
        finally:
            aio.close()
            tri.close()
            if not tracing:
                tracemalloc.stop()
        growth = {k: after[k] - before[k] for k in BOUNDS if k in after}
        over = {k: v for k, v in growth.items() if v > BOUNDS[k]}
        return {
            "cycles": cycles,
            "warmup": warmup,
            "before": before,
            "after": {k: v for k, v in after.items() if k != "cycle"},
            "growth": growth,
            "bounds": dict(BOUNDS),
            "over_bound": over,
            "samples": samples,
            "wrong_values": list(self.wrong),
        }

    def _settled(
        self,
        figures: Callable[[], dict[str, int]],
        hosts: tuple[AsyncioHost, TrioHost],
        before: Optional[dict[str, int]] = None,
    ) -> dict[str, int]:
        """Figures once threads and descriptors stopped going away (see ``probes.settle``)."""
        if not before:
            probes.quiet(probes.threads)
            return figures()
        # Wait (boundedly) for each count to come back down; the check is on the values.
        probes.settle(probes.threads, before["threads"])
        probes.settle(probes.fds, before["fds"])
        probes.settle(hosts[0].tasks, before["asyncio_tasks"], 10)
        probes.settle(hosts[1].tasks, before["trio_tasks"], 10)
        return figures()


def _fmt(sample: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sample.items() if k != "cycle")
