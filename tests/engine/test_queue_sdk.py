"""The queue and pubsub modules through this SDK: on threads (``register_worker``)
and on asyncio and trio (``register_worker_async``), retries on the fixture's
``ManualClock``."""

from __future__ import annotations

import threading
from typing import Any

import anyio
import pytest

import iii
from iii import IIIInvocationError
from iii.testing import EngineThread, ManualClock


def bound(engine: EngineThread, function_id: str, trigger_type: str) -> None:
    """Wait until the engine holds ``function_id``'s binding of ``trigger_type``."""
    engine.wait_for(
        lambda: any(
            b["function_id"] == function_id and b["trigger_type"] == trigger_type and b["acked"]
            for b in engine.bindings()
        )
    )


def sleepers(engine: EngineThread, within: float) -> None:
    clock = engine.clock
    assert isinstance(clock, ManualClock)
    engine.call(lambda: clock.wait_for_sleepers(1, within=within))


# -- threads -------------------------------------------------------------------------------


@pytest.mark.iii_engine(
    clock="manual", queue_configs={"emails": {"max_retries": 2, "backoff_ms": 500}}
)
def test_enqueue_retry_and_dead_letter_on_threads(iii_engine):
    attempts: list[Any] = []
    arrived = threading.Semaphore(0)

    def send(data: Any) -> dict[str, Any]:
        attempts.append(data)
        arrived.release()
        if data.get("fail"):
            raise RuntimeError("smtp down")
        return {"sent": True}

    with iii.register_worker(iii_engine.url, iii.InitOptions(worker_name="mailer")) as w:
        w.register_function("mail::send", send)
        iii_engine.wait_for_function("mail::send")
        enqueue = iii.TriggerAction.Enqueue(queue="emails")
        receipt = w.trigger(
            {"function_id": "mail::send", "payload": {"fail": True}, "action": enqueue}
        )
        assert isinstance(receipt, iii.EnqueueResult)
        assert arrived.acquire(timeout=5)
        sleepers(iii_engine, 0.5)
        assert iii_engine.advance_clock(0.5) == 1
        assert arrived.acquire(timeout=5)  # max_retries 2: the second attempt is the last
        iii_engine.wait_for(lambda: iii_engine.queue_stats()["dead_letters"] == 1)
        [dead] = iii_engine.dead_letters()
        assert dead["messageReceiptId"] == receipt.message_receipt_id
        assert dead["error"]["code"] == "invocation_failed"
        assert "smtp down" in dead["error"]["message"]
        # The DLQ through the engine's functions, as a worker reads it.
        [row] = w.trigger(
            {"function_id": "engine::queue::dlq_messages", "payload": {"queue": "emails"}}
        )
        assert row["payload"] == {"fail": True} and row["retries"] == 2
        out = w.trigger(
            {
                "function_id": "iii::queue::discard_message",
                "payload": {"queue": "emails", "message_id": row["id"]},
            }
        )
        assert out["redriven"] == 1
        # An undeclared queue is refused, with the engine's code and words.
        with pytest.raises(IIIInvocationError) as info:
            w.trigger(
                {
                    "function_id": "mail::send",
                    "payload": {},
                    "action": iii.TriggerAction.Enqueue(queue="sms"),
                }
            )
        assert (info.value.code, info.value.message) == ("enqueue_error", "Queue 'sms' not found")
    assert len(attempts) == 2


def test_publish_fans_out_to_subscribers_on_threads(iii_engine):
    got: dict[str, list[Any]] = {"a": [], "b": []}
    both = threading.Semaphore(0)

    def on(name: str) -> Any:
        def handler(data: Any) -> None:
            got[name].append(data)
            both.release()

        return handler

    with iii.register_worker(iii_engine.url, iii.InitOptions(worker_name="subs")) as w:
        for name in ("a", "b"):
            w.register_function(f"{name}::on_shipped", on(name))
            w.register_trigger(
                {
                    "type": "subscribe",
                    "function_id": f"{name}::on_shipped",
                    "config": {"topic": "orders.shipped"},
                }
            )
            bound(iii_engine, f"{name}::on_shipped", "subscribe")
        out = w.trigger(
            {
                "function_id": "publish",
                "payload": {"topic": "orders.shipped", "data": {"orderId": "o-1"}},
            }
        )
        assert out is None
        assert both.acquire(timeout=5) and both.acquire(timeout=5)
        assert got == {"a": [{"orderId": "o-1"}], "b": [{"orderId": "o-1"}]}
        with pytest.raises(IIIInvocationError) as info:
            w.trigger({"function_id": "publish", "payload": {"topic": "", "data": 1}})
        assert info.value.code == "topic_not_set"


