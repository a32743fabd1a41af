"""Channel types: the ends, their refs, and helpers around them.

``ChannelReader`` / ``ChannelWriter`` / ``Channel`` are the ones of
``iii.channels``; this module adds the small values and adapters code
built on channels uses:

* ``ChannelDirection`` (``READ`` / ``WRITE``) and ``ChannelItem`` (one text
  or binary item);
* ``WritableStream`` / ``ReadableStream``: a writer (reader) as a stream with
  ``write(data)`` / ``end()`` (``async for chunk``), for code that writes
  without awaiting each write;
* ``build_channel_url`` and ``resolve_headers``: the URL and handshake headers
  of a channel end.
"""

from __future__ import annotations

from iii_protocol import StreamChannelRef

from ._channel_values import (
    MAX_FRAME_SIZE,
    ChannelDirection,
    ChannelItem,
    ReadableStream,
    WritableStream,
    build_channel_url,
    resolve_headers,
)
from .channels import Channel, ChannelReader, ChannelWriter

__all__ = [
    "MAX_FRAME_SIZE",
    "Channel",
    "ChannelDirection",
    "ChannelItem",
    "ChannelReader",
    "ChannelWriter",
    "ReadableStream",
    "StreamChannelRef",
    "WritableStream",
    "build_channel_url",
    "resolve_headers",
]
