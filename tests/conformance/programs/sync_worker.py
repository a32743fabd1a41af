"""A sync worker written for the official SDK (0.25 API): functions, calls,
errors, fire-and-forget, enqueue, current_invocation.

    python sync_worker.py <engine url> <worker name>
"""

from __future__ import annotations

import sys
import threading
import time
from typing import Any

from iii import (
    IIIClient,
    InitOptions,
    InvocationError,
    TriggerAction,
    current_invocation,
    register_worker,
)

url, name = sys.argv[1], sys.argv[2]
worker: IIIClient = register_worker(url, InitOptions(worker_name=name))
print("connected:", worker.get_connection_state())


def wait_listed(*function_ids):
    """Wait until the engine lists the functions (registration is asynchronous)."""
    for _ in range(200):
        listed = worker.trigger({"function_id": "engine::functions::list", "payload": {}})
        ids = {f["function_id"] for f in listed.get("functions", [])}
        if set(function_ids) <= ids:
            return
        time.sleep(0.05)
    raise RuntimeError(f"never listed: {function_ids}")


noted = threading.Event()
seen: list[Any] = []


def add(data):
    inv = current_invocation()
    return {"sum": data["a"] + data["b"], "function": inv.function_id if inv else None}


def fail(data):
    raise ValueError("no luck")


def note(data):
    seen.append(data["n"])
    noted.set()


fn = worker.register_function("compat::add", add, description="Adds two numbers")
worker.register_function("compat::fail", fail)
worker.register_function("compat::note", note)
wait_listed("compat::add", "compat::fail", "compat::note")
print("registered:", fn.id)

print("add:", worker.trigger({"function_id": "compat::add", "payload": {"a": 2, "b": 3}}))

try:
    worker.trigger({"function_id": "compat::fail", "payload": {}})
except InvocationError as exc:
    print("fail:", exc.code, exc.message, exc.function_id)

try:
    worker.trigger({"function_id": "compat::missing", "payload": {}, "timeout_ms": 5000})
except InvocationError as exc:
    print("missing:", exc.code)

print(
    "void:",
    worker.trigger(
        {"function_id": "compat::note", "payload": {"n": 7}, "action": TriggerAction.Void()}
    ),
)
noted.wait(10)
print("noted:", seen)

receipt = worker.trigger(
    {
        "function_id": "compat::add",
        "payload": {"a": 1, "b": 1},
        "action": TriggerAction.Enqueue(queue="default"),
    }
)
print(
    "enqueue:",
    sorted(receipt),
    isinstance(receipt["messageReceiptId"], str),
    receipt.get("messageReceiptId") == receipt["messageReceiptId"],
)

print("outside a handler:", current_invocation())
fn.unregister()
try:
    worker.trigger({"function_id": "compat::add", "payload": {"a": 0, "b": 0}, "timeout_ms": 5000})
except InvocationError as exc:
    print("after unregister:", exc.code)
worker.shutdown()
print("done")
