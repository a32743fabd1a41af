"""Invocation routing: sync, void, enqueue, results and errors (docs/protocol.md#routing)."""

from __future__ import annotations

import re

import anyio
import pytest

from .conftest import own_engine
from .wsclient import UUID4, Peer, new_id, settle

pytestmark = pytest.mark.anyio


async def pair(engine, function_id="math::add", namespace=None):
    provider = await Peer.join(engine.url, "provider", namespace=namespace)
    await provider.register(function_id)
    caller = await Peer.join(engine.url, "caller")
    await engine.wait_for_function(function_id, namespace or "default")
    return provider, caller


async def test_sync_call_passes_the_callers_id_through(engine):
    provider, caller = await pair(engine)
    inv = await caller.invoke("math::add", {"a": 2, "b": 3})
    frame = await provider.recv()
    assert frame == {
        "type": "invokefunction",
        "invocation_id": inv,
        "function_id": "math::add",
        "data": {"a": 2, "b": 3, "_caller_worker_id": caller.worker_id},
    }
    await provider.result(inv, {"c": 5}, function_id="math::add", traceparent="00-x-y-01")
    assert await caller.recv() == {
        "type": "invocationresult",
        "invocation_id": inv,
        "function_id": "math::add",
        "result": {"c": 5},
    }


async def test_metadata_and_trace_context_reach_the_handler(engine):
    provider, caller = await pair(engine)
    tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    inv = await caller.invoke(
        "math::add", {"a": 1}, metadata={"tenant": "acme"}, traceparent=tp, baggage="k=v"
    )
    frame = await provider.recv()
    assert frame["metadata"] == {"tenant": "acme"}
    assert frame["traceparent"] == tp
    assert frame["baggage"] == "k=v"
    assert "action" not in frame and "namespace" not in frame
    await provider.result(inv, 1, function_id="math::add")
    result = await caller.recv()
    assert result["traceparent"] == tp
    assert result["baggage"] == "k=v"


async def test_null_result_is_omitted(engine):
    provider, caller = await pair(engine)
    inv = await caller.invoke("math::add", 1)
    await provider.recv()
    await provider.result(inv, None, function_id="math::add")
    result = await caller.recv()
    assert "result" not in result and "error" not in result
    inv = await caller.invoke("math::add", 1)
    await provider.recv()
    await provider.send({"type": "invocationresult", "invocation_id": inv, "function_id": "x"})
    result = await caller.recv()
    assert result == {"type": "invocationresult", "invocation_id": inv, "function_id": "math::add"}


async def test_handler_error_is_forwarded_and_wins_over_result(engine):
    provider, caller = await pair(engine)
    inv = await caller.invoke("math::add", 1)
    await provider.recv()
    error = {"code": "invocation_failed", "message": "boom", "stacktrace": "Traceback..."}
    await provider.result(inv, 42, function_id="math::add", error=error)
    result = await caller.recv()
    assert result == {
        "type": "invocationresult",
        "invocation_id": inv,
        "function_id": "math::add",
        "error": error,
    }


async def test_void_call_gets_a_fresh_id_and_no_result(engine):
    provider, caller = await pair(engine)
    mine = new_id()
    await caller.send(
        {
            "type": "invokefunction",
            "function_id": "math::add",
            "data": {"a": 1},
            "invocation_id": mine,
            "action": {"type": "void"},
        }
    )
    frame = await provider.recv()
    assert re.match(UUID4, frame["invocation_id"]) and frame["invocation_id"] != mine
    assert frame["data"] == {"a": 1, "_caller_worker_id": caller.worker_id}
    assert engine.pending_invocations()[0]["caller"] is None
    await provider.result(frame["invocation_id"], "ignored", function_id="math::add")
    await settle(provider)
    await caller.expect_silence(0.1)
    assert engine.pending_invocations() == []


