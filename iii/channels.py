"""Data channels: byte/text streams between workers, through the engine (docs/protocol.md#channels).

A channel is a bounded queue inside the engine with one writer socket and one
reader socket.  ``create_channel(worker)`` asks the engine for one and returns
both ends; hand one end's ref to another worker inside a payload and it
arrives there as a ready ``ChannelReader``/``ChannelWriter``::

    channel = create_channel(worker)
    with channel.writer as writer:       # ends with Close 1000 = end of stream
        writer.send_message("meta")      # a text item
        writer.write_sync(b"hello")      # binary items (64 KiB frames)
    worker.trigger({"function_id": "consume",
                    "payload": {"reader": to_json_value(channel.reader_ref)}})

    def consume(data):                   # on the other worker
        return len(data["reader"].read_all_sync())

Items wait in the engine until the reader takes them, up to ``buffer_size``
items (default 64); to stream more, write while the call runs (from another
thread or task), as the writer then waits for the reader.

Refs are ``iii_protocol.StreamChannelRef`` attrs values: put
``to_json_value(ref)`` (or ``attrs.asdict(ref)``; the official SDK's
``ref.model_dump()``) in a payload, not the ``ChannelReader`` object itself.

Every end works two ways, natively:

* ``await`` it under asyncio or trio (anyio sockets);
* call the blocking forms (``*_sync``, ``send_message``, ``close``, plain
  ``for``) from plain threads (blocking sockets; calling them on a running
  event loop raises ``IIIUsageError``).

One object keeps the mode it first connected with.

Ends connect lazily, on first use.  Writes wait for the socket, so a full
channel (the engine stops reading the writer) makes the writer wait: that is
the backpressure.  A reader's stream is complete only when the engine's Close
arrives; an HTTP refusal (404: unknown channel or wrong key), a lost
connection or an abnormal close raises ``ChannelError``, never a short read.

The WebSocket protocol lives once, in ``_Wire`` (a sans-I/O wsproto client),
and the operations on it are generators that yield the bytes to send or ask
for bytes to read; ``_drive_async`` and ``_drive_sync`` only move bytes.
"""

from __future__ import annotations

import inspect
import os
import socket
import ssl
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Generator, Iterator
from contextlib import suppress
from types import TracebackType
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Optional, TypeVar, Union
from urllib.parse import quote, urlsplit

import anyio
import anyio.abc
import attrs
import sniffio
from wsproto import ConnectionType, WSConnection
from wsproto import events as wse
from wsproto.connection import ConnectionState as WSState
from wsproto.utilities import LocalProtocolError as WSLocalProtocolError
from wsproto.utilities import RemoteProtocolError as WSRemoteProtocolError

from iii_protocol import StreamChannelRef, from_json_value, parse_engine_url
from iii_protocol.config import EngineAddress
from iii_protocol.errors import IIIError

from .errors import IIIUsageError

if TYPE_CHECKING:
    from ._client import III

__all__ = [
    "Channel",
    "ChannelError",
    "ChannelReader",
    "ChannelWriter",
    "create_channel",
    "create_channel_async",
    "resolve_channel_refs",
]

T = TypeVar("T")

CREATE_FUNCTION_ID = "engine::channels::create"
FRAME_SIZE = 64 * 1024
_READ_SIZE = 65536
_MiB = 1024 * 1024
_CLOSE_NORMAL = 1000
_CLOSE_NO_STATUS = 1005
_CLOSE_TOO_BIG = 1009
_CLOSE_INTERNAL = 1011

Item = Union[str, bytes]
RefLike = Union[StreamChannelRef, "dict[str, Any]"]


class ChannelError(IIIError):
    """A channel socket failed: refused, lost mid-stream, closed abnormally or timed out.

    Attributes:
        channel_id: the channel, when known.
        status_code: the HTTP status of a refused upgrade (404: unknown
            channel or wrong access key), else ``None``.
        close_code: the WebSocket close code the engine sent, else ``None``.
    """

    def __init__(
        self,
        message: str,
        *,
        channel_id: Optional[str] = None,
        status_code: Optional[int] = None,
        close_code: Optional[int] = None,
    ) -> None:
        super().__init__(message)
        self.channel_id = channel_id
        self.status_code = status_code
        self.close_code = close_code


# -- the shared sans-I/O WebSocket client --------------------------------------------


