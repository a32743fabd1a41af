"""State: the data models of the engine's ``state::*`` functions and ``state``
triggers, and ``IState``, the interface of a state store.

Each model reads like its JSON object too (``value["scope"]``) and goes into a
payload as is: ``worker.trigger({"function_id": "state::set", "payload":
StateSetInput(scope="s", key="k", value=1)})``.
"""

from __future__ import annotations

import abc
import builtins
import enum
from typing import Any, Generic, Optional, TypeVar

import attrs

from ._models import Model
from .stream import UpdateOp, UpdateOpError

__all__ = [
    "DeleteResult",
    "IState",
    "StateDeleteInput",
    "StateDeleteResult",
    "StateEventData",
    "StateEventType",
    "StateGetInput",
    "StateListInput",
    "StateSetInput",
    "StateSetResult",
    "StateUpdateInput",
    "StateUpdateResult",
]

TData = TypeVar("TData")


@attrs.frozen(kw_only=True)
class StateGetInput(Model):
    scope: str
    key: str


@attrs.frozen(kw_only=True)
class StateSetInput(Model):
    scope: str
    key: str
    value: Any


@attrs.frozen(kw_only=True)
class StateDeleteInput(Model):
    scope: str
    key: str


@attrs.frozen(kw_only=True)
class StateListInput(Model):
    scope: str


@attrs.frozen(kw_only=True)
class StateUpdateInput(Model):
    scope: str
    key: str
    ops: list[UpdateOp]


@attrs.frozen(kw_only=True)
class StateSetResult(Model, Generic[TData]):
    new_value: TData
    old_value: Optional[TData] = None


@attrs.frozen(kw_only=True)
class StateUpdateResult(Model, Generic[TData]):
    new_value: TData
    old_value: Optional[TData] = None
    errors: list[UpdateOpError] = attrs.Factory(list)


@attrs.frozen(kw_only=True)
class StateDeleteResult(Model):
    old_value: Any = None


#: The same shape as ``StateDeleteResult``.
DeleteResult = StateDeleteResult


class StateEventType(str, enum.Enum):
    """What happened to a key (``StateEventData.event_type``)."""

    CREATED = "state:created"
    UPDATED = "state:updated"
    DELETED = "state:deleted"


@attrs.frozen(kw_only=True)
class StateEventData(Model, Generic[TData]):
    """What a ``state`` trigger delivers when a key changes."""

    type: str = "state"
    event_type: StateEventType
    scope: str
    key: str
    old_value: Optional[TData] = None
    new_value: Optional[TData] = None


class IState(abc.ABC, Generic[TData]):
    """A state store: the five operations of ``state::*``."""

    @abc.abstractmethod
    async def get(self, input: StateGetInput) -> Optional[TData]:
        """The value, or ``None``."""

    @abc.abstractmethod
    async def set(self, input: StateSetInput) -> Optional[StateSetResult[TData]]:
        """Create or overwrite the value."""

    @abc.abstractmethod
    async def delete(self, input: StateDeleteInput) -> StateDeleteResult:
        """Remove the value."""

    @abc.abstractmethod
    async def list(self, input: StateListInput) -> builtins.list[TData]:
        """Every value of a scope."""

    @abc.abstractmethod
    async def update(self, input: StateUpdateInput) -> Optional[StateUpdateResult[TData]]:
        """Apply update operations to the value, atomically."""
