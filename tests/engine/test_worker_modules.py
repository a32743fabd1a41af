"""The engine interface (``iii.testing._api``): a worker module registers functions
and trigger types, fires bindings, sleeps on the engine clock, serves its own
listener, and is switched and configured through the engine's options."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, Optional, Union

import anyio
import attrs
import pytest

from iii.testing import Engine, EngineThread, EngineWorker, ManualClock
from iii.testing.__main__ import _module_settings, _parser, main
from iii.testing._api import (
    JSON,
    Binding,
    BuiltinError,
    Call,
    ErrorDict,
    RouteSocket,
    Worker,
    error_body,
    integer,
    seconds,
    setting,
)

from .conftest import own_engine
from .wsclient import Peer, RawClient, Rejected, new_id, settle

pytestmark = pytest.mark.anyio


@attrs.frozen
class TickerConfig:
    period: float = setting(1.0, seconds(positive=True), "seconds between ticks")
    limit: int = setting(100, integer(1), "ticks at most")


class Ticker(EngineWorker):
    """The example of ``iii.testing._api``'s docstring, with bookkeeping for tests."""

    name = "ticker"
    switch = "ticker"
    worker_name = "iii-ticker"
    option_prefix = "ticker_"
    config_class = TickerConfig
    config: TickerConfig

    def install(self) -> None:
        self.ticks = 0
        self.registered: list[str] = []
        self.unregistered: list[str] = []
        self.seen: list[str] = []
        self.function("ticker::count", self.count, "Ticks so far")
        self.function("ticker::fail", self.fail, "Always fails")
        self.function("ticker::slow", self.slow, "Answers after one tick")
        self.trigger_type(
            "tick",
            "Fires every period",
            on_register=self.check,
            on_unregister=lambda b: self.unregistered.append(b.id),
            configuration_schema={"type": "object"},
        )

    def count(self, call: Call) -> JSON:
        return {"ticks": self.ticks, "caller": call.caller.worker_id if call.caller else None}

    def fail(self, call: Call) -> JSON:
        raise BuiltinError("ticker_failed", "no luck")

    async def slow(self, call: Call) -> JSON:
        await self.host.clock.sleep(self.config.period)
        return "slow done"

    def check(self, binding: Binding) -> Optional[ErrorDict]:
        if isinstance(binding.config, dict) and binding.config.get("refuse"):
            return error_body("bad_config", "refused by the ticker")
        self.registered.append(binding.id)
        return None

    async def run(self) -> None:
        while self.ticks < self.config.limit:
            await self.host.clock.sleep(self.config.period)
            self.ticks += 1
            self.host.fire_all("tick", {"n": self.ticks})

    def worker_updated(self, worker: Worker) -> None:
        if worker.name is not None:
            self.seen.append(worker.name)


class Echo(EngineWorker):
    """A module with a listener of its own: echoes one line per connection."""

    name = "echo"
    worker_name = "iii-echo"

    async def run(self) -> None:
        listener = await self.host.open_listener("echo", scheme="tcp")
        await listener.serve(self._serve)

    async def _serve(self, stream: anyio.abc.SocketStream) -> None:
        async with stream:
            data = await stream.receive()
            await stream.send(b"echo " + data)


class Shout(EngineWorker):
    """A module with a WebSocket listener of its own: answers each text upper-cased."""

    name = "shout"

    async def run(self) -> None:
        await self.host.open_ws_listener("shout", self._route)

    def _route(self, path: str, query: Mapping[str, list[str]]) -> Any:
        if path == "/forbidden":
            return 403, b"no\n"

        async def serve(sock: RouteSocket) -> None:
            def on_message(kind: str, payload: Union[str, bytes]) -> None:
                if isinstance(payload, str):
                    sock.send_message("text", payload.upper())

            await sock.read_loop(on_message)

        return f"shout:{path}", serve


def ticker(engine: Engine) -> Ticker:
    module = engine.module("ticker")
    assert isinstance(module, Ticker)
    return module


