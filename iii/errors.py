"""Errors of the public API (the whole tree is in ``iii_protocol.errors``)."""

from __future__ import annotations

from iii_protocol.errors import (
    ConnectError,
    ConnectionClosed,
    ConnectionFailed,
    IIIError,
    InvocationError,
)

__all__ = [
    "IIIError",
    "IIIInvocationError",
    "IIIUsageError",
    "ConnectError",
    "ConnectionClosed",
    "ConnectionFailed",
]

#: Every failed invocation raises this: ``code``, ``message``, ``function_id``,
#: ``stacktrace`` (and ``invocation_id``).
IIIInvocationError = InvocationError


class IIIUsageError(IIIError, RuntimeError):
    """The call cannot work from where it was made (e.g. it would deadlock)."""
