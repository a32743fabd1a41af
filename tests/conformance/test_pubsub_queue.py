"""The pubsub and queue worker modules, used by the official SDKs (iii-sdk 0.19.7
and 0.25.0 from PyPI, 0.22.1 from npm) as the real engine's docs show them:
``publish`` + ``subscribe``, ``TriggerAction.Enqueue`` to a declared queue,
``iii::durable::publish`` + ``durable:subscriber``, the DLQ functions.

One engine per SDK, on a ``ManualClock``: retries happen when the test moves it.
``a`` registers the handlers and bindings, ``b`` publishes and enqueues.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest

from iii.testing import EngineThread, ManualClock

from ._harness import Sdk
from .conftest import AgentPool, Pair

pytestmark = pytest.mark.conformance

QUEUES = {
    "jobs": {"max_retries": 2, "backoff_ms": 200},
    "ledger": {"type": "fifo", "message_group_field": "account"},
}


@pytest.fixture(scope="module")
def qpair(
    sdk: Sdk,
    sdks: dict[str, Sdk],
    peer_home: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Pair]:
    # Lenient: see conftest's ``pair`` (the official SDKs omit a None payload).
    engine = EngineThread(lenient_frames=True, clock="manual", queue_configs=QUEUES).start()
    pool = AgentPool(sdks, peer_home, tmp_path_factory.mktemp(f"qlogs-{sdk.id}"))
    try:
        a = pool(sdk.id, engine.url, f"{sdk.id}-qa")
        b = pool(sdk.id, engine.url, f"{sdk.id}-qb")
        for agent in (a, b):
            agent.info = engine.wait_for_worker(agent.name, timeout=30)
        yield Pair(sdk, engine, a, b)
    finally:
        pool.close()
        engine.stop()


def handler(pair: Pair, function_id: str, behavior: str, **args: Any) -> None:
    pair.a.ok("register_function", function_id=function_id, behavior=behavior, **args)
    pair.engine.wait_for_function(function_id, timeout=10)


def bind(pair: Pair, key: str, trigger_type: str, function_id: str, config: Any) -> None:
    pair.a.ok(
        "register_trigger",
        key=key,
        trigger_type=trigger_type,
        function_id=function_id,
        config=config,
    )
    pair.engine.wait_for(
        lambda: any(
            b["function_id"] == function_id and b["trigger_type"] == trigger_type and b["acked"]
            for b in pair.engine.bindings()
        ),
        timeout=10,
    )


def advance_to_retry(pair: Pair, seconds: float) -> None:
    clock = pair.engine.clock
    assert isinstance(clock, ManualClock)
    pair.engine.call(lambda: clock.wait_for_sleepers(1, within=seconds))
    pair.engine.advance_clock(seconds)


def error_message(pair: Pair, code: str, message: str) -> str:
    """Node's ``InvocationError.message`` is ``"<code>: <message>"``."""
    return f"{code}: {message}" if pair.sdk.kind == "node" else message


def invoked(pair: Pair, function_id: str, count: int = 1) -> dict[str, Any]:
    return pair.a.wait_event("invoked", lambda e: e["function_id"] == function_id, count=count)


def test_publish_reaches_every_subscriber_of_the_topic(qpair: Pair) -> None:
    for fid in ("ps::first", "ps::second", "ps::other"):
        handler(qpair, fid, "record")
    bind(qpair, "ps1", "subscribe", "ps::first", {"topic": "orders.shipped"})
    bind(qpair, "ps2", "subscribe", "ps::second", {"topic": "orders.shipped"})
    bind(qpair, "ps3", "subscribe", "ps::other", {"topic": "orders.created"})
    data = {"orderId": "abc-123", "address": "123 Main St"}
    out = qpair.b.ok(
        "trigger", function_id="publish", payload={"topic": "orders.shipped", "data": data}
    )
    assert out["result"] is None
    for fid in ("ps::first", "ps::second"):
        assert invoked(qpair, fid)["data"] == data  # the raw data: no envelope
    qpair.engine.wait_for(lambda: qpair.engine.pubsub_stats()["deliveries"] == 2)
    assert qpair.a.find_events("invoked", lambda e: e["function_id"] == "ps::other") == []
    out = qpair.b.call("trigger", function_id="publish", payload={"topic": "", "data": 1})
    assert out["error"]["code"] == "topic_not_set"
    assert out["error"]["message"] == error_message(qpair, "topic_not_set", "Topic is not set")