async def test_call_without_invocation_id_is_fire_and_forget(engine):
    provider, caller = await pair(engine)
    await caller.send({"type": "invokefunction", "function_id": "math::add", "data": 7})
    frame = await provider.recv()
    assert re.match(UUID4, frame["invocation_id"])
    assert frame["data"] == 7
    await provider.result(frame["invocation_id"], 1)
    await caller.expect_silence(0.1)


async def test_caller_worker_id_rules(engine):
    provider, caller = await pair(engine)
    cases = [
        ({"_caller_worker_id": "spoofed", "x": 1}, {"_caller_worker_id": caller.worker_id, "x": 1}),
        ([1, 2], [1, 2]),
        ("text", "text"),
        (None, None),
        (5, 5),
    ]
    for sent, expected in cases:
        inv = await caller.invoke("math::add", sent)
        frame = await provider.recv()
        assert frame["data"] == expected
        await provider.result(inv, None)
        await caller.recv()


async def test_missing_data_drops_the_call_like_the_real_engine(engine, caplog):
    """``data`` is required: the real engine drops the frame (the caller would
    time out), and so does this one by default, in its log and transcript."""
    provider, caller = await pair(engine)
    inv = new_id()
    await caller.send({"type": "invokefunction", "function_id": "math::add", "invocation_id": inv})
    assert await settle(caller) == []
    await provider.expect_silence(0.05)
    assert engine.pending_invocations() == []
    reason = "invalid invokefunction frame: missing field `data`"
    dropped = [e for e in engine.transcript() if e["kind"] == "dropped"]
    assert [(e["conn"], e["dir"], e["info"]) for e in dropped] == [(caller.worker_id, "in", reason)]
    assert any(
        r.levelname == "WARNING" and reason in r.getMessage() and caller.worker_id in r.getMessage()
        for r in caplog.records
    )
    # The connection stays usable.
    inv = await caller.invoke("math::add", None)
    assert (await provider.recv())["data"] is None


async def test_missing_data_is_read_as_null_when_lenient():
    """``lenient_frames=True``: the official Python SDKs omit ``data`` for None."""
    async with own_engine(namespace_grace=0.3, lenient_frames=True) as engine:
        provider, caller = await pair(engine)
        inv = new_id()
        await caller.send(
            {"type": "invokefunction", "function_id": "math::add", "invocation_id": inv}
        )
        frame = await provider.recv()
        assert frame["data"] is None
        assert frame["invocation_id"] == inv
        assert engine.stats()["bad_frames"] == 0


async def test_function_not_found(engine):
    peer = await Peer.join(engine.url, "lonely")
    result = await peer.call("nope::missing", {})
    assert result["error"] == {
        "code": "function_not_found",
        "message": "Function nope::missing not found in namespace default.",
    }
    assert result["function_id"] == "nope::missing"


async def test_function_not_found_names_other_namespaces(engine):
    a = await Peer.join(engine.url, "a", namespace="blue")
    await a.register("shared::fn")
    b = await Peer.join(engine.url, "b", namespace="green")
    await b.register("shared::fn")
    await settle(a, b)
    result = await a.call("shared::fn", {})
    assert result["error"]["message"] == (
        "Function shared::fn not found in namespace default. "
        "It is registered in namespace(s): blue, green."
    )
    result = await a.call("engine::functions::list", {}, namespace="blue")
    assert result["error"]["message"].endswith("It is registered in namespace(s): default.")


async def test_void_call_to_missing_function_is_silent(engine):
    peer = await Peer.join(engine.url, "p")
    await peer.send(
        {"type": "invokefunction", "function_id": "no::pe", "data": 1, "action": {"type": "void"}}
    )
    assert await settle(peer) == []


async def test_namespaced_function_is_strict(engine):
    provider, caller = await pair(engine, "ns::fn", namespace="orders")
    result = await caller.call("ns::fn", 1)
    assert result["error"]["code"] == "function_not_found"
    inv = await caller.invoke("ns::fn", 1, namespace="orders")
    frame = await provider.recv_type("invokefunction")
    assert frame["invocation_id"] == inv and "namespace" not in frame


