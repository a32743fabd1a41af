"""A sync handler using the channel ends it was given through ``asyncio.run``
(the official SDK's channel ends are async only), written for the official
SDK 0.19.

    python sync_handler_channels.py <engine url> <worker name>
"""

from __future__ import annotations

import asyncio
import sys
import threading
import time
from typing import Any

from iii import InitOptions, register_worker
from iii.helpers import create_channel

url, name = sys.argv[1], sys.argv[2]
worker = register_worker(url, InitOptions(worker_name=name))


def upper(data):
    reader, writer = data["in"], data["out"]
    text = asyncio.run(reader.read_all()).decode()

    async def reply():
        await writer.write(text.upper().encode())
        await writer.close_async()

    asyncio.run(reply())
    return {"len": len(text)}


worker.register_function("sh::upper", upper)
for _ in range(200):
    listed = worker.trigger({"function_id": "engine::functions::list", "payload": {}})
    if "sh::upper" in {f["function_id"] for f in listed["functions"]}:
        break
    time.sleep(0.05)
inp, out = create_channel(worker), create_channel(worker)
res: dict[str, Any] = {}


def call() -> None:
    payload = {"in": inp.reader_ref, "out": out.writer_ref}
    res["r"] = worker.trigger({"function_id": "sh::upper", "payload": payload})


t = threading.Thread(target=call)
t.start()


async def feed():
    await inp.writer.write(b"hello channels")
    await inp.writer.close_async()


asyncio.run(feed())
print("reply:", asyncio.run(out.reader.read_all()))
t.join(20)
print("result:", res.get("r"))
worker.shutdown()
print("done")