def test_enqueue_to_a_declared_queue_retries_on_the_engine_clock(qpair: Pair) -> None:
    handler(qpair, "q::flaky", "flaky", fail_times=1)
    out = qpair.b.ok(
        "trigger", function_id="q::flaky", payload={"n": 1}, action={"enqueue": "jobs"}
    )
    assert set(out["result"]) == {"messageReceiptId"}
    first = invoked(qpair, "q::flaky")
    assert (first["data"], first["attempt"]) == ({"n": 1}, 1)
    advance_to_retry(qpair, 0.2)  # backoff_ms 200
    second = invoked(qpair, "q::flaky", count=2)
    assert (second["data"], second["attempt"]) == ({"n": 1}, 2)
    qpair.engine.wait_for(
        lambda: (
            cast("dict[str, Any]", qpair.engine.queue_stats())["queues"]["jobs"]["delivered"] == 1
        )
    )


def test_enqueue_to_an_undeclared_queue_is_an_enqueue_error(qpair: Pair) -> None:
    handler(qpair, "q::never", "record")
    out = qpair.b.call(
        "trigger", function_id="q::never", payload={"n": 1}, action={"enqueue": "nope"}
    )
    assert not out["ok"]
    assert out["error"]["code"] == "enqueue_error"
    assert out["error"]["message"] == error_message(
        qpair, "enqueue_error", "Queue 'nope' not found"
    )
    out = qpair.b.call(
        "trigger", function_id="q::never", payload={"n": 2}, action={"enqueue": "ledger"}
    )
    assert out["error"]["message"] == error_message(
        qpair,
        "enqueue_error",
        "FIFO queue 'ledger' requires field 'account' in data, but it was not found",
    )
    assert qpair.a.find_events("invoked", lambda e: e["function_id"] == "q::never") == []


def test_durable_subscriber_dead_letters_then_redrive(qpair: Pair) -> None:
    handler(qpair, "d::refresh", "flaky", fail_times=1)
    bind(
        qpair,
        "d1",
        "durable:subscriber",
        "d::refresh",
        {"topic": "link.updated", "queue_config": {"maxRetries": 0}},
    )
    out = qpair.b.ok(
        "trigger",
        function_id="iii::durable::publish",
        payload={"topic": "link.updated", "data": {"code": "x"}},
    )
    assert out["result"] is None
    assert invoked(qpair, "d::refresh")["data"] == {"code": "x"}
    qpair.engine.wait_for(lambda: qpair.engine.queue_stats()["dead_letters"] == 1)
    rows = qpair.b.ok(
        "trigger", function_id="engine::queue::dlq_messages", payload={"topic": "link.updated"}
    )["result"]
    assert [(r["payload"], r["retries"]) for r in rows] == [({"code": "x"}, 1)]
    assert rows[0]["error"].startswith('ErrorBody { code: "invocation_failed"')
    delivered = qpair.engine.queue_stats()["delivered"]
    assert isinstance(delivered, int)
    out = qpair.b.ok(
        "trigger", function_id="iii::queue::redrive", payload={"queue": "link.updated"}
    )
    assert out["result"] == {"queue": "link.updated", "redriven": 1}
    again = invoked(qpair, "d::refresh", count=2)
    assert (again["data"], again["attempt"]) == ({"code": "x"}, 2)
    qpair.engine.wait_for(lambda: qpair.engine.queue_stats()["delivered"] == delivered + 1)
    assert qpair.engine.dead_letters() == []
