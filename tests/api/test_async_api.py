"""``register_worker_async``: the worker on the test's own asyncio or trio loop."""

from __future__ import annotations

import threading
from typing import Any

import anyio
import attrs
import pytest

import iii
from iii import IIIInvocationError

from .test_sync_api import FAST

BACKENDS = ["asyncio", "trio"]


async def off_loop(fn: Any, *args: Any) -> Any:
    """Run a blocking engine control without blocking the worker's loop."""
    return await anyio.to_thread.run_sync(lambda: fn(*args))


def opts(**kw: Any) -> iii.InitOptions:
    return attrs.evolve(FAST, **kw)


@pytest.fixture(params=BACKENDS)
def run(request):
    backend = request.param

    def runner(fn, *args):
        return anyio.run(fn, *args, backend=backend)

    return runner


def test_round_trip_and_concurrency(iii_engine, run):
    async def main() -> None:
        async with iii.register_worker_async(iii_engine.url, opts(worker_name="aw")) as w:
            assert w.get_connection_state() == "connected"

            async def double(data: int) -> int:
                await anyio.sleep(0)
                return data * 2

            w.register_function("aa::double", double)
            w.register_function("aa::sync", lambda d: threading.current_thread().name)
            await off_loop(iii_engine.wait_for_function, "aa::sync")
            results: list[int] = []

            async def call(i: int) -> None:
                results.append(await w.trigger_async({"function_id": "aa::double", "payload": i}))

            async with anyio.create_task_group() as tg:
                for i in range(200):
                    tg.start_soon(call, i)
            assert sorted(results) == [i * 2 for i in range(200)]
            # Sync handlers run off the loop thread.
            name = await w.trigger_async({"function_id": "aa::sync", "payload": None})
            assert name != threading.current_thread().name

    run(main)


def test_errors_void_and_enqueue(iii_engine, run):
    async def main() -> None:
        async with iii.register_worker_async(iii_engine.url, opts(worker_name="ae")) as w:
            done = anyio.Event()

            async def job(data: Any) -> None:
                done.set()

            async def boom(data: Any) -> None:
                raise KeyError("missing")

            w.register_function("ae::job", job)
            w.register_function("ae::boom", boom)
            await off_loop(iii_engine.wait_for_function, "ae::boom")
            with pytest.raises(IIIInvocationError) as info:
                await w.trigger_async({"function_id": "ae::boom", "payload": None})
            assert info.value.code == "invocation_failed"
            assert "KeyError" in (info.value.stacktrace or "")
            with pytest.raises(IIIInvocationError) as info:
                await w.trigger_async({"function_id": "ae::nope", "payload": None})
            assert info.value.code == "function_not_found"
            with pytest.raises(IIIInvocationError) as info:
                await w.trigger_async({"function_id": "ae::job", "payload": float("nan")})
            assert info.value.code == "serialization_error"
            assert (
                await w.trigger_async(
                    {"function_id": "ae::job", "payload": 1, "action": iii.TriggerAction.Void()}
                )
                is None
            )
            with anyio.fail_after(30):
                await done.wait()
            done = anyio.Event()
            receipt = await w.trigger_async(
                {
                    "function_id": "ae::job",
                    "payload": 2,
                    "action": iii.TriggerAction.Enqueue(queue="default"),
                }
            )
            assert isinstance(receipt, iii.EnqueueResult)
            with anyio.fail_after(30):
                await done.wait()

    run(main)


def test_sync_trigger_on_the_loop_is_refused_but_works_from_threads(iii_engine, run):
    async def main() -> None:
        async with iii.register_worker_async(iii_engine.url, opts(worker_name="at")) as w:
            w.register_function("at::x", lambda d: d + 1)
            await off_loop(iii_engine.wait_for_function, "at::x")
            with pytest.raises(iii.IIIUsageError):
                w.trigger({"function_id": "at::x", "payload": 1})
            value = await anyio.to_thread.run_sync(
                w.trigger, {"function_id": "at::x", "payload": 41}
            )
            assert value == 42

    run(main)


