"""Differential test: ``iii_protocol.Connection`` workers against the reference
engine's core (``iii.testing.EngineCore``), wired together in memory.

Each worker process owns a ``Connection``; each of its sockets is a ``Link``:
the engine end of one WebSocket (a wsproto server) that is also the engine's
``Transport`` for that connection.  Bytes move both ways through the real
codecs and state machines; only the TCP sockets are simulated, so a socket can
also die without the engine noticing (a half-open ghost that ``reattach`` must
evict).  Hypothesis drives random interleavings of: start a worker (names
collide on purpose: the second of a name is refused), register / unregister a
function (ids collide on purpose: the second owner is refused), invoke (a
function that may or may not exist), answer an invocation (result or error),
drop a socket (the engine notices or not), let time pass (reconnects, timeouts,
keep-alive), close, connect again.

After every step, with every byte delivered:

* every call gets at most one outcome, only at the worker that made it, and a
  success carries exactly what the handler answered for that call; when the
  handler answers while both ends stay connected, the caller has it at once;
  a call from a connected caller without an outcome is running in a live
  handler (or waits for a half-open ghost): when the engine sees the handler
  go, the caller hears of it at once, and nothing is ever lost;
* each connection received every registration exactly once at its greeting
  (after a ``reattach`` first, when there was an earlier connection), plus one
  frame per registration made while it was connected;
* the engine's registry matches what each connected worker believes: the
  functions it owns are the worker's registrations minus those refused on this
  connection; no function, name or running invocation of a dead connection is
  left.

At the end every worker closes and every call has exactly one outcome.
"""

from __future__ import annotations

import logging
import uuid
from collections import Counter
from collections.abc import Iterator
from typing import Any, Optional

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule
from wsproto import ConnectionType, WSConnection
from wsproto import events as ws
from wsproto.connection import ConnectionState as WSState
from wsproto.frame_protocol import CloseReason

from iii.testing._engine import EngineCore, EngineOptions, Worker
from iii_protocol import (
    Config,
    Connection,
    ConnectionFailed,
    ConnectionState,
    ErrorBody,
    HeldCallsFull,
    JSONObject,
    ReconnectPolicy,
    RegisterFunction,
    decode_frame,
)
from iii_protocol import events as ev

NAMES = ("alpha", "beta", "gamma")  # drawn with repetition: a second "alpha" is refused
MAX_WORKERS = 3
FUNCTIONS = ("f1", "f2", "f3")
MISSING = "nobody::fn"
TIMEOUT = 10.0
_NO_SOCKET = (ConnectionState.RECONNECTING, ConnectionState.DISCONNECTED, ConnectionState.FAILED)


class Link:
    """The engine end of one socket, and the engine's ``Transport`` for it."""

    remote_ip = "10.0.0.9"

    def __init__(self, core: EngineCore, n: int) -> None:
        self.core = core
        self.n = n
        self.ws = WSConnection(ConnectionType.SERVER)
        self.worker: Optional[Worker] = None
        self.to_client = bytearray()
        self.alive = True  # the TCP connection exists
        self.aborted = False  # the engine dropped it (evict)
        self.parts: list[str] = []
        #: every frame the engine received on this socket, decoded
        self.frames: list[Any] = []
        self.greeted = False
        self.previous_worker_id: Optional[str] = None
        self.expected: Counter[str] = Counter()
        self.rejected: set[str] = set()

    # -- Transport ---------------------------------------------------------------

    def send(self, data: bytes, throttle: bool) -> None:
        if self.alive and self.ws.state is WSState.OPEN:
            self.to_client += self.ws.send(ws.Message(data=data.decode()))

    def close(self, code: Optional[int]) -> None:
        if self.alive and self.ws.state is WSState.OPEN:
            reason = CloseReason.NO_STATUS_RCVD if code is None else code
            self.to_client += self.ws.send(ws.CloseConnection(code=reason))

    def abort(self) -> None:
        self.aborted = True

    # -- bytes from the worker ---------------------------------------------------

    def receive(self, data: bytes) -> None:
        if not self.alive or not data:
            return
        self.ws.receive_data(data)
        for event in self.ws.events():
            if isinstance(event, ws.Request):
                self.to_client += self.ws.send(ws.AcceptConnection())
                self.worker = self.core.connect(self)
            elif isinstance(event, ws.TextMessage):
                self.parts.append(event.data)
                if event.message_finished:
                    text = "".join(self.parts)
                    self.parts.clear()
                    self.frames.append(decode_frame(text))
                    assert self.worker is not None
                    self.core.handle_text(self.worker, text)
            elif isinstance(event, ws.Ping):
                self.to_client += self.ws.send(event.response())
            elif isinstance(event, ws.CloseConnection):
                assert self.ws.state is WSState.REMOTE_CLOSING or self.ws.state is WSState.CLOSED, (
                    f"the worker wrote invalid WebSocket data: {event}"
                )
                if self.ws.state is WSState.REMOTE_CLOSING:
                    self.to_client += self.ws.send(event.response())
                self.gone(engine_notices=True)
            else:  # pragma: no cover - a worker sends nothing else
                raise AssertionError(f"unexpected {event!r}")

    def gone(self, *, engine_notices: bool) -> None:
        """The TCP connection is over; the engine's read loop ends (or not: half-open)."""
        self.alive = False
        if engine_notices and self.worker is not None:
            self.core.disconnect(self.worker)


