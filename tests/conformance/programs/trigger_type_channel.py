"""A trigger type and a data channel, written for the official SDK (0.25 API).

A provider of the ``compat-ticker`` trigger type fires its bindings with a
channel: it puts the reader's ref in the payload and writes the data while
the bound function reads it.

    python trigger_type_channel.py <engine url> <worker name>
"""

from __future__ import annotations

import asyncio
import sys
import threading
import time
import warnings
from typing import Any

from iii import InitOptions, register_worker
from iii.helpers import create_channel
from iii.triggers import TriggerConfig, TriggerHandler

warnings.simplefilter("ignore", DeprecationWarning)

url, name = sys.argv[1], sys.argv[2]
worker = register_worker(url, InitOptions(worker_name=name))


def wait_listed(*function_ids):
    """Wait until the engine lists the functions (registration is asynchronous)."""
    for _ in range(200):
        listed = worker.trigger({"function_id": "engine::functions::list", "payload": {}})
        ids = {f["function_id"] for f in listed.get("functions", [])}
        if set(function_ids) <= ids:
            return
        time.sleep(0.05)
    raise RuntimeError(f"never listed: {function_ids}")


bound = threading.Event()
unbound = threading.Event()
bindings: dict[str, TriggerConfig[Any]] = {}


class Ticker(TriggerHandler[Any]):
    async def register_trigger(self, config: TriggerConfig[Any]) -> None:
        bindings[config.id] = config
        bound.set()

    async def unregister_trigger(self, config: TriggerConfig[Any]) -> None:
        bindings.pop(config.id, None)
        unbound.set()


async def consume(data):
    reader = data["reader"]
    messages: list[str] = []
    reader.on_message(messages.append)
    body = await reader.read_all()
    return {"tick": data["tick"], "text": body.decode(), "messages": messages}


worker.register_trigger_type({"id": "compat-ticker", "description": "Ticks with data"}, Ticker())
worker.register_function("compat::consume", consume)
wait_listed("compat::consume")
trigger = worker.register_trigger(
    {"type": "compat-ticker", "function_id": "compat::consume", "config": {"every_ms": 1000}}
)
print("bound:", bound.wait(10))
config = next(iter(bindings.values()))
print("binding:", config.function_id, config.config)

channel = create_channel(worker)
answer: dict[str, Any] = {}


def fire():
    answer["value"] = worker.trigger(
        {"function_id": config.function_id, "payload": {"tick": 1, "reader": channel.reader_ref}}
    )


caller = threading.Thread(target=fire)
caller.start()


async def produce():
    await channel.writer.send_message_async("meta")
    await channel.writer.write(b"hello ")
    await channel.writer.write(b"world")
    await channel.writer.close_async()


asyncio.run(produce())
caller.join(30)
print("consumed:", answer.get("value"))

trigger.unregister()
print("unbound:", unbound.wait(10), bindings)
worker.shutdown()
print("done")
