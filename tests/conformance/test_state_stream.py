"""The engine's state and stream workers used by the official SDKs (Python
0.19.7 and 0.25.0, Node 0.22.1): their workers call ``state::*`` /
``stream::*``, bind the ``state`` / ``stream`` / ``stream:join`` trigger types
and serve custom streams with their ``create_stream``; the payloads their
handlers get are read with the official SDK's own typed models."""

from __future__ import annotations

import itertools
from typing import Any

import anyio

from ..engine.wsclient import RawClient
from ._harness import PeerAgent
from .conftest import Pair

_keys = itertools.count()

STATE_MODULES = ["iii.state"]
STREAM_MODULES = ["iii_helpers.stream", "iii.stream"]


def call(agent: PeerAgent, function_id: str, payload: Any) -> Any:
    return agent.ok("trigger", function_id=function_id, payload=payload)["result"]


def call_error(agent: PeerAgent, function_id: str, payload: Any) -> dict[str, Any]:
    out = agent.call("trigger", function_id=function_id, payload=payload)
    assert not out["ok"], out
    return out["error"]  # type: ignore[no-any-return]


def bind(
    pair: Pair,
    agent: PeerAgent,
    function_id: str,
    trigger_type: str,
    config: Any,
    behavior: str = "record",
    **extra: Any,
) -> str:
    """Register ``function_id`` on ``agent`` and bind it; wait until the engine has it."""
    agent.ok("register_function", function_id=function_id, behavior=behavior, **extra)
    key = f"k{next(_keys)}"
    agent.ok(
        "register_trigger",
        key=key,
        trigger_type=trigger_type,
        function_id=function_id,
        config=config,
        metadata={"by": agent.name},
    )
    pair.engine.wait_for(
        lambda: any(
            b["function_id"] == function_id and b["acked"] for b in pair.engine.engine.bindings()
        ),
        timeout=30,
    )
    return key


def invoked(agent: PeerAgent, function_id: str, count: int) -> list[dict[str, Any]]:
    agent.wait_event("invoked", lambda e: e["function_id"] == function_id, count=count, timeout=30)
    return agent.find_events("invoked", lambda e: e["function_id"] == function_id)


def typed(pair: Pair, agent: PeerAgent, modules: list[str], model: str, data: Any) -> Any:
    """``data`` read with the official Python SDK's own model (None for Node)."""
    if pair.sdk.kind != "python":
        return None
    return agent.ok("validate_model", modules=modules, model=model, data=data)["model"]


def test_state_functions_and_triggers(pair: Pair) -> None:
    a, b = pair.a, pair.b
    scope = f"conf-{pair.sdk.id}"
    handler = f"conf::{pair.sdk.id}::on_state"
    key = bind(pair, b, handler, "state", {"scope": scope})

    assert call(a, "state::set", {"scope": scope, "key": "k", "value": {"b": 2, "a": 1}}) == {
        "new_value": {"a": 1, "b": 2},
        "old_value": None,
    }
    updated = call(
        a,
        "state::update",
        {
            "scope": scope,
            "key": "k",
            "ops": [
                {"type": "increment", "path": "a", "by": 41},
                {"type": "append", "path": "log", "value": {"n": 1}},
                {"type": "increment", "path": "log", "by": 1},
            ],
        },
    )
    assert updated["new_value"] == {"a": 42, "b": 2, "log": [{"n": 1}]}
    assert updated["old_value"] == {"a": 1, "b": 2}
    assert [e["code"] for e in updated["errors"]] == ["increment.not_number"]
    assert call(a, "state::get", {"scope": scope, "key": "k"}) == updated["new_value"]
    assert call(a, "state::list", {"scope": scope}) == [updated["new_value"]]
    assert scope in call(a, "state::list_groups", {})["groups"]
    assert call(a, "state::delete", {"scope": scope, "key": "k"}) == updated["new_value"]
    assert call(a, "state::get", {"scope": scope, "key": "k"}) is None

    events = invoked(b, handler, 3)
    payloads = [e["data"] for e in events]
    assert [(p["event_type"], p["old_value"], p["new_value"]) for p in payloads] == [
        ("state:created", None, {"a": 1, "b": 2}),
        ("state:updated", {"a": 1, "b": 2}, updated["new_value"]),
        ("state:deleted", updated["new_value"], None),
    ]
    assert all(p["type"] == "state" and p["scope"] == scope and p["key"] == "k" for p in payloads)
    if pair.sdk.has_invocation_metadata:
        assert all(e["metadata"] == {"by": b.name} for e in events)
    model = typed(pair, b, STATE_MODULES, "StateEventData", payloads[1])
    if model is not None:
        assert model["event_type"] == "state:updated" and model["new_value"] == updated["new_value"]
    b.ok("unregister_trigger", key=key)

    error = call_error(a, "state::get", {"scope": scope})
    assert error["code"] == "deserialization_error"
    assert "Failed to deserialize input for state::get: missing field `key`" in error["message"]


