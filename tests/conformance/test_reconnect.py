"""Reconnect: the engine drops official workers; they come back, send
``reattach`` (where the SDK has it), replay their registrations and work again.

PEERS.md: 0.19.7 reconnects after an abnormal close (1011, a dropped socket) but
never after a normal close (1000/1001: iii-hq/iii#2180), and has no
``reattach``; 0.25.0 and Node 0.22.1 reconnect after any close and reattach.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Optional

import pytest

from iii.testing import EngineThread

from ._harness import SDK_IDS, PeerAgent, TcpProxy

pytestmark = pytest.mark.conformance

Spawn = Callable[..., PeerAgent]

CLOSES = [
    pytest.param(sdk_id, close, id=f"{sdk_id}-{'abort' if close is None else close}")
    for sdk_id in SDK_IDS
    for close in (None, 1011, 1000)
    # 0.19.7 + a normal close: the known SDK bug, see test_0197_normal_close_zombie.
    if not (sdk_id == "py-0.19.7" and close == 1000)
]


def workers_named(engine: EngineThread, name: str) -> list[dict[str, Any]]:
    return [w for w in engine.workers() if w["name"] == name and w["announced"]]


def wait_new_worker(
    engine: EngineThread, name: str, old_id: str, timeout: float = 10.0
) -> dict[str, Any]:
    """Wait until ``name`` is announced again on a connection other than ``old_id``."""

    def find() -> Optional[dict[str, Any]]:
        for w in engine.engine.workers():  # on the engine's thread already
            if w["name"] == name and w["announced"] and w["worker_id"] != old_id:
                return w
        return None

    result: dict[str, Any] = engine.wait_for(find, timeout)
    return result


def reattach_token(engine: EngineThread, worker_id: str) -> str:
    token: str = engine.call(lambda: engine.core.workers[worker_id].reattach_token)
    return token


def first_frame_in(engine: EngineThread, worker_id: str) -> dict[str, Any]:
    return engine.frames(worker_id, direction="in")[0]


def setup_workers(engine: EngineThread, spawn: Spawn, sdk_id: str) -> tuple[PeerAgent, PeerAgent]:
    """``a``: a function and a trigger type; ``b``: a function and a binding on ``a``'s type."""
    a = spawn(sdk_id, engine.url, "rc-A", engine=engine)
    b = spawn(sdk_id, engine.url, "rc-B", engine=engine)
    a.ok("register_function", function_id="rc::fn", behavior="const", result={"v": 1})
    a.ok("register_trigger_type", trigger_type="rc-type")
    b.ok("register_function", function_id="rc::target", behavior="record")
    engine.wait_for_trigger_type("rc-type")
    engine.wait_for_function("rc::target")
    b.ok(
        "register_trigger",
        key="k",
        trigger_type="rc-type",
        function_id="rc::target",
        config={"k": 1},
        metadata={"m": 1},
    )
    a.wait_event("register_trigger")
    engine.wait_for_function("rc::fn")
    assert b.ok("trigger", function_id="rc::fn", payload={})["result"] == {"v": 1}
    return a, b


def assert_back(
    engine: EngineThread, sdk_id: str, a: PeerAgent, b: PeerAgent, old: dict[str, dict[str, Any]]
) -> None:
    """Both workers are back with everything registered, and calls work again."""
    new = {w.name: wait_new_worker(engine, w.name, old[w.name]["worker_id"]) for w in (a, b)}
    for w in (a, b):
        frames = engine.frames(new[w.name]["worker_id"], direction="in")
        reattach = [f for f in frames if f.get("type") == "reattach"]
        if sdk_id == "py-0.19.7":
            assert reattach == []  # 0.19.7 lacks reattach (PEERS.md)
        else:
            # The first frame on the new socket names the previous connection and
            # carries its secret (docs/protocol.md#reconnect).
            assert frames[0] == {
                "type": "reattach",
                "previous_worker_id": old[w.name]["worker_id"],
                "reattach_token": old[w.name]["token"],
            }
            assert len(reattach) == 1
    # Registrations replayed onto the new connections.
    fn = engine.wait_for_function("rc::fn")
    assert fn["worker_id"] == new[a.name]["worker_id"]
    assert engine.wait_for_trigger_type("rc-type")["provider"] == new[a.name]["worker_id"]
    first = a.find_events("register_trigger")[0]["config"]
    # The binding comes back with the same id (replayed by b, or re-delivered to the
    # re-registered provider) and the provider acks it again.
    again = a.wait_event("register_trigger", count=2)["config"]
    assert again["id"] == first["id"]
    assert again["config"] == {"k": 1}
    engine.wait_for_binding(first["id"], acked=True)
    # And calls work again.
    assert b.ok("trigger", function_id="rc::fn", payload={})["result"] == {"v": 1}


@pytest.mark.parametrize(("sdk_id", "close"), CLOSES)
def test_reconnect_after_engine_drop(
    iii_engine: EngineThread, spawn: Spawn, sdk_id: str, close: Optional[int]
) -> None:
    engine = iii_engine
    a, b = setup_workers(engine, spawn, sdk_id)
    old = {
        w.name: {
            "worker_id": w.info["worker_id"],
            "token": reattach_token(engine, w.info["worker_id"]),
        }
        for w in (a, b)
    }
    assert engine.drop_all(code=close) == 2
    assert_back(engine, sdk_id, a, b, old)