class Call:
    def __init__(self, caller: Proc, function_id: str, token: str, link: Optional[Link]) -> None:
        self.caller = caller
        self.function_id = function_id
        self.token = token
        self.link = link  # the caller's socket when it was sent (None: held)
        self.outcomes: list[ev.Event] = []
        self.answered: Optional[tuple[Any, Optional[ErrorBody]]] = None
        #: the handler's socket it was delivered on, if it was
        self.handler_link: Optional[Link] = None


class Proc:
    """One worker process: a ``Connection`` and its current socket."""

    def __init__(self, machine: Differential, index: int, name: str) -> None:
        self.machine = machine
        self.index = index
        self.name = name
        self.conn = Connection(
            Config(
                url="ws://engine.test:49134/",
                announce={"name": name, "pid": index},
                invocation_timeout=TIMEOUT,
                reconnect=ReconnectPolicy(initial_delay=1.0, max_delay=2.0, jitter=0.0),
            ),
            random=lambda: 0.5,
            new_id=machine.new_id,
        )
        self.link: Optional[Link] = None
        self.links: list[Link] = []
        self.state = ConnectionState.DISCONNECTED
        self.failed = False
        #: invocations this worker was asked to run, not yet answered: (event, link)
        self.requests: list[tuple[ev.InvocationRequested, Optional[Link]]] = []


