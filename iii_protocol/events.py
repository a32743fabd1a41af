"""Events a ``Connection`` emits: what the transport or the user must react to.

All are frozen attrs classes compared by value; do not subclass them.
"""

from __future__ import annotations

from typing import Optional, Union, final

import attrs

from ._frames import ErrorBody, RegisterTrigger, RegistrationRejected, UnknownFrame
from ._json import JSON
from ._state import ConnectionState
from .errors import RemoteProtocolError

__all__ = [
    "OpenTransport",
    "CloseTransport",
    "StateChanged",
    "Connected",
    "Announced",
    "InvocationRequested",
    "InvocationSucceeded",
    "InvocationFailed",
    "TriggerRegistrationRequested",
    "TriggerUnregistrationRequested",
    "TriggerRegistrationFailed",
    "FunctionRejected",
    "EngineErrorReceived",
    "PingReceived",
    "UnknownFrameReceived",
    "FrameRejected",
    "ConnectionFailedEvent",
    "Synced",
    "Event",
]


@final
@attrs.frozen(kw_only=True)
class OpenTransport:
    """Open a TCP (``secure``: TLS) connection, then call ``transport_opened()``.

    ``timeout`` bounds the connect; the core also times the handshake.
    """

    host: str
    port: int
    secure: bool
    timeout: float


@final
@attrs.frozen(kw_only=True)
class CloseTransport:
    """Send what ``data_to_send()`` holds, then close the socket.

    The core already considers this transport gone: do not report its close.
    """

    reason: str


@final
@attrs.frozen(kw_only=True)
class StateChanged:
    """The connection moved from state ``old`` to state ``new``.

    When a lost or failed socket caused it, ``reason`` says why and ``cause``
    is the transport's exception (an ``OSError``, ``UpgradeRefused``, ...),
    when it gave one.  Neither takes part in comparisons.
    """

    old: ConnectionState
    new: ConnectionState
    reason: Optional[str] = attrs.field(default=None, eq=False)
    cause: Optional[BaseException] = attrs.field(default=None, eq=False)


@final
@attrs.frozen(kw_only=True)
class Connected:
    """The engine accepted this connection and the registrations were replayed."""

    worker_id: str
    reattach_token: Optional[str]
    features: tuple[str, ...]


@final
@attrs.frozen(kw_only=True)
class Announced:
    """The engine answered this connection's ``engine::workers::register``.

    ``error`` is set when it refused the announce (e.g. ``FORBIDDEN`` for a
    namespace outside the session's grant); a name conflict arrives as a
    fatal ``registrationrejected`` instead.
    """

    result: JSON
    error: Optional[ErrorBody] = None


@final
@attrs.frozen(kw_only=True)
class InvocationRequested:
    """Run a local function. Answer with ``send_result`` when ``invocation_id`` is set.

    ``data`` has the engine's ``_caller_worker_id`` key removed; it is
    ``caller_worker_id`` here.  ``may_hold_channel_refs`` is False when the
    message text has no ``"channel_id"`` key, so no walk for refs is needed.
    """

    invocation_id: Optional[str]
    function_id: str
    data: JSON
    metadata: JSON = None
    traceparent: Optional[str] = None
    baggage: Optional[str] = None
    caller_worker_id: Optional[str] = None
    #: False when the payload cannot hold a channel ref (no ``"channel_id"`` key).
    may_hold_channel_refs: bool = True


@final
@attrs.frozen(kw_only=True)
class InvocationSucceeded:
    """A call this worker made returned ``result``."""

    invocation_id: str
    function_id: str
    result: JSON


@final
@attrs.frozen(kw_only=True)
class InvocationFailed:
    """An outbound call failed: an engine or handler error, or a local one.

    Local codes: ``TIMEOUT``, ``CONNECTION_LOST`` (sent, outcome unknown),
    ``SHUTDOWN`` (closed locally), ``CONNECTION_FAILED`` or the fatal
    rejection code (terminal), ``UNKNOWN`` (the engine's answer was malformed).
    """

    invocation_id: str
    function_id: str
    error: ErrorBody


@final
@attrs.frozen(kw_only=True)
class TriggerRegistrationRequested:
    """The engine delivers a binding for a trigger type this worker provides.

    Answer with ``send_trigger_registration_result`` (success or error).
    """

    binding: RegisterTrigger


@final
@attrs.frozen(kw_only=True)
class TriggerUnregistrationRequested:
    """The engine tells this provider to drop binding ``id``."""

    id: str
    trigger_type: Optional[str]


@final
@attrs.frozen(kw_only=True)
class TriggerRegistrationFailed:
    """A binding this worker registered was refused (engine or provider)."""

    id: str
    trigger_type: str
    function_id: str
    error: ErrorBody


@final
@attrs.frozen(kw_only=True)
class FunctionRejected:
    """``FUNCTION_NAMESPACE_CONFLICT``: this one function is not registered."""

    rejection: RegistrationRejected


@final
@attrs.frozen(kw_only=True)
class EngineErrorReceived:
    """The engine's ``error`` frame (RBAC auth failure); it closes the socket next."""

    error: ErrorBody


@final
@attrs.frozen(kw_only=True)
class PingReceived:
    """The engine's protocol ``ping`` (already answered with ``pong``)."""


@final
@attrs.frozen(kw_only=True)
class UnknownFrameReceived:
    """A frame of a ``type`` this library does not know; skipped."""

    frame: UnknownFrame


@final
@attrs.frozen(kw_only=True)
class FrameRejected:
    """A malformed message from the engine, dropped; the connection stays up."""

    error: RemoteProtocolError


@final
@attrs.frozen(kw_only=True)
class ConnectionFailedEvent:
    """Terminal: ``code`` is the fatal rejection code or ``RETRIES_EXHAUSTED``."""

    code: str
    message: str
    rejection: Optional[RegistrationRejected] = None


@final
@attrs.frozen(kw_only=True)
class Synced:
    """The engine answered the ``sync()`` that returned ``token``: it has
    handled every frame sent before it."""

    token: int


#: Everything ``Connection.events()`` can yield.
Event = Union[
    OpenTransport,
    CloseTransport,
    StateChanged,
    Connected,
    Announced,
    InvocationRequested,
    InvocationSucceeded,
    InvocationFailed,
    TriggerRegistrationRequested,
    TriggerUnregistrationRequested,
    TriggerRegistrationFailed,
    FunctionRejected,
    EngineErrorReceived,
    PingReceived,
    UnknownFrameReceived,
    FrameRejected,
    ConnectionFailedEvent,
    Synced,
]
