"""A hypothesis state machine driving a ``Connection`` and a fresh fake engine per socket.

The model knows which calls were made, which registrations are live, which
socket is open, and the time.  After every step it checks that:

* every sync/enqueue call gets at most one outcome, and exactly one once its
  deadline has passed, the session has failed, or (teardown) it was closed;
* an engine answer produces exactly the outcome it carries, for that call;
* each engine received each registration live at its ``workerregistered``
  exactly once, plus one frame per (un)registration made while connected;
* nothing is written without a live socket (``Pair.pump`` asserts it), and
  commands issued while not connected write nothing at all;
* after ``ConnectionFailedEvent`` no event is ever emitted again;
* the pending count, the held bound and the state agree with the model.
"""

from __future__ import annotations

import itertools
import random
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Optional

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from iii_protocol import (
    ANNOUNCE_FUNCTION_ID,
    Config,
    Connection,
    ConnectionFailed,
    ConnectionState,
    ErrorBody,
    HeldCallsFull,
    InvocationResult,
    InvokeFunction,
    LocalProtocolError,
    Ping,
    Pong,
    Reattach,
    ReconnectPolicy,
    RegisterFunction,
    RegisterTrigger,
    RegisterTriggerType,
    RegistrationRejected,
    TriggerActionEnqueue,
    TriggerActionVoid,
    TriggerRegistrationResult,
    UnknownFrame,
    UnregisterFunction,
    UnregisterTrigger,
    UnregisterTriggerType,
    encode_frame,
)
from iii_protocol.events import (
    CloseTransport,
    Connected,
    ConnectionFailedEvent,
    Event,
    FunctionRejected,
    InvocationFailed,
    InvocationRequested,
    InvocationSucceeded,
    OpenTransport,
    PingReceived,
    StateChanged,
    TriggerRegistrationRequested,
    UnknownFrameReceived,
)

from .helpers import FakeEngine, Pair, counter_ids

S = ConnectionState
FUNCTIONS = ("math::add", "math::sub", "jobs::run")
TRIGGER_TYPES = ("webhook", "cron")
BINDINGS = ("b-1", "b-2")
INVOCATION_TIMEOUT = 5.0
MAX_HELD = 3
REGISTRATION_TYPES = frozenset(
    {
        "registerfunction",
        "registertriggertype",
        "registertrigger",
        "unregisterfunction",
        "unregistertriggertype",
        "unregistertrigger",
    }
)
NO_SOCKET = (S.DISCONNECTED, S.RECONNECTING, S.FAILED)
ANNOUNCE: dict[str, Any] = {"name": "stateful", "runtime": "python"}
VOID = TriggerActionVoid()


@dataclass
class Call:
    function_id: str
    deadline: float
    outcomes: list[Event] = field(default_factory=list)


class ConnectionMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.ready = False

    # -- setup and bookkeeping ---------------------------------------------------------

    @initialize(
        max_retries=st.sampled_from([-1, -1, 0, 1, 3]),
        seed=st.integers(0, 2**16),
        start=st.sampled_from(["connected", "connected", "connecting", "disconnected"]),
    )
    def setup(self, max_retries: int, seed: int, start: str) -> None:
        config = Config(
            invocation_timeout=INVOCATION_TIMEOUT,
            connect_timeout=3.0,
            ping_interval=2.0,
            idle_timeout=7.0,
            max_held_calls=MAX_HELD,
            reconnect=ReconnectPolicy(
                initial_delay=0.5, max_delay=2.0, jitter=0.3, max_retries=max_retries
            ),
            announce=ANNOUNCE,
            confirm_announce=False,
        )
        self.conn = Connection(
            config, random=random.Random(seed).random, new_id=counter_ids("call")
        )
        self.pair = Pair(self.conn)
        self.calls: dict[str, Call] = {}
        self.answered: set[str] = set()
        self.functions: dict[str, RegisterFunction] = {}
        self.trigger_types: dict[str, RegisterTriggerType] = {}
        self.triggers: dict[str, RegisterTrigger] = {}
        #: engine index -> how many times each registration frame must arrive
        self.expected: dict[int, Counter[str]] = {}
        #: inbound invocation id -> (engine index, function id)
        self.inbound: dict[str, tuple[int, str]] = {}
        self.inbound_ids = itertools.count(1)
        self.payloads = itertools.count(1)
        self.state = S.DISCONNECTED
        self.open_requested = False
        self.failure: Optional[ConnectionFailedEvent] = None
        self.last_worker: Optional[tuple[str, Optional[str]]] = None
        self.seen = 0
        self.ready = True
        if start != "disconnected":
            self.connect()
        if start == "connected":
            self.open_transport("accept")

    def settle(self) -> list[Event]:
        """Move bytes until quiet, then check every new event against the model."""
        self.pair.pump()
        new = self.pair.events[self.seen :]
        self.seen = len(self.pair.events)
        for event in new:
            assert self.failure is None, f"event after the session failed: {event!r}"
            if isinstance(event, StateChanged):
                assert event.old is self.state
                assert event.new is not event.old
                self.state = event.new
                if event.new in NO_SOCKET:
                    self.open_requested = False
            elif isinstance(event, OpenTransport):
                self.open_requested = True
            elif isinstance(event, CloseTransport):
                self.open_requested = False
            elif isinstance(event, Connected):
                self.last_worker = (event.worker_id, event.reattach_token)
                counter = self.expected.setdefault(len(self.pair.engines) - 1, Counter())
                for registry in (self.trigger_types, self.functions, self.triggers):
                    for frame in registry.values():
                        counter[encode_frame(frame)] += 1
            elif isinstance(event, (InvocationSucceeded, InvocationFailed)):
                call = self.calls[event.invocation_id]  # never an id we did not issue
                assert event.function_id == call.function_id
                call.outcomes.append(event)
                assert len(call.outcomes) == 1, f"two outcomes for {event.invocation_id}"
            elif isinstance(event, ConnectionFailedEvent):
                self.failure = event
        return new

    @property
    def live_engine(self) -> Optional[FakeEngine]:
        """The engine of the socket, when the session is registered on it."""
        return self.pair.engine if self.state is S.CONNECTED else None

    def engine_index(self) -> int:
        return len(self.pair.engines) - 1

    def expect_sent(self, frame: Any) -> None:
        self.expected.setdefault(self.engine_index(), Counter())[encode_frame(frame)] += 1

    def command(self, run: Any) -> Any:
        """Run a command; when not connected it must write nothing at all."""
        connected = self.state is S.CONNECTED
        result = run()
        if not connected:
            assert self.conn.data_to_send() == b""
        return result

    def unanswered(self) -> list[str]:
        engine = self.live_engine
        if engine is None:
            return []
        sent = {f.invocation_id for f in engine.of(InvokeFunction) if f.invocation_id}
        return sorted(
            iid
            for iid in sent
            if iid in self.calls and not self.calls[iid].outcomes and iid not in self.answered
        )

    # -- lifecycle ---------------------------------------------------------------------

    @precondition(lambda self: self.ready and self.state is S.DISCONNECTED)
    @rule()
    def connect(self) -> None:
        self.command(lambda: self.conn.connect(self.pair.now))
        self.settle()
        assert self.state is S.CONNECTING
        assert self.open_requested

    @precondition(lambda self: self.ready and self.state is S.DISCONNECTED)
    @rule()
    def connect_and_open(self) -> None:
        self.connect()
        self.open_transport("accept")

    @precondition(lambda self: self.ready and self.state is S.RECONNECTING)
    @rule(how=st.sampled_from(["accept", "accept", "accept", "refuse", "unreachable"]))
    def reconnect(self, how: str) -> None:
        """Let the backoff run out (timeouts may fire on the way), then answer the open."""
        timer = self.conn.get_timer()
        assert timer is not None  # a reconnecting session always has its backoff armed
        self.pair.advance(timer)
        self.settle()
        if self.open_requested:
            self.open_transport(how)

    @precondition(lambda self: self.ready and self.open_requested)
    @rule(how=st.sampled_from(["accept", "accept", "accept", "refuse", "unreachable"]))
    def open_transport(self, how: str) -> None:
        self.open_requested = False
        if how == "accept":
            previous = self.last_worker
            engine = self.pair.open()
            self.settle()
            assert self.state is S.CONNECTED
            # reattach (only after an earlier connection of this session), then the announce
            head: list[Any] = []
            if previous is not None:
                head.append(Reattach(previous_worker_id=previous[0], reattach_token=previous[1]))
            head.append(
                InvokeFunction(function_id=ANNOUNCE_FUNCTION_ID, data=ANNOUNCE, action=VOID)
            )
            assert engine.frames[: len(head)] == head
        elif how == "refuse":
            self.pair.open(reject_status=503)
            self.settle()
            assert self.state in (S.RECONNECTING, S.FAILED)
        else:
            self.pair.drop("connection refused")
            self.settle()
            assert self.state in (S.RECONNECTING, S.FAILED)

    @precondition(lambda self: self.ready and self.pair.engine is not None)
    @rule(how=st.sampled_from(["reset", "engine-close", "bad-data"]))
    def drop(self, how: str) -> None:
        engine = self.pair.engine
        assert engine is not None
        sent = [
            f.invocation_id
            for f in engine.of(InvokeFunction)
            if f.invocation_id in self.calls and not self.calls[f.invocation_id].outcomes
        ]
        if how == "reset":
            self.pair.drop("reset")
        elif how == "engine-close":
            engine.close(1011, "restart")
        else:
            engine.raw(b"\x83\x00")  # a reserved opcode
        self.settle()
        assert self.pair.engine is None
        assert self.state in (S.RECONNECTING, S.FAILED)
        for iid in sent:  # the engine forgot them: their outcome is unknown
            (outcome,) = self.calls[str(iid)].outcomes
            assert isinstance(outcome, InvocationFailed)
            assert outcome.error.code == "CONNECTION_LOST"

    @precondition(
        lambda self: self.ready and self.failure is None and self.state is not S.DISCONNECTED
    )
    @rule()
    def close(self) -> None:
        self.conn.close()
        self.settle()
        self.last_worker = None  # a new session does not reattach
        assert self.state is S.DISCONNECTED
        assert all(len(c.outcomes) == 1 for c in self.calls.values())
        assert (self.conn.pending_count, self.conn.held_count) == (0, 0)
        assert self.conn.get_timer() is None

    @precondition(lambda self: self.ready)
    @rule(dt=st.sampled_from([0.1, 0.5, 1.0, 2.5, 4.0, 8.0]))
    def advance(self, dt: float) -> None:
        target = self.pair.now + dt
        self.pair.advance(target)
        self.settle()
        for iid, call in self.calls.items():
            if call.deadline <= self.pair.now:
                assert len(call.outcomes) == 1, f"{iid} is past its deadline with no outcome"

    # -- registrations -----------------------------------------------------------------

    def _register(self, register: Any, registry: dict[str, Any], frame: Any) -> None:
        if self.failure is not None:
            with pytest.raises(ConnectionFailed):
                register(frame)
            return
        connected = self.state is S.CONNECTED
        self.command(lambda: register(frame))
        registry[frame.id] = frame
        if connected:
            self.expect_sent(frame)
        self.settle()

    @precondition(lambda self: self.ready)
    @rule(fid=st.sampled_from(FUNCTIONS), version=st.sampled_from([None, "v1", "v2"]))
    def register_function(self, fid: str, version: Optional[str]) -> None:
        frame = RegisterFunction(id=fid, description=version)
        self._register(self.conn.register_function, self.functions, frame)

    @precondition(lambda self: self.ready)
    @rule(tid=st.sampled_from(TRIGGER_TYPES), description=st.sampled_from(["", "d"]))
    def register_trigger_type(self, tid: str, description: str) -> None:
        frame = RegisterTriggerType(id=tid, description=description)
        self._register(self.conn.register_trigger_type, self.trigger_types, frame)

    @precondition(lambda self: self.ready)
    @rule(
        bid=st.sampled_from(BINDINGS),
        tid=st.sampled_from(TRIGGER_TYPES),
        fid=st.sampled_from(FUNCTIONS),
        config=st.sampled_from([None, {"path": "/hook"}]),
    )
    def register_trigger(self, bid: str, tid: str, fid: str, config: Any) -> None:
        frame = RegisterTrigger(id=bid, trigger_type=tid, function_id=fid, config=config)
        self._register(self.conn.register_trigger, self.triggers, frame)

    @precondition(lambda self: self.ready)
    @rule(
        kind=st.sampled_from(["function", "trigger_type", "trigger"]),
        key=st.sampled_from(FUNCTIONS + TRIGGER_TYPES + BINDINGS),
    )
    def unregister(self, kind: str, key: str) -> None:
        registry: dict[str, Any]
        call: Any
        if kind == "function":
            registry, call = self.functions, self.conn.unregister_function
        elif kind == "trigger_type":
            registry, call = self.trigger_types, self.conn.unregister_trigger_type
        else:
            registry, call = self.triggers, self.conn.unregister_trigger
        if self.failure is not None:
            with pytest.raises(ConnectionFailed):
                call(key)
            return
        if key not in registry:
            with pytest.raises(LocalProtocolError):
                call(key)
            assert self.conn.data_to_send() == b""
            return
        registered: Any = registry.pop(key)
        connected = self.state is S.CONNECTED
        self.command(lambda: call(key))
        if connected:
            if kind == "function":
                self.expect_sent(UnregisterFunction(id=key))
            elif kind == "trigger_type":
                self.expect_sent(UnregisterTriggerType(id=key, namespace=registered.namespace))
            else:
                self.expect_sent(UnregisterTrigger(id=key, trigger_type=registered.trigger_type))
        self.settle()

    # -- outbound calls ----------------------------------------------------------------

    @precondition(lambda self: self.ready)
    @rule(
        kind=st.sampled_from(["sync", "void", "enqueue"]),
        fid=st.sampled_from(FUNCTIONS),
        timeout=st.sampled_from([None, 0.5, 3.0]),
        answer=st.sampled_from([None, None, "ok", "error"]),
        burst=st.integers(1, 3),
    )
    def invoke(
        self, kind: str, fid: str, timeout: Optional[float], answer: Optional[str], burst: int
    ) -> None:
        for _ in range(burst):
            self._invoke(kind, fid, timeout, answer)

    def _invoke(self, kind: str, fid: str, timeout: Optional[float], answer: Optional[str]) -> None:
        action = {
            "sync": None,
            "void": TriggerActionVoid(),
            "enqueue": TriggerActionEnqueue(queue="jobs"),
        }[kind]
        data: dict[str, Any] = {"n": next(self.payloads)}
        now = self.pair.now
        if self.failure is not None:
            with pytest.raises(ConnectionFailed):
                self.conn.invoke(fid, data, now=now, action=action, timeout=timeout)
            return
        if self.state is not S.CONNECTED and self.conn.held_count >= MAX_HELD:
            before = (self.conn.pending_count, self.conn.held_count)
            with pytest.raises(HeldCallsFull):
                self.conn.invoke(fid, data, now=now, action=action, timeout=timeout)
            assert (self.conn.pending_count, self.conn.held_count) == before
            assert self.conn.data_to_send() == b""
            return
        iid = self.command(
            lambda: self.conn.invoke(fid, data, now=now, action=action, timeout=timeout)
        )
        if kind == "void":
            assert iid is None
        else:
            assert iid is not None
            assert iid not in self.calls
            self.calls[iid] = Call(
                fid, now + (timeout if timeout is not None else INVOCATION_TIMEOUT)
            )
        self.settle()
        if answer is not None and iid in self.unanswered():
            self._answer(iid, answer)

    @precondition(lambda self: self.ready and bool(self.unanswered()))
    @rule(data=st.data(), kind=st.sampled_from(["ok", "error", "malformed"]))
    def engine_answers(self, data: st.DataObject, kind: str) -> None:
        self._answer(data.draw(st.sampled_from(self.unanswered())), kind)

    def _answer(self, iid: str, kind: str) -> None:
        call = self.calls[iid]
        engine = self.live_engine
        assert engine is not None
        self.answered.add(iid)
        expected: Optional[Event]
        if kind == "ok":
            result: dict[str, Any] = {"echo": iid}
            engine.send(
                InvocationResult(invocation_id=iid, function_id=call.function_id, result=result)
            )
            expected = InvocationSucceeded(
                invocation_id=iid, function_id=call.function_id, result=result
            )
        elif kind == "error":
            error = ErrorBody(code="invocation_failed", message=f"boom {iid}")
            engine.send(
                InvocationResult(invocation_id=iid, function_id=call.function_id, error=error)
            )
            expected = InvocationFailed(
                invocation_id=iid, function_id=call.function_id, error=error
            )
        else:
            engine.send_json({"type": "invocationresult", "invocation_id": iid, "function_id": 0})
            expected = None
        self.settle()
        assert len(call.outcomes) == 1
        if expected is not None:
            assert call.outcomes == [expected]
        else:
            outcome = call.outcomes[0]
            assert isinstance(outcome, InvocationFailed)
            assert outcome.error.code == "UNKNOWN"

    @precondition(lambda self: self.ready and self.live_engine is not None and bool(self.calls))
    @rule(data=st.data())
    def engine_sends_a_stale_result(self, data: st.DataObject) -> None:
        """A result for a call that has its outcome already, or was never made: ignored."""
        done = sorted(i for i, c in self.calls.items() if c.outcomes)
        iid = data.draw(st.sampled_from([*done, "never-issued"]))
        engine = self.live_engine
        assert engine is not None
        before = len(self.pair.events)
        engine.send(InvocationResult(invocation_id=iid, function_id="f", result="stale"))
        self.settle()
        assert len(self.pair.events) == before

    # -- the engine's side -------------------------------------------------------------

    # (Only after some traffic: a session that fails at once exercises little.)
    @precondition(lambda self: self.ready and self.live_engine is not None and len(self.calls) > 1)
    @rule(code=st.sampled_from(["WORKER_NAMESPACE_CONFLICT", "SOMETHING_FATAL"]))
    def fatal_rejection(self, code: str) -> None:
        engine = self.live_engine
        assert engine is not None
        engine.send(
            RegistrationRejected(
                code=code, namespace="default", worker_name="w", owner_worker_id="o"
            )
        )
        self.settle()
        assert self.state is S.FAILED
        assert self.failure is not None
        assert self.failure.code == code
        assert engine.closed_code == 1000
        assert all(len(c.outcomes) == 1 for c in self.calls.values())

    @precondition(lambda self: self.ready and self.live_engine is not None)
    @rule(fid=st.sampled_from(FUNCTIONS))
    def function_rejection(self, fid: str) -> None:
        engine = self.live_engine
        assert engine is not None
        rejection = RegistrationRejected(
            code="FUNCTION_NAMESPACE_CONFLICT",
            namespace="default",
            function_id=fid,
            owner_worker_id="o",
        )
        engine.send(rejection)
        assert self.settle() == [FunctionRejected(rejection=rejection)]
        assert self.state is S.CONNECTED

    @precondition(lambda self: self.ready and self.live_engine is not None)
    @rule(fid=st.sampled_from((*FUNCTIONS, "not::here")), with_id=st.booleans())
    def engine_invokes(self, fid: str, with_id: bool) -> None:
        engine = self.live_engine
        assert engine is not None
        iid = f"in-{next(self.inbound_ids)}" if with_id else None
        results_before = len(engine.of(InvocationResult))
        engine.send(InvokeFunction(function_id=fid, data={"q": iid}, invocation_id=iid))
        new = self.settle()
        if fid in self.functions:
            assert new == [
                InvocationRequested(
                    may_hold_channel_refs=False, invocation_id=iid, function_id=fid, data={"q": iid}
                )
            ]
            if iid is not None:
                self.inbound[iid] = (self.engine_index(), fid)
        else:
            assert new == []
            answers = engine.of(InvocationResult)[results_before:]
            if iid is None:
                assert answers == []
            else:
                assert [(a.invocation_id, a.error and a.error.code) for a in answers] == [
                    (iid, "function_not_found")
                ]

    @precondition(lambda self: self.ready and bool(self.inbound))
    @rule(data=st.data())
    def answer_inbound(self, data: st.DataObject) -> None:
        iid = data.draw(st.sampled_from(sorted(self.inbound)))
        index, fid = self.inbound.pop(iid)
        engine = self.pair.engines[index]
        live = self.pair.engine is engine
        assert self.conn.send_result(iid, fid, {"ok": iid}) is live
        self.settle()
        if live:
            assert engine.frames[-1] == InvocationResult(
                invocation_id=iid, function_id=fid, result={"ok": iid}
            )
        with pytest.raises(LocalProtocolError):
            self.conn.send_result(iid, fid, "again")

    @precondition(lambda self: self.ready and self.live_engine is not None)
    @rule(
        what=st.sampled_from(["ws-ping", "ping", "unknown", "binding"]),
        tid=st.sampled_from(TRIGGER_TYPES),
    )
    def engine_chatter(self, what: str, tid: str) -> None:
        engine = self.live_engine
        assert engine is not None
        if what == "ws-ping":
            engine.ping(b"x")
            assert self.settle() == []
            assert engine.pongs[-1] == b"x"
        elif what == "ping":
            engine.send(Ping())
            assert self.settle() == [PingReceived()]
            assert engine.frames[-1] == Pong()
        elif what == "unknown":
            frame = UnknownFrame(type="observeresult", raw={"type": "observeresult", "id": "o"})
            engine.send(frame)
            assert self.settle() == [UnknownFrameReceived(frame=frame)]
        else:
            binding = RegisterTrigger(
                id="delivered", trigger_type=tid, function_id="f", config=None
            )
            engine.send(binding)
            new = self.settle()
            if tid in self.trigger_types:
                assert new == [TriggerRegistrationRequested(binding=binding)]
            else:
                assert new == []
                assert isinstance(engine.frames[-1], TriggerRegistrationResult)

    # -- invariants --------------------------------------------------------------------

    @invariant()
    def model_agrees(self) -> None:
        if not self.ready:
            return
        assert self.conn.state is self.state
        assert self.conn.pending_count == sum(1 for c in self.calls.values() if not c.outcomes)
        assert self.conn.held_count <= MAX_HELD
        assert set(self.conn.functions) == set(self.functions)
        assert set(self.conn.trigger_types) == set(self.trigger_types)
        assert set(self.conn.triggers) == set(self.triggers)

    @invariant()
    def each_connection_replays_each_registration_once(self) -> None:
        if not self.ready:
            return
        for index, engine in enumerate(self.pair.engines):
            actual = Counter(
                encode_frame(frame)
                for frame in engine.frames
                if getattr(frame, "TYPE", None) in REGISTRATION_TYPES
            )
            assert actual == self.expected.get(index, Counter()), f"engine {index}"

    @invariant()
    def a_failed_session_is_quiet(self) -> None:
        if not self.ready or self.failure is None:
            return
        assert self.state is S.FAILED
        assert self.conn.get_timer() is None
        assert self.pair.engine is None
        assert all(len(c.outcomes) == 1 for c in self.calls.values())

    def teardown(self) -> None:
        if not self.ready:
            return
        if self.failure is None:
            self.conn.close()
            self.settle()
        # Once the session ends, every call has had exactly one outcome.
        assert all(len(c.outcomes) == 1 for c in self.calls.values())


ConnectionMachine.TestCase.settings = settings(
    max_examples=200,
    stateful_step_count=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
TestConnectionMachine = ConnectionMachine.TestCase