class Differential(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.core = EngineCore(EngineOptions(queue=False, namespace_grace=5.0))
        self.now = 0.0
        self.procs: list[Proc] = []
        self.calls: dict[str, Call] = {}
        self.n_ids = 0
        self.n_links = 0

    def new_id(self) -> str:
        self.n_ids += 1
        return str(uuid.UUID(int=self.n_ids))

    # -- moving bytes ------------------------------------------------------------

    def pump(self) -> None:
        for _ in range(1000):
            moved = False
            for proc in self.procs:
                moved |= self._handle_events(proc)
                out = proc.conn.data_to_send()
                if out:
                    assert proc.link is not None, f"{proc.name} wrote with no socket: {out!r}"
                    proc.link.receive(out)
                    moved = True
            for proc in self.procs:
                link = proc.link
                if link is None:
                    continue
                if link.to_client:
                    data = bytes(link.to_client)
                    link.to_client.clear()
                    proc.conn.receive_data(data, self.now)
                    moved = True
                if link.aborted and link.alive:
                    # evicted: the engine cut the TCP connection
                    link.gone(engine_notices=False)
                if not link.alive and proc.link is link:
                    proc.conn.transport_closed(self.now, "connection reset")
                    proc.link = None
                    moved = True
            if not moved:
                return
        raise AssertionError("the system never went quiet")

    def _handle_events(self, proc: Proc) -> bool:
        events = list(proc.conn.events())
        for event in events:
            assert not proc.failed, f"event after the session failed: {event!r}"
            if isinstance(event, ev.StateChanged):
                assert event.old is proc.state
                proc.state = event.new
                if event.new in _NO_SOCKET:
                    self._socket_closed_by_worker(proc)
            elif isinstance(event, ev.CloseTransport):
                self._socket_closed_by_worker(proc)
            elif isinstance(event, ev.OpenTransport):
                assert proc.link is None
                self.n_links += 1
                link = Link(self.core, self.n_links)
                link.previous_worker_id = proc.conn.worker_id
                proc.link = link
                proc.links.append(link)
                proc.conn.transport_opened(self.now)
            elif isinstance(event, ev.Connected):
                assert proc.link is not None
                proc.link.greeted = True
                proc.link.expected = Counter(list(proc.conn.functions))
            elif isinstance(event, ev.FunctionRejected):
                assert proc.link is not None
                assert event.rejection.function_id is not None
                proc.link.rejected.add(event.rejection.function_id)
            elif isinstance(event, ev.InvocationRequested):
                proc.requests.append((event, proc.link))
                delivered = self.calls.get(event.invocation_id or "")
                if delivered is not None:
                    delivered.handler_link = proc.link
            elif isinstance(event, (ev.InvocationSucceeded, ev.InvocationFailed)):
                call = self.calls.get(event.invocation_id)
                assert call is not None, f"an outcome for a call nobody made: {event!r}"
                assert call.caller is proc, "the outcome went to another worker"
                call.outcomes.append(event)
                assert len(call.outcomes) == 1, f"two outcomes: {call.outcomes}"
                if isinstance(event, ev.InvocationSucceeded):
                    assert event.result == {"echo": call.token}, (event, call.token)
                    assert call.answered is not None and call.answered[1] is None
                elif call.answered is not None and call.answered[1] is not None:
                    # The handler's error, or the caller's own loss or timeout.
                    assert event.error == call.answered[1] or event.error.code in (
                        "CONNECTION_LOST",
                        "TIMEOUT",
                        "SHUTDOWN",
                        "invocation_stopped",
                    ), event
            elif isinstance(event, ev.ConnectionFailedEvent):
                proc.failed = True
        return bool(events)

    def _socket_closed_by_worker(self, proc: Proc) -> None:
        link = proc.link
        if link is None:
            return
        link.receive(proc.conn.data_to_send())  # its Close frame, if any
        link.gone(engine_notices=True)
        proc.link = None

    def advance(self, to: float) -> None:
        for _ in range(1000):
            due = [t for p in self.procs if (t := p.conn.get_timer()) is not None and t <= to]
            if not due:
                break
            self.now = max(self.now, min(due))
            for proc in self.procs:
                proc.conn.handle_timer(self.now)
            self.pump()
        self.now = max(self.now, to)
        for proc in self.procs:
            proc.conn.handle_timer(self.now)
        self.pump()

    def proc(self, i: int) -> Proc:
        return self.procs[i % len(self.procs)]

    # -- rules -------------------------------------------------------------------

    @precondition(lambda self: len(self.procs) < MAX_WORKERS)
    @rule(name=st.sampled_from(NAMES), function_id=st.none() | st.sampled_from(FUNCTIONS))
    def start_worker(self, name: str, function_id: Optional[str]) -> None:
        proc = Proc(self, len(self.procs), name)
        self.procs.append(proc)
        if function_id is not None:
            proc.conn.register_function(RegisterFunction(id=function_id))
        proc.conn.connect(self.now)
        self.pump()

    @precondition(lambda self: self.procs)
    @rule(i=st.integers(0, 2), function_id=st.sampled_from(FUNCTIONS))
    def register(self, i: int, function_id: str) -> None:
        proc = self.proc(i)
        if proc.failed:
            return
        if proc.state is ConnectionState.CONNECTED and proc.link is not None:
            proc.link.expected[function_id] += 1
            proc.link.rejected.discard(function_id)
        proc.conn.register_function(RegisterFunction(id=function_id))
        self.pump()

    @precondition(lambda self: self.procs)
    @rule(i=st.integers(0, 2), function_id=st.sampled_from(FUNCTIONS))
    def unregister(self, i: int, function_id: str) -> None:
        proc = self.proc(i)
        if proc.failed or function_id not in proc.conn.functions:
            return
        proc.conn.unregister_function(function_id)
        if proc.link is not None:
            proc.link.rejected.discard(function_id)
        self.pump()

    @precondition(lambda self: self.procs)
    @rule(i=st.integers(0, 2), function_id=st.sampled_from((*FUNCTIONS, MISSING)))
    def invoke(self, i: int, function_id: str) -> None:
        proc = self.proc(i)
        token = f"t{len(self.calls)}"
        try:
            invocation_id = proc.conn.invoke(function_id, {"token": token}, now=self.now)
        except (ConnectionFailed, HeldCallsFull):
            assert proc.failed or proc.conn.held_count > 0
            return
        assert invocation_id is not None and invocation_id not in self.calls
        connected = proc.state is ConnectionState.CONNECTED
        self.calls[invocation_id] = Call(proc, function_id, token, proc.link if connected else None)
        self.pump()

    @precondition(lambda self: any(p.requests for p in self.procs))
    @rule(i=st.integers(0, 2), j=st.integers(0, 5), ok=st.booleans())
    def answer(self, i: int, j: int, ok: bool) -> None:
        busy = [p for p in self.procs if p.requests]
        proc = busy[i % len(busy)]
        request, link = proc.requests.pop(j % len(proc.requests))
        invocation_id = request.invocation_id
        if invocation_id is None:
            return
        data = request.data
        assert isinstance(data, dict) and request.caller_worker_id is not None
        call = self.calls[invocation_id]
        assert data == {"token": call.token}, "a handler got another call's data"
        error = None if ok else ErrorBody(code="handler_failed", message=call.token)
        result: JSONObject = {"echo": call.token}
        call.answered = (result, error)
        sent = proc.conn.send_result(invocation_id, request.function_id, result, error=error)
        assert sent == (link is not None and link is proc.link), (sent, link, proc.link)
        self.pump()
        caller = call.caller
        if (
            sent
            and not call.outcomes
            and call.link is not None
            and call.link is caller.link
            and caller.link is not None
            and caller.link.alive
        ):
            raise AssertionError(f"answered, both connected, but no outcome for {call.token}")

    @precondition(lambda self: any(p.link is not None for p in self.procs))
    @rule(i=st.integers(0, 2), engine_notices=st.booleans())
    def drop(self, i: int, engine_notices: bool) -> None:
        live = [p for p in self.procs if p.link is not None]
        proc = live[i % len(live)]
        link = proc.link
        assert link is not None
        link.gone(engine_notices=engine_notices)
        link.to_client.clear()
        proc.link = None
        proc.conn.transport_closed(self.now, "connection reset")
        self.pump()

    @precondition(lambda self: self.procs)
    @rule(dt=st.sampled_from([0.5, 1.0, 3.0, 11.0, 25.0]))
    def let_time_pass(self, dt: float) -> None:
        self.advance(self.now + dt)

    @precondition(lambda self: self.procs)
    @rule(i=st.integers(0, 2))
    def close(self, i: int) -> None:
        proc = self.proc(i)
        proc.conn.close()
        self.pump()

    @precondition(lambda self: any(p.state is ConnectionState.DISCONNECTED for p in self.procs))
    @rule(i=st.integers(0, 2))
    def connect_again(self, i: int) -> None:
        idle = [p for p in self.procs if p.state is ConnectionState.DISCONNECTED]
        proc = idle[i % len(idle)]
        proc.conn.connect(self.now)
        self.pump()

    # -- invariants --------------------------------------------------------------

    @invariant()
    def calls_have_at_most_one_outcome(self) -> None:
        for call in self.calls.values():
            assert len(call.outcomes) <= 1

    @invariant()
    def calls_in_flight_are_accounted_for(self) -> None:
        """A call from a live socket with no outcome yet is running somewhere real."""
        for invocation_id, call in self.calls.items():
            caller = call.caller
            if call.outcomes or call.link is None or call.link is not caller.link:
                continue
            handler = call.handler_link
            if handler is not None:
                # Its handler's connection ended: the engine must have said so.
                assert handler.worker is None or not handler.worker.cleaned, (
                    f"{call.token}: the handler is gone and the caller was not told"
                )
                continue
            # Never delivered: the engine still holds it for a handler that is a
            # half-open ghost (anything else was delivered or refused).
            pending = self.core.pending.get(invocation_id)
            assert pending is not None, f"{call.token} was lost"
            ghosts = [link.worker for p in self.procs for link in p.links if not link.alive]
            assert any(pending.handler is w for w in ghosts), f"{call.token} is stuck"

    @invariant()
    def every_connection_got_each_registration_once(self) -> None:
        for proc in self.procs:
            for link in proc.links:
                if not link.greeted or not link.alive:
                    continue
                if link.previous_worker_id is not None:
                    first = link.frames[0]
                    assert first.TYPE == "reattach", link.frames[:3]
                    assert first.previous_worker_id == link.previous_worker_id
                got = Counter(f.id for f in link.frames if f.TYPE == "registerfunction")
                assert got == link.expected, (proc.name, got, link.expected)

    @invariant()
    def the_engine_registry_matches_the_workers(self) -> None:
        core = self.core
        for (_, function_id), entry in core.functions.items():
            assert not entry.owner.cleaned, f"{function_id} is owned by a dead connection"
        for worker in core.names.values():
            assert not worker.cleaned
        for pending in core.pending.values():
            assert pending.handler is None or not pending.handler.cleaned
        for proc in self.procs:
            link = proc.link
            if (
                link is None
                or not link.greeted
                or link.worker is None
                or link.worker.closing
                or proc.state is not ConnectionState.CONNECTED
            ):
                continue
            owned = {fid for (_, fid), e in core.functions.items() if e.owner is link.worker}
            assert owned == set(proc.conn.functions) - link.rejected, (
                proc.name,
                owned,
                set(proc.conn.functions),
                link.rejected,
            )

    def teardown(self) -> None:
        for proc in self.procs:
            proc.conn.close()
        self.pump()
        for call in self.calls.values():
            assert len(call.outcomes) == 1, (call.token, call.outcomes)


Differential.TestCase.settings = settings(
    max_examples=150,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
TestDifferential = Differential.TestCase


@pytest.fixture(autouse=True)
def _quiet_engine() -> Iterator[None]:
    # Name conflicts are part of the game: the engine's warnings are noise here.
    logger = logging.getLogger("iii.testing")
    level = logger.level
    logger.setLevel(logging.ERROR)
    yield
    logger.setLevel(level)
