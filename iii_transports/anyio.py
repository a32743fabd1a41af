"""The anyio adapter: runs the worker on the caller's own asyncio or trio loop.

``open_stream`` is this backend's stream opener, also used by channel ends.
"""

from __future__ import annotations

import math
import ssl
from contextlib import AbstractAsyncContextManager
from typing import Optional, cast

import anyio
import anyio.abc

from iii_protocol import Connection

from ._connect import READ_SIZE, client_tls, timed_out, tls_broken
from ._pump import AsyncEvent, AsyncLock, AsyncPump, CancelScope, EventHandler, TaskGroup

__all__ = ["IO_ERRORS", "AnyioStream", "AnyioTransport", "anyio_backend", "open_stream"]

#: What a failed send or receive on an ``AnyioStream`` raises.
IO_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    anyio.BrokenResourceError,
    anyio.ClosedResourceError,
    anyio.EndOfStream,
)


class AnyioStream:
    """A connected byte stream (TCP, or TLS over it) on the running anyio loop."""

    __slots__ = ("_stream",)

    def __init__(self, stream: anyio.abc.ByteStream) -> None:
        self._stream = stream

    async def send(self, data: bytes) -> None:
        """Send all of ``data``, waiting while the peer is not reading."""
        await self._stream.send(data)

    async def receive(self) -> bytes:
        """The next bytes that arrive; ``b""`` at the end of the stream."""
        try:
            return await self._stream.receive(READ_SIZE)
        except anyio.EndOfStream:
            return b""

    async def aclose(self) -> None:
        """Close the stream (TLS: after its close_notify)."""
        await self._stream.aclose()

    async def aclose_forcefully(self) -> None:
        """Close the stream at once, without waiting for the peer."""
        await anyio.aclose_forcefully(self._stream)


async def open_stream(
    host: str,
    port: int,
    *,
    secure: bool = False,
    ssl_context: Optional[ssl.SSLContext] = None,
    timeout: Optional[float] = None,
) -> AnyioStream:
    """Connect to ``host:port`` over TCP, with TLS when ``secure``, within ``timeout`` s.

    Args:
        ssl_context: the TLS settings when ``secure`` (default: verify the
            certificate against the system's CAs); ignored otherwise.
        timeout: seconds for TCP and TLS together; ``None``: no limit.

    Raises:
        OSError: refused, unreachable, a TLS failure (``ssl.SSLError``), or
            ``TimeoutError`` after ``timeout``.
    """
    context = client_tls(secure, ssl_context)
    with anyio.move_on_after(timeout):
        try:
            if context is None:
                return AnyioStream(await anyio.connect_tcp(host, port))
            stream = await anyio.connect_tcp(
                host,
                port,
                tls=True,
                ssl_context=context,
                tls_hostname=host,
                tls_standard_compatible=False,
            )
        except (anyio.BrokenResourceError, anyio.EndOfStream) as exc:
            raise tls_broken(exc) from exc
        except OSError as exc:
            raise _attempt_error(exc) from None
        return AnyioStream(stream)
    raise timed_out(host, port)


def _attempt_error(exc: OSError) -> OSError:
    """anyio reports a failed connect as a bare ``OSError("All connection attempts
    failed")`` caused by each address's own error: the first of those says why
    (refused, unreachable), as the blocking adapter's error does."""
    if type(exc) is not OSError or exc.errno is not None:
        return exc
    cause = exc.__cause__
    attempts = getattr(cause, "exceptions", (cause,))
    return next((e for e in attempts if isinstance(e, OSError)), exc)


class _AnyioBackend:
    io_errors = IO_ERRORS

    def current_time(self) -> float:
        return anyio.current_time()

    def task_group(self) -> AbstractAsyncContextManager[TaskGroup]:
        return cast(AbstractAsyncContextManager[TaskGroup], anyio.create_task_group())

    def cancel_scope(self, deadline: float = math.inf, shield: bool = False) -> CancelScope:
        return cast(CancelScope, anyio.CancelScope(deadline=deadline, shield=shield))

    def event(self) -> AsyncEvent:
        return anyio.Event()

    def lock(self) -> AsyncLock:
        return cast(AsyncLock, anyio.Lock())

    open_stream = staticmethod(open_stream)


#: anyio's primitives for the shared async pump.
anyio_backend = _AnyioBackend()


class AnyioTransport(AsyncPump):
    """Drive a ``Connection`` on the running anyio loop (asyncio or trio).

    ``await transport.run()`` inside a task group; call ``await transport.process()``
    after each command on ``transport.conn``; ``await transport.aclose()`` to stop.
    """

    def __init__(
        self,
        conn: Connection,
        on_event: EventHandler,
        *,
        ssl_context: Optional[ssl.SSLContext] = None,
    ) -> None:
        super().__init__(conn, anyio_backend, on_event, ssl_context=ssl_context)