async def test_a_module_provides_functions_and_a_trigger_type_on_the_engine_clock():
    clock = ManualClock(start=1_700_000_000.0)
    async with own_engine(namespace_grace=0.3, workers=[Ticker], clock=clock) as engine:
        module = ticker(engine)
        provider = await Peer.join(engine.url, "ticked")
        await provider.register("job::on_tick")
        await settle(provider)
        # Functions: a worker calls them like any other; the caller is known.
        out = await provider.call("ticker::count", {})
        assert out["result"] == {"ticks": 0, "caller": provider.worker_id}
        failed = await provider.call("ticker::fail", {})
        assert failed["error"] == {"code": "ticker_failed", "message": "no luck"}
        assert module.seen == ["ticked"]
        # A binding reaches the module's on_register, and is acknowledged.
        bid = new_id()
        await provider.send(
            {
                "type": "registertrigger",
                "id": bid,
                "trigger_type": "tick",
                "function_id": "job::on_tick",
                "config": {},
                "metadata": {"m": 1},
            }
        )
        await engine.wait_for_binding(bid, acked=True)
        assert module.registered == [bid]
        assert engine.bindings()[0]["provider"] == "engine"
        # Time moves only when the test says so: one period, one tick, one call.
        await clock.wait_for_sleepers(1, within=1.0)
        assert module.ticks == 0
        assert clock.advance(1.0) == 1
        frame = await provider.recv_type("invokefunction")
        assert frame["function_id"] == "job::on_tick"
        assert frame["data"] == {"n": 1}
        assert frame["metadata"] == {"m": 1}
        await provider.result(frame["invocation_id"], None)
        # An async function sleeps on the clock too.
        inv = await provider.invoke("ticker::slow", {})
        await clock.wait_for_sleepers(2, within=1.0)  # the ticker and ``slow``
        clock.advance(1.0)
        while True:
            got = await provider.recv()
            if got["type"] == "invocationresult" and got["invocation_id"] == inv:
                break
            if got["type"] == "invokefunction":  # the second tick
                await provider.result(got["invocation_id"], None)
        assert got["result"] == "slow done"
        # Removing the binding tells the module.
        await provider.send({"type": "unregistertrigger", "id": bid, "trigger_type": "tick"})
        await settle(provider)
        assert module.unregistered == [bid]
        # Engine timestamps follow the engine clock.
        assert engine.workers()[0]["connected_at_ms"] == 1_700_000_000_000


async def test_a_module_refuses_a_binding():
    async with own_engine(namespace_grace=0.3, workers=[Ticker]) as engine:
        user = await Peer.join(engine.url, "binder")
        bid = new_id()
        await user.send(
            {
                "type": "registertrigger",
                "id": bid,
                "trigger_type": "tick",
                "function_id": "job::x",
                "config": {"refuse": True},
            }
        )
        refusal = await user.recv_type("triggerregistrationresult")
        assert refusal["id"] == bid
        assert refusal["error"] == {"code": "bad_config", "message": "refused by the ticker"}
        assert engine.bindings()[0]["parked"] is True
        # Through engine::register_trigger the refusal is the call's error.
        out = await user.call(
            "engine::register_trigger",
            {"trigger_type": "tick", "function_id": "job::x", "config": {"refuse": 1}},
        )
        assert out["error"]["code"] == "bad_config"


async def test_introspection_shows_the_module():
    async with own_engine(namespace_grace=0.3, workers=[Ticker]) as engine:
        peer = await Peer.join(engine.url, "looker")
        listed = await peer.call("engine::functions::list", {"worker": "iii-ticker"})
        ids = [f["function_id"] for f in listed["result"]["functions"]]
        assert ids == ["ticker::count", "ticker::fail", "ticker::slow"]
        types = await peer.call("engine::triggers::list", {"search": "tick"})
        row = types["result"]["triggers"][0]
        assert (row["id"], row["worker_name"]) == ("tick", "iii-ticker")
        info = await peer.call("engine::triggers::info", {"id": "tick"})
        assert info["result"]["configuration_schema"] == {"type": "object"}
        workers = await peer.call("engine::workers::list", {"search": "iii-ticker"})
        assert [w["name"] for w in workers["result"]["workers"]] == ["iii-ticker"]


async def test_module_options_and_switch():
    async with own_engine(
        namespace_grace=0.3, workers=[Ticker], ticker_period=0.25, ticker_limit=3
    ) as engine:
        assert ticker(engine).config == TickerConfig(period=0.25, limit=3)
    async with own_engine(namespace_grace=0.3, workers=[Ticker], ticker=False) as engine:
        with pytest.raises(KeyError, match="ticker"):
            engine.module("ticker")
        peer = await Peer.join(engine.url, "p")
        out = await peer.call("ticker::count", {})
        assert out["error"]["code"] == "function_not_found"
    with pytest.raises(ValueError, match="option 'ticker_limit'"):
        async with own_engine(workers=[Ticker], ticker_limit=0):
            pass
    with pytest.raises(TypeError, match="unknown reference engine option 'ticker_period'"):
        async with own_engine(ticker_period=1.0):  # the module is not added
            pass


async def test_a_module_listener_keeps_its_port_across_restarts():
    async with own_engine(namespace_grace=0.3, workers=[Echo]) as engine:

        async def ask() -> bytes:
            url = engine.urls["echo"]
            host, port = url.removeprefix("tcp://").rsplit(":", 1)
            async with await anyio.connect_tcp(host, int(port)) as stream:
                await stream.send(b"hi")
                return await stream.receive()

        await engine.wait_for(lambda: "echo" in engine.urls)
        first = engine.urls["echo"]
        assert await ask() == b"echo hi"
        await engine.restart()
        await engine.wait_for(lambda: engine.urls["echo"] == first)
        with anyio.fail_after(10):
            while True:  # the new run's listener opens right after the restart
                try:
                    assert await ask() == b"echo hi"
                    break
                except OSError:
                    await anyio.sleep(0.01)
        assert engine.urls["echo"] == first


