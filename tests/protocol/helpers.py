"""A sans-I/O fake engine wired to a ``Connection`` in memory (no sockets, no clock)."""

from __future__ import annotations

from typing import Optional

from wsproto import ConnectionType, WSConnection
from wsproto import events as ws

from iii_protocol import Connection, decode_frame, encode_frame
from iii_protocol import events as ev
from iii_protocol._frames import Frame, UnknownFrame, WorkerRegistered


class FakeEngine:
    """The server side of one socket: accepts the upgrade, records frames."""

    def __init__(self, *, worker_id: str = "w-1", token: Optional[str] = "t-1",
                 greet: bool = True) -> None:
        self.ws = WSConnection(ConnectionType.SERVER)
        self.worker_id = worker_id
        self.token = token
        self.greet = greet
        self.frames: list[Frame | UnknownFrame] = []
        self.texts: list[str] = []
        self.pings = 0
        self.closed_code: Optional[int] = None
        self.request: Optional[ws.Request] = None
        self.out = bytearray()

    def receive(self, data: bytes) -> None:
        self.ws.receive_data(data)
        for event in self.ws.events():
            if isinstance(event, ws.Request):
                self.request = event
                self.out += self.ws.send(ws.AcceptConnection())
                if self.greet:
                    self.send(WorkerRegistered(worker_id=self.worker_id,
                                               reattach_token=self.token))
            elif isinstance(event, ws.TextMessage):
                self.texts.append(event.data)
                if event.message_finished:
                    text = "".join(self.texts)
                    self.texts.clear()
                    self.frames.append(decode_frame(text))
            elif isinstance(event, ws.Ping):
                self.pings += 1
                self.out += self.ws.send(event.response())
            elif isinstance(event, ws.CloseConnection):
                self.closed_code = event.code
                if self.ws.state.name == "REMOTE_CLOSING":
                    self.out += self.ws.send(event.response())

    def send(self, frame: Frame | UnknownFrame) -> None:
        self.send_text(encode_frame(frame))

    def send_text(self, text: str) -> None:
        self.out += self.ws.send(ws.Message(data=text))

    def take(self) -> bytes:
        out = bytes(self.out)
        self.out.clear()
        return out


class Pair:
    """A Connection and its current FakeEngine; ``pump`` moves bytes both ways."""

    def __init__(self, conn: Connection, *, byte_at_a_time: bool = False) -> None:
        self.conn = conn
        self.engine: Optional[FakeEngine] = None
        self.byte_at_a_time = byte_at_a_time
        self.events: list[ev.Event] = []
        self.now = 0.0
        self.engines = 0

    def open(self, **engine_kwargs: object) -> FakeEngine:
        """Answer the last OpenTransport with a new socket and fake engine."""
        self.engines += 1
        self.engine = FakeEngine(worker_id=f"w-{self.engines}", token=f"t-{self.engines}",
                                 **engine_kwargs)  # type: ignore[arg-type]
        self.conn.transport_opened(self.now)
        self.pump()
        return self.engine

    def feed(self, data: bytes) -> None:
        if self.byte_at_a_time:
            for i in range(len(data)):
                self.conn.receive_data(data[i:i + 1], self.now)
        else:
            self.conn.receive_data(data, self.now)

    def pump(self) -> None:
        for _ in range(50):
            out = self.conn.data_to_send()
            if self.engine is not None and out:
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
        self.events.extend(new)
        return new

    def tick(self, now: float) -> None:
        self.now = now
        self.conn.handle_timer(now)
        self.pump()
