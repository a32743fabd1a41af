"""A trio worker: the same SDK, natively on trio.

III_URL=ws://127.0.0.1:49134 python -m examples.trio_worker
"""

from __future__ import annotations

import trio

import iii


async def square(data: int) -> int:
    await trio.sleep(0)
    return data * data


async def main() -> None:
    options = iii.InitOptions(worker_name="example-trio")
    async with iii.register_worker_async(options=options) as worker:
        worker.register_function("example::square", square)
        results: list[int] = []

        async def call(n: int) -> None:
            results.append(
                await worker.trigger_async({"function_id": "example::square", "payload": n})
            )

        async with trio.open_nursery() as nursery:
            for n in range(5):
                nursery.start_soon(call, n)
        print("squares:", sorted(results))


if __name__ == "__main__":
    trio.run(main)
