"""Shutdown leaves nothing running; a shut-down worker refuses everything the
same way on every backend; bad arguments are typed errors raised before
anything is sent."""

from __future__ import annotations

import math
import subprocess
import sys
import textwrap
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import attrs
import pytest

import iii

from .test_sync_api import FAST

ROOT = Path(__file__).resolve().parents[2]
BACKENDS = ["asyncio", "trio"]


def opts(**kw: Any) -> iii.InitOptions:
    return attrs.evolve(FAST, **kw)


def run_script(code: str, url: str) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter; it must end by itself (a hang fails
    the test by the subprocess timeout, not by a clock in the test)."""
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={"III_URL": url, "PATH": "/usr/bin:/bin"},
    )


HUNG_THREAD_WORKER = """
import threading, time
import iii

worker = iii.register_worker(options=iii.InitOptions(shutdown_grace_ms=100))
started = threading.Event()

def stuck(data):
    started.set()
    threading.Event().wait()  # never returns

async def stuck_async(data):
    started.set()
    time.sleep(3600)  # blocks its loop, too

worker.register_function("hung::f", stuck)
worker.register_function("hung::a", stuck_async)
for fid in ("hung::f", "hung::a"):
    started.clear()
    worker.trigger({"function_id": fid, "payload": None, "action": iii.TriggerAction.Void()})
    started.wait()
worker.shutdown()
print("shut down", flush=True)
"""


def test_a_hung_handler_does_not_keep_the_process_alive(iii_engine):
    result = run_script(HUNG_THREAD_WORKER, iii_engine.url)
    assert result.returncode == 0, result.stderr
    assert "shut down" in result.stdout


HUNG_LOOP_WORKER = """
import threading
import anyio
import iii

async def main():
    started = anyio.Event()
    thread_started = threading.Event()
    options = iii.InitOptions(shutdown_grace_ms=200)
    async with iii.register_worker_async(options=options) as worker:

        async def stuck(data):
            started.set()
            await anyio.sleep_forever()

        def stuck_thread(data):
            thread_started.set()
            threading.Event().wait()

        worker.register_function("hung::a", stuck)
        worker.register_function("hung::t", stuck_thread)
        void = iii.TriggerAction.Void()
        await worker.trigger_async({"function_id": "hung::a", "payload": None, "action": void})
        await worker.trigger_async({"function_id": "hung::t", "payload": None, "action": void})
        await started.wait()
        await anyio.to_thread.run_sync(thread_started.wait)
    print("left the block", flush=True)

