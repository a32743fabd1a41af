"""A sans-I/O fake engine wired to a ``Connection`` in memory (no sockets, no clock).

``FakeEngine`` is the server side of one socket: a wsproto SERVER plus our codec.
It accepts (or refuses) the upgrade, greets with ``workerregistered``, records
every message the worker sends (and how many WebSocket fragments it came in),
answers WebSocket pings, and can send frames, raw text, binary messages,
fragmented messages, pings, closes and raw bytes back.

``Pair`` owns a ``Connection`` and the fake engine of its current socket and
moves bytes both ways until both sides are quiet.  It detaches the engine as
soon as the connection drops the transport (after flushing whatever the
connection queued for that socket, e.g. its Close frame), so a dead socket can
never leak bytes into the next one.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Optional, TypeVar

from wsproto import ConnectionType, WSConnection
from wsproto import events as ws
from wsproto.connection import ConnectionState as WSState

from iii_protocol import Connection, ConnectionState, decode_frame, encode_frame
from iii_protocol import events as ev
from iii_protocol._frames import Frame, UnknownFrame, WorkerRegistered

F = TypeVar("F")

_NO_TRANSPORT = (ConnectionState.RECONNECTING, ConnectionState.DISCONNECTED, ConnectionState.FAILED)


class FakeEngine:
    """The server side of one socket: accepts the upgrade, records frames."""

    def __init__(
        self,
        *,
        worker_id: str = "w-1",
        token: Optional[str] = "t-1",
        features: Optional[list[str]] = None,
        greet: bool = True,
        reject_status: Optional[int] = None,
        handshake_bytes: Optional[bytes] = None,
        answer_pings: bool = True,
    ) -> None:
        self.ws = WSConnection(ConnectionType.SERVER)
        self.worker_id = worker_id
        self.token = token
        self.features = features
        self.greet = greet
        self.reject_status = reject_status
        self.handshake_bytes = handshake_bytes
        self.answer_pings = answer_pings
        #: decoded frames, in arrival order
        self.frames: list[Frame | UnknownFrame] = []
        #: the raw JSON text of each message, in arrival order
        self.messages: list[str] = []
        #: how many WebSocket frames each message arrived in
        self.fragments: list[int] = []
        self.binary: list[bytes] = []
        self.pings: list[bytes] = []
        self.pongs: list[bytes] = []
        self.closed_code: Optional[int] = None
        self.request: Optional[ws.Request] = None
        self.out = bytearray()
        self._texts: list[str] = []

    # -- from the worker -------------------------------------------------------

    def receive(self, data: bytes) -> None:
        if not data:
            return
        self.ws.receive_data(data)
        for event in self.ws.events():
            if isinstance(event, ws.Request):
                self.request = event
                if self.reject_status is not None:
                    body = b"refused"
                    self.out += self.ws.send(
                        ws.RejectConnection(
                            status_code=self.reject_status,
                            headers=[(b"content-length", str(len(body)).encode())],
                            has_body=True,
                        )
                    )
                    self.out += self.ws.send(ws.RejectData(data=body, body_finished=True))
                elif self.handshake_bytes is not None:
                    self.out += self.handshake_bytes
                else:
                    self.out += self.ws.send(ws.AcceptConnection())
                    if self.greet:
                        self.send(
                            WorkerRegistered(
                                worker_id=self.worker_id,
                                reattach_token=self.token,
                                features=self.features,
                            )
                        )
            elif isinstance(event, ws.TextMessage):
                self._texts.append(event.data)
                if event.message_finished:
                    text = "".join(self._texts)
                    self.fragments.append(len(self._texts))
                    self._texts.clear()
                    self.messages.append(text)
                    self.frames.append(decode_frame(text))
            elif isinstance(event, ws.BytesMessage):
                self.binary.append(bytes(event.data))
            elif isinstance(event, ws.Ping):
                self.pings.append(bytes(event.payload))
                if self.answer_pings:
                    self.out += self.ws.send(event.response())
            elif isinstance(event, ws.Pong):
                self.pongs.append(bytes(event.payload))
            elif isinstance(event, ws.CloseConnection):
                self.closed_code = event.code
                if self.ws.state is WSState.REMOTE_CLOSING:
                    self.out += self.ws.send(event.response())

    def of(self, cls: type[F]) -> list[F]:
        """The received frames of one class."""
        return [frame for frame in self.frames if isinstance(frame, cls)]

    def json(self) -> list[dict[str, object]]:
        """Every received message as the JSON object it was on the wire."""
        return [json.loads(text) for text in self.messages]

    # -- to the worker ---------------------------------------------------------

    def send(self, frame: Frame | UnknownFrame) -> None:
        self.send_text(encode_frame(frame))

    def send_text(self, text: str) -> None:
        self.out += self.ws.send(ws.Message(data=text))

    def send_json(self, obj: object) -> None:
        self.send_text(json.dumps(obj))

    def send_fragments(self, parts: list[str]) -> None:
        for i, part in enumerate(parts):
            self.out += self.ws.send(ws.Message(data=part, message_finished=i == len(parts) - 1))

    def send_bytes(self, data: bytes, *, parts: int = 1) -> None:
        step = max(1, len(data) // parts)
        chunks = [data[i : i + step] for i in range(0, len(data), step)] or [b""]
        for i, chunk in enumerate(chunks):
            self.out += self.ws.send(ws.Message(data=chunk, message_finished=i == len(chunks) - 1))

    def ping(self, payload: bytes = b"engine") -> None:
        self.out += self.ws.send(ws.Ping(payload=payload))

    def pong(self, payload: bytes = b"unsolicited") -> None:
        self.out += self.ws.send(ws.Pong(payload=payload))

    def close(self, code: int = 1000, reason: str = "") -> None:
        self.out += self.ws.send(ws.CloseConnection(code=code, reason=reason))

    def raw(self, data: bytes) -> None:
        self.out += data

    def take(self) -> bytes:
        out = bytes(self.out)
        self.out.clear()
        return out


class Pair:
    """A Connection and its current FakeEngine; ``pump`` moves bytes both ways."""

    def __init__(self, conn: Connection, *, byte_at_a_time: bool = False) -> None:
        self.conn = conn
        #: the engine of the live socket, None when there is none
        self.engine: Optional[FakeEngine] = None
        #: every engine ever opened, in order
        self.engines: list[FakeEngine] = []
        self.byte_at_a_time = byte_at_a_time
        self.events: list[ev.Event] = []
        self.now = 0.0
        self._seen = 0

    # -- driving ---------------------------------------------------------------

    def connect(self) -> list[ev.Event]:
        self.conn.connect(self.now)
        return self.new_events()

    def open(self, **engine_kwargs: object) -> FakeEngine:
        """Answer the last OpenTransport with a new socket and fake engine."""
        n = len(self.engines) + 1
        kwargs: dict[str, object] = {"worker_id": f"w-{n}", "token": f"t-{n}"}
        kwargs.update(engine_kwargs)
        engine = FakeEngine(**kwargs)  # type: ignore[arg-type]
        self.engines.append(engine)
        self.engine = engine
        self.conn.transport_opened(self.now)
        self.pump()
        return engine

    def feed(self, data: bytes) -> None:
        if self.byte_at_a_time:
            for i in range(len(data)):
                self.conn.receive_data(data[i : i + 1], self.now)
        else:
            self.conn.receive_data(data, self.now)

    def pump(self) -> None:
        for _ in range(100):
            out = self.conn.data_to_send()
            if out:
                # The connection must never write without a live socket.
                assert self.engine is not None, f"bytes to send with no transport: {out!r}"
                self.engine.receive(out)
            back = self.engine.take() if self.engine is not None else b""
            if back:
                self.feed(back)
            self.drain()
            if not out and not back:
                return
        raise AssertionError("pump did not settle")

    def drain(self) -> list[ev.Event]:
        new = list(self.conn.events())
        for event in new:
            self.events.append(event)
            if isinstance(event, ev.CloseTransport) and self.engine is not None:
                # The Close frame (if any) is the last thing for this socket.
                self.engine.receive(self.conn.data_to_send())
                self.engine = None
            elif isinstance(event, ev.StateChanged) and event.new in _NO_TRANSPORT:
                self.engine = None
        return new

    def new_events(self) -> list[ev.Event]:
        """Events produced since the last call (after draining the connection)."""
        self.drain()
        new = self.events[self._seen :]
        self._seen = len(self.events)
        return new

    def tick(self, now: float) -> None:
        self.now = now
        self.conn.handle_timer(now)
        self.pump()

    def advance(self, to: float) -> None:
        """Run every timer due up to ``to``, in order, then stop at ``to``."""
        for _ in range(10_000):
            t = self.conn.get_timer()
            if t is None or t > to:
                break
            self.tick(max(t, self.now))
        else:
            raise AssertionError("timers never settle")
        self.tick(to)

    def drop(self, reason: str = "connection reset") -> None:
        """The socket died under the connection."""
        self.conn.transport_closed(self.now, reason)
        self.pump()

    def send(self, frame: Frame | UnknownFrame) -> None:
        assert self.engine is not None
        self.engine.send(frame)
        self.pump()

    # -- reading ---------------------------------------------------------------

    def of(self, cls: type[F]) -> list[F]:
        return [event for event in self.events if isinstance(event, cls)]


def counter_ids(prefix: str = "id") -> Callable[[], str]:
    """Deterministic invocation ids: id-1, id-2, ..."""
    n = 0

    def new_id() -> str:
        nonlocal n
        n += 1
        return f"{prefix}-{n}"

    return new_id