def test_stream_functions_and_triggers(pair: Pair) -> None:
    a, b = pair.a, pair.b
    stream = f"conf-{pair.sdk.id}"
    handler = f"conf::{pair.sdk.id}::on_stream"
    key = bind(pair, b, handler, "stream", {"stream_name": stream, "group_id": "g"})
    item = {"stream_name": stream, "group_id": "g", "item_id": "i"}

    assert call(a, "stream::set", {**item, "data": {"v": 1}}) == {
        "new_value": {"v": 1},
        "old_value": None,
    }
    out = call(a, "stream::update", {**item, "ops": [{"type": "merge", "value": {"w": 2}}]})
    assert out == {"new_value": {"v": 1, "w": 2}, "old_value": {"v": 1}}
    call(a, "stream::set", {**item, "group_id": "other", "data": 0})  # not this binding's group
    assert call(a, "stream::get", item) == {"v": 1, "w": 2}
    assert call(a, "stream::list", {"stream_name": stream, "group_id": "g"}) == [{"v": 1, "w": 2}]
    assert call(a, "stream::list_groups", {"stream_name": stream}) == ["g", "other"]
    listed = call(a, "stream::list_all", {})
    assert {"groups": ["g", "other"], "id": stream} in listed["stream"]
    call(a, "stream::send", {"stream_name": stream, "group_id": "g", "type": "ping", "data": 7})
    assert call(a, "stream::delete", item) == {"old_value": {"v": 1, "w": 2}}

    events = invoked(b, handler, 4)
    payloads = [e["data"] for e in events]
    assert [p["event"] for p in payloads] == [
        {"data": {"v": 1}, "type": "create"},
        {"data": {"v": 1, "w": 2}, "type": "update"},
        {"event": {"data": 7, "type": "ping"}, "type": "event"},
        {"data": {"v": 1, "w": 2}, "type": "delete"},
    ]
    assert [p["id"] for p in payloads] == ["i", "i", None, "i"]
    assert all(
        p["type"] == "stream"
        and p["streamName"] == stream
        and p["groupId"] == "g"
        and isinstance(p["timestamp"], int)
        for p in payloads
    )
    model = typed(pair, b, STREAM_MODULES, "StreamChangeEvent", payloads[0])
    if model is not None:
        assert model["event"] == {"type": "create", "data": {"v": 1}}
        assert model["streamName"] == stream and model["id"] == "i"
    b.ok("unregister_trigger", key=key)


