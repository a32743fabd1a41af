"""Errors of the public API (the whole tree is in ``iii_protocol.errors``).

``InvocationError`` and ``IIIInvocationError`` are one class under two names
(the second is the name of the 0.19 releases).
"""

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
    "InvocationError",
    "ObserveRejection",
    "RegistrationRejectedError",
    "ConnectError",
    "ConnectionClosed",
    "ConnectionFailed",
    "WorkerShutdownError",
]

#: Every failed invocation raises this: ``code``, ``message``, ``function_id``,
#: ``stacktrace`` (and ``invocation_id``).
IIIInvocationError = InvocationError


class IIIUsageError(IIIError, RuntimeError):
    """The call cannot work from where it was made (e.g. it would deadlock)."""


class WorkerShutdownError(IIIUsageError, InvocationError, ConnectionClosed):
    """The worker was shut down, or is shutting down: every method raises this.

    It is also an ``IIIInvocationError`` with ``code`` ``"SHUTDOWN"``, the
    error ``trigger`` raised in that case before, and a ``ConnectionClosed``
    (this side closed the connection).
    """

    def __init__(self, message: str) -> None:
        InvocationError.__init__(self, "SHUTDOWN", message)


class RegistrationRejectedError(ConnectionFailed):
    """The engine refused this worker, or one of its registrations.

    * The worker's name: another live worker holds ``(namespace,
      worker_name)``.  The engine sends ``registrationrejected`` and closes
      the connection; reconnecting cannot help, so the worker stops, as a
      ``ConnectionFailed`` says (the official SDK's meaning of this class).
    * A function or a trigger (``function_id`` / ``trigger_id`` set): only
      that registration is refused and the worker stays connected; the
      registration's handle (``FunctionRef.error``, ``wait_accepted()``)
      and ``add_registration_rejected_listener`` report it.

    Attributes:
        code: ``WORKER_NAMESPACE_CONFLICT``, ``FUNCTION_NAMESPACE_CONFLICT``
            (another live worker owns the function id, or ``engine::``
            outside ``default``), or for a trigger the engine's or provider's
            code (``FORBIDDEN``, ``INVALID_NAMESPACE``,
            ``trigger_registration_failed``, ...).
        namespace: where it was refused (``""`` when the engine did not say).
        worker_name: the refused worker name (worker conflicts only).
        owner_worker_id: the worker that holds the name or id; ``""`` for the
            reserved ``engine::`` prefix; ``None`` when there is no owner (triggers).
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
        super().__init__(code, message)
        self.namespace = namespace
        self.worker_name = worker_name
        self.owner_worker_id = owner_worker_id
        self.function_id = function_id
        self.trigger_id = trigger_id

    def __reduce__(self) -> tuple[object, ...]:
        # The message goes too: made from function_id/trigger_id, it is the text.
        return (
            _rebuild_rejection,
            (
                type(self),
                self.code,
                self.namespace,
                self.worker_name,
                self.owner_worker_id,
                self.message,
            ),
            self.__dict__,
        )


def _rebuild_rejection(
    cls: type[RegistrationRejectedError],
    code: str,
    namespace: str,
    worker_name: Optional[str],
    owner_worker_id: Optional[str],
    message: str,
) -> RegistrationRejectedError:
    return cls(code, namespace, worker_name, owner_worker_id, message=message)


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
