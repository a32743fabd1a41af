"""What this worker registered, to replay on every connection.

The engine forgets a worker's registrations with its socket, so each
connection sends them all again, trigger types first (a binding needs its
type), then functions, then bindings; each kind in the order registered.
Re-registering an id replaces the entry in place.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TypeVar, Union

from . import _frames as f
from .errors import LocalProtocolError

__all__ = ["Registry"]

Registration = Union[f.RegisterFunction, f.RegisterTriggerType, f.RegisterTrigger]
_R = TypeVar("_R", f.RegisterFunction, f.RegisterTriggerType, f.RegisterTrigger)


class Registry:
    """Functions, trigger types and bindings by id. See the module docstring."""

    __slots__ = ("functions", "trigger_types", "triggers")

    def __init__(self) -> None:
        self.functions: dict[str, f.RegisterFunction] = {}
        self.trigger_types: dict[str, f.RegisterTriggerType] = {}
        self.triggers: dict[str, f.RegisterTrigger] = {}

    def add(self, frame: Registration) -> None:
        if isinstance(frame, f.RegisterFunction):
            self.functions[frame.id] = frame
        elif isinstance(frame, f.RegisterTriggerType):
            self.trigger_types[frame.id] = frame
        else:
            self.triggers[frame.id] = frame

    def replay(self) -> Iterator[Registration]:
        """Every registration, in the order a new connection sends them."""
        yield from self.trigger_types.values()
        yield from self.functions.values()
        yield from self.triggers.values()

    def provides(self, trigger_type: str) -> bool:
        """Whether this worker registered the trigger type ``trigger_type``."""
        return trigger_type in self.trigger_types

    # -- removal: each returns the frame that tells the engine ----------------------

    def remove_function(self, function_id: str) -> f.UnregisterFunction:
        """Raises ``LocalProtocolError`` when it is not registered."""
        _remove(self.functions, function_id)
        return f.UnregisterFunction(id=function_id)

    def remove_trigger_type(self, trigger_type_id: str) -> f.UnregisterTriggerType:
        """Raises ``LocalProtocolError`` when it is not registered."""
        registered = _remove(self.trigger_types, trigger_type_id)
        return f.UnregisterTriggerType(id=trigger_type_id, namespace=registered.namespace)

    def remove_trigger(self, binding_id: str) -> f.UnregisterTrigger:
        """Raises ``LocalProtocolError`` when it is not registered."""
        registered = _remove(self.triggers, binding_id)
        return f.UnregisterTrigger(id=binding_id, trigger_type=registered.trigger_type)


def _remove(registry: dict[str, _R], key: str) -> _R:
    try:
        return registry.pop(key)
    except KeyError:
        raise LocalProtocolError(f"{key!r} is not registered") from None
