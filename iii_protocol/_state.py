"""The connection state machine, as one table.

Theory of operation: a worker session moves through five states.  Everything
that changes the state is an ``ConnectionInput``; ``_TRANSITIONS`` maps each
legal ``(state, input)`` pair to the next state and any pair missing from it
is illegal.  Illegal local input raises ``LocalProtocolError`` and leaves the
state unchanged.  This module knows nothing about JSON, WebSockets or time:
``Connection`` performs the side effects around each transition.

``FAILED`` is terminal: a refused worker name or an exhausted retry budget
cannot be undone by this session.  ``close()`` from any live state returns to
``DISCONNECTED``, from which ``connect()`` starts a fresh session.
"""

from __future__ import annotations

import enum

from .errors import LocalProtocolError

__all__ = ["ConnectionState", "ConnectionInput", "ConnectionStateMachine", "TRANSITIONS"]


class ConnectionState(str, enum.Enum):
    """Values are the SDK's ``IIIConnectionState`` literals."""

    DISCONNECTED = "disconnected"
    CONNECTING = "connecting"
    CONNECTED = "connected"
    RECONNECTING = "reconnecting"
    FAILED = "failed"


class ConnectionInput(enum.Enum):
    CONNECT = "connect"
    #: ``workerregistered`` arrived on an open WebSocket.
    WORKER_REGISTERED = "worker_registered"
    #: socket closed, handshake refused, keep-alive or connect timeout.
    TRANSPORT_LOST = "transport_lost"
    #: as TRANSPORT_LOST, but the reconnect policy allows no further retry.
    RETRIES_EXHAUSTED = "retries_exhausted"
    BACKOFF_ELAPSED = "backoff_elapsed"
    #: ``registrationrejected`` with a code other than FUNCTION_NAMESPACE_CONFLICT.
    FATAL_REJECTION = "fatal_rejection"
    CLOSE = "close"


S = ConnectionState
I = ConnectionInput  # noqa: E741

TRANSITIONS: dict[tuple[ConnectionState, ConnectionInput], ConnectionState] = {
    (S.DISCONNECTED, I.CONNECT): S.CONNECTING,
    (S.CONNECTING, I.WORKER_REGISTERED): S.CONNECTED,
    (S.CONNECTING, I.TRANSPORT_LOST): S.RECONNECTING,
    (S.CONNECTING, I.RETRIES_EXHAUSTED): S.FAILED,
    (S.CONNECTING, I.FATAL_REJECTION): S.FAILED,
    (S.CONNECTED, I.TRANSPORT_LOST): S.RECONNECTING,
    (S.CONNECTED, I.RETRIES_EXHAUSTED): S.FAILED,
    (S.CONNECTED, I.FATAL_REJECTION): S.FAILED,
    (S.RECONNECTING, I.BACKOFF_ELAPSED): S.CONNECTING,
    (S.DISCONNECTED, I.CLOSE): S.DISCONNECTED,
    (S.CONNECTING, I.CLOSE): S.DISCONNECTED,
    (S.CONNECTED, I.CLOSE): S.DISCONNECTED,
    (S.RECONNECTING, I.CLOSE): S.DISCONNECTED,
    (S.FAILED, I.CLOSE): S.FAILED,
}

del S, I


class ConnectionStateMachine:
    """Holds the current state and applies inputs through ``TRANSITIONS``."""

    __slots__ = ("state",)

    def __init__(self) -> None:
        self.state = ConnectionState.DISCONNECTED

    def process(self, event: ConnectionInput) -> ConnectionState:
        """Apply ``event``; returns the previous state.

        Raises:
            LocalProtocolError: the input is illegal in the current state
                (the state is unchanged).
        """
        old = self.state
        try:
            self.state = TRANSITIONS[old, event]
        except KeyError:
            raise LocalProtocolError(
                f"cannot {event.value.replace('_', ' ')} while {old.value}"
            ) from None
        return old
