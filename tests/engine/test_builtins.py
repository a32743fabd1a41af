"""The engine's builtin functions (docs/protocol.md#built-ins)."""

from __future__ import annotations

import logging
import os
import re

import pytest

from iii.testing._workers import STANDARD_WORKERS

from .conftest import own_engine
from .wsclient import UUID4, Peer, new_id, settle

pytestmark = pytest.mark.anyio

#: Workers of the standard worker modules (iii-engine, iii-queue, iii-cron, ...).
ENGINE_WORKERS = {m.worker_name for m in STANDARD_WORKERS}


def user_types(listed):
    """Trigger types of connected workers (the standard modules provide some too)."""
    return [t for t in listed if t["worker_name"] not in ENGINE_WORKERS]


async def call_ok(peer, function_id, data=None, **fields):
    frame = await peer.call(function_id, data, **fields)
    assert "error" not in frame, frame
    return frame.get("result")


async def call_err(peer, function_id, data=None, **fields):
    frame = await peer.call(function_id, data, **fields)
    assert "error" in frame, frame
    return frame["error"]


async def test_workers_register_validates_its_input(engine):
    peer = await Peer.join(engine.url, announce=False)
    err = await call_err(peer, "engine::workers::register", {"pid": "123"})
    assert err == {
        "code": "deserialization_error",
        "message": "Failed to deserialize input for engine::workers::register: "
        'invalid type: string "123", expected u32',
    }
    err = await call_err(peer, "engine::workers::register", {"telemetry": {"language": 1}})
    assert err["code"] == "deserialization_error"
    err = await call_err(peer, "engine::workers::register", [1])
    assert "expected struct RegisterWorkerInput" in err["message"]
    # Unknown keys (older SDKs' amplitude_api_key, 0.25 features) are ignored.
    ok = await call_ok(
        peer,
        "engine::workers::register",
        {
            "name": "w",
            "pid": 7,
            "telemetry": {"language": "en", "amplitude_api_key": "x"},
            "features": ["observe.v1"],
            "isolation": None,
            "namespace": None,
        },
    )
    assert ok == {"success": True}
    assert engine.worker("w")["pid"] == 7


async def test_channels_create(engine):
    peer = await Peer.join(engine.url, "p")
    refs = await call_ok(peer, "engine::channels::create", {"buffer_size": 16})
    assert set(refs) == {"writer", "reader"}
    assert refs["writer"]["direction"] == "write"
    assert refs["reader"]["direction"] == "read"
    for key in ("channel_id", "access_key"):
        assert refs["writer"][key] == refs["reader"][key]
        assert re.match(UUID4, refs["reader"][key])
    sizes = {}
    for asked in (None, 0, 5000, 16):
        data = {} if asked is None else {"buffer_size": asked}
        ref = (await call_ok(peer, "engine::channels::create", data))["reader"]
        sizes[asked] = ref["channel_id"]
    by_id = {c["channel_id"]: c["buffer_size"] for c in engine.channels()}
    assert [by_id[sizes[k]] for k in (None, 0, 5000, 16)] == [64, 1, 1024, 16]
    err = await call_err(peer, "engine::channels::create", {"buffer_size": "big"})
    assert err["code"] == "deserialization_error"


async def setup_world(engine):
    a = await Peer.join(engine.url, "alpha", description="first worker")
    await a.register("math::add", description="Add numbers", metadata={"team": "m"})
    await a.register("math::sub", request_format={"type": "object"}, response_format={"x": 1})
    await a.register("hidden::fn", metadata={"internal": True})
    b = await Peer.join(engine.url, "beta", namespace="orders")
    await b.register("orders::place", description="Place an order")
    await b.send(
        {
            "type": "registertriggertype",
            "id": "webhook",
            "description": "Incoming webhook",
            "trigger_request_format": {"type": "object"},
            "call_request_format": {"type": "string"},
        }
    )
    bid = new_id()
    await a.send(
        {
            "type": "registertrigger",
            "id": bid,
            "trigger_type": "webhook",
            "function_id": "math::add",
            "config": {"path": "/add"},
            "metadata": {"k": "v"},
            "trigger_namespace": "orders",
        }
    )
    await settle(a, b)
    return a, b, bid


