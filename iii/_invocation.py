"""``current_invocation()``: the invocation the calling code runs in.

A ``contextvars.ContextVar`` is set around every handler call (async handlers
run in their own task, sync ones on a pool thread: each sees its own value),
so it follows ``await`` and is ``None`` outside any handler.
"""

from __future__ import annotations

import uuid
from contextvars import ContextVar
from typing import Any, Optional, Protocol

import attrs

from iii_protocol import events as ev

__all__ = ["Active", "InvocationContext", "context_for", "current_invocation", "enter", "leave"]


@attrs.frozen
class InvocationContext:
    """The invocation a handler runs in.

    Attributes:
        function_id: the function whose handler is running.
        invocation_id: this invocation's id (a fresh one for a fire-and-forget
            call, which has none on the wire).
        observe_depth: always 0 (this SDK has no observe support).
        caller: ``{"worker_id": ...}`` of the worker that made the call, when
            the engine says (it does for calls from workers); else ``None``.
        activation: always ``None`` (observe support).
    """

    function_id: str
    invocation_id: str
    observe_depth: int = 0
    caller: Optional[dict[str, Any]] = None
    activation: Optional[dict[str, Any]] = None


class Active(Protocol):
    """What ``current_invocation()`` asks: the running job makes its context on request."""

    def get(self) -> InvocationContext: ...


def context_for(event: ev.InvocationRequested) -> InvocationContext:
    """The ``InvocationContext`` of ``event`` (made on first request: most
    handlers never ask, and every call would pay for it)."""
    return InvocationContext(
        function_id=event.function_id,
        invocation_id=event.invocation_id or str(uuid.uuid4()),
        caller={"worker_id": event.caller_worker_id} if event.caller_worker_id else None,
    )


_CURRENT: ContextVar[Optional[Active]] = ContextVar("iii_current_invocation", default=None)

#: ``token = enter(job)`` where the handler runs (its task or its pool
#: thread: each has its own context), ``leave(token)`` after it.
enter = _CURRENT.set
leave = _CURRENT.reset


def current_invocation() -> Optional[InvocationContext]:
    """The invocation the calling code runs in, or ``None`` outside every handler.

    Example::

        def create_order(order):
            inv = current_invocation()
            return {"id": inv.invocation_id if inv else None}
    """
    active = _CURRENT.get()
    return None if active is None else active.get()
