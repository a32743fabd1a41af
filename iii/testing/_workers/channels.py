"""The channels worker module (docs/protocol.md#channels): ``engine::channels::create``
and the ``/ws/channels/{id}`` route, a bounded queue between one writer socket
and one reader socket.  Channels whose two ends did not both connect within the
TTL are swept (on the engine clock).
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Awaitable, Callable, Mapping
from typing import Optional, Union

import anyio
import attrs
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from iii_protocol._json import JSON, JSONObject

from .._api import EngineWorker, RouteSocket
from .._checks import seconds, setting
from .._records import Call, Worker, new_id
from .inputs import INT, parse_input

__all__ = [
    "PREFIX",
    "Channel",
    "ChannelRegistry",
    "Channels",
    "ChannelsConfig",
    "serve_reader",
    "serve_writer",
]

PREFIX = "/ws/channels/"

Item = tuple[str, Union[str, bytes]]
ChannelSocket = RouteSocket


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
        self,
        channel_id: str,
        key: str,
        buffer_size: int,
        owner: Optional[Worker],
        created_at: float,
    ) -> None:
        self.id = channel_id
        self.key = key
        self.buffer_size = buffer_size
        self.owner = owner
        #: engine clock (monotonic seconds)
        self.created_at = created_at
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
    def __init__(self, monotonic: Callable[[], float]) -> None:
        self.channels: dict[str, Channel] = {}
        self._monotonic = monotonic

    def create(self, buffer_size: int, owner: Optional[Worker] = None) -> Channel:
        channel = Channel(new_id(), new_id(), buffer_size, owner, self._monotonic())
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

    def drop_owned(self, owner: Worker) -> None:
        for channel in [c for c in self.channels.values() if c.owner is owner]:
            self._discard(channel)

    def sweep(self, ttl: float) -> int:
        """Drop channels whose two ends were not both connected within ``ttl`` s."""
        now = self._monotonic()
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


@attrs.frozen
class ChannelsConfig:
    ttl: float = setting(
        300.0, seconds(positive=True), "seconds a channel waits for both ends (engine clock)"
    )
    sweep_interval: float = setting(
        60.0, seconds(positive=True), "seconds between sweeps of unused channels (engine clock)"
    )


class Channels(EngineWorker):
    """``engine::channels::create`` and the channel sockets."""

    name = "channels"
    option_prefix = "channel_"
    config_class = ChannelsConfig
    config: ChannelsConfig

    def install(self) -> None:
        self.registry = ChannelRegistry(self.host.clock.monotonic)
        self.function("engine::channels::create", self._create, "Create a data channel")
        self.host.add_route(PREFIX, self._route)

    def _create(self, call: Call) -> JSON:
        inp = parse_input(call, {"buffer_size": (INT, False)}, "CreateChannelInput")
        size = inp.get("buffer_size")
        buffer_size = 64 if not isinstance(size, int) else max(1, min(1024, size))
        channel = self.registry.create(buffer_size)
        return {
            "writer": {"channel_id": channel.id, "access_key": channel.key, "direction": "write"},
            "reader": {"channel_id": channel.id, "access_key": channel.key, "direction": "read"},
        }

    def _route(
        self, path: str, query: Mapping[str, list[str]]
    ) -> Union[tuple[int, bytes], tuple[str, Callable[[RouteSocket], Awaitable[None]]]]:
        channel_id = urllib.parse.unquote(path[len(PREFIX) :])
        keys = query.get("key")
        dirs = query.get("dir")
        if not keys or not dirs or dirs[-1] not in ("read", "write") or "/" in channel_id:
            return 400, b"Failed to deserialize query string\n"
        channel = self.registry.lookup(channel_id, keys[-1])
        if channel is None:
            return 404, b"Channel not found\n"
        direction = dirs[-1]
        registry = self.registry

        async def serve(sock: RouteSocket) -> None:
            if direction == "write":
                await serve_writer(registry, sock, channel)
            else:
                await serve_reader(registry, sock, channel)

        return f"channel:{channel_id}:{direction}", serve

    async def run(self) -> None:
        while True:
            await self.host.clock.sleep(self.config.sweep_interval)
            swept = self.registry.sweep(self.config.ttl)
            if swept:
                self.log.info("swept %d unused channel(s)", swept)

    def close(self) -> None:
        self.registry.close_all()

    def worker_disconnected(self, worker: Worker) -> None:
        self.registry.drop_owned(worker)

    def describe(self) -> list[JSONObject]:
        return [c.describe() for c in self.registry.channels.values()]
