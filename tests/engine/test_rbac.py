"""RBAC listeners: the auth function, FORBIDDEN, AUTH_ERROR, middleware (docs/protocol.md#rbac)."""

from __future__ import annotations

import re
from contextlib import asynccontextmanager

import pytest

from iii.testing import Engine, RbacConfig

from .conftest import own_engine
from .wsclient import UUID4, Peer, RawClient, new_id, settle

pytestmark = pytest.mark.anyio

RBAC = {
    "auth_function_id": "auth::check",
    "expose_functions": [
        'match("public::*")',
        {"metadata": {"visibility": "public"}},
        {"match": "blue::open", "namespace": "blue"},
    ],
}


def rbac_url(eng: Engine) -> str:
    """The RBAC listener's URL (the engine was started with one)."""
    assert eng.rbac_url is not None
    return eng.rbac_url


@asynccontextmanager
async def rbac_engine(**extra):
    async with own_engine(rbac=dict(RBAC, **extra)) as eng:
        auth = await Peer.join(eng.url, "auth")
        await auth.register("auth::check")
        await settle(auth)
        yield eng, auth


async def connect(eng, auth, result, *, path="/", headers=None):
    """Open an RBAC connection; the auth worker answers with ``result``."""
    client = await RawClient.connect(rbac_url(eng), path, headers=headers)
    request = await auth.recv_type("invokefunction")
    assert request["function_id"] == "auth::check"
    if isinstance(result, dict) and "error" in result and set(result) == {"error"}:
        await auth.result(request["invocation_id"], None, error=result["error"])
    else:
        await auth.result(request["invocation_id"], result)
    return client, request["data"]


async def join(eng, auth, result, name="rbac-worker", **announce):
    client, _ = await connect(eng, auth, result)
    client.__class__ = Peer
    first = await client.recv()
    assert first["type"] == "workerregistered", first
    client.worker_id = first["worker_id"]
    client.token = first["reattach_token"]
    await client.announce(name, **announce)
    return client


async def provider(eng, *functions, namespace=None, name="backend", **fields):
    peer = await Peer.join(eng.url, name, namespace=namespace)
    for fid in functions:
        await peer.register(fid, **fields)
    await settle(peer)
    return peer


async def test_auth_function_gets_headers_query_and_ip():
    async with rbac_engine() as (eng, auth):
        client, data = await connect(
            eng,
            auth,
            {},
            path="/?token=abc&x=1&x=2",
            headers=[(b"Authorization", b"Bearer secret"), (b"X-Team", b"orders")],
        )
        assert data["headers"]["authorization"] == "Bearer secret"
        assert data["headers"]["x-team"] == "orders"
        assert "host" in data["headers"]
        assert data["query_params"] == {"token": ["abc"], "x": ["1", "2"]}
        assert data["ip_address"] == "127.0.0.1"
        assert "_caller_worker_id" not in data
        assert (await client.recv())["type"] == "workerregistered"
        assert re.match(UUID4, eng.workers()[-1]["worker_id"])


async def test_forbidden_call_gets_forbidden_with_the_callers_id():
    async with rbac_engine() as (eng, auth):
        await provider(eng, "admin::wipe")
        peer = await join(eng, auth, {})
        inv = new_id()
        await peer.invoke("admin::wipe", {}, invocation_id=inv)
        result = await peer.recv_type("invocationresult")
        assert result == {
            "type": "invocationresult",
            "invocation_id": inv,
            "function_id": "admin::wipe",
            "error": {
                "code": "FORBIDDEN",
                "message": "function 'admin::wipe' not allowed (add to rbac.expose_functions)",
            },
        }


async def test_forbidden_void_call_gets_a_fresh_id():
    async with rbac_engine() as (eng, auth):
        backend = await provider(eng, "admin::wipe")
        peer = await join(eng, auth, {})
        await peer.send(
            {
                "type": "invokefunction",
                "function_id": "admin::wipe",
                "data": {},
                "action": {"type": "void"},
            }
        )
        result = await peer.recv_type("invocationresult")
        assert re.match(UUID4, result["invocation_id"])
        assert result["error"]["code"] == "FORBIDDEN"
        await backend.expect_silence(0.05)


async def test_exposed_and_granted_functions_are_callable():
    async with rbac_engine() as (eng, auth):
        backend = await provider(eng, "public::hello", "tagged::fn", "granted::fn", "extra::fn")
        await backend.register("tagged::meta", metadata={"visibility": "public"})
        blue = await provider(eng, "blue::open", "blue::closed", namespace="blue", name="blue")
        peer = await join(
            eng,
            auth,
            {"namespaces": {"blue": ["blue::c*"]}, "allowed_functions": ["extra::fn"]},
        )
        await settle(backend)
        for fid, ns, target in (
            ("public::hello", None, backend),
            ("tagged::meta", None, backend),
            ("extra::fn", None, backend),
            ("blue::open", "blue", blue),
            ("blue::closed", "blue", blue),
        ):
            inv = await peer.invoke(fid, 1, **({"namespace": ns} if ns else {}))
            frame = await target.recv_type("invokefunction")
            assert frame["invocation_id"] == inv
            await target.result(inv, fid)
            assert (await peer.recv_type("invocationresult"))["result"] == fid
        for fid, ns in (("tagged::fn", None), ("granted::fn", None), ("x::y", "red")):
            result = await peer.call(fid, 1, **({"namespace": ns} if ns else {}))
            assert result["error"]["code"] == "FORBIDDEN", fid
        result = await peer.call("x::y", 1, namespace="red")
        assert result["error"]["message"] == (
            "namespace 'red' not allowed for this session (permitted: blue)"
        )