async def test_handler_disconnect_stops_the_invocation(engine):
    provider, caller = await pair(engine)
    inv = await caller.invoke("math::add", 1)
    await provider.recv()
    await provider.abort()
    result = await caller.recv()
    assert result == {
        "type": "invocationresult",
        "invocation_id": inv,
        "function_id": "math::add",
        "error": {"code": "invocation_stopped", "message": "Invocation stopped"},
    }


async def test_caller_disconnect_abandons_the_invocation(engine):
    provider, caller = await pair(engine)
    inv = await caller.invoke("math::add", 1)
    await provider.recv()
    await caller.abort()
    await engine.wait_for(lambda: len(engine.workers()) == 1)
    assert engine.pending_invocations()[0]["caller"] is None
    await provider.result(inv, 2)
    await settle(provider)
    assert engine.pending_invocations() == []


async def test_result_for_unknown_invocation_is_dropped(engine):
    peer = await Peer.join(engine.url, "p")
    await peer.result(new_id(), 1, function_id="x")
    assert await settle(peer) == []


async def test_uuid_forms_are_canonicalised(engine):
    provider, caller = await pair(engine)
    raw = new_id()
    for form in (raw.upper(), raw.replace("-", ""), "{" + raw + "}", "urn:uuid:" + raw):
        await caller.invoke("math::add", 1, invocation_id=form)
        frame = await provider.recv()
        assert frame["invocation_id"] == raw
        await provider.result(raw.upper(), "ok")
        result = await caller.recv()
        assert result["invocation_id"] == raw


async def test_worker_can_call_itself(engine):
    peer = await Peer.join(engine.url, "self")
    await peer.register("self::fn")
    await settle(peer)
    inv = await peer.invoke("self::fn", {"n": 1})
    frame = await peer.recv()
    assert frame["type"] == "invokefunction" and frame["invocation_id"] == inv
    await peer.result(inv, "me", function_id="self::fn")
    assert (await peer.recv())["result"] == "me"


async def test_many_concurrent_calls_are_matched(engine):
    provider, caller = await pair(engine)
    ids = [await caller.invoke("math::add", {"i": i}) for i in range(300)]
    received = []
    for _ in ids:
        frame = await provider.recv()
        received.append(frame)
    for frame in reversed(received):
        await provider.result(frame["invocation_id"], frame["data"]["i"])
    results = {}
    for _ in ids:
        frame = await caller.recv()
        results[frame["invocation_id"]] = frame["result"]
    assert results == {inv: i for i, inv in enumerate(ids)}


async def test_enqueue_returns_a_receipt_and_delivers_later(engine):
    provider, caller = await pair(engine)
    inv = await caller.invoke(
        "math::add",
        {"a": 1},
        action={"type": "enqueue", "queue": "default"},
        metadata={"m": 1},
        traceparent="00-aa-bb-01",
    )
    result = await caller.recv()
    assert result["invocation_id"] == inv and result["function_id"] == "math::add"
    receipt = result["result"]["messageReceiptId"]
    assert re.match(UUID4, receipt)
    delivered = await provider.recv()
    assert delivered["function_id"] == "math::add"
    assert delivered["data"] == {"a": 1}  # no _caller_worker_id on enqueue
    assert delivered["invocation_id"] not in (inv, receipt)
    assert delivered["traceparent"] == "00-aa-bb-01"
    assert "metadata" not in delivered
    # The receipt went out before the delivery.
    order = [
        (f["type"], f.get("invocation_id"))
        for f in engine.frames(direction="out")
        if f["type"] in ("invocationresult", "invokefunction")
    ]
    assert order.index(("invocationresult", inv)) < order.index(
        ("invokefunction", delivered["invocation_id"])
    )
    await provider.result(delivered["invocation_id"], "done")
    await engine.wait_for(lambda: engine.queue_stats()["delivered"] == 1)
    await caller.expect_silence(0.1)


