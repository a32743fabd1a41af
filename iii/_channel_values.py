"""Small values and adapters around channel ends (re-exported by ``iii.channel``).

Kept apart from ``iii.channels`` (which imports them) so that neither module
imports the other at load time.
"""

from __future__ import annotations

import enum
import os
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Optional, Union
from urllib.parse import quote

import attrs
import sniffio

if TYPE_CHECKING:
    from .channels import ChannelReader, ChannelWriter

__all__ = [
    "MAX_FRAME_SIZE",
    "ChannelDirection",
    "ChannelItem",
    "ReadableStream",
    "WritableStream",
    "build_channel_url",
    "resolve_headers",
]

#: Binary data is sent in items of at most this many bytes.
MAX_FRAME_SIZE = 64 * 1024


class ChannelDirection(str, enum.Enum):
    """Which end a ref opens (its ``direction``)."""

    READ = "read"
    WRITE = "write"


@attrs.frozen
class ChannelItem:
    """One item of a channel: ``text`` or ``binary``, exactly one of them."""

    text: Optional[str] = None
    binary: Optional[bytes] = None

    def __attrs_post_init__(self) -> None:
        if (self.text is None) == (self.binary is None):
            raise ValueError("a ChannelItem holds exactly one of text and binary")

    @classmethod
    def text_item(cls, value: str) -> ChannelItem:
        """An item carrying text."""
        return cls(text=value)

    @classmethod
    def binary_item(cls, value: bytes) -> ChannelItem:
        """An item carrying bytes."""
        return cls(binary=value)

    @property
    def is_text(self) -> bool:
        return self.text is not None

    @property
    def is_binary(self) -> bool:
        return self.binary is not None


def resolve_headers(explicit: Optional[dict[str, str]] = None) -> Optional[dict[str, str]]:
    """Handshake headers for an engine socket: ``explicit``, plus
    ``Authorization: Bearer $III_TOKEN`` when that variable is set and no
    Authorization header is given (names compare case-insensitively)."""
    token = os.environ.get("III_TOKEN", "").strip()
    if not token or any(name.lower() == "authorization" for name in explicit or {}):
        return explicit
    return {**(explicit or {}), "Authorization": f"Bearer {token}"}


def build_channel_url(engine_ws_base: str, channel_id: str, access_key: str, direction: str) -> str:
    """The WebSocket URL of one channel end (a query on the engine URL is kept)."""
    base, _, query = engine_ws_base.partition("?")
    own = f"key={quote(access_key, safe='')}&dir={quote(direction, safe='')}"
    return f"{base.rstrip('/')}/ws/channels/{quote(channel_id, safe='')}?" + (
        f"{query}&{own}" if query else own
    )


def _flavour() -> Optional[str]:
    try:
        return sniffio.current_async_library()
    except sniffio.AsyncLibraryNotFoundError:
        return None


class WritableStream:
    """A ``ChannelWriter`` as a stream that does not make the caller wait.

    ``write(data)`` and ``end(data=None)`` return at once.  On an asyncio loop
    the operations run in order in a background task (``drain()`` awaits
    them, and raises what failed); in a plain thread they run before
    returning.  Under trio, where nothing may run unowned, they raise
    ``IIIUsageError``: ``await writer.write(...)`` instead.
    """

    def __init__(self, writer: ChannelWriter) -> None:
        self._writer = writer

    def write(self, data: Union[bytes, bytearray, memoryview]) -> None:
        """Send ``data`` (binary items of at most ``MAX_FRAME_SIZE`` bytes)."""
        chunk = bytes(data)
        writer = self._writer
        if not writer._in_background(lambda: writer._write_now(chunk), "WritableStream"):
            writer.write_sync(chunk)

    def end(self, data: Optional[Union[bytes, bytearray, memoryview]] = None) -> None:
        """Send ``data`` if given, then end the stream (the writer closes)."""
        if data is not None:
            self.write(data)
        writer = self._writer
        if not writer._in_background(writer._close_now, "WritableStream"):
            writer.close()

    async def drain(self) -> None:
        """Wait until every operation started so far is done (asyncio)."""
        await self._writer._after_background()


class ReadableStream:
    """A ``ChannelReader`` as an async stream of its binary items."""

    def __init__(self, reader: ChannelReader) -> None:
        self._reader = reader

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._reader:
            yield chunk
