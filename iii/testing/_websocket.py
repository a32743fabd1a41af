"""The server side of one WebSocket: framing, outbox, backpressure.

One task per connection reads; one writer task per connection drains its
outbox, batching everything queued since its last write into one socket send.
Control frames, fragmented messages and protocol errors go through wsproto
(server mode).  The common case -- a complete, unfragmented, masked text or
binary frame -- is unmasked here directly, which is five times cheaper than
wsproto's general frame parser; outgoing data frames are framed here too (a
two-to-ten byte header).
"""

from __future__ import annotations

import logging
import struct
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager, suppress
from typing import Any, Optional, Union

import anyio
import anyio.abc
from wsproto import WSConnection
from wsproto.connection import ConnectionState
from wsproto.events import (
    BytesMessage,
    CloseConnection,
    Ping,
    Pong,
    TextMessage,
)
from wsproto.frame_protocol import CloseReason
from wsproto.utilities import LocalProtocolError

from ._api import MessageHandler
from ._transcript import Transcript

__all__ = ["HIGH_WATER", "LOW_WATER", "WsConn"]

log = logging.getLogger("iii.testing")

#: Outbox above this: senders of requests wait for it to drain (backpressure).
HIGH_WATER = 4 * 1024 * 1024
LOW_WATER = 1024 * 1024
#: How long to wait for the peer's Close after sending ours.
CLOSE_TIMEOUT = 2.0
#: How long to keep flushing after the read side ended.
FLUSH_TIMEOUT = 5.0
_RECEIVE_SIZE = 256 * 1024

_H16 = struct.Struct("!BBH").pack
_H64 = struct.Struct("!BBQ").pack


def _unmask(data: bytes, mask: bytes) -> bytes:
    n = len(data)
    key = (mask * ((n >> 2) + 1))[:n]
    return (int.from_bytes(data, "little") ^ int.from_bytes(key, "little")).to_bytes(n, "little")


def _frame_header(opcode: int, n: int) -> bytes:
    if n < 126:
        return bytes((opcode, n))
    if n < 65536:
        return _H16(opcode, 126, n)
    return _H64(opcode, 127, n)


class _Stop(Exception):
    """The read side is over (Close exchanged, protocol error, size limit)."""


