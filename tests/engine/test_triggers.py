"""Trigger types and bindings: forwarding, acks, parking and replay (docs/protocol.md#triggers)."""

from __future__ import annotations

import pytest

from .conftest import own_engine
from .wsclient import Peer, new_id, settle

pytestmark = pytest.mark.anyio


def binding(id_, trigger_type="webhook", function_id="math::add", config=None, **extra):
    return {
        "type": "registertrigger",
        "id": id_,
        "trigger_type": trigger_type,
        "function_id": function_id,
        "config": {"path": "/hook"} if config is None else config,
        **extra,
    }


async def provider_of(engine, type_id="webhook", name="provider", namespace=None, **extra):
    provider = await Peer.join(engine.url, name, namespace=namespace)
    await provider.send(
        {"type": "registertriggertype", "id": type_id, "description": "hooks", **extra}
    )
    await settle(provider)
    return provider


async def test_binding_is_forwarded_to_the_provider_and_acked(engine):
    provider = await provider_of(engine)
    user = await Peer.join(engine.url, "user")
    bid = new_id()
    await user.send(binding(bid, metadata={"src": "b"}))
    delivered = await provider.recv()
    assert delivered == {
        "type": "registertrigger",
        "id": bid,
        "trigger_type": "webhook",
        "function_id": "math::add",
        "config": {"path": "/hook"},
        "metadata": {"src": "b"},
    }
    assert engine.bindings()[0]["acked"] is False
    await provider.send(
        {
            "type": "triggerregistrationresult",
            "id": bid,
            "trigger_type": "webhook",
            "function_id": "math::add",
        }
    )
    await engine.wait_for_binding(bid, acked=True)
    await user.expect_silence(0.1)  # successes are not forwarded


async def test_binding_without_provider_is_parked_then_replayed(engine):
    user = await Peer.join(engine.url, "user")
    bid = new_id()
    await user.send(binding(bid, config=None))
    assert await settle(user) == []
    assert engine.bindings()[0]["parked"] is True
    provider = await provider_of(engine)
    delivered = await provider.recv_type("registertrigger")
    assert delivered["id"] == bid
    assert engine.bindings()[0]["parked"] is False


async def test_provider_disconnect_parks_and_reconnect_replays(engine):
    provider = await provider_of(engine)
    user = await Peer.join(engine.url, "user")
    bid = new_id()
    await user.send(binding(bid))
    await provider.recv_type("registertrigger")
    await provider.abort()
    await engine.wait_for(lambda: engine.bindings()[0]["parked"])
    assert engine.trigger_types() and all(t["id"] != "webhook" for t in engine.trigger_types())
    again = await provider_of(engine, name="provider2")
    delivered = await again.recv_type("registertrigger")
    assert delivered["id"] == bid
    assert delivered["config"] == {"path": "/hook"}


async def test_provider_error_is_forwarded_and_parks(engine):
    provider = await provider_of(engine)
    user = await Peer.join(engine.url, "user")
    bid = new_id()
    await user.send(binding(bid, config={"path": "/bad"}))
    await provider.recv_type("registertrigger")
    error = {"code": "trigger_registration_failed", "message": "bad path"}
    await provider.send(
        {
            "type": "triggerregistrationresult",
            "id": bid,
            "trigger_type": "webhook",
            "function_id": "math::add",
            "error": error,
        }
    )
    forwarded = await user.recv()
    assert forwarded == {
        "type": "triggerregistrationresult",
        "id": bid,
        "trigger_type": "webhook",
        "function_id": "math::add",
        "error": error,
    }
    assert engine.bindings()[0]["parked"] is True
    # Re-registering the type gives the binding another chance.
    await provider.send({"type": "registertriggertype", "id": "webhook", "description": "v2"})
    assert (await provider.recv_type("registertrigger"))["id"] == bid


async def test_ack_from_a_non_provider_is_ignored(engine):
    provider = await provider_of(engine)
    user = await Peer.join(engine.url, "user")
    bid = new_id()
    await user.send(binding(bid))
    await provider.recv_type("registertrigger")
    await user.send(
        {
            "type": "triggerregistrationresult",
            "id": bid,
            "trigger_type": "webhook",
            "function_id": "math::add",
            "error": {"code": "x", "message": "not yours"},
        }
    )
    await settle(user)
    assert engine.bindings()[0]["parked"] is False