def test_0197_normal_close_zombie(iii_engine: EngineThread, spawn: Spawn) -> None:
    """Known SDK bug, named: iii-sdk 0.19.7 never reconnects after the engine
    closes normally (1000/1001; iii-hq/iii#2180).  Its receive loop ends
    silently and the client keeps reporting ``connected``: a zombie."""
    engine = iii_engine
    a = spawn("py-0.19.7", engine.url, "zombie", engine=engine)
    engine.drop(a.info["worker_id"], code=1000)
    engine.wait_for(lambda: not [w for w in engine.engine.workers() if w["name"] == "zombie"])
    a.ok("sleep", seconds=1.5)  # 15x its configured first retry delay (100 ms)
    assert workers_named(engine, "zombie") == []
    assert a.ok("state")["state"] == "connected"  # the SDK's belief


@pytest.mark.parametrize("sdk_id", SDK_IDS)
def test_reattach_evicts_a_half_open_ghost(
    iii_engine: EngineThread, spawn: Spawn, sdk_id: str
) -> None:
    """The worker's socket dies on its side only (a TCP proxy resets the client and
    keeps the engine's end open): the engine still holds the old connection, with
    the worker's name.  ``reattach`` must evict that ghost before the replay, so the
    returning worker keeps its name (docs/protocol.md#reconnect)."""
    engine = iii_engine
    proxy = TcpProxy(engine.url)
    try:
        a = spawn(sdk_id, proxy.url, "ghosted", engine=engine)
        a.ok("register_function", function_id="gh::fn", behavior="const", result="hi")
        engine.wait_for_function("gh::fn")
        old_id = a.info["worker_id"]
        caller = spawn("py-0.25.0", engine.url, "gh-caller", engine=engine)
        assert proxy.cut_clients() == 1
        if sdk_id == "py-0.19.7":
            # 0.19.7 has no reattach: its new connection's announce collides with its
            # own ghost and is refused (the engine keeps the live-looking holder).
            rejected = engine.wait_for_frame(
                "registrationrejected",
                direction="out",
                where=lambda f: f.get("worker_name") == "ghosted",
                timeout=10,
            )
            assert rejected["code"] == "WORKER_NAMESPACE_CONFLICT"
            assert rejected["owner_worker_id"] == old_id
            assert [w["worker_id"] for w in workers_named(engine, "ghosted")] == [old_id]
            # Known SDK bug, named: the engine closes the refused socket without a
            # status code (1005, like the real engine); 0.19.7 treats that like a
            # normal close and never reconnects (iii-hq/iii#2180), even once the
            # ghost is gone.
            proxy.release_ghosts()
            engine.wait_for(
                lambda: not [w for w in engine.engine.workers() if w["name"] == "ghosted"]
            )
            a.ok("sleep", seconds=1.5)
            assert workers_named(engine, "ghosted") == []
            assert a.ok("state")["state"] == "connected"
            return
        new = wait_new_worker(engine, "ghosted", old_id)
        assert first_frame_in(engine, new["worker_id"])["type"] == "reattach"
        # The ghost was evicted by the reattach (not by its TCP closing): no conflict.
        assert engine.frames(direction="out", type="registrationrejected") == []
        assert old_id not in [w["worker_id"] for w in engine.workers()]
        engine.wait_for(
            lambda: any(
                f["function_id"] == "gh::fn" and f["worker_id"] == new["worker_id"]
                for f in engine.engine.functions()
            )
        )
        assert caller.ok("trigger", function_id="gh::fn", payload={})["result"] == "hi"
    finally:
        proxy.close()


@pytest.mark.parametrize("sdk_id", SDK_IDS)
def test_reconnect_after_engine_restart(
    iii_engine: EngineThread, spawn: Spawn, sdk_id: str
) -> None:
    """The engine restarts (same port, all state lost): the workers come back and
    replay everything; their ``reattach`` names a connection the new engine never
    knew, which it ignores (docs/protocol.md#reconnect)."""
    engine = iii_engine
    a, b = setup_workers(engine, spawn, sdk_id)
    old = {w.name: w.info["worker_id"] for w in (a, b)}
    engine.restart()
    for w in (a, b):
        new = engine.wait_for_worker(w.name, timeout=10)
        worker_id = new["worker_id"]
        assert isinstance(worker_id, str) and worker_id != old[w.name]
        reattach = engine.frames(worker_id, direction="in", type="reattach")
        if sdk_id == "py-0.19.7":
            assert reattach == []
        else:
            assert [f["previous_worker_id"] for f in reattach] == [old[w.name]]
    engine.wait_for_function("rc::fn")
    engine.wait_for_function("rc::target")
    first = a.find_events("register_trigger")[0]["config"]
    assert a.wait_event("register_trigger", count=2)["config"]["id"] == first["id"]
    engine.wait_for_binding(first["id"], acked=True)
    assert b.ok("trigger", function_id="rc::fn", payload={})["result"] == {"v": 1}


@pytest.mark.parametrize("sdk_id", SDK_IDS)
def test_handler_lost_mid_call_is_invocation_stopped(
    iii_engine: EngineThread, spawn: Spawn, sdk_id: str
) -> None:
    """The handler's connection goes away while it runs: the caller gets
    ``invocation_stopped`` from the engine, not a 30 s timeout (docs/protocol.md#cleanup)."""
    engine = iii_engine
    a = spawn(sdk_id, engine.url, "slow-A", engine=engine)
    b = spawn(sdk_id, engine.url, "slow-B", engine=engine)
    a.ok("register_function", function_id="slow::fn", behavior="sleep", seconds=5)
    engine.wait_for_function("slow::fn")
    pending = b.send("trigger", function_id="slow::fn", payload={})
    a.wait_event("sleeping")
    engine.drop(a.info["worker_id"])
    # The code, not the wait, tells invocation_stopped from the SDK's 30 s TIMEOUT.
    out = b.answer(pending, timeout=60)
    assert not out["ok"]
    assert out["error"]["code"] == "invocation_stopped"
    expected = "Invocation stopped"
    if sdk_id.startswith("node"):
        expected = f"invocation_stopped: {expected}"
    assert out["error"]["message"] == expected