class _Wire:
    """One channel socket's WebSocket state, bytes in and bytes out (no I/O).

    ``receive(b"")`` means end of file.  Complete messages queue up in
    ``items``; a failure is kept in ``error`` and raised by ``next_item`` only
    after the items that arrived before it were taken.
    """

    def __init__(
        self,
        address: EngineAddress,
        headers: list[tuple[str, str]],
        max_message_size: int,
        channel_id: str,
    ) -> None:
        self._ws = WSConnection(ConnectionType.CLIENT)
        self._out = bytearray(
            self._ws.send(
                wse.Request(
                    host=address.host_header,
                    target=address.target,
                    extra_headers=[(k.encode(), v.encode()) for k, v in headers],
                )
            )
        )
        self._max = max_message_size
        self._channel_id = channel_id
        self._parts: list[Item] = []
        self._size = 0
        self.items: deque[Item] = deque()
        self.accepted = False
        self.finished = False  # the engine closed cleanly (1000/1005)
        self.eof = False  # nothing more will arrive: close the socket
        self.confirmed = False  # the engine answered our Close (or hung up after it)
        self.error: Optional[ChannelError] = None

    # -- output --------------------------------------------------------------

    def data_to_send(self) -> bytes:
        out = bytes(self._out)
        self._out.clear()
        return out

    @property
    def open(self) -> bool:
        return self.error is None and self._ws.state is WSState.OPEN

    def check_open(self) -> None:
        if self.error is not None:
            raise self.error
        if self._ws.state is not WSState.OPEN:
            raise self._fail("the channel socket is closed; nothing more can be sent")

    def send(self, data: Item) -> None:
        self.check_open()
        message: Union[wse.TextMessage, wse.BytesMessage] = (
            wse.TextMessage(data=data) if isinstance(data, str) else wse.BytesMessage(data=data)
        )
        self._out += self._ws.send(message)

    def send_close(self, code: int = _CLOSE_NORMAL, reason: str = "") -> None:
        """Start the closing handshake (no-op unless open)."""
        if self._ws.state is WSState.OPEN:
            self._out += self._ws.send(wse.CloseConnection(code=code, reason=reason))

    @property
    def close_sent(self) -> bool:
        return self._ws.state in (WSState.LOCAL_CLOSING, WSState.CLOSED)

    # -- input ---------------------------------------------------------------

    def lost(self, reason: str) -> None:
        """The socket failed (a read or write error): record why, then treat it as EOF."""
        if not self.eof and self.error is None and not self.close_sent:
            self.error = self._fail(f"connection to the engine lost: {reason}")
        self.eof = True

    def receive(self, data: bytes) -> None:
        if self.eof:
            return
        if not data:
            self.eof = True
            if self.close_sent:
                self.confirmed = True  # the engine dropped the socket after our Close
            if self.error is not None or self.finished or self.close_sent:
                return
            if not self.accepted:
                self.error = self._fail("the engine closed the connection during the handshake")
            else:
                self.error = self._fail(
                    "connection to the engine lost mid-stream (no Close frame): "
                    "the stream is incomplete"
                )
            return
        try:
            self._ws.receive_data(data)
            for event in self._ws.events():
                self._on_event(event)
                if self.eof:
                    return
        except (WSRemoteProtocolError, WSLocalProtocolError) as exc:
            self.error = self._fail(f"invalid WebSocket data from the engine: {exc}")
            self.eof = True

    def _on_event(self, event: wse.Event) -> None:
        if isinstance(event, wse.AcceptConnection):
            self.accepted = True
        elif isinstance(event, (wse.TextMessage, wse.BytesMessage)):
            self._on_part(event.data, event.message_finished)
        elif isinstance(event, wse.Ping):
            self._out += self._ws.send(event.response())
        elif isinstance(event, wse.CloseConnection):
            self._on_close(event)
        elif isinstance(event, wse.RejectConnection):
            status = event.status_code
            hint = " (unknown channel or wrong access key)" if status == 404 else ""
            self.error = self._fail(
                f"the engine refused the channel socket: HTTP {status}{hint}", status_code=status
            )
            self.eof = True
        # Pong and RejectData need nothing.

    def _on_part(self, data: Union[str, bytes, bytearray], finished: bool) -> None:
        self._size += len(data)
        if self._size > self._max:
            self.error = self._fail(
                f"channel message over the {self._max}-byte limit", close_code=_CLOSE_TOO_BIG
            )
            self.send_close(_CLOSE_TOO_BIG, "message too big")
            self.eof = True
            return
        self._parts.append(data if isinstance(data, str) else bytes(data))
        if not finished:
            return
        parts, self._parts, self._size = self._parts, [], 0
        if len(parts) == 1:
            self.items.append(parts[0])
        elif isinstance(parts[0], str):
            self.items.append("".join(p for p in parts if isinstance(p, str)))
        else:
            self.items.append(b"".join(p for p in parts if isinstance(p, bytes)))

    def _on_close(self, event: wse.CloseConnection) -> None:
        initiated_here = self.close_sent
        if self._ws.state is WSState.REMOTE_CLOSING:
            self._out += self._ws.send(event.response())
        elif self._ws.state is WSState.OPEN:  # a parse failure: wsproto closes nothing itself
            self._out += self._ws.send(wse.CloseConnection(code=event.code))
        self.eof = True
        if self.error is not None:
            return
        normal = event.code in (_CLOSE_NORMAL, _CLOSE_NO_STATUS)
        if normal and initiated_here:
            self.confirmed = True  # the engine answered our Close
        elif normal and not self._parts:
            self.finished = True  # the engine ended the stream
        else:
            reason = f" {event.reason}" if event.reason else ""
            self.error = self._fail(
                f"the engine closed the channel socket abnormally ({event.code}{reason})",
                close_code=event.code,
            )

    def next_item(self) -> Union[Item, _NeedData, None]:
        """The next complete item, ``None`` at the end of the stream, or ``NEED_DATA``.

        Raises:
            ChannelError: once the items before the failure were taken.
        """
        if self.items:
            return self.items.popleft()
        if self.error is not None:
            raise self.error
        if self.eof:
            return None
        return NEED_DATA

    def _fail(self, message: str, **kw: Any) -> ChannelError:
        return ChannelError(
            f"channel {self._channel_id}: {message}", channel_id=self._channel_id, **kw
        )