def test_stream_trigger_condition(pair: Pair) -> None:
    a, b = pair.a, pair.b
    stream = f"cond-{pair.sdk.id}"
    b.ok("register_function", function_id=f"{stream}::no", behavior="const", result=False)
    b.ok("register_function", function_id=f"{stream}::yes", behavior="const", result=True)
    keys = [
        bind(
            pair,
            b,
            f"{stream}::skipped",
            "stream",
            {"stream_name": stream, "condition_function_id": f"{stream}::no"},
        ),
        bind(
            pair,
            b,
            f"{stream}::ran",
            "stream",
            {"stream_name": stream, "condition_function_id": f"{stream}::yes"},
        ),
    ]
    call(a, "stream::set", {"stream_name": stream, "group_id": "g", "item_id": "i", "data": 1})
    (ran,) = invoked(b, f"{stream}::ran", 1)
    assert ran["data"]["event"] == {"data": 1, "type": "create"}
    # The bindings run in turn: by the time the second one ran, the first was decided.
    assert b.find_events("invoked", lambda e: e["function_id"] == f"{stream}::skipped") == []
    for key in keys:
        b.ok("unregister_trigger", key=key)


def test_stream_join_on_the_client_websocket(pair: Pair) -> None:
    b = pair.b
    gate = f"gate::{pair.sdk.id}"
    key = bind(pair, b, gate, "stream:join", {}, behavior="auth", result={"unauthorized": True})
    url = pair.engine.urls["stream"]

    async def join() -> dict[str, Any]:
        client = await RawClient.connect(url)
        try:
            await client.send(
                {
                    "type": "join",
                    "data": {"subscriptionId": "s1", "streamName": "room", "groupId": "g"},
                }
            )
            return await client.recv(timeout=30)
        finally:
            await client.close()

    refused = anyio.run(join)
    assert refused["event"] == {"type": "unauthorized"}
    seen = b.wait_event("auth", lambda e: e["function_id"] == gate, timeout=30)
    assert seen["data"] == {
        "context": None,
        "group_id": "g",
        "id": None,
        "stream_name": "room",
        "subscription_id": "s1",
    }
    model = typed(pair, b, STREAM_MODULES, "StreamJoinLeaveEvent", seen["data"])
    if model is not None:
        assert model["subscription_id"] == "s1"
    b.ok("unregister_trigger", key=key)


def test_a_stream_served_with_create_stream(pair: Pair) -> None:
    a, b = pair.a, pair.b
    stream = f"custom-{pair.sdk.id}"
    b.ok("create_stream", stream_name=stream)
    pair.engine.wait_for_function(f"stream::list_groups({stream})", timeout=30)
    handler = f"{stream}::changed"
    key = bind(pair, a, handler, "stream", {"stream_name": stream})
    item = {"stream_name": stream, "group_id": "g", "item_id": "i"}

    assert call(a, "stream::set", {**item, "data": "one"}) == {
        "new_value": "one",
        "old_value": None,
    }
    assert call(a, "stream::set", {**item, "data": "two"}) == {
        "new_value": "two",
        "old_value": "one",
    }
    assert call(a, "stream::get", item) == "two"
    assert call(a, "stream::list", {"stream_name": stream, "group_id": "g"}) == ["two"]
    assert call(a, "stream::list_groups", {"stream_name": stream}) == ["g"]
    assert call(a, "stream::delete", item) == {"old_value": "two"}

    # The agent reports each call on its stdout, which may arrive after the
    # answer did over the engine: wait for the six reports.
    def on_stream(e: dict[str, Any]) -> bool:
        return bool(e["stream"] == stream)

    b.wait_event("stream_op", on_stream, count=6, timeout=30)
    ops = [e["op"] for e in b.find_events("stream_op", on_stream)]
    assert ops == ["set", "set", "get", "list", "list_groups", "delete"]
    first = b.find_events("stream_op", on_stream)[0]["data"]
    assert first == {**item, "data": "one"}

    events = invoked(a, handler, 3)
    assert [e["data"]["event"] for e in events] == [
        {"data": "one", "type": "create"},
        {"data": "two", "type": "update"},
        {"data": "two", "type": "delete"},
    ]
    # The engine's own store never saw that stream.
    assert all(s["id"] != stream for s in call(a, "stream::list_all", {})["stream"])
    a.ok("unregister_trigger", key=key)
