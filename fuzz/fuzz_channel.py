"""Fuzz a channel socket: an ``iii_protocol.ChannelConnection`` fed arbitrary engine bytes.

Input layout (so that libFuzzer mutations stay meaningful):

* byte 0, flags: ``1``: a writer's socket (else a reader's).  ``2``: the bytes
  arrive after the upgrade (a correct ``101`` first); else they are the
  engine's answer to the upgrade (``@@ACCEPT@@`` is replaced by the right
  ``Sec-WebSocket-Accept``).  ``4``: the rest (after the HTTP head, if any)
  is a list of messages separated by ``FF FF``, each sent in a text frame
  (``8``: binary frames); ``16``: each message in up to three fragments with
  a ping between them.  ``32``: the app closes the socket after the first
  read.  ``64``: between reads the app sends an item and takes the events.
  ``128``: the stream breaks at the end (``transport_failed``) instead of
  ending (``b""``).
* byte 1: read size (0 = everything at once).
* the rest: the bytes (or messages).

Invariants: ``receive_data`` and ``transport_failed`` never raise; every other
call raises only its documented errors, exactly in the states the docs say;
every state change is a row of ``CHANNEL_TRANSITIONS`` and a final state is
final; events come in order (``ChannelOpened`` once and first, messages only
while reading, ``ChannelEnded``/``ChannelClosed`` only in their state, the
failure only when ``FAILED``); no item is over the limit; what the client
writes is one upgrade request, then valid masked frames (what the app sent,
pongs, at most one Close) and nothing after the Close or once finished.

    python fuzz/fuzz_channel.py -max_total_time=60
"""

from __future__ import annotations

import re
from typing import Optional, Union

from _inputs import SEPARATOR as SEPARATOR  # re-exported: the tests frame with it
from _inputs import framed, reads
from wsproto.frame_protocol import FrameProtocol, Opcode, ParseFailed

from iii_protocol import (
    CHANNEL_TRANSITIONS,
    NEED_DATA,
    ChannelClosed,
    ChannelConnection,
    ChannelEnded,
    ChannelError,
    ChannelMessage,
    ChannelOpened,
    ChannelState,
    LocalProtocolError,
    StreamChannelRef,
)
from iii_protocol.strategies import accept_key

LIMIT = 1024
ACCEPT = b"@@ACCEPT@@"
URL = "ws://engine.test:49134/iii/?t=1"
TARGET = b"/iii/ws/channels/c-1?t=1&key=k%2F1&dir="
_KEY = re.compile(rb"\r\nsec-websocket-key: *([^\r]*)\r\n", re.IGNORECASE)

S = ChannelState
_FINAL = (S.ENDED, S.CLOSED, S.FAILED)


def _reachable() -> set[tuple[ChannelState, ChannelState]]:
    """(old, new) pairs joined by one or more rows of the table (one call may
    take several: the 101 and the engine's Close can arrive in one read)."""
    pairs = {(old, new) for (old, _), new in CHANNEL_TRANSITIONS.items()}
    while True:
        more = {(a, d) for a, b in pairs for c, d in pairs if b is c} - pairs
        if not more:
            return pairs
        pairs |= more


_LEGAL = _reachable()

Item = Union[str, bytes]


class _Engine:
    """What the engine end of the socket sees of the client's bytes."""

    def __init__(self, direction: str) -> None:
        self.direction = direction
        self.key: Optional[bytes] = None
        self.frames: Optional[FrameProtocol] = None
        self.closed = False
        self.items: list[Item] = []
        self._parts: list[Item] = []

    def receive(self, data: bytes) -> None:
        assert not self.closed, f"the client wrote after its Close frame: {data!r}"
        if self.key is None:
            # The first write is the whole upgrade request.
            head, sep, rest = data.partition(b"\r\n\r\n")
            assert sep and not rest, f"not one upgrade request: {data!r}"
            assert head.startswith(b"GET " + TARGET + self.direction.encode() + b" HTTP/1.1\r\n")
            match = _KEY.search(head + b"\r\n")
            assert match is not None, head
            self.key = match.group(1)
            return
        if self.frames is None:
            self.frames = FrameProtocol(client=False, extensions=[])
        self.frames.receive_bytes(data)
        try:
            for frame in self.frames.received_frames():
                self._on_frame(frame.opcode, frame.payload, frame.message_finished)
        except ParseFailed as exc:
            raise AssertionError(f"the client wrote invalid WebSocket data: {exc}") from None

    def _on_frame(self, opcode: Opcode, payload: object, finished: bool) -> None:
        assert not self.closed, f"a frame after the Close: {opcode!r}"
        if opcode is Opcode.CLOSE:
            self.closed = True
            return
        if opcode is Opcode.PONG:
            return
        assert opcode is not Opcode.PING, "the client does not ping"
        assert self.direction == "write", "a reader sends no items"
        assert isinstance(payload, (str, bytes, bytearray))
        self._parts.append(payload if isinstance(payload, str) else bytes(payload))
        if finished:
            parts, self._parts = self._parts, []
            if isinstance(parts[0], str):
                self.items.append("".join(p for p in parts if isinstance(p, str)))
            else:
                self.items.append(b"".join(p for p in parts if isinstance(p, bytes)))

    def answer(self) -> bytes:
        assert self.key is not None
        return (
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Accept: "
            + accept_key(self.key).encode()
            + b"\r\n\r\n"
        )


