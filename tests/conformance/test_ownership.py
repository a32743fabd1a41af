"""Ownership and namespaces with official workers (docs/protocol.md#ownership).

* One live worker per (namespace, name): a second gets WORKER_NAMESPACE_CONFLICT.
* First live owner of a function id keeps it: a second gets FUNCTION_NAMESPACE_CONFLICT.
* Namespaced workers: only iii-sdk 0.25.0 has namespaces (0.19.7 and Node 0.22.1
  lack them; they can still see the engine's not-found hint naming the namespace).

Named SDK behaviours on a refused worker name: 0.25.0 stops for good (state
``failed``, calls raise ``RegistrationRejectedError``); Node 0.22.1 does not know
``registrationrejected`` and retries forever; 0.19.7 becomes a zombie (the
engine's Close without status code counts as normal for it, iii-hq/iii#2180).
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from iii.testing import EngineThread

from ._harness import SDK_IDS, PeerAgent, PeerError, poll

pytestmark = pytest.mark.conformance

Spawn = Callable[..., PeerAgent]


@pytest.mark.parametrize("sdk_id", SDK_IDS)
def test_worker_name_conflict(iii_engine: EngineThread, spawn: Spawn, sdk_id: str) -> None:
    engine = iii_engine
    first = spawn(sdk_id, engine.url, "dup", engine=engine)
    first.ok("register_function", function_id="dup::fn", behavior="const", result="first")
    engine.wait_for_function("dup::fn")
    try:
        second: PeerAgent | None = spawn(sdk_id, engine.url, "dup")
    except PeerError as exc:
        # 0.25.0's register_worker raises the refusal itself when it arrives
        # before register_worker returns (its agent then never starts), else
        # the worker goes to failed later: both are the refusal, seen.
        if sdk_id != "py-0.25.0":
            raise
        assert "RegistrationRejectedError" in str(exc), exc
        assert "WORKER_NAMESPACE_CONFLICT" in str(exc), exc
        second = None
    rejected = engine.wait_for_frame(
        "registrationrejected", direction="out", where=lambda f: f.get("worker_name") == "dup"
    )
    assert rejected["code"] == "WORKER_NAMESPACE_CONFLICT"
    assert rejected["owner_worker_id"] == first.info["worker_id"]
    assert rejected["namespace"] == "default"
    caller = spawn("py-0.25.0", engine.url, "dup-caller", engine=engine)
    assert caller.ok("trigger", function_id="dup::fn", payload={})["result"] == "first"
    assert [w["worker_id"] for w in engine.workers() if w["name"] == "dup"] == [
        first.info["worker_id"]
    ]
    if second is None:
        pass  # refused inside register_worker (checked above)
    elif sdk_id == "py-0.25.0":
        # The SDK handles the frame some time after the engine sent it.
        poll(lambda: second.ok("state")["state"] == "failed")
        out = second.call("trigger", function_id="dup::fn", payload={})
        assert out["error"]["type"] == "RegistrationRejectedError"
        assert out["error"]["code"] == "WORKER_NAMESPACE_CONFLICT"
    elif sdk_id == "node-0.22.1":
        # Named: Node 0.22.1 ignores registrationrejected and keeps reconnecting.
        engine.wait_for_frame(
            "registrationrejected",
            direction="out",
            where=lambda f: f.get("worker_name") == "dup",
            count=3,
        )
    else:
        # Named: 0.19.7 never reconnects after the close (1005 counts as normal).
        second.ok("sleep", seconds=1.0)
        assert len(engine.frames(direction="out", type="registrationrejected")) == 1
        assert second.ok("state")["state"] == "connected"


@pytest.mark.parametrize("sdk_id", SDK_IDS)
def test_function_conflict(iii_engine: EngineThread, spawn: Spawn, sdk_id: str) -> None:
    engine = iii_engine
    a = spawn(sdk_id, engine.url, "own-A", engine=engine)
    b = spawn(sdk_id, engine.url, "own-B", engine=engine)
    a.ok("register_function", function_id="own::fn", behavior="const", result="a")
    engine.wait_for_function("own::fn")
    b.ok("register_function", function_id="own::fn", behavior="const", result="b")
    refused = engine.wait_for_frame(
        "registrationrejected", worker_id=b.info["worker_id"], direction="out"
    )
    assert refused == {
        "type": "registrationrejected",
        "code": "FUNCTION_NAMESPACE_CONFLICT",
        "namespace": "default",
        "function_id": "own::fn",
        "owner_worker_id": a.info["worker_id"],
    }
    assert b.ok("trigger", function_id="own::fn", payload={})["result"] == "a"
    # b's other registrations are unaffected.
    b.ok("register_function", function_id="own::other", behavior="const", result="b")
    engine.wait_for_function("own::other")
    assert a.ok("trigger", function_id="own::other", payload={})["result"] == "b"


@pytest.mark.parametrize("sdk_id", SDK_IDS)
def test_namespaced_worker(iii_engine: EngineThread, spawn: Spawn, sdk_id: str) -> None:
    """A 0.25 worker in namespace ``team`` (the only official SDK with namespaces);
    the caller is each SDK in ``default``."""
    engine = iii_engine
    team = spawn("py-0.25.0", engine.url, "team-worker", engine=engine, namespace="team")
    assert team.info["namespace"] == "team"
    team.ok("register_function", function_id="nsx::fn", behavior="const", result="team")
    engine.wait_for_function("nsx::fn", "team")
    # The worker's own unqualified calls resolve in its namespace.
    assert team.ok("trigger", function_id="nsx::fn", payload={})["result"] == "team"
    caller = spawn(sdk_id, engine.url, "default-caller", engine=engine)
    out = caller.call("trigger", function_id="nsx::fn", payload={})
    assert out["error"]["code"] == "function_not_found"
    hint = (
        "Function nsx::fn not found in namespace default. It is registered in namespace(s): team."
    )
    assert out["error"]["message"].endswith(hint)
    if sdk_id == "py-0.25.0":
        out = caller.ok("trigger", function_id="nsx::fn", payload={}, namespace="team")
        assert out["result"] == "team"
    # (0.19.7 and Node 0.22.1 lack a namespace field on calls.)
