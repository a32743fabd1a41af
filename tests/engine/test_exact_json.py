"""The engine carries JSON exactly: integers wider than 64 bits stay integers.

The engine reads every frame with the SDK's own reader (``iii_protocol._json``),
so ``10**25`` sent by one worker reaches the other as ``10**25``, never as the
float a plain 64-bit reader would make of it.
"""

from __future__ import annotations

from typing import Any

import anyio
import attrs
import pytest

import iii

from ..api.test_sync_api import FAST
from .conftest import own_engine
from .wsclient import Peer, settle

WIDE = [10**25, 2**64, -(2**70), 2**63, -(2**63) - 1]
PAYLOAD = {"wide": WIDE, "nested": {"n": 10**25}}


def _assert_exact(value: Any) -> None:
    assert value == {"wide": WIDE, "nested": {"n": 10**25}}
    assert all(type(n) is int for n in value["wide"])
    assert type(value["nested"]["n"]) is int


def test_wide_integers_round_trip_through_the_engine_sync_api(iii_engine):
    handler = iii.register_worker(iii_engine.url, attrs.evolve(FAST, worker_name="wide-h"))
    caller = iii.register_worker(iii_engine.url, attrs.evolve(FAST, worker_name="wide-c"))
    try:
        seen: list[Any] = []

        def echo(data: Any) -> Any:
            seen.append(data)
            return {"wide": data["wide"], "nested": data["nested"]}

        handler.register_function("wide::echo", echo)
        iii_engine.wait_for_function("wide::echo")
        out = caller.trigger({"function_id": "wide::echo", "payload": PAYLOAD})
        _assert_exact(out)
        _assert_exact({k: v for k, v in seen[0].items() if k != "_caller_worker_id"})
        # A bare wide integer as the whole result.
        handler.register_function("wide::bare", lambda data: 2**64)
        iii_engine.wait_for_function("wide::bare")
        bare = caller.trigger({"function_id": "wide::bare", "payload": None})
        assert bare == 2**64 and type(bare) is int
    finally:
        caller.shutdown()
        handler.shutdown()


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_wide_integers_round_trip_through_the_engine_async_api(iii_engine, backend):
    async def main() -> None:
        opts = attrs.evolve(FAST, worker_name="wide-async")
        async with iii.register_worker_async(iii_engine.url, opts) as w:

            async def echo(data: Any) -> Any:
                return {"wide": data["wide"], "nested": data["nested"]}

            w.register_function("wide::aecho", echo)
            await anyio.to_thread.run_sync(iii_engine.wait_for_function, "wide::aecho")
            _assert_exact(await w.trigger_async({"function_id": "wide::aecho", "payload": PAYLOAD}))
            negative = await w.trigger_async({"function_id": "wide::aecho", "payload": PAYLOAD})
            assert negative["wide"][2] == -(2**70)

    anyio.run(main, backend=backend)


@pytest.mark.anyio
async def test_the_transcript_and_builtins_keep_wide_integers(anyio_backend):
    async with own_engine(namespace_grace=0.3) as engine:
        provider = await Peer.join(engine.url, "wide-provider")
        await provider.register("wide::raw")
        caller = await Peer.join(engine.url, "wide-caller")
        await engine.wait_for_function("wide::raw")
        # Raw text: the number is written by hand, not by a reader that might round it.
        inv = "6f9619ff-8b86-4011-b42d-00c04fc964ff"
        await caller.send(
            '{"type":"invokefunction","function_id":"wide::raw",'
            f'"invocation_id":"{inv}","data":{{"n":{10**25}}}}}'
        )
        frame = await provider.recv()
        assert frame["data"]["n"] == 10**25 and type(frame["data"]["n"]) is int
        await provider.result(inv, {"back": -(2**70)}, function_id="wide::raw")
        result = await caller.recv()
        assert result["result"] == {"back": -(2**70)}
        # The transcript renders what was on the wire, exactly.
        routed = engine.frames(provider.worker_id, direction="out", type="invokefunction")
        data = routed[-1]["data"]
        assert isinstance(data, dict) and data["n"] == 10**25
        # Engine builtins see the exact value too (baggage/log echo nothing back,
        # but a durable binding's config is stored and listed).
        out = await caller.call(
            "engine::register_trigger",
            {"trigger_type": "nobody", "function_id": "wide::raw", "config": {"n": 2**64}},
        )
        binding_id = out["result"]["id"]
        listed = await caller.call("engine::registered-triggers::info", {"id": binding_id})
        assert listed["result"]["config"] == {"n": 2**64}
        await settle(provider, caller)
