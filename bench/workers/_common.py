"""Worker-side helpers shared by every candidate: stdlib only (the official
SDK's venv runs this too, imported as a top-level module there)."""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any, Optional

CALLERS = 32
TINY_CALL = {"i": 1}
PENDING = 10_000
WARM_CALLS = 16  # answered by the stand-in before it starts withholding


def parser(modes: list[str]) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser()
    p.add_argument("mode", choices=modes)
    p.add_argument("url")
    p.add_argument("--runtime", default="asyncio", choices=["asyncio", "trio", "thread"])
    p.add_argument("--handler", default="async", choices=["async", "sync"])
    p.add_argument(
        "--entry",
        default="async-with",
        choices=["async-with", "register_worker"],
        help="ours on asyncio/trio: register_worker_async, or register_worker in the loop",
    )
    p.add_argument("--json", default="orjson", choices=["orjson", "stdlib", "none"])
    p.add_argument("--warmup", type=float, default=0.3)
    p.add_argument("--duration", type=float, default=1.0)
    p.add_argument("--callers", type=int, default=CALLERS)
    p.add_argument("--pending", type=int, default=PENDING)
    p.add_argument("--profile", default=None, help="cProfile output (asyncio/trio runtimes)")
    p.add_argument("--lifetime", type=float, default=0.0, help="exit after this long (profiling)")
    return p


def url_with_pid(url: str) -> str:
    """The stand-in reads the worker's pid from the query to sample its CPU."""
    sep = "&" if "?" in url else "?"
    return f"{url}{sep}pid={os.getpid()}"


def emit(obj: dict[str, Any]) -> None:
    sys.stdout.write("@@ " + json.dumps(obj) + "\n")
    sys.stdout.flush()


def _pct(values: list[float], q: float) -> Optional[float]:
    if not values:
        return None
    i = min(len(values) - 1, max(0, round(q * (len(values) - 1))))
    return values[i] * 1e6


def latency_stats(lat: list[float], calls: int, duration: float) -> dict[str, Any]:
    lat.sort()
    return {
        "calls": calls,
        "caller_rate": calls / duration if duration > 0 else 0.0,
        "p50_us": _pct(lat, 0.5),
        "p99_us": _pct(lat, 0.99),
    }


class Window:
    """Calls are timed from ``warmup`` after the start, for ``duration``; the
    callers stop a little after the window so the stand-in's window is full."""

    def __init__(self, warmup: float, duration: float) -> None:
        start = time.perf_counter()
        self.w0 = start + warmup
        self.w1 = self.w0 + duration
        self.end = self.w1 + 0.25
        self.duration = duration
        self.lat: list[float] = []

    def record(self, t0: float, t1: float) -> None:
        if t0 >= self.w0 and t1 <= self.w1:
            self.lat.append(t1 - t0)

    def stats(self) -> dict[str, Any]:
        return latency_stats(self.lat, len(self.lat), self.duration)


def sync_callers(call: Callable[[], Any], warmup: float, duration: float) -> dict[str, Any]:
    win = Window(warmup, duration)
    perf = time.perf_counter
    while True:
        t0 = perf()
        if t0 >= win.end:
            break
        call()
        win.record(t0, perf())
    return win.stats()


async def asyncio_callers(
    call: Callable[[], Awaitable[Any]], callers: int, warmup: float, duration: float
) -> dict[str, Any]:
    win = Window(warmup, duration)
    perf = time.perf_counter

    async def caller() -> None:
        while True:
            t0 = perf()
            if t0 >= win.end:
                return
            await call()
            win.record(t0, perf())

    await asyncio.gather(*(caller() for _ in range(callers)))
    return win.stats()


async def trio_callers(
    call: Callable[[], Awaitable[Any]], callers: int, warmup: float, duration: float
) -> dict[str, Any]:
    import trio

    win = Window(warmup, duration)
    perf = time.perf_counter

    async def caller() -> None:
        while True:
            t0 = perf()
            if t0 >= win.end:
                return
            await call()
            win.record(t0, perf())

    async with trio.open_nursery() as nursery:
        for _ in range(callers):
            nursery.start_soon(caller)
    return win.stats()


def rss_bytes() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


async def pending_memory(call: Callable[[str, Any], Awaitable[Any]], n: int) -> dict[str, Any]:
    """Bytes per outstanding call: ``n`` asyncio tasks each awaiting one call
    whose result the stand-in withholds.  Batch one is sized by RSS (no
    tracing), batch two by tracemalloc (Python allocations, exact)."""
    import tracemalloc

    for _ in range(WARM_CALLS):
        await call("bench::echo", TINY_CALL)

    async def until_withheld(total: int) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            r = await call("bench::ping", {})
            if isinstance(r, dict) and r.get("withheld", 0) >= total:
                return
            await asyncio.sleep(0.02)
        raise RuntimeError("the stand-in never saw all the calls")

    async def batch(measure: Callable[[], int]) -> int:
        gc.collect()
        before = measure()
        tasks = [asyncio.ensure_future(call("bench::echo", TINY_CALL)) for _ in range(n)]
        await until_withheld(n)
        gc.collect()
        after = measure()
        await call("bench::release", {})
        await asyncio.gather(*tasks)
        del tasks
        gc.collect()
        return after - before

    rss = await batch(rss_bytes)  # first, untraced: RSS grows only on first use
    tracemalloc.start()
    try:
        traced = await batch(lambda: tracemalloc.get_traced_memory()[0])
    finally:
        tracemalloc.stop()
    out: dict[str, Any] = {"pending": n, "rss_per_call": rss / n, "traced_per_call": traced / n}
    if os.environ.get("BENCH_ALLOC_SITES"):
        out["sites"] = await allocation_sites(call, n, until_withheld)
    return out


async def allocation_sites(
    call: Callable[[str, Any], Awaitable[Any]], n: int, until_withheld: Any
) -> list[dict[str, Any]]:
    """Where the bytes of a pending call are allocated (tracemalloc, by line)."""
    import tracemalloc

    tracemalloc.start(1)
    try:
        gc.collect()
        before = tracemalloc.take_snapshot()
        tasks = [asyncio.ensure_future(call("bench::echo", TINY_CALL)) for _ in range(n)]
        await until_withheld(n)
        gc.collect()
        after = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    await call("bench::release", {})
    await asyncio.gather(*tasks)
    sites = []
    for stat in after.compare_to(before, "lineno")[:20]:
        frame = stat.traceback[0]
        sites.append(
            {
                "site": f"{frame.filename}:{frame.lineno}",
                "bytes_per_call": stat.size_diff / n,
                "blocks_per_call": stat.count_diff / n,
            }
        )
    return sites


def echo(data: Any) -> Any:
    return data


async def aecho(data: Any) -> Any:
    return data
