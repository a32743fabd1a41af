"""Announce, registration buffering and grace, namespace and name conflicts
(docs/protocol.md#namespaces)."""

from __future__ import annotations

import logging

import pytest

from .conftest import own_engine
from .wsclient import Peer, settle

pytestmark = pytest.mark.anyio


async def test_registrations_wait_for_the_announce(engine):
    peer = await Peer.join(engine.url, announce=False)
    await peer.register("orders::place")
    await settle(peer)
    assert engine.functions() == []
    assert engine.worker(peer.worker_id)["namespace"] is None
    await peer.announce("orders-worker", namespace="orders")
    await settle(peer)
    assert engine.functions() == [
        {
            "function_id": "orders::place",
            "namespace": "orders",
            "worker_id": peer.worker_id,
            "description": None,
            "metadata": None,
            "http": False,
        }
    ]
    info = engine.worker(peer.worker_id)
    assert info["namespace"] == "orders"
    assert info["name"] == "orders-worker"


async def test_buffered_registrations_keep_their_order(engine):
    peer = await Peer.join(engine.url, announce=False)
    await peer.register("a::one", description="first")
    await peer.send({"type": "unregisterfunction", "id": "a::one"})
    await peer.register("a::two")
    await peer.register("a::one", description="again")
    await peer.announce("ordered")
    await settle(peer)
    functions = {f["function_id"]: f for f in engine.functions()}
    assert set(functions) == {"a::one", "a::two"}
    assert functions["a::one"]["description"] == "again"


async def test_grace_timer_puts_silent_workers_in_default(engine, caplog):
    caplog.set_level(logging.WARNING, "iii.testing")
    peer = await Peer.join(engine.url, announce=False)
    await peer.register("late::fn")
    await settle(peer)
    assert engine.functions() == []
    found = await engine.wait_for_function("late::fn", "default", timeout=3)
    assert found["worker_id"] == peer.worker_id
    assert any("did not announce" in r.getMessage() for r in caplog.records)


async def test_late_announce_keeps_the_namespace_fixed_by_the_grace_timer(engine):
    peer = await Peer.join(engine.url, announce=False)
    await peer.register("late::fn")
    await engine.wait_for_function("late::fn", "default", timeout=3)
    await peer.announce("late", namespace="orders")
    await peer.register("late::other")
    await settle(peer)
    assert {(f["function_id"], f["namespace"]) for f in engine.functions()} == {
        ("late::fn", "default"),
        ("late::other", "default"),
    }
    assert engine.worker(peer.worker_id)["namespace"] == "default"


async def test_grace_is_configurable_and_defaults_to_env(monkeypatch):
    monkeypatch.setenv("III_NAMESPACE_GRACE_MS", "50")
    async with own_engine() as eng:
        assert eng.options.namespace_grace == 0.05
        peer = await Peer.join(eng.url, announce=False)
        await peer.register("g::fn")
        await eng.wait_for_function("g::fn", timeout=30)


async def test_invocations_are_not_buffered_before_the_announce(engine):
    provider = await Peer.join(engine.url, "p")
    await provider.register("p::f")
    caller = await Peer.join(engine.url, announce=False)
    await engine.wait_for_function("p::f")
    inv = await caller.invoke("p::f", {"x": 1})
    frame = await provider.recv_type("invokefunction")
    assert frame["invocation_id"] == inv


async def test_second_announce_is_harmless(engine):
    peer = await Peer.join(engine.url, "twice")
    await peer.announce("twice")
    await peer.register("t::f")
    await settle(peer)
    assert engine.worker("twice")["functions"] == ["t::f"]


async def test_announce_with_a_different_namespace_is_bound_to_the_first(engine):
    peer = await Peer.join(engine.url, "w", namespace="a")
    await peer.announce("w", namespace="b")
    await peer.register("x::f")
    await settle(peer)
    assert engine.functions()[0]["namespace"] == "a"


async def test_sync_announce_returns_success(engine):
    peer = await Peer.join(engine.url, announce=False)
    result = await peer.call(
        "engine::workers::register", {"name": "sync", "pid": 1, "runtime": "node"}
    )
    assert result["result"] == {"success": True}
    info = engine.worker("sync")
    assert info["runtime"] == "node"
    assert info["namespace"] == "default"


async def test_blank_announce_namespace_fails_and_grace_applies(engine):
    peer = await Peer.join(engine.url, announce=False)
    result = await peer.call("engine::workers::register", {"name": "blank", "namespace": "  "})
    assert result["error"]["code"] == "INVALID_NAMESPACE"
    assert engine.worker(peer.worker_id)["namespace"] is None
    await engine.wait_for(lambda: engine.worker(peer.worker_id)["namespace"] == "default")


