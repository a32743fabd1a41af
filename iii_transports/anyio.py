"""The anyio adapter: runs the worker on the caller's own asyncio or trio loop."""

from __future__ import annotations

import math
import ssl
from contextlib import AbstractAsyncContextManager
from typing import Optional, cast

import anyio
import anyio.abc

from iii_protocol import Connection

from ._pump import AsyncEvent, AsyncLock, AsyncPump, CancelScope, EventHandler, Stream, TaskGroup

__all__ = ["AnyioTransport", "anyio_backend"]

_READ_SIZE = 65536


class _AnyioStream:
    __slots__ = ("_stream",)

    def __init__(self, stream: anyio.abc.ByteStream) -> None:
        self._stream = stream

    async def send(self, data: bytes) -> None:
        await self._stream.send(data)

    async def receive(self) -> bytes:
        try:
            return await self._stream.receive(_READ_SIZE)
        except anyio.EndOfStream:
            return b""

    async def aclose(self) -> None:
        await self._stream.aclose()

    async def aclose_forcefully(self) -> None:
        await anyio.aclose_forcefully(self._stream)


class _AnyioBackend:
    io_errors: tuple[type[BaseException], ...] = (
        OSError,
        TimeoutError,
        anyio.BrokenResourceError,
        anyio.ClosedResourceError,
        anyio.EndOfStream,
    )

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

    async def connect(self, host: str, port: int, ssl_context: Optional[ssl.SSLContext]) -> Stream:
        if ssl_context is None:
            return _AnyioStream(await anyio.connect_tcp(host, port))
        stream = await anyio.connect_tcp(
            host,
            port,
            tls=True,
            ssl_context=ssl_context,
            tls_hostname=host,
            tls_standard_compatible=False,
        )
        return _AnyioStream(stream)


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
