"""Candidate: our SDK (this repository's ``iii``), run from the repo root.

    python -m bench.workers.ours MODE URL [--runtime asyncio|trio|thread] [--handler async|sync]

Modes: ``inbound`` / ``cold`` (register ``bench::echo``, serve until killed),
``outbound-sync`` (one thread calling ``trigger``), ``outbound-async`` (32
callers awaiting ``trigger_async``), ``pending`` (memory per pending call).

On asyncio and trio the worker is ``register_worker_async`` (the native path)
or, with ``--entry register_worker``, ``register_worker`` called inside the
loop (the documented path: the worker binds to that loop).
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import iii
from bench.workers import _common as c

MODES = ["inbound", "cold", "outbound-sync", "outbound-async", "pending"]


def options() -> iii.InitOptions:
    return iii.InitOptions(worker_name=f"bench-ours-{os.getpid()}")


def handler_for(kind: str) -> Any:
    return c.aecho if kind == "async" else c.echo


def run_thread(args: Any, url: str) -> None:
    worker = iii.register_worker(url, options())
    if args.mode in ("inbound", "cold"):
        worker.register_function("bench::echo", handler_for(args.handler))
        threading.Event().wait(args.lifetime or None)
    elif args.mode == "outbound-sync":
        request = {"function_id": "bench::echo", "payload": c.TINY_CALL}
        c.emit(c.sync_callers(lambda: worker.trigger(request), args.warmup, args.duration))
    worker.shutdown()


@asynccontextmanager
async def worker_for(args: Any, url: str) -> AsyncIterator[iii.III]:
    if args.entry == "register_worker":
        worker = iii.register_worker(url, options())  # binds to the running loop
        try:
            yield worker
        finally:
            await worker.shutdown_async()
    else:
        async with iii.register_worker_async(url, options()) as worker:
            yield worker


async def run_async(args: Any, url: str) -> None:
    async with worker_for(args, url) as worker:
        if args.mode in ("inbound", "cold"):
            worker.register_function("bench::echo", handler_for(args.handler))
            profiler = None
            if args.profile:
                import cProfile

                profiler = cProfile.Profile()
                profiler.enable()
            if args.runtime == "trio":
                import trio

                await trio.sleep(args.lifetime or float("inf"))
            else:
                import asyncio

                await asyncio.sleep(args.lifetime or float("inf"))
            if profiler is not None:
                profiler.disable()
                profiler.dump_stats(args.profile)
            return
        if args.mode == "outbound-async":
            request = {"function_id": "bench::echo", "payload": c.TINY_CALL}

            def call() -> Any:
                return worker.trigger_async(request)

            profiler = None
            if args.profile:
                import cProfile

                profiler = cProfile.Profile()
                profiler.enable()
            if args.runtime == "trio":
                stats = await c.trio_callers(call, args.callers, args.warmup, args.duration)
            else:
                stats = await c.asyncio_callers(call, args.callers, args.warmup, args.duration)
            if profiler is not None:
                profiler.disable()
                profiler.dump_stats(args.profile)
            c.emit(stats)
        elif args.mode == "pending":

            def pcall(fid: str, payload: Any) -> Any:
                return worker.trigger_async({"function_id": fid, "payload": payload})

            c.emit(await c.pending_memory(pcall, args.pending))


def main() -> None:
    args = c.parser(MODES).parse_args()
    url = c.url_with_pid(args.url)
    if args.runtime == "thread" or args.mode == "outbound-sync":
        run_thread(args, url)
    elif args.runtime == "trio":
        import trio

        trio.run(run_async, args, url)
    else:
        import asyncio

        asyncio.run(run_async(args, url))
    sys.stdout.flush()
    time.sleep(0)


if __name__ == "__main__":
    main()
