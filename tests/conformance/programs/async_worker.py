"""An asyncio worker written for the official SDK (0.25 API): async handlers,
concurrent ``trigger_async`` calls from the application's own loop, a timeout.

    python async_worker.py <engine url> <worker name>
"""

from __future__ import annotations

import asyncio
import sys
import time

from iii import InitOptions, InvocationError, current_invocation, register_worker

url, name = sys.argv[1], sys.argv[2]
worker = register_worker(url, InitOptions(worker_name=name, invocation_timeout_ms=10000))


def wait_listed(*function_ids):
    """Wait until the engine lists the functions (registration is asynchronous)."""
    for _ in range(200):
        listed = worker.trigger({"function_id": "engine::functions::list", "payload": {}})
        ids = {f["function_id"] for f in listed.get("functions", [])}
        if set(function_ids) <= ids:
            return
        time.sleep(0.05)
    raise RuntimeError(f"never listed: {function_ids}")


async def greet(data):
    await asyncio.sleep(0.01)
    inv = current_invocation()
    return {"hello": data["name"], "in": inv.function_id if inv else None}


async def slow(data):
    await asyncio.sleep(1.0)
    return "late"


async def main():
    worker.register_function("compat::greet", greet)
    worker.register_function("compat::slow", slow)
    await asyncio.to_thread(wait_listed, "compat::greet", "compat::slow")
    calls = [
        worker.trigger_async({"function_id": "compat::greet", "payload": {"name": n}})
        for n in ("ada", "bob", "cy")
    ]
    print("greetings:", await asyncio.gather(*calls))
    try:
        await worker.trigger_async(
            {"function_id": "compat::slow", "payload": {}, "timeout_ms": 200}
        )
    except InvocationError as exc:
        print("slow:", exc.code)
    try:
        await worker.trigger_async({"function_id": "compat::nope", "payload": {}})
    except InvocationError as exc:
        print("nope:", exc.code)
    print("ticks ran:", await ticks_while_waiting())


async def ticks_while_waiting():
    # The loop stays free while a call is pending.
    ticks = 0

    async def tick():
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    ticker = asyncio.ensure_future(tick())
    await worker.trigger_async({"function_id": "compat::greet", "payload": {"name": "x"}})
    await asyncio.sleep(0.05)
    ticker.cancel()
    return ticks > 0


asyncio.run(main())
worker.shutdown()
print("done")
