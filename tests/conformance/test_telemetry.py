"""OpenTelemetry on (the SDKs' default): the official SDKs open their telemetry
socket ``/otel`` and send prefixed binary OTLP frames; the engine takes them and
discards them (docs/protocol.md#telemetry) while the worker keeps working.

Named SDK quirk: iii-sdk 0.19.7's exporter ignores the address given to
``register_worker`` and dials ``$III_URL`` (default ``ws://localhost:49134``),
so it is given ``III_URL`` here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import cast

import pytest

from iii.testing import EngineThread

from ._harness import SDK_IDS, PeerAgent

pytestmark = pytest.mark.conformance


@pytest.mark.parametrize("sdk_id", SDK_IDS)
def test_telemetry_socket(
    iii_engine: EngineThread, spawn: Callable[..., PeerAgent], sdk_id: str
) -> None:
    engine = iii_engine
    # Export within a fraction of a second (OpenTelemetry SDK batch settings).
    env = {"OTEL_BSP_SCHEDULE_DELAY": "100", "OTEL_BLRP_SCHEDULE_DELAY": "100"}
    if sdk_id == "py-0.19.7":
        env["III_URL"] = engine.url
    a = spawn(sdk_id, engine.url, "otel-A", engine=engine, otel=True, env=env)
    a.ok("register_function", function_id="otel::echo", behavior="echo")
    engine.wait_for_function("otel::echo")
    for i in range(3):
        assert (
            a.ok("trigger", function_id="otel::echo", payload={"i": i})["result"]["echo"]["i"] == i
        )
    engine.wait_for(lambda: cast(int, engine.engine.stats()["telemetry_frames"]) > 0, timeout=10)
    assert a.close() == 0
    opened = [e for e in engine.transcript() if e["kind"] == "open" and e.get("info") == "/otel"]
    assert opened, "no /otel socket"
    otel_conns = {e["conn"] for e in opened}
    kinds = {e["kind"] for e in engine.transcript() if e["conn"] in otel_conns and e["dir"] == "in"}
    assert "binary" in kinds
    assert engine.stats()["bad_frames"] == 0
