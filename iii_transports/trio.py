"""The trio-native adapter: the anyio adapter's pump on trio's own primitives."""

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

from ._pump import AsyncEvent, AsyncLock, AsyncPump, CancelScope, EventHandler, Stream, TaskGroup

__all__ = ["TrioTransport", "trio_backend"]

_READ_SIZE = 65536


class _TrioStream:
    __slots__ = ("_stream",)

    def __init__(self, stream: trio.abc.Stream) -> None:
        self._stream = stream

    async def send(self, data: bytes) -> None:
        await self._stream.send_all(data)

    async def receive(self) -> bytes:
        return bytes(await self._stream.receive_some(_READ_SIZE))

    async def aclose(self) -> None:
        await self._stream.aclose()

    async def aclose_forcefully(self) -> None:
        await trio.aclose_forcefully(self._stream)


class _TrioBackend:
    io_errors: tuple[type[BaseException], ...] = (
        OSError,
        TimeoutError,
        trio.BrokenResourceError,
        trio.ClosedResourceError,
    )

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

    async def connect(self, host: str, port: int, ssl_context: Optional[ssl.SSLContext]) -> Stream:
        tcp = await trio.open_tcp_stream(host, port)
        if ssl_context is None:
            return _TrioStream(tcp)
        tls = trio.SSLStream(tcp, ssl_context, server_hostname=host, https_compatible=False)
        try:
            await tls.do_handshake()
        except BaseException:
            await trio.aclose_forcefully(tcp)
            raise
        return _TrioStream(tls)


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
