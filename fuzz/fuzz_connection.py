"""Fuzz the worker side: an ``iii_protocol.Connection`` fed arbitrary engine bytes.

Input layout (so that libFuzzer mutations stay meaningful):

* byte 0, flags: ``& 3`` is the state the bytes arrive in: 0 = during the HTTP
  upgrade (the bytes are the engine's answer; ``@@ACCEPT@@`` is replaced by
  the right ``Sec-WebSocket-Accept``), 1 = upgraded but not yet greeted,
  2 = connected (registrations replayed, one call pending, one invocation
  running), 3 = connected again after a reconnect.  ``4``: the rest is a list
  of messages separated by ``FF FF``, each sent in a text frame (``16``: binary
  frames); ``8``: each message in up to three fragments with a ping between
  them.  ``32``: afterwards, run the timers for a while (timeouts, keep-alive,
  reconnects, with a well-behaved engine answering).  ``64``: afterwards,
  reconnect to a well-behaved engine and check the session recovers.
  ``128``: between reads the app issues commands (invoke, register, unregister,
  cancel, re-register a trigger type), whatever the state.
* byte 1: read size (0 = everything at once).
* the rest: the bytes (or messages).

Invariants: no method raises anything but its documented errors (``receive_data``,
``handle_timer``, ``transport_*`` never raise; ``send_result`` only for an
invocation not awaiting a result, which never happens here); everything the
worker writes is valid masked WebSocket, each text message a frame a worker
may send, nothing after a Close, nothing without a socket; after a session
failure no event; every call gets exactly one outcome by ``close()``; a clean
engine gets every registration exactly once per connection; buffers stay
under the configured limits.

    python fuzz/fuzz_connection.py -max_total_time=60
"""

from __future__ import annotations

import re
from typing import Optional

from _inputs import SEPARATOR as SEPARATOR  # re-exported: the tests frame with it
from _inputs import framed, reads
from wsproto.frame_protocol import FrameProtocol, Opcode, ParseFailed

from iii_protocol import (
    ANNOUNCE_FUNCTION_ID,
    Config,
    Connection,
    ConnectionFailed,
    ConnectionState,
    HeldCallsFull,
    HttpInvocationRef,
    InvokeFunction,
    Reattach,
    ReconnectPolicy,
    RegisterFunction,
    RegisterTrigger,
    RegisterTriggerType,
    SocketPhase,
    WorkerRegistered,
    decode_frame,
    encode_frame,
)
from iii_protocol import events as ev
from iii_protocol.strategies import (
    WORKER_TO_ENGINE,
    accept_key,
    ws_frame,
)

LIMIT = 2048
ACCEPT = b"@@ACCEPT@@"
_KEY = re.compile(rb"\r\nsec-websocket-key: *([^\r]*)\r\n", re.IGNORECASE)
_NO_SOCKET = (ConnectionState.RECONNECTING, ConnectionState.DISCONNECTED, ConnectionState.FAILED)

CONFIG = Config(
    url="ws://engine.test:49134/",
    max_message_size=LIMIT,
    fragment_threshold=LIMIT // 2,
    fragment_size=256,
    invocation_timeout=5.0,
    connect_timeout=3.0,
    ping_interval=2.0,
    idle_timeout=6.0,
    max_held_calls=4,
    reconnect=ReconnectPolicy(initial_delay=0.5, max_delay=1.0, jitter=0.0, max_retries=3),
    announce={"name": "fuzz", "pid": 1},
)


