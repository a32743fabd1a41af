"""Errors of the public API (the whole tree is in ``iii_protocol.errors``).

``InvocationError`` and ``IIIInvocationError`` are one class under two names
(the second is the name of the 0.19 releases).
"""

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
    "InvocationError",
    "ObserveRejection",
    "RegistrationRejectedError",
    "ConnectError",
    "ConnectionClosed",
    "ConnectionFailed",
]

#: Every failed invocation raises this: ``code``, ``message``, ``function_id``,
#: ``stacktrace`` (and ``invocation_id``).
IIIInvocationError = InvocationError


class IIIUsageError(IIIError, RuntimeError):
    """The call cannot work from where it was made (e.g. it would deadlock)."""


class RegistrationRejectedError(ConnectionFailed):
    """The engine refused this worker: another live worker owns its name.

    The engine sends ``registrationrejected`` and closes the connection when
    ``(namespace, worker_name)`` is taken; reconnecting cannot help, so the
    worker stops.  A ``ConnectionFailed``: terminal for the worker.

    Attributes:
        code: the engine's reason code.
        namespace: the namespace of the refused name.
        worker_name: the refused worker name.
        owner_worker_id: the id of the worker that holds the name.
    """

    def __init__(self, code: str, namespace: str, worker_name: str, owner_worker_id: str) -> None:
        super().__init__(
            code,
            f"the name {worker_name!r} in namespace {namespace!r} "
            f"belongs to worker {owner_worker_id}",
        )
        self.namespace = namespace
        self.worker_name = worker_name
        self.owner_worker_id = owner_worker_id

    def __reduce__(self) -> tuple[object, ...]:
        return (
            type(self),
            (self.code, self.namespace, self.worker_name, self.owner_worker_id),
        )


class ObserveRejection(IIIError):
    """Refuses an observer with a code of its own.

    Defined so that code importing it keeps working; this SDK has no observe
    support (the engines it targets do not implement observe), so nothing
    raises it on its own.

    Attributes:
        code: the rejection code.
        message: the human-readable reason.
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(code, message)
        self.code = code
        self.message = message

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"
