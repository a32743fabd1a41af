"""The async pump shared by the anyio and trio adapters.

It moves bytes between one socket at a time and a ``Connection``, and nothing
else: every decision (when to connect, reconnect, ping, time out) is the
core's.  The adapters only supply the primitives of their library.

One task runs the core's timers, one writes for the reader and the timer; each
socket the core asks for gets one task that connects, reads, and at the end
says goodbye and closes it.  Writes to a socket go through its lock and are
taken from the core *under* that lock, so bytes reach the socket in the order
the core produced them, and a slow engine makes writers (``process()`` after
a command) wait instead of growing a buffer.

The reader and the timer never wait for a writer: what they make the core
queue (pongs, pings, answers) is written by the write task, so a writer stuck
on an engine that stopped reading cannot stop us from reading (which is often
what the engine waits for) or from noticing a dead socket.  When the core
drops a socket, a send in progress gets ``_GRACE`` seconds, then it is cut.
"""

from __future__ import annotations

import math
import ssl
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager, suppress
from typing import Optional, Protocol

from iii_protocol import Connection, ConnectionState
from iii_protocol import events as ev

__all__ = ["AsyncPump", "Backend", "Stream", "EventHandler"]

EventHandler = Callable[[ev.Event], None]

#: Seconds a socket the core dropped gets to finish a send and say goodbye.
_GRACE = 1.0


class Stream(Protocol):
    async def send(self, data: bytes) -> None: ...
    async def receive(self) -> bytes: ...  # b"" at end of stream
    async def aclose(self) -> None: ...
    async def aclose_forcefully(self) -> None: ...  # at once, even when cancelled


class CancelScope(Protocol):
    deadline: float

    @property
    def cancelled_caught(self) -> bool: ...
    def cancel(self) -> None: ...
    def __enter__(self) -> CancelScope: ...
    def __exit__(self, *exc: object) -> Optional[bool]: ...


class TaskGroup(Protocol):
    @property
    def cancel_scope(self) -> CancelScope: ...
    def start_soon(self, fn: Callable[[], Awaitable[object]]) -> None: ...


class AsyncEvent(Protocol):
    def set(self) -> None: ...
    async def wait(self) -> object: ...


class AsyncLock(Protocol):
    async def __aenter__(self) -> object: ...
    async def __aexit__(self, *exc: object) -> Optional[bool]: ...


class Backend(Protocol):
    """What an async library must provide to run the pump."""

    io_errors: tuple[type[BaseException], ...]

    def current_time(self) -> float: ...
    def task_group(self) -> AbstractAsyncContextManager[TaskGroup]: ...
    def cancel_scope(self, deadline: float = math.inf, shield: bool = False) -> CancelScope: ...
    def event(self) -> AsyncEvent: ...
    def lock(self) -> AsyncLock: ...
    async def open_stream(
        self,
        host: str,
        port: int,
        *,
        secure: bool,
        ssl_context: Optional[ssl.SSLContext],
        timeout: float,
    ) -> Stream:
        """TCP, then TLS when ``secure``, within ``timeout`` s; raises ``OSError``."""
        ...


class _Attempt:
    """One socket the core asked for: its task's scope, its stream once open,
    the lock its writers take, the send in progress, and its last words."""

    __slots__ = ("broken", "last_words", "lock", "scope", "sending", "stream")

    def __init__(self, backend: Backend) -> None:
        self.scope = backend.cancel_scope()
        self.lock = backend.lock()
        self.stream: Optional[Stream] = None
        self.sending: Optional[CancelScope] = None
        self.broken = False  # a send failed or was cut: the stream is unusable
        self.last_words = b""


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


