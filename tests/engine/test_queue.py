"""The queue worker module (iii-queue): named queues behind ``TriggerAction.Enqueue``,
durable topics, retries on the engine clock, dead letters and redrive.

Raw protocol peers against an engine on a ``ManualClock``: a retry happens only
when the test moves the clock (no sleeps)."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from iii.testing import ManualClock
from iii.testing.__main__ import _module_settings, _parser, main
from iii.testing._options import EngineOptions

from .conftest import own_engine
from .wsclient import UUID4, Peer, new_id, settle

pytestmark = pytest.mark.anyio

FAIL = {"code": "boom", "message": "try again"}


def engine_with(clock: ManualClock, **options: Any) -> Any:
    return own_engine(namespace_grace=0.3, clock=clock, **options)


async def worker(engine: Any, *function_ids: str, name: str = "w", **kw: Any) -> Peer:
    peer = await Peer.join(engine.url, name, **kw)
    for fid in function_ids:
        await peer.register(fid)
    await settle(peer)
    return peer


async def enqueue(caller: Peer, function_id: str, data: Any, queue: str = "default") -> Any:
    return await caller.call(function_id, data, action={"type": "enqueue", "queue": queue})


async def call_ok(peer: Peer, function_id: str, data: Any = None) -> Any:
    frame = await peer.call(function_id, data)
    assert "error" not in frame, frame
    return frame.get("result")


async def call_err(peer: Peer, function_id: str, data: Any = None) -> Any:
    frame = await peer.call(function_id, data)
    assert "error" in frame, frame
    return frame["error"]


async def fail(peer: Peer, frame: dict[str, Any]) -> None:
    await peer.result(frame["invocation_id"], None, error=FAIL)


async def succeed(peer: Peer, frame: dict[str, Any]) -> None:
    await peer.result(frame["invocation_id"], {"ok": True})


# -- named queues --------------------------------------------------------------------------


async def test_an_unknown_queue_is_an_enqueue_error_and_nothing_runs():
    async with engine_with(ManualClock()) as engine:
        handler = await worker(engine, "job::run")
        caller = await Peer.join(engine.url, "c")
        out = await enqueue(caller, "job::run", {"n": 1}, queue="jobs")
        assert out["error"] == {"code": "enqueue_error", "message": "Queue 'jobs' not found"}
        # Void enqueue: no answer either way, and still nothing runs.
        await caller.send(
            {
                "type": "invokefunction",
                "function_id": "job::run",
                "data": 2,
                "action": {"type": "enqueue", "queue": "jobs"},
            }
        )
        await settle(caller)
        await handler.expect_silence(0.1)
        assert engine.queue_stats()["queued"] == 0


async def test_declared_queues_and_the_default_queue_deliver():
    configs = {"emails": {"max_retries": 5, "concurrency": 2}}
    async with engine_with(ManualClock(), queue_configs=configs) as engine:
        handler = await worker(engine, "mail::send")
        caller = await Peer.join(engine.url, "c")
        for queue in ("emails", "default"):
            out = await enqueue(caller, "mail::send", {"to": queue}, queue=queue)
            assert re.match(UUID4, out["result"]["messageReceiptId"])
            frame = await handler.recv_type("invokefunction")
            assert frame["data"] == {"to": queue}  # as enqueued: no _caller_worker_id
            await succeed(handler, frame)
        await engine.wait_for(lambda: engine.queue_stats()["delivered"] == 2)
        queues = engine.queue_stats()["queues"]
        assert queues["emails"]["max_retries"] == 5 and queues["emails"]["concurrency"] == 2
        assert queues["default"] == {
            "max_retries": 3,
            "concurrency": 10,
            "type": "standard",
            "message_group_field": None,
            "backoff_ms": 1000,
            "poll_interval_ms": 100,
            "waiting": 0,
            "in_flight": 0,
            "delivered": 1,
            "dead_letters": 0,
        }


async def test_a_fifo_message_needs_its_group_field():
    configs = {"payment": {"type": "fifo", "message_group_field": "transaction_id"}}
    async with engine_with(ManualClock(), queue_configs=configs) as engine:
        handler = await worker(engine, "pay::charge")
        caller = await Peer.join(engine.url, "c")
        out = await enqueue(caller, "pay::charge", {"amount": 5}, queue="payment")
        assert out["error"] == {
            "code": "enqueue_error",
            "message": "FIFO queue 'payment' requires field 'transaction_id' in data, "
            "but it was not found",
        }
        out = await enqueue(caller, "pay::charge", {"transaction_id": None}, queue="payment")
        assert (
            out["error"]["message"]
            == "FIFO queue 'payment': field 'transaction_id' must not be null"
        )
        out = await enqueue(caller, "pay::charge", [1], queue="payment")
        assert "requires field 'transaction_id'" in out["error"]["message"]
        out = await enqueue(caller, "pay::charge", {"transaction_id": "t1"}, queue="payment")
        assert "messageReceiptId" in out["result"]
        assert (await handler.recv_type("invokefunction"))["data"] == {"transaction_id": "t1"}


async def test_retries_back_off_on_the_engine_clock_then_dead_letter():
    clock = ManualClock()
    configs = {"jobs": {"max_retries": 3, "backoff_ms": 1000}}
    async with engine_with(clock, queue_configs=configs) as engine:
        handler = await worker(engine, "job::flaky")
        caller = await Peer.join(engine.url, "c")
        receipt = (await enqueue(caller, "job::flaky", {"n": 1}, queue="jobs"))["result"]
        first = await handler.recv_type("invokefunction")
        await fail(handler, first)
        # The retry waits 1 s of engine time, then 2 s: nothing before.
        for delay in (1.0, 2.0):
            await clock.wait_for_sleepers(1, within=delay)
            clock.advance(delay - 0.001)
            await handler.expect_silence(0.05)
            clock.advance(0.001)
            again = await handler.recv_type("invokefunction")
            assert again["data"] == {"n": 1}
            assert again["invocation_id"] != first["invocation_id"]
            await fail(handler, again)
        await engine.wait_for(lambda: engine.queue_stats()["dead_letters"] == 1)
        [dead] = engine.dead_letters()
        assert dead["queue"] == "jobs" and dead["kind"] == "queue"
        assert dead["messageReceiptId"] == receipt["messageReceiptId"]
        assert dead["attempts"] == 3 and dead["error"] == FAIL
        assert dead["function_id"] == "job::flaky" and dead["namespace"] == "default"
        # What the engine's DLQ functions show.
        [row] = await call_ok(caller, "engine::queue::dlq_messages", {"topic": "jobs"})
        assert row["id"] == dead["id"] != receipt["messageReceiptId"]
        assert row["payload"] == {"n": 1}
        assert row["error"] == "function call failed"
        assert row["retries"] == 3
        assert row["failed_at"] == int(clock.time())
        assert row["size_bytes"] > len(json.dumps({"n": 1}))
        stats = await call_ok(caller, "engine::queue::topic_stats", {"queue": "jobs"})
        assert stats == {"depth": 0, "consumer_count": 10, "dlq_depth": 1, "config": None}
        await handler.expect_silence(0.05)


async def test_redrive_puts_dead_letters_back_with_fresh_attempts():
    clock = ManualClock()
    async with engine_with(clock, queue_max_attempts=1) as engine:
        handler = await worker(engine, "job::flaky")
        caller = await Peer.join(engine.url, "c")
        for n in (1, 2):
            await enqueue(caller, "job::flaky", n)
            await fail(handler, await handler.recv_type("invokefunction"))
        await engine.wait_for(lambda: engine.queue_stats()["dead_letters"] == 2)
        out = await call_ok(caller, "iii::queue::redrive", {"queue": "default"})
        assert out == {"queue": "default", "redriven": 2}
        # Oldest first, each with its attempts reset (one more delivery each).
        first = await handler.recv_type("invokefunction")
        second = await handler.recv_type("invokefunction")
        assert [first["data"], second["data"]] == [1, 2]
        await succeed(handler, first)
        await fail(handler, second)
        await engine.wait_for(lambda: engine.queue_stats()["dead_letters"] == 1)
        [row] = await call_ok(caller, "engine::queue::dlq_messages", {"queue": "default"})
        assert row["payload"] == 2 and row["retries"] == 1
        # One message by its id; an unknown id redrives nothing.
        out = await call_ok(
            caller, "iii::queue::redrive_message", {"topic": "default", "message_id": "nope"}
        )
        assert out == {"queue": "default", "message_id": "nope", "redriven": 0}
        out = await call_ok(
            caller, "iii::queue::redrive_message", {"queue": "default", "message_id": row["id"]}
        )
        assert out["redriven"] == 1
        again = await handler.recv_type("invokefunction")
        assert again["data"] == 2
        await fail(handler, again)
        await engine.wait_for(lambda: engine.queue_stats()["dead_letters"] == 1)
        out = await call_ok(
            caller, "iii::queue::discard_message", {"queue": "default", "message_id": row["id"]}
        )
        assert out == {"queue": "default", "message_id": row["id"], "redriven": 1}
        assert engine.dead_letters() == []
        await handler.expect_silence(0.05)


async def test_dlq_function_errors():
    async with engine_with(ManualClock()) as engine:
        caller = await Peer.join(engine.url, "c")
        assert await call_err(caller, "iii::queue::redrive", {"queue": ""}) == {
            "code": "queue_not_set",
            "message": "Queue name is required",
        }
        err = await call_err(
            caller, "iii::queue::redrive_message", {"queue": "q", "message_id": ""}
        )
        assert err == {"code": "message_id_not_set", "message": "Message ID is required"}
        err = await call_err(
            caller, "iii::queue::discard_message", {"queue": "", "message_id": "x"}
        )
        assert err["code"] == "queue_not_set"
        err = await call_err(caller, "iii::queue::redrive", {})
        assert err == {
            "code": "deserialization_error",
            "message": "Failed to deserialize input for iii::queue::redrive: missing field `queue`",
        }
        err = await call_err(caller, "iii::queue::redrive", {"queue": "a", "topic": "b"})
        assert err["message"].endswith("duplicate field `queue`")
        err = await call_err(caller, "engine::queue::topic_stats", {"topic": ""})
        assert err == {"code": "topic_required", "message": "topic is required"}
        err = await call_err(caller, "engine::queue::dlq_messages", {"topic": "t", "limit": -1})
        assert err["message"].endswith("invalid value: integer `-1`, expected u64")
        err = await call_err(caller, "engine::queue::dlq_messages", {"topic": "t", "offset": "1"})
        assert err["message"].endswith('invalid type: string "1", expected u64')
        # A queue or topic that does not exist has nothing to redrive.
        assert await call_ok(caller, "iii::queue::redrive", {"topic": "ghost"}) == {
            "queue": "ghost",
            "redriven": 0,
        }
        assert await call_ok(caller, "engine::queue::dlq_messages", {"topic": "ghost"}) == []


async def test_concurrency_caps_the_jobs_running_at_once():
    async with engine_with(ManualClock(), queue_configs={"jobs": {"concurrency": 2}}) as engine:
        handler = await worker(engine, "job::slow")
        caller = await Peer.join(engine.url, "c")
        for n in range(5):
            await enqueue(caller, "job::slow", n, queue="jobs")
        running = [await handler.recv_type("invokefunction") for _ in range(2)]
        await handler.expect_silence(0.1)
        assert engine.queue_stats()["in_flight"] == 2
        await succeed(handler, running[0])
        running.append(await handler.recv_type("invokefunction"))
        await handler.expect_silence(0.05)
        assert [f["data"] for f in running] == [0, 1, 2]
        stats = await call_ok(caller, "engine::queue::topic_stats", {"topic": "jobs"})
        assert stats["depth"] == 4  # 2 waiting + 2 running


async def test_a_fifo_queue_runs_one_job_at_a_time_and_retries_it_before_the_next():
    clock = ManualClock()
    configs = {"ledger": {"type": "fifo", "message_group_field": "account", "backoff_ms": 500}}
    async with engine_with(clock, queue_configs=configs) as engine:
        handler = await worker(engine, "ledger::post")
        caller = await Peer.join(engine.url, "c")
        for n in range(3):
            await enqueue(caller, "ledger::post", {"account": "a", "n": n}, queue="ledger")
        first = await handler.recv_type("invokefunction")
        assert first["data"]["n"] == 0
        await handler.expect_silence(0.1)
        await fail(handler, first)
        # The retry blocks the queue: n=1 waits for it.
        await clock.wait_for_sleepers(1, within=0.5)
        await handler.expect_silence(0.1)
        clock.advance(0.5)
        retry = await handler.recv_type("invokefunction")
        assert retry["data"]["n"] == 0
        await succeed(handler, retry)
        seen = []
        for _ in range(2):
            frame = await handler.recv_type("invokefunction")
            seen.append(frame["data"]["n"])
            await succeed(handler, frame)
        assert seen == [1, 2]


async def test_a_standard_queue_retries_without_holding_up_the_others():
    clock = ManualClock()
    async with engine_with(clock, queue_configs={"jobs": {"concurrency": 1}}) as engine:
        handler = await worker(engine, "job::run")
        caller = await Peer.join(engine.url, "c")
        await enqueue(caller, "job::run", "a", queue="jobs")
        await enqueue(caller, "job::run", "b", queue="jobs")
        await fail(handler, await handler.recv_type("invokefunction"))
        b = await handler.recv_type("invokefunction")
        assert b["data"] == "b"  # before a's retry is due
        await succeed(handler, b)
        await clock.wait_for_sleepers(1, within=1.0)
        clock.advance(1.0)
        retry = await handler.recv_type("invokefunction")
        assert retry["data"] == "a"
        await succeed(handler, retry)
        await engine.wait_for(lambda: engine.queue_stats()["delivered"] == 2)
        assert engine.queue_stats()["failed"] == 1


async def test_a_missing_function_is_retried_until_it_appears():
    clock = ManualClock()
    async with engine_with(clock) as engine:
        caller = await Peer.join(engine.url, "c")
        await enqueue(caller, "late::fn", "payload")
        await clock.wait_for_sleepers(1, within=1.0)
        late = await worker(engine, "late::fn", name="late")
        clock.advance(1.0)
        frame = await late.recv_type("invokefunction")
        assert frame["data"] == "payload"


async def test_retries_with_no_backoff_take_turns_with_the_rest_of_the_engine():
    configs = {
        "fifo": {"type": "fifo", "message_group_field": "k", "backoff_ms": 0, "max_retries": 200},
        "std": {"backoff_ms": 0, "max_retries": 200},
    }
    async with engine_with(ManualClock(), queue_configs=configs) as engine:
        caller = await Peer.join(engine.url, "c")
        for queue in ("fifo", "std"):
            await enqueue(caller, "ghost::fn", {"k": 1}, queue=queue)  # fails at once, each time
        # The engine keeps answering while they spin down to their dead-letter queues.
        assert await call_ok(caller, "engine::queue::list_topics", {})
        await engine.wait_for(lambda: engine.queue_stats()["dead_letters"] == 2)
        assert {d["attempts"] for d in engine.dead_letters()} == {200}


async def test_an_enqueue_in_a_namespace_runs_there():
    async with engine_with(ManualClock()) as engine:
        handler = await worker(engine, "ns::fn", name="h", namespace="orders")
        caller = await Peer.join(engine.url, "c")
        out = await caller.call(
            "ns::fn", 5, namespace="orders", action={"type": "enqueue", "queue": "default"}
        )
        assert "messageReceiptId" in out["result"]
        assert (await handler.recv_type("invokefunction"))["data"] == 5


async def test_without_the_queue_module_enqueue_names_the_missing_provider():
    async with own_engine(namespace_grace=0.3, queue=False) as engine:
        caller = await Peer.join(engine.url, "c")
        out = await enqueue(caller, "any::fn", 1)
        assert out["error"] == {
            "code": "enqueue_error",
            "message": "No queue provider is installed. `TriggerAction::Enqueue` routes through "
            "the `engine::queue::enqueue` provider, which the standalone queue worker "
            "registers. Add it with `iii worker add queue`. (underlying: Function "
            "engine::queue::enqueue not found in namespace default.)",
        }
        err = await call_err(caller, "iii::durable::publish", {"topic": "t", "data": 1})
        assert err["code"] == "function_not_found"


async def test_a_worker_provider_error_reaches_the_caller_as_code_and_message(engine):
    provider = await worker(engine, "engine::queue::enqueue", name="queue-worker")
    caller = await Peer.join(engine.url, "c")
    inv = await caller.invoke("t::fn", 1, action={"type": "enqueue", "queue": "jobs"})
    job = await provider.recv_type("invokefunction")
    await provider.result(job["invocation_id"], error={"code": "full", "message": "queue full"})
    out = await caller.recv_type("invocationresult")
    assert out["invocation_id"] == inv
    assert out["error"] == {"code": "enqueue_error", "message": "full: queue full"}


# -- listings ------------------------------------------------------------------------------


async def test_topic_listings_show_named_queues_and_durable_topics():
    configs = {"emails": {"concurrency": 3}}
    async with engine_with(ManualClock(), queue_configs=configs) as engine:
        sub = await worker(engine, "orders::on_created", name="sub")
        await sub.send(
            {
                "type": "registertrigger",
                "id": new_id(),
                "trigger_type": "durable:subscriber",
                "function_id": "orders::on_created",
                "config": {"topic": "orders.created"},
            }
        )
        await settle(sub)
        caller = await Peer.join(engine.url, "c")
        topics = await call_ok(caller, "engine::queue::list_topics", {})
        assert topics == [
            {"name": "default", "broker_type": "builtin", "subscriber_count": 10},
            {"name": "emails", "broker_type": "builtin", "subscriber_count": 3},
            {"name": "orders.created", "broker_type": "builtin", "subscriber_count": 1},
        ]
        # As the real engine lists them: adapter keys, then the named queues again.
        dlq = await call_ok(caller, "engine::queue::dlq_topics", None)
        assert [(d["topic"], d["broker_type"]) for d in dlq] == [
            ("__fn_queue::default", "builtin"),
            ("__fn_queue::emails", "builtin"),
            ("orders.created", "builtin"),
            ("default", "function_queue"),
            ("emails", "function_queue"),
        ]
        assert {d["message_count"] for d in dlq} == {0}
        stats = await call_ok(caller, "engine::queue::topic_stats", {"topic": "orders.created"})
        assert stats == {"depth": 0, "consumer_count": 1, "dlq_depth": 0, "config": None}


# -- durable topics ------------------------------------------------------------------------


def durable(function_id: str, topic: str, **config: Any) -> dict[str, Any]:
    return {
        "type": "registertrigger",
        "id": new_id(),
        "trigger_type": "durable:subscriber",
        "function_id": function_id,
        "config": {"topic": topic, **config},
    }


async def test_durable_publish_gives_each_subscribed_function_one_copy():
    async with engine_with(ManualClock()) as engine:
        a = await worker(engine, "a::on", name="a")
        b = await worker(engine, "b::on", name="b")
        for peer, fid in ((a, "a::on"), (a, "a::on"), (b, "b::on")):  # a subscribes twice
            await peer.send(durable(fid, "link.updated"))
            await settle(peer)
        caller = await Peer.join(engine.url, "c")
        frame = await caller.call(
            "iii::durable::publish", {"topic": "link.updated", "data": {"code": "x"}}
        )
        assert "error" not in frame and frame.get("result") is None
        for peer, fid in ((a, "a::on"), (b, "b::on")):
            got = await peer.recv_type("invokefunction")
            assert (got["function_id"], got["data"]) == (fid, {"code": "x"})
            assert "metadata" not in got
            await succeed(peer, got)
        await a.expect_silence(0.1)  # replicas share one copy
        await engine.wait_for(lambda: engine.queue_stats()["delivered"] == 2)


async def test_a_subscribers_queue_config_sets_its_retries_and_backoff():
    clock = ManualClock()
    async with engine_with(clock) as engine:
        sub = await worker(engine, "cache::refresh", name="sub")
        config = {"queue_config": {"maxRetries": 1, "backoffDelayMs": 250}}
        await sub.send(durable("cache::refresh", "link.updated", **config))
        await settle(sub)
        caller = await Peer.join(engine.url, "c")
        await call_ok(caller, "iii::durable::publish", {"topic": "link.updated", "data": 7})
        await fail(sub, await sub.recv_type("invokefunction"))
        await clock.wait_for_sleepers(1, within=0.25)
        clock.advance(0.25)
        await fail(sub, await sub.recv_type("invokefunction"))  # maxRetries 1: 2 attempts
        await engine.wait_for(lambda: engine.queue_stats()["dead_letters"] == 1)
        [row] = await call_ok(caller, "engine::queue::dlq_messages", {"topic": "link.updated"})
        assert row["payload"] == 7 and row["retries"] == 2
        assert row["error"] == 'ErrorBody { code: "boom", message: "try again", stacktrace: None }'
        assert engine.dead_letters()[0]["function_id"] == "cache::refresh"
        out = await call_ok(caller, "iii::queue::redrive", {"topic": "link.updated"})
        assert out == {"queue": "link.updated", "redriven": 1}
        again = await sub.recv_type("invokefunction")
        assert again["data"] == 7
        await succeed(sub, again)


async def test_a_condition_function_decides_whether_a_subscriber_runs():
    async with engine_with(ManualClock()) as engine:
        sub = await worker(engine, "big::only", "big::check", name="sub")
        await sub.send(durable("big::only", "orders", condition_function_id="big::check"))
        await settle(sub)
        caller = await Peer.join(engine.url, "c")
        for amount in (5, 500):
            await call_ok(caller, "iii::durable::publish", {"topic": "orders", "data": amount})
            check = await sub.recv_type("invokefunction")
            assert check["function_id"] == "big::check" and check["data"] == amount
            await sub.result(check["invocation_id"], amount > 100)
        run = await sub.recv_type("invokefunction")
        assert (run["function_id"], run["data"]) == ("big::only", 500)
        await succeed(sub, run)
        await engine.wait_for(lambda: engine.queue_stats()["delivered"] == 2)


async def test_a_topic_nobody_subscribes_to_keeps_its_messages_undelivered():
    async with engine_with(ManualClock()) as engine:
        caller = await Peer.join(engine.url, "c")
        await call_ok(caller, "iii::durable::publish", {"topic": "lonely", "data": 1})
        stats = await call_ok(caller, "engine::queue::topic_stats", {"topic": "lonely"})
        assert stats["depth"] == 1 and stats["consumer_count"] == 0
        late = await worker(engine, "late::on", name="late")
        await late.send(durable("late::on", "lonely"))
        await settle(late)
        await late.expect_silence(0.1)  # as the real engine: that message is not its
        await call_ok(caller, "iii::durable::publish", {"topic": "lonely", "data": 2})
        assert (await late.recv_type("invokefunction"))["data"] == 2


async def test_an_unsubscribed_function_gets_no_new_messages_but_keeps_its_pending_ones():
    clock = ManualClock()
    async with engine_with(clock) as engine:
        sub = await worker(engine, "s::on", name="sub")
        other = await worker(engine, "o::on", name="other")
        bid = new_id()
        await sub.send({**durable("s::on", "t"), "id": bid})
        await other.send(durable("o::on", "t"))
        await settle(sub, other)
        caller = await Peer.join(engine.url, "c")
        await call_ok(caller, "iii::durable::publish", {"topic": "t", "data": "first"})
        await fail(sub, await sub.recv_type("invokefunction"))
        await succeed(other, await other.recv_type("invokefunction"))
        await sub.send(
            {"type": "unregistertrigger", "id": bid, "trigger_type": "durable:subscriber"}
        )
        await settle(sub)
        await call_ok(caller, "iii::durable::publish", {"topic": "t", "data": "second"})
        assert (await other.recv_type("invokefunction"))["data"] == "second"
        await clock.wait_for_sleepers(1, within=1.0)
        clock.advance(1.0)
        await sub.expect_silence(0.1)  # no consumer: its retry waits
        await sub.send({**durable("s::on", "t"), "id": bid})
        retry = await sub.recv_type("invokefunction")
        assert retry["data"] == "first"


async def test_durable_publish_errors_and_a_binding_without_topic():
    async with engine_with(ManualClock()) as engine:
        sub = await worker(engine, "x::on", name="sub")
        await sub.send(durable("x::on", ""))
        assert await settle(sub) == []  # accepted, never fires
        caller = await Peer.join(engine.url, "c")
        err = await call_err(caller, "iii::durable::publish", {"topic": "", "data": 1})
        assert err == {"code": "topic_not_set", "message": "Topic is not set"}
        err = await call_err(caller, "iii::durable::publish", {"topic": "t"})
        assert err["message"].endswith("missing field `data`")
        await call_ok(caller, "iii::durable::publish", {"topic": "t", "data": None})
        await sub.expect_silence(0.1)


async def test_a_durable_binding_in_a_namespace_runs_its_function_there():
    async with engine_with(ManualClock()) as engine:
        sub = await worker(engine, "ns::on", name="sub", namespace="orders")
        await sub.send({**durable("ns::on", "t"), "namespace": "orders"})
        await settle(sub)
        caller = await Peer.join(engine.url, "c")
        await call_ok(caller, "iii::durable::publish", {"topic": "t", "data": 3})
        assert (await sub.recv_type("invokefunction"))["data"] == 3
        assert engine.queue_stats()["topics"] == {
            "t": [{"namespace": "orders", "function_id": "ns::on"}]
        }


# -- options ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "error", "message"),
    [
        ([], TypeError, "expected a mapping of queue name to its settings"),
        ("{", ValueError, "expected a JSON object"),
        ({"q": 5}, TypeError, "queue 'q': expected a mapping of settings"),
        ({"q": {"retries": 1}}, ValueError, "queue 'q': unknown field `retries`, expected one of"),
        ({"q": {"max_retries": -1}}, TypeError, "`max_retries` must be a u32"),
        ({"q": {"concurrency": True}}, TypeError, "`concurrency` must be a u32"),
        ({"q": {"type": None}}, TypeError, "`type` must be a string"),
        ({"q": {"type": "lifo"}}, ValueError, "Queue 'q' has invalid type 'lifo'. Must be"),
        ({"q": {"type": "fifo"}}, ValueError, "'message_group_field' is not set"),
        ({"q": {"concurrency": 0}}, ValueError, "Queue 'q' has 'concurrency' 0; it must be"),
    ],
)
def test_queue_configs_are_checked_like_the_engine_checks_its_config(value, error, message):
    with pytest.raises(error, match=re.escape(message)):
        EngineOptions(queue_configs=value)


def test_queue_configs_from_the_cli_inline_or_from_a_file(tmp_path, capsys):
    configs = {"payment": {"type": "fifo", "message_group_field": "tx", "max_retries": 10}}
    path = tmp_path / "queues.json"
    path.write_text(json.dumps(configs))
    for text in (json.dumps(configs), str(path)):
        settings = _module_settings(_parser().parse_args(["--queue-configs", text]))
        assert settings == {"queue_configs": configs}
        options = EngineOptions(**settings)
        assert options.configs["queue"].configs == configs
    with pytest.raises(SystemExit):
        main(["--queue-configs", '{"p": {"type": "fifo"}}'])
    err = capsys.readouterr().err
    assert "argument --queue-configs: Queue 'p' is of type 'fifo'" in err