class _Socket:
    """What the engine end of one socket sees of the worker's bytes."""

    def __init__(self) -> None:
        self.key: Optional[bytes] = None
        self.frames: Optional[FrameProtocol] = None
        self.closed = False
        self.messages: list[object] = []
        self._parts: list[str] = []
        self._binary = False

    def upgraded(self) -> None:
        self.frames = FrameProtocol(client=False, extensions=[])

    def receive(self, data: bytes) -> None:
        assert not self.closed, f"worker wrote after its Close frame: {data!r}"
        if self.key is None:
            # The first write is the whole upgrade request; everything after it
            # is WebSocket frames (nothing is written before the answer).
            head, sep, rest = data.partition(b"\r\n\r\n")
            assert sep and not rest, f"not one upgrade request: {data!r}"
            assert head.startswith(b"GET / HTTP/1.1\r\n"), head
            match = _KEY.search(head + b"\r\n")
            assert match is not None, head
            self.key = match.group(1)
            return
        if self.frames is None:
            self.upgraded()
        assert self.frames is not None
        self.frames.receive_bytes(data)
        try:
            for frame in self.frames.received_frames():
                self._on_frame(frame.opcode, frame.payload, frame.message_finished)
        except ParseFailed as exc:
            raise AssertionError(f"worker wrote invalid WebSocket data: {exc}") from None

    def _on_frame(self, opcode: Opcode, payload: object, finished: bool) -> None:
        if opcode is Opcode.CLOSE:
            self.closed = True
            return
        if opcode in (Opcode.PING, Opcode.PONG):
            return
        assert opcode is not Opcode.BINARY, "a worker sends text frames only"
        assert isinstance(payload, str)
        self._parts.append(payload)
        if finished:
            text = "".join(self._parts)
            self._parts.clear()
            frame = decode_frame(text)  # raises if the worker wrote a bad frame
            assert isinstance(frame, WORKER_TO_ENGINE), f"a worker does not send {frame!r}"
            self.messages.append(frame)