class _NeedData:
    __slots__ = ()

    def __repr__(self) -> str:
        return "NEED_DATA"


NEED_DATA = _NeedData()

# An operation on a wire: yields bytes to send (answered with None) or None to
# ask for bytes (answered with the bytes read, b"" at EOF); returns its value.
Op = Generator[Optional[bytes], Optional[bytes], T]


def _op_handshake(wire: _Wire) -> Op[None]:
    yield wire.data_to_send()
    while not wire.accepted:
        if wire.error is not None:  # receive() records one whenever it ends early
            raise wire.error
        wire.receive((yield None) or b"")
        out = wire.data_to_send()
        if out:
            yield out


def _op_next(wire: _Wire) -> Op[Optional[Item]]:
    while True:
        out = wire.data_to_send()  # pongs, Close replies, our Close 1009
        if out:
            yield out
        item = wire.next_item()
        if not isinstance(item, _NeedData):
            return item
        wire.receive((yield None) or b"")


def _op_send(wire: _Wire, data: Union[str, bytes, bytearray, memoryview]) -> Op[None]:
    if isinstance(data, str):
        wire.send(data)
        yield wire.data_to_send()
        return
    view = memoryview(data).cast("B")
    for start in range(0, len(view), FRAME_SIZE):
        wire.send(view[start : start + FRAME_SIZE].tobytes())
        yield wire.data_to_send()


def _op_close(wire: _Wire, code: int, reason: str) -> Op[None]:
    """Send Close (unless sent) and read until the engine's Close or EOF."""
    if not wire.eof:
        wire.send_close(code, reason)
        out = wire.data_to_send()
        if out:
            yield out
    while not wire.eof:
        wire.receive((yield None) or b"")
        wire.items.clear()  # a reader closing early drops what it did not take
        out = wire.data_to_send()
        if out:
            yield out


# -- addresses and headers --------------------------------------------------------------


def _channel_address(
    engine_url: str, channel_id: str, access_key: str, direction: str
) -> EngineAddress:
    """``<base>/ws/channels/<id>?<query>&key=<key>&dir=<dir>`` (docs/protocol.md#channel-sockets).

    The query of the engine URL is kept and its path is dropped except for a
    prefix (``ws://proxy/iii/?t=1`` -> ``/iii/ws/channels/...?t=1&key=...``),
    so an engine behind a path-routing proxy still works.
    """
    address = parse_engine_url(engine_url)
    parts = urlsplit(engine_url)
    query = f"{parts.query}&" if parts.query else ""
    target = (
        f"{parts.path.rstrip('/')}/ws/channels/{quote(channel_id, safe='')}"
        f"?{query}key={quote(access_key, safe='')}&dir={direction}"
    )
    return EngineAddress(address.host, address.port, address.secure, target)


def _handshake_headers(headers: Optional[dict[str, str]]) -> list[tuple[str, str]]:
    out = dict(headers or {})
    token = os.environ.get("III_TOKEN")
    if token and not any(k.lower() == "authorization" for k in out):
        out["Authorization"] = f"Bearer {token}"
    return list(out.items())


def _as_ref(ref: RefLike, direction: Literal["read", "write"]) -> StreamChannelRef:
    channel_id: object
    access_key: object
    if isinstance(ref, StreamChannelRef):
        channel_id, access_key = ref.channel_id, ref.access_key
    elif isinstance(ref, dict):
        channel_id, access_key = ref.get("channel_id"), ref.get("access_key")
    else:
        raise TypeError(f"expected a StreamChannelRef or a dict, got {type(ref).__name__}")
    if not isinstance(channel_id, str) or not isinstance(access_key, str):
        raise ValueError("a channel ref needs string 'channel_id' and 'access_key'")
    return StreamChannelRef(channel_id=channel_id, access_key=access_key, direction=direction)


def _in_async_context() -> bool:
    try:
        sniffio.current_async_library()
    except sniffio.AsyncLibraryNotFoundError:
        return False
    return True


# -- one end of a channel: the two I/O drivers -------------------------------------------


