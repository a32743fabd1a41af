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
  event loop raises ``IIIUsageError``, except a writer's ``send_message`` and
  ``close`` on asyncio, which run in the background there as in the official
  SDK, in order with ``writer.stream``'s operations and before any later
  awaited one).

One object keeps the mode it first connected with.

Ends connect lazily, on first use.  Writes wait for the socket, so a full
channel (the engine stops reading the writer) makes the writer wait: that is
the backpressure.  A reader's stream is complete only when the engine's Close
arrives; an HTTP refusal (404: unknown channel or wrong key), a lost
connection or an abnormal close raises ``ChannelError``, never a short read.

The layers: the WebSocket protocol of a channel socket is
``iii_protocol.ChannelConnection`` (sans I/O), and its stream comes from the
``open_stream`` of ``iii_transports.anyio`` (async) or
``iii_transports.blocking`` (threads), as for the control connection.  Each
operation on an end (open, take an item, send, close) is written once, as a
generator asking for the socket's output to be written or for one more read;
``_drive_async`` and ``_drive_sync`` only move bytes and time them.
"""

from __future__ import annotations

import enum
import functools
import inspect
import threading
import time
from collections.abc import AsyncIterator, Callable, Generator, Iterator
from contextlib import suppress
from types import TracebackType
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Optional, TypeVar, Union

import anyio
import attrs
import sniffio

from iii_protocol import (
    NEED_DATA,
    ChannelConnection,
    ChannelError,
    ChannelMessage,
    ChannelState,
    EngineAddress,
    StreamChannelRef,
    from_json_value,
)
from iii_transports import anyio as async_streams
from iii_transports import blocking as blocking_streams
from iii_transports._connect import TLSContext

from ._channel_values import (
    MAX_FRAME_SIZE,
    ChannelDirection,
    ChannelItem,
    ReadableStream,
    WritableStream,
    _flavour,
    build_channel_url,
    resolve_headers,
)
from ._endpoint import handshake_headers
from .errors import IIIUsageError

if TYPE_CHECKING:
    from ._client import III

__all__ = [
    "MAX_FRAME_SIZE",
    "Channel",
    "ChannelDirection",
    "ChannelError",
    "ChannelItem",
    "ChannelReader",
    "ChannelWriter",
    "ReadableStream",
    "WritableStream",
    "build_channel_url",
    "create_channel",
    "create_channel_async",
    "resolve_channel_refs",
    "resolve_headers",
]

T = TypeVar("T")

CREATE_FUNCTION_ID = "engine::channels::create"
FRAME_SIZE = MAX_FRAME_SIZE
_MiB = 1024 * 1024
_CLOSE_NORMAL = 1000
_CLOSE_INTERNAL = 1011

Item = Union[str, bytes]
RefLike = Union[StreamChannelRef, "dict[str, Any]"]


# -- the operations, written once for both modes ------------------------------------------


class _Need(enum.Enum):
    #: Write what the socket queued.
    WRITE = "write"
    #: Write what the socket queued, read once, feed it, write the answers.
    READ = "read"


# An operation on an end's ``ChannelConnection``: yields what it needs from
# the driver and returns its value.
Op = Generator[_Need, None, T]


def _op_open(conn: ChannelConnection) -> Op[None]:
    conn.start()
    yield _Need.WRITE
    while conn.next_event() is NEED_DATA:  # raises if refused; else ChannelOpened
        yield _Need.READ


def _op_next(conn: ChannelConnection) -> Op[Optional[Item]]:
    while (event := conn.next_event()) is NEED_DATA:
        yield _Need.READ
    return event.data if isinstance(event, ChannelMessage) else None  # None: ChannelEnded


def _op_send(conn: ChannelConnection, data: Union[str, bytes, bytearray, memoryview]) -> Op[None]:
    if isinstance(data, str):
        conn.send(data)
        yield _Need.WRITE
        return
    view = memoryview(data).cast("B")
    for start in range(0, len(view), FRAME_SIZE):
        conn.send(view[start : start + FRAME_SIZE])
        yield _Need.WRITE


def _op_close(conn: ChannelConnection, code: int, reason: str) -> Op[None]:
    """Send Close, then read (dropping items) until the engine's Close or EOF."""
    conn.close(code, reason)
    yield _Need.WRITE
    while conn.next_event() is NEED_DATA:
        yield _Need.READ


