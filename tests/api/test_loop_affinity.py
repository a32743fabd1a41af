"""``register_worker`` called inside an asyncio loop or a trio run binds the worker
to that loop: async handlers run there, ``trigger_async`` and ``shutdown_async``
work there, the program exits when ``main`` returns, and no call is lost when
the loop ends before the worker."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio

import iii

from .test_sync_api import FAST

ROOT = Path(__file__).resolve().parents[2]


def opts(**kw: Any) -> iii.InitOptions:
    return attrs.evolve(FAST, **kw)


def test_asyncio_handlers_run_on_the_apps_loop(iii_engine):
    async def main() -> None:
        loop = asyncio.get_running_loop()
        lock = asyncio.Lock()  # bound to this loop on first use
        seen: asyncio.Queue[Any] = asyncio.Queue()
        worker = iii.register_worker(iii_engine.url, opts(worker_name="bind-asyncio"))

        async def handler(data: int) -> dict[str, Any]:
            async with lock:
                await seen.put(data)
                await asyncio.sleep(0)
            return {
                "same_loop": asyncio.get_running_loop() is loop,
                "thread": threading.get_ident(),
            }

        worker.register_function("bind::a", handler)
        results = await asyncio.gather(
            *(worker.trigger_async({"function_id": "bind::a", "payload": i}) for i in range(20))
        )
        assert all(r["same_loop"] for r in results)
        assert {r["thread"] for r in results} == {threading.get_ident()}
        assert sorted(seen.get_nowait() for _ in range(seen.qsize())) == list(range(20))
        # A blocking call here would freeze the loop its own handlers need.
        with pytest.raises(iii.IIIUsageError):
            worker.trigger({"function_id": "bind::a", "payload": 0})
        await worker.shutdown_async()
        assert worker.get_connection_state() == "disconnected"

    asyncio.run(main())


def test_trio_handlers_run_in_the_apps_run(iii_engine):
    async def main() -> None:
        token = trio.lowlevel.current_trio_token()
        called = trio.Event()
        worker = iii.register_worker(iii_engine.url, opts(worker_name="bind-trio"))

        async def handler(data: int) -> dict[str, Any]:
            await trio.sleep(0)  # 'Task got bad yield' anywhere but in this run
            called.set()
            return {"same_run": trio.lowlevel.current_trio_token() is token, "n": data}

        worker.register_function("bind::t", handler)
        results: list[Any] = []

        async def call(i: int) -> None:
            results.append(await worker.trigger_async({"function_id": "bind::t", "payload": i}))

        async with trio.open_nursery() as nursery:
            for i in range(20):
                nursery.start_soon(call, i)
        assert called.is_set()
        assert sorted(r["n"] for r in results) == list(range(20))
        assert all(r["same_run"] for r in results)
        with pytest.raises(iii.IIIUsageError):
            worker.trigger({"function_id": "bind::t", "payload": 0})
        await worker.shutdown_async()
        assert worker.get_connection_state() == "disconnected"

    trio.run(main)


def test_sync_handlers_still_run_on_the_pool_and_sync_trigger_works_from_threads(iii_engine):
    async def main() -> None:
        worker = iii.register_worker(iii_engine.url, opts(worker_name="bind-pool"))
        worker.register_function("bind::s", lambda d: threading.current_thread().name)
        name = await worker.trigger_async({"function_id": "bind::s", "payload": None})
        assert name.startswith("iii-handler")
        from_thread = await asyncio.to_thread(
            worker.trigger, {"function_id": "bind::s", "payload": None}
        )
        assert from_thread.startswith("iii-handler")
        await worker.shutdown_async()

    asyncio.run(main())


def run_script(code: str, url: str) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter; it must end by itself (no kill)."""
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={"III_URL": url, "PATH": "/usr/bin:/bin"},
    )


