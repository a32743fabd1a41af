"""Streams: the data models of the engine's stream functions and triggers, and
``IStream``, the interface of a custom stream (``iii.helpers.create_stream``).

The models are what ``stream::get`` / ``stream::set`` / ``stream::update`` ...
take and answer, what ``stream`` / ``stream:join`` / ``stream:leave``
triggers take as config and deliver, and the update operations.  Each reads
like its JSON object too (``value["group_id"]``) and goes into a payload as is.
"""

from __future__ import annotations

import abc
import builtins
from typing import Any, Generic, Literal, Optional, TypeVar, Union

import attrs

from ._models import Model

__all__ = [
    "IStream",
    "MergePath",
    "StreamAuthInput",
    "StreamAuthResult",
    "StreamChangeEvent",
    "StreamChangeEventDetail",
    "StreamContext",
    "StreamDeleteInput",
    "StreamDeleteResult",
    "StreamGetInput",
    "StreamJoinLeaveEvent",
    "StreamJoinLeaveTriggerConfig",
    "StreamJoinResult",
    "StreamListGroupsInput",
    "StreamListInput",
    "StreamSetInput",
    "StreamSetResult",
    "StreamTriggerConfig",
    "StreamUpdateInput",
    "StreamUpdateResult",
    "UpdateAppend",
    "UpdateDecrement",
    "UpdateIncrement",
    "UpdateMerge",
    "UpdateOp",
    "UpdateOpError",
    "UpdateRemove",
    "UpdateSet",
]

TData = TypeVar("TData")

#: Whatever the stream's auth function put in the subscriber's context.
StreamContext = Any

#: A path for ``merge`` / ``append``: one top-level key, or a list of literal segments.
MergePath = Union[str, list[str]]


@attrs.frozen(kw_only=True)
class StreamAuthInput(Model):
    headers: dict[str, str]
    path: str
    query_params: dict[str, list[str]]
    addr: str


@attrs.frozen(kw_only=True)
class StreamAuthResult(Model):
    context: Any = None


@attrs.frozen(kw_only=True)
class StreamJoinLeaveEvent(Model):
    """What a ``stream:join`` / ``stream:leave`` trigger delivers."""

    subscription_id: str
    stream_name: str
    group_id: str
    id: Optional[str] = None
    context: Any = None


@attrs.frozen(kw_only=True)
class StreamJoinResult(Model):
    unauthorized: bool


@attrs.frozen(kw_only=True)
class StreamGetInput(Model):
    stream_name: str
    group_id: str
    item_id: str


@attrs.frozen(kw_only=True)
class StreamSetInput(Model):
    stream_name: str
    group_id: str
    item_id: str
    data: Any


@attrs.frozen(kw_only=True)
class StreamDeleteInput(Model):
    stream_name: str
    group_id: str
    item_id: str


@attrs.frozen(kw_only=True)
class StreamListInput(Model):
    stream_name: str
    group_id: str


@attrs.frozen(kw_only=True)
class StreamListGroupsInput(Model):
    stream_name: str


@attrs.frozen(kw_only=True)
class UpdateSet(Model):
    """Set ``path`` to ``value``."""

    type: str = "set"
    path: str
    value: Any


@attrs.frozen(kw_only=True)
class UpdateIncrement(Model):
    """Add ``by`` to the number at ``path``."""

    type: str = "increment"
    path: str
    by: Union[int, float]


@attrs.frozen(kw_only=True)
class UpdateDecrement(Model):
    """Subtract ``by`` from the number at ``path``."""

    type: str = "decrement"
    path: str
    by: Union[int, float]


@attrs.frozen(kw_only=True)
class UpdateAppend(Model):
    """Append ``value`` to the array (or string) at ``path`` (the root when ``None``)."""

    type: str = "append"
    path: Optional[MergePath] = None
    value: Any


@attrs.frozen(kw_only=True)
class UpdateRemove(Model):
    """Remove the key at ``path``."""

    type: str = "remove"
    path: str


@attrs.frozen(kw_only=True)
class UpdateMerge(Model):
    """Shallow-merge the object ``value`` at ``path`` (the root when ``None``)."""

    type: str = "merge"
    path: Optional[MergePath] = None
    value: Any


#: One operation of a stream or state ``update`` (set, merge, increment, decrement, remove, append).
UpdateOp = Union[
    UpdateSet, UpdateIncrement, UpdateDecrement, UpdateAppend, UpdateRemove, UpdateMerge
]


@attrs.frozen(kw_only=True)
class StreamUpdateInput(Model):
    stream_name: str
    group_id: str
    item_id: str
    ops: list[UpdateOp]


@attrs.frozen(kw_only=True)
class UpdateOpError(Model):
    """Why one operation of an update was not applied."""

    op_index: int
    code: str
    message: str
    doc_url: Optional[str] = None


@attrs.frozen(kw_only=True)
class StreamSetResult(Model, Generic[TData]):
    new_value: TData
    old_value: Optional[TData] = None


@attrs.frozen(kw_only=True)
class StreamUpdateResult(Model, Generic[TData]):
    new_value: TData
    old_value: Optional[TData] = None
    errors: list[UpdateOpError] = attrs.Factory(list)


@attrs.frozen(kw_only=True)
class StreamDeleteResult(Model):
    old_value: Any = None


@attrs.frozen(kw_only=True)
class StreamTriggerConfig(Model):
    """Config of a ``stream`` trigger: which item changes fire it."""

    stream_name: str
    group_id: Optional[str] = None
    item_id: Optional[str] = None
    condition_function_id: Optional[str] = None


@attrs.frozen(kw_only=True)
class StreamJoinLeaveTriggerConfig(Model):
    """Config of a ``stream:join`` / ``stream:leave`` trigger."""

    condition_function_id: Optional[str] = None


@attrs.frozen(kw_only=True)
class StreamChangeEventDetail(Model):
    type: Literal["create", "update", "delete"]
    data: Any


@attrs.frozen(kw_only=True)
class StreamChangeEvent(Model):
    """What a ``stream`` trigger delivers when an item changes."""

    type: Literal["stream"]
    timestamp: int
    streamName: str
    groupId: str
    event: StreamChangeEventDetail
    id: Optional[str] = None


class IStream(abc.ABC, Generic[TData]):
    """A custom stream: implement the six operations and register it with
    ``iii.helpers.create_stream(worker, name, stream)``.

    ``update`` is part of the interface but the engine applies updates itself,
    so ``create_stream`` does not register it.
    """

    @abc.abstractmethod
    async def get(self, input: StreamGetInput) -> Optional[TData]:
        """The item, or ``None``."""

    @abc.abstractmethod
    async def set(self, input: StreamSetInput) -> Optional[StreamSetResult[TData]]:
        """Create or replace the item."""

    @abc.abstractmethod
    async def delete(self, input: StreamDeleteInput) -> StreamDeleteResult:
        """Remove the item."""

    @abc.abstractmethod
    async def list(self, input: StreamListInput) -> builtins.list[TData]:
        """Every item of a group."""

    @abc.abstractmethod
    async def list_groups(self, input: StreamListGroupsInput) -> builtins.list[str]:
        """Every group of the stream."""

    @abc.abstractmethod
    async def update(self, input: StreamUpdateInput) -> Optional[StreamUpdateResult[TData]]:
        """Apply update operations to the item, atomically."""