async def test_unregister_by_any_worker_reaches_the_provider(engine):
    provider = await provider_of(engine)
    user = await Peer.join(engine.url, "user")
    stranger = await Peer.join(engine.url, "stranger")
    bid = new_id()
    await user.send(binding(bid))
    await provider.recv_type("registertrigger")
    await stranger.send({"type": "unregistertrigger", "id": bid})
    assert await provider.recv() == {
        "type": "unregistertrigger",
        "id": bid,
        "trigger_type": "webhook",
    }
    assert engine.bindings() == []


async def test_registrant_disconnect_removes_its_bindings(engine):
    provider = await provider_of(engine)
    user = await Peer.join(engine.url, "user")
    bid = new_id()
    await user.send(binding(bid))
    await provider.recv_type("registertrigger")
    await user.abort()
    assert await provider.recv() == {
        "type": "unregistertrigger",
        "id": bid,
        "trigger_type": "webhook",
    }


async def test_reregistering_the_type_replays_bindings(engine):
    provider = await provider_of(engine)
    user = await Peer.join(engine.url, "user")
    ids = [new_id(), new_id()]
    for bid in ids:
        await user.send(binding(bid))
    assert {(await provider.recv())["id"] for _ in ids} == set(ids)
    await provider.send({"type": "registertriggertype", "id": "webhook", "description": "again"})
    assert {(await provider.recv())["id"] for _ in ids} == set(ids)
    await provider.expect_silence(0.1)  # no unregistertrigger in between


async def test_duplicate_binding_id_replaces_the_binding(engine):
    provider = await provider_of(engine)
    user = await Peer.join(engine.url, "user")
    bid = new_id()
    await user.send(binding(bid, config={"v": 1}))
    await user.send(binding(bid, config={"v": 2}))
    first = await provider.recv()
    second = await provider.recv()
    assert (first["config"], second["config"]) == ({"v": 1}, {"v": 2})
    assert len(engine.bindings()) == 1


async def test_binding_namespaces_on_the_wire(engine):
    provider = await provider_of(engine, namespace="hooks")
    user = await Peer.join(engine.url, "user", namespace="orders")
    bid = new_id()
    await user.send(binding(bid, namespace="orders", trigger_namespace="hooks"))
    delivered = await provider.recv()
    assert delivered["namespace"] == "orders"
    assert delivered["trigger_namespace"] == "hooks"


async def test_trigger_namespace_is_strict(engine):
    await provider_of(engine)  # in default
    user = await Peer.join(engine.url, "user")
    await user.send(binding(new_id(), trigger_namespace="elsewhere"))
    await settle(user)
    assert engine.bindings()[0]["parked"] is True


async def test_binding_falls_back_to_default_then_rehomes(engine):
    default_provider = await provider_of(engine, name="dp")
    user = await Peer.join(engine.url, "user", namespace="orders")
    bid = new_id()
    await user.send(binding(bid))
    delivered = await default_provider.recv()
    assert delivered["id"] == bid and "trigger_namespace" not in delivered
    local = await provider_of(engine, name="lp", namespace="orders")
    moved = await local.recv_type("registertrigger")
    assert moved["id"] == bid
    assert moved["trigger_namespace"] == "orders"
    assert await default_provider.recv() == {
        "type": "unregistertrigger",
        "id": bid,
        "trigger_type": "webhook",
    }
    # The local provider leaves: the binding falls back to default again.
    await local.abort()
    assert (await default_provider.recv())["id"] == bid


async def test_provider_namespace_from_the_frame(engine):
    provider = await Peer.join(engine.url, "p")
    await provider.send(
        {"type": "registertriggertype", "id": "cron2", "description": "", "namespace": "jobs"}
    )
    await provider.send(
        {"type": "registertriggertype", "id": "bad", "description": "", "namespace": " "}
    )
    await settle(provider)
    types = {(t["id"], t["namespace"]) for t in engine.trigger_types()}
    assert ("cron2", "jobs") in types
    assert not any(t == "bad" for t, _ in types)


async def test_blank_binding_namespaces_are_refused(engine):
    user = await Peer.join(engine.url, "user")
    bid = new_id()
    await user.send(binding(bid, namespace=""))
    result = await user.recv()
    assert result["type"] == "triggerregistrationresult"
    assert result["id"] == bid
    assert result["error"]["code"] == "INVALID_NAMESPACE"
    await user.send(binding(bid, trigger_namespace="  "))
    assert (await user.recv())["error"]["code"] == "INVALID_NAMESPACE"
    assert engine.bindings() == []


