"""Every phase of a worker connection, as one table.

Theory of operation
-------------------
A connection has two coupled phases: the *session* state
(``ConnectionState``, what the application sees: disconnected, connecting,
connected, reconnecting, failed) and the *socket* phase (``SocketPhase``,
where the current WebSocket is: none, opening, upgrading, open).  Everything
that changes either one is a ``ConnectionInput``, and ``PHASES`` maps each
legal ``(state, socket, input)`` to the next ``(state, socket)``, or to
``IGNORED`` when the input is legal but changes nothing (the transport
reporting the loss of a socket the core has already dropped; closing a
session that failed).  A triple missing from ``PHASES`` is illegal:
``ConnectionStateMachine.process`` raises ``LocalProtocolError`` and changes
nothing.  ``Connection`` consults the machine before acting and turns an
illegal input the engine caused (a second ``workerregistered``) into a
``RemoteProtocolError``.

Only these pairs of phases occur (a test walks the table to check it)::

    DISCONNECTED  none          RECONNECTING  none          FAILED  none
    CONNECTING    opening | upgrading | open                CONNECTED  open

``FAILED`` is terminal: a refused worker name or an exhausted retry budget
cannot be undone by this session.  ``close()`` from any live state returns to
``DISCONNECTED``, from which ``connect()`` starts a fresh session.  Which of
``TRANSPORT_LOST`` and ``RETRIES_EXHAUSTED`` a lost socket is depends on the
reconnect policy, a guard ``Connection`` evaluates before the input.

This module knows nothing about JSON, WebSockets or time: ``Connection``
performs the side effects of each input (opening a socket, replaying
registrations, failing calls...).
"""

from __future__ import annotations

import enum
from typing import Final, Optional

from .errors import LocalProtocolError

__all__ = [
    "ConnectionState",
    "SocketPhase",
    "ConnectionInput",
    "ConnectionStateMachine",
    "PHASES",
    "IGNORED",
    "TRANSITIONS",
]


class ConnectionState(str, enum.Enum):
    """Values are the SDK's ``IIIConnectionState`` literals."""

    DISCONNECTED = "disconnected"
    CONNECTING = "connecting"
    CONNECTED = "connected"
    RECONNECTING = "reconnecting"
    FAILED = "failed"


class SocketPhase(str, enum.Enum):
    """Where the socket of the current attempt is."""

    #: no socket: none was asked for yet, or it was dropped.
    NONE = "none"
    #: ``OpenTransport`` was emitted; the transport is connecting (TCP, TLS).
    OPENING = "opening"
    #: the transport is open and the WebSocket upgrade request was queued.
    UPGRADING = "upgrading"
    #: the engine accepted the upgrade: WebSocket frames flow.
    OPEN = "open"


class ConnectionInput(enum.Enum):
    """What can happen to a connection: the inputs of ``TRANSITIONS``."""

    #: the user asked to connect (``connect()``).
    CONNECT = "connect"
    #: the transport opened the socket (``transport_opened``).
    TRANSPORT_OPENED = "transport_opened"
    #: the engine answered the upgrade with ``101 Switching Protocols``.
    HANDSHAKE_ACCEPTED = "handshake_accepted"
    #: ``workerregistered`` arrived on an open WebSocket.
    WORKER_REGISTERED = "worker_registered"
    #: socket closed, handshake refused, keep-alive or connect timeout.
    TRANSPORT_LOST = "transport_lost"
    #: as TRANSPORT_LOST, but the reconnect policy allows no further retry.
    RETRIES_EXHAUSTED = "retries_exhausted"
    #: the reconnect delay ran out: dial again.
    BACKOFF_ELAPSED = "backoff_elapsed"
    #: ``registrationrejected`` with a code other than FUNCTION_NAMESPACE_CONFLICT.
    FATAL_REJECTION = "fatal_rejection"
    #: the user closed the connection (``close()``).
    CLOSE = "close"


#: Marks a legal input that changes nothing and has no side effect.
IGNORED: Final = None

Phase = tuple[ConnectionState, SocketPhase]

S = ConnectionState
P = SocketPhase
I = ConnectionInput  # noqa: E741