async def test_enqueue_to_a_namespace(engine):
    provider, caller = await pair(engine, "q::fn", namespace="orders")
    await caller.invoke(
        "q::fn", 5, namespace="orders", action={"type": "enqueue", "queue": "default"}
    )
    assert "messageReceiptId" in (await caller.recv())["result"]
    assert (await provider.recv())["data"] == 5


async def test_enqueue_of_a_missing_function_is_retried_then_dead_lettered():
    async with own_engine(queue_backoff=0.01, queue_max_attempts=3) as eng:
        caller = await Peer.join(eng.url, "c")
        result = await caller.call("ghost::fn", 1, action={"type": "enqueue", "queue": "default"})
        receipt = result["result"]["messageReceiptId"]
        await eng.wait_for(lambda: eng.dead_letters())
        dead = eng.dead_letters()[0]
        assert dead["messageReceiptId"] == receipt
        assert dead["attempts"] == 3
        error = dead["error"]
        assert isinstance(error, dict) and error["code"] == "function_not_found"


async def test_enqueue_waits_for_a_function_registered_later():
    async with own_engine(queue_backoff=0.05, queue_max_attempts=10) as eng:
        caller = await Peer.join(eng.url, "c")
        await caller.call("later::fn", "payload", action={"type": "enqueue", "queue": "default"})
        provider = await Peer.join(eng.url, "late")
        await provider.register("later::fn")
        frame = await provider.recv_type("invokefunction", timeout=5)
        assert frame["data"] == "payload"


async def test_enqueue_without_a_queue_fails():
    async with own_engine(queue=False) as eng:
        caller = await Peer.join(eng.url, "c")
        result = await caller.call("any::fn", 1, action={"type": "enqueue", "queue": "jobs"})
        assert result["error"]["code"] == "enqueue_error"
        assert "engine::queue::enqueue" in result["error"]["message"]


async def test_worker_provided_queue_replaces_the_builtin(engine):
    queue = await Peer.join(engine.url, "queue-worker")
    await queue.register("engine::queue::enqueue")
    caller = await Peer.join(engine.url, "c")
    await settle(queue)
    inv = await caller.invoke("t::fn", {"x": 1}, action={"type": "enqueue", "queue": "jobs"})
    job = await queue.recv_type("invokefunction")
    data = job["data"]
    assert data["queue"] == "jobs"
    assert data["function_id"] == "t::fn"
    assert data["data"] == {"x": 1}
    assert "_caller_worker_id" not in data
    await queue.result(job["invocation_id"], {"ok": True})
    result = await caller.recv()
    assert result["invocation_id"] == inv
    assert result["result"] == {"messageReceiptId": data["messageReceiptId"]}
    inv = await caller.invoke("t::fn", 1, action={"type": "enqueue", "queue": "jobs"})
    job = await queue.recv_type("invokefunction")
    await queue.result(job["invocation_id"], error={"code": "full", "message": "queue full"})
    result = await caller.recv()
    assert result["error"]["code"] == "enqueue_error"
    assert "queue full" in result["error"]["message"]


async def test_void_enqueue_has_no_receipt(engine):
    provider, caller = await pair(engine)
    await caller.send(
        {
            "type": "invokefunction",
            "function_id": "math::add",
            "data": 3,
            "action": {"type": "enqueue", "queue": "default"},
        }
    )
    assert (await provider.recv())["data"] == 3
    await caller.expect_silence(0.1)


async def test_handler_receives_invocations_concurrently(engine):
    provider, caller = await pair(engine)
    first = await caller.invoke("math::add", 1)
    second = await caller.invoke("math::add", 2)
    a = await provider.recv()
    b = await provider.recv()
    assert {a["invocation_id"], b["invocation_id"]} == {first, second}
    await provider.result(second, "two")
    assert (await caller.recv())["invocation_id"] == second
    await provider.result(first, "one")
    assert (await caller.recv())["invocation_id"] == first
    with anyio.fail_after(1):
        assert engine.pending_invocations() == []
