"""Sockets: the anyio TCP listener, the HTTP upgrade, WebSocket framing, the
three routes (``/``, ``/otel``, ``/ws/channels/{id}``) and the public ``Engine``
handle with its test controls.

One task per connection reads; one writer task per connection drains its
outbox, batching everything queued since its last write into one socket send.
The HTTP upgrade, control frames, fragmented messages and protocol errors go
through wsproto (server mode).  The common case -- a complete, unfragmented,
masked text or binary frame -- is unmasked here directly, which is five times
cheaper than wsproto's general frame parser; outgoing data frames are framed
here too (a two-to-ten byte header).
"""

from __future__ import annotations

import itertools
import logging
import struct
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager, suppress
from typing import Any, Optional, Union

import anyio
import anyio.abc
from anyio.abc import SocketAttribute
from wsproto import ConnectionType, WSConnection
from wsproto.connection import ConnectionState
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Ping,
    Pong,
    RejectConnection,
    RejectData,
    Request,
    TextMessage,
)
from wsproto.frame_protocol import CloseReason
from wsproto.utilities import LocalProtocolError, RemoteProtocolError

from iii_protocol import ErrorBody, ErrorFrame, Frame, UnknownFrame, encode_frame
from iii_protocol._json import JSON, JSONObject, dumps

from ._channels import serve_reader, serve_writer
from ._engine import EngineCore, EngineOptions, ResultRule, Worker, new_id
from ._options import check_options
from ._rbac import AuthResultError, RbacConfig, RbacLike, Session, as_rbac, parse_auth_result
from ._transcript import DEFAULT_TRANSCRIPT_LIMIT, Transcript

__all__ = ["DEFAULT_PORT", "Engine", "serve_engine"]

log = logging.getLogger("iii.testing")

DEFAULT_PORT = 49134
MAX_MESSAGE_SIZE = 64 * 1024 * 1024
MAX_FRAME_SIZE = 16 * 1024 * 1024
#: Outbox above this: senders of requests wait for it to drain (backpressure).
HIGH_WATER = 4 * 1024 * 1024
LOW_WATER = 1024 * 1024
#: How long to wait for the peer's Close after sending ours.
CLOSE_TIMEOUT = 2.0
#: How long to keep flushing after the read side ended.
FLUSH_TIMEOUT = 5.0
_RECEIVE_SIZE = 256 * 1024
_MAX_HEAD = 64 * 1024
_TELEMETRY_PREFIXES = (b"OTLP", b"MTRC", b"LOGS")

_H16 = struct.Struct("!BBH").pack
_H64 = struct.Struct("!BBQ").pack

MessageHandler = Callable[[str, Union[str, bytes]], Optional[Awaitable[None]]]


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
                        self.label, "in", "close", f"{event.code} {event.reason or ''}"
                    )
                if ws.state is ConnectionState.REMOTE_CLOSING:
                    self._closing = True
                    if transcript is not None:
                        transcript.record(self.label, "out", "close", str(event.code))
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


# -- the handshake ---------------------------------------------------------------


def _http_response(ws: WSConnection, status: int, body: bytes) -> bytes:
    return ws.send(
        RejectConnection(
            status_code=status,
            headers=[
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"content-length", str(len(body)).encode()),
            ],
            has_body=True,
        )
    ) + ws.send(RejectData(data=body))


def _parse_headers(head: bytes) -> dict[str, str]:
    headers: dict[str, str] = {}
    for line in head.split(b"\r\n")[1:]:
        if b":" not in line:
            continue
        name, _, value = line.partition(b":")
        key = name.strip().lower().decode("latin-1")
        text = value.strip().decode("latin-1")
        headers[key] = f"{headers[key]}, {text}" if key in headers else text
    return headers


class _Listener:
    def __init__(self, name: str, host: str, port: int, rbac: Optional[RbacConfig]) -> None:
        self.name = name
        self.host = host
        self.port = port
        self.rbac = rbac
        self.sockets: list[anyio.abc.SocketListener] = []

    @property
    def url(self) -> str:
        host = self.host
        if ":" in host:
            host = f"[{host}]"
        return f"ws://{host}:{self.port}"