_LIVE_SOCKETS = ((S.CONNECTING, P.OPENING), (S.CONNECTING, P.UPGRADING), (S.CONNECTING, P.OPEN))
_WITH_SOCKET = (*_LIVE_SOCKETS, (S.CONNECTED, P.OPEN))
_WITHOUT_SOCKET = ((S.DISCONNECTED, P.NONE), (S.RECONNECTING, P.NONE), (S.FAILED, P.NONE))

#: ``(state, socket, input) -> (state, socket)``, or ``IGNORED``.  Every legal triple.
PHASES: dict[tuple[ConnectionState, SocketPhase, ConnectionInput], Optional[Phase]] = {
    # a session starts with a socket being opened...
    (S.DISCONNECTED, P.NONE, I.CONNECT): (S.CONNECTING, P.OPENING),
    (S.RECONNECTING, P.NONE, I.BACKOFF_ELAPSED): (S.CONNECTING, P.OPENING),
    # ...upgraded to a WebSocket, then greeted by the engine
    (S.CONNECTING, P.OPENING, I.TRANSPORT_OPENED): (S.CONNECTING, P.UPGRADING),
    (S.CONNECTING, P.UPGRADING, I.HANDSHAKE_ACCEPTED): (S.CONNECTING, P.OPEN),
    (S.CONNECTING, P.OPEN, I.WORKER_REGISTERED): (S.CONNECTED, P.OPEN),
    # a socket can be lost in any phase; the engine refuses only on an open one
    **{(s, p, I.TRANSPORT_LOST): (S.RECONNECTING, P.NONE) for s, p in _WITH_SOCKET},
    **{(s, p, I.RETRIES_EXHAUSTED): (S.FAILED, P.NONE) for s, p in _WITH_SOCKET},
    (S.CONNECTING, P.OPEN, I.FATAL_REJECTION): (S.FAILED, P.NONE),
    (S.CONNECTED, P.OPEN, I.FATAL_REJECTION): (S.FAILED, P.NONE),
    # the transport reports the loss of a socket the core already dropped
    **{(s, p, I.TRANSPORT_LOST): IGNORED for s, p in _WITHOUT_SOCKET},
    **{(s, p, I.RETRIES_EXHAUSTED): IGNORED for s, p in _WITHOUT_SOCKET},
    # close() is legal everywhere; a failed session stays failed
    **{(s, p, I.CLOSE): (S.DISCONNECTED, P.NONE) for s, p in _WITH_SOCKET},
    (S.DISCONNECTED, P.NONE, I.CLOSE): (S.DISCONNECTED, P.NONE),
    (S.RECONNECTING, P.NONE, I.CLOSE): (S.DISCONNECTED, P.NONE),
    (S.FAILED, P.NONE, I.CLOSE): IGNORED,
}

#: ``PHASES`` seen from the session alone: ``(state, input) -> state`` (an
#: ignored input keeps the state).  The socket phase never decides the next
#: session state, so this is a function.
TRANSITIONS: dict[tuple[ConnectionState, ConnectionInput], ConnectionState] = {
    (state, event): state if new is None else new[0] for (state, _, event), new in PHASES.items()
}

del S, P, I

#: Errors for illegal inputs that say more than "cannot X while Y".
_ILLEGAL: dict[ConnectionInput, str] = {
    ConnectionInput.TRANSPORT_OPENED: "no transport is being opened",
}


class ConnectionStateMachine:
    """Holds the current phases and applies inputs through ``PHASES``."""

    __slots__ = ("socket", "state")

    def __init__(self) -> None:
        self.state = ConnectionState.DISCONNECTED
        self.socket = SocketPhase.NONE

    def process(self, event: ConnectionInput) -> Optional[ConnectionState]:
        """Apply ``event``.

        Returns:
            The previous session state, or ``None`` when ``PHASES`` ignores
            the input (nothing changed; no side effect is due).

        Raises:
            LocalProtocolError: the input is illegal in the current phases
                (nothing changes).
        """
        old = self.state
        try:
            new = PHASES[old, self.socket, event]
        except KeyError:
            message = (
                _ILLEGAL.get(event) or f"cannot {event.value.replace('_', ' ')} while {old.value}"
            )
            raise LocalProtocolError(message) from None
        if new is None:  # IGNORED
            return None
        self.state, self.socket = new
        return old
