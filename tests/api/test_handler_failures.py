"""Every invocation gets one answer whatever its handler does, and the worker
survives it; a crash of the SDK's own I/O fails pending calls at once and
leaves the worker visibly failed."""

from __future__ import annotations

import asyncio
import logging
import sys
import threading
from collections.abc import Callable
from typing import Any

import anyio
import attrs
import pytest
import trio

import iii
import iii_protocol

from .test_sync_api import FAST

BACKENDS = ["asyncio", "trio"]


def opts(**kw: Any) -> iii.InitOptions:
    return attrs.evolve(FAST, **kw)


def _raise(exc: BaseException) -> Any:
    raise exc


# name -> (sync handler, what the answer must name)
SYNC_ENDINGS: dict[str, tuple[Callable[[Any], Any], str]] = {
    "sys_exit": (lambda d: sys.exit(4), "SystemExit: 4"),
    "keyboard_interrupt": (lambda d: _raise(KeyboardInterrupt()), "KeyboardInterrupt"),
    "generator_exit": (lambda d: _raise(GeneratorExit()), "GeneratorExit"),
    "base_exception": (lambda d: _raise(BaseException("odd")), "BaseException: odd"),
}


def async_endings(library: str) -> dict[str, tuple[Callable[[Any], Any], str]]:
    def ending(exc: BaseException) -> Callable[[Any], Any]:
        async def handler(data: Any) -> Any:
            await (trio.sleep(0) if library == "trio" else asyncio.sleep(0))
            raise exc

        return handler

    async def exits(data: Any) -> Any:
        sys.exit(4)

    endings = {
        "sys_exit": (exits, "SystemExit: 4"),
        "keyboard_interrupt": (ending(KeyboardInterrupt()), "KeyboardInterrupt"),
        "generator_exit": (ending(GeneratorExit()), "GeneratorExit"),
    }
    if library == "asyncio":  # not the worker's cancellation: the handler's own
        endings["cancelled"] = (ending(asyncio.CancelledError()), "CancelledError")
    return endings


def check_answer(exc: iii.IIIInvocationError, named: str) -> None:
    assert exc.code == "invocation_failed"
    assert exc.message == named
    assert named.split(":")[0] in (exc.stacktrace or "")


def test_sync_handlers_on_threads(iii_engine):
    worker = iii.register_worker(iii_engine.url, opts(worker_name="bad-sync"))
    try:
        for name, (handler, _) in SYNC_ENDINGS.items():
            worker.register_function(f"bad::{name}", handler)
        worker.register_function("bad::ok", lambda d: "still here")
        for name, (_, named) in SYNC_ENDINGS.items():
            with pytest.raises(iii.IIIInvocationError) as info:
                worker.trigger({"function_id": f"bad::{name}", "payload": None})
            check_answer(info.value, named)
        assert worker.trigger({"function_id": "bad::ok", "payload": None}) == "still here"
        assert worker.get_connection_state() == "connected"
    finally:
        worker.shutdown()


@pytest.mark.parametrize("library", BACKENDS)
def test_async_handlers_on_threads(iii_engine, library):
    """``register_worker`` made outside a loop (private loop) or inside one (bound)."""
    endings = async_endings(library)

    async def main() -> None:
        worker = iii.register_worker(iii_engine.url, opts(worker_name=f"bad-{library}"))
        for name, (handler, _) in endings.items():
            worker.register_function(f"bad::{name}", handler)
        worker.register_function("bad::ok", lambda d: "still here")
        for name, (_, named) in endings.items():
            with pytest.raises(iii.IIIInvocationError) as info:
                await worker.trigger_async({"function_id": f"bad::{name}", "payload": None})
            check_answer(info.value, named)
        assert await worker.trigger_async({"function_id": "bad::ok", "payload": None}) == (
            "still here"
        )
        await worker.shutdown_async()

    anyio.run(main, backend=library)


def test_async_handlers_on_the_private_loop(iii_engine):
    worker = iii.register_worker(iii_engine.url, opts(worker_name="bad-private"))
    try:
        for name, (handler, _) in async_endings("asyncio").items():
            worker.register_function(f"bad::{name}", handler)
        worker.register_function("bad::ok", lambda d: "still here")
        for name, (_, named) in async_endings("asyncio").items():
            with pytest.raises(iii.IIIInvocationError) as info:
                worker.trigger({"function_id": f"bad::{name}", "payload": None})
            check_answer(info.value, named)
        assert worker.trigger({"function_id": "bad::ok", "payload": None}) == "still here"
    finally:
        worker.shutdown()


