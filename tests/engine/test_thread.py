"""``EngineThread``: the engine on a background thread for synchronous tests."""

from __future__ import annotations

import threading

import anyio
import pytest
import trio

from iii.testing import EngineThread

from .wsclient import OPEN_CLIENTS, Peer, settle


async def _close_clients() -> None:
    while OPEN_CLIENTS:
        await OPEN_CLIENTS.pop().stream.aclose()


def run(fn, *args, backend="asyncio"):
    """Drive raw clients on a loop of their own (the engine has another one)."""

    async def main():
        try:
            return await fn(*args)
        finally:
            await _close_clients()

    return anyio.run(main, backend=backend)


def test_engine_thread_serves_and_exposes_controls():
    with EngineThread(namespace_grace=0.2) as eng:
        assert eng.url.startswith("ws://127.0.0.1:")
        assert eng.port == int(eng.url.rsplit(":", 1)[1])
        assert eng.rbac_url is None
        assert eng.engine.running

        async def scenario():
            provider = await Peer.join(eng.url, "sync-provider")
            await provider.register("sync::fn")
            caller = await Peer.join(eng.url, "sync-caller")
            await settle(provider, caller)
            # Controls are thread-safe: call them from a worker thread of this loop.
            found = await anyio.to_thread.run_sync(eng.wait_for_function, "sync::fn")
            assert found["worker_id"] == provider.worker_id
            inv = await caller.invoke("sync::fn", {"x": 1})
            frame = await provider.recv_type("invokefunction")
            assert frame["invocation_id"] == inv
            await provider.result(inv, 2)
            assert (await caller.recv_type("invocationresult"))["result"] == 2
            await anyio.to_thread.run_sync(eng.drop, caller.worker_id)
            assert await caller.wait_closed() is None
            return provider.worker_id

        provider_id = run(scenario)
        eng.wait_for(lambda: not eng.core.functions)  # run() closed the provider
        assert any(e["conn"] == provider_id for e in eng.transcript())
        assert '"workerregistered"' in eng.transcript_jsonl()
        assert eng.call(lambda: eng.engine.port) == eng.port
        stats = eng.stats()
        assert stats["generation"] == 1
    assert eng._thread is not None
    assert not eng._thread.is_alive()
    eng.stop()  # idempotent


def test_engine_thread_is_a_daemon_thread():
    eng = EngineThread().start()
    try:
        assert eng._thread is not None and eng._thread.daemon
        assert eng._thread is not threading.current_thread()
    finally:
        eng.stop()


def test_engine_thread_under_trio():
    with EngineThread(backend="trio") as eng:

        async def scenario():
            peer = await Peer.join(eng.url, "trio-side")
            await settle(peer)
            return peer.worker_id

        worker_id = run(scenario, backend="trio")
        assert any(e["conn"] == worker_id for e in eng.transcript())


def test_engine_thread_faults_and_restart():
    with EngineThread() as eng:
        rule = eng.withhold_results("x::fn")
        assert eng.release(rule) == 0
        eng.clear_faults()
        port = eng.port
        eng.restart()
        assert eng.port == port
        eng.stop_engine()
        eng.start_engine()

        async def scenario():
            peer = await Peer.join(eng.url, "after-restart")
            await settle(peer)
            return await anyio.to_thread.run_sync(eng.wait_for_worker, "after-restart")

        assert run(scenario)["name"] == "after-restart"


def test_engine_thread_reports_start_failures():
    with EngineThread() as first:
        with pytest.raises(RuntimeError) as info:
            EngineThread(port=first.port).start()
        assert isinstance(info.value.__cause__, BaseException)


def test_engine_thread_from_trio_run():
    """A trio test drives its clients with ``trio.run`` while the engine runs on a thread."""
    with EngineThread() as eng:

        async def main():
            peer = await Peer.join(eng.url, "t")
            await settle(peer)
            await trio.to_thread.run_sync(eng.wait_for_worker, "t")
            await _close_clients()

        trio.run(main)
