"""``Connection`` against the sans-I/O fake engine.

Every scenario runs twice: the engine's bytes fed whole, and one byte at a time.
Time is explicit (``Pair.now``); ids are deterministic (``id-1``, ``id-2``...);
the backoff jitter source returns 0.5 (no jitter) unless a test injects another.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Optional

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from iii_protocol import (
    ANNOUNCE_FUNCTION_ID,
    Config,
    Connection,
    ConnectionFailed,
    ConnectionState,
    ErrorBody,
    ErrorFrame,
    HeldCallsFull,
    HttpInvocationRef,
    InvocationError,
    InvocationResult,
    InvokeFunction,
    JSONObject,
    LocalProtocolError,
    PayloadError,
    PayloadTooLarge,
    Ping,
    Pong,
    Reattach,
    ReconnectPolicy,
    RegisterFunction,
    RegisterService,
    RegisterTrigger,
    RegisterTriggerType,
    RegistrationRejected,
    RemoteProtocolError,
    SocketPhase,
    TriggerActionEnqueue,
    TriggerActionVoid,
    TriggerRegistrationResult,
    UnknownFrame,
    UnregisterFunction,
    UnregisterTrigger,
    UnregisterTriggerType,
    WorkerRegistered,
    encode_frame,
)
from iii_protocol.events import (
    Announced,
    CloseTransport,
    Connected,
    ConnectionFailedEvent,
    EngineErrorReceived,
    Event,
    FrameRejected,
    FunctionRejected,
    InvocationFailed,
    InvocationRequested,
    InvocationSucceeded,
    OpenTransport,
    PingReceived,
    StateChanged,
    TriggerRegistrationFailed,
    TriggerRegistrationRequested,
    TriggerUnregistrationRequested,
    UnknownFrameReceived,
)

from .helpers import FakeEngine, Pair, counter_ids

S = ConnectionState
VOID = TriggerActionVoid()
LOCAL_OPEN = OpenTransport(host="127.0.0.1", port=49134, secure=False, timeout=10.0)

MakePair = Callable[..., Pair]


@pytest.fixture(params=[False, True], ids=["whole", "bytewise"])
def make(request: pytest.FixtureRequest) -> MakePair:
    def make(
        config: Optional[Config] = None,
        *,
        random: Callable[[], float] = lambda: 0.5,
        **kwargs: Any,
    ) -> Pair:
        conn = Connection(
            config if config is not None else Config(**kwargs),
            random=random,
            new_id=counter_ids(),
        )
        return Pair(conn, byte_at_a_time=request.param)

    return make


def connected(make: MakePair, **kwargs: Any) -> tuple[Pair, FakeEngine]:
    pair = make(**kwargs)
    pair.connect()
    engine = pair.open()
    assert pair.conn.state is S.CONNECTED
    pair.new_events()
    return pair, engine


def changed(old: ConnectionState, new: ConnectionState) -> StateChanged:
    return StateChanged(old=old, new=new)


def lost(reason: str) -> ErrorBody:
    return ErrorBody(code="CONNECTION_LOST", message=f"connection lost ({reason}); outcome unknown")


SHUTDOWN = ErrorBody(code="SHUTDOWN", message="iii is shutting down")


def state(pair: Pair) -> ConnectionState:
    """The state, read through a call (so a type checker does not narrow it)."""
    return pair.conn.state


def rejected(events: list[Event]) -> list[RemoteProtocolError]:
    """The errors of the FrameRejected events (exceptions compare by identity)."""
    return [e.error for e in events if isinstance(e, FrameRejected)]


# -- connect and handshake -------------------------------------------------------------


def test_connect_and_handshake(make: MakePair) -> None:
    pair = make(
        url="ws://example.com:8080/root?token=abc",
        headers=(("x-team", "orders"), ("authorization", "Bearer s3cret")),
    )
    conn = pair.conn
    assert conn.state is S.DISCONNECTED
    assert conn.get_timer() is None
    assert pair.connect() == [
        changed(S.DISCONNECTED, S.CONNECTING),
        OpenTransport(host="example.com", port=8080, secure=False, timeout=10.0),
    ]
    assert conn.data_to_send() == b""  # nothing before the socket is open
    assert conn.get_timer() == 10.0  # the connect timeout
    engine = pair.open()
    request = engine.request
    assert request is not None
    assert request.host == "example.com:8080"
    assert request.target == "/root?token=abc"
    assert (b"x-team", b"orders") in request.extra_headers
    assert (b"authorization", b"Bearer s3cret") in request.extra_headers
    assert request.subprotocols == []
    assert pair.new_events() == [
        changed(S.CONNECTING, S.CONNECTED),
        Connected(worker_id="w-1", reattach_token="t-1", features=()),
    ]
    assert (conn.worker_id, conn.reattach_token, conn.features) == ("w-1", "t-1", ())
    assert engine.frames == []  # nothing registered, no announce configured
    assert conn.get_timer() == 20.0  # the first keep-alive ping


def test_the_socket_phase_follows_each_socket(make: MakePair) -> None:
    pair = make()
    conn = pair.conn
    assert conn.socket_phase is SocketPhase.NONE
    pair.connect()
    assert (conn.state, conn.socket_phase) == (S.CONNECTING, SocketPhase.OPENING)
    conn.transport_opened(0.0)
    assert (conn.state, conn.socket_phase) == (S.CONNECTING, SocketPhase.UPGRADING)
    engine = FakeEngine(greet=False)
    pair.engine = engine
    pair.engines.append(engine)
    engine.receive(conn.data_to_send())
    pair.pump()
    assert (conn.state, conn.socket_phase) == (S.CONNECTING, SocketPhase.OPEN)
    engine.send(WorkerRegistered(worker_id="w-1"))
    pair.pump()
    assert (conn.state, conn.socket_phase) == (S.CONNECTED, SocketPhase.OPEN)
    pair.drop()
    assert (conn.state, conn.socket_phase) == (S.RECONNECTING, SocketPhase.NONE)
    pair.advance(10.0)
    assert (conn.state, conn.socket_phase) == (S.CONNECTING, SocketPhase.OPENING)
    conn.close()
    assert (conn.state, conn.socket_phase) == (S.DISCONNECTED, SocketPhase.NONE)


def test_secure_url_uses_the_default_port(make: MakePair) -> None:
    pair = make(url="wss://engine.example")
    assert pair.connect()[-1] == OpenTransport(
        host="engine.example", port=443, secure=True, timeout=10.0
    )
    engine = pair.open()
    assert engine.request is not None
    assert engine.request.host == "engine.example"
    assert engine.request.target == "/"


def test_connected_reports_features(make: MakePair) -> None:
    pair = make()
    pair.connect()
    pair.open(features=["observe.v1", "local-dispatch.v1"], token=None)
    assert pair.new_events()[-1] == Connected(
        worker_id="w-1", reattach_token=None, features=("observe.v1", "local-dispatch.v1")
    )
    assert pair.conn.features == ("observe.v1", "local-dispatch.v1")


def test_connect_twice_is_illegal(make: MakePair) -> None:
    pair = make()
    pair.connect()
    with pytest.raises(LocalProtocolError, match="cannot connect while connecting"):
        pair.conn.connect(0.0)
    pair.open()
    pair.new_events()
    with pytest.raises(LocalProtocolError, match="cannot connect while connected"):
        pair.conn.connect(0.0)
    assert pair.conn.state is S.CONNECTED
    assert pair.new_events() == []


def test_transport_opened_without_a_transport_being_opened_raises(make: MakePair) -> None:
    pair = make()
    conn = pair.conn
    with pytest.raises(LocalProtocolError, match="no transport is being opened"):
        conn.transport_opened(0.0)  # never connected
    pair.connect()
    conn.transport_opened(0.0)
    request = conn.data_to_send()
    assert request.startswith(b"GET / HTTP/1.1\r\n")
    with pytest.raises(LocalProtocolError, match="no transport is being opened"):
        conn.transport_opened(0.0)  # already opened, handshake in flight
    assert conn.data_to_send() == b""
    engine = FakeEngine()
    pair.engine = engine
    pair.engines.append(engine)
    engine.receive(request)
    pair.pump()
    assert conn.state is S.CONNECTED
    with pytest.raises(LocalProtocolError, match="no transport is being opened"):
        conn.transport_opened(0.0)  # open and registered
    pair.drop()
    with pytest.raises(LocalProtocolError, match="no transport is being opened"):
        conn.transport_opened(0.0)  # lost, waiting for the backoff
    assert state(pair) is S.RECONNECTING


def test_empty_reads_are_not_end_of_file(make: MakePair) -> None:
    pair = make()
    conn = pair.conn
    pair.connect()
    conn.transport_opened(0.0)
    engine = FakeEngine()
    engine.receive(conn.data_to_send())
    response = engine.take()
    conn.receive_data(b"", 0.0)
    conn.receive_data(response[:10], 0.0)
    conn.receive_data(b"", 0.0)
    conn.receive_data(response[10:], 0.0)
    assert conn.state is S.CONNECTED


def test_data_for_a_dropped_transport_is_ignored(make: MakePair) -> None:
    pair = make()
    conn = pair.conn
    conn.receive_data(b"\x81\x05hello", 0.0)  # never connected
    pair.connect()
    engine = pair.open()
    engine.send(Ping())
    stale = engine.take()
    pair.drop()
    pair.new_events()
    conn.receive_data(stale, 0.0)
    conn.receive_data(b"garbage", 0.0)
    assert pair.new_events() == []
    assert conn.data_to_send() == b""
    assert conn.state is S.RECONNECTING


def test_transport_closed_without_a_transport_is_ignored(make: MakePair) -> None:
    pair = make()
    pair.conn.transport_closed(0.0)
    pair.connect()
    pair.conn.close()
    pair.new_events()
    pair.conn.transport_closed(0.0, "late report")
    assert pair.new_events() == []
    assert pair.conn.state is S.DISCONNECTED


# -- replay ----------------------------------------------------------------------------


def test_replay_order_reattach_announce_types_functions_triggers_held(make: MakePair) -> None:
    announce: dict[str, Any] = {"name": "worker", "runtime": "python", "pid": 7, "namespace": None}
    pair = make(announce=announce, confirm_announce=False)
    conn = pair.conn
    tt = RegisterTriggerType(id="webhook", description="hooks")
    fn1 = RegisterFunction(id="math::add")
    fn2 = RegisterFunction(id="math::sub", description="subtract")
    trig = RegisterTrigger(id="b-1", trigger_type="webhook", function_id="math::add", config=None)
    # Registration order across kinds does not matter; the replay order does.
    conn.register_trigger(trig)
    conn.register_function(fn1)
    conn.register_trigger_type(tt)
    conn.register_function(fn2)
    sync_id = conn.invoke("math::add", {"a": 1}, now=0.0)
    assert sync_id is not None
    assert conn.invoke("math::log", "hi", now=0.0, action=VOID) is None
    assert conn.data_to_send() == b""
    assert (conn.held_count, conn.pending_count) == (2, 1)

    pair.connect()
    engine = pair.open()
    announce_frame = InvokeFunction(function_id=ANNOUNCE_FUNCTION_ID, data=announce, action=VOID)
    assert engine.frames == [
        announce_frame,
        tt,
        fn1,
        fn2,
        trig,
        InvokeFunction(function_id="math::add", data={"a": 1}, invocation_id=sync_id),
        InvokeFunction(function_id="math::log", data="hi", action=VOID),
    ]
    assert engine.json()[0] == {
        "type": "invokefunction",
        "function_id": "engine::workers::register",
        "data": announce,
        "action": {"type": "void"},
    }
    assert (conn.held_count, conn.pending_count) == (0, 1)
    assert pair.new_events() == [
        changed(S.CONNECTING, S.CONNECTED),
        Connected(worker_id="w-1", reattach_token="t-1", features=()),
    ]

    # Second connection: reattach first; the held calls went out already.
    pair.drop("reset")
    assert pair.new_events() == [
        InvocationFailed(invocation_id=sync_id, function_id="math::add", error=lost("reset")),
        changed(S.CONNECTED, S.RECONNECTING),
    ]
    pair.advance(1.0)
    engine2 = pair.open(token=None)
    assert engine2.frames == [
        Reattach(previous_worker_id="w-1", reattach_token="t-1"),
        announce_frame,
        tt,
        fn1,
        fn2,
        trig,
    ]
    # Third connection: the second engine sent no token, so none is sent back.
    pair.drop()
    pair.advance(2.0)
    engine3 = pair.open()
    assert engine3.json()[0] == {"type": "reattach", "previous_worker_id": "w-2"}
    assert engine3.frames[1:] == [announce_frame, tt, fn1, fn2, trig]
    assert (conn.worker_id, conn.reattach_token) == ("w-3", "t-3")


def test_confirmed_announce_reports_the_engines_answer(make: MakePair) -> None:
    announce: dict[str, Any] = {"name": "worker", "pid": 7}
    pair = make(announce=announce)
    conn = pair.conn
    conn.register_function(RegisterFunction(id="f"))
    pair.connect()
    engine = pair.open()
    first = engine.frames[0]
    assert isinstance(first, InvokeFunction)
    assert first.function_id == ANNOUNCE_FUNCTION_ID and first.action is None
    assert first.invocation_id is not None and first.data == announce
    assert engine.json()[0]["invocation_id"] == first.invocation_id
    assert engine.frames[1] == RegisterFunction(id="f")
    pair.new_events()
    # The answer is the engine's acceptance, not a call outcome.
    engine.send(
        InvocationResult(
            invocation_id=first.invocation_id,
            function_id=ANNOUNCE_FUNCTION_ID,
            result={"success": True},
        )
    )
    pair.pump()
    assert pair.new_events() == [Announced(result={"success": True})]
    assert conn.pending_count == 0
    # A second answer with that id is just a stale result now.
    engine.send(
        InvocationResult(
            invocation_id=first.invocation_id, function_id=ANNOUNCE_FUNCTION_ID, result=None
        )
    )
    pair.pump()
    assert pair.new_events() == []
    # Each connection asks again; a refusal carries the error; a drop forgets it.
    pair.drop()
    pair.advance(1.0)
    engine2 = pair.open()
    second = engine2.frames[1]
    assert isinstance(second, InvokeFunction) and second.invocation_id not in (
        None,
        first.invocation_id,
    )
    pair.new_events()
    forbidden = ErrorBody(code="FORBIDDEN", message="namespace 'x' not allowed")
    engine2.send(
        InvocationResult(
            invocation_id=second.invocation_id, function_id=ANNOUNCE_FUNCTION_ID, error=forbidden
        )
    )
    pair.pump()
    assert pair.new_events() == [Announced(result=None, error=forbidden)]
    pair.drop()
    pair.advance(2.0)
    engine3 = pair.open()
    third = engine3.frames[1]
    assert isinstance(third, InvokeFunction)
    pair.drop()
    pair.new_events()
    # The answer of a dropped connection's announce means nothing any more.
    pair.advance(4.0)
    engine4 = pair.open()
    pair.new_events()
    engine4.send(
        InvocationResult(
            invocation_id=third.invocation_id or "",
            function_id=ANNOUNCE_FUNCTION_ID,
            result={"success": True},
        )
    )
    pair.pump()
    assert pair.new_events() == []


def test_registrations_while_connected_are_sent_at_once_and_replayed_once(
    make: MakePair,
) -> None:
    pair, engine = connected(make)
    conn = pair.conn
    fn = RegisterFunction(id="f")
    fn_v2 = RegisterFunction(id="f", description="v2")
    tt = RegisterTriggerType(id="t", description="")
    trig = RegisterTrigger(id="b", trigger_type="t", function_id="f", config={"k": 1})
    conn.register_function(fn)
    conn.register_function(fn_v2)  # replaces
    conn.register_trigger_type(tt)
    conn.register_trigger(trig)
    pair.pump()
    assert engine.frames == [fn, fn_v2, tt, trig]
    assert conn.functions == {"f": fn_v2}
    assert conn.trigger_types == {"t": tt}
    assert conn.triggers == {"b": trig}
    conn.functions.clear()  # a copy
    assert conn.functions == {"f": fn_v2}

    pair.drop()
    fn2 = RegisterFunction(id="g")
    conn.register_function(fn2)  # while reconnecting: recorded, not sent
    assert conn.data_to_send() == b""
    pair.advance(1.0)
    engine2 = pair.open()
    assert engine2.frames == [
        Reattach(previous_worker_id="w-1", reattach_token="t-1"),
        tt,
        fn_v2,
        fn2,
        trig,
    ]


def test_registration_with_no_json_form_is_refused_and_not_recorded(make: MakePair) -> None:
    pair, engine = connected(make)
    conn = pair.conn
    with pytest.raises(PayloadError):
        conn.register_function(RegisterFunction(id="f", metadata={"x": math.nan}))
    with pytest.raises(PayloadError):
        conn.register_trigger(
            RegisterTrigger(id="b", trigger_type="t", function_id="f", config={1, 2})  # type: ignore[arg-type]
        )
    with pytest.raises(PayloadError):
        conn.register_trigger_type(
            RegisterTriggerType(id="t", description="", call_request_format=math.inf)
        )
    pair.pump()
    assert engine.frames == []
    assert (conn.functions, conn.triggers, conn.trigger_types) == ({}, {}, {})


def test_unregister_sends_the_right_frames(make: MakePair) -> None:
    pair, engine = connected(make)
    conn = pair.conn
    conn.register_function(RegisterFunction(id="f"))
    conn.register_trigger_type(
        RegisterTriggerType(id="webhook", description="", namespace="orders")
    )
    conn.register_trigger(
        RegisterTrigger(id="b-1", trigger_type="webhook", function_id="f", config=None)
    )
    conn.register_trigger_type(RegisterTriggerType(id="plain", description=""))
    pair.pump()
    sent = len(engine.messages)
    conn.unregister_trigger("b-1")
    conn.unregister_trigger_type("webhook")
    conn.unregister_trigger_type("plain")
    conn.unregister_function("f")
    pair.pump()
    assert engine.json()[sent:] == [
        {"type": "unregistertrigger", "id": "b-1", "trigger_type": "webhook"},
        {"type": "unregistertriggertype", "id": "webhook", "namespace": "orders"},
        {"type": "unregistertriggertype", "id": "plain"},
        {"type": "unregisterfunction", "id": "f"},
    ]
    assert (conn.functions, conn.triggers, conn.trigger_types) == ({}, {}, {})
    for unregister, key in [
        (conn.unregister_function, "f"),
        (conn.unregister_trigger_type, "webhook"),
        (conn.unregister_trigger, "b-1"),
    ]:
        with pytest.raises(LocalProtocolError, match=f"'{key}' is not registered"):
            unregister(key)
    pair.pump()
    assert len(engine.messages) == sent + 4


def test_unregister_while_disconnected_sends_nothing_and_is_not_replayed(make: MakePair) -> None:
    pair = make()
    conn = pair.conn
    conn.register_function(RegisterFunction(id="f"))
    conn.register_function(RegisterFunction(id="g"))
    conn.unregister_function("f")
    assert conn.data_to_send() == b""
    pair.connect()
    engine = pair.open()
    assert engine.frames == [RegisterFunction(id="g")]


# -- outbound calls --------------------------------------------------------------------


def test_invoke_sync_and_success(make: MakePair) -> None:
    pair, engine = connected(make)
    conn = pair.conn
    iid = conn.invoke(
        "math::add",
        {"a": 2, "b": 3},
        now=0.0,
        metadata={"tenant": "acme"},
        namespace="orders",
        traceparent="00-abc-01",
        baggage="k=v",
    )
    pair.pump()
    assert iid == "id-1"
    assert engine.json() == [
        {
            "type": "invokefunction",
            "function_id": "math::add",
            "data": {"a": 2, "b": 3},
            "invocation_id": "id-1",
            "traceparent": "00-abc-01",
            "baggage": "k=v",
            "metadata": {"tenant": "acme"},
            "namespace": "orders",
        }
    ]
    assert conn.pending_count == 1
    pair.send(InvocationResult(invocation_id="id-1", function_id="math::add", result={"c": 5}))
    assert pair.new_events() == [
        InvocationSucceeded(invocation_id="id-1", function_id="math::add", result={"c": 5})
    ]
    assert conn.pending_count == 0


def test_invoke_void_has_no_id_and_no_outcome(make: MakePair) -> None:
    pair, engine = connected(make)
    conn = pair.conn
    assert conn.invoke("f", None, now=0.0, action=VOID) is None
    pair.pump()
    assert engine.json() == [
        {"type": "invokefunction", "function_id": "f", "data": None, "action": {"type": "void"}}
    ]
    assert conn.pending_count == 0
    assert conn.get_timer() == 20.0  # no invocation deadline, only the ping
    pair.advance(100.0)
    assert not pair.of(InvocationFailed)


def test_invoke_enqueue_gets_a_receipt(make: MakePair) -> None:
    pair, engine = connected(make)
    iid = pair.conn.invoke("f", {"x": 1}, now=0.0, action=TriggerActionEnqueue(queue="jobs"))
    pair.pump()
    assert engine.json() == [
        {
            "type": "invokefunction",
            "function_id": "f",
            "data": {"x": 1},
            "invocation_id": iid,
            "action": {"type": "enqueue", "queue": "jobs"},
        }
    ]
    engine.send_json(
        {
            "type": "invocationresult",
            "invocation_id": iid,
            "function_id": "f",
            "result": {"messageReceiptId": "r-1"},
        }
    )
    pair.pump()
    assert pair.new_events() == [
        InvocationSucceeded(
            invocation_id="id-1", function_id="f", result={"messageReceiptId": "r-1"}
        )
    ]


def test_error_result_fails_the_call(make: MakePair) -> None:
    pair, _ = connected(make)
    iid = pair.conn.invoke("admin::wipe", None, now=0.0)
    assert iid is not None
    pair.pump()
    error = ErrorBody(code="FORBIDDEN", message="not allowed", stacktrace="tb")
    pair.send(InvocationResult(invocation_id=iid, function_id="admin::wipe", error=error))
    assert pair.new_events() == [
        InvocationFailed(invocation_id=iid, function_id="admin::wipe", error=error)
    ]


def test_results_go_to_the_right_call(make: MakePair) -> None:
    pair, engine = connected(make)
    conn = pair.conn
    a = conn.invoke("f", 1, now=0.0)
    b = conn.invoke("g", 2, now=0.0)
    assert a is not None and b is not None
    pair.pump()
    # The event names the function we called, whatever the engine echoes.
    pair.send(InvocationResult(invocation_id=b, function_id="something-else", result="two"))
    engine.send_json({"type": "invocationresult", "invocation_id": a, "function_id": "f"})
    pair.pump()
    assert pair.new_events() == [
        InvocationSucceeded(invocation_id=b, function_id="g", result="two"),
        InvocationSucceeded(invocation_id=a, function_id="f", result=None),
    ]


def test_unknown_duplicate_and_late_results_are_ignored(make: MakePair) -> None:
    pair, _ = connected(make)
    conn = pair.conn
    a = conn.invoke("f", 1, now=0.0)
    b = conn.invoke("f", 2, now=0.0, timeout=1.0)
    assert a is not None and b is not None
    pair.pump()
    pair.send(InvocationResult(invocation_id="nobody", function_id="f", result=1))
    assert pair.new_events() == []
    pair.send(InvocationResult(invocation_id=a, function_id="f", result=1))
    pair.send(InvocationResult(invocation_id=a, function_id="f", result=2))
    assert pair.new_events() == [InvocationSucceeded(invocation_id=a, function_id="f", result=1)]
    pair.tick(1.0)
    assert [e.error.code for e in pair.new_events() if isinstance(e, InvocationFailed)] == [
        "TIMEOUT"
    ]
    pair.send(InvocationResult(invocation_id=b, function_id="f", result="late"))
    assert pair.new_events() == []
    assert conn.pending_count == 0


def test_cancel_forgets_a_call(make: MakePair) -> None:
    pair, _ = connected(make)
    conn = pair.conn
    iid = conn.invoke("f", 1, now=0.0, timeout=1.0)
    assert iid is not None
    pair.pump()
    assert conn.cancel(iid) is True
    assert conn.cancel(iid) is False
    assert conn.cancel("never") is False
    assert conn.pending_count == 0
    pair.send(InvocationResult(invocation_id=iid, function_id="f", result=1))
    pair.advance(5.0)
    assert pair.new_events() == []


def test_cancelled_call_never_times_out(make: MakePair) -> None:
    pair, _ = connected(make)
    iid = pair.conn.invoke("f", 1, now=0.0, timeout=1.0)
    assert iid is not None
    assert pair.conn.cancel(iid) is True
    pair.tick(1.0)  # straight to the timer, without asking get_timer first
    assert pair.new_events() == []


@pytest.mark.parametrize("bytewise", [False, True])
def test_a_reused_id_is_not_timed_out_by_its_predecessor(bytewise: bool) -> None:
    conn = Connection(Config(), new_id=lambda: "same")
    pair = Pair(conn, byte_at_a_time=bytewise)
    pair.connect()
    pair.open()
    pair.new_events()
    assert conn.invoke("f", 1, now=0.0, timeout=1.0) == "same"
    pair.pump()
    pair.send(InvocationResult(invocation_id="same", function_id="f", result=1))
    assert conn.invoke("f", 2, now=0.0, timeout=5.0) == "same"
    pair.tick(1.0)
    assert pair.new_events() == [
        InvocationSucceeded(invocation_id="same", function_id="f", result=1)
    ]
    assert conn.pending_count == 1
    pair.tick(5.0)
    assert [e.error.code for e in pair.new_events() if isinstance(e, InvocationFailed)] == [
        "TIMEOUT"
    ]


def test_timeouts(make: MakePair) -> None:
    pair, engine = connected(make)
    conn = pair.conn
    a = conn.invoke("slow", 1, now=0.0, timeout=2.5)
    b = conn.invoke("slow", 2, now=0.0)  # the configured 30 s
    c = conn.invoke("slow", 3, now=0.0, timeout=0.25)
    pair.pump()
    assert conn.get_timer() == 0.25
    pair.tick(0.2)
    assert pair.new_events() == []
    pair.tick(2.5)
    assert pair.new_events() == [
        InvocationFailed(
            invocation_id=c,  # type: ignore[arg-type]
            function_id="slow",
            error=ErrorBody(code="TIMEOUT", message="invocation timed out after 250ms"),
        ),
        InvocationFailed(
            invocation_id=a,  # type: ignore[arg-type]
            function_id="slow",
            error=ErrorBody(code="TIMEOUT", message="invocation timed out after 2500ms"),
        ),
    ]
    assert conn.get_timer() == 20.0  # the ping comes before b's deadline
    pair.advance(30.0)
    assert engine.pings == [b"iii"]
    assert pair.new_events() == [
        InvocationFailed(
            invocation_id=b,  # type: ignore[arg-type]
            function_id="slow",
            error=ErrorBody(code="TIMEOUT", message="invocation timed out after 30000ms"),
        )
    ]
    assert conn.pending_count == 0


def test_connection_lost_fails_sent_calls_and_keeps_held_ones(make: MakePair) -> None:
    pair, engine = connected(make)
    conn = pair.conn
    a = conn.invoke("f", 1, now=0.0)
    pair.pump()
    pair.drop("socket reset")
    assert pair.new_events() == [
        InvocationFailed(invocation_id=a, function_id="f", error=lost("socket reset")),  # type: ignore[arg-type]
        changed(S.CONNECTED, S.RECONNECTING),
    ]
    assert conn.get_timer() == 1.0
    b = conn.invoke("f", 2, now=0.0)  # held, sent after the next replay
    c = conn.invoke("f", 3, now=0.0, timeout=0.5)  # times out while held
    assert conn.invoke("f", 4, now=0.0, action=VOID) is None
    assert conn.data_to_send() == b""
    assert (conn.held_count, conn.pending_count) == (3, 2)
    pair.advance(1.0)
    assert pair.new_events() == [
        InvocationFailed(
            invocation_id=c,  # type: ignore[arg-type]
            function_id="f",
            error=ErrorBody(code="TIMEOUT", message="invocation timed out after 500ms"),
        ),
        changed(S.RECONNECTING, S.CONNECTING),
        LOCAL_OPEN,
    ]
    engine2 = pair.open()
    assert engine2.frames == [
        Reattach(previous_worker_id="w-1", reattach_token="t-1"),
        InvokeFunction(function_id="f", data=2, invocation_id=b),
        InvokeFunction(function_id="f", data=4, action=VOID),
    ]
    assert conn.held_count == 0
    pair.send(InvocationResult(invocation_id=a, function_id="f", result="from the old socket"))  # type: ignore[arg-type]
    pair.send(InvocationResult(invocation_id=b, function_id="f", result="ok"))  # type: ignore[arg-type]
    assert pair.new_events()[-1:] == [
        InvocationSucceeded(invocation_id=b, function_id="f", result="ok")  # type: ignore[arg-type]
    ]
    assert len(pair.of(InvocationSucceeded)) == 1
    assert engine.closed_code is None  # the socket closed itself: nothing to close


def test_results_for_calls_not_sent_yet_are_ignored(make: MakePair) -> None:
    pair = make()
    conn = pair.conn
    pair.connect()
    engine = pair.open(greet=False)  # upgraded, but no workerregistered yet
    assert conn.state is S.CONNECTING
    iid = conn.invoke("f", 1, now=0.0)
    assert iid is not None
    assert conn.data_to_send() == b""
    pair.new_events()
    pair.send(InvocationResult(invocation_id=iid, function_id="f", result="forged"))
    engine.send_json({"type": "invocationresult", "invocation_id": iid, "function_id": 1})
    pair.pump()
    events = pair.new_events()
    assert len(events) == 1
    assert rejected(events)[0].frame_type == "invocationresult"
    assert conn.pending_count == 1
    pair.send(WorkerRegistered(worker_id="w-1"))
    assert engine.of(InvokeFunction) == [InvokeFunction(function_id="f", data=1, invocation_id=iid)]
    pair.send(InvocationResult(invocation_id=iid, function_id="f", result="real"))
    assert pair.new_events()[-1] == InvocationSucceeded(
        invocation_id=iid, function_id="f", result="real"
    )


def test_held_call_bound(make: MakePair) -> None:
    pair = make(max_held_calls=2)
    conn = pair.conn
    a = conn.invoke("f", 1, now=0.0)
    conn.invoke("f", 2, now=0.0, action=VOID)
    for action in (None, VOID):
        with pytest.raises(HeldCallsFull) as info:
            conn.invoke("f", 3, now=0.0, action=action)
        assert isinstance(info.value, LocalProtocolError)
        assert isinstance(info.value, InvocationError)
        assert (info.value.code, info.value.limit, info.value.function_id) == ("QUEUE_FULL", 2, "f")
    assert (conn.held_count, conn.pending_count) == (2, 1)
    assert conn.get_timer() == 30.0  # only a's deadline is recorded
    assert pair.new_events() == []
    pair.connect()
    engine = pair.open()
    assert engine.frames == [
        InvokeFunction(function_id="f", data=1, invocation_id=a),
        InvokeFunction(function_id="f", data=2, action=VOID),
    ]
    for i in range(5):  # connected: no bound
        conn.invoke("f", i, now=0.0)
    pair.pump()
    assert len(engine.of(InvokeFunction)) == 7


def test_held_call_bound_of_zero_refuses_every_held_call(make: MakePair) -> None:
    pair = make(max_held_calls=0)
    with pytest.raises(HeldCallsFull):
        pair.conn.invoke("f", 1, now=0.0)
    assert (pair.conn.held_count, pair.conn.pending_count) == (0, 0)


def test_outbound_over_the_size_limit_is_refused(make: MakePair) -> None:
    limit = 200
    pair, engine = connected(make, max_message_size=limit)
    conn = pair.conn

    def size(data: Any) -> int:
        frame = InvokeFunction(function_id="f", data=data, invocation_id="id-x")
        return len(encode_frame(frame).encode())

    filler = "x" * (limit - size(""))
    assert size(filler) == limit
    assert conn.invoke("f", filler, now=0.0) is not None  # exactly the limit
    for data in ["x" + filler, "€" * 60]:  # by bytes, not characters
        with pytest.raises(PayloadTooLarge) as info:
            conn.invoke("f", data, now=0.0)
        assert info.value.size == size(data)
        assert (info.value.limit, info.value.code, info.value.function_id) == (
            limit,
            "payload_too_large",
            "f",
        )
    accented = "é" * 50  # 4x its length is over the limit, its UTF-8 is not
    assert (
        size(accented)
        <= limit
        < 4 * len(encode_frame(InvokeFunction(function_id="f", data=accented)))
    )
    assert conn.invoke("f", accented, now=0.0) is not None
    pair.pump()
    assert [f.data for f in engine.of(InvokeFunction)] == [filler, accented]
    assert conn.pending_count == 2
    pair.drop()
    with pytest.raises(PayloadTooLarge):
        conn.invoke("f", "x" * 300, now=0.0)  # not held either
    assert conn.held_count == 0


def test_payload_with_no_json_form_is_refused(make: MakePair) -> None:
    pair, engine = connected(make)
    conn = pair.conn
    for data in [
        math.nan,
        {"s": "\ud800"},
        {(1, 2): "tuple key"},
        {1: "int key", "1": "again"},
        object(),
    ]:
        with pytest.raises(PayloadError) as info:
            conn.invoke("f", data, now=0.0)  # type: ignore[arg-type]
        assert info.value.function_id == "f"
    with pytest.raises(PayloadError):
        conn.invoke("f", None, now=0.0, metadata={"m": math.inf})
    pair.drop()
    with pytest.raises(PayloadError):
        conn.invoke("f", "\udfff", now=0.0)  # not held either
    assert (conn.pending_count, conn.held_count) == (0, 0)
    pair.pump()
    assert engine.frames == []


def test_large_messages_go_out_as_continuation_frames(make: MakePair) -> None:
    pair, engine = connected(make, fragment_threshold=100, fragment_size=16)
    conn = pair.conn
    conn.invoke("f", "x", now=0.0)
    big = "y" * 100
    conn.invoke("f", big, now=0.0)
    euros = "€" * 30  # 106 characters, 166 bytes: over the threshold
    conn.invoke("f", euros, now=0.0)
    pair.pump()
    texts = [encode_frame(f) for f in engine.of(InvokeFunction)]
    assert [f.data for f in engine.of(InvokeFunction)] == ["x", big, euros]
    assert engine.fragments == [1, math.ceil(len(texts[1]) / 16), math.ceil(len(texts[2]) / 16)]
    assert engine.fragments[1] > 1
    assert engine.fragments[2] > 1


# -- session end -----------------------------------------------------------------------


def test_close_fails_pending_calls_with_shutdown(make: MakePair) -> None:
    pair, engine = connected(make)
    conn = pair.conn
    fn = RegisterFunction(id="f")
    conn.register_function(fn)
    a = conn.invoke("f", 1, now=0.0)
    pair.pump()
    conn.close()
    pair.pump()
    assert pair.new_events() == [
        CloseTransport(reason="closed by the worker"),
        changed(S.CONNECTED, S.DISCONNECTED),
        InvocationFailed(invocation_id=a, function_id="f", error=SHUTDOWN),  # type: ignore[arg-type]
    ]
    assert engine.closed_code == 1000
    assert (conn.worker_id, conn.reattach_token) == (None, None)
    assert conn.get_timer() is None
    conn.close()  # idempotent
    assert pair.new_events() == []
    # Registrations are kept; a new session does not reattach the old one.
    pair.connect()
    engine2 = pair.open()
    assert engine2.frames == [fn]


def test_close_while_reconnecting_fails_held_calls(make: MakePair) -> None:
    pair, _ = connected(make)
    conn = pair.conn
    pair.drop()
    held = conn.invoke("f", 1, now=0.0)
    conn.invoke("f", 2, now=0.0, action=VOID)
    pair.new_events()
    conn.close()
    assert pair.new_events() == [
        changed(S.RECONNECTING, S.DISCONNECTED),
        InvocationFailed(invocation_id=held, function_id="f", error=SHUTDOWN),  # type: ignore[arg-type]
    ]
    assert (conn.held_count, conn.pending_count) == (0, 0)
    assert conn.get_timer() is None
    pair.advance(100.0)
    assert pair.new_events() == []
    assert conn.data_to_send() == b""


def test_close_before_the_socket_opened(make: MakePair) -> None:
    pair = make()
    pair.connect()
    pair.new_events()
    pair.conn.close()
    assert pair.new_events() == [
        CloseTransport(reason="closed by the worker"),
        changed(S.CONNECTING, S.DISCONNECTED),
    ]
    assert pair.conn.data_to_send() == b""


def test_invoke_after_close_is_held_for_the_next_session(make: MakePair) -> None:
    pair, _ = connected(make)
    conn = pair.conn
    conn.close()
    iid = conn.invoke("f", 1, now=0.0)
    assert conn.held_count == 1
    pair.connect()
    engine = pair.open()
    assert engine.frames == [InvokeFunction(function_id="f", data=1, invocation_id=iid)]


# -- reconnect -------------------------------------------------------------------------


def test_reconnect_backoff_follows_the_policy(make: MakePair) -> None:
    draws = iter([0.0, 1.0, 0.5, 0.25, 0.75, 0.5])
    policy = ReconnectPolicy(initial_delay=1.0, max_delay=5.0, multiplier=2.0, jitter=0.5)
    pair = make(reconnect=policy, random=lambda: next(draws))
    conn = pair.conn
    pair.connect()
    # delay = c + c * jitter * (2r - 1), c = min(1 * 2**n, 5)
    for delay in [1 - 0.5, 2 + 1.0, 4 + 0.0, 5 - 1.25, 5 + 1.25]:
        pair.drop()  # this attempt failed (connection refused)
        assert conn.state is S.RECONNECTING
        deadline = pair.now + delay
        assert conn.get_timer() == deadline
        pair.tick(deadline - 0.001)
        assert state(pair) is S.RECONNECTING
        pair.tick(deadline)
        assert state(pair) is S.CONNECTING
        assert pair.new_events()[-1] == LOCAL_OPEN
    # A connection that registers resets the attempt counter: back to retry 0.
    pair.open()
    pair.drop()
    assert conn.get_timer() == pair.now + 1.0


def test_reconnect_after_the_engine_closes(make: MakePair) -> None:
    pair, engine = connected(make)
    a = pair.conn.invoke("f", 1, now=0.0)
    pair.pump()
    engine.close(1001, "going away")
    pair.pump()
    assert pair.new_events() == [
        CloseTransport(reason="engine closed the connection (1001 going away)"),
        InvocationFailed(
            invocation_id=a,  # type: ignore[arg-type]
            function_id="f",
            error=lost("engine closed the connection (1001 going away)"),
        ),
        changed(S.CONNECTED, S.RECONNECTING),
    ]


@pytest.mark.parametrize("code", [1000, 1001, 1011])
def test_engine_close_is_answered_and_reconnected(make: MakePair, code: int) -> None:
    pair, engine = connected(make)
    conn = pair.conn
    engine.close(code)
    pair.pump()
    assert pair.new_events() == [
        CloseTransport(reason=f"engine closed the connection ({code})"),
        changed(S.CONNECTED, S.RECONNECTING),
    ]
    assert engine.closed_code == code  # our echo of its Close
    assert conn.get_timer() == 1.0  # a reconnect is scheduled: never a zombie
    pair.advance(1.0)
    assert state(pair) is S.CONNECTING
    engine2 = pair.open()
    assert state(pair) is S.CONNECTED
    assert engine2.frames == [Reattach(previous_worker_id="w-1", reattach_token="t-1")]


@pytest.mark.parametrize("status", [400, 403, 500, 503])
def test_refused_handshake_reconnects(make: MakePair, status: int) -> None:
    pair = make()
    pair.connect()
    pair.new_events()
    pair.open(reject_status=status)
    assert pair.new_events() == [
        CloseTransport(reason=f"WebSocket upgrade refused: HTTP {status}"),
        changed(S.CONNECTING, S.RECONNECTING),
    ]
    assert pair.conn.get_timer() == 1.0
    pair.advance(1.0)
    pair.open()
    assert pair.conn.state is S.CONNECTED
    assert pair.conn.worker_id == "w-2"


@pytest.mark.parametrize(
    ("response", "reason"),
    [
        (b"garbage\r\n\r\n", "WebSocket handshake failed: Bad HTTP message"),
        (
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Accept: wrong\r\n\r\n",
            "WebSocket handshake failed: Bad accept token",
        ),
        (
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n",
            "WebSocket handshake failed: Missing header, 'Upgrade: websocket'",
        ),
    ],
    ids=["garbage", "bad-accept", "wrong-upgrade"],
)
def test_garbage_handshake_reconnects(make: MakePair, response: bytes, reason: str) -> None:
    pair = make()
    pair.connect()
    pair.new_events()
    pair.open(handshake_bytes=response)
    assert pair.new_events() == [
        CloseTransport(reason=reason),
        changed(S.CONNECTING, S.RECONNECTING),
    ]
    pair.advance(1.0)
    pair.open()
    assert pair.conn.state is S.CONNECTED


def test_connect_timeout_when_the_socket_never_opens(make: MakePair) -> None:
    pair = make(connect_timeout=10.0)
    pair.connect()
    pair.new_events()
    assert pair.conn.get_timer() == 10.0
    pair.tick(9.9)
    assert pair.new_events() == []
    pair.tick(10.0)
    assert pair.new_events() == [
        CloseTransport(reason="timed out opening the connection"),
        changed(S.CONNECTING, S.RECONNECTING),
    ]
    assert pair.conn.get_timer() == 11.0
    pair.advance(11.0)
    assert pair.new_events() == [changed(S.RECONNECTING, S.CONNECTING), LOCAL_OPEN]
    pair.open()
    assert pair.conn.state is S.CONNECTED


def test_connect_timeout_when_the_engine_never_greets(make: MakePair) -> None:
    pair = make()
    pair.connect()
    engine = pair.open(greet=False)
    pair.new_events()
    assert pair.conn.state is S.CONNECTING
    assert pair.conn.get_timer() == 10.0  # before the ping (20) and the idle limit (60)
    pair.tick(10.0)
    assert pair.new_events() == [
        CloseTransport(reason="timed out opening the connection"),
        changed(S.CONNECTING, S.RECONNECTING),
    ]
    assert engine.closed_code == 1002
    assert engine.pings == []


def test_no_retries_fails_held_calls_at_the_first_loss(make: MakePair) -> None:
    pair = make(reconnect=ReconnectPolicy(max_retries=0))
    conn = pair.conn
    pair.connect()
    held = conn.invoke("f", 1, now=0.0)
    assert held is not None
    assert conn.invoke("f", 2, now=0.0, action=VOID) is None
    pair.new_events()
    pair.drop("connection refused")
    message = "gave up after 0 reconnect attempts (connection refused)"
    assert pair.new_events() == [
        changed(S.CONNECTING, S.FAILED),
        InvocationFailed(
            invocation_id=held,
            function_id="f",
            error=ErrorBody(code="RETRIES_EXHAUSTED", message=message),
        ),
        ConnectionFailedEvent(code="RETRIES_EXHAUSTED", message=message),
    ]
    assert (conn.pending_count, conn.held_count) == (0, 0)


@pytest.mark.parametrize("max_retries", [0, 1, 2])
def test_retries_exhausted_fails_the_session(make: MakePair, max_retries: int) -> None:
    pair, _ = connected(make, reconnect=ReconnectPolicy(max_retries=max_retries))
    conn = pair.conn
    sent = conn.invoke("f", 1, now=0.0)
    pair.pump()
    pair.drop("reset")
    events = pair.new_events()
    assert events[0] == InvocationFailed(invocation_id=sent, function_id="f", error=lost("reset"))  # type: ignore[arg-type]
    if max_retries == 0:
        message = "gave up after 0 reconnect attempts (reset)"
        assert events[1:] == [
            changed(S.CONNECTED, S.FAILED),
            ConnectionFailedEvent(code="RETRIES_EXHAUSTED", message=message),
        ]
    else:
        assert events[1:] == [changed(S.CONNECTED, S.RECONNECTING)]
        held = conn.invoke("f", 2, now=pair.now, timeout=1000.0)
        for _ in range(max_retries):
            timer = conn.get_timer()
            assert timer is not None
            pair.advance(timer)
            assert conn.state is S.CONNECTING
            pair.new_events()
            pair.open(reject_status=503)
        reason = "WebSocket upgrade refused: HTTP 503"
        message = f"gave up after {max_retries} reconnect attempts ({reason})"
        assert pair.new_events() == [
            CloseTransport(reason=reason),
            changed(S.CONNECTING, S.FAILED),
            InvocationFailed(
                invocation_id=held,  # type: ignore[arg-type]
                function_id="f",
                error=ErrorBody(code="RETRIES_EXHAUSTED", message=message),
            ),
            ConnectionFailedEvent(code="RETRIES_EXHAUSTED", message=message),
        ]
    assert conn.state is S.FAILED
    failure = conn.failure
    assert failure is not None
    assert (failure.code, failure.message) == ("RETRIES_EXHAUSTED", message)
    assert (conn.pending_count, conn.held_count) == (0, 0)
    assert conn.get_timer() is None
    with pytest.raises(ConnectionFailed) as info:
        conn.invoke("f", 3, now=pair.now)
    assert info.value is failure
    with pytest.raises(ConnectionFailed):
        conn.register_function(RegisterFunction(id="f"))
    with pytest.raises(LocalProtocolError):
        conn.connect(pair.now)
    conn.close()  # a failed session stays failed
    pair.advance(pair.now + 100.0)
    assert conn.state is S.FAILED
    assert pair.new_events() == []


# -- registration rejected -------------------------------------------------------------


def test_worker_name_conflict_is_fatal(make: MakePair) -> None:
    pair, engine = connected(make)
    conn = pair.conn
    conn.register_function(RegisterFunction(id="f"))
    conn.register_trigger_type(RegisterTriggerType(id="t", description=""))
    conn.register_trigger(RegisterTrigger(id="b", trigger_type="t", function_id="f", config=None))
    a = conn.invoke("f", 1, now=0.0)
    pair.pump()
    rejection = RegistrationRejected(
        code="WORKER_NAMESPACE_CONFLICT",
        namespace="default",
        worker_name="cap-provider",
        owner_worker_id="b4de390d",
    )
    pair.send(rejection)
    message = "engine refused 'cap-provider' in namespace 'default' (owner b4de390d)"
    assert pair.new_events() == [
        CloseTransport(reason=message),
        changed(S.CONNECTED, S.FAILED),
        InvocationFailed(
            invocation_id=a,  # type: ignore[arg-type]
            function_id="f",
            error=ErrorBody(code="WORKER_NAMESPACE_CONFLICT", message=message),
        ),
        ConnectionFailedEvent(
            code="WORKER_NAMESPACE_CONFLICT", message=message, rejection=rejection
        ),
    ]
    assert engine.closed_code == 1000
    failure = conn.failure
    assert failure is not None
    assert failure.code == "WORKER_NAMESPACE_CONFLICT"
    calls: list[Callable[[], object]] = [
        lambda: conn.invoke("f", 1, now=0.0),
        lambda: conn.invoke("f", 1, now=0.0, action=VOID),
        lambda: conn.register_function(RegisterFunction(id="g")),
        lambda: conn.register_trigger_type(RegisterTriggerType(id="u", description="")),
        lambda: conn.register_trigger(
            RegisterTrigger(id="c", trigger_type="t", function_id="f", config=None)
        ),
        lambda: conn.unregister_function("f"),
        lambda: conn.unregister_trigger_type("t"),
        lambda: conn.unregister_trigger("b"),
    ]
    for call in calls:
        with pytest.raises(ConnectionFailed) as info:
            call()
        assert info.value is failure
    assert conn.send_trigger_registration_result("b", "t", "f") is False
    assert conn.get_timer() is None
    conn.close()
    conn.handle_timer(1000.0)
    assert pair.new_events() == []
    assert conn.state is S.FAILED


def test_other_rejection_codes_are_fatal_too(make: MakePair) -> None:
    pair = make()
    pair.connect()
    pair.open(greet=False)  # before workerregistered: fatal from CONNECTING
    pair.new_events()
    rejection = RegistrationRejected(
        code="RESERVED_PREFIX", namespace="orders", function_id="engine::mine", owner_worker_id=""
    )
    pair.send(rejection)
    message = "engine refused 'engine::mine' in namespace 'orders' (owner reserved)"
    assert pair.new_events() == [
        CloseTransport(reason=message),
        changed(S.CONNECTING, S.FAILED),
        ConnectionFailedEvent(code="RESERVED_PREFIX", message=message, rejection=rejection),
    ]


def test_unnamed_rejection_names_this_worker(make: MakePair) -> None:
    pair, _ = connected(make)
    pair.send(RegistrationRejected(code="X", namespace="n", owner_worker_id="o"))
    failed = pair.of(ConnectionFailedEvent)
    assert [e.message for e in failed] == [
        "engine refused 'this worker' in namespace 'n' (owner o)"
    ]


def test_function_conflict_only_rejects_that_function(make: MakePair) -> None:
    pair, engine = connected(make)
    rejection = RegistrationRejected(
        code="FUNCTION_NAMESPACE_CONFLICT",
        namespace="default",
        function_id="math::fmt",
        owner_worker_id="fcb86431",
    )
    pair.send(rejection)
    assert pair.new_events() == [FunctionRejected(rejection=rejection)]
    assert pair.conn.state is S.CONNECTED
    assert engine.closed_code is None
    assert pair.conn.invoke("f", 1, now=0.0) == "id-1"


# -- inbound invocations ---------------------------------------------------------------


def test_inbound_invoke_strips_the_caller_and_is_answered_once(make: MakePair) -> None:
    pair, engine = connected(make)
    conn = pair.conn
    conn.register_function(RegisterFunction(id="math::add"))
    pair.send(
        InvokeFunction(
            function_id="math::add",
            data={"a": 2, "_caller_worker_id": "w-9"},
            invocation_id="in-1",
            metadata={"tenant": "acme"},
            traceparent="tp",
            baggage="bg",
        )
    )
    assert pair.new_events() == [
        InvocationRequested(
            may_hold_channel_refs=False,
            invocation_id="in-1",
            function_id="math::add",
            data={"a": 2},
            metadata={"tenant": "acme"},
            traceparent="tp",
            baggage="bg",
            caller_worker_id="w-9",
        )
    ]
    assert conn.send_result("in-1", "math::add", {"c": 5}, traceparent="tp2") is True
    pair.pump()
    assert engine.json()[-1] == {
        "type": "invocationresult",
        "invocation_id": "in-1",
        "function_id": "math::add",
        "result": {"c": 5},
        "traceparent": "tp2",
    }
    with pytest.raises(LocalProtocolError, match="'in-1' is not awaiting a result"):
        conn.send_result("in-1", "math::add", {"c": 5})
    with pytest.raises(LocalProtocolError):
        conn.send_result("never-received", "math::add")
    # Once answered, the same id may run again.
    pair.send(InvokeFunction(function_id="math::add", data=None, invocation_id="in-1"))
    assert conn.send_result("in-1", "math::add") is True
    pair.pump()
    assert engine.json()[-1] == {
        "type": "invocationresult",
        "invocation_id": "in-1",
        "function_id": "math::add",
        "result": None,
    }


@pytest.mark.parametrize(
    ("data", "expected", "caller"),
    [
        ([1, 2], [1, 2], None),
        ("text", "text", None),
        (None, None, None),
        ({"x": 1}, {"x": 1}, None),
        ({"x": 1, "_caller_worker_id": 5}, {"x": 1}, None),
        ({"_caller_worker_id": "w-2"}, {}, "w-2"),
    ],
)
def test_caller_worker_id(make: MakePair, data: Any, expected: Any, caller: Optional[str]) -> None:
    pair, _ = connected(make)
    pair.conn.register_function(RegisterFunction(id="f"))
    pair.send(InvokeFunction(function_id="f", data=data, invocation_id="in-1"))
    (event,) = pair.new_events()
    assert isinstance(event, InvocationRequested)
    assert (event.data, event.caller_worker_id) == (expected, caller)


def test_error_result_has_no_result(make: MakePair) -> None:
    pair, engine = connected(make)
    pair.conn.register_function(RegisterFunction(id="f"))
    pair.send(InvokeFunction(function_id="f", data=None, invocation_id="in-1"))
    error = ErrorBody(code="invocation_failed", message="boom", stacktrace="Traceback...")
    assert pair.conn.send_result("in-1", "f", {"ignored": True}, error=error) is True
    pair.pump()
    assert engine.json()[-1] == {
        "type": "invocationresult",
        "invocation_id": "in-1",
        "function_id": "f",
        "error": {"code": "invocation_failed", "message": "boom", "stacktrace": "Traceback..."},
    }


def test_invoke_for_an_unknown_function_is_answered_not_found(make: MakePair) -> None:
    pair, engine = connected(make)
    pair.send(InvokeFunction(function_id="nope", data=None, invocation_id="in-1"))
    pair.send(InvokeFunction(function_id="nope", data=None))  # no id: nothing to answer
    assert pair.new_events() == []
    assert engine.frames == [
        InvocationResult(
            invocation_id="in-1",
            function_id="nope",
            error=ErrorBody(code="function_not_found", message="Function 'nope' not found"),
        )
    ]


def test_invoke_for_an_http_function_is_not_invokable(make: MakePair) -> None:
    pair, engine = connected(make)
    pair.conn.register_function(
        RegisterFunction(id="ext::f", invocation=HttpInvocationRef(url="https://x"))
    )
    pair.pump()
    sent = len(engine.frames)
    pair.send(InvokeFunction(function_id="ext::f", data=None, invocation_id="in-1"))
    pair.send(InvokeFunction(function_id="ext::f", data=None))
    assert pair.new_events() == []
    assert engine.frames[sent:] == [
        InvocationResult(
            invocation_id="in-1",
            function_id="ext::f",
            error=ErrorBody(
                code="function_not_invokable",
                message="Function 'ext::f' is invoked over HTTP by the engine",
            ),
        )
    ]


def test_invoke_without_an_id_expects_no_reply(make: MakePair) -> None:
    pair, engine = connected(make)
    pair.conn.register_function(RegisterFunction(id="f"))
    pair.send(InvokeFunction(function_id="f", data={"x": 1}))
    pair.send(InvokeFunction(function_id="f", data={"x": 2}))
    assert pair.new_events() == [
        InvocationRequested(
            may_hold_channel_refs=False, invocation_id=None, function_id="f", data={"x": 1}
        ),
        InvocationRequested(
            may_hold_channel_refs=False, invocation_id=None, function_id="f", data={"x": 2}
        ),
    ]
    assert engine.of(InvocationResult) == []


def test_duplicate_in_flight_invocation_is_rejected(make: MakePair) -> None:
    pair, _ = connected(make)
    pair.conn.register_function(RegisterFunction(id="f"))
    pair.send(InvokeFunction(function_id="f", data=1, invocation_id="in-1"))
    pair.send(InvokeFunction(function_id="f", data=2, invocation_id="in-1"))
    events = pair.new_events()
    assert events[0] == InvocationRequested(
        may_hold_channel_refs=False, invocation_id="in-1", function_id="f", data=1
    )
    (error,) = rejected(events[1:])
    assert len(events) == 2
    assert error.frame_type == "invokefunction"
    assert str(error) == "invocation in-1 is already running"


def test_send_result_after_the_connection_was_lost(make: MakePair) -> None:
    pair, _ = connected(make)
    conn = pair.conn
    conn.register_function(RegisterFunction(id="f"))
    pair.send(InvokeFunction(function_id="f", data=1, invocation_id="in-1"))
    pair.send(InvokeFunction(function_id="f", data=2, invocation_id="in-2"))
    pair.drop()
    assert conn.send_result("in-1", "f", "late") is False
    with pytest.raises(LocalProtocolError):
        conn.send_result("in-1", "f", "again")
    pair.advance(1.0)
    engine2 = pair.open()
    assert conn.send_result("in-2", "f", "late") is False  # not on the new socket either
    pair.pump()
    assert engine2.of(InvocationResult) == []


def test_unserialisable_result_is_replaced_by_an_error(make: MakePair) -> None:
    pair, engine = connected(make)
    pair.conn.register_function(RegisterFunction(id="f"))
    for i, bad in enumerate([math.nan, {1, 2}, {"k": "\ud800"}]):
        pair.send(InvokeFunction(function_id="f", data=None, invocation_id=f"in-{i}"))
        assert pair.conn.send_result(f"in-{i}", "f", bad) is True  # type: ignore[arg-type]
        pair.pump()
        out: Any = engine.json()[-1]
        assert out["invocation_id"] == f"in-{i}"
        assert "result" not in out
        assert out["error"]["code"] == "serialization_error"
        assert out["error"]["message"].startswith("result not sent: ")


def test_oversized_result_is_replaced_by_an_error(make: MakePair) -> None:
    pair, engine = connected(make, max_message_size=300)
    pair.conn.register_function(RegisterFunction(id="f"))
    pair.send(InvokeFunction(function_id="f", data=None, invocation_id="in-1"))
    assert pair.conn.send_result("in-1", "f", "x" * 400) is True
    pair.pump()
    out: Any = engine.json()[-1]
    assert out["error"]["code"] == "payload_too_large"
    assert out["error"]["message"].startswith("result not sent: message of ")
    assert out["error"]["message"].endswith("exceeds the 300-byte limit")
    assert "result" not in out


# -- trigger providers -----------------------------------------------------------------


def test_binding_for_a_provided_trigger_type(make: MakePair) -> None:
    pair, engine = connected(make)
    conn = pair.conn
    conn.register_trigger_type(RegisterTriggerType(id="webhook", description="hooks"))
    pair.pump()
    binding = RegisterTrigger(
        id="b-1", trigger_type="webhook", function_id="math::add", config={"path": "/hook"}
    )
    pair.send(binding)
    assert pair.new_events() == [TriggerRegistrationRequested(binding=binding)]
    assert conn.send_trigger_registration_result("b-1", "webhook", "math::add") is True
    error = ErrorBody(code="trigger_registration_failed", message="bad path")
    assert conn.send_trigger_registration_result("b-2", "webhook", "f", error=error) is True
    pair.pump()
    assert engine.json()[-2:] == [
        {
            "type": "triggerregistrationresult",
            "id": "b-1",
            "trigger_type": "webhook",
            "function_id": "math::add",
        },
        {
            "type": "triggerregistrationresult",
            "id": "b-2",
            "trigger_type": "webhook",
            "function_id": "f",
            "error": {"code": "trigger_registration_failed", "message": "bad path"},
        },
    ]
    pair.send(UnregisterTrigger(id="b-1", trigger_type="webhook"))
    pair.send(UnregisterTrigger(id="b-9"))
    assert pair.new_events() == [
        TriggerUnregistrationRequested(id="b-1", trigger_type="webhook"),
        TriggerUnregistrationRequested(id="b-9", trigger_type=None),
    ]


def test_binding_for_an_unknown_trigger_type_is_refused(make: MakePair) -> None:
    pair, engine = connected(make)
    pair.send(RegisterTrigger(id="b-1", trigger_type="cron", function_id="f", config=None))
    assert pair.new_events() == []
    assert engine.frames == [
        TriggerRegistrationResult(
            id="b-1",
            trigger_type="cron",
            function_id="f",
            error=ErrorBody(
                code="trigger_type_not_found", message="trigger type 'cron' is not provided here"
            ),
        )
    ]


def test_binding_before_registration_is_not_answered(make: MakePair) -> None:
    pair = make()
    conn = pair.conn
    pair.connect()
    engine = pair.open(greet=False)
    pair.send(RegisterTrigger(id="b-1", trigger_type="cron", function_id="f", config=None))
    assert engine.frames == []
    assert conn.send_trigger_registration_result("b-1", "cron", "f") is False
    pair.pump()
    assert engine.frames == []


def test_trigger_registration_result_from_the_engine(make: MakePair) -> None:
    pair, _ = connected(make)
    pair.send(TriggerRegistrationResult(id="b-1", trigger_type="webhook", function_id="f"))
    assert pair.new_events() == []  # successes are never forwarded; ignore one anyway
    error = ErrorBody(code="FORBIDDEN", message="no")
    pair.send(
        TriggerRegistrationResult(id="b-1", trigger_type="webhook", function_id="f", error=error)
    )
    assert pair.new_events() == [
        TriggerRegistrationFailed(id="b-1", trigger_type="webhook", function_id="f", error=error)
    ]


# -- liveness --------------------------------------------------------------------------


def test_engine_ping_frame_is_answered_with_pong(make: MakePair) -> None:
    pair, engine = connected(make)
    pair.send(Ping())
    assert pair.new_events() == [PingReceived()]
    assert engine.json() == [{"type": "pong"}]
    pair.send(Pong())
    assert pair.new_events() == []
    assert len(engine.messages) == 1


def test_websocket_ping_is_answered_with_pong(make: MakePair) -> None:
    pair, engine = connected(make)
    engine.ping(b"are you there")
    engine.pong(b"unsolicited")
    pair.pump()
    assert engine.pongs == [b"are you there"]
    assert pair.new_events() == []


def test_keepalive_pings_and_idle_timeout(make: MakePair) -> None:
    pair, engine = connected(make, ping_interval=20.0, idle_timeout=60.0)
    conn = pair.conn
    assert conn.get_timer() == 20.0
    pair.tick(19.9)
    assert engine.pings == []
    pair.tick(20.0)
    assert engine.pings == [b"iii"]  # answered: data at t=20
    assert conn.get_timer() == 40.0
    engine.answer_pings = False
    pair.tick(40.0)
    assert conn.get_timer() == 60.0
    pair.tick(60.0)
    assert len(engine.pings) == 3
    assert conn.get_timer() == 80.0  # the next ping and the idle limit (20 + 60)
    assert pair.new_events() == []
    pair.tick(80.0)
    assert pair.new_events() == [
        CloseTransport(reason="no data from the engine for 60s"),
        changed(S.CONNECTED, S.RECONNECTING),
    ]
    assert len(engine.pings) == 3
    assert engine.closed_code == 1002
    assert conn.get_timer() == 81.0
    pair.advance(81.0)
    pair.open()
    assert conn.state is S.CONNECTED


def test_any_data_counts_as_liveness(make: MakePair) -> None:
    pair, _ = connected(make, ping_interval=100.0, idle_timeout=5.0)
    assert pair.conn.get_timer() == 5.0
    pair.now = 4.0
    pair.send(Pong())
    assert pair.conn.get_timer() == 9.0
    pair.tick(9.0)
    assert pair.conn.state is S.RECONNECTING


# -- malformed input from the engine ---------------------------------------------------


def test_inbound_message_over_the_limit_closes_1009(make: MakePair) -> None:
    limit = 100
    pair, engine = connected(make, max_message_size=limit)
    head = '{"type":"ping","pad":"'
    exact = head + "x" * (limit - len(head) - 2) + '"}'
    assert len(exact) == limit
    engine.send_text(exact)
    engine.send_fragments([exact[:30], exact[30:60], exact[60:]])
    pair.pump()
    assert pair.new_events() == [PingReceived(), PingReceived()]
    over = head + "é" * 40 + '"}'  # 64 characters, 104 bytes
    engine.send_text(over)
    pair.pump()
    assert pair.new_events() == [
        CloseTransport(reason="engine message over the 100-byte limit"),
        changed(S.CONNECTED, S.RECONNECTING),
    ]
    assert engine.closed_code == 1009


def test_inbound_fragments_over_the_limit_close_1009(make: MakePair) -> None:
    pair, engine = connected(make, max_message_size=100)
    engine.send_fragments(['{"type":"ping","pad":"', "x" * 60, "y" * 60 + '"}'])
    pair.pump()
    assert pair.conn.state is S.RECONNECTING
    assert engine.closed_code == 1009
    assert pair.of(PingReceived) == []


def test_binary_message_is_rejected(make: MakePair) -> None:
    pair, engine = connected(make)
    engine.send_bytes(b'{"type":"ping"}')
    engine.send_bytes(b'{"type":"ping"}', parts=3)
    engine.send_text('{"type":"ping"}')
    pair.pump()
    events = pair.new_events()
    errors = rejected(events)
    assert len(errors) == 2
    assert all(
        str(e) == "binary message on the control socket (the engine sends text only)"
        for e in errors
    )
    assert events[2:] == [PingReceived()]
    assert pair.conn.state is S.CONNECTED


@pytest.mark.parametrize(
    ("raw", "code", "reason"),
    [
        (b"\x83\x00", 1002, "bad WebSocket data from the engine: Invalid opcode 0x3"),
        (
            b"\x81\x82abcd\x00\x00",
            1002,
            "bad WebSocket data from the engine: client received unexpected masked frame",
        ),
        (b"\x81\x02\xc3\x28", 1007, None),
    ],
    ids=["reserved-opcode", "masked", "invalid-utf8"],
)
def test_bad_websocket_data_closes_and_reconnects(
    make: MakePair, raw: bytes, code: int, reason: Optional[str]
) -> None:
    pair, engine = connected(make)
    engine.raw(raw)
    pair.pump()
    events = pair.new_events()
    assert events[1:] == [changed(S.CONNECTED, S.RECONNECTING)]
    assert isinstance(events[0], CloseTransport)
    assert events[0].reason.startswith("bad WebSocket data from the engine: ")
    if reason is not None:
        assert events[0].reason == reason
    assert engine.closed_code == code


def test_malformed_result_fails_the_pending_call(make: MakePair) -> None:
    pair, engine = connected(make)
    conn = pair.conn
    iid = conn.invoke("f", 1, now=0.0)
    assert iid is not None
    pair.pump()
    engine.send_json({"type": "invocationresult", "invocation_id": iid, "function_id": 5})
    pair.pump()
    events = pair.new_events()
    (error,) = rejected(events)
    assert error.frame_type == "invocationresult"
    assert events[1:] == [
        InvocationFailed(
            invocation_id=iid,
            function_id="f",
            error=ErrorBody(code="UNKNOWN", message=f"malformed result: {error}"),
        )
    ]
    assert conn.pending_count == 0
    pair.send(InvocationResult(invocation_id=iid, function_id="f", result="late"))
    assert pair.new_events() == []


@pytest.mark.parametrize(
    "obj",
    [
        {"type": "invocationresult", "invocation_id": "unknown", "function_id": 5},
        {"type": "invocationresult", "function_id": "f"},
        {"type": "invocationresult", "invocation_id": 7, "function_id": "f"},
        {"type": "invokefunction", "function_id": "f"},
        {"type": "workerregistered"},
    ],
)
def test_malformed_frames_are_only_rejected(make: MakePair, obj: dict[str, Any]) -> None:
    pair, engine = connected(make)
    iid = pair.conn.invoke("f", 1, now=0.0)
    pair.pump()
    engine.send_json(obj)
    pair.pump()
    events = pair.new_events()
    (error,) = rejected(events)
    assert len(events) == 1
    assert error.frame_type == obj["type"]
    assert pair.conn.pending_count == 1
    pair.send(InvocationResult(invocation_id=iid, function_id="f", result=1))  # type: ignore[arg-type]
    assert pair.new_events() == [InvocationSucceeded(invocation_id=iid, function_id="f", result=1)]  # type: ignore[arg-type]


@pytest.mark.parametrize("text", ["not json", '["ping"]', '{"type":7}', "{"])
def test_text_that_is_not_a_frame_is_rejected(make: MakePair, text: str) -> None:
    pair, engine = connected(make)
    engine.send_text(text)
    pair.pump()
    events = pair.new_events()
    (error,) = rejected(events)
    assert len(events) == 1
    assert error.frame_type is None
    assert pair.conn.state is S.CONNECTED


@pytest.mark.parametrize("text", ["", "   ", "\n\t "])
def test_blank_text_is_skipped(make: MakePair, text: str) -> None:
    pair, engine = connected(make)
    engine.send_text(text)
    pair.pump()
    assert pair.new_events() == []


def test_unknown_frame_type_is_reported_and_skipped(make: MakePair) -> None:
    pair, engine = connected(make)
    raw: dict[str, Any] = {"type": "observeresult", "id": "o-1", "state": "active"}
    engine.send_json(raw)
    pair.pump()
    assert pair.new_events() == [
        UnknownFrameReceived(frame=UnknownFrame(type="observeresult", raw=raw))
    ]
    assert pair.conn.state is S.CONNECTED


def test_error_frame_then_close(make: MakePair) -> None:
    pair, engine = connected(make)
    pair.send(ErrorFrame(error=ErrorBody(code="AUTH_ERROR", message="unauthorized")))
    assert pair.new_events() == [
        EngineErrorReceived(error=ErrorBody(code="AUTH_ERROR", message="unauthorized"))
    ]
    engine.close(1008, "policy")
    pair.pump()
    assert pair.conn.state is S.RECONNECTING


@pytest.mark.parametrize(
    "frame",
    [
        RegisterFunction(id="f"),
        UnregisterFunction(id="f"),
        RegisterTriggerType(id="t", description=""),
        UnregisterTriggerType(id="t"),
        RegisterService(id="s"),
        Reattach(previous_worker_id="w"),
    ],
    ids=lambda f: f.TYPE,
)
def test_frames_the_engine_never_sends_are_rejected(make: MakePair, frame: Any) -> None:
    pair, engine = connected(make)
    pair.send(frame)
    events = pair.new_events()
    (error,) = rejected(events)
    assert len(events) == 1
    assert error.frame_type == frame.TYPE
    assert str(error) == f"{frame.TYPE} is not sent by the engine"
    assert engine.frames == []


def test_second_workerregistered_is_rejected(make: MakePair) -> None:
    pair, _ = connected(make)
    pair.send(WorkerRegistered(worker_id="w-other", reattach_token="t-other"))
    events = pair.new_events()
    (error,) = rejected(events)
    assert len(events) == 1
    assert error.frame_type == "workerregistered"
    assert (pair.conn.worker_id, pair.conn.reattach_token) == ("w-1", "t-1")


# -- chunk boundaries ------------------------------------------------------------------


def _engine_stream() -> tuple[Connection, bytes]:
    """A connection waiting for its handshake, and everything an engine then sends."""
    conn = Connection(Config(), random=lambda: 0.5, new_id=counter_ids())
    conn.register_function(RegisterFunction(id="f"))
    conn.register_trigger_type(RegisterTriggerType(id="webhook", description=""))
    conn.connect(0.0)
    conn.transport_opened(0.0)
    engine = FakeEngine()
    engine.receive(conn.data_to_send())
    engine.send(Ping())
    engine.send(
        InvokeFunction(
            function_id="f", data={"é": "ü" * 50, "_caller_worker_id": "w"}, invocation_id="in-1"
        )
    )
    engine.send_fragments(['{"type":"invokefunction","function_id":"f",', '"data":"€€€"}'])
    engine.send(RegisterTrigger(id="b", trigger_type="webhook", function_id="f", config=None))
    engine.send(UnregisterTrigger(id="b"))
    engine.ping(b"p")
    engine.send_json({"type": "observe", "id": "o"})
    engine.close(1001, "bye")
    return conn, engine.take()


def _run(cuts: list[int]) -> tuple[list[Event], int]:
    """Feed a fresh stream cut at ``cuts``; the events and how many bytes were written."""
    conn, stream = _engine_stream()  # fresh: the accept token depends on the client's key
    points = sorted(cuts)
    chunks = [stream[a:b] for a, b in zip([0, *points], [*points, len(stream)], strict=True)]
    written = len(conn.data_to_send())
    for chunk in chunks:
        conn.receive_data(chunk, 0.0)
        written += len(conn.data_to_send())
    return list(conn.events()), written


_STREAM_LENGTH = len(_engine_stream()[1])
_WHOLE = _run([])


def test_the_engine_stream_is_processed_whole() -> None:
    events, _ = _WHOLE
    assert [type(e).__name__ for e in events] == [
        "StateChanged",
        "OpenTransport",
        "StateChanged",
        "Connected",
        "PingReceived",
        "InvocationRequested",
        "InvocationRequested",
        "TriggerRegistrationRequested",
        "TriggerUnregistrationRequested",
        "UnknownFrameReceived",
        "CloseTransport",
        "StateChanged",
    ]
    assert events[5] == InvocationRequested(
        may_hold_channel_refs=False,
        invocation_id="in-1",
        function_id="f",
        data={"é": "ü" * 50},
        caller_worker_id="w",
    )
    assert events[6] == InvocationRequested(
        may_hold_channel_refs=False, invocation_id=None, function_id="f", data="€€€"
    )


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.integers(min_value=0, max_value=_STREAM_LENGTH), max_size=12))
def test_any_chunking_of_the_engine_stream_gives_the_same_result(cuts: list[int]) -> None:
    # Lengths, not bytes, of what was written: WebSocket masking keys are random.
    assert _run(cuts) == _WHOLE


def test_a_held_call_that_times_out_frees_its_place(make: MakePair) -> None:
    pair = make(max_held_calls=2)
    conn = pair.conn
    first = conn.invoke("f", 1, now=0.0, timeout=1.0)
    conn.invoke("f", 2, now=0.0, timeout=5.0)
    assert conn.held_count == 2
    conn.handle_timer(1.0)
    assert next(e for e in conn.events() if isinstance(e, InvocationFailed)).invocation_id == first
    assert conn.held_count == 1
    third = conn.invoke("f", 3, now=1.0)  # room again
    pair.connect()
    engine = pair.open()
    sent = [fr for fr in engine.frames if isinstance(fr, InvokeFunction)]
    assert [fr.data for fr in sent] == [2, 3]
    assert sent[1].invocation_id == third


def test_a_cancelled_held_call_is_not_sent(make: MakePair) -> None:
    pair = make()
    conn = pair.conn
    gone = conn.invoke("f", 1, now=0.0)
    assert gone is not None
    conn.invoke("f", 2, now=0.0)
    assert conn.cancel(gone) is True
    assert conn.cancel(gone) is False
    pair.connect()
    engine = pair.open()
    assert [fr.data for fr in engine.frames if isinstance(fr, InvokeFunction)] == [2]
    assert [e for e in pair.new_events() if isinstance(e, InvocationFailed)] == []


def test_invocations_say_whether_they_can_hold_channel_refs(make: MakePair) -> None:
    pair, _ = connected(make)
    pair.conn.register_function(RegisterFunction(id="f"))
    ref: JSONObject = {"channel_id": "c", "access_key": "k", "direction": "read"}
    pair.send(InvokeFunction(function_id="f", data={"in": [ref]}, invocation_id="in-1"))
    pair.send(InvokeFunction(function_id="f", data={"channel": "id"}, invocation_id="in-2"))
    events = [e for e in pair.new_events() if isinstance(e, InvocationRequested)]
    assert [e.may_hold_channel_refs for e in events] == [True, False]


def test_bytes_queued_for_a_socket_that_closed_itself_are_discarded(make: MakePair) -> None:
    pair, _ = connected(make)
    conn = pair.conn
    conn.invoke("f", 1, now=0.0)  # queued, not yet taken by the transport
    conn.transport_closed(0.0, "reset")
    assert conn.data_to_send() == b""
    # A socket the core drops itself keeps its last words (the Close frame).
    pair.advance(1.0)
    engine = pair.open()
    conn.close()
    assert conn.data_to_send() != b""
    assert engine is not None