class AuthFailure(Exception):
    pass


# -- the public handle -----------------------------------------------------------


class Engine:
    """A running reference engine: its URL, introspection and test controls.

    Get one from ``serve_engine`` (async) or ``EngineThread`` (sync).  All
    methods must be called from the engine's event loop (``EngineThread``
    wraps them for other threads).
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        rbac: Optional[RbacLike] = None,
        rbac_port: int = 0,
        transcript: bool = True,
        transcript_limit: Optional[int] = DEFAULT_TRANSCRIPT_LIMIT,
        max_message_size: int = MAX_MESSAGE_SIZE,
        max_frame_size: int = MAX_FRAME_SIZE,
        handshake_timeout: float = 10.0,
        options: Optional[EngineOptions] = None,
    ) -> None:
        self.host = host
        self._listeners = [_Listener("main", host, port, None)]
        rbac_config = as_rbac(rbac)
        if rbac_config is not None:
            self._listeners.append(_Listener("rbac", host, rbac_port, rbac_config))
        self.options = options or EngineOptions()
        self._transcript: Optional[Transcript] = (
            Transcript(transcript_limit) if transcript else None
        )
        self.max_message_size = max_message_size
        self.max_frame_size = min(max_frame_size, max_message_size)
        self.handshake_timeout = handshake_timeout
        self._rules: list[ResultRule] = []
        self._core: Optional[EngineCore] = None
        self._tg: Optional[anyio.abc.TaskGroup] = None
        self._gen_scope: Optional[anyio.CancelScope] = None
        self._gen_done: Optional[anyio.Event] = None
        self._conns: set[WsConn] = set()
        self._workers_by_conn: dict[str, WsConn] = {}
        self._counter = itertools.count(1)
        self.generation = 0

    # -- addresses ---------------------------------------------------------------

    @property
    def url(self) -> str:
        """``ws://host:port`` of the trusted listener."""
        return self._listeners[0].url

    @property
    def port(self) -> int:
        return self._listeners[0].port

    @property
    def rbac_url(self) -> Optional[str]:
        """``ws://host:port`` of the RBAC listener, when one is configured."""
        return self._listeners[1].url if len(self._listeners) > 1 else None

    @property
    def transcript_limit(self) -> Optional[int]:
        """How many transcript entries are kept (None: all; also None without a transcript)."""
        return self._transcript.limit if self._transcript is not None else None

    @property
    def running(self) -> bool:
        return self._gen_scope is not None

    @property
    def core(self) -> EngineCore:
        """The current run's registries (advanced use; replaced by ``restart``)."""
        if self._core is None:
            raise RuntimeError("the engine is not running")
        return self._core

    # -- start / stop ------------------------------------------------------------

    async def start(self) -> None:
        """Open the listeners (on the same ports after a ``stop``) with fresh state."""
        if self._gen_scope is not None:
            return
        if self._tg is None:
            raise RuntimeError("use serve_engine() to run an Engine")
        await self._open()
        await self._launch()

    async def _open(self) -> None:
        opened: list[anyio.abc.SocketListener] = []
        try:
            for listener in self._listeners:
                multi = await anyio.create_tcp_listener(
                    local_host=listener.host, local_port=listener.port
                )
                socks = [s for s in multi.listeners if isinstance(s, anyio.abc.SocketListener)]
                opened.extend(socks)
                listener.sockets = socks
                listener.port = socks[0].extra(SocketAttribute.local_port)
        except BaseException:
            await self._close_sockets()
            raise

    async def _close_sockets(self) -> None:
        with anyio.CancelScope(shield=True):
            for listener in self._listeners:
                for sock in listener.sockets:
                    await sock.aclose()
                listener.sockets = []

    async def _launch(self) -> None:
        assert self._tg is not None
        core = EngineCore(self.options, result_rules=self._rules, transcript=self._transcript)
        core.started_at_ms = _now_ms()  # type: ignore[attr-defined]
        self._core = core
        self.generation += 1
        self._gen_done = anyio.Event()
        await self._tg.start(self._run_generation, core)

    async def _run_generation(
        self, core: EngineCore, *, task_status: anyio.abc.TaskStatus[None]
    ) -> None:
        assert self._gen_done is not None
        done = self._gen_done
        try:
            with anyio.CancelScope() as scope:
                self._gen_scope = scope
                async with anyio.create_task_group() as tg:
                    await tg.start(core.run)
                    for listener in self._listeners:
                        for sock in listener.sockets:
                            tg.start_soon(self._accept_loop, listener, sock, core, tg)
                    task_status.started()
        finally:
            self._gen_scope = None
            await self._close_sockets()
            done.set()

    async def stop(self) -> None:
        """Close the listeners and drop every connection (like killing the engine)."""
        scope, done = self._gen_scope, self._gen_done
        if scope is None or done is None:
            return
        scope.cancel()
        await done.wait()

    async def restart(self) -> None:
        """``stop`` then ``start`` on the same ports; all state is lost."""
        await self.stop()
        await self.start()

    async def _accept_loop(
        self,
        listener: _Listener,
        sock: anyio.abc.SocketListener,
        core: EngineCore,
        tg: anyio.abc.TaskGroup,
    ) -> None:
        while True:
            try:
                stream = await sock.accept()
            except (anyio.ClosedResourceError, anyio.BrokenResourceError):
                return
            except OSError as exc:
                log.warning("accept failed on %s: %s", listener.url, exc)
                await anyio.sleep(0.05)
                continue
            tg.start_soon(self._serve_connection, stream, listener, core)

    # -- one connection ----------------------------------------------------------

    async def _serve_connection(
        self, stream: anyio.abc.SocketStream, listener: _Listener, core: EngineCore
    ) -> None:
        try:
            await self._handle(stream, listener, core)
        except Exception:
            log.exception("connection handler failed")
        finally:
            with anyio.CancelScope(shield=True), anyio.move_on_after(1):
                await stream.aclose()

    async def _handshake(
        self, stream: anyio.abc.SocketStream
    ) -> Optional[tuple[WSConnection, Request, dict[str, str], bytes]]:
        data = b""
        idx = -1  # stays -1 when the timeout strikes before any data
        with anyio.move_on_after(self.handshake_timeout):
            while True:
                try:
                    data += await stream.receive(65536)
                except (anyio.EndOfStream, anyio.BrokenResourceError, OSError):
                    return None
                idx = data.find(b"\r\n\r\n")
                if idx >= 0:
                    break
                if len(data) > _MAX_HEAD:
                    await _send_quietly(
                        stream,
                        b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
                        b"content-length: 0\r\nconnection: close\r\n\r\n",
                    )
                    return None
        if idx < 0:
            return None
        head, rest = data[: idx + 4], data[idx + 4 :]
        ws = WSConnection(ConnectionType.SERVER)
        try:
            ws.receive_data(head)
            for event in ws.events():
                if isinstance(event, Request):
                    return ws, event, _parse_headers(head), rest
        except (RemoteProtocolError, UnicodeError) as exc:
            # (wsproto lets a non-ASCII Host or Connection header escape as UnicodeError.)
            hint = getattr(exc, "event_hint", None)
            body = f"{exc}\n".encode()
            try:
                status = hint.status_code if isinstance(hint, RejectConnection) else 400
                await _send_quietly(stream, _http_response(ws, status, body))
            except LocalProtocolError:
                await _send_quietly(
                    stream,
                    b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                )
        return None

    def _conn(
        self,
        stream: anyio.abc.SocketStream,
        ws: WSConnection,
        core: EngineCore,
        label: str,
        leftover: bytes,
    ) -> WsConn:
        try:
            remote = stream.extra(SocketAttribute.remote_address)
            remote_ip = str(remote[0]) if isinstance(remote, tuple) else str(remote)
        except Exception:
            remote_ip = ""
        return WsConn(
            stream,
            ws,
            remote_ip=remote_ip,
            label=label,
            transcript=self._transcript,
            congestion=core.congestion,
            relieve=core.relieve,
            max_message_size=self.max_message_size,
            max_frame_size=self.max_frame_size,
            leftover=leftover,
        )

    async def _handle(
        self, stream: anyio.abc.SocketStream, listener: _Listener, core: EngineCore
    ) -> None:
        shake = await self._handshake(stream)
        if shake is None:
            return
        ws, request, headers, leftover = shake
        target = urllib.parse.urlsplit(request.target)
        path = target.path
        query = urllib.parse.parse_qs(target.query, keep_blank_values=True)
        n = next(self._counter)
        if path == "/":
            route, label = "main", f"pending:{n}"
        elif path == "/otel":
            route, label = "otel", f"otel:{n}"
        elif path.startswith("/ws/channels/"):
            route, label = "channel", f"channel:{n}"
        else:
            await _send_quietly(stream, _http_response(ws, 404, b"Not Found\n"))
            return
        channel = None
        direction = ""
        if route == "channel":
            channel_id = urllib.parse.unquote(path[len("/ws/channels/") :])
            keys = query.get("key")
            dirs = query.get("dir")
            if not keys or not dirs or dirs[-1] not in ("read", "write") or "/" in channel_id:
                await _send_quietly(
                    stream,
                    _http_response(ws, 400, b"Failed to deserialize query string\n"),
                )
                return
            direction = dirs[-1]
            channel = core.channels.lookup(channel_id, keys[-1])
            if channel is None:
                await _send_quietly(stream, _http_response(ws, 404, b"Channel not found\n"))
                return
            label = f"channel:{channel_id}:{direction}"
        try:
            await stream.send(ws.send(AcceptConnection()))
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
            return
        conn = self._conn(stream, ws, core, label, leftover)
        if self._transcript is not None and route != "main":
            self._transcript.record(label, "in", "open", request.target)
        self._conns.add(conn)
        try:
            async with conn.running():
                if route == "main":
                    await self._serve_main(conn, listener, core, headers, query, request.target)
                elif route == "otel":
                    await self._serve_otel(conn, listener, core, headers, query, request.target)
                elif direction == "write":
                    assert channel is not None
                    await serve_writer(core.channels, conn, channel)
                else:
                    assert channel is not None
                    await serve_reader(core.channels, conn, channel)
        finally:
            self._conns.discard(conn)
            if self._transcript is not None:
                self._transcript.record(conn.label, "out", "end", None)

    async def _authenticate(
        self,
        core: EngineCore,
        rbac: RbacConfig,
        conn: WsConn,
        headers: Mapping[str, str],
        query: Mapping[str, list[str]],
    ) -> Session:
        if rbac.auth_function_id is None:
            return Session.unauthenticated(rbac)
        payload: JSONObject = {
            "headers": dict(headers),
            "query_params": {k: list(v) for k, v in query.items()},
            "ip_address": conn.remote_ip,
        }
        result, error = await core.call("default", rbac.auth_function_id, payload)
        if error is not None:
            raise AuthFailure(f"auth function failed: {error.get('code')}: {error.get('message')}")
        try:
            return parse_auth_result(rbac, result)
        except AuthResultError as exc:
            raise AuthFailure(str(exc)) from None

    async def _session(
        self,
        conn: WsConn,
        listener: _Listener,
        core: EngineCore,
        headers: Mapping[str, str],
        query: Mapping[str, list[str]],
        target: str,
    ) -> tuple[bool, Optional[Session]]:
        if listener.rbac is None:
            return True, None
        try:
            return True, await self._authenticate(core, listener.rbac, conn, headers, query)
        except AuthFailure as exc:
            log.warning("authentication failed on %s: %s", listener.url, exc)
            if self._transcript is not None and conn.label.startswith("pending:"):
                self._transcript.record(conn.label, "in", "open", target)
            frame = ErrorFrame(error=ErrorBody(code="AUTH_ERROR", message=str(exc)))
            conn.send(encode_frame(frame).encode(), False)
            conn.close(None)
            await conn.read_loop(_ignore)
            return False, None

    async def _serve_main(
        self,
        conn: WsConn,
        listener: _Listener,
        core: EngineCore,
        headers: Mapping[str, str],
        query: Mapping[str, list[str]],
        target: str,
    ) -> None:
        ok, session = await self._session(conn, listener, core, headers, query, target)
        if not ok:
            return
        worker_id = new_id()
        conn.label = worker_id
        if self._transcript is not None:
            self._transcript.record(worker_id, "in", "open", target)
        worker = core.connect(conn, session=session, listener=listener.name, worker_id=worker_id)
        self._workers_by_conn[worker.worker_id] = conn
        handle_text = core.handle_text

        def on_message(kind: str, payload: Union[str, bytes]) -> None:
            if kind == "binary" and payload[:4] in _TELEMETRY_PREFIXES:
                core.telemetry_frames += 1
                return None
            handle_text(worker, payload)
            return None

        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(core.grace_timer, worker)
                await conn.read_loop(on_message)
                tg.cancel_scope.cancel()
        finally:
            self._workers_by_conn.pop(worker.worker_id, None)
            core.disconnect(worker)

    async def _serve_otel(
        self,
        conn: WsConn,
        listener: _Listener,
        core: EngineCore,
        headers: Mapping[str, str],
        query: Mapping[str, list[str]],
        target: str,
    ) -> None:
        ok, _ = await self._session(conn, listener, core, headers, query, target)
        if not ok:
            return

        def on_message(kind: str, payload: Union[str, bytes]) -> None:
            if kind == "binary" and payload[:4] in _TELEMETRY_PREFIXES:
                core.telemetry_frames += 1
            return None

        await conn.read_loop(on_message)

    # -- introspection -----------------------------------------------------------

    def workers(self) -> list[JSONObject]:
        """Connected workers: ids, announce metadata, namespace, functions."""
        out: list[JSONObject] = []
        for w in self.core.iter_workers():
            out.append(_describe_worker(w))
        return out

    def worker(self, name_or_id: str) -> JSONObject:
        for w in self.core.iter_workers():
            if w.worker_id == name_or_id or w.name == name_or_id:
                return _describe_worker(w)
        raise KeyError(name_or_id)

    def functions(self, namespace: Optional[str] = None) -> list[JSONObject]:
        return [
            {
                "function_id": e.id,
                "namespace": e.namespace,
                "worker_id": e.owner.worker_id,
                "description": e.description,
                "metadata": e.metadata,
                "http": e.http is not None,
            }
            for e in sorted(self.core.functions.values(), key=lambda e: (e.namespace, e.id))
            if namespace is None or e.namespace == namespace
        ]

    def trigger_types(self) -> list[JSONObject]:
        return [
            {
                "id": e.id,
                "namespace": e.namespace,
                "description": e.description,
                "provider": e.provider.worker_id if e.provider is not None else None,
            }
            for e in self.core.trigger_types.values()
        ]

    def bindings(self) -> list[JSONObject]:
        out: list[JSONObject] = []
        for b in self.core.bindings.values():
            provider = b.provider
            out.append(
                {
                    "id": b.id,
                    "trigger_type": b.trigger_type,
                    "function_id": b.function_id,
                    "namespace": b.namespace,
                    "config": b.config,
                    "metadata": b.metadata,
                    "owner": b.owner.worker_id if b.owner is not None else None,
                    "provider": (
                        None
                        if provider is None
                        else (
                            provider.provider.worker_id
                            if provider.provider is not None
                            else "engine"
                        )
                    ),
                    "parked": provider is None,
                    "acked": b.acked,
                }
            )
        return out

    def pending_invocations(self) -> list[JSONObject]:
        return [
            {
                "invocation_id": inv_id,
                "function_id": p.function_id,
                "caller": p.caller.worker_id if p.caller is not None else None,
                "handler": p.handler.worker_id if p.handler is not None else None,
            }
            for inv_id, p in self.core.pending.items()
        ]

    def channels(self) -> list[JSONObject]:
        return [c.describe() for c in self.core.channels.channels.values()]

    def queue_stats(self) -> JSONObject:
        queue = self.core.queue
        if queue is None:
            return {"enabled": False}
        return {
            "enabled": True,
            "queued": len(queue.jobs),
            "in_flight": queue.in_flight,
            "delivered": queue.delivered,
            "dead_letters": len(queue.dead_letters),
        }

    def dead_letters(self) -> list[JSONObject]:
        queue = self.core.queue
        return list(queue.dead_letters) if queue is not None else []

    def stats(self) -> JSONObject:
        core = self.core
        return {
            "workers": len(core.workers),
            "functions": len(core.functions),
            "pending_invocations": len(core.pending),
            "bad_frames": core.bad_frames,
            "telemetry_frames": core.telemetry_frames,
            "connections": len(self._conns),
            "generation": self.generation,
            "transcript_entries": len(self._transcript) if self._transcript is not None else 0,
            "transcript_discarded": (
                self._transcript.discarded if self._transcript is not None else 0
            ),
        }

    # -- transcript ------------------------------------------------------------

    def _need_transcript(self) -> Transcript:
        if self._transcript is None:
            raise RuntimeError("this engine was started with transcript=False")
        return self._transcript

    def transcript(self) -> list[JSONObject]:
        """Every recorded entry: ``{ts, conn, dir, kind, frame|text|info|size}``."""
        return list(self._need_transcript().iter_rendered())

    def transcript_jsonl(self) -> str:
        """The transcript as JSON lines."""
        return self._need_transcript().jsonl()

    def dump_transcript(self, path: str) -> None:
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(self.transcript_jsonl())

    def clear_transcript(self) -> None:
        self._need_transcript().clear()

    def frames(
        self,
        worker_id: Optional[str] = None,
        *,
        direction: Optional[str] = None,
        type: Optional[str] = None,
    ) -> list[JSONObject]:
        """Protocol frames from the transcript (parsed JSON objects), filtered.

        ``direction`` is ``"in"`` (worker to engine) or ``"out"``.
        """
        out: list[JSONObject] = []
        for entry in self._need_transcript().entries:
            _, conn, dirn, kind, payload = entry
            if kind not in ("text", "binary") or payload is None:
                continue
            if worker_id is not None and conn != worker_id:
                continue
            if direction is not None and dirn != direction:
                continue
            rendered = Transcript.render(entry)
            frame = rendered.get("frame")
            if not isinstance(frame, dict):
                continue
            if type is not None and frame.get("type") != type:
                continue
            out.append(frame)
        return out

    # -- waiting ---------------------------------------------------------------

    async def wait_for(self, predicate: Callable[[], Any], timeout: float = 5.0) -> Any:
        """Wait until ``predicate()`` is truthy (re-checked on every registry or
        transcript change); returns its value.  Raises ``TimeoutError``."""
        with anyio.move_on_after(timeout):
            while True:
                value = predicate()
                if value:
                    return value
                events = [self.core.changed()]
                if self._transcript is not None:
                    events.append(self._transcript.changed())
                await _first(events, 0.5)
        value = predicate()
        if value:
            return value
        raise TimeoutError(f"condition not met within {timeout}s")

    async def wait_for_worker(
        self,
        name: Optional[str] = None,
        *,
        namespace: Optional[str] = None,
        announced: bool = True,
        timeout: float = 5.0,
    ) -> JSONObject:
        """Wait for a connected worker (by announced name, or any) and return it."""

        def find() -> Optional[JSONObject]:
            for w in self.core.iter_workers():
                if announced and not w.announced:
                    continue
                if name is not None and w.name != name:
                    continue
                if namespace is not None and w.namespace != namespace:
                    continue
                return _describe_worker(w)
            return None

        result: JSONObject = await self.wait_for(find, timeout)
        return result

    async def wait_for_function(
        self, function_id: str, namespace: str = "default", *, timeout: float = 5.0
    ) -> JSONObject:
        def find() -> Optional[JSONObject]:
            entry = self.core.functions.get((namespace, function_id))
            if entry is None:
                return None
            return {
                "function_id": entry.id,
                "namespace": namespace,
                "worker_id": entry.owner.worker_id,
            }

        result: JSONObject = await self.wait_for(find, timeout)
        return result

    async def wait_for_trigger_type(
        self, type_id: str, namespace: str = "default", *, timeout: float = 5.0
    ) -> JSONObject:
        def find() -> Optional[JSONObject]:
            for e in self.trigger_types():
                if e["id"] == type_id and e["namespace"] == namespace:
                    return e
            return None

        result: JSONObject = await self.wait_for(find, timeout)
        return result

    async def wait_for_binding(
        self, binding_id: str, *, acked: bool = False, timeout: float = 5.0
    ) -> JSONObject:
        def find() -> Optional[JSONObject]:
            for b in self.bindings():
                if b["id"] == binding_id and (not acked or b["acked"]):
                    return b
            return None

        result: JSONObject = await self.wait_for(find, timeout)
        return result

    async def wait_for_frame(
        self,
        type: Optional[str] = None,
        *,
        worker_id: Optional[str] = None,
        direction: Optional[str] = None,
        where: Optional[Callable[[JSONObject], bool]] = None,
        count: int = 1,
        timeout: float = 5.0,
    ) -> JSONObject:
        """Wait until the transcript holds ``count`` matching frames; return the last."""

        def find() -> Optional[JSONObject]:
            frames = [
                f
                for f in self.frames(worker_id, direction=direction, type=type)
                if where is None or where(f)
            ]
            return frames[count - 1] if len(frames) >= count else None

        result: JSONObject = await self.wait_for(find, timeout)
        return result

    # -- fault injection ---------------------------------------------------------

    def _worker_conn(self, worker_id: str) -> WsConn:
        conn = self._workers_by_conn.get(worker_id)
        if conn is None:
            raise KeyError(f"no connected worker {worker_id!r}")
        return conn

    def drop(self, worker_id: str, *, code: Optional[int] = None) -> None:
        """Drop one worker's connection: abruptly (no Close frame) or, with
        ``code``, with a Close frame carrying that code."""
        conn = self._worker_conn(worker_id)
        worker = self.core.workers.get(worker_id)
        if code is None:
            if worker is not None:
                self.core.evict(worker)
            conn.abort()
        else:
            if worker is not None:
                self.core.close_worker(worker, code)
            else:
                conn.close(code)

    def drop_all(self, *, code: Optional[int] = None) -> int:
        """Drop every worker connection; returns how many."""
        ids = list(self._workers_by_conn)
        for worker_id in ids:
            self.drop(worker_id, code=code)
        return len(ids)

    def delay_results(
        self, seconds: float, function_id: Optional[str] = None, *, count: Optional[int] = None
    ) -> ResultRule:
        """Forward results of ``function_id`` (any, when None) ``seconds`` late.

        ``count`` limits how many results the rule applies to."""
        rule = ResultRule(function_id, seconds, count)
        rule._core = self._core
        self._rules.append(rule)
        return rule

    def withhold_results(
        self, function_id: Optional[str] = None, *, count: Optional[int] = None
    ) -> ResultRule:
        """Keep results of ``function_id`` from their callers until ``rule.release()``."""
        rule = ResultRule(function_id, None, count)
        rule._core = self._core
        self._rules.append(rule)
        return rule

    def clear_faults(self) -> None:
        """Remove every result rule (withheld results stay undelivered)."""
        for rule in self._rules:
            rule.cancel()
        self._rules.clear()

    def send_raw(self, worker_id: str, data: bytes) -> None:
        """Write ``data`` to the worker's TCP stream as is (no WebSocket framing)."""
        self._worker_conn(worker_id).send_raw(bytes(data))

    def send_text(self, worker_id: str, text: str) -> None:
        """Send one WebSocket text message with arbitrary content."""
        self._worker_conn(worker_id).send_message("text", text)

    def send_binary(self, worker_id: str, data: bytes) -> None:
        self._worker_conn(worker_id).send_message("binary", bytes(data))

    def send_frame(
        self, worker_id: str, frame: Union[Frame, UnknownFrame, Mapping[str, JSON]]
    ) -> None:
        """Send a protocol frame (an ``iii_protocol`` frame or a JSON object)."""
        text = dumps(dict(frame)) if isinstance(frame, Mapping) else encode_frame(frame)
        self._worker_conn(worker_id).send(text.encode(), False)

    def send_ping(self, worker_id: str, payload: bytes = b"") -> None:
        """Send a WebSocket Ping control frame."""
        self._worker_conn(worker_id).send_ping(payload)


