"""An asyncio application written for the official SDK (0.25 API): the worker is
made inside ``asyncio.run``; async handlers fan out with ``trigger_async`` and
``asyncio.gather``, a sync handler calls ``trigger``, a handler catches a
nested call's error, and ``asyncio.wait_for`` abandons a call.

    python asyncio_app.py <engine url> <worker name>
"""

from __future__ import annotations

import asyncio
import sys

from iii import InitOptions, InvocationError, TriggerAction, register_worker

url, name = sys.argv[1], sys.argv[2]


async def main():
    worker = register_worker(url, InitOptions(worker_name=name))

    async def square(data):
        await asyncio.sleep(0)
        return data["n"] * data["n"]

    def sum_sync(data):
        calls = ({"function_id": "app::square", "payload": {"n": n}} for n in data["ns"])
        return sum(worker.trigger(call) for call in calls)

    async def fan(data):
        parts = await asyncio.gather(
            *[
                worker.trigger_async({"function_id": "app::square", "payload": {"n": n}})
                for n in data["ns"]
            ]
        )
        total = await worker.trigger_async({"function_id": "app::sum", "payload": data})
        return {"parts": parts, "total": total}

    async def failing(data):
        try:
            await worker.trigger_async({"function_id": "app::nothing", "payload": {}})
        except InvocationError as exc:
            return {"caught": exc.code}

    async def hang(data):
        await asyncio.sleep(1)
        return "late"

    for function_id, handler in [
        ("app::square", square),
        ("app::sum", sum_sync),
        ("app::fan", fan),
        ("app::failing", failing),
        ("app::hang", hang),
    ]:
        worker.register_function(function_id, handler)
    for _ in range(200):
        listed = await worker.trigger_async(
            {"function_id": "engine::functions::list", "payload": {}}
        )
        if "app::hang" in {f["function_id"] for f in listed["functions"]}:
            break
        await asyncio.sleep(0.05)

    fan_out = await worker.trigger_async({"function_id": "app::fan", "payload": {"ns": [1, 2, 3]}})
    print("fan:", fan_out)
    print("failing:", await worker.trigger_async({"function_id": "app::failing", "payload": {}}))
    void = {"function_id": "app::square", "payload": {"n": 1}, "action": TriggerAction.Void()}
    print("void:", await worker.trigger_async(void))
    many = await asyncio.gather(
        *[
            worker.trigger_async({"function_id": "app::square", "payload": {"n": i}})
            for i in range(50)
        ]
    )
    print("many:", sum(many))
    try:
        await asyncio.wait_for(
            worker.trigger_async({"function_id": "app::hang", "payload": {}}), 0.2
        )
    except asyncio.TimeoutError:
        print("wait_for abandoned the call")
    after = await worker.trigger_async({"function_id": "app::square", "payload": {"n": 9}})
    print("after:", after)
    worker.shutdown()


asyncio.run(main())
print("done")
