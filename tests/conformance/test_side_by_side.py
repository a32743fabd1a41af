"""OUR SDK next to the official ones, on one reference engine: an official worker
calls a function registered by ours and ours calls an official one (values,
error codes, void/enqueue, metadata, trigger types both ways, channels both
ways).  Runs for every official SDK (``pair.a``/``pair.b`` are official)."""

from __future__ import annotations

import json
import queue
import re
import threading
from collections.abc import Iterator
from typing import Any

import attrs
import pytest

import iii

from .conftest import Pair

pytestmark = pytest.mark.conformance

UUID4 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


@attrs.define
class Ours:
    worker: iii.III
    name: str
    seen: queue.Queue[tuple[str, Any, Any]]
    bindings: dict[str, iii.TriggerConfig[Any]]

    def next_seen(self, function_id: str, timeout: float = 10.0) -> tuple[Any, Any]:
        while True:
            fid, data, metadata = self.seen.get(timeout=timeout)
            if fid == function_id:
                return data, metadata


@pytest.fixture(scope="module")
def ours(pair: Pair) -> Iterator[Ours]:
    name = f"ours-{pair.sdk.id}"
    worker = iii.register_worker(pair.url, iii.InitOptions(worker_name=name))
    state = Ours(worker, name, queue.Queue(), {})

    def add(data: dict[str, Any]) -> dict[str, Any]:
        return {"sum": data["a"] + data["b"], "by": name}

    async def add_async(data: dict[str, Any]) -> dict[str, Any]:
        return {"sum": data["a"] + data["b"], "async": True}

    def fail(data: Any) -> None:
        raise ValueError("ours failed")

    def record_for(function_id: str) -> Any:
        def record(data: Any, metadata: Any = None) -> dict[str, Any]:
            state.seen.put((function_id, data, metadata))
            return {"recorded": function_id}

        return record

    def sink(data: dict[str, Any]) -> dict[str, Any]:
        reader = data["reader"]
        messages: list[str] = []
        reader.on_message(messages.append)
        body = reader.read_all_sync()
        return {"reader_type": type(reader).__name__, "text": body.decode(), "messages": messages}

    class Provider(iii.TriggerHandler[Any]):
        async def register_trigger(self, config: iii.TriggerConfig[Any]) -> None:
            state.bindings[config.id] = config
            state.seen.put(("register_trigger", config, None))

        async def unregister_trigger(self, config: iii.TriggerConfig[Any]) -> None:
            state.bindings.pop(config.id, None)
            state.seen.put(("unregister_trigger", config, None))

    worker.register_function("ours::add", add)
    worker.register_function("ours::add-async", add_async)
    worker.register_function("ours::fail", fail)
    worker.register_function("ours::none", lambda data: None)
    for fid in ("ours::record", "ours::hooked"):
        worker.register_function(fid, record_for(fid))
    worker.register_function("ours::sink", sink)
    worker.register_trigger_type({"id": "ours-hook", "description": "our hook"}, Provider())
    for fid in ("ours::add", "ours::sink"):
        pair.engine.wait_for_function(fid)
    pair.engine.wait_for_trigger_type("ours-hook")
    try:
        yield state
    finally:
        worker.shutdown()


def peer_message(pair: Pair, code: str, message: str) -> str:
    return f"{code}: {message}" if pair.sdk.kind == "node" else message


def register_official(pair: Pair, function_id: str, behavior: str, **args: Any) -> None:
    pair.a.ok("register_function", function_id=function_id, behavior=behavior, **args)
    pair.engine.wait_for_function(function_id)


# -- an official worker calls ours ---------------------------------------------------------


def test_official_calls_ours(pair: Pair, ours: Ours) -> None:
    out = pair.b.ok("trigger", function_id="ours::add", payload={"a": 2, "b": 3})
    assert out["result"] == {"sum": 5, "by": ours.name}
    out = pair.b.ok("trigger", function_id="ours::add-async", payload={"a": 1, "b": 1})
    assert out["result"] == {"sum": 2, "async": True}
    assert pair.b.ok("trigger", function_id="ours::none", payload={})["result"] is None


