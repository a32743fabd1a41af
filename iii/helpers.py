"""Functions that work on a worker: channels and custom streams.

``create_channel(worker)`` / ``await create_channel_async(worker)`` make a
data channel; ``create_stream(worker, name, stream)`` serves a custom stream
(an ``IStream``) in place of the engine's store for that stream name.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional, TypeVar

import attrs

from . import channels
from .channel import ChannelDirection, ChannelItem
from .stream import (
    IStream,
    StreamDeleteInput,
    StreamGetInput,
    StreamListGroupsInput,
    StreamListInput,
    StreamSetInput,
)
from .types import extract_channel_refs, is_channel_ref

if TYPE_CHECKING:
    from ._client import III
    from .channels import Channel

__all__ = [
    "ChannelDirection",
    "ChannelItem",
    "create_channel",
    "create_channel_async",
    "create_stream",
    "extract_channel_refs",
    "is_channel_ref",
]

TData = TypeVar("TData")
M = TypeVar("M")


def _input(cls: type[M], data: Any) -> M:
    if isinstance(data, cls):
        return data
    if not isinstance(data, dict):
        raise TypeError(f"expected a {cls.__name__} object, got {type(data).__name__}")
    names = {f.name for f in attrs.fields(cls)}  # type: ignore[arg-type]
    return cls(**{k: v for k, v in data.items() if k in names})


def create_channel(iii: III, buffer_size: Optional[int] = None) -> Channel:
    """Create a data channel through ``iii`` (a worker), from a plain thread.

    Args:
        iii: a connected worker; its address, headers and TLS settings are used.
        buffer_size: the queue length in items (engine default 64, max 1024).
    """
    return channels.create_channel(iii, buffer_size)


async def create_channel_async(iii: III, buffer_size: Optional[int] = None) -> Channel:
    """``create_channel`` for asyncio and trio callers."""
    return await channels.create_channel_async(iii, buffer_size)


def create_stream(iii: III, stream_name: str, stream: IStream[TData]) -> None:
    """Serve ``stream_name`` from ``stream``: registers ``stream::get(<name>)``,
    ``stream::set(<name>)``, ``stream::delete(<name>)``, ``stream::list(<name>)``
    and ``stream::list_groups(<name>)``, which the engine calls instead of its
    own store for that stream.  (Updates are applied by the engine itself.)
    """
    if not isinstance(stream_name, str) or not stream_name:
        raise ValueError("stream_name must be a non-empty str")

    async def get(data: Any) -> Any:
        return await stream.get(_input(StreamGetInput, data))

    async def set_(data: Any) -> Any:
        return await stream.set(_input(StreamSetInput, data))

    async def delete(data: Any) -> Any:
        return await stream.delete(_input(StreamDeleteInput, data))

    async def list_(data: Any) -> Any:
        return await stream.list(_input(StreamListInput, data))

    async def list_groups(data: Any) -> Any:
        return await stream.list_groups(_input(StreamListGroupsInput, data))

    for op, fn in (
        ("get", get),
        ("set", set_),
        ("delete", delete),
        ("list", list_),
        ("list_groups", list_groups),
    ):
        iii.register_function(f"stream::{op}({stream_name})", fn)