class AsyncPump:
    """Drive ``conn`` on the running event loop until it is closed or failed.

    Args:
        conn: the session; only the pump's loop may touch it.
        backend: the primitives of anyio or trio.
        on_event: called on the loop for every application event (never for
            ``OpenTransport``/``CloseTransport``); must not block.
        ssl_context: for ``wss://``; default verifies certificates.
    """

    def __init__(
        self,
        conn: Connection,
        backend: Backend,
        on_event: EventHandler,
        *,
        ssl_context: Optional[ssl.SSLContext] = None,
    ) -> None:
        self.conn = conn
        self._backend = backend
        self._on_event = on_event
        self._ssl_context = ssl_context
        self._tg: Optional[TaskGroup] = None
        self._attempt: Optional[_Attempt] = None
        self._write_wanted = backend.event()
        self._wakeup = backend.event()
        self._done = backend.event()
        self._sleeping_until = math.inf

    def now(self) -> float:
        return self._backend.current_time()

    async def run(self, started: Optional[Callable[[], None]] = None) -> None:
        """Connect and serve until ``aclose()`` or a terminal failure."""
        async with self._backend.task_group() as tg:
            self._tg = tg
            if self.conn.state is ConnectionState.DISCONNECTED:
                self.conn.connect(self.now())
            tg.start_soon(self._timer_loop)
            tg.start_soon(self._write_loop)
            self._after_io()
            if started is not None:
                started()
            await self._done.wait()
            # Socket tasks say goodbye (bounded) in their finally blocks.
            tg.cancel_scope.cancel()

    async def aclose(self) -> None:
        """Close the session (pending calls fail with ``SHUTDOWN``) and stop ``run``."""
        self.conn.close()
        await self.process()
        self._done.set()

    # -- called by the API layer after each command ----------------------------

    async def process(self) -> None:
        """Dispatch the core's events and write what it queued (waits while
        the engine is slow to read)."""
        self._dispatch()
        await self.flush()

    async def flush(self) -> None:
        """Write everything the core queued to the current socket."""
        while (attempt := self._attempt) is not None and (stream := attempt.stream) is not None:
            async with attempt.lock:
                # Re-checked before every take: once the core dropped this
                # socket, what it queues is for the next one.
                while attempt is self._attempt:
                    data = self.conn.data_to_send()
                    if not data:
                        return
                    if not await self._send(attempt, stream, data):
                        return

    def after_command(self) -> None:
        """``process()`` without waiting: dispatch now, and have the write
        task write what the core queued (once, however often this is called
        before it runs)."""
        self._after_io()

    # -- internals ---------------------------------------------------------------

    def _dispatch(self) -> None:
        """Handle the core's events; never awaits, so no event waits for a wake-up."""
        conn = self.conn
        for event in conn.events():
            if isinstance(event, ev.OpenTransport):
                self._start_attempt(event)
            elif isinstance(event, ev.CloseTransport):
                # What the core queued before dropping the socket is its last
                # words on it (a Close frame); never for the next socket.
                last_words = conn.data_to_send()
                if self._attempt is not None:
                    self._retire(self._attempt, last_words)
            else:
                self._on_event(event)
        if conn.state is ConnectionState.FAILED:
            self._done.set()
        timer = conn.get_timer()
        if timer is not None and timer < self._sleeping_until:
            self._wakeup.set()

    def _after_io(self) -> None:
        """After the reader or the timer ran the core: dispatch, and have the
        queued bytes written by the write task (never wait for a writer)."""
        self._dispatch()
        self._write_wanted.set()

    async def _write_loop(self) -> None:
        while True:
            await self._write_wanted.wait()
            self._write_wanted = self._backend.event()
            await self.flush()  # loops until the core has nothing queued

    async def _send(self, attempt: _Attempt, stream: Stream, data: bytes) -> bool:
        scope = self._backend.cancel_scope()
        attempt.sending = scope
        failure: Optional[BaseException] = None
        try:
            with scope:
                await stream.send(data)
        except self._backend.io_errors as exc:
            failure = exc
        finally:
            attempt.sending = None
        if failure is None and not scope.cancelled_caught:
            return True
        attempt.broken = True  # part of a frame may be out: no more bytes on it
        reason = "send cut short" if failure is None else _describe(failure)
        self._lost(attempt, reason, failure)
        return False

    # -- sockets ---------------------------------------------------------------

    def _start_attempt(self, event: ev.OpenTransport) -> None:
        attempt = _Attempt(self._backend)
        self._attempt = attempt
        assert self._tg is not None
        self._tg.start_soon(lambda: self._serve(attempt, event))

    def _retire(self, attempt: _Attempt, last_words: bytes = b"") -> None:
        """Stop using ``attempt``: its reader stops, a send in progress gets
        ``_GRACE`` seconds, then its task says goodbye and closes it."""
        if self._attempt is attempt:
            self._attempt = None
        attempt.last_words = last_words
        sending = attempt.sending
        if sending is not None:
            sending.deadline = min(sending.deadline, self.now() + _GRACE)
        attempt.scope.cancel()

    def _lost(self, attempt: _Attempt, reason: str, cause: Optional[BaseException] = None) -> None:
        """The socket broke: tell the core, unless it dropped it already."""
        if self._attempt is not attempt:
            return
        self._retire(attempt)
        self.conn.transport_closed(self.now(), reason, cause=cause)
        self.conn.data_to_send()  # what is still queued was for that socket
        self._after_io()

    async def _serve(self, attempt: _Attempt, event: ev.OpenTransport) -> None:
        conn = self.conn
        reason = "connection closed by the engine"
        cause: Optional[BaseException] = None
        try:
            with attempt.scope:
                try:
                    stream = attempt.stream = await self._backend.open_stream(
                        event.host,
                        event.port,
                        secure=event.secure,
                        ssl_context=self._ssl_context,
                        timeout=event.timeout,
                    )
                    if self._attempt is not attempt:
                        return  # dropped by the core while connecting
                    conn.transport_opened(self.now())
                    self._after_io()
                    while data := await stream.receive():
                        conn.receive_data(data, self.now())
                        self._after_io()
                except self._backend.io_errors as exc:
                    reason = _describe(exc)
                    cause = exc
                self._lost(attempt, reason, cause)
        finally:
            # Finished, dropped or cancelled: the socket never outlives its task.
            if attempt.stream is not None:
                with self._backend.cancel_scope(self.now() + 2 * _GRACE, shield=True):
                    await self._goodbye(attempt, attempt.stream)
                await attempt.stream.aclose_forcefully()

    async def _goodbye(self, attempt: _Attempt, stream: Stream) -> None:
        async with attempt.lock:  # after a send in progress (cut after _GRACE)
            if attempt.last_words and not attempt.broken:
                with (
                    self._backend.cancel_scope(self.now() + _GRACE),
                    suppress(*self._backend.io_errors),
                ):
                    await stream.send(attempt.last_words)

    async def _timer_loop(self) -> None:
        conn = self.conn
        while True:
            timer = conn.get_timer()
            self._sleeping_until = math.inf if timer is None else timer
            with self._backend.cancel_scope(self._sleeping_until):
                await self._wakeup.wait()
            self._wakeup = self._backend.event()
            self._sleeping_until = -math.inf  # a poke while we run is pointless
            conn.handle_timer(self.now())
            self._after_io()