class _ChannelEnd:
    _DIRECTION: ClassVar[Literal["read", "write"]]

    def __init__(
        self,
        engine_ws_base: str,
        ref: RefLike,
        *,
        headers: Optional[dict[str, str]] = None,
        ssl_context: Optional[ssl.SSLContext] = None,
        connect_timeout: float = 10.0,
        close_timeout: float = 10.0,
        max_message_size: int = 64 * _MiB,
    ) -> None:
        self.ref = _as_ref(ref, self._DIRECTION)
        self.engine_url = engine_ws_base
        self._address = _channel_address(
            engine_ws_base, self.ref.channel_id, self.ref.access_key, self._DIRECTION
        )
        self._headers = _handshake_headers(headers)
        self._ssl_context = ssl_context
        self._connect_timeout = connect_timeout
        self._close_timeout = close_timeout
        self._max_message_size = max_message_size
        self._mode: Optional[Literal["async", "sync"]] = None
        self._wire: Optional[_Wire] = None
        self._stream: Optional[anyio.abc.ByteStream] = None
        self._sock: Optional[socket.socket] = None
        self._alock: Optional[anyio.Lock] = None
        self._tlock = threading.Lock()
        self._closed = False
        self._broken: Optional[ChannelError] = None

    @property
    def channel_id(self) -> str:
        return self.ref.channel_id

    @property
    def closed(self) -> bool:
        """True once ``close``/``close_async`` (or ``abort``) was called."""
        return self._closed

    def __repr__(self) -> str:
        state = "closed" if self._closed else ("open" if self._wire else "not connected")
        return f"<{type(self).__name__} {self.ref.channel_id} {state}>"

    def _new_wire(self) -> _Wire:
        return _Wire(self._address, self._headers, self._max_message_size, self.ref.channel_id)

    def _tls(self) -> Optional[ssl.SSLContext]:
        if not self._address.secure:
            return None
        return self._ssl_context or ssl.create_default_context()

    def _enter(self, mode: Literal["async", "sync"]) -> None:
        if mode == "sync" and _in_async_context():
            raise IIIUsageError(
                f"the blocking {type(self).__name__} API was called on a running event loop; "
                "await the async form instead"
            )
        if self._mode is None:
            self._mode = mode
        elif self._mode != mode:
            raise IIIUsageError(
                f"this {type(self).__name__} was opened with the {self._mode} API; "
                f"keep using that one"
            )

    def _check_usable(self) -> None:
        if self._broken is not None:
            raise self._broken
        if self._closed:
            raise ChannelError(
                f"channel {self.ref.channel_id}: this {type(self).__name__} is closed",
                channel_id=self.ref.channel_id,
            )

    def _connect_failed(self, exc: BaseException) -> None:
        # A refused or failed connect is final for this object (make a new one
        # to try again); an interrupted one (cancelled) may be retried.
        self._wire = None
        if isinstance(exc, ChannelError):
            self._broken = exc

    def _io_error(self, wire: _Wire, exc: BaseException) -> None:
        wire.lost(str(exc) or type(exc).__name__)
        if wire.error is not None:
            raise wire.error from exc

    def _no_socket(self, wire: _Wire) -> ChannelError:
        return wire.error or ChannelError(
            f"channel {self.ref.channel_id}: the channel socket is closed",
            channel_id=self.ref.channel_id,
        )

    # -- async --------------------------------------------------------------

    def _lock_async(self) -> anyio.Lock:
        if self._alock is None:
            self._alock = anyio.Lock()
        return self._alock

    async def _connect_async(self) -> _Wire:
        address = self._address
        wire = self._new_wire()
        self._wire = wire
        try:
            with anyio.fail_after(self._connect_timeout):
                try:
                    context = self._tls()
                    if context is None:
                        self._stream = await anyio.connect_tcp(address.host, address.port)
                    else:
                        self._stream = await anyio.connect_tcp(
                            address.host,
                            address.port,
                            ssl_context=context,
                            tls_standard_compatible=False,
                        )
                except (OSError, anyio.BrokenResourceError, anyio.EndOfStream) as exc:
                    raise ChannelError(
                        f"channel {self.ref.channel_id}: could not connect to the engine at "
                        f"{address.host}:{address.port}: {exc}",
                        channel_id=self.ref.channel_id,
                    ) from exc
                await self._drive_async(wire, _op_handshake(wire))
        except TimeoutError:
            err = ChannelError(
                f"channel {self.ref.channel_id}: no WebSocket upgrade within "
                f"{self._connect_timeout:g}s",
                channel_id=self.ref.channel_id,
            )
            await self._drop_async()
            self._connect_failed(err)
            raise err from None
        except BaseException as exc:
            await self._drop_async()
            self._connect_failed(exc)
            raise
        return wire

    async def _drive_async(self, wire: _Wire, op: Op[T]) -> T:
        reply: Optional[bytes] = None
        try:
            while True:
                try:
                    request = op.send(reply)
                except StopIteration as stop:
                    return stop.value  # type: ignore[no-any-return]
                stream = self._stream
                if stream is None:
                    raise self._no_socket(wire)
                if request is None:
                    try:
                        reply = await stream.receive(_READ_SIZE)
                    except anyio.EndOfStream:
                        reply = b""
                    except (OSError, anyio.BrokenResourceError, anyio.ClosedResourceError) as exc:
                        wire.lost(str(exc) or type(exc).__name__)
                        reply = b""
                else:
                    reply = None
                    try:
                        await stream.send(request)
                    except (OSError, anyio.BrokenResourceError, anyio.ClosedResourceError) as exc:
                        self._io_error(wire, exc)
                    except BaseException:
                        # Cancelled mid-send: a frame may be cut, the socket is unusable.
                        self._broken = ChannelError(
                            f"channel {self.ref.channel_id}: a send was interrupted; "
                            "the channel socket is no longer usable",
                            channel_id=self.ref.channel_id,
                        )
                        raise
        finally:
            op.close()
            if wire.eof or self._broken is not None:
                await self._drop_async()

    async def _drop_async(self) -> None:
        stream, self._stream = self._stream, None
        if stream is not None:
            with anyio.CancelScope(shield=True):
                with suppress(OSError, anyio.BrokenResourceError, anyio.ClosedResourceError):
                    await stream.aclose()

    async def _run_async(self, make_op: Callable[[_Wire], Op[T]]) -> T:
        self._enter("async")
        async with self._lock_async():
            self._check_usable()
            wire = self._wire or await self._connect_async()
            return await self._drive_async(wire, make_op(wire))

    async def _close_async(self, code: int, reason: str) -> None:
        self._enter("async")
        async with self._lock_async():
            if self._closed:
                return
            self._closed = True
            wire = self._wire
            if wire is None:
                if self._DIRECTION == "read" or self._broken is not None:
                    return
                wire = await self._connect_async()  # an empty stream still needs its end
            timed_out = False
            try:
                if self._stream is not None and self._broken is None:
                    with anyio.move_on_after(self._close_timeout) as scope:
                        with suppress(ChannelError):
                            await self._drive_async(wire, _op_close(wire, code, reason))
                    timed_out = scope.cancelled_caught
            finally:
                await self._drop_async()
            self._after_close(wire, timed_out)

    # -- sync ---------------------------------------------------------------

    def _connect_sync(self) -> _Wire:
        address = self._address
        wire = self._new_wire()
        self._wire = wire
        deadline = time.monotonic() + self._connect_timeout
        try:
            try:
                sock = socket.create_connection(
                    (address.host, address.port), timeout=self._connect_timeout
                )
            except OSError as exc:
                raise ChannelError(
                    f"channel {self.ref.channel_id}: could not connect to the engine at "
                    f"{address.host}:{address.port}: {exc}",
                    channel_id=self.ref.channel_id,
                ) from exc
            self._sock = sock
            with suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            context = self._tls()
            if context is not None:
                try:
                    self._sock = context.wrap_socket(sock, server_hostname=address.host)
                except OSError as exc:
                    raise ChannelError(
                        f"channel {self.ref.channel_id}: TLS handshake failed: {exc}",
                        channel_id=self.ref.channel_id,
                    ) from exc
            self._drive_sync(wire, _op_handshake(wire), deadline, "the WebSocket upgrade")
        except BaseException as exc:
            self._drop_sync()
            self._connect_failed(exc)
            raise
        return wire

    def _drive_sync(
        self, wire: _Wire, op: Op[T], deadline: Optional[float] = None, what: str = ""
    ) -> T:
        reply: Optional[bytes] = None
        try:
            while True:
                try:
                    request = op.send(reply)
                except StopIteration as stop:
                    return stop.value  # type: ignore[no-any-return]
                sock = self._sock
                if sock is None:
                    raise self._no_socket(wire)
                if deadline is None:
                    sock.settimeout(None)
                else:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise TimeoutError
                    sock.settimeout(left)
                if request is None:
                    try:
                        reply = sock.recv(_READ_SIZE)
                    except TimeoutError:
                        raise
                    except OSError as exc:
                        wire.lost(str(exc) or type(exc).__name__)
                        reply = b""
                else:
                    reply = None
                    try:
                        sock.sendall(request)
                    except TimeoutError:
                        raise
                    except OSError as exc:
                        self._io_error(wire, exc)
        except TimeoutError:
            # A blocking send may have been cut mid-frame: the socket is done.
            self._broken = ChannelError(
                f"channel {self.ref.channel_id}: {what or 'the operation'} timed out",
                channel_id=self.ref.channel_id,
            )
            raise self._broken from None
        finally:
            op.close()
            if wire.eof or self._broken is not None:
                self._drop_sync()

    def _drop_sync(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            with suppress(OSError):
                sock.close()

    def _run_sync(self, make_op: Callable[[_Wire], Op[T]]) -> T:
        self._enter("sync")
        with self._tlock:
            self._check_usable()
            wire = self._wire or self._connect_sync()
            return self._drive_sync(wire, make_op(wire))

    def _close_sync(self, code: int, reason: str) -> None:
        self._enter("sync")
        with self._tlock:
            if self._closed:
                return
            self._closed = True
            wire = self._wire
            if wire is None:
                if self._DIRECTION == "read" or self._broken is not None:
                    return
                wire = self._connect_sync()  # an empty stream still needs its end
            timed_out = False
            try:
                if self._sock is not None and self._broken is None:
                    deadline = time.monotonic() + self._close_timeout
                    try:
                        self._drive_sync(wire, _op_close(wire, code, reason), deadline, "close")
                    except ChannelError:
                        timed_out = self._broken is not None
            finally:
                self._drop_sync()
            self._after_close(wire, timed_out)

    def _after_close(self, wire: _Wire, timed_out: bool) -> None:
        """Raise what the closing handshake revealed, if it matters (the writer's)."""


# -- the reader -------------------------------------------------------------------------


class ChannelReader(_ChannelEnd):
    """The reading end of a channel.

    Binary items are the data: ``async for chunk in reader`` (or
    ``for chunk in reader`` in a thread) yields them as ``bytes``, and
    ``read_all`` joins them.  Text items go to the ``on_message`` callbacks;
    ``messages()`` / ``messages_sync()`` yield both kinds (``str`` or
    ``bytes``) in order, without calling the callbacks.

    The stream ends when the engine closes the socket after the writer
    finished; a refused socket, a lost connection or an abnormal close raises
    ``ChannelError`` once the items that arrived before it were yielded.

    Args:
        engine_ws_base: the engine URL (``worker.address``); its query is kept.
        ref: the channel's ref (a ``StreamChannelRef`` or its dict form).
        headers: extra handshake headers (``Authorization: Bearer $III_TOKEN``
            is added when ``III_TOKEN`` is set and no Authorization is given).
        ssl_context: TLS settings for ``wss://`` (default: verify certificates).
        connect_timeout: seconds for TCP, TLS and the WebSocket upgrade.
        close_timeout: seconds ``close`` waits for the engine's Close reply.
        max_message_size: the largest item accepted (default 64 MiB).
    """

    _DIRECTION: ClassVar[Literal["read", "write"]] = "read"

    def __init__(
        self,
        engine_ws_base: str,
        ref: RefLike,
        *,
        headers: Optional[dict[str, str]] = None,
        ssl_context: Optional[ssl.SSLContext] = None,
        connect_timeout: float = 10.0,
        close_timeout: float = 10.0,
        max_message_size: int = 64 * _MiB,
    ) -> None:
        super().__init__(
            engine_ws_base,
            ref,
            headers=headers,
            ssl_context=ssl_context,
            connect_timeout=connect_timeout,
            close_timeout=close_timeout,
            max_message_size=max_message_size,
        )
        self._callbacks: list[Callable[[str], Any]] = []
        self._ended = False

    def on_message(self, callback: Callable[[str], Any]) -> None:
        """Call ``callback(text)`` for every text item taken by iteration or ``read_all``.

        Under the async API the callback may be a coroutine function.
        """
        self._callbacks.append(callback)

    @property
    def ended(self) -> bool:
        """True once the whole stream was read (the engine's Close arrived)."""
        return self._ended

    # -- async --------------------------------------------------------------

    async def receive(self) -> Optional[Item]:
        """The next item (``str`` or ``bytes``), or ``None`` at the end of the stream."""
        if self._ended:
            return None
        item = await self._run_async(_op_next)
        if item is None:
            self._ended = True
        return item

    def messages(self) -> AsyncIterator[Item]:
        """Every item, text (``str``) and binary (``bytes``), in order."""
        return _AsyncItems(self, text=True)

    def __aiter__(self) -> AsyncIterator[bytes]:
        return _AsyncItems(self, text=False)

    async def read_all(self) -> bytes:
        """Every binary item joined (text items go to the callbacks)."""
        return b"".join([chunk async for chunk in self])

    async def close_async(self) -> None:
        """Stop reading (Close 1000; unread items are dropped). Idempotent."""
        await self._close_async(_CLOSE_NORMAL, "")

    async def __aenter__(self) -> ChannelReader:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close_async()

    async def _dispatch_async(self, text: str) -> None:
        for callback in list(self._callbacks):
            result = callback(text)
            if inspect.isawaitable(result):
                await result

    # -- sync ---------------------------------------------------------------

    def receive_sync(self) -> Optional[Item]:
        """``receive`` for plain threads."""
        if self._ended:
            return None
        item = self._run_sync(_op_next)
        if item is None:
            self._ended = True
        return item

    def messages_sync(self) -> Iterator[Item]:
        """``messages`` for plain threads."""
        while True:
            item = self.receive_sync()
            if item is None:
                return
            yield item

    def iter_sync(self) -> Iterator[bytes]:
        """The binary items, for plain threads (text items go to the callbacks)."""
        while True:
            item = self.receive_sync()
            if item is None:
                return
            if isinstance(item, str):
                self._dispatch_sync(item)
            else:
                yield item

    def __iter__(self) -> Iterator[bytes]:
        return self.iter_sync()

    def read_all_sync(self) -> bytes:
        """``read_all`` for plain threads."""
        return b"".join(self.iter_sync())

    def close(self) -> None:
        """``close_async`` for plain threads."""
        self._close_sync(_CLOSE_NORMAL, "")

    def __enter__(self) -> ChannelReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _dispatch_sync(self, text: str) -> None:
        for callback in list(self._callbacks):
            result = callback(text)
            if inspect.isawaitable(result):
                if inspect.iscoroutine(result):
                    result.close()
                raise IIIUsageError(
                    "an async on_message callback cannot run under the blocking reader API"
                )


class _AsyncItems:
    """``async for`` over a reader (a class, not an async generator: nothing to finalize)."""

    __slots__ = ("_reader", "_text")

    def __init__(self, reader: ChannelReader, *, text: bool) -> None:
        self._reader = reader
        self._text = text

    def __aiter__(self) -> _AsyncItems:
        return self

    async def __anext__(self) -> Any:
        while True:
            item = await self._reader.receive()
            if item is None:
                raise StopAsyncIteration
            if isinstance(item, str) and not self._text:
                await self._reader._dispatch_async(item)
                continue
            return item


# -- the writer -------------------------------------------------------------------------


class ChannelWriter(_ChannelEnd):
    """The writing end of a channel.

    ``write`` sends bytes as binary items of at most 64 KiB each;
    ``send_message_async`` sends one text item.  Each returns once the socket
    took the bytes, so a full channel makes the writer wait.  ``close_async``
    ends the stream (Close 1000) and waits for the engine to confirm it: a
    writer must be closed, or the reader waits for ever.  Leaving
    ``async with writer:`` (``with writer:``) on an exception closes with
    1011 instead.

    Arguments: as ``ChannelReader``.
    """

    _DIRECTION: ClassVar[Literal["read", "write"]] = "write"

    # -- async --------------------------------------------------------------

    async def write(self, data: Union[bytes, bytearray, memoryview]) -> None:
        """Send ``data`` as binary items (64 KiB frames). Empty data sends nothing."""
        await self._run_async(lambda wire: _op_send(wire, data))

    async def send_message_async(self, text: str) -> None:
        """Send ``text`` as one text item."""
        if not isinstance(text, str):
            raise TypeError(f"send_message takes a str, got {type(text).__name__}")
        await self._run_async(lambda wire: _op_send(wire, text))

    async def close_async(self) -> None:
        """End the stream: Close 1000, then wait for the engine's reply. Idempotent.

        Raises:
            ChannelError: the engine did not confirm the end of the stream.
        """
        await self._close_async(_CLOSE_NORMAL, "")

    async def abort_async(self, reason: str = "writer failed") -> None:
        """Close with 1011 (error) instead of ending the stream normally (best effort).

        Note: the engine may still report a normal end of stream to the reader.
        """
        with suppress(ChannelError):
            await self._close_async(_CLOSE_INTERNAL, reason[:100])

    async def __aenter__(self) -> ChannelWriter:
        return self

    async def __aexit__(
        self,
        exc_type: Optional[type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        if exc is None:
            await self.close_async()
        else:
            await self.abort_async()

    # -- sync ---------------------------------------------------------------

    def write_sync(self, data: Union[bytes, bytearray, memoryview]) -> None:
        """``write`` for plain threads."""
        self._run_sync(lambda wire: _op_send(wire, data))

    def send_message(self, text: str) -> None:
        """``send_message_async`` for plain threads."""
        if not isinstance(text, str):
            raise TypeError(f"send_message takes a str, got {type(text).__name__}")
        self._run_sync(lambda wire: _op_send(wire, text))

    def close(self) -> None:
        """``close_async`` for plain threads."""
        self._close_sync(_CLOSE_NORMAL, "")

    def abort(self, reason: str = "writer failed") -> None:
        """``abort_async`` for plain threads."""
        with suppress(ChannelError):
            self._close_sync(_CLOSE_INTERNAL, reason[:100])

    def __enter__(self) -> ChannelWriter:
        return self

    def __exit__(
        self,
        exc_type: Optional[type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        if exc is None:
            self.close()
        else:
            self.abort()

    # -- closing policy ------------------------------------------------------

    def _after_close(self, wire: _Wire, timed_out: bool) -> None:
        if self._broken is not None and not timed_out:
            raise self._broken
        if wire.error is not None:
            raise wire.error
        if not wire.confirmed:
            within = f" within {self._close_timeout:g}s" if timed_out else ""
            raise ChannelError(
                f"channel {self.ref.channel_id}: the engine did not confirm the end of the "
                f"stream{within}",
                channel_id=self.ref.channel_id,
            )


# -- creating channels ------------------------------------------------------------------


@attrs.frozen
class Channel:
    """Both ends of a new channel, and their refs (to pass to other workers)."""

    writer: ChannelWriter
    reader: ChannelReader
    writer_ref: StreamChannelRef
    reader_ref: StreamChannelRef


def _create_payload(buffer_size: Optional[int]) -> dict[str, Any]:
    if buffer_size is None:
        return {}
    if isinstance(buffer_size, bool) or not isinstance(buffer_size, int):
        raise TypeError(f"buffer_size must be an int, got {type(buffer_size).__name__}")
    return {"buffer_size": buffer_size}


def _channel_from(worker: III, result: Any) -> Channel:
    try:
        if not isinstance(result, dict):
            raise TypeError(f"expected an object, got {type(result).__name__}")
        writer_ref = from_json_value(result["writer"], StreamChannelRef)
        reader_ref = from_json_value(result["reader"], StreamChannelRef)
    except Exception as exc:
        raise ChannelError(f"{CREATE_FUNCTION_ID} returned an unexpected value: {exc}") from exc
    config = getattr(worker, "_config", None)
    headers = dict(config.headers) if config is not None else None
    options = getattr(worker, "_options", None)
    ssl_context = getattr(options, "ssl_context", None)
    url = worker.address
    return Channel(
        writer=ChannelWriter(url, writer_ref, headers=headers, ssl_context=ssl_context),
        reader=ChannelReader(url, reader_ref, headers=headers, ssl_context=ssl_context),
        writer_ref=writer_ref,
        reader_ref=reader_ref,
    )


def create_channel(worker: III, buffer_size: Optional[int] = None) -> Channel:
    """Create a channel (``engine::channels::create``), from a plain thread.

    Args:
        worker: a connected worker; its address, headers and TLS settings are used.
        buffer_size: the queue length in items (engine default 64, max 1024).
    """
    payload = _create_payload(buffer_size)
    result = worker.trigger({"function_id": CREATE_FUNCTION_ID, "payload": payload})
    return _channel_from(worker, result)


async def create_channel_async(worker: III, buffer_size: Optional[int] = None) -> Channel:
    """``create_channel`` for asyncio and trio callers."""
    payload = _create_payload(buffer_size)
    result = await worker.trigger_async({"function_id": CREATE_FUNCTION_ID, "payload": payload})
    return _channel_from(worker, result)


# -- refs inside payloads ---------------------------------------------------------------

_DIRECTIONS = frozenset(("read", "write"))


def _is_ref(value: dict[Any, Any]) -> bool:
    return (
        "channel_id" in value
        and isinstance(value["channel_id"], str)
        and isinstance(value.get("access_key"), str)
        and value.get("direction") in _DIRECTIONS
    )


def _has_ref(data: Any) -> bool:
    """Iterative scan: any nested channel ref? (No recursion limit on deep payloads.)"""
    stack = [data]
    while stack:
        value = stack.pop()
        if isinstance(value, dict):
            if "channel_id" in value and _is_ref(value):
                return True
            stack.extend(v for v in value.values() if isinstance(v, (dict, list, tuple)))
        else:
            stack.extend(v for v in value if isinstance(v, (dict, list, tuple)))
    return False


def resolve_channel_refs(
    data: Any,
    engine_url: str,
    headers: Optional[dict[str, str]] = None,
    *,
    ssl_context: Optional[ssl.SSLContext] = None,
) -> Any:
    """Replace every channel ref inside ``data`` by a ``ChannelReader``/``ChannelWriter``.

    A ref is an object with string ``channel_id`` and ``access_key`` and a
    ``direction`` of ``read`` or ``write`` (docs/protocol.md#channel-refs); dicts, lists and
    tuples are walked.  Containers holding a ref are copied; everything else
    is returned as is (``data`` itself when there is no ref).
    """
    if not isinstance(data, (dict, list, tuple)) or not _has_ref(data):
        return data

    def make(ref: dict[str, Any]) -> _ChannelEnd:
        cls = ChannelReader if ref["direction"] == "read" else ChannelWriter
        return cls(engine_url, ref, headers=headers, ssl_context=ssl_context)

    def walk(value: Any) -> Any:
        if isinstance(value, dict):
            if "channel_id" in value and _is_ref(value):
                return make(value)
            out: Optional[dict[Any, Any]] = None
            for key, item in value.items():
                if isinstance(item, (dict, list, tuple)):
                    new = walk(item)
                    if new is not item:
                        if out is None:
                            out = dict(value)
                        out[key] = new
            return value if out is None else out
        if isinstance(value, (list, tuple)):
            items: Optional[list[Any]] = None
            for index, item in enumerate(value):
                if isinstance(item, (dict, list, tuple)):
                    new = walk(item)
                    if new is not item:
                        if items is None:
                            items = list(value)
                        items[index] = new
            if items is None:
                return value
            return tuple(items) if isinstance(value, tuple) else items
        return value

    return walk(data)