def _describe_worker(w: Worker) -> JSONObject:
    return {
        "worker_id": w.worker_id,
        "name": w.name,
        "namespace": w.namespace,
        "announced": w.announced,
        "runtime": w.runtime,
        "version": w.version,
        "pid": w.pid,
        "description": w.description,
        "listener": w.listener,
        "ip_address": w.remote_ip,
        "connected_at_ms": w.connected_at_ms,
        "functions": list[JSON](
            sorted(f"{ns}/{fid}" if ns != "default" else fid for ns, fid in w.functions)
        ),
        "trigger_types": list[JSON](sorted(t for _, t in w.trigger_types)),
        "bindings": list[JSON](sorted(w.bindings)),
    }


def _ignore(kind: str, payload: Union[str, bytes]) -> None:
    return None


def _now_ms() -> int:
    import time

    return int(time.time() * 1000)


async def _send_quietly(stream: anyio.abc.ByteStream, data: bytes) -> None:
    with suppress(anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
        await stream.send(data)


async def _first(events: list[anyio.Event], timeout: float) -> None:
    """Wait until one of ``events`` is set (or ``timeout``)."""
    with anyio.move_on_after(timeout):
        async with anyio.create_task_group() as tg:

            async def wait(event: anyio.Event) -> None:
                await event.wait()
                tg.cancel_scope.cancel()

            for event in events:
                tg.start_soon(wait, event)


@asynccontextmanager
async def serve_engine(
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    rbac: Optional[RbacLike] = None,
    rbac_port: int = 0,
    transcript: bool = True,
    transcript_limit: Optional[int] = DEFAULT_TRANSCRIPT_LIMIT,
    namespace_grace: Optional[float] = None,
    queue: bool = True,
    max_message_size: int = MAX_MESSAGE_SIZE,
    max_frame_size: int = MAX_FRAME_SIZE,
    handshake_timeout: float = 10.0,
    **options: Any,
) -> AsyncIterator[Engine]:
    """Run a reference engine on the current event loop (asyncio or trio).

    ``port=0`` picks a free port (read ``engine.url``).  ``rbac`` (an
    ``RbacConfig`` or its JSON shape) adds an RBAC-gated listener on
    ``rbac_port`` (``engine.rbac_url``) next to the trusted one.
    ``namespace_grace`` is the registration grace period in seconds (default
    ``$III_NAMESPACE_GRACE_MS`` or 5).  The transcript (``transcript=False``:
    none) keeps the last ``transcript_limit`` entries (default 10 000;
    ``None``: all of them, memory growing with the traffic).  Remaining keyword
    arguments go to ``EngineOptions``.

    Every option is checked before anything starts: an unknown one is a
    ``TypeError``, a bad value a ``TypeError``/``ValueError``, naming it.
    """
    checked = check_options(
        dict(
            options,
            host=host,
            port=port,
            rbac=rbac,
            rbac_port=rbac_port,
            transcript=transcript,
            transcript_limit=transcript_limit,
            namespace_grace=namespace_grace,
            queue=queue,
            max_message_size=max_message_size,
            max_frame_size=max_frame_size,
            handshake_timeout=handshake_timeout,
        )
    )
    engine = Engine(
        host=checked.pop("host"),
        port=checked.pop("port"),
        rbac=checked.pop("rbac"),
        rbac_port=checked.pop("rbac_port"),
        transcript=checked.pop("transcript"),
        transcript_limit=checked.pop("transcript_limit"),
        max_message_size=checked.pop("max_message_size"),
        max_frame_size=checked.pop("max_frame_size"),
        handshake_timeout=checked.pop("handshake_timeout"),
        options=EngineOptions(**checked),
    )
    # Bind first, outside the task group: a busy port raises a plain OSError.
    await engine._open()
    try:
        async with anyio.create_task_group() as tg:
            engine._tg = tg
            await engine._launch()
            try:
                yield engine
            finally:
                with anyio.CancelScope(shield=True):
                    await engine.stop()
                tg.cancel_scope.cancel()
    finally:
        await engine._close_sockets()