@pytest.mark.parametrize("library", BACKENDS)
def test_handlers_on_the_callers_loop(iii_engine, library):
    endings = {**async_endings(library), **{f"sync_{k}": v for k, v in SYNC_ENDINGS.items()}}

    async def main() -> None:
        async with iii.register_worker_async(
            iii_engine.url, opts(worker_name=f"bad-native-{library}")
        ) as worker:
            for name, (handler, _) in endings.items():
                worker.register_function(f"bad::{name}", handler)
            worker.register_function("bad::ok", lambda d: "still here")
            for name, (_, named) in endings.items():
                with pytest.raises(iii.IIIInvocationError) as info:
                    await worker.trigger_async({"function_id": f"bad::{name}", "payload": None})
                check_answer(info.value, named)
            assert await worker.trigger_async({"function_id": "bad::ok", "payload": None}) == (
                "still here"
            )

    anyio.run(main, backend=library)


# -- a crash of the SDK itself ---------------------------------------------------------


def poison_reads(monkeypatch: pytest.MonkeyPatch, marker: bytes) -> None:
    """Make the core raise (a bug) on the next read that contains ``marker``."""
    real = iii_protocol.Connection.receive_data

    def receive_data(self: iii_protocol.Connection, data: bytes, now: float) -> None:
        if marker in data:
            raise RuntimeError("injected bug in the core")
        real(self, data, now)

    monkeypatch.setattr(iii_protocol.Connection, "receive_data", receive_data)


def test_a_crashed_io_thread_fails_pending_calls_and_the_worker(iii_engine, monkeypatch, caplog):
    worker = iii.register_worker(iii_engine.url, opts(worker_name="crash-thread"))
    states: list[str] = []
    worker.add_connection_state_listener(states.append)
    release = threading.Event()
    worker.register_function("crash::hold", lambda d: release.wait(30))
    iii_engine.wait_for_function("crash::hold")
    outcome: list[BaseException] = []

    def call() -> None:
        try:
            worker.trigger({"function_id": "crash::hold", "payload": None})
        except BaseException as exc:
            outcome.append(exc)

    t = threading.Thread(target=call)
    t.start()
    iii_engine.wait_for_frame(
        "invokefunction", direction="out", where=lambda f: f.get("function_id") == "crash::hold"
    )
    poison_reads(monkeypatch, b"crash::poison")
    iii_engine.send_frame(
        worker.worker_id, {"type": "invokefunction", "function_id": "crash::poison", "data": 1}
    )
    t.join(10)
    release.set()
    assert len(outcome) == 1 and isinstance(outcome[0], iii.IIIInvocationError)
    assert outcome[0].code == "INTERNAL_ERROR"
    assert worker.get_connection_state() == "failed" and states[-1] == "failed"
    with pytest.raises(iii.IIIInvocationError) as info:
        worker.trigger({"function_id": "crash::hold", "payload": None})
    assert info.value.code == "INTERNAL_ERROR"
    crashes = [r for r in caplog.records if "crashed" in r.getMessage()]
    assert len(crashes) == 1 and crashes[0].exc_info is not None
    worker.shutdown()


@pytest.mark.parametrize("library", BACKENDS)
def test_a_crashed_transport_task_fails_pending_calls(iii_engine, monkeypatch, caplog, library):
    async def main() -> None:
        async with iii.register_worker_async(
            iii_engine.url, opts(worker_name=f"crash-{library}")
        ) as worker:
            gate = anyio.Event()

            async def hold(data: Any) -> None:
                await gate.wait()

            worker.register_function("crash::hold", hold)
            await anyio.to_thread.run_sync(iii_engine.wait_for_function, "crash::hold")
            outcome: list[BaseException] = []

            async def call() -> None:
                try:
                    await worker.trigger_async({"function_id": "crash::hold", "payload": None})
                except BaseException as exc:
                    outcome.append(exc)

            async with anyio.create_task_group() as tg:
                tg.start_soon(call)
                await anyio.to_thread.run_sync(
                    lambda: iii_engine.wait_for_frame(
                        "invokefunction",
                        direction="out",
                        where=lambda f: f.get("function_id") == "crash::hold",
                    )
                )
                poison_reads(monkeypatch, b"crash::poison")
                await anyio.to_thread.run_sync(
                    lambda: iii_engine.send_frame(
                        worker.worker_id,
                        {"type": "invokefunction", "function_id": "crash::poison", "data": 1},
                    )
                )
            gate.set()
            assert len(outcome) == 1 and isinstance(outcome[0], iii.IIIInvocationError)
            assert outcome[0].code == "INTERNAL_ERROR"
            assert worker.get_connection_state() == "failed"

    with caplog.at_level(logging.ERROR, logger="iii"):
        anyio.run(main, backend=library)
    crashes = [r for r in caplog.records if "crashed" in r.getMessage()]
    assert len(crashes) == 1 and crashes[0].exc_info is not None
