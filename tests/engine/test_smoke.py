from __future__ import annotations

import pytest

from .wsclient import Peer

pytestmark = pytest.mark.anyio


async def test_sync_call_routed(engine):
    a = await Peer.join(engine.url, "provider")
    await a.register("math::add")
    b = await Peer.join(engine.url, "caller")
    await engine.wait_for_function("math::add")
    inv = await b.invoke("math::add", {"a": 1, "b": 2})
    frame = await a.recv_type("invokefunction")
    assert frame["invocation_id"] == inv
    assert frame["data"] == {"a": 1, "b": 2, "_caller_worker_id": b.worker_id}
    await a.result(inv, {"c": 3}, function_id="math::add")
    res = await b.recv_type("invocationresult")
    assert res == {
        "type": "invocationresult",
        "invocation_id": inv,
        "function_id": "math::add",
        "result": {"c": 3},
    }