async def test_functions_list(engine):
    a, _b, _ = await setup_world(engine)
    listed = (await call_ok(a, "engine::functions::list", {}))["functions"]
    # The standard worker modules' functions are listed too (engine::* only as
    # engine::queue::*); the workers' own, sorted:
    modules = {m.worker_name for m in STANDARD_WORKERS} - {"iii-engine"}
    assert [
        (f["function_id"], f["namespace"]) for f in listed if f["worker_name"] not in modules
    ] == [
        ("math::add", "default"),
        ("math::sub", "default"),
        ("orders::place", "orders"),
    ]
    ids = [f["function_id"] for f in listed]
    assert ids == sorted(ids)
    assert {"engine::queue::enqueue", "engine::queue::dlq_messages", "publish"} <= set(ids)
    assert all(i.startswith("engine::queue::") for i in ids if i.startswith("engine::"))
    add = next(f for f in listed if f["function_id"] == "math::add")
    assert add == {
        "function_id": "math::add",
        "namespace": "default",
        "worker_name": "alpha",
        "description": "Add numbers",
        "metadata": {"team": "m"},
    }
    every = (await call_ok(a, "engine::functions::list", {"include_internal": True}))["functions"]
    every_id = {f["function_id"] for f in every}
    assert {"hidden::fn", "engine::functions::list", "engine::workers::register"} <= every_id
    prefixed = await call_ok(a, "engine::functions::list", {"prefix": "math::"})
    assert [f["function_id"] for f in prefixed["functions"]] == ["math::add", "math::sub"]
    by_worker = await call_ok(a, "engine::functions::list", {"worker": "beta"})
    assert [f["function_id"] for f in by_worker["functions"]] == ["orders::place"]
    by_workers = await call_ok(a, "engine::functions::list", {"workers": ["beta", "alpha"]})
    assert len(by_workers["functions"]) == 3
    searched = await call_ok(a, "engine::functions::list", {"search": "order"})
    assert [f["function_id"] for f in searched["functions"]] == ["orders::place"]
    ranked = await call_ok(a, "engine::functions::list", {"search": "add"})
    assert ranked["functions"][0]["function_id"] == "math::add"
    assert (await call_ok(a, "engine::functions::list"))["functions"] == listed


async def test_functions_info(engine):
    a, _, bid = await setup_world(engine)
    detail = await call_ok(a, "engine::functions::info", {"function_id": "math::add"})
    assert detail == {
        "function_id": "math::add",
        "namespace": "default",
        "worker_name": "alpha",
        "description": "Add numbers",
        "metadata": {"team": "m"},
        "registered_triggers": [{"id": bid, "trigger_type": "webhook", "config": {"path": "/add"}}],
    }
    sub = await call_ok(a, "engine::functions::info", {"function_id": "math::sub"})
    assert sub["request_schema"] == {"type": "object"}
    assert sub["response_schema"] == {"x": 1}
    place = await call_ok(
        a, "engine::functions::info", {"function_id": "orders::place", "namespace": "orders"}
    )
    assert place["worker_name"] == "beta"
    many = await call_ok(a, "engine::functions::info", {"function_ids": ["math::add", "nope"]})
    assert many["functions"][1] == {"function_id": "nope", "error": "not_found"}
    assert many["functions"][0]["function_id"] == "math::add"
    err = await call_err(a, "engine::functions::info", {"function_id": "nope"})
    assert err["code"] == "NOT_FOUND"
    for bad in ({}, {"function_id": "a", "function_ids": ["b"]}):
        assert (await call_err(a, "engine::functions::info", bad))["code"] == "INVALID_ARGUMENTS"
    err = await call_err(a, "engine::functions::info", {"function_ids": ["x"] * 33})
    assert err["code"] == "INVALID_ARGUMENTS"


async def test_triggers_list_and_info(engine):
    a, _, _ = await setup_world(engine)
    listed = (await call_ok(a, "engine::triggers::list", {}))["triggers"]
    assert user_types(listed) == [
        {
            "id": "webhook",
            "namespace": "orders",
            "worker_name": "beta",
            "description": "Incoming webhook",
        }
    ]
    assert {"subscribe", "durable:subscriber"} <= {t["id"] for t in listed}
    internal = await call_ok(a, "engine::triggers::list", {"include_internal": True})
    assert {t["id"] for t in user_types(internal["triggers"])} | {
        t["id"] for t in internal["triggers"] if t["id"].startswith("engine::")
    } == {
        "webhook",
        "engine::workers-available",
        "engine::functions-available",
    }
    assert (await call_ok(a, "engine::triggers::list", {"search": "nothing"}))["triggers"] == []
    info = await call_ok(a, "engine::triggers::info", {"id": "webhook", "namespace": "orders"})
    assert info == {
        "id": "webhook",
        "namespace": "orders",
        "worker_name": "beta",
        "description": "Incoming webhook",
        "configuration_schema": {"type": "object"},
        "request_schema": {"type": "string"},
        "instance_count": 1,
    }
    err = await call_err(a, "engine::triggers::info", {"id": "webhook"})
    assert err["code"] == "NOT_FOUND"
    err = await call_err(a, "engine::triggers::info", {})
    assert err == {
        "code": "deserialization_error",
        "message": "Failed to deserialize input for engine::triggers::info: missing field `id`",
    }


