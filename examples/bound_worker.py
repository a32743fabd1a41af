"""``register_worker`` inside ``asyncio.run``: the worker binds to this program's loop.

Its ``async def`` handlers run as tasks of this loop, so this loop's objects
(an ``asyncio.Lock`` here; a DB pool or an HTTP session in real code) work in
them.  The same code runs under ``trio.run`` with trio's primitives.

III_URL=ws://127.0.0.1:49134 python -m examples.bound_worker
"""

from __future__ import annotations

import asyncio

import iii


async def main() -> None:
    worker = iii.register_worker(options=iii.InitOptions(worker_name="example-bound"))
    lock = asyncio.Lock()
    total = 0

    async def add(data: int) -> int:
        nonlocal total
        async with lock:
            total += data
            return total

    ref = worker.register_function("example::add_up", add)
    await ref.wait_accepted_async(timeout=10)  # RegistrationRejectedError if refused
    print("example::add_up is", ref.state)
    await asyncio.gather(
        *(worker.trigger_async({"function_id": "example::add_up", "payload": n}) for n in range(5))
    )
    print("total:", total)
    await worker.shutdown_async()


if __name__ == "__main__":
    asyncio.run(main())
