"""Channels written for the official SDK 0.19: ``create_channel`` from plain
code, a ref passed as its ``model_dump()``, an async handler reading it (data
and text messages, more than one 64 KiB frame), ``extract_channel_refs``, and
``ChannelReader`` / ``ChannelWriter`` built from refs directly.

    python legacy_channels.py <engine url> <worker name>
"""

from __future__ import annotations

import asyncio
import sys
import threading
import time
from typing import Any

from iii import (
    ChannelReader,
    ChannelWriter,
    IIIInvocationError,
    InitOptions,
    StreamChannelRef,
    register_worker,
)
from iii.helpers import create_channel, extract_channel_refs, is_channel_ref

url, name = sys.argv[1], sys.argv[2]
worker = register_worker(url, InitOptions(worker_name=name))


async def count(data):
    reader = data["input"]
    print("handler input:", type(reader).__name__)
    notes: list[str] = []
    reader.on_message(notes.append)
    total = 0
    async for chunk in reader:
        total += len(chunk)
    return {"bytes": total, "notes": notes, "label": data["label"]}


worker.register_function("legacy::count", count)
for _ in range(200):
    listed = worker.trigger({"function_id": "engine::functions::list", "payload": {}})
    if "legacy::count" in {f["function_id"] for f in listed["functions"]}:
        break
    time.sleep(0.05)

ch = create_channel(worker)
print("channel:", type(ch).__name__, type(ch.reader_ref).__name__, ch.reader_ref.direction)
payload = {"input": ch.reader_ref.model_dump(), "label": "x"}
print("refs found:", [(p, r.direction) for p, r in extract_channel_refs(payload)])
print("is ref:", is_channel_ref(payload["input"]), is_channel_ref({"a": 1}))
res: dict[str, Any] = {}


def call() -> None:
    res["r"] = worker.trigger({"function_id": "legacy::count", "payload": payload})


t = threading.Thread(target=call)
t.start()


async def write():
    await ch.writer.send_message_async("first")
    await ch.writer.write(b"a" * 70000)
    await ch.writer.write(b"tail")
    await ch.writer.close_async()


asyncio.run(write())
t.join(30)
print("counted:", res.get("r"))

ch2 = create_channel(worker)
ref_w = StreamChannelRef(**ch2.writer_ref.model_dump())
w = ChannelWriter(url, ref_w)
r = ChannelReader(url, ch2.reader_ref)


async def pipe():
    async def produce():
        await w.write(b"direct")
        await w.close_async()

    task = asyncio.ensure_future(produce())
    data = await r.read_all()
    await task
    return data


print("direct ends:", asyncio.run(pipe()))
try:
    worker.trigger({"function_id": "legacy::count", "payload": {"input": None, "label": 1}})
except IIIInvocationError as exc:
    print("bad input:", exc.code, exc.message)
worker.shutdown()
print("done")
