"""The trio-native adapter: the anyio adapter's pump on trio's own primitives.

``open_stream`` is this backend's stream opener.
"""

from __future__ import annotations

import math
import ssl
from contextlib import AbstractAsyncContextManager
from typing import Optional, cast

try:
    import trio
except ModuleNotFoundError as exc:  # trio is an extra: say which one
    if exc.name != "trio":
        raise
    raise ModuleNotFoundError(
        "iii_transports.trio needs trio: pip install 'iii-sdk[trio]'", name="trio"
    ) from exc

from iii_protocol import Connection

from ._connect import READ_SIZE, client_tls, timed_out, tls_broken
from ._pump import AsyncEvent, AsyncLock, AsyncPump, CancelScope, EventHandler, TaskGroup

__all__ = ["IO_ERRORS", "TrioStream", "TrioTransport", "open_stream", "trio_backend"]

#: What a failed send or receive on a ``TrioStream`` raises.
IO_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    trio.BrokenResourceError,
    trio.ClosedResourceError,
)


class TrioStream:
    """A connected byte stream (TCP, or TLS over it) on the running trio loop."""

    __slots__ = ("_stream",)

    def __init__(self, stream: trio.abc.Stream) -> None:
        self._stream = stream

    async def send(self, data: bytes) -> None:
        """Send all of ``data``, waiting while the peer is not reading."""
        await self._stream.send_all(data)

    async def receive(self) -> bytes:
        """The next bytes that arrive; ``b""`` at the end of the stream."""
        return bytes(await self._stream.receive_some(READ_SIZE))

    async def aclose(self) -> None:
        """Close the stream (TLS: after its close_notify)."""
        await self._stream.aclose()

    async def aclose_forcefully(self) -> None:
        """Close the stream at once, without waiting for the peer."""
        await trio.aclose_forcefully(self._stream)


async def open_stream(
    host: str,
    port: int,
    *,
    secure: bool = False,
    ssl_context: Optional[ssl.SSLContext] = None,
    timeout: Optional[float] = None,
) -> TrioStream:
    """Connect to ``host:port`` over TCP, with TLS when ``secure``, within ``timeout`` s.

    Arguments and errors: as ``iii_transports.anyio.open_stream``.
    """
    context = client_tls(secure, ssl_context)
    with trio.move_on_after(math.inf if timeout is None else timeout):
        tcp = await trio.open_tcp_stream(host, port)
        if context is None:
            return TrioStream(tcp)
        tls = trio.SSLStream(tcp, context, server_hostname=host, https_compatible=False)
        try:
            await tls.do_handshake()
        except trio.BrokenResourceError as exc:
            await trio.aclose_forcefully(tcp)
            raise tls_broken(exc) from exc
        except BaseException:
            await trio.aclose_forcefully(tcp)
            raise
        return TrioStream(tls)
    raise timed_out(host, port)


class _TrioBackend:
    io_errors = IO_ERRORS

    def current_time(self) -> float:
        return trio.current_time()

    def task_group(self) -> AbstractAsyncContextManager[TaskGroup]:
        return cast(AbstractAsyncContextManager[TaskGroup], trio.open_nursery())

    def cancel_scope(self, deadline: float = math.inf, shield: bool = False) -> CancelScope:
        return cast(CancelScope, trio.CancelScope(deadline=deadline, shield=shield))

    def event(self) -> AsyncEvent:
        return trio.Event()

    def lock(self) -> AsyncLock:
        return cast(AsyncLock, trio.Lock())

    open_stream = staticmethod(open_stream)


#: trio's primitives for the shared async pump.
trio_backend = _TrioBackend()


class TrioTransport(AsyncPump):
    """Drive a ``Connection`` on trio directly (no anyio layer)."""

    def __init__(
        self,
        conn: Connection,
        on_event: EventHandler,
        *,
        ssl_context: Optional[ssl.SSLContext] = None,
    ) -> None:
        super().__init__(conn, trio_backend, on_event, ssl_context=ssl_context)