async def test_function_conflict_in_a_namespace(engine):
    owner = await Peer.join(engine.url, "owner")
    await owner.register("math::add")
    await settle(owner)
    other = await Peer.join(engine.url, "other")
    await other.register("math::add")
    await other.register("math::sub")
    rejected = await other.recv()
    assert rejected == {
        "type": "registrationrejected",
        "code": "FUNCTION_NAMESPACE_CONFLICT",
        "namespace": "default",
        "function_id": "math::add",
        "owner_worker_id": owner.worker_id,
    }
    await settle(other)
    owners = {f["function_id"]: f["worker_id"] for f in engine.functions()}
    assert owners == {"math::add": owner.worker_id, "math::sub": other.worker_id}
    # The rejected worker keeps working.
    inv = await owner.invoke("math::sub", 1)
    assert (await other.recv_type("invokefunction"))["invocation_id"] == inv


async def test_same_id_in_another_namespace_is_no_conflict(engine):
    a = await Peer.join(engine.url, "a")
    await a.register("shared::fn")
    b = await Peer.join(engine.url, "b", namespace="other")
    await b.register("shared::fn")
    await settle(a, b)
    assert {(f["namespace"], f["worker_id"]) for f in engine.functions()} == {
        ("default", a.worker_id),
        ("other", b.worker_id),
    }


async def test_reregistering_own_function_is_idempotent(engine):
    peer = await Peer.join(engine.url, "me")
    await peer.register("me::fn", description="v1")
    await peer.register("me::fn", description="v2")
    assert await settle(peer) == []
    assert engine.functions()[0]["description"] == "v2"


async def test_function_taken_over_after_owner_disconnects(engine):
    owner = await Peer.join(engine.url, "owner")
    await owner.register("math::add")
    await engine.wait_for_function("math::add")
    await owner.abort()
    await engine.wait_for(lambda: not engine.functions())
    heir = await Peer.join(engine.url, "heir")
    await heir.register("math::add")
    assert await settle(heir) == []
    assert engine.functions()[0]["worker_id"] == heir.worker_id


async def test_engine_prefix_is_reserved_outside_default(engine):
    peer = await Peer.join(engine.url, "ns", namespace="orders")
    await peer.register("engine::mine")
    rejected = await peer.recv()
    assert rejected == {
        "type": "registrationrejected",
        "code": "FUNCTION_NAMESPACE_CONFLICT",
        "namespace": "orders",
        "function_id": "engine::mine",
        "owner_worker_id": "",
    }
    assert engine.functions() == []


async def test_worker_name_conflict_is_fatal(engine):
    first = await Peer.join(engine.url, "dup")
    await first.register("dup::fn")
    await settle(first)
    second = await Peer.join(engine.url, announce=False)
    await second.register("dup::other")
    await second.announce("dup")
    rejected = await second.recv()
    assert rejected == {
        "type": "registrationrejected",
        "code": "WORKER_NAMESPACE_CONFLICT",
        "namespace": "default",
        "worker_name": "dup",
        "owner_worker_id": first.worker_id,
    }
    # Close frame without a status code (wsproto reports 1005), then nothing.
    assert await second.wait_closed() == 1005
    await engine.wait_for(lambda: len(engine.workers()) == 1)
    assert [f["function_id"] for f in engine.functions()] == ["dup::fn"]
    await settle(first)


async def test_worker_name_is_per_namespace_and_released_on_disconnect(engine):
    first = await Peer.join(engine.url, "svc")
    other_ns = await Peer.join(engine.url, "svc", namespace="blue")
    await settle(first, other_ns)
    assert {w["namespace"] for w in engine.workers()} == {"default", "blue"}
    await first.abort()
    await engine.wait_for(lambda: len(engine.workers()) == 1)
    again = await Peer.join(engine.url, "svc")
    await settle(again)
    assert engine.worker(again.worker_id)["name"] == "svc"


async def test_worker_can_rename_itself(engine):
    peer = await Peer.join(engine.url, "old")
    await peer.announce("new")
    await settle(peer)
    other = await Peer.join(engine.url, "old")
    await settle(other)
    assert {w["name"] for w in engine.workers()} == {"new", "old"}


async def test_announce_fields_are_sanitized(engine):
    peer = await Peer.join(
        engine.url, "  bad\u202ename\x07  ", description="d\u2066esc\x00", namespace="n"
    )
    await settle(peer)
    info = engine.worker(peer.worker_id)
    assert info["name"] == "badname"
    assert info["description"] == "desc"
    long = await Peer.join(engine.url, "x" * 400)
    await settle(long)
    assert len(engine.worker(long.worker_id)["name"]) == 280


async def test_blank_namespace_on_invoke_is_invalid(engine):
    peer = await Peer.join(engine.url, "p")
    result = await peer.call("anything", 1, namespace=" ")
    assert result["error"] == {
        "code": "INVALID_NAMESPACE",
        "message": "namespace must not be blank",
    }
    await peer.send({"type": "invokefunction", "function_id": "x", "data": None, "namespace": ""})
    assert await settle(peer) == []