class _Session:
    def __init__(self) -> None:
        self.n = 0
        self.conn = Connection(CONFIG, random=lambda: 0.5, new_id=self._new_id)
        self.now = 0.0
        self.socket: Optional[_Socket] = None
        self.sockets: list[_Socket] = []
        self.state = ConnectionState.DISCONNECTED
        self.failed = False
        self.calls: dict[str, int] = {}  # our outbound calls -> outcomes seen
        self.open_requested = False
        #: invocations the app answers only at the end (to be orphaned, maybe)
        self.deferred: list[ev.InvocationRequested] = []
        self.defer = False

    def _new_id(self) -> str:
        self.n += 1
        return f"id-{self.n}"

    # -- moving bytes and events ------------------------------------------------

    def flush(self) -> None:
        out = self.conn.data_to_send()
        if out:
            assert self.socket is not None, f"bytes with no socket: {out!r}"
            self.socket.receive(out)

    def step(self) -> list[ev.Event]:
        """Collect output and events; answer invocations and bindings like an app."""
        handled: list[ev.Event] = []
        for _ in range(100):
            self.flush()
            batch = list(self.conn.events())
            if not batch:
                return handled
            for event in batch:
                self._check(event)
                handled.append(event)
        raise AssertionError("events never settle")

    def _check(self, event: ev.Event) -> None:
        conn = self.conn
        assert not self.failed, f"event after the session failed: {event!r}"
        if isinstance(event, ev.StateChanged):
            assert event.old is self.state, (event, self.state)
            self.state = event.new
            if event.new in _NO_SOCKET:
                self.flush()
                self.socket = None
        elif isinstance(event, ev.CloseTransport):
            self.flush()
            self.socket = None
        elif isinstance(event, ev.OpenTransport):
            assert self.socket is None
            self.open_requested = True
        elif isinstance(event, ev.ConnectionFailedEvent):
            self.failed = True
        elif isinstance(event, (ev.InvocationSucceeded, ev.InvocationFailed)):
            if event.invocation_id in self.calls:
                self.calls[event.invocation_id] += 1
                assert self.calls[event.invocation_id] == 1, f"two outcomes: {event!r}"
        elif isinstance(event, ev.InvocationRequested):
            if event.invocation_id is not None and self.defer:
                self.deferred.append(event)
            elif event.invocation_id is not None:
                sent = conn.send_result(event.invocation_id, event.function_id, event.data)
                assert isinstance(sent, bool)
        elif isinstance(event, ev.TriggerRegistrationRequested):
            b = event.binding
            conn.send_trigger_registration_result(b.id, b.trigger_type, b.function_id)
        assert conn.state is not None
        # Bounded buffers, whatever arrived.
        assert conn._framing.buffered <= CONFIG.max_message_size
        assert conn.held_count <= CONFIG.max_held_calls
        assert conn.pending_count <= len(self.calls)

    # -- the engine's side of a socket -------------------------------------------

    def open_socket(self) -> _Socket:
        assert self.open_requested, "no OpenTransport to answer"
        self.open_requested = False
        sock = _Socket()
        self.socket = sock
        self.sockets.append(sock)
        self.conn.transport_opened(self.now)
        self.flush()
        assert sock.key is not None, "no upgrade request"
        return sock

    def answer(self, sock: _Socket) -> bytes:
        """A correct 101 answer to the socket's upgrade request."""
        assert sock.key is not None
        return (
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Accept: "
            + accept_key(sock.key).encode()
            + b"\r\n\r\n"
        )

    def feed(self, data: bytes) -> None:
        self.conn.receive_data(data, self.now)
        self.step()

    def clean_connect(self, greet: bool = True) -> _Socket:
        """Open a socket to a well-behaved engine; upgrade; greet."""
        sock = self.open_socket()
        sock.upgraded()
        self.feed(self.answer(sock))
        assert self.conn.socket_phase is SocketPhase.OPEN
        if greet:
            n = len(self.sockets)
            previous = self.conn.worker_id
            self.feed(_text(WorkerRegistered(worker_id=f"w-{n}", reattach_token=f"t-{n}")))
            if self.socket is sock and self.state is ConnectionState.CONNECTED:
                self._check_replay(sock, previous)
        return sock

    def _check_replay(self, sock: _Socket, previous: Optional[str]) -> None:
        frames = list(sock.messages)
        if previous is not None:
            first = frames.pop(0)
            assert isinstance(first, Reattach) and first.previous_worker_id == previous
        announce = frames.pop(0)
        assert isinstance(announce, InvokeFunction)
        assert announce.function_id == ANNOUNCE_FUNCTION_ID
        conn = self.conn
        replayed = [f for f in frames if isinstance(f, (RegisterFunction, RegisterTriggerType))]
        bindings = [f for f in frames if isinstance(f, RegisterTrigger)]
        expected = [*conn.trigger_types.values(), *conn.functions.values()]
        assert replayed == expected, (replayed, expected)
        assert bindings == list(conn.triggers.values())

    def run_timers(self, until: float, engine_ok: bool) -> None:
        for _ in range(200):
            t = self.conn.get_timer()
            if t is None or t > until:
                break
            self.now = max(self.now, t)
            self.conn.handle_timer(self.now)
            self.step()
            if self.open_requested:
                if engine_ok:
                    self.clean_connect()
                else:
                    self.open_socket()
        self.now = max(self.now, until)
        self.conn.handle_timer(self.now)
        self.step()


def _text(frame: object) -> bytes:
    return ws_frame(encode_frame(frame).encode())  # type: ignore[arg-type]


def _messages(payload: bytes, flags: int) -> bytes:
    return b"".join(framed(payload, binary=bool(flags & 16), fragmented=bool(flags & 8)))