class _Session:
    def __init__(self, direction: str) -> None:
        ref = StreamChannelRef(channel_id="c-1", access_key="k/1", direction=direction)  # type: ignore[arg-type]
        self.conn = ChannelConnection(
            URL, ref, headers=(("Authorization", "Bearer t"),), max_message_size=LIMIT
        )
        self.engine = _Engine(direction)
        self.direction = direction
        self.state = S.IDLE
        self.opened = False
        self.closing = False  # the app called close()
        self.sent: list[Item] = []
        self.received: list[Item] = []

    def check_state(self) -> None:
        new = self.conn.state
        if new is not self.state:
            assert self.state not in _FINAL, f"{self.state} is final, now {new}"
            assert (self.state, new) in _LEGAL, f"{self.state} -> {new} follows no rows"
            self.state = new
        assert (self.conn.error is not None) is (new is S.FAILED)
        assert self.conn.finished is (new in _FINAL)
        assert self.conn._size <= LIMIT

    def flush(self) -> None:
        out = self.conn.data_to_send()
        if out:
            self.engine.receive(out)
        self.check_state()

    def feed(self, data: bytes) -> None:
        self.conn.receive_data(data)  # never raises
        self.flush()

    def take_events(self) -> None:
        for _ in range(10_000):
            try:
                event = self.conn.next_event()
            except ChannelError as exc:
                assert self.state is S.FAILED and exc is self.conn.error
                return
            if event is NEED_DATA:
                assert self.state in (S.CONNECTING, S.OPEN, S.CLOSING), self.state
                return
            if isinstance(event, ChannelOpened):
                assert not self.opened, "opened twice"
                self.opened = True
            elif isinstance(event, ChannelMessage):
                assert self.opened, "a message before the socket opened"
                assert not self.closing, "a message after close()"
                data = event.data
                assert isinstance(data, (str, bytes))
                size = len(data.encode()) if isinstance(data, str) else len(data)
                assert size <= LIMIT, size
                self.received.append(data)
            elif isinstance(event, ChannelEnded):
                assert self.state is S.ENDED and event.code in (1000, 1005)
                return
            else:
                assert isinstance(event, ChannelClosed)
                assert self.state is S.CLOSED and self.closing
                return
        raise AssertionError("events never end")

    def close(self) -> None:
        try:
            self.conn.close(1000, "done")
        except LocalProtocolError:
            assert self.state in (S.IDLE, S.CONNECTING), self.state
            return
        self.closing = True
        self.flush()

    def send(self, i: int) -> None:
        item: Item = f"item {i}" if i % 2 else bytes([i % 256]) * (i % 7)
        state = self.state
        try:
            self.conn.send(item)
        except ChannelError as exc:
            assert state in (S.FAILED, S.ENDED), state
            assert state is S.ENDED or exc is self.conn.error
        except LocalProtocolError:
            assert self.direction == "read" or state in (S.CONNECTING, S.CLOSING, S.CLOSED)
        else:
            assert self.direction == "write" and state is S.OPEN
            self.sent.append(item)
        self.flush()


def _messages(payload: bytes, flags: int) -> bytes:
    return b"".join(framed(payload, binary=bool(flags & 8), fragmented=bool(flags & 16)))


def TestOneInput(data: bytes) -> None:
    if len(data) < 2:
        return
    flags, size, payload = data[0], data[1], data[2:]
    s = _Session("write" if flags & 1 else "read")
    conn = s.conn
    conn.start()
    s.flush()
    if flags & 2:
        s.feed(s.engine.answer())
        s.take_events()
        assert s.opened and s.state is S.OPEN
        if flags & 4:
            payload = _messages(payload, flags)
    else:
        assert s.engine.key is not None
        payload = payload.replace(ACCEPT, accept_key(s.engine.key).encode())
        head_end = payload.find(b"\r\n\r\n")
        if head_end >= 0 and flags & 4:
            rest = payload[head_end + 4 :]
            payload = payload[: head_end + 4] + _messages(rest, flags)
    for i, chunk in enumerate(reads(payload, size)):
        s.feed(chunk)
        if flags & 64:
            s.send(i)
        if flags & 64 or i % 4 == 0:
            s.take_events()
        if flags & 32 and i == 0:
            s.close()
    if flags & 128:
        conn.transport_failed("connection to the engine lost: reset")
    else:
        conn.receive_data(b"")
    s.flush()
    s.take_events()
    # The socket is over: a final state, nothing more to write, whatever arrives.
    assert conn.finished, conn.state
    conn.receive_data(b"late bytes")
    assert conn.transport_failed("late") is conn.error
    assert conn.data_to_send() == b""
    s.check_state()
    assert s.engine.items == s.sent  # every item the app sent, whole and in order


if __name__ == "__main__":
    from _harness import main

    main("channel", TestOneInput, ("iii_protocol", "wsproto", "h11"))