def test_official_sees_our_handler_error(pair: Pair, ours: Ours) -> None:
    out = pair.b.call("trigger", function_id="ours::fail", payload={})
    assert not out["ok"]
    assert out["error"]["code"] == "invocation_failed"
    assert out["error"]["message"] == peer_message(pair, "invocation_failed", "ours failed")
    assert "ValueError: ours failed" in (out["error"]["stacktrace"] or "")


def test_official_void_and_enqueue_to_ours(pair: Pair, ours: Ours) -> None:
    out = pair.b.ok("trigger", function_id="ours::record", payload={"v": 1}, action="void")
    assert out["result"] is None
    data, _ = ours.next_seen("ours::record")
    assert data["v"] == 1
    out = pair.b.ok(
        "trigger", function_id="ours::record", payload={"job": 2}, action={"enqueue": "default"}
    )
    assert UUID4.match(out["result"]["messageReceiptId"])
    data, _ = ours.next_seen("ours::record")
    assert data == {"job": 2}


def test_official_metadata_reaches_ours(pair: Pair, ours: Ours) -> None:
    if not pair.sdk.has_invocation_metadata:
        pytest.skip("iii-sdk 0.19.7 lacks per-invocation metadata")
    pair.b.ok("trigger", function_id="ours::record", payload={"m": 1}, metadata={"tenant": "t1"})
    data, metadata = ours.next_seen("ours::record")
    assert data["m"] == 1
    assert metadata == {"tenant": "t1"}


# -- ours calls an official worker ---------------------------------------------------------


def test_ours_calls_official(pair: Pair, ours: Ours) -> None:
    register_official(pair, "sbs::echo", "echo")
    register_official(pair, "sbs::fail", "fail", message="peer boom")
    result = ours.worker.trigger({"function_id": "sbs::echo", "payload": {"x": [1, "ü"]}})
    assert result["by"] == pair.a.name
    assert result["echo"]["x"] == [1, "ü"]
    assert result["echo"]["_caller_worker_id"] == ours.worker.worker_id

    with pytest.raises(iii.IIIInvocationError) as failed:
        ours.worker.trigger({"function_id": "sbs::fail", "payload": {}})
    assert failed.value.code == "invocation_failed"
    assert failed.value.message == "peer boom"
    assert "peer boom" in (failed.value.stacktrace or "")

    with pytest.raises(iii.IIIInvocationError) as missing:
        ours.worker.trigger({"function_id": "sbs::missing", "payload": {}})
    assert missing.value.code == "function_not_found"


def test_ours_void_enqueue_and_metadata_to_official(pair: Pair, ours: Ours) -> None:
    register_official(pair, "sbs::record", "record")
    assert (
        ours.worker.trigger(
            {
                "function_id": "sbs::record",
                "payload": {"v": 1},
                "action": iii.TriggerAction.Void(),
                "metadata": {"tenant": "ours"},
            }
        )
        is None
    )
    seen = pair.a.wait_event("invoked", lambda e: e["function_id"] == "sbs::record")
    assert seen["data"]["v"] == 1
    expected = {"tenant": "ours"} if pair.sdk.has_invocation_metadata else None
    assert seen["metadata"] == expected  # 0.19.7 lacks metadata on handlers
    receipt = ours.worker.trigger(
        {
            "function_id": "sbs::record",
            "payload": {"job": 3},
            "action": iii.TriggerAction.Enqueue(queue="default"),
        }
    )
    assert isinstance(receipt, iii.EnqueueResult)
    assert UUID4.match(receipt.messageReceiptId)
    seen = pair.a.wait_event("invoked", lambda e: e["data"] == {"job": 3})
    assert seen["function_id"] == "sbs::record"


# -- trigger types across SDKs -------------------------------------------------------------


