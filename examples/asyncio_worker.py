"""An asyncio worker: the SDK runs on this program's own loop.

III_URL=ws://127.0.0.1:49134 python -m examples.asyncio_worker
"""

from __future__ import annotations

import asyncio
from typing import Any

import iii


async def greet(data: dict[str, Any]) -> dict[str, str]:
    await asyncio.sleep(0.01)
    return {"greeting": f"hello, {data['name']}"}


async def main() -> None:
    options = iii.InitOptions(worker_name="example-asyncio")
    async with iii.register_worker_async(options=options) as worker:
        worker.register_function("example::greet", greet)
        names = ["ada", "grace", "barbara"]
        results = await asyncio.gather(
            *(
                worker.trigger_async({"function_id": "example::greet", "payload": {"name": n}})
                for n in names
            )
        )
        for result in results:
            print(result["greeting"])


if __name__ == "__main__":
    asyncio.run(main())