async def test_registered_triggers_list_and_info(engine):
    a, _, bid = await setup_world(engine)
    listed = (await call_ok(a, "engine::registered-triggers::list", {}))["registered_triggers"]
    assert listed == [
        {
            "id": bid,
            "trigger_type": "webhook",
            "function_id": "math::add",
            "worker_name": "alpha",
            "config": {"path": "/add"},
            "config_summary": '{"path":"/add"}',
        }
    ]
    filtered = await call_ok(a, "engine::registered-triggers::list", {"trigger_type": "cron"})
    assert filtered == {"registered_triggers": []}
    info = await call_ok(a, "engine::registered-triggers::info", {"id": bid})
    assert info["metadata"] == {"k": "v"}
    assert info["trigger"]["id"] == "webhook"
    assert info["function"]["function_id"] == "math::add"
    err = await call_err(a, "engine::registered-triggers::info", {"id": "nope"})
    assert err["code"] == "NOT_FOUND"


async def test_workers_list_and_info(engine):
    a, b, bid = await setup_world(engine)
    nopid = await Peer.join(engine.url, announce=False)
    await nopid.call("engine::workers::register", {"name": "no-pid"})
    workers = (await call_ok(a, "engine::workers::list", {}))["workers"]
    names = [w["name"] for w in workers]
    assert "no-pid" not in names
    assert {"alpha", "beta", "iii-engine", "iii-queue"} <= set(names)
    alpha = next(w for w in workers if w["name"] == "alpha")
    assert alpha == {
        "name": "alpha",
        "description": "first worker",
        "version": "test",
        "id": a.worker_id,
        "namespace": "default",
        "runtime": "python",
        "os": None,
        "status": "connected",
        "function_count": 3,
        "connected_at_ms": alpha["connected_at_ms"],
        "active_invocations": 0,
        "isolation": None,
        "ip_address": "127.0.0.1",
    }
    engine_row = next(w for w in workers if w["name"] == "iii-engine")
    assert engine_row["runtime"] == "engine" and engine_row["status"] == "available"
    only_engine = await call_ok(a, "engine::workers::list", {"runtime": "engine"})
    assert {w["name"] for w in only_engine["workers"]} == ENGINE_WORKERS
    info = await call_ok(a, "engine::workers::info", {"name": "beta", "namespace": "orders"})
    assert info["worker"]["id"] == b.worker_id
    assert info["worker"]["pid"] == os.getpid()
    assert info["worker"]["internal"] is False
    assert [f["function_id"] for f in info["functions"]] == ["orders::place"]
    assert [t["id"] for t in info["trigger_types"]] == ["webhook"]
    alpha_info = await call_ok(a, "engine::workers::info", {"name": "alpha"})
    assert [t["id"] for t in alpha_info["registered_triggers"]] == [bid]
    engine_info = await call_ok(a, "engine::workers::info", {"name": "iii-engine"})
    assert engine_info["worker"]["internal"] is True
    assert (await call_err(a, "engine::workers::info", {"name": "zzz"}))["code"] == "NOT_FOUND"
    # active_invocations counts what a worker is executing.
    inv = await b.invoke("math::add", 1)
    await a.recv_type("invokefunction")
    listed = (await call_ok(b, "engine::workers::list", {"search": "alpha"}))["workers"]
    assert [w["active_invocations"] for w in listed] == [1]
    await a.result(inv, 1)