def test_official_provider_fires_our_binding(pair: Pair, ours: Ours) -> None:
    pair.a.ok("register_trigger_type", trigger_type="sbs-hook")
    pair.engine.wait_for_trigger_type("sbs-hook")
    trigger = ours.worker.register_trigger(
        {
            "type": "sbs-hook",
            "function_id": "ours::hooked",
            "config": {"path": "/ours"},
            "metadata": {"src": "ours"},
        }
    )
    got = pair.a.wait_event("register_trigger", lambda e: e["trigger_type"] == "sbs-hook")
    assert got["config"]["id"] == trigger.id
    assert got["config"]["config"] == {"path": "/ours"}
    assert got["config"]["metadata"] == {"src": "ours"}
    assert trigger.id is not None  # always set on a registered trigger
    pair.engine.wait_for_binding(trigger.id, acked=True)
    out = pair.a.ok("fire", binding_id=trigger.id, payload={"via": "official"})
    assert out["result"] == {"recorded": "ours::hooked"}
    data, metadata = ours.next_seen("ours::hooked")
    assert data["via"] == "official"
    # 0.19.7's trigger() cannot send the binding's metadata.
    assert metadata == ({"src": "ours"} if pair.sdk.has_invocation_metadata else None)
    trigger.unregister()
    pair.a.wait_event("unregister_trigger", lambda e: e["config"]["id"] == trigger.id)


def test_our_provider_fires_an_official_binding(pair: Pair, ours: Ours) -> None:
    pair.b.ok("register_function", function_id="sbs::hooked", behavior="record")
    pair.engine.wait_for_function("sbs::hooked")
    pair.b.ok(
        "register_trigger",
        key="ours-hook",
        trigger_type="ours-hook",
        function_id="sbs::hooked",
        config={"every": "1s"},
        metadata={"src": "official"},
    )
    config = ours.next_seen("register_trigger")[0]
    assert config.function_id == "sbs::hooked"
    assert config.config == {"every": "1s"}
    assert config.metadata == {"src": "official"}
    pair.engine.wait_for_binding(config.id, acked=True)
    result = ours.worker.trigger(
        {"function_id": config.function_id, "payload": {"tick": 1}, "metadata": config.metadata}
    )
    assert result == {"recorded": "sbs::hooked"}
    seen = pair.b.wait_event("invoked", lambda e: e["function_id"] == "sbs::hooked")
    assert seen["data"]["tick"] == 1
    assert seen["metadata"] == ({"src": "official"} if pair.sdk.has_invocation_metadata else None)
    pair.b.ok("unregister_trigger", key="ours-hook")
    gone = ours.next_seen("unregister_trigger")[0]
    assert gone.id == config.id


# -- channels across SDKs ------------------------------------------------------------------


def test_official_channel_into_ours(pair: Pair, ours: Ours) -> None:
    out = pair.b.ok("channel_send", function_id="ours::sink")
    assert out["result"]["reader_type"] == "ChannelReader"
    assert out["result"]["text"] == "hello world"
    assert [json.loads(m) for m in out["result"]["messages"]] == [{"kind": "meta", "n": 2}]


def test_our_channel_into_official(pair: Pair, ours: Ours) -> None:
    register_official(pair, "sbs::sink", "sink")
    channel = iii.create_channel(ours.worker)
    box: dict[str, Any] = {}

    def call() -> None:
        box["result"] = ours.worker.trigger(
            {"function_id": "sbs::sink", "payload": {"reader": attrs.asdict(channel.reader_ref)}}
        )

    caller = threading.Thread(target=call)
    caller.start()
    with channel.writer as writer:
        writer.send_message(json.dumps({"from": "ours"}))
        writer.write_sync(b"ours ")
        writer.write_sync(b"bytes")
    caller.join(30)
    result = box["result"]
    assert result["text"] == "ours bytes"
    assert result["bytes"] == 10
    assert [json.loads(m) for m in result["messages"]] == [{"from": "ours"}]
