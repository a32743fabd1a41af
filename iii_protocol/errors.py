"""Every exception this library raises, in one tree.

``IIIError`` is the root.  ``LocalProtocolError`` means the caller asked for
something the current state does not allow (nothing changed); ``RemoteProtocolError``
means the engine sent something that is not the protocol.  ``InvocationError``
is application data: one call failed, the connection is fine.
"""

from __future__ import annotations

from typing import Optional

__all__ = [
    "IIIError",
    "ProtocolError",
    "LocalProtocolError",
    "RemoteProtocolError",
    "InvocationError",
    "PayloadError",
    "PayloadTooLarge",
    "HeldCallsFull",
    "TransportError",
    "ConnectError",
    "UpgradeRefused",
    "ConnectionClosed",
    "ConnectionFailed",
]


class IIIError(Exception):
    """Base class of every error raised by the iii SDK."""


class ProtocolError(IIIError):
    """A protocol rule was broken. Abstract: raise a subclass."""

    def __init__(self, message: str) -> None:
        if type(self) is ProtocolError:
            raise TypeError("raise LocalProtocolError or RemoteProtocolError")
        super().__init__(message)


class LocalProtocolError(ProtocolError):
    """This side asked for something illegal; the connection state is unchanged."""


class RemoteProtocolError(ProtocolError):
    """The peer sent bytes or a frame that break the protocol.

    Attributes:
        frame_type: the ``type`` of the offending frame, when it had one.
        close_code: the WebSocket close code that fits, when the connection
            must be dropped because of it (``None``: the frame alone is skipped).
    """

    def __init__(
        self,
        message: str,
        *,
        frame_type: Optional[str] = None,
        close_code: Optional[int] = None,
    ) -> None:
        super().__init__(message)
        self.frame_type = frame_type
        self.close_code = close_code


class InvocationError(IIIError):
    """An invocation failed.

    Attributes:
        code: the engine's or SDK's error code (``TIMEOUT``, ``FORBIDDEN``,
            ``CONNECTION_LOST``, ``invocation_failed``, ...).
        message: the human-readable reason.
        function_id: the function that was called.
        stacktrace: the remote stack trace, when the handler sent one.
        invocation_id: the id of the call, when it had one.
    """

    def __init__(
        self,
        code: str,
        message: str,
        function_id: Optional[str] = None,
        stacktrace: Optional[str] = None,
        invocation_id: Optional[str] = None,
    ) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.function_id = function_id
        self.stacktrace = stacktrace
        self.invocation_id = invocation_id

    def __reduce__(self) -> tuple[object, ...]:
        return (
            _rebuild_invocation_error,
            (
                type(self),
                self.code,
                self.message,
                self.function_id,
                self.stacktrace,
                self.invocation_id,
            ),
            # Subclass attributes too (``PayloadTooLarge.size``, ``HeldCallsFull.limit``).
            self.__dict__,
        )


def _rebuild_invocation_error(
    cls: type[InvocationError],
    code: str,
    message: str,
    function_id: Optional[str],
    stacktrace: Optional[str],
    invocation_id: Optional[str],
) -> InvocationError:
    err = cls.__new__(cls)
    InvocationError.__init__(
        err,
        code,
        message,
        function_id=function_id,
        stacktrace=stacktrace,
        invocation_id=invocation_id,
    )
    return err


class PayloadError(InvocationError, LocalProtocolError):
    """A payload or result has no strict JSON form (NaN, a set, an object...).

    Nothing was sent and nothing changed. ``code`` is ``serialization_error``.
    """

    def __init__(self, message: str, *, function_id: Optional[str] = None) -> None:
        InvocationError.__init__(self, "serialization_error", message, function_id=function_id)


class PayloadTooLarge(InvocationError, LocalProtocolError):
    """The encoded message is over the size limit. ``code`` is ``payload_too_large``."""

    def __init__(self, size: int, limit: int, *, function_id: Optional[str] = None) -> None:
        InvocationError.__init__(
            self,
            "payload_too_large",
            f"message of {size} bytes exceeds the {limit}-byte limit",
            function_id=function_id,
        )
        self.size = size
        self.limit = limit


class HeldCallsFull(InvocationError, LocalProtocolError):
    """Disconnected, and the bounded queue of calls held for the next connection is full."""

    def __init__(self, limit: int, *, function_id: Optional[str] = None) -> None:
        InvocationError.__init__(
            self,
            "QUEUE_FULL",
            f"not connected and {limit} calls are already waiting to be sent",
            function_id=function_id,
        )
        self.limit = limit


class TransportError(IIIError):
    """Base class of socket failures raised by the transports (``ConnectError``)."""


class ConnectError(TransportError, ConnectionError):
    """Could not open the connection to the engine.

    Also a ``ConnectionError`` (an ``OSError``), which is what the official
    SDK's ``register_worker`` raises, so ``except ConnectionError`` catches it.
    """


class UpgradeRefused(ConnectError):
    """The engine answered the WebSocket upgrade with an HTTP error (``status_code``)."""

    def __init__(self, status_code: int) -> None:
        super().__init__(f"WebSocket upgrade refused: HTTP {status_code}")
        self.status_code = status_code

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.status_code,), self.__dict__)


class ConnectionClosed(IIIError):
    """The connection was closed by this side (``close()``/``shutdown()``).

    The SDK raises it as ``iii.WorkerShutdownError`` when a worker is used
    after its shutdown.
    """


class ConnectionFailed(IIIError, ConnectionError):
    """Terminal: the engine refused this worker, or reconnection gave up.

    Also a ``ConnectionError`` (an ``OSError``), which is what the official
    SDK raises when its retries run out, so ``except ConnectionError`` catches it.

    Attributes:
        code: ``WORKER_NAMESPACE_CONFLICT`` (or another fatal rejection code),
            or ``RETRIES_EXHAUSTED``.
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message

    def __reduce__(self) -> tuple[object, ...]:
        # ``args`` holds the joined text, not the two constructor arguments.
        return (type(self), (self.code, self.message), self.__dict__)