# -- asyncio and trio ------------------------------------------------------------------------


@pytest.fixture(params=["asyncio", "trio"])
def run(request):
    def runner(fn: Any) -> Any:
        return anyio.run(fn, backend=request.param)

    return runner


async def off_loop(fn: Any, *args: Any) -> Any:
    return await anyio.to_thread.run_sync(lambda: fn(*args))


@pytest.mark.iii_engine(clock="manual")
def test_durable_subscriber_retries_dead_letters_and_redrives_async(iii_engine, run):
    async def main() -> None:
        async with iii.register_worker_async(
            iii_engine.url, iii.InitOptions(worker_name="cache")
        ) as w:
            healthy = False
            seen: list[Any] = []
            arrived = anyio.Event()

            async def refresh(data: Any) -> dict[str, Any]:
                nonlocal arrived
                seen.append(data)
                arrived.set()
                if not healthy:
                    raise ValueError("cache offline")
                return {"refreshed": data["code"]}

            w.register_function("link::on_updated", refresh)
            w.register_trigger(
                {
                    "type": "durable:subscriber",
                    "function_id": "link::on_updated",
                    "config": {"topic": "link.updated", "queue_config": {"maxRetries": 1}},
                }
            )
            await off_loop(bound, iii_engine, "link::on_updated", "durable:subscriber")
            publish = {"topic": "link.updated", "data": {"code": "x"}}
            assert (
                await w.trigger_async({"function_id": "iii::durable::publish", "payload": publish})
                is None
            )
            with anyio.fail_after(5):
                await arrived.wait()
            arrived = anyio.Event()
            await off_loop(sleepers, iii_engine, 1.0)  # the default backoff: 1 s
            await off_loop(iii_engine.advance_clock, 1.0)
            with anyio.fail_after(5):
                await arrived.wait()
            await off_loop(
                iii_engine.wait_for, lambda: iii_engine.queue_stats()["dead_letters"] == 1
            )
            topics = await w.trigger_async(
                {"function_id": "engine::queue::dlq_topics", "payload": {}}
            )
            assert {"topic": "link.updated", "broker_type": "builtin", "message_count": 1} in topics
            healthy = True
            arrived = anyio.Event()
            out = await w.trigger_async(
                {"function_id": "iii::queue::redrive", "payload": {"topic": "link.updated"}}
            )
            assert out == {"queue": "link.updated", "redriven": 1}
            with anyio.fail_after(5):
                await arrived.wait()
            await off_loop(iii_engine.wait_for, lambda: iii_engine.queue_stats()["delivered"] == 1)
            assert seen == [{"code": "x"}] * 3

    run(main)


def test_pubsub_and_a_fifo_queue_async(iii_engine_factory, run):
    configs = {"ledger": {"type": "fifo", "message_group_field": "account"}}
    engine = iii_engine_factory(queue_configs=configs)

    async def main() -> None:
        async with iii.register_worker_async(engine.url, iii.InitOptions(worker_name="led")) as w:
            posted: list[int] = []
            done = anyio.Event()
            notified = anyio.Event()

            async def post(data: Any) -> None:
                await anyio.sleep(0)  # one at a time all the same
                posted.append(data["n"])
                if len(posted) == 3:
                    done.set()

            async def notify(data: Any) -> None:
                assert data == {"posted": 3}
                notified.set()

            w.register_function("ledger::post", post)
            w.register_function("ledger::notify", notify)
            w.register_trigger(
                {
                    "type": "subscribe",
                    "function_id": "ledger::notify",
                    "config": {"topic": "ledger"},
                }
            )
            await off_loop(bound, engine, "ledger::notify", "subscribe")
            for n in range(3):
                await w.trigger_async(
                    {
                        "function_id": "ledger::post",
                        "payload": {"account": "a", "n": n},
                        "action": iii.TriggerAction.Enqueue(queue="ledger"),
                    }
                )
            with anyio.fail_after(5):
                await done.wait()
            assert posted == [0, 1, 2]
            with pytest.raises(IIIInvocationError) as info:
                await w.trigger_async(
                    {
                        "function_id": "ledger::post",
                        "payload": {"n": 9},
                        "action": iii.TriggerAction.Enqueue(queue="ledger"),
                    }
                )
            assert info.value.code == "enqueue_error"
            assert "requires field 'account'" in info.value.message
            await w.trigger_async(
                {"function_id": "publish", "payload": {"topic": "ledger", "data": {"posted": 3}}}
            )
            with anyio.fail_after(5):
                await notified.wait()

    run(main)
