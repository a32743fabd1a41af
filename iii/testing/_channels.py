"""Data channels (docs/protocol.md#channels): a bounded queue between one writer
socket and one reader socket on ``/ws/channels/{id}``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Optional, Protocol, Union

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from iii_protocol._json import JSONObject

if TYPE_CHECKING:
    from ._engine import Worker

__all__ = ["Channel", "ChannelRegistry", "ChannelSocket", "serve_reader", "serve_writer"]

log = logging.getLogger("iii.testing")

Item = tuple[str, Union[str, bytes]]
MessageHandler = Callable[[str, Union[str, bytes]], Optional[Awaitable[None]]]


class ChannelSocket(Protocol):
    """The part of a server WebSocket the channel ends use."""

    async def read_loop(self, handler: MessageHandler) -> None: ...

    def send_message(self, kind: str, payload: Union[str, bytes]) -> None: ...

    async def wait_relieved(self) -> None: ...

    def close(self, code: Optional[int]) -> None: ...


class Channel:
    __slots__ = (
        "buffer_size",
        "created_at",
        "id",
        "items_written",
        "key",
        "owner",
        "reader_done",
        "reader_taken",
        "receive",
        "send",
        "writer_done",
        "writer_taken",
    )

    def __init__(
        self, channel_id: str, key: str, buffer_size: int, owner: Optional[Worker]
    ) -> None:
        self.id = channel_id
        self.key = key
        self.buffer_size = buffer_size
        self.owner = owner
        self.created_at = time.monotonic()
        send: MemoryObjectSendStream[Item]
        receive: MemoryObjectReceiveStream[Item]
        send, receive = anyio.create_memory_object_stream[Item](buffer_size)
        self.send = send
        self.receive = receive
        self.writer_taken = False
        self.reader_taken = False
        self.writer_done = False
        self.reader_done = False
        self.items_written = 0

    def describe(self) -> JSONObject:
        return {
            "channel_id": self.id,
            "buffer_size": self.buffer_size,
            "writer_connected": self.writer_taken and not self.writer_done,
            "reader_connected": self.reader_taken and not self.reader_done,
            "writer_done": self.writer_done,
            "reader_done": self.reader_done,
            "items_written": self.items_written,
            "owner": self.owner.worker_id if self.owner is not None else None,
        }


class ChannelRegistry:
    def __init__(self) -> None:
        self.channels: dict[str, Channel] = {}

    def create(self, buffer_size: int, owner: Optional[Worker] = None) -> Channel:
        from ._engine import new_id

        channel = Channel(new_id(), new_id(), buffer_size, owner)
        self.channels[channel.id] = channel
        return channel

    def lookup(self, channel_id: str, key: str) -> Optional[Channel]:
        channel = self.channels.get(channel_id)
        if channel is None or channel.key != key:
            return None
        return channel

    def _discard(self, channel: Channel) -> None:
        if self.channels.get(channel.id) is channel:
            del self.channels[channel.id]
        channel.send.close()
        channel.receive.close()

    def finished(self, channel: Channel) -> None:
        if channel.writer_done and channel.reader_done:
            self._discard(channel)

    def close_all(self) -> None:
        for channel in list(self.channels.values()):
            self._discard(channel)

    def drop_owned(self, owner: Any) -> None:
        for channel in [c for c in self.channels.values() if c.owner is owner]:
            self._discard(channel)

    def sweep(self, ttl: float) -> int:
        """Drop channels whose two ends were not both connected within ``ttl`` s."""
        now = time.monotonic()
        stale = [
            c
            for c in self.channels.values()
            if not (c.writer_taken and c.reader_taken) and now - c.created_at > ttl
        ]
        for channel in stale:
            self._discard(channel)
        return len(stale)


async def serve_writer(registry: ChannelRegistry, sock: ChannelSocket, channel: Channel) -> None:
    """Every message from the writer socket becomes an item; its Close ends the stream."""
    if channel.writer_taken:
        sock.close(1000)
        await sock.read_loop(_discard)
        return
    channel.writer_taken = True
    send = channel.send
    gone = False

    async def on_message(kind: str, payload: Union[str, bytes]) -> None:
        nonlocal gone
        if gone:
            return
        try:
            await send.send((kind, payload))
            channel.items_written += 1
        except (anyio.BrokenResourceError, anyio.ClosedResourceError):
            gone = True  # the reader left: the rest of the stream goes nowhere

    try:
        await sock.read_loop(on_message)
    finally:
        send.close()
        channel.writer_done = True
        registry.finished(channel)


async def serve_reader(registry: ChannelRegistry, sock: ChannelSocket, channel: Channel) -> None:
    """Send every item to the reader socket, then Close 1000 at end-of-stream."""
    if channel.reader_taken:
        sock.close(1000)
        await sock.read_loop(_discard)
        return
    channel.reader_taken = True

    async def pump() -> None:
        async for kind, payload in channel.receive:
            sock.send_message(kind, payload)
            await sock.wait_relieved()
        sock.close(1000)

    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(pump)
            await sock.read_loop(_discard)
            tg.cancel_scope.cancel()
    finally:
        channel.receive.close()
        channel.reader_done = True
        registry.finished(channel)


def _discard(kind: str, payload: Union[str, bytes]) -> None:
    return None