async def test_a_module_serves_its_own_websocket_listener():
    async with own_engine(namespace_grace=0.3, workers=[Shout]) as engine:
        await engine.wait_for(lambda: "shout" in engine.urls)
        url = engine.urls["shout"]
        assert url.startswith("ws://127.0.0.1:") and url != engine.url
        client = await RawClient.connect(url, "/room/1?x=1")
        await client.send("hello")
        kind, payload = await client.next_event()
        assert (kind, payload) == ("text", "HELLO")
        # The engine's transcript sees it like any other socket.
        entries = [e for e in engine.transcript() if e["conn"] == "shout:/room/1"]
        assert [(e["dir"], e["kind"]) for e in entries][:3] == [
            ("in", "open"),
            ("in", "text"),
            ("out", "text"),
        ]
        with pytest.raises(Rejected) as info:
            await RawClient.connect(url, "/forbidden")
        assert info.value.status == 403
        # Not on the main listener: there the path is unknown.
        with pytest.raises(Rejected):
            await RawClient.connect(engine.url, "/room/1")


async def test_the_queue_retries_on_the_engine_clock():
    clock = ManualClock()
    async with own_engine(
        namespace_grace=0.3, clock=clock, queue_backoff=5.0, queue_max_attempts=2
    ) as engine:
        handler = await Peer.join(engine.url, "flaky")
        await handler.register("job::flaky")
        caller = await Peer.join(engine.url, "enqueuer")
        await settle(handler)
        out = await caller.call(
            "job::flaky", {"n": 1}, action={"type": "enqueue", "queue": "default"}
        )
        assert "messageReceiptId" in out["result"]
        first = await handler.recv_type("invokefunction")
        error = {"code": "boom", "message": "try again"}
        await handler.result(first["invocation_id"], None, error=error)
        # The retry sleeps on the clock: nothing is redelivered until it moves.
        await clock.wait_for_sleepers(1, within=5.0)
        await handler.expect_silence(0.05)
        clock.advance(5.0)
        second = await handler.recv_type("invokefunction")
        assert second["data"] == {"n": 1}
        await handler.result(second["invocation_id"], None, error=error)
        await engine.wait_for(lambda: engine.queue_stats()["dead_letters"] == 1)


async def test_http_functions_can_be_switched_off(caplog):
    caplog.set_level(logging.ERROR, "iii.testing")
    async with own_engine(namespace_grace=0.3, http_functions=False) as engine:
        peer = await Peer.join(engine.url, "http-owner")
        await peer.register("ext::fn", invocation={"url": "http://127.0.0.1:9/"})
        await peer.register("local::fn")
        await settle(peer)
        assert [f["function_id"] for f in engine.functions()] == ["local::fn"]
        assert any("http_functions module is off" in r.getMessage() for r in caplog.records)


def test_engine_thread_exposes_modules_and_the_clock():
    clock = ManualClock()
    with EngineThread(workers=[Ticker], clock=clock, ticker_period=2.0) as engine:
        module = engine.module("ticker")
        assert isinstance(module, Ticker)
        engine.call(lambda: clock.wait_for_sleepers(1, within=2.0))
        assert engine.advance_clock(2.0) == 1
        engine.wait_for(lambda: module.ticks == 1)
        # The module opened no listener (the standard ones may have theirs).
        assert engine.urls["main"] == engine.url and "ticker" not in engine.urls
    with EngineThread() as plain, pytest.raises(RuntimeError, match="ManualClock"):
        plain.advance_clock(1.0)


def test_cli_flags_come_from_the_modules_options(capsys):
    args = _parser().parse_args(
        [
            "--no-queue",
            "--no-http-functions",
            "--channel-ttl",
            "2.5",
            "--functions-poll-interval",
            "1",
        ]
    )
    assert _module_settings(args) == {
        "queue": False,
        "http_functions": False,
        "channel_ttl": 2.5,
        "functions_poll_interval": 1.0,
    }
    assert _module_settings(_parser().parse_args([])) == {}
    with pytest.raises(SystemExit):
        main(["--queue-max-attempts", "0"])
    assert "argument --queue-max-attempts: expected an int 1 or more" in capsys.readouterr().err


@pytest.mark.iii_engine(clock="manual", queue_backoff=2.0)
def test_the_fixture_takes_a_manual_clock(iii_engine):
    assert isinstance(iii_engine.clock, ManualClock)
    assert iii_engine.advance_clock(0.5) == 0
    assert iii_engine.call(lambda: iii_engine.clock.monotonic()) == 0.5
    assert iii_engine.module("queue").config.backoff == 2.0