async def test_forbidden_functions_win():
    async with rbac_engine() as (eng, auth):
        await provider(eng, "public::hello")
        peer = await join(eng, auth, {"forbidden_functions": ["public::hello"]})
        result = await peer.call("public::hello", 1)
        assert result["error"]["message"] == (
            "function 'public::hello' not allowed (remove from rbac.forbidden_functions)"
        )


async def test_infrastructure_builtins_are_always_allowed():
    async with rbac_engine() as (eng, auth):
        peer = await join(eng, auth, {})
        ok = await peer.call("engine::channels::create", {})
        assert "writer" in ok["result"]
        ok = await peer.call("engine::log::info", {"message": "hi"})
        assert "error" not in ok
        denied = await peer.call("engine::functions::list", {})
        assert denied["error"]["code"] == "FORBIDDEN"


@pytest.mark.parametrize(
    "answer, reason",
    [
        ({"error": {"code": "denied", "message": "bad token"}}, "auth function failed"),
        (None, "auth function returned no result"),
        ([1, 2], "auth result must be an object"),
        ({"namespaces": "nope"}, "`namespaces` must be an object"),
    ],
    ids=["error", "null", "not-object", "bad-field"],
)
async def test_auth_failures_send_auth_error_and_close(answer, reason):
    async with rbac_engine() as (eng, auth):
        client, _ = await connect(eng, auth, answer)
        frame = await client.recv()
        assert frame["type"] == "error"
        assert frame["error"]["code"] == "AUTH_ERROR"
        assert reason in frame["error"]["message"]
        assert await client.wait_closed() == 1005  # Close without a status code
        assert [w["name"] for w in eng.workers()] == ["auth"]


async def test_missing_auth_function_is_an_auth_error():
    async with own_engine(rbac={"auth_function_id": "auth::missing"}) as eng:
        client = await RawClient.connect(rbac_url(eng))
        frame = await client.recv()
        assert frame["error"]["code"] == "AUTH_ERROR"
        assert "function_not_found" in frame["error"]["message"]


async def test_rbac_listener_without_auth_function():
    config = RbacConfig.from_mapping({"expose_functions": ['match("open::*")']})
    async with own_engine(rbac=config) as eng:
        backend = await provider(eng, "open::fn", "closed::fn")
        peer = await Peer.join(rbac_url(eng), "anon")
        await peer.send({"type": "registertriggertype", "id": "t", "description": ""})
        await peer.register("anon::fn")
        await settle(peer)
        assert any(t["id"] == "t" for t in eng.trigger_types())
        inv = await peer.invoke("open::fn", 1)
        assert (await backend.recv_type("invokefunction"))["invocation_id"] == inv
        assert (await peer.call("closed::fn", 1))["error"]["code"] == "FORBIDDEN"


async def test_registration_permissions_and_prefix():
    async with rbac_engine() as (eng, auth):
        peer = await join(
            eng,
            auth,
            {"function_registration_prefix": "tenant", "namespaces": {"default": ["*"]}},
        )
        await peer.register("fn")
        await peer.send({"type": "registertriggertype", "id": "t", "description": ""})
        await settle(peer)
        assert [f["function_id"] for f in eng.functions() if f["worker_id"] == peer.worker_id] == [
            "tenant::fn"
        ]
        assert all(t["id"] != "t" for t in eng.trigger_types())  # default: not allowed
        # Callers use the prefixed id; the handler sees its own id.
        caller = await Peer.join(eng.url, "caller")
        inv = await caller.invoke("tenant::fn", 1)
        frame = await peer.recv_type("invokefunction")
        assert frame["function_id"] == "fn" and frame["invocation_id"] == inv
        await peer.send({"type": "unregisterfunction", "id": "fn"})
        await settle(peer)
        assert all(f["function_id"] != "tenant::fn" for f in eng.functions())
        no_reg = await join(eng, auth, {"allow_function_registration": False}, name="noreg")
        await no_reg.register("nope::fn")
        assert await settle(no_reg) == []
        assert all(f["function_id"] != "nope::fn" for f in eng.functions())


