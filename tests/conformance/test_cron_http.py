"""The cron and HTTP workers with the official SDKs as the workers: a ``cron``
binding fires on the engine's ManualClock, and ``http`` routes answer real HTTP
requests (``urllib``) with what the official handlers return or stream."""

from __future__ import annotations

import datetime
import json
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any, Optional, cast

import pytest

from iii.testing import EngineThread, ManualClock

from ._harness import SDK_IDS, PeerAgent

pytestmark = pytest.mark.conformance

#: 2026-01-01T12:00:00.250Z
NOON = datetime.datetime(2026, 1, 1, 12, 0, 0, 250000, tzinfo=datetime.timezone.utc).timestamp()


@pytest.fixture
def engine() -> Iterator[EngineThread]:
    # Lenient: the official SDKs omit ``data``/``config`` for None (see conftest.pair).
    engine = EngineThread(lenient_frames=True, clock=ManualClock(start=NOON)).start()
    try:
        yield engine
    finally:
        engine.stop()


def fetch(
    url: str,
    method: str = "GET",
    body: Optional[bytes] = None,
    headers: Optional[dict[str, str]] = None,
) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, data=body, headers=headers or {}, method=method)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return (
                response.status,
                {k.lower(): v for k, v in response.headers.items()},
                response.read(),
            )
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, {k.lower(): v for k, v in exc.headers.items()}, exc.read()


def bound(engine: EngineThread, function_id: str) -> dict[str, Any]:
    """Wait until the engine holds (and accepted) a binding of ``function_id``."""
    binding: dict[str, Any] = engine.wait_for(
        lambda: next(
            (b for b in engine.bindings() if b["function_id"] == function_id and b["acked"]),
            None,
        ),
        timeout=30,
    )
    return binding


def sleeping(engine: EngineThread, runs: int) -> dict[str, Any]:
    job: dict[str, Any] = engine.wait_for(
        lambda: next(
            (j for j in engine.cron_jobs() if j["next_run"] and cast(int, j["runs"]) >= runs),
            None,
        ),
        timeout=30,
    )
    return job


@pytest.mark.parametrize("sdk_id", SDK_IDS)
def test_a_cron_binding_of_an_official_worker_fires_on_the_engine_clock(
    sdk_id: str, engine: EngineThread, spawn: Callable[..., PeerAgent]
) -> None:
    agent = spawn(sdk_id, engine.url, f"cron-{sdk_id}", engine=engine)
    agent.ok("register_function", function_id="jobs::tick", behavior="record")
    agent.ok(
        "register_trigger",
        key="tick",
        trigger_type="cron",
        function_id="jobs::tick",
        config={"expression": "*/10 * * * * *"},
        metadata={"owner": sdk_id},
    )
    binding = bound(engine, "jobs::tick")
    job = sleeping(engine, 0)
    assert job["id"] == binding["id"]
    assert job["next_run"] == "2026-01-01T12:00:10+00:00"
    engine.advance_clock(10.0)
    first = agent.wait_event("invoked", timeout=30)
    assert first["data"] == {
        "trigger": "cron",
        "job_id": binding["id"],
        "scheduled_time": "2026-01-01T12:00:10+00:00",
        "actual_time": "2026-01-01T12:00:10.250+00:00",
    }
    if agent.sdk.has_invocation_metadata:
        assert first["metadata"] == {"owner": sdk_id}
    assert sleeping(engine, 1)["next_run"] == "2026-01-01T12:00:20+00:00"
    engine.advance_clock(10.0)
    second = agent.wait_event("invoked", count=2, timeout=30)
    assert second["data"]["scheduled_time"] == "2026-01-01T12:00:20+00:00"
    # A bad expression is refused to the official worker as well.
    agent.ok(
        "register_trigger",
        key="bad",
        trigger_type="cron",
        function_id="jobs::tick",
        config={"expression": "* * * * *"},
    )
    refusal = engine.wait_for_frame(
        "triggerregistrationresult",
        direction="out",
        where=lambda f: "error" in f,
        timeout=30,
    )
    error = cast("dict[str, str]", refusal["error"])
    assert error["code"] == "trigger_registration_failed"
    assert "Invalid cron expression '* * * * *'" in error["message"]


@pytest.mark.parametrize("sdk_id", SDK_IDS)
def test_http_routes_of_an_official_worker_answer_real_requests(
    sdk_id: str, engine: EngineThread, spawn: Callable[..., PeerAgent]
) -> None:
    agent = spawn(sdk_id, engine.url, f"http-{sdk_id}", engine=engine)
    agent.ok(
        "register_function",
        function_id="orders::create",
        behavior="http_record",
        result={"status_code": 201, "headers": {"X-Sdk": sdk_id}, "body": {"created": True}},
    )
    agent.ok(
        "register_trigger",
        key="create",
        trigger_type="http",
        function_id="orders::create",
        config={"api_path": "/orders/:id", "http_method": "POST"},
        metadata={"route": "orders"},
    )
    agent.ok(
        "register_function",
        function_id="files::echo",
        behavior="http_stream",
        status=207,
        headers={"Content-Type": "text/plain", "X-Streamed": "yes"},
    )
    agent.ok(
        "register_trigger",
        key="echo",
        trigger_type="http",
        function_id="files::echo",
        config={"api_path": "/echo", "http_method": "PUT"},
    )
    agent.ok(
        "register_function", function_id="orders::fail", behavior="fail", message="out of stock"
    )
    agent.ok(
        "register_trigger",
        key="fail",
        trigger_type="http",
        function_id="orders::fail",
        config={"api_path": "/orders/:id/fail"},
    )
    for fid in ("orders::create", "files::echo", "orders::fail"):
        bound(engine, fid)
    base = engine.http_url

    # A result is the response.
    status, headers, body = fetch(
        f"{base}/orders/7?rush=yes",
        "POST",
        b'{"item": "book", "qty": 2}',
        {"Content-Type": "application/json", "X-Trace": "t-1"},
    )
    assert status == 201
    assert headers["x-sdk"] == sdk_id
    assert headers["content-type"] == "application/json"
    assert json.loads(body) == {"created": True}
    seen = agent.wait_event("http_request", timeout=30)
    request = seen["request"]
    assert request["path_params"] == {"id": "7"}
    assert request["query_params"] == {"rush": "yes"}
    assert request["body"] == {"item": "book", "qty": 2}
    assert request["method"] == "POST"
    assert request["path"] == "/orders/:id"
    assert request["headers"]["x-trace"] == "t-1"
    assert request["trigger"] == {"type": "http", "path": "/orders/:id", "method": "POST"}
    # The SDK opened the two channel refs as its channel ends.
    assert "Reader" in seen["request_body_type"] and "Writer" in seen["response_type"]
    if agent.sdk.has_invocation_metadata:
        assert seen["metadata"] == {"route": "orders"}

    # Nothing returned: the response is what the handler streamed.
    payload = b"x" * 100_000
    status, headers, body = fetch(
        f"{base}/echo", "PUT", payload, {"Content-Type": "application/octet-stream"}
    )
    assert status == 207
    assert headers["content-type"] == "text/plain" and headers["x-streamed"] == "yes"
    assert body == b"echo: " + payload

    # A failing handler: a 500 with its error.
    status, headers, body = fetch(f"{base}/orders/7/fail")
    assert status == 500
    error = json.loads(body)["error"]
    assert "out of stock" in error["message"] and error["error_id"]

    # Unknown route, other method.
    assert fetch(f"{base}/nope")[0] == 404
    status, headers, _ = fetch(f"{base}/orders/7")
    assert status == 405 and headers["allow"] == "POST"
