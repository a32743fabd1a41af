"""Channels from handlers, written for the official SDK (0.25 API): a handler
writes into the writer it was given, ending with the official fire-and-forget
``send_message`` / ``close`` called on the running loop; another answers a
streaming response the way frameworks do (``writer.stream.write`` then
``close()``); a third makes a channel and returns its reader ref.

    python handler_channels.py <engine url> <worker name>
"""

from __future__ import annotations

import asyncio
import sys
import time

from iii import InitOptions, register_worker
from iii.helpers import create_channel_async
from iii.iii_types import StreamChannelRef

url, name = sys.argv[1], sys.argv[2]
worker = register_worker(url, InitOptions(worker_name=name))


async def produce(data):
    # awaited writes, then the official fire-and-forget forms: send_message and
    # close called (not awaited) on the running loop
    writer = data["out"]
    print("handler got:", type(writer).__name__)
    for i in range(data["n"]):
        await writer.write(f"line {i}\n".encode())
    writer.send_message('{"done": true}')
    writer.close()
    return {"wrote": data["n"]}


async def respond(data):
    # a streaming response as frameworks write one: awaited status, the body through
    # writer.stream, then close() without awaiting
    writer = data["out"]
    await writer.send_message_async('{"type": "set_status", "status_code": 201}')
    writer.stream.write(b'{"ok": ')
    writer.stream.write(b"true}")
    writer.send_message('{"type": "trailer"}')
    writer.close()
    return {"status": 201}


async def export(data):
    ch = await create_channel_async(worker)

    async def fill():
        await ch.writer.write(b"exported bytes")
        await ch.writer.close_async()

    asyncio.get_running_loop().create_task(fill())
    return {"reader": ch.reader_ref, "as_dict": ch.reader_ref.model_dump()["direction"]}


def wait_listed(*function_ids):
    """Wait until the engine lists the functions (registration is asynchronous)."""
    for _ in range(200):
        listed = worker.trigger({"function_id": "engine::functions::list", "payload": {}})
        ids = {f["function_id"] for f in listed.get("functions", [])}
        if set(function_ids) <= ids:
            return
        time.sleep(0.05)
    raise RuntimeError(f"never listed: {function_ids}")


worker.register_function("chan::produce", produce)
worker.register_function("chan::export", export)
worker.register_function("chan::respond", respond)
wait_listed("chan::produce", "chan::export", "chan::respond")


async def main():
    ch = await create_channel_async(worker)
    same = ch.writer_ref.channel_id == ch.reader_ref.channel_id
    print("refs:", ch.writer_ref.direction, ch.reader_ref.direction, same)
    messages: list[str] = []
    ch.reader.on_message(messages.append)
    call = asyncio.ensure_future(
        worker.trigger_async(
            {"function_id": "chan::produce", "payload": {"out": ch.writer_ref, "n": 3}}
        )
    )
    chunks = [chunk async for chunk in ch.reader]
    print("result:", await call)
    print("read:", b"".join(chunks).decode().splitlines(), messages)

    ch2 = await create_channel_async(worker)
    notes: list[str] = []
    ch2.reader.on_message(notes.append)
    call2 = asyncio.ensure_future(
        worker.trigger_async({"function_id": "chan::respond", "payload": {"out": ch2.writer_ref}})
    )
    body = await ch2.reader.read_all()
    print("response:", await call2, body, notes)

    out = await worker.trigger_async({"function_id": "chan::export", "payload": {}})
    ref = out["reader"]
    print("export result:", type(ref).__name__, sorted(ref), out["as_dict"])
    reader_ref = StreamChannelRef(**ref)
    print("ref model:", reader_ref.direction, isinstance(reader_ref.channel_id, str))


asyncio.run(main())
worker.shutdown()
print("done")
