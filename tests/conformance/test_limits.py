"""Message sizes (docs/protocol.md#limits): the engine takes messages up to 64 MiB and
frames up to 16 MiB, like the real one; 0.25 fragments messages above 16 MiB.

Named SDK limits: iii-sdk 0.19.7 reads at most 1 MiB per message (the
``websockets`` default; a larger frame from the engine kills its connection,
close 1009) and neither 0.19.7 nor Node 0.22.1 fragment what they send (a frame
above 16 MiB is refused by any engine, close 1009, and that call is lost).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import cast

import pytest

from iii.testing import EngineThread

from ._harness import SDK_IDS, PeerAgent

pytestmark = pytest.mark.conformance

MIB = 1024 * 1024


def start(
    engine: EngineThread, spawn: Callable[..., PeerAgent], sdk_id: str
) -> tuple[PeerAgent, PeerAgent]:
    a = spawn(sdk_id, engine.url, "big-A", engine=engine)
    b = spawn(sdk_id, engine.url, "big-B", engine=engine)
    a.ok("register_function", function_id="big::size", behavior="size")
    a.ok("register_function", function_id="big::blob", behavior="blob", size=2 * MIB)
    engine.wait_for_function("big::size")
    engine.wait_for_function("big::blob")
    return a, b


def closes_from(engine: EngineThread, worker_id: str) -> list[str]:
    return [
        cast(str, e.get("info", ""))
        for e in engine.transcript()
        if e["conn"] == worker_id and e["kind"] == "close"
    ]


@pytest.mark.parametrize("sdk_id", SDK_IDS)
def test_two_mib_payload_and_result(
    iii_engine: EngineThread, spawn: Callable[..., PeerAgent], sdk_id: str
) -> None:
    engine = iii_engine
    a, b = start(engine, spawn, sdk_id)
    if sdk_id == "py-0.19.7":
        # Known SDK limit, named: the 2 MiB invoke kills 0.19.7's connection (its
        # inbound limit is 1 MiB, close 1009); the engine then stops the call.
        out = b.call("trigger", function_id="big::size", blob_size=2 * MIB)
        assert out["error"]["code"] == "invocation_stopped"
        assert any(c.startswith("1009") for c in closes_from(engine, a.info["worker_id"]))
        return
    out = b.ok("trigger", function_id="big::size", blob_size=2 * MIB)
    assert out["result"] == {"size": 2 * MIB, "by": a.name}
    out = b.ok("trigger", function_id="big::blob", payload={}, summarize=True)
    assert out["result"] == {"blob_len": 2 * MIB}


@pytest.mark.parametrize("sdk_id", SDK_IDS)
def test_twenty_mib_message(
    iii_engine: EngineThread, spawn: Callable[..., PeerAgent], sdk_id: str
) -> None:
    engine = iii_engine
    a, b = start(engine, spawn, sdk_id)
    if sdk_id != "py-0.25.0":
        # Known SDK limit, named: one 20 MiB frame; the engine refuses frames above
        # 16 MiB (close 1009) like the real engine, and the call is lost.
        out = b.call("trigger", function_id="big::size", blob_size=20 * MIB, timeout_ms=2000)
        assert any(c.startswith("1009") for c in closes_from(engine, b.info["worker_id"]))
        if sdk_id == "py-0.19.7":
            # ... and 0.19.7 leaks the websockets exception of its dying socket to
            # the caller instead of an IIIInvocationError.
            assert out["error"]["type"] == "ConnectionClosedError", out
            assert out["error"]["code"] == 1009
        else:
            assert out["error"]["code"] == "TIMEOUT"
        return
    # 0.25 sends it as a fragmented message (1 MiB fragments); the engine reassembles.
    out = b.ok("trigger", function_id="big::size", blob_size=20 * MIB)
    assert out["result"] == {"size": 20 * MIB, "by": a.name}
    assert engine.stats()["bad_frames"] == 0