async def test_register_trigger_is_durable_and_waits_for_the_ack(engine):
    provider = await Peer.join(engine.url, "provider")
    await provider.send({"type": "registertriggertype", "id": "cron", "description": ""})
    await settle(provider)
    caller = await Peer.join(engine.url, "caller")
    inv = await caller.invoke(
        "engine::register_trigger",
        {"trigger_type": "cron", "function_id": "job::run", "config": {"e": "* * *"}},
    )
    delivered = await provider.recv_type("registertrigger")
    assert delivered["function_id"] == "job::run"
    await caller.expect_silence(0.1)  # waiting for the provider's ack
    await provider.send(
        {
            "type": "triggerregistrationresult",
            "id": delivered["id"],
            "trigger_type": "cron",
            "function_id": "job::run",
        }
    )
    result = await caller.recv_type("invocationresult")
    assert result["invocation_id"] == inv
    assert result["result"] == {"id": delivered["id"]}
    # Durable: not owned by the caller.
    await caller.abort()
    await engine.wait_for(lambda: len(engine.workers()) == 1)
    assert [b["id"] for b in engine.bindings()] == [delivered["id"]]
    assert engine.bindings()[0]["owner"] is None
    # Removal is idempotent.
    other = await Peer.join(engine.url, "other")
    removed = await call_ok(other, "engine::unregister_trigger", {"id": delivered["id"]})
    assert removed == {"removed": True}
    assert (await provider.recv_type("unregistertrigger"))["id"] == delivered["id"]
    again = await call_ok(other, "engine::unregister_trigger", {"id": delivered["id"]})
    assert again == {"removed": False}


async def test_register_trigger_fails_when_the_provider_refuses(engine):
    provider = await Peer.join(engine.url, "provider")
    await provider.send({"type": "registertriggertype", "id": "cron", "description": ""})
    await settle(provider)
    caller = await Peer.join(engine.url, "caller")
    inv = await caller.invoke(
        "engine::register_trigger", {"trigger_type": "cron", "function_id": "j::r"}
    )
    delivered = await provider.recv_type("registertrigger")
    assert delivered["config"] is None
    error = {"code": "trigger_registration_failed", "message": "bad cron"}
    await provider.send(
        {
            "type": "triggerregistrationresult",
            "id": delivered["id"],
            "trigger_type": "cron",
            "function_id": "j::r",
            "error": error,
        }
    )
    result = await caller.recv_type("invocationresult")
    assert result["invocation_id"] == inv
    assert result["error"] == error
    assert engine.bindings() == []


async def test_register_trigger_without_provider_parks_and_returns():
    async with own_engine(trigger_ack_timeout=0.2) as eng:
        caller = await Peer.join(eng.url, "c")
        result = await call_ok(
            caller, "engine::register_trigger", {"trigger_type": "later", "function_id": "f"}
        )
        assert re.match(UUID4, result["id"])
        assert eng.bindings()[0]["parked"] is True
        # A provider that never acks: the call returns after the ack timeout.
        provider = await Peer.join(eng.url, "silent")
        await provider.send({"type": "registertriggertype", "id": "t2", "description": ""})
        await settle(provider)
        result = await call_ok(
            caller, "engine::register_trigger", {"trigger_type": "t2", "function_id": "f"}
        )
        assert result["id"] in {b["id"] for b in eng.bindings()}
        err = await call_err(caller, "engine::register_trigger", {"function_id": "f"})
        assert err["code"] == "deserialization_error"


async def test_log_functions(engine, caplog):
    caplog.set_level(logging.DEBUG, "iii.testing.worker_log")
    peer = await Peer.join(engine.url, "logger")
    for level in ("info", "warn", "error", "debug", "trace"):
        frame = await peer.call(f"engine::log::{level}", {"message": f"hello {level}"})
        assert "result" not in frame and "error" not in frame
    messages = [r.getMessage() for r in caplog.records if r.name == "iii.testing.worker_log"]
    assert "[logger] hello warn" in messages


async def test_baggage_functions(engine):
    peer = await Peer.join(engine.url, "b")
    got = await call_ok(peer, "engine::baggage::get", {"key": "user"}, baggage="user=ann,x=1")
    assert got == {"key": "user", "value": "ann"}
    every = await call_ok(peer, "engine::baggage::get_all", {}, baggage="user=ann,x=1;p")
    assert every == {"baggage": {"user": "ann", "x": "1"}}
    updated = await call_ok(peer, "engine::baggage::set", {"key": "y", "value": "2"}, baggage="x=1")
    assert updated == {"baggage": "x=1,y=2"}


async def test_queue_enqueue_builtin_directly(engine):
    provider = await Peer.join(engine.url, "p")
    await provider.register("job::fn")
    await settle(provider)
    caller = await Peer.join(engine.url, "c")
    receipt = await call_ok(
        caller,
        "engine::queue::enqueue",
        {"queue": "default", "function_id": "job::fn", "data": [1]},
    )
    assert re.match(UUID4, receipt["messageReceiptId"])
    assert (await provider.recv_type("invokefunction"))["data"] == [1]


async def test_unknown_engine_function(engine):
    peer = await Peer.join(engine.url, "p")
    err = await call_err(peer, "engine::does::not::exist", {})
    assert err["code"] == "function_not_found"