SCRIPT = """
import asyncio, sys
import trio
import iii

backend, shut_down = sys.argv[1], sys.argv[2] == "yes"

async def main(sleep):
    worker = iii.register_worker(options=iii.InitOptions(worker_name="exit-" + backend))

    async def handler(data):
        await sleep(0)
        return data + 1

    worker.register_function("exit::f", handler)
    assert await worker.trigger_async({"function_id": "exit::f", "payload": 1}) == 2
    if shut_down:
        await worker.shutdown_async()
    print("main done", flush=True)

if backend == "trio":
    trio.run(main, trio.sleep)
else:
    asyncio.run(main(asyncio.sleep))
"""


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
@pytest.mark.parametrize("shut_down", ["yes", "no"])
def test_the_program_exits_when_main_returns(iii_engine, backend, shut_down):
    code = SCRIPT.replace("sys.argv[1]", repr(backend)).replace("sys.argv[2]", repr(shut_down))
    result = run_script(code, iii_engine.url)
    assert result.returncode == 0, result.stderr
    assert "main done" in result.stdout


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_no_call_is_lost_when_the_apps_loop_ends_first(iii_engine, backend):
    caller = iii.register_worker(iii_engine.url, opts(worker_name=f"end-caller-{backend}"))
    outcomes: dict[str, Any] = {}

    def call(name: str, function_id: str) -> None:
        try:
            outcomes[name] = caller.trigger({"function_id": function_id, "payload": None})
        except iii.IIIInvocationError as exc:
            outcomes[name] = exc

    async def main(sleep: Any, event: Any, off_loop: Any) -> iii.III:
        # One handler at a time: "queued" waits in the gate while "running" runs.
        worker = iii.register_worker(
            iii_engine.url, opts(worker_name=f"end-{backend}", max_concurrent_handlers=1)
        )
        started = event()

        async def running(data: Any) -> None:
            started.set()
            await sleep(3600)

        async def queued(data: Any) -> str:
            await sleep(0)
            return threading.current_thread().name

        worker.register_function("end::running", running)
        worker.register_function("end::queued", queued)
        await off_loop(lambda: iii_engine.wait_for_function("end::queued"))
        threading.Thread(target=call, args=("running", "end::running")).start()
        await started.wait()
        threading.Thread(target=call, args=("queued", "end::queued")).start()
        await off_loop(
            lambda: iii_engine.wait_for_frame(
                "invokefunction",
                direction="out",
                where=lambda f: f.get("function_id") == "end::queued",
            )
        )
        return worker  # main returns with one handler running and one waiting

    if backend == "trio":
        worker = trio.run(main, trio.sleep, trio.Event, trio.to_thread.run_sync)
    else:
        worker = asyncio.run(main(asyncio.sleep, asyncio.Event, asyncio.to_thread))
    try:
        iii_engine.wait_for(lambda: len(outcomes) == 2)
        # The running handler was cancelled by the loop's own shutdown: its
        # caller is told so at once.  The waiting one ran on the private loop.
        assert isinstance(outcomes["running"], iii.IIIInvocationError)
        assert outcomes["running"].code == "invocation_failed"
        assert "Cancelled" in outcomes["running"].message
        assert outcomes["queued"] == "iii-async-handlers"
        # And the worker keeps serving its async functions there.
        assert caller.trigger({"function_id": "end::queued", "payload": None}) == (
            "iii-async-handlers"
        )
    finally:
        worker.shutdown()
        caller.shutdown()


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_a_worker_outliving_its_loop_serves_the_rest_of_the_program(iii_engine, backend):
    async def setup() -> iii.III:
        worker = iii.register_worker(iii_engine.url, opts(worker_name=f"outlive-{backend}"))

        async def handler(data: int) -> int:
            await (trio.sleep(0) if backend == "trio" else asyncio.sleep(0))
            return data + 1

        worker.register_function("outlive::f", handler)
        assert await worker.trigger_async({"function_id": "outlive::f", "payload": 1}) == 2
        return worker

    worker = trio.run(setup) if backend == "trio" else asyncio.run(setup())
    try:
        # The loop is gone: this thread is a plain thread again, so the blocking
        # call is allowed, and the handler runs on the private loop.
        assert worker.trigger({"function_id": "outlive::f", "payload": 41}) == 42
    finally:
        worker.shutdown()


def test_register_worker_async_binds_the_same_way(iii_engine):
    async def main() -> None:
        loop = asyncio.get_running_loop()
        async with iii.register_worker_async(iii_engine.url, opts(worker_name="rwa")) as worker:

            async def handler(data: Any) -> bool:
                return asyncio.get_running_loop() is loop

            worker.register_function("rwa::f", handler)
            assert await worker.trigger_async({"function_id": "rwa::f", "payload": None})

    asyncio.run(main())


def test_a_worker_made_outside_any_loop_uses_its_private_loop(iii_engine):
    worker = iii.register_worker(iii_engine.url, opts(worker_name="unbound"))
    try:

        async def handler(data: Any) -> str:
            await asyncio.sleep(0)
            return threading.current_thread().name

        worker.register_function("unbound::f", handler)
        assert worker.trigger({"function_id": "unbound::f", "payload": None}) == (
            "iii-async-handlers"
        )

        async def from_a_loop() -> Any:
            return await worker.trigger_async({"function_id": "unbound::f", "payload": None})

        assert asyncio.run(from_a_loop()) == "iii-async-handlers"
        assert trio.run(from_a_loop) == "iii-async-handlers"
    finally:
        worker.shutdown()
