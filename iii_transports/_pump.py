"""The async pump shared by the anyio and trio adapters.

It moves bytes between one socket at a time and a ``Connection``, and nothing
else: every decision (when to connect, reconnect, ping, time out) is the
core's.  The adapters only supply the primitives of their library.

One task runs the core's timers; each socket the core asks for gets one task
that connects and then reads.  Writes go through one lock and are taken from
the core *under* that lock, so bytes reach the socket in the order the core
produced them, and a slow engine makes writers wait instead of growing a
buffer.
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


class Stream(Protocol):
    async def send(self, data: bytes) -> None: ...
    async def receive(self) -> bytes: ...  # b"" at end of stream
    async def aclose(self) -> None: ...


class CancelScope(Protocol):
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
    def cancel_scope(self, deadline: float = math.inf) -> CancelScope: ...
    def event(self) -> AsyncEvent: ...
    def lock(self) -> AsyncLock: ...
    async def connect(
        self, host: str, port: int, ssl_context: Optional[ssl.SSLContext]
    ) -> Stream: ...
    async def aclose_forcefully(self, stream: Stream) -> None:
        """Close at once, even in a cancelled scope; idempotent."""


class _Attempt:
    """One socket the core asked for: its stream once open, and its task's scope."""

    __slots__ = ("scope", "stream")

    def __init__(self, scope: CancelScope) -> None:
        self.scope = scope
        self.stream: Optional[Stream] = None


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
        self._write_lock = backend.lock()
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
            await self.process()
            if started is not None:
                started()
            await self._done.wait()
            tg.cancel_scope.cancel()

    async def aclose(self) -> None:
        """Close the session (pending calls fail with ``SHUTDOWN``) and stop ``run``."""
        self.conn.close()
        await self.process()
        self._done.set()

    # -- called by the API layer after each command ----------------------------

    async def process(self) -> None:
        """Dispatch the core's events and write what it queued."""
        conn = self.conn
        retired: list[tuple[_Attempt, bytes]] = []
        # Every event is dispatched before the first await: closing a socket
        # may cancel the task running this (its reader), and nothing the core
        # reported may wait for a later wake-up.
        for event in conn.events():
            if isinstance(event, ev.OpenTransport):
                self._start_attempt(event)
            elif isinstance(event, ev.CloseTransport):
                attempt, self._attempt = self._attempt, None
                if attempt is not None:
                    # What the core queued before dropping the socket is its
                    # last words on it (a Close frame).
                    retired.append((attempt, conn.data_to_send()))
            else:
                self._on_event(event)
        if conn.state is ConnectionState.FAILED:
            self._done.set()
        timer = conn.get_timer()
        if timer is not None and timer < self._sleeping_until:
            self._wakeup.set()
        for attempt, last_words in retired:
            await self._retire(attempt, last_words)
        await self.flush()

    async def flush(self) -> None:
        attempt = self._attempt
        if attempt is None or attempt.stream is None:
            return
        async with self._write_lock:
            data = self.conn.data_to_send()
            if data:
                # A broken socket is the reader's to notice and report.
                with suppress(*self._backend.io_errors):
                    await attempt.stream.send(data)

    # -- sockets ---------------------------------------------------------------

    def _start_attempt(self, event: ev.OpenTransport) -> None:
        attempt = _Attempt(self._backend.cancel_scope())
        self._attempt = attempt
        assert self._tg is not None
        self._tg.start_soon(lambda: self._serve(attempt, event))

    async def _retire(self, attempt: _Attempt, last_words: bytes) -> None:
        stream = attempt.stream
        if stream is not None:
            async with self._write_lock:
                with (
                    self._backend.cancel_scope(self.now() + 1.0),
                    suppress(*self._backend.io_errors),
                ):
                    if last_words:
                        await stream.send(last_words)
                    await stream.aclose()
        # Last: when the caller is this attempt's own reader, it stops at its
        # next await, after the work above.
        attempt.scope.cancel()

    async def _serve(self, attempt: _Attempt, event: ev.OpenTransport) -> None:
        conn = self.conn
        reason = "connection closed by the engine"
        try:
            with attempt.scope:
                try:
                    with self._backend.cancel_scope(self.now() + event.timeout):
                        context = self._ssl_context if event.secure else None
                        if event.secure and context is None:
                            context = ssl.create_default_context()
                        attempt.stream = await self._backend.connect(
                            event.host, event.port, context
                        )
                    if attempt.stream is None:
                        reason = f"timed out connecting to {event.host}:{event.port}"
                    else:
                        conn.transport_opened(self.now())
                        await self.process()
                        stream = attempt.stream
                        while True:
                            data = await stream.receive()
                            if not data:
                                break
                            conn.receive_data(data, self.now())
                            await self.process()
                except self._backend.io_errors as exc:
                    reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
                if self._attempt is attempt:
                    self._attempt = None
                    conn.transport_closed(self.now(), reason)
                    await self.process()
        finally:
            # Cancelled or finished: the socket never outlives its task.
            if attempt.stream is not None:
                await self._backend.aclose_forcefully(attempt.stream)

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
            await self.process()
