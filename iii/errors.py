"""Errors of the public API (the whole tree is in ``iii_protocol.errors``)."""

from __future__ import annotations

from typing import Optional

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
    "RegistrationRejectedError",
    "WorkerShutdownError",
]

#: Every failed invocation raises this: ``code``, ``message``, ``function_id``,
#: ``stacktrace`` (and ``invocation_id``).
IIIInvocationError = InvocationError


class IIIUsageError(IIIError, RuntimeError):
    """The call cannot work from where it was made (e.g. it would deadlock)."""


class WorkerShutdownError(IIIUsageError, InvocationError):
    """The worker was shut down, or is shutting down: every method raises this.

    It is also an ``IIIInvocationError`` with ``code`` ``"SHUTDOWN"``, the
    error ``trigger`` raised in that case before.
    """

    def __init__(self, message: str) -> None:
        InvocationError.__init__(self, "SHUTDOWN", message)


class RegistrationRejectedError(IIIError):
    """The engine refused one of this worker's registrations.

    Attributes:
        code: ``FUNCTION_NAMESPACE_CONFLICT`` (another live worker owns the
            function id, or ``engine::`` outside ``default``),
            ``WORKER_NAMESPACE_CONFLICT``, or for a trigger the engine's or
            provider's code (``FORBIDDEN``, ``INVALID_NAMESPACE``,
            ``trigger_registration_failed``, ...).
        namespace: where it was refused (``""`` when the engine did not say).
        worker_name: the refused worker name (worker conflicts only).
        owner_worker_id: the worker that owns the id; ``""`` for the reserved
            ``engine::`` prefix; ``None`` when there is no owner (triggers).
        function_id: the refused function, or the function a refused trigger binds.
        trigger_id: the refused trigger's id (triggers only).
        message: the reason, in words.
    """

    def __init__(
        self,
        code: str,
        namespace: str = "",
        worker_name: Optional[str] = None,
        owner_worker_id: Optional[str] = None,
        *,
        function_id: Optional[str] = None,
        trigger_id: Optional[str] = None,
        message: Optional[str] = None,
    ) -> None:
        if message is None:
            what = function_id or worker_name or trigger_id or "registration"
            owner = (
                ""
                if owner_worker_id is None
                else f" (owned by worker {owner_worker_id})"
                if owner_worker_id
                else " (reserved for the engine)"
            )
            message = f"the engine refused {what!r} in namespace {namespace!r}{owner}"
        super().__init__(f"{code}: {message}")
        self.code = code
        self.namespace = namespace
        self.worker_name = worker_name
        self.owner_worker_id = owner_worker_id
        self.function_id = function_id
        self.trigger_id = trigger_id
        self.message = message

    def __reduce__(self) -> tuple[object, ...]:
        return (
            type(self),
            (self.code, self.namespace, self.worker_name, self.owner_worker_id),
            self.__dict__,
        )