async def test_trigger_permissions():
    async with rbac_engine() as (eng, auth):
        hooks = await Peer.join(eng.url, "hooks")
        await hooks.send({"type": "registertriggertype", "id": "webhook", "description": ""})
        await hooks.send({"type": "registertriggertype", "id": "cron", "description": ""})
        await provider(eng, "public::fn", "private::fn")
        peer = await join(
            eng,
            auth,
            {
                "allowed_trigger_types": ["webhook"],
                "allowed_functions": ["engine::register_trigger"],
            },
        )
        for trigger_type, fid in (("cron", "public::fn"), ("webhook", "private::fn")):
            await peer.send(
                {
                    "type": "registertrigger",
                    "id": new_id(),
                    "trigger_type": trigger_type,
                    "function_id": fid,
                    "config": {},
                }
            )
        refusal = await peer.recv_type("triggerregistrationresult")
        assert refusal["function_id"] == "private::fn"
        assert refusal["error"] == {
            "code": "FORBIDDEN",
            "message": "function 'private::fn' not allowed in namespace 'default'",
        }
        assert eng.bindings() == []
        ok = new_id()
        await peer.send(
            {
                "type": "registertrigger",
                "id": ok,
                "trigger_type": "webhook",
                "function_id": "public::fn",
                "config": {},
            }
        )
        assert (await hooks.recv_type("registertrigger"))["id"] == ok
        err = await peer.call(
            "engine::register_trigger", {"trigger_type": "cron", "function_id": "public::fn"}
        )
        assert err["error"] == {
            "code": "FORBIDDEN",
            "message": "Trigger type 'cron' is not allowed for this session.",
        }


async def test_announce_namespace_must_be_granted():
    async with rbac_engine() as (eng, auth):
        client, _ = await connect(eng, auth, {"namespaces": {"blue": ["*"]}})
        client.__class__ = Peer
        client.worker_id = (await client.recv())["worker_id"]
        await client.announce("w", namespace="red")
        result = await client.recv_type("invocationresult")
        assert result["error"] == {
            "code": "FORBIDDEN",
            "message": "namespace 'red' not allowed for this session (permitted: blue)",
        }
        await client.announce("w", namespace="blue")
        await settle(client)
        assert eng.worker(client.worker_id)["namespace"] == "blue"


async def test_middleware_decides_every_non_builtin_call():
    async with rbac_engine(middleware_function_id="mw::gate") as (eng, auth):
        gate = await provider(eng, "mw::gate", "public::fn", name="gate")
        peer = await join(eng, auth, {"context": {"tenant": "acme"}})
        inv = await peer.invoke("public::fn", {"x": 1}, namespace="default")
        frame = await gate.recv_type("invokefunction")
        assert frame["function_id"] == "mw::gate"
        assert frame["data"] == {
            "function_id": "public::fn",
            "payload": {"x": 1},
            "action": None,
            "context": {"tenant": "acme"},
            "namespace": "default",
        }
        await gate.result(frame["invocation_id"], {"from": "middleware"})
        result = await peer.recv_type("invocationresult")
        assert result["invocation_id"] == inv
        assert result["result"] == {"from": "middleware"}
        # Builtins bypass the middleware.
        refs = await peer.call("engine::channels::create", {})
        assert "reader" in refs["result"]
        # Void calls get the middleware's answer under a fresh id.
        await peer.send(
            {
                "type": "invokefunction",
                "function_id": "public::fn",
                "data": 2,
                "action": {"type": "void"},
            }
        )
        frame = await gate.recv_type("invokefunction")
        assert frame["data"]["action"] == {"type": "void"}
        await gate.result(frame["invocation_id"], None, error={"code": "NOPE", "message": "no"})
        result = await peer.recv_type("invocationresult")
        assert re.match(UUID4, result["invocation_id"])
        assert result["error"]["code"] == "NOPE"


async def test_functions_list_shows_only_callable_functions():
    async with rbac_engine() as (eng, auth):
        await provider(eng, "public::a", "secret::b")
        peer = await join(eng, auth, {"allowed_functions": ["engine::functions::list"]})
        listed = await peer.call("engine::functions::list", {})
        assert [f["function_id"] for f in listed["result"]["functions"]] == ["public::a"]


async def test_trusted_listener_is_unaffected():
    async with rbac_engine() as (eng, _auth):
        await provider(eng, "admin::wipe")
        trusted = await Peer.join(eng.url, "trusted")
        inv = await trusted.invoke("admin::wipe", 1)
        assert (await eng.wait_for(lambda: eng.pending_invocations()))[0]["invocation_id"] == inv


def test_rbac_config_validation():
    with pytest.raises(ValueError):
        RbacConfig.from_mapping({"auth_function": "x"})
    with pytest.raises(ValueError):
        RbacConfig.from_mapping({"expose_functions": "match('x')"})
    with pytest.raises(ValueError):
        RbacConfig.from_mapping({"expose_functions": [{"unknown": 1}]})
    config = RbacConfig.from_mapping({"expose_functions": ["plain::glob*", "match('q::*')"]})
    assert [r.id_glob for r in config.expose_functions] == ["plain::glob*", "q::*"]