# -- failures -------------------------------------------------------------------------------


def _failure(conn: ChannelConnection, reason: str) -> ChannelError:
    """Fail the socket for ``reason``; the error that ended it (the first one wins)."""
    error = conn.transport_failed(reason)
    if error is not None:
        return error
    channel_id = conn.ref.channel_id
    return ChannelError(f"channel {channel_id}: {reason}", channel_id=channel_id)


def _lost(exc: BaseException) -> str:
    return f"connection to the engine lost: {str(exc) or type(exc).__name__}"


def _not_connected(address: EngineAddress, exc: OSError, timeout: float) -> str:
    where = f"could not connect to the engine at {address.host}:{address.port}"
    return f"{where} within {timeout:g}s" if isinstance(exc, TimeoutError) else f"{where}: {exc}"


_INTERRUPTED = "a send was interrupted; the channel socket is no longer usable"


def _left(deadline: Optional[float]) -> Optional[float]:
    """Seconds until ``deadline`` for a blocking call (``None``: no limit)."""
    if deadline is None:
        return None
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError
    return left


# -- refs and modes ---------------------------------------------------------------------


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


# -- one end of a channel: the two drivers ------------------------------------------------


class _ChannelEnd:
    _DIRECTION: ClassVar[Literal["read", "write"]]
    #: Why ``close`` failed when the engine did not answer within ``close_timeout``.
    _UNANSWERED: ClassVar[str]

    def __init__(
        self,
        engine_ws_base: str,
        ref: RefLike,
        headers: Optional[dict[str, str]] = None,
        *,
        ssl_context: Optional[TLSContext] = None,
        connect_timeout: float = 10.0,
        close_timeout: float = 10.0,
        max_message_size: int = 64 * _MiB,
    ) -> None:
        self.ref = _as_ref(ref, self._DIRECTION)
        self.engine_url = engine_ws_base
        self._headers = handshake_headers(headers)
        self._ssl_context = ssl_context
        self._connect_timeout = connect_timeout
        self._close_timeout = close_timeout
        self._max_message_size = max_message_size
        self._conn = self._new_conn()  # checks the URL now
        self._mode: Optional[Literal["async", "sync"]] = None
        self._astream: Optional[async_streams.AnyioStream] = None
        self._bstream: Optional[blocking_streams.BlockingStream] = None
        self._alock: Optional[anyio.Lock] = None
        self._tlock = threading.Lock()
        self._closed = False

    @property
    def channel_id(self) -> str:
        return self.ref.channel_id

    @property
    def closed(self) -> bool:
        """True once ``close``/``close_async`` (or ``abort``) was called."""
        return self._closed

    def __repr__(self) -> str:
        state = self._conn.state
        if self._closed:
            shown = "closed"
        elif state is ChannelState.IDLE:
            shown = "not connected"
        else:
            shown = state.value
        return f"<{type(self).__name__} {self.ref.channel_id} {shown}>"

    def _new_conn(self) -> ChannelConnection:
        return ChannelConnection(
            self.engine_url,
            self.ref,
            headers=self._headers,
            max_message_size=self._max_message_size,
        )

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
        if self._closed:
            raise ChannelError(
                f"channel {self.ref.channel_id}: this {type(self).__name__} is closed",
                channel_id=self.ref.channel_id,
            )

    def _after_close(self, conn: ChannelConnection) -> None:
        """Raise what the closing handshake revealed, if it matters (the writer's)."""

    # -- async --------------------------------------------------------------

    def _lock_async(self) -> anyio.Lock:
        if self._alock is None:
            self._alock = anyio.Lock()
        return self._alock

    async def _open_async(self) -> None:
        conn = self._conn
        address = conn.address
        deadline = anyio.current_time() + self._connect_timeout
        try:
            try:
                self._astream = await async_streams.open_stream(
                    address.host,
                    address.port,
                    secure=address.secure,
                    ssl_context=self._ssl_context,
                    timeout=self._connect_timeout,
                )
            except OSError as exc:
                raise _failure(conn, _not_connected(address, exc, self._connect_timeout)) from exc
            with anyio.CancelScope(deadline=deadline) as scope:
                await self._drive_async(_op_open(conn))
            if scope.cancelled_caught:
                raise _failure(conn, f"no WebSocket upgrade within {self._connect_timeout:g}s")
        except ChannelError:  # final for this end: make a new one to try again
            await self._drop_async()
            raise
        except BaseException:  # interrupted: the next call starts over
            await self._drop_async()
            self._conn = self._new_conn()
            raise

    async def _drive_async(self, op: Op[T]) -> T:
        conn = self._conn
        try:
            while True:
                try:
                    need = next(op)
                except StopIteration as stop:
                    return stop.value  # type: ignore[no-any-return]
                await self._write_async(conn)
                if need is _Need.READ:
                    await self._read_async(conn)
                    await self._write_async(conn)  # pongs, a Close reply, our Close 1009
        finally:
            op.close()
            if conn.finished:
                await self._drop_async()

    async def _write_async(self, conn: ChannelConnection) -> None:
        data = conn.data_to_send()
        stream = self._astream
        if not data or stream is None:
            return
        try:
            await stream.send(data)
        except async_streams.IO_ERRORS as exc:
            error = conn.transport_failed(_lost(exc))
            if error is not None:
                raise error from exc
        except BaseException:
            # Cancelled mid-send: a frame may be cut, the socket is unusable.
            conn.transport_failed(_INTERRUPTED)
            raise

    async def _read_async(self, conn: ChannelConnection) -> None:
        stream = self._astream
        assert stream is not None, "the socket waits for data, so its stream is open"
        try:
            data = await stream.receive()
        except async_streams.IO_ERRORS as exc:
            conn.transport_failed(_lost(exc))
            return
        conn.receive_data(data)

    async def _drop_async(self) -> None:
        stream, self._astream = self._astream, None
        if stream is not None:
            with anyio.CancelScope(shield=True), suppress(*async_streams.IO_ERRORS):
                await stream.aclose()

    async def _run_async(self, make_op: Callable[[ChannelConnection], Op[T]]) -> T:
        self._enter("async")
        async with self._lock_async():
            self._check_usable()
            if self._conn.state is ChannelState.IDLE:
                await self._open_async()
            return await self._drive_async(make_op(self._conn))

    async def _close_async(self, code: int, reason: str) -> None:
        self._enter("async")
        async with self._lock_async():
            if self._closed:
                return
            self._closed = True
            try:
                if self._conn.state is ChannelState.IDLE:
                    if self._DIRECTION == "read":
                        return  # nothing to end
                    await self._open_async()  # a writer's empty stream still needs its end
                conn = self._conn
                if conn.state is ChannelState.OPEN:
                    with anyio.move_on_after(self._close_timeout) as scope:
                        with suppress(ChannelError):
                            await self._drive_async(_op_close(conn, code, reason))
                    if scope.cancelled_caught:
                        conn.transport_failed(self._UNANSWERED.format(self._close_timeout))
            finally:
                await self._drop_async()
            self._after_close(conn)

    # -- sync ---------------------------------------------------------------

    def _open_sync(self) -> None:
        conn = self._conn
        address = conn.address
        deadline = time.monotonic() + self._connect_timeout
        try:
            try:
                self._bstream = blocking_streams.open_stream(
                    address.host,
                    address.port,
                    secure=address.secure,
                    ssl_context=self._ssl_context,
                    timeout=self._connect_timeout,
                )
            except OSError as exc:
                raise _failure(conn, _not_connected(address, exc, self._connect_timeout)) from exc
            upgrade = f"no WebSocket upgrade within {self._connect_timeout:g}s"
            self._drive_sync(_op_open(conn), deadline, upgrade)
        except ChannelError:  # final for this end: make a new one to try again
            self._drop_sync()
            raise
        except BaseException:  # interrupted: the next call starts over
            self._drop_sync()
            self._conn = self._new_conn()
            raise

    def _drive_sync(self, op: Op[T], deadline: Optional[float] = None, on_timeout: str = "") -> T:
        """Run ``op``; with a ``deadline`` (``time.monotonic()``), fail the
        socket for ``on_timeout`` when it passes."""
        conn = self._conn
        try:
            while True:
                try:
                    need = next(op)
                except StopIteration as stop:
                    return stop.value  # type: ignore[no-any-return]
                self._write_sync(conn, deadline, on_timeout)
                if need is _Need.READ:
                    self._read_sync(conn, deadline, on_timeout)
                    self._write_sync(conn, deadline, on_timeout)
        finally:
            op.close()
            if conn.finished:
                self._drop_sync()

    def _write_sync(
        self, conn: ChannelConnection, deadline: Optional[float], on_timeout: str
    ) -> None:
        data = conn.data_to_send()
        stream = self._bstream
        if not data or stream is None:
            return
        try:
            stream.settimeout(_left(deadline))
            stream.send(data)
        except OSError as exc:
            timed_out = deadline is not None and isinstance(exc, TimeoutError)
            # Cut mid-frame maybe: the socket is unusable either way.
            error = conn.transport_failed(on_timeout if timed_out else _lost(exc))
            if error is not None:
                raise error from exc

    def _read_sync(
        self, conn: ChannelConnection, deadline: Optional[float], on_timeout: str
    ) -> None:
        stream = self._bstream
        assert stream is not None, "the socket waits for data, so its stream is open"
        try:
            stream.settimeout(_left(deadline))
            data = stream.receive()
        except OSError as exc:
            timed_out = deadline is not None and isinstance(exc, TimeoutError)
            conn.transport_failed(on_timeout if timed_out else _lost(exc))
            return
        conn.receive_data(data)

    def _drop_sync(self) -> None:
        stream, self._bstream = self._bstream, None
        if stream is not None:
            stream.close()

    def _run_sync(self, make_op: Callable[[ChannelConnection], Op[T]]) -> T:
        self._enter("sync")
        with self._tlock:
            self._check_usable()
            if self._conn.state is ChannelState.IDLE:
                self._open_sync()
            return self._drive_sync(make_op(self._conn))

    def _close_sync(self, code: int, reason: str) -> None:
        self._enter("sync")
        with self._tlock:
            if self._closed:
                return
            self._closed = True
            try:
                if self._conn.state is ChannelState.IDLE:
                    if self._DIRECTION == "read":
                        return  # nothing to end
                    self._open_sync()  # a writer's empty stream still needs its end
                conn = self._conn
                if conn.state is ChannelState.OPEN:
                    deadline = time.monotonic() + self._close_timeout
                    unanswered = self._UNANSWERED.format(self._close_timeout)
                    with suppress(ChannelError):
                        self._drive_sync(_op_close(conn, code, reason), deadline, unanswered)
            finally:
                self._drop_sync()
            self._after_close(conn)


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
    _UNANSWERED: ClassVar[str] = "the engine did not answer the Close within {:g}s"

    def __init__(
        self,
        engine_ws_base: str,
        ref: RefLike,
        headers: Optional[dict[str, str]] = None,
        *,
        ssl_context: Optional[TLSContext] = None,
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

    @functools.cached_property
    def stream(self) -> ReadableStream:
        """This reader as an async stream of its binary items."""
        return ReadableStream(self)

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
    _UNANSWERED: ClassVar[str] = "the engine did not confirm the end of the stream within {:g}s"

    #: The latest operation started in the background (an asyncio task).
    _background: Any = None

    @functools.cached_property
    def stream(self) -> WritableStream:
        """This writer as a stream whose ``write``/``end`` do not make the caller wait."""
        return WritableStream(self)

    # -- async --------------------------------------------------------------

    async def write(self, data: Union[bytes, bytearray, memoryview]) -> None:
        """Send ``data`` as binary items (64 KiB frames). Empty data sends nothing."""
        await self._after_background()
        await self._write_now(data)

    async def send_message_async(self, msg: str) -> None:
        """Send ``msg`` as one text item."""
        if not isinstance(msg, str):
            raise TypeError(f"send_message takes a str, got {type(msg).__name__}")
        await self._after_background()
        await self._run_async(lambda conn: _op_send(conn, msg))

    async def close_async(self) -> None:
        """End the stream: Close 1000, then wait for the engine's reply. Idempotent.

        Raises:
            ChannelError: the engine did not confirm the end of the stream.
        """
        await self._after_background()
        await self._close_now()

    async def _write_now(self, data: Union[bytes, bytearray, memoryview]) -> None:
        await self._run_async(lambda conn: _op_send(conn, data))

    async def _close_now(self) -> None:
        await self._close_async(_CLOSE_NORMAL, "")

    # -- in the background (asyncio) -----------------------------------------

    def _in_background(self, make: Callable[[], Any], what: str) -> bool:
        """On an asyncio loop, start ``make()`` in a task that runs after the
        background operations started before it, and return True; in a plain
        thread return False (the caller runs it now).  Under trio, where
        nothing may run unowned, raise ``IIIUsageError``."""
        flavour = _flavour()
        if flavour is None:
            return False
        if flavour != "asyncio":
            raise IIIUsageError(
                f"{what} cannot run in the background under {flavour}: await the "
                "ChannelWriter's write()/send_message_async()/close_async() instead"
            )
        import asyncio

        previous = self._background

        async def run_after() -> None:
            if previous is not None:
                await asyncio.shield(previous)
            await make()

        self._background = asyncio.ensure_future(run_after())
        return True

    async def _after_background(self) -> None:
        """Wait for the background operations started so far (an awaited
        operation comes after them); raise what failed there."""
        pending = self._background
        if pending is None:
            return
        import asyncio

        await asyncio.shield(pending)
        if self._background is pending:
            self._background = None

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
        self._run_sync(lambda conn: _op_send(conn, data))

    def send_message(self, msg: str) -> None:
        """``send_message_async`` for plain threads; on an asyncio loop it returns
        at once and sends in the background (``await writer.stream.drain()``
        waits for it)."""
        if not isinstance(msg, str):
            raise TypeError(f"send_message takes a str, got {type(msg).__name__}")

        async def send() -> None:
            await self._run_async(lambda conn: _op_send(conn, msg))

        if not self._in_background(send, "ChannelWriter.send_message"):
            self._run_sync(lambda conn: _op_send(conn, msg))

    def close(self) -> None:
        """``close_async`` for plain threads; on an asyncio loop it returns at
        once and ends the stream in the background, after what was sent before."""
        if not self._in_background(self._close_now, "ChannelWriter.close"):
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

    def _after_close(self, conn: ChannelConnection) -> None:
        if conn.state is ChannelState.CLOSED:
            return
        if conn.error is not None:
            raise conn.error
        # The engine closed the socket first: nothing confirms what we sent.
        raise ChannelError(
            f"channel {self.ref.channel_id}: the engine did not confirm the end of the stream",
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
    endpoint = worker._endpoint()
    url, headers, context = endpoint.url, dict(endpoint.headers), endpoint.ssl_context
    return Channel(
        writer=ChannelWriter(url, writer_ref, headers=headers, ssl_context=context),
        reader=ChannelReader(url, reader_ref, headers=headers, ssl_context=context),
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
    ssl_context: Optional[TLSContext] = None,
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