class WsConn:
    """The server side of one WebSocket: framing, outbox, backpressure."""

    def __init__(
        self,
        stream: anyio.abc.ByteStream,
        ws: WSConnection,
        *,
        remote_ip: str,
        label: str,
        transcript: Optional[Transcript],
        congestion: list[Any],
        relieve: Callable[[], Awaitable[None]],
        max_message_size: int,
        max_frame_size: int,
        leftover: bytes = b"",
    ) -> None:
        self.stream = stream
        self.ws = ws
        self.remote_ip = remote_ip
        #: the peer's ``ip:port`` and the upgrade request's headers (lower-case names)
        self.remote_addr = ""
        self.headers: Mapping[str, str] = {}
        self.label = label
        self.transcript = transcript
        self._congestion = congestion
        self._relieve = relieve
        self.max_message_size = max_message_size
        self.max_frame_size = max_frame_size
        self.hard_limit = max(4 * max_message_size, 64 * 1024 * 1024)
        self._leftover = leftover
        self._out: list[bytes] = []
        self._out_size = 0
        self._wake: Optional[anyio.Event] = None
        self._drained: Optional[anyio.Event] = None
        self._closing = False
        self._finished = False
        self._dead = False
        self._writer_done = anyio.Event()
        self._scope: Optional[anyio.CancelScope] = None
        self._read_scope: Optional[anyio.CancelScope] = None
        self._frag: list[Union[str, bytes, bytearray]] = []
        self._frag_size = 0
        self._in_fragment = False
        self.close_code: Optional[int] = None

    # -- sending ---------------------------------------------------------------

    def _push(self, data: bytes, size: int) -> None:
        self._out.append(data)
        self._out_size += size
        wake = self._wake
        if wake is not None:
            self._wake = None
            wake.set()

    def send(self, data: bytes, throttle: bool) -> None:
        """Queue one text message (the engine's ``Transport.send``)."""
        if self._closing:
            return
        n = len(data)
        if n < 126:
            self._out.append(bytes((0x81, n)) + data)
        elif n < 65536:
            self._out.append(_H16(0x81, 126, n))
            self._out.append(data)
        else:
            self._out.append(_H64(0x81, 127, n))
            self._out.append(data)
        self._out_size += n
        if self.transcript is not None:
            self.transcript.record(self.label, "out", "text", data)
        wake = self._wake
        if wake is not None:
            self._wake = None
            wake.set()
        if self._out_size > HIGH_WATER:
            if throttle:
                self._congestion.append(self)
            elif self._out_size > self.hard_limit:
                log.warning(
                    "connection %s is not reading (%d bytes queued); dropping it",
                    self.label,
                    self._out_size,
                )
                self.abort()

    def send_message(self, kind: str, payload: Union[str, bytes]) -> None:
        """Queue a text (``str``) or binary message."""
        if self._closing:
            return
        data = payload.encode() if isinstance(payload, str) else payload
        opcode = 0x81 if kind == "text" else 0x82
        if self.transcript is not None:
            self.transcript.record(self.label, "out", kind, payload)
        self._push(_frame_header(opcode, len(data)), 0)
        self._push(data, len(data))

    def send_raw(self, data: bytes) -> None:
        """Queue bytes exactly as given (fault injection)."""
        if self.transcript is not None:
            self.transcript.record(self.label, "out", "raw", data)
        self._push(data, len(data))

    def send_ping(self, payload: bytes = b"") -> None:
        if self.ws.state is ConnectionState.OPEN and not self._closing:
            if self.transcript is not None:
                self.transcript.record(self.label, "out", "ping", payload)
            self._push(self.ws.send(Ping(payload=payload)), 0)

    async def wait_relieved(self) -> None:
        if self._out_size > LOW_WATER and not self._dead:
            if self._drained is None:
                self._drained = anyio.Event()
            await self._drained.wait()

    def _release_waiters(self) -> None:
        if self._drained is not None:
            self._drained.set()
            self._drained = None

    def close(self, code: Optional[int]) -> None:
        """Send a Close frame (``None``: no status code) and stop reading soon."""
        if self._closing or self._dead:
            return
        self._closing = True
        try:
            data = self.ws.send(
                CloseConnection(code=CloseReason.NO_STATUS_RCVD if code is None else code)
            )
        except LocalProtocolError:
            data = b""
        if self.transcript is not None:
            self.transcript.record(self.label, "out", "close", str(code))
        self._push(data, 0)
        if self._read_scope is not None:
            self._read_scope.deadline = min(
                self._read_scope.deadline, anyio.current_time() + CLOSE_TIMEOUT
            )

    def abort(self) -> None:
        """Drop the TCP connection without a Close frame."""
        if self._dead:
            return
        self._dead = True
        self._closing = True
        self._release_waiters()
        if self._scope is not None:
            self._scope.cancel()

    async def _writer(self) -> None:
        stream = self.stream
        try:
            while True:
                out = self._out
                if not out:
                    if self._finished:
                        return
                    wake = self._wake = anyio.Event()
                    await wake.wait()
                    continue
                self._out = []
                size = self._out_size
                await stream.send(out[0] if len(out) == 1 else b"".join(out))
                self._out_size -= size
                if self._drained is not None and self._out_size <= LOW_WATER:
                    self._release_waiters()
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
            self.abort()
        finally:
            self._writer_done.set()

    # -- receiving -------------------------------------------------------------

    async def read_loop(self, handler: MessageHandler) -> None:
        """Deliver every message to ``handler`` until the socket closes."""
        with anyio.CancelScope() as scope:
            self._read_scope = scope
            if self._closing:
                scope.deadline = anyio.current_time() + CLOSE_TIMEOUT
            with suppress(_Stop):
                await self._read(handler)

    def _fail(self, code: int, reason: str) -> None:
        log.warning("closing connection %s: %s", self.label, reason)
        if not self._closing and self.ws.state is ConnectionState.OPEN:
            self._closing = True
            if self.transcript is not None:
                self.transcript.record(self.label, "out", "close", f"{code} {reason}")
            self._push(self.ws.send(CloseConnection(code=code, reason=reason)), 0)
        raise _Stop

    async def _read(self, handler: MessageHandler) -> None:
        receive = self.stream.receive
        congestion = self._congestion
        transcript = self.transcript
        label = self.label
        max_frame = self.max_frame_size
        leftover = self._leftover
        self._leftover = b""
        chunks: list[bytes] = [leftover] if leftover else []
        have = len(leftover)
        need = 2
        while True:
            while have < need:
                try:
                    chunk = await receive(_RECEIVE_SIZE)
                except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError):
                    return
                except OSError:
                    return
                chunks.append(chunk)
                have += len(chunk)
            buf = chunks[0] if len(chunks) == 1 else b"".join(chunks)
            chunks.clear()
            pos = 0
            end = len(buf)
            while True:
                avail = end - pos
                if avail < 2:
                    need = 2
                    break
                b0 = buf[pos]
                b1 = buf[pos + 1]
                length = b1 & 0x7F
                hlen = 2
                if length == 126:
                    if avail < 4:
                        need = 4
                        break
                    length = (buf[pos + 2] << 8) | buf[pos + 3]
                    hlen = 4
                elif length == 127:
                    if avail < 10:
                        need = 10
                        break
                    length = int.from_bytes(buf[pos + 2 : pos + 10], "big")
                    hlen = 10
                if b1 & 0x80:
                    hlen += 4
                if length > max_frame:
                    self._fail(1009, f"frame of {length} bytes exceeds {max_frame}")
                total = hlen + length
                if avail < total:
                    need = total
                    break
                start = pos + hlen
                stop = pos + total
                if (b0 == 0x81 or b0 == 0x82) and b1 & 0x80 and not self._in_fragment:
                    payload = buf[start:stop]
                    if length:
                        payload = _unmask(payload, buf[start - 4 : start])
                    if b0 == 0x81:
                        try:
                            text = payload.decode()
                        except UnicodeDecodeError:
                            self._fail(1007, "invalid UTF-8 in a text frame")
                        if transcript is not None:
                            transcript.record(label, "in", "text", text)
                        result = handler("text", text)
                    else:
                        if transcript is not None:
                            transcript.record(label, "in", "binary", payload)
                        result = handler("binary", payload)
                    if result is not None:
                        await result
                else:
                    await self._slow_frame(buf[pos:stop], b0, length, handler)
                pos = stop
                if congestion:
                    await self._relieve()
            if pos < end:
                rest = buf[pos:]
                chunks.append(rest)
                have = len(rest)
            else:
                have = 0

    async def _slow_frame(
        self, frame: bytes, b0: int, length: int, handler: MessageHandler
    ) -> None:
        opcode = b0 & 0x0F
        if opcode <= 2:
            self._in_fragment = not b0 & 0x80
            self._frag_size += length
            if self._frag_size > self.max_message_size:
                self._fail(1009, f"message exceeds {self.max_message_size} bytes")
        ws = self.ws
        transcript = self.transcript
        ws.receive_data(frame)
        for event in ws.events():
            if isinstance(event, (TextMessage, BytesMessage)):
                self._frag.append(event.data)
                if not event.message_finished:
                    continue
                self._frag_size = 0
                payload: Union[str, bytes]
                kind: str
                if isinstance(event, TextMessage):
                    kind, payload = "text", "".join(self._frag)  # type: ignore[arg-type]
                else:
                    kind, payload = "binary", b"".join(self._frag)  # type: ignore[arg-type]
                self._frag.clear()
                if transcript is not None:
                    transcript.record(self.label, "in", kind, payload)
                result = handler(kind, payload)
                if result is not None:
                    await result
            elif isinstance(event, Ping):
                if transcript is not None:
                    transcript.record(self.label, "in", "ping", bytes(event.payload))
                if ws.state is ConnectionState.OPEN:
                    self._push(ws.send(event.response()), 0)
            elif isinstance(event, Pong):
                if transcript is not None:
                    transcript.record(self.label, "in", "pong", bytes(event.payload))
            elif isinstance(event, CloseConnection):
                self.close_code = event.code
                if transcript is not None:
                    transcript.record(
                        self.label, "in", "close", f"{int(event.code)} {event.reason or ''}"
                    )
                if ws.state is ConnectionState.REMOTE_CLOSING:
                    self._closing = True
                    if transcript is not None:
                        # int(): on Python 3.10 str() of the IntEnum is its name
                        transcript.record(self.label, "out", "close", str(int(event.code)))
                    self._push(ws.send(event.response()), 0)
                elif ws.state is ConnectionState.OPEN:
                    # wsproto found a protocol error: close with its code.
                    self._fail(event.code, event.reason or "protocol error")
                raise _Stop

    # -- lifetime --------------------------------------------------------------

    @asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Run the writer for the duration of the block; flush at the end."""
        async with anyio.create_task_group() as tg:
            self._scope = tg.cancel_scope
            tg.start_soon(self._writer)
            try:
                yield
            finally:
                self._finished = True
                wake = self._wake
                if wake is not None:
                    self._wake = None
                    wake.set()
                with anyio.move_on_after(FLUSH_TIMEOUT, shield=True):
                    await self._writer_done.wait()
                tg.cancel_scope.cancel()
                self._dead = True
                self._release_waiters()
