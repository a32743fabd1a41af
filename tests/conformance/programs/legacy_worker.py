"""A sync worker written for the official SDK 0.19 (the release the documented
API describes): its names (``IIIInvocationError``, ``iii_observability``),
typed requests, a trigger type through the typed handle.

    python legacy_worker.py <engine url> <worker name>
"""

from __future__ import annotations

import sys
import threading
import time
from typing import Any

from iii import (
    IIIInvocationError,
    InitOptions,
    RegisterTriggerTypeInput,
    TriggerConfig,
    TriggerHandler,
    TriggerRequest,
    register_worker,
)
from iii.iii_constants import ReconnectionConfig, TelemetryOptions
from iii_observability import Logger

url, name = sys.argv[1], sys.argv[2]
worker = register_worker(
    url,
    InitOptions(
        worker_name=name,
        worker_description="compat legacy worker",
        reconnection_config=ReconnectionConfig(initial_delay_ms=100, max_delay_ms=1000),
        telemetry=TelemetryOptions(framework="compat"),
    ),
)
logger = Logger()
print("state:", worker.get_connection_state())


def wait_listed(*function_ids):
    """Wait until the engine lists the functions (registration is asynchronous)."""
    for _ in range(200):
        listed = worker.trigger({"function_id": "engine::functions::list", "payload": {}})
        ids = {f["function_id"] for f in listed.get("functions", [])}
        if set(function_ids) <= ids:
            return
        time.sleep(0.05)
    raise RuntimeError(f"never listed: {function_ids}")


def divide(data):
    logger.info("dividing", {"a": data["a"], "b": data["b"]})
    return {"quotient": data["a"] / data["b"]}


worker.register_function(
    "legacy::divide", divide, description="Divides", request_format={"type": "object"}
)
wait_listed("legacy::divide")
print(
    "divide:",
    worker.trigger(TriggerRequest(function_id="legacy::divide", payload={"a": 6, "b": 3})),
)
try:
    worker.trigger(TriggerRequest(function_id="legacy::divide", payload={"a": 1, "b": 0}))
except IIIInvocationError as exc:
    print("by zero:", exc.code, exc.message)
try:
    worker.trigger(TriggerRequest(function_id="legacy::nothing", payload=None, timeout_ms=3000))
except IIIInvocationError as exc:
    print("nothing:", exc.code)

bound = threading.Event()
seen: list[tuple[str, Any, Any]] = []


class Watcher(TriggerHandler[Any]):
    async def register_trigger(self, config: TriggerConfig[Any]) -> None:
        seen.append((config.function_id, config.config, config.metadata))
        bound.set()

    async def unregister_trigger(self, config: TriggerConfig[Any]) -> None:
        pass


ref = worker.register_trigger_type(
    RegisterTriggerTypeInput(id="legacy-watch", description="Watches"), Watcher()
)
trigger = ref.register_trigger("legacy::divide", {"path": "/tmp"}, {"owner": "ops"})
print("bound:", bound.wait(10), seen)
trigger.unregister()
worker.unregister_trigger_type({"id": "legacy-watch", "description": "Watches"})
worker.shutdown()
print("done")