async def test_registertrigger_without_config_is_dropped_like_the_real_engine(engine):
    # ``config`` is required (any JSON, null included): the real engine drops the
    # frame, and so does this one by default, saying so in its log and transcript.
    provider = await provider_of(engine)
    user = await Peer.join(engine.url, "user")
    bid = new_id()
    frame = binding(bid)
    del frame["config"]
    await user.send(frame)
    assert await settle(user) == []
    await provider.expect_silence(0.05)
    assert engine.bindings() == []
    assert engine.stats()["bad_frames"] == 1
    note = [e for e in engine.transcript() if e["kind"] == "dropped"]
    assert note == [
        {
            "ts": note[0]["ts"],
            "conn": user.worker_id,
            "dir": "in",
            "kind": "dropped",
            "info": "invalid registertrigger frame: missing field `config`",
        }
    ]


async def test_registertrigger_without_config_is_null_when_lenient():
    # The official Python SDKs omit ``config`` when the user gave none.
    async with own_engine(namespace_grace=0.3, lenient_frames=True) as engine:
        provider = await provider_of(engine)
        user = await Peer.join(engine.url, "user")
        bid = new_id()
        frame = binding(bid)
        del frame["config"]
        await user.send(frame)
        delivered = await provider.recv_type("registertrigger")
        assert delivered["id"] == bid
        assert delivered["config"] is None
        assert engine.bindings()[0]["config"] is None
        assert engine.stats()["bad_frames"] == 0


async def test_registertriggertype_requires_description(engine):
    provider = await Peer.join(engine.url, "p")
    await provider.send({"type": "registertriggertype", "id": "nodesc"})
    await settle(provider)
    assert all(t["id"] != "nodesc" for t in engine.trigger_types())


async def test_unregistertriggertype_is_ignored_like_the_engine(engine):
    provider = await provider_of(engine)
    await provider.send({"type": "unregistertriggertype", "id": "webhook"})
    await settle(provider)
    assert any(t["id"] == "webhook" for t in engine.trigger_types())


async def test_workers_available_trigger_fires():
    async with own_engine(namespace_grace=0.2) as eng:
        watcher = await Peer.join(eng.url, "watcher")
        await watcher.register("watch::fn")
        await watcher.send(
            binding(
                new_id(),
                trigger_type="engine::workers-available",
                function_id="watch::fn",
                config={},
                metadata={"from": "binding"},
            )
        )
        await settle(watcher)
        other = await Peer.join(eng.url, "other")
        events = []
        for _ in range(2):
            frame = await watcher.recv_type("invokefunction")
            assert frame["metadata"] == {"from": "binding"}
            await watcher.result(frame["invocation_id"], None)
            events.append(frame["data"])
        assert events == [
            {"event": "worker_connected", "worker_id": other.worker_id},
            {"event": "worker_metadata_updated", "worker_id": other.worker_id},
        ]
        await other.abort()
        frame = await watcher.recv_type("invokefunction")
        assert frame["data"] == {"event": "worker_disconnected", "worker_id": other.worker_id}


async def test_functions_available_trigger_fires_on_change():
    async with own_engine(functions_poll_interval=0.05) as eng:
        watcher = await Peer.join(eng.url, "watcher")
        await watcher.register("watch::fn")
        await watcher.send(
            binding(
                new_id(),
                trigger_type="engine::functions-available",
                function_id="watch::fn",
                config={},
            )
        )
        await settle(watcher)
        other = await Peer.join(eng.url, "other")
        await other.register("new::fn")
        while True:
            frame = await watcher.recv_type("invokefunction")
            await watcher.result(frame["invocation_id"], None)
            ids = {f["function_id"] for f in frame["data"]["functions"]}
            if "new::fn" in ids:
                break
        assert frame["data"]["event"] == "functions_changed"


async def test_provider_fires_a_binding_through_invokefunction(engine):
    provider = await provider_of(engine)
    target = await Peer.join(engine.url, "target")
    await target.register("math::add")
    bid = new_id()
    await target.send(binding(bid, metadata={"k": "v"}))
    delivered = await provider.recv_type("registertrigger")
    inv = await provider.invoke(
        delivered["function_id"], {"via": "webhook"}, metadata=delivered["metadata"]
    )
    frame = await target.recv_type("invokefunction")
    assert frame["invocation_id"] == inv
    assert frame["metadata"] == {"k": "v"}
    assert frame["data"] == {"via": "webhook", "_caller_worker_id": provider.worker_id}
