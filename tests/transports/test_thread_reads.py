"""The thread adapter's ``read_until``: a caller waiting for its answer reads
the socket itself while nobody else does, dispatches everything that arrives
meanwhile, keeps the timers running, and gives the socket back to the I/O
thread when it is done."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, Optional

from wsproto import events as wse
from wsproto.connection import ConnectionState as WSState

from iii.testing import EngineThread
from iii_protocol import events as ev
from iii_transports.blocking import ThreadTransport

from . import fake_engine as fe
from .conftest import make_config
from .drivers import ThreadDriver
from .test_conformance import echo, serve_echo


class ThreadsSeen(ThreadDriver):
    """Records the name of the thread each event was dispatched on."""

    def __init__(self) -> None:
        super().__init__()
        self.threads: list[tuple[str, ev.Event]] = []

    def _on_event(self, event: ev.Event) -> None:
        self.threads.append((threading.current_thread().name, event))
        super()._on_event(event)

    def dispatched_on(self, kind: type, where: Any = lambda e: True) -> list[str]:
        return [name for name, e in self.threads if isinstance(e, kind) and where(e)]

    @property
    def t(self) -> ThreadTransport:
        assert self.transport is not None
        return self.transport


def lead(
    driver: ThreadsSeen, done: Callable[[], bool], on_lead: Optional[Callable[[], object]] = None
) -> None:
    """Read on this thread until ``done()``: ``read_until`` retried while the
    I/O thread has the socket (it returns at once then).  ``on_lead`` runs
    once, when this thread first holds the socket."""
    leading: list[bool] = []

    def check() -> bool:
        if not leading:
            leading.append(True)
            if on_lead is not None:
                on_lead()
        return done()

    def read() -> bool:
        driver.t.read_until(check, 30.0)
        return bool(leading)

    driver.wait_until(read)


def call_and_read(driver: ThreadsSeen, engine: EngineThread, function_id: str, data: Any) -> str:
    """Call ``function_id`` and read for its answer on this thread.

    The engine keeps the answer until this thread reads the socket: were it to
    arrive sooner, the I/O thread could read it (a loaded machine can hold a
    caller up between its send and its read)."""
    held = engine.withhold_results(function_id, count=1)
    invocation_id = driver.invoke(function_id, data)
    driver.wait_until(lambda: held.held)
    lead(
        driver,
        lambda: bool(driver.outcomes_for(invocation_id)),
        on_lead=lambda: engine.release(held),
    )
    return invocation_id


def test_a_waiting_caller_reads_its_answer_then_hands_the_socket_back(
    iii_engine: EngineThread,
) -> None:
    a, b = ThreadsSeen(), ThreadDriver()
    try:
        b.start(make_config(iii_engine.url, announce={"name": "reads-b"}))
        b.wait_connected()
        b.register("b::echo", echo)
        iii_engine.wait_for_function("b::echo")
        a.start(make_config(iii_engine.url, announce={"name": "reads-a"}, ping_interval=3600.0))
        serve_echo(a, iii_engine)
        ids = []
        for i in range(5):
            invocation_id = call_and_read(a, iii_engine, "b::echo", {"i": i})
            ids.append(invocation_id)
            assert a.outcomes_for(invocation_id)[0].result == {"i": i}  # type: ignore[union-attr]
        me = threading.current_thread().name
        assert a.dispatched_on(ev.InvocationSucceeded, lambda e: e.invocation_id in ids) == [me] * 5

        # Nobody waits now: what the engine sends is read by the I/O thread.
        assert b.call("echo", {"from": "b"}).result == {"from": "b"}  # type: ignore[union-attr]
        assert a.dispatched_on(ev.InvocationRequested) == ["iii-transport"]
    finally:
        a.close()
        b.close()


def test_invocations_arriving_while_a_caller_reads_are_dispatched(
    iii_engine: EngineThread,
) -> None:
    a, b = ThreadsSeen(), ThreadDriver()
    try:
        b.start(make_config(iii_engine.url, announce={"name": "reads-slow"}))
        b.wait_connected()
        b.register("b::slow", echo)
        iii_engine.wait_for_function("b::slow")
        held = iii_engine.withhold_results("b::slow")
        a.start(make_config(iii_engine.url, announce={"name": "reads-self"}, ping_interval=3600.0))
        connected = serve_echo(a, iii_engine)
        invocation_id = a.invoke("b::slow", {"answer": "withheld"})
        a.wait_until(lambda: held.held)  # the engine has the answer and keeps it
        leading = threading.Event()
        served: list[str] = []

        def done() -> bool:
            if not leading.is_set():  # first asked once this thread reads
                leading.set()
                # The engine invokes this worker while its caller reads.
                iii_engine.send_frame(
                    connected.worker_id,
                    {
                        "type": "invokefunction",
                        "invocation_id": "in-1",
                        "function_id": "echo",
                        "data": {"in": 1},
                    },
                )
            served[:] = a.dispatched_on(ev.InvocationRequested)
            if served:
                iii_engine.release(held)  # on the engine's own thread
            return bool(a.outcomes_for(invocation_id))

        a.t.read_until(done, 10.0)
        assert leading.is_set()
        me = threading.current_thread().name
        assert served == [me]  # dispatched (and answered) by the reading caller
        outcome = a.outcome(invocation_id)
        assert isinstance(outcome, ev.InvocationSucceeded)
        assert outcome.result == {"answer": "withheld"}
        iii_engine.wait_for_frame(
            "invocationresult",
            direction="in",
            where=lambda f: f.get("invocation_id") == "in-1" and f.get("result") == {"in": 1},
        )
    finally:
        a.close()
        b.close()


def silent_but_alive(peer: fe.Peer) -> None:
    """Greet, answer pings, never answer a call."""
    peer.register()
    while True:
        event = peer._next_event()
        if isinstance(event, wse.Ping):
            peer.pings += 1
            if peer.ws.state is WSState.OPEN:  # not after the client's Close
                peer.send(peer.ws.send(event.response()))
        elif isinstance(event, wse.TextMessage):
            peer.messages.append(event.data)
        elif isinstance(event, wse.CloseConnection):
            peer.drain()
            return


def test_one_reader_at_a_time_and_the_timers_keep_running() -> None:
    with fe.FakeEngine([silent_but_alive]) as fake:
        a = ThreadsSeen()
        try:
            a.start(make_config(fake.url(), ping_interval=0.05, idle_timeout=2.0))
            a.wait_connected()
            peer = fake.peers[0]
            leading = threading.Event()
            finished: list[bool] = []
            pings_at_start: list[int] = []
            invocation_id = a.invoke("nobody::answers", None, timeout=30.0)

            def done() -> bool:
                if not leading.is_set():
                    pings_at_start.append(peer.pings)
                    leading.set()
                # Keep-alive goes on (and its pongs are read) while a caller reads.
                return peer.pings >= pings_at_start[0] + 3

            def run_leader() -> None:
                lead(a, done)
                finished.append(done())

            leader = threading.Thread(target=run_leader, name="leader")
            leader.start()
            assert leading.wait(10)
            # Another waiting thread does not read while one does: it returns at
            # once (were it to read, it would wait out its 30 s for nothing).
            a.t.read_until(lambda: False, 30.0)
            leader.join(30)
            assert finished == [True]
            assert a.state.value == "connected"
            assert not a.outcomes_for(invocation_id)

            # A call's own timeout ends a caller's read (not its 30 s limit).
            timed = a.invoke("nobody::answers", None, timeout=0.3)
            lead(a, lambda: bool(a.outcomes_for(timed)))
            outcome = a.outcome(timed, timeout=0.0)  # there when the read ended
            assert isinstance(outcome, ev.InvocationFailed) and outcome.error.code == "TIMEOUT"
        finally:
            a.close()


def test_a_caller_reading_when_the_worker_closes_gets_its_outcome(
    iii_engine: EngineThread,
) -> None:
    a = ThreadsSeen()
    a.start(make_config(iii_engine.url, announce={"name": "reads-close"}, ping_interval=3600.0))
    a.wait_connected()
    a.register("hold", echo)
    iii_engine.wait_for_function("hold")
    invocation_id = a.invoke("missing::never-registered-on-time", None, timeout=30.0)
    leading = threading.Event()

    def done() -> bool:
        leading.set()
        return bool(a.outcomes_for(invocation_id))

    leader = threading.Thread(target=lambda: lead(a, done), name="leader")
    leader.start()
    assert leading.wait(10)
    a.close()
    leader.join(10)
    assert not leader.is_alive()
    assert a.outcome(invocation_id).invocation_id == invocation_id