def test_timeout_connection_lost_and_reconnect(iii_engine, run):
    async def main() -> None:
        async with iii.register_worker_async(iii_engine.url, opts(worker_name="al")) as w:
            states: list[str] = []
            w.add_connection_state_listener(states.append)
            assert states == ["connected"]  # called at once with the current state

            async def hang(data: Any) -> None:
                await anyio.sleep(10)

            w.register_function("al::hang", hang)
            w.register_function("al::ok", lambda d: "ok")
            await off_loop(iii_engine.wait_for_function, "al::ok")
            with pytest.raises(IIIInvocationError) as info:
                await w.trigger_async(
                    {"function_id": "al::hang", "payload": None, "timeout_ms": 100}
                )
            assert info.value.code == "TIMEOUT"

            outcome: list[str] = []

            async def call() -> None:
                try:
                    await w.trigger_async(
                        {"function_id": "al::hang", "payload": None, "timeout_ms": 600000}
                    )
                except IIIInvocationError as exc:
                    outcome.append(exc.code)

            async with anyio.create_task_group() as tg:
                tg.start_soon(call)
                await off_loop(
                    lambda: iii_engine.wait_for_frame(
                        "invokefunction",
                        direction="in",
                        count=2,
                        where=lambda f: f.get("function_id") == "al::hang",
                    )
                )
                await off_loop(lambda: iii_engine.drop(w.worker_id, code=1001))
            # Failed by the drop, not by its (10 min) timeout.
            assert outcome == ["CONNECTION_LOST"]
            with anyio.fail_after(30):
                while w.get_connection_state() != "connected":
                    await anyio.sleep(0.02)
            with anyio.fail_after(30):
                while True:
                    try:
                        assert (
                            await w.trigger_async({"function_id": "al::ok", "payload": None})
                            == "ok"
                        )
                        break
                    except IIIInvocationError as exc:
                        assert exc.code == "function_not_found"
                        await anyio.sleep(0.02)
            assert "reconnecting" in states

    run(main)


def test_shutdown_fails_pending_calls(iii_engine, run):
    async def main() -> None:
        outcome: list[str] = []
        async with iii.register_worker_async(iii_engine.url, opts(worker_name="as")) as w:
            w.register_function("as::ok", lambda d: d)
            await off_loop(iii_engine.wait_for_function, "as::ok")
            iii_engine.withhold_results("as::ok")

            async def call() -> None:
                try:
                    await w.trigger_async({"function_id": "as::ok", "payload": 1})
                except IIIInvocationError as exc:
                    outcome.append(exc.code)

            async with anyio.create_task_group() as tg:
                tg.start_soon(call)
                await anyio.to_thread.run_sync(
                    lambda: iii_engine.wait_for_frame("invocationresult", direction="in")
                )
                await w.shutdown_async()
            with pytest.raises(IIIInvocationError) as info:
                await w.trigger_async({"function_id": "as::ok", "payload": 1})
            assert info.value.code == "SHUTDOWN"
        assert outcome == ["SHUTDOWN"]

    run(main)


def test_register_worker_async_raises_on_conflict_or_no_engine(iii_engine, run):
    async def main() -> None:
        import socket

        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
        with pytest.raises(iii.ConnectError):
            async with iii.register_worker_async(
                f"ws://127.0.0.1:{port}", opts(register_timeout_ms=300)
            ):
                pytest.fail("should not enter")

    run(main)


def test_trigger_types_on_the_loop(iii_engine, run):
    async def main() -> None:
        async with iii.register_worker_async(iii_engine.url, opts(worker_name="ap")) as w:
            got = anyio.Event()
            seen: list[Any] = []

            class Provider(iii.TriggerHandler[Any]):
                async def register_trigger(self, config: iii.TriggerConfig[Any]) -> None:
                    seen.append(config)
                    got.set()

            w.register_trigger_type({"id": "ticks", "description": "t"}, Provider())
            w.register_function("ap::target", lambda d: d)
            await anyio.to_thread.run_sync(lambda: iii_engine.wait_for_trigger_type("ticks"))
            trigger = w.register_trigger(
                {"type": "ticks", "function_id": "ap::target", "config": {"every": 1}}
            )
            with anyio.fail_after(30):
                await got.wait()
            assert seen[0].id == trigger.id and seen[0].config == {"every": 1}

    run(main)
