"""The pubsub worker module (iii-pubsub): ``publish`` and ``subscribe`` bindings.

Raw protocol peers: what each subscriber receives, fan-out, exact topics,
unsubscribing, errors, namespaces, and the switch."""

from __future__ import annotations

from typing import Any

import pytest

from .conftest import own_engine
from .wsclient import Peer, new_id, settle

pytestmark = pytest.mark.anyio


def subscribe(function_id: str, topic: Any, binding_id: str = "", **extra: Any) -> dict[str, Any]:
    config = {} if topic is None else {"topic": topic}
    return {
        "type": "registertrigger",
        "id": binding_id or new_id(),
        "trigger_type": "subscribe",
        "function_id": function_id,
        "config": config,
        **extra,
    }


async def subscriber(
    engine: Any, name: str, function_id: str, topic: Any, binding_id: str = ""
) -> Peer:
    peer = await Peer.join(engine.url, name)
    await peer.register(function_id)
    await peer.send(subscribe(function_id, topic, binding_id))
    await settle(peer)
    return peer


async def publish(caller: Peer, topic: Any, data: Any) -> dict[str, Any]:
    return await caller.call("publish", {"topic": topic, "data": data})


async def test_every_subscriber_gets_the_raw_data_once(engine):
    a = await subscriber(engine, "a", "a::on_shipped", "orders.shipped")
    b = await subscriber(engine, "b", "b::on_shipped", "orders.shipped")
    caller = await Peer.join(engine.url, "c")
    out = await publish(caller, "orders.shipped", {"orderId": "abc-123"})
    assert "error" not in out and out.get("result") is None
    for peer, fid in ((a, "a::on_shipped"), (b, "b::on_shipped")):
        got = await peer.recv_type("invokefunction")
        assert got["function_id"] == fid
        assert got["data"] == {"orderId": "abc-123"}  # no envelope, no topic, no caller id
        assert "metadata" not in got
        await peer.result(got["invocation_id"], {})
    await a.expect_silence(0.1)
    assert engine.pubsub_stats() == {
        "enabled": True,
        "published": 1,
        "deliveries": 2,
        "topics": {"orders.shipped": 2},
    }


async def test_topics_match_exactly(engine):
    sub = await subscriber(engine, "s", "s::on", "orders.*")
    caller = await Peer.join(engine.url, "c")
    for topic in ("orders.created", "orders", "Orders.*"):
        assert (await publish(caller, topic, 1)).get("result") is None
    await sub.expect_silence(0.1)
    await publish(caller, "orders.*", 2)
    assert (await sub.recv_type("invokefunction"))["data"] == 2


async def test_a_failing_subscriber_is_not_retried_and_the_publisher_never_hears(engine):
    sub = await subscriber(engine, "s", "s::on", "t")
    caller = await Peer.join(engine.url, "c")
    out = await publish(caller, "t", [1, 2])
    assert "error" not in out
    got = await sub.recv_type("invokefunction")
    await sub.result(got["invocation_id"], None, error={"code": "boom", "message": "no"})
    await sub.expect_silence(0.2)
    await caller.expect_silence(0.05)


async def test_unsubscribing_one_leaves_the_others(engine):
    bid = new_id()
    a = await subscriber(engine, "a", "a::on", "t", bid)
    b = await subscriber(engine, "b", "b::on", "t")
    await a.send({"type": "unregistertrigger", "id": bid, "trigger_type": "subscribe"})
    await settle(a)
    caller = await Peer.join(engine.url, "c")
    await publish(caller, "t", "after")
    assert (await b.recv_type("invokefunction"))["data"] == "after"
    await a.expect_silence(0.1)
    # A subscriber that disconnects takes its bindings with it.
    await b.close()
    await engine.wait_for(lambda: engine.pubsub_stats()["topics"] == {})
    assert (await publish(caller, "t", "gone")).get("result") is None


async def test_publish_errors(engine):
    caller = await Peer.join(engine.url, "c")
    out = await publish(caller, "", 1)
    assert out["error"] == {"code": "topic_not_set", "message": "Topic is not set"}
    out = await caller.call("publish", {"topic": "t"})
    assert out["error"] == {
        "code": "deserialization_error",
        "message": "Failed to deserialize input for publish: missing field `data`",
    }
    out = await caller.call("publish", {"topic": 5, "data": 1})
    assert out["error"]["message"].endswith("invalid type: integer `5`, expected a string")
    assert (await caller.call("publish", {"topic": "t", "data": None})).get("result") is None


async def test_a_binding_without_a_topic_is_accepted_and_never_fires(engine):
    sub = await subscriber(engine, "s", "s::on", None)
    assert [b["trigger_type"] for b in engine.bindings()] == ["subscribe"]
    assert engine.bindings()[0]["parked"] is False
    caller = await Peer.join(engine.url, "c")
    await publish(caller, "t", 1)
    await sub.expect_silence(0.1)
    assert engine.pubsub_stats()["topics"] == {}


async def test_a_subscriber_in_a_namespace_runs_there(engine):
    sub = await Peer.join(engine.url, "s", namespace="orders")
    await sub.register("ns::on")
    await sub.send(subscribe("ns::on", "t", namespace="orders"))
    await settle(sub)
    caller = await Peer.join(engine.url, "c")
    await publish(caller, "t", {"x": 1})
    got = await sub.recv_type("invokefunction")
    assert got["data"] == {"x": 1}


async def test_introspection_shows_the_pubsub_worker(engine):
    caller = await Peer.join(engine.url, "c")
    types = (await caller.call("engine::triggers::list", {}))["result"]["triggers"]
    assert {
        "id": "subscribe",
        "namespace": "default",
        "worker_name": "iii-pubsub",
        "description": "Subscribe to a topic",
    } in types
    functions = (await caller.call("engine::functions::list", {"worker": "iii-pubsub"}))["result"]
    assert [(f["function_id"], f["description"]) for f in functions["functions"]] == [
        ("publish", "Publishes an event")
    ]
    workers = (await caller.call("engine::workers::list", {"runtime": "engine"}))["result"]
    assert "iii-pubsub" in {w["name"] for w in workers["workers"]}


async def test_the_pubsub_module_can_be_switched_off():
    async with own_engine(namespace_grace=0.3, pubsub=False) as engine:
        peer = await Peer.join(engine.url, "s")
        await peer.register("s::on")
        await peer.send(subscribe("s::on", "t"))
        await settle(peer)
        assert engine.bindings()[0]["parked"] is True  # no provider for `subscribe`
        out = await publish(peer, "t", 1)
        assert out["error"]["code"] == "function_not_found"
        assert engine.pubsub_stats() == {"enabled": False}