anyio.run(main, backend=BACKEND)
"""


@pytest.mark.parametrize("backend", BACKENDS)
def test_leaving_async_with_does_not_wait_for_hung_handlers(iii_engine, backend):
    result = run_script(HUNG_LOOP_WORKER.replace("BACKEND", repr(backend)), iii_engine.url)
    assert result.returncode == 0, result.stderr
    assert "left the block" in result.stdout


# -- use after shutdown -----------------------------------------------------------------


def sync_uses(worker: iii.III) -> dict[str, Callable[[], Any]]:
    return {
        "register_function": lambda: worker.register_function("late::f", lambda d: d),
        "register_trigger": lambda: worker.register_trigger(
            {"type": "t", "function_id": "late::f", "config": {}}
        ),
        "register_trigger_type": lambda: worker.register_trigger_type(
            {"id": "late-type"}, iii.TriggerHandler()
        ),
        "unregister_trigger_type": lambda: worker.unregister_trigger_type("late-type"),
        "trigger": lambda: worker.trigger({"function_id": "late::f", "payload": None}),
        "list_functions": worker.list_functions,
        "list_workers": worker.list_workers,
        "list_triggers": worker.list_triggers,
    }


def async_uses(worker: iii.III) -> dict[str, Callable[[], Awaitable[Any]]]:
    return {
        "trigger_async": lambda: worker.trigger_async({"function_id": "late::f"}),
        "list_functions_async": worker.list_functions_async,
        "list_workers_async": worker.list_workers_async,
        "list_triggers_async": worker.list_triggers_async,
    }


def refused(exc: BaseException) -> None:
    assert isinstance(exc, iii.WorkerShutdownError), repr(exc)
    assert isinstance(exc, iii.IIIUsageError)
    # What trigger used to raise, for code that handles it.
    assert isinstance(exc, iii.IIIInvocationError) and exc.code == "SHUTDOWN"
    assert isinstance(exc, iii.ConnectionClosed)  # this side closed it
    assert "was shut down" in str(exc)


async def check_refused(worker: iii.III, ref: iii.FunctionRef) -> None:
    for name, use in sync_uses(worker).items():
        with pytest.raises(iii.IIIError) as info:
            use()
        refused(info.value)
        assert name  # each use is checked
    for use_async in async_uses(worker).values():
        with pytest.raises(iii.IIIError) as info:
            await use_async()
        refused(info.value)
    ref.unregister()  # a no-op: shutdown withdrew it already
    assert ref.state == "unregistered"
    with pytest.raises(iii.WorkerShutdownError):
        ref.wait_accepted(0)
    worker.shutdown()  # idempotent
    await worker.shutdown_async()


def test_use_after_shutdown_on_threads(iii_engine):
    worker = iii.register_worker(iii_engine.url, opts(worker_name="late-threads"))
    ref = worker.register_function("late::mine", lambda d: d)
    worker.shutdown()
    anyio.run(check_refused, worker, ref)


@pytest.mark.parametrize("backend", BACKENDS)
def test_use_after_shutdown_on_a_loop(iii_engine, backend):
    async def main() -> None:
        async with iii.register_worker_async(
            iii_engine.url, opts(worker_name=f"late-{backend}")
        ) as worker:
            ref = worker.register_function("late::mine", lambda d: d)
        await check_refused(worker, ref)

    anyio.run(main, backend=backend)


@pytest.mark.parametrize("backend", BACKENDS)
def test_use_after_shutdown_of_a_bound_worker(iii_engine, backend):
    async def main() -> None:
        worker = iii.register_worker(iii_engine.url, opts(worker_name=f"late-bound-{backend}"))
        ref = worker.register_function("late::mine", lambda d: d)
        await worker.shutdown_async()
        await check_refused(worker, ref)

    anyio.run(main, backend=backend)


# -- bad arguments --------------------------------------------------------------------------

BAD_REQUESTS: list[tuple[Any, type[Exception]]] = [
    ({"function_id": None}, TypeError),
    (5, TypeError),
    ("math::add", TypeError),
    ({"function_id": 7}, TypeError),
    ({"function_id": ""}, ValueError),
    ({"function_id": "   "}, ValueError),
    ({}, TypeError),
    ({"function_id": "f", "unknown": 1}, TypeError),
    ({"function_id": "f", "timeout_ms": -1}, ValueError),
    ({"function_id": "f", "timeout_ms": 0}, ValueError),
    ({"function_id": "f", "timeout_ms": math.nan}, ValueError),
    ({"function_id": "f", "timeout_ms": math.inf}, ValueError),
    ({"function_id": "f", "timeout_ms": "100"}, TypeError),
    ({"function_id": "f", "timeout_ms": True}, TypeError),
    ({"function_id": "f", "action": "void"}, TypeError),
    ({"function_id": "f", "action": {"type": "enqueue"}}, TypeError),
    ({"function_id": "f", "action": {"type": "later"}}, TypeError),
    ({"function_id": "f", "action": iii.TriggerAction.Enqueue(queue="")}, ValueError),
    ({"function_id": "f", "action": iii.TriggerActionEnqueue(queue=None)}, TypeError),  # type: ignore[arg-type]
    ({"function_id": "f", "namespace": 3}, TypeError),
    # The official SDK's values are "auto" and "remote" (ValueError otherwise).
    ({"function_id": "f", "dispatch": "sideways"}, ValueError),
    ({"function_id": "f", "dispatch": ""}, ValueError),
    (iii.TriggerRequest(function_id="f", dispatch="local"), ValueError),  # type: ignore[arg-type]
]


def sent_calls(engine: Any) -> int:
    return len(engine.frames(type="invokefunction", direction="in"))


def test_bad_trigger_arguments_are_typed_and_nothing_is_sent(iii_engine):
    worker = iii.register_worker(iii_engine.url, opts(worker_name="bad-args"))
    try:
        worker.register_function("f", lambda d: "ok")
        iii_engine.wait_for_function("f")
        before = sent_calls(iii_engine)
        for request, kind in BAD_REQUESTS:
            with pytest.raises(kind):
                worker.trigger(request)

        async def main() -> None:
            for request, kind in BAD_REQUESTS:
                with pytest.raises(kind):
                    await worker.trigger_async(request)

        anyio.run(main)
        # The well-formed spellings work (dict actions too).
        assert worker.trigger({"function_id": "f", "timeout_ms": 5000}) == "ok"
        assert worker.trigger({"function_id": "f", "dispatch": "remote"}) == "ok"
        assert worker.trigger({"function_id": "f", "action": {"type": "void"}}) is None
        # The engine knows the "default" queue only (unless configured otherwise).
        receipt = worker.trigger(
            {"function_id": "f", "action": {"type": "enqueue", "queue": "default"}}
        )
        assert isinstance(receipt, iii.EnqueueResult)
        iii_engine.wait_for(lambda: sent_calls(iii_engine) >= before + 4)
        assert sent_calls(iii_engine) == before + 4
    finally:
        worker.shutdown()


def test_bad_registration_arguments(iii_engine):
    worker = iii.register_worker(iii_engine.url, opts(worker_name="bad-regs"))
    try:
        for bad, kind in [(None, TypeError), (3, TypeError), ("", ValueError)]:
            with pytest.raises(kind):
                worker.register_function(bad, lambda d: d)  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            worker.register_function("ok::name", "not callable")  # type: ignore[arg-type]
        for bad_trigger, kind in [
            ({"type": "t", "function_id": None}, TypeError),
            ({"type": "", "function_id": "f"}, ValueError),
            ({"type": "t"}, TypeError),
            ({"type": "t", "function_id": "f", "colour": 1}, TypeError),
            (42, TypeError),
        ]:
            with pytest.raises(kind):
                worker.register_trigger(bad_trigger)  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            worker.register_trigger_type({"id": None}, iii.TriggerHandler())
        with pytest.raises(TypeError):
            worker.unregister_trigger_type(12)  # type: ignore[arg-type]
        assert iii_engine.frames(type="registertrigger", direction="in") == []
    finally:
        worker.shutdown()


@pytest.mark.parametrize(
    "options",
    [
        {"invocation_timeout_ms": 0},
        {"invocation_timeout_ms": -5},
        {"register_timeout_ms": 0},
        {"max_concurrent_handlers": 0},
        {"shutdown_grace_ms": -1},
    ],
)
def test_bad_options_are_refused_before_connecting(options):
    with pytest.raises(ValueError, match=next(iter(options))):
        iii.register_worker("ws://127.0.0.1:1", opts(**options))


@pytest.mark.parametrize(
    ("otel", "message"),
    [
        ({"enabled": False, "service_nam": "svc"}, r"unknown keys \['service_nam'\]"),
        (True, "must be an OtelConfig or a dict"),
    ],
)
def test_bad_otel_options_are_refused_before_connecting(otel, message):
    # The official SDK reads a dict as OtelConfig(**otel): a misspelt key is a TypeError.
    with pytest.raises(TypeError, match=message):
        iii.register_worker("ws://127.0.0.1:1", opts(otel=otel))


def test_otel_options_of_every_official_field_are_accepted(iii_engine):
    fields: dict[str, Any] = {a.name: a.default for a in attrs.fields(iii.OtelConfig)}
    for otel in (fields, iii.OtelConfig(**fields), {"enabled": False}):
        iii.register_worker(iii_engine.url, opts(worker_name="otel", otel=otel)).shutdown()


def test_bad_address():
    with pytest.raises(TypeError):
        iii.register_worker(49134)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="ws://"):
        iii.register_worker("http://127.0.0.1:49134")
