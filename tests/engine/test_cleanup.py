"""Disconnect cleanup, as docs/protocol.md#cleanup, and reattach eviction (#reconnect)."""

from __future__ import annotations

import pytest

from .conftest import own_engine
from .wsclient import Peer, new_id, settle

pytestmark = pytest.mark.anyio


def binding(id_, trigger_type, function_id, config=None):
    return {
        "type": "registertrigger",
        "id": id_,
        "trigger_type": trigger_type,
        "function_id": function_id,
        "config": config if config is not None else {},
    }


async def test_disconnect_cleanup_section_4_8():
    async with own_engine(namespace_grace=0.2) as eng:
        # A watcher sees worker lifecycle events.
        watcher = await Peer.join(eng.url, "watcher")
        await watcher.register("watch::events")
        await watcher.send(binding(new_id(), "engine::workers-available", "watch::events"))
        await settle(watcher)
        # Y provides "cron"; X provides "webhook"; U binds to X's type.
        y = await Peer.join(eng.url, "y")
        await y.send({"type": "registertriggertype", "id": "cron", "description": ""})
        x = await Peer.join(eng.url, "x")
        await x.register("x::work")
        await x.register("x::idle")
        await x.send({"type": "registertriggertype", "id": "webhook", "description": ""})
        x_binding = new_id()
        await x.send(binding(x_binding, "cron", "x::idle"))
        u = await Peer.join(eng.url, "u")
        await u.register("u::slow")
        u_binding = new_id()
        await u.send(binding(u_binding, "webhook", "u::slow"))
        assert (await y.recv_type("registertrigger"))["id"] == x_binding
        assert (await x.recv_type("registertrigger"))["id"] == u_binding
        channel = (await u.call("engine::channels::create", {}))["result"]
        # C is waiting on X; X is waiting on U.
        c = await Peer.join(eng.url, "c")
        waiting_on_x = await c.invoke("x::work", 1)
        assert (await x.recv_type("invokefunction"))["invocation_id"] == waiting_on_x
        x_waits = await x.invoke("u::slow", 2)
        assert (await u.recv_type("invokefunction"))["invocation_id"] == x_waits

        await x.abort()

        # Invocations it was executing fail to their callers.
        stopped = await c.recv_type("invocationresult")
        assert stopped["invocation_id"] == waiting_on_x
        assert stopped["error"]["code"] == "invocation_stopped"
        # Its bindings are removed at their provider.
        assert await y.recv() == {
            "type": "unregistertrigger",
            "id": x_binding,
            "trigger_type": "cron",
        }
        # worker_disconnected fires (exactly once).
        events = []
        while ("worker_disconnected", x.worker_id) not in events:
            frame = await watcher.recv_type("invokefunction")
            await watcher.result(frame["invocation_id"], None)
            events.append((frame["data"]["event"], frame["data"]["worker_id"]))
        await settle(watcher)
        assert events.count(("worker_disconnected", x.worker_id)) == 1
        # Functions, trigger types and the name lease are gone.
        assert {f["function_id"] for f in eng.functions()} == {"watch::events", "u::slow"}
        assert all(t["id"] != "webhook" for t in eng.trigger_types())
        assert x_binding not in {b["id"] for b in eng.bindings()}
        # U's binding of X's type is parked, not removed.
        parked = [b for b in eng.bindings() if b["id"] == u_binding]
        assert parked and parked[0]["parked"]
        # The invocation X was waiting on is abandoned: a late result is dropped.
        await u.result(x_waits, "late")
        assert await settle(u) == []
        assert eng.pending_invocations() == []
        # Engine-created channels have no owner and survive.
        assert [ch["channel_id"] for ch in eng.channels()] == [channel["reader"]["channel_id"]]
        # A new worker may take the name; a new provider gets U's binding replayed.
        x2 = await Peer.join(eng.url, "x")
        await x2.send({"type": "registertriggertype", "id": "webhook", "description": ""})
        assert (await x2.recv_type("registertrigger"))["id"] == u_binding
        assert eng.worker("x")["worker_id"] == x2.worker_id


async def test_cleanup_keeps_functions_taken_over_by_a_restarted_worker(engine):
    old = await Peer.join(engine.url, announce=False)
    await old.announce("svc")
    await old.register("svc::fn")
    await settle(old)
    # The restarted worker reattaches: the old connection is evicted first,
    # then its replay registers the same id without a conflict.
    new = await Peer.join(engine.url, announce=False)
    await new.send(
        {"type": "reattach", "previous_worker_id": old.worker_id, "reattach_token": old.token}
    )
    await new.register("svc::fn")
    await new.announce("svc")
    assert await settle(new) == []
    assert await old.wait_closed() is None  # dropped without a Close frame
    functions = engine.functions()
    assert [(f["function_id"], f["worker_id"]) for f in functions] == [("svc::fn", new.worker_id)]
    assert engine.worker("svc")["worker_id"] == new.worker_id


@pytest.mark.parametrize(
    "mutate",
    [
        lambda old: {"previous_worker_id": old.worker_id, "reattach_token": new_id()},
        lambda old: {"previous_worker_id": old.worker_id},
        lambda old: {"previous_worker_id": new_id(), "reattach_token": old.token},
        lambda old: {"previous_worker_id": "not-a-uuid", "reattach_token": old.token},
    ],
    ids=["wrong-token", "no-token", "unknown-worker", "not-a-uuid"],
)
async def test_invalid_reattach_is_ignored(engine, mutate):
    old = await Peer.join(engine.url, "svc")
    await old.register("svc::fn")
    await settle(old)
    new = await Peer.join(engine.url, announce=False)
    await new.send({"type": "reattach", **mutate(old)})
    await new.register("svc::fn")
    rejected = await new.recv()
    assert rejected["code"] == "FUNCTION_NAMESPACE_CONFLICT"
    assert rejected["owner_worker_id"] == old.worker_id
    await new.announce("svc")
    rejected = await new.recv()
    assert rejected["code"] == "WORKER_NAMESPACE_CONFLICT"
    await settle(old)
    assert engine.worker("svc")["worker_id"] == old.worker_id


async def test_reattach_naming_itself_is_ignored(engine):
    peer = await Peer.join(engine.url, "self")
    await peer.send(
        {"type": "reattach", "previous_worker_id": peer.worker_id, "reattach_token": peer.token}
    )
    assert await settle(peer) == []
    assert engine.worker("self")["worker_id"] == peer.worker_id


async def test_reattach_stops_invocations_of_the_old_connection(engine):
    old = await Peer.join(engine.url, "svc")
    await old.register("svc::fn")
    caller = await Peer.join(engine.url, "caller")
    await settle(old)
    inv = await caller.invoke("svc::fn", 1)
    await old.recv_type("invokefunction")
    new = await Peer.join(engine.url, announce=False)
    await new.send(
        {"type": "reattach", "previous_worker_id": old.worker_id, "reattach_token": old.token}
    )
    result = await caller.recv_type("invocationresult")
    assert result["invocation_id"] == inv
    assert result["error"]["code"] == "invocation_stopped"