def _setup(s: _Session, mode: int) -> None:
    conn = s.conn
    conn.register_trigger_type(RegisterTriggerType(id="tt", description="a trigger type"))
    conn.register_function(RegisterFunction(id="f"))
    conn.register_function(
        RegisterFunction(id="h", invocation=HttpInvocationRef(url="http://example.test/h"))
    )
    conn.register_trigger(RegisterTrigger(id="b1", trigger_type="tt", function_id="f", config={}))
    held = conn.invoke("g", {"held": True}, now=s.now)  # id-1, sent after the replay
    assert held is not None
    s.calls[held] = 0
    conn.connect(s.now)
    s.step()
    if mode == 0:
        s.open_socket()
        return
    sock = s.clean_connect(greet=mode >= 2)
    if mode == 1:
        return
    sent = conn.invoke("g", [1, 2, 3], now=s.now)  # id-3 (the announce was id-2)
    assert sent is not None
    s.calls[sent] = 0
    s.step()
    # One invocation running in the worker, to be orphaned or answered.
    request = InvokeFunction(function_id="f", data={"x": 1}, invocation_id="in-1")
    s.defer = True
    conn.receive_data(ws_frame(encode_frame(request).encode()), s.now)
    events = s.step()
    s.defer = False
    assert any(isinstance(e, ev.InvocationRequested) for e in events), events
    assert sock.messages, "the replay reached the engine"
    if mode == 3:
        conn.transport_closed(s.now, "the engine went away")
        s.step()
        s.run_timers(s.now + 2.0, engine_ok=True)
        assert s.state is ConnectionState.CONNECTED, s.state


def _command(s: _Session, i: int) -> None:
    """One app command, as apps issue them at any time; only documented errors."""
    conn = s.conn
    kind = i % 5
    try:
        if kind == 0:
            invocation_id = conn.invoke("g", {"i": i}, now=s.now, timeout=1.0)
            if invocation_id is not None:
                s.calls[invocation_id] = 0
        elif kind == 1:
            conn.register_function(RegisterFunction(id=f"r{i % 3}"))
        elif kind == 2:
            if "r0" in conn.functions:
                conn.unregister_function("r0")
        elif kind == 3:
            pending = [k for k, n in s.calls.items() if n == 0]
            if pending and conn.cancel(pending[-1]):
                s.calls[pending[-1]] = 1  # the caller gave up: no event comes
        else:
            conn.register_trigger_type(RegisterTriggerType(id="tt", description=f"v{i}"))
    except (ConnectionFailed, HeldCallsFull):
        assert s.failed or conn.held_count >= CONFIG.max_held_calls
    s.step()


def TestOneInput(data: bytes) -> None:
    if len(data) < 2:
        return
    flags, size, payload = data[0], data[1], data[2:]
    mode = flags & 3
    s = _Session()
    _setup(s, mode)
    sock = s.socket
    if mode == 0 and sock is not None:
        assert sock.key is not None
        payload = payload.replace(ACCEPT, accept_key(sock.key).encode())
        head_end = payload.find(b"\r\n\r\n")
        if head_end >= 0 and flags & 4:
            # The head goes as is; what follows is a list of messages.
            rest = payload[head_end + 4 :]
            payload = payload[: head_end + 4] + _messages(rest, flags)
    elif flags & 4:
        payload = _messages(payload, flags)
    for i, chunk in enumerate(reads(payload, size)):
        s.now += 0.001
        s.conn.receive_data(chunk, s.now)
        s.step()
        if flags & 128:
            _command(s, i)
    for request in s.deferred:
        assert request.invocation_id is not None
        sent = s.conn.send_result(request.invocation_id, request.function_id, "late")
        assert isinstance(sent, bool)
    if flags & 32:
        s.run_timers(s.now + 40.0, engine_ok=bool(flags & 64))
    if flags & 64 and not s.failed:
        if s.state is ConnectionState.CONNECTED:
            s.conn.transport_closed(s.now, "dropped")
            s.step()
        if s.state is ConnectionState.CONNECTING and s.socket is not None:
            s.conn.transport_closed(s.now, "dropped")
            s.step()
        s.run_timers(s.now + 2.0, engine_ok=True)
        assert s.state is ConnectionState.CONNECTED or s.failed, s.state
    s.conn.close()
    s.step()
    assert s.conn.pending_count == 0
    assert s.conn.held_count == 0
    assert all(count == 1 for count in s.calls.values()), s.calls
    assert s.conn.data_to_send() == b""


if __name__ == "__main__":
    from _harness import main

    main("connection", TestOneInput, ("iii_protocol", "wsproto", "h11"))
