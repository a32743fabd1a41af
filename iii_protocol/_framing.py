"""WebSocket framing for ``Connection``: bytes to whole text messages and back.

Theory of operation
-------------------
``Framing`` owns the ``wsproto`` client of the current socket (a fresh one
per socket, from ``start``), the message being reassembled, and ``out``, the
bytes queued for the transport (they outlive a dropped socket until the
transport has taken them: the Close frame is the last thing it writes).

``receive`` turns bytes into a stream of whole text messages (plain ``str``,
the hot path) and the few socket events ``Connection`` must act on:
``Accepted`` (the upgrade succeeded), ``BinaryMessage`` (the engine sends
text only) and ``Lost`` (the socket must go: refused upgrade, bad frames, a
Close from the engine, a message over ``max_message_size``).  WebSocket pings
are answered here; pongs need nothing (any byte counts as liveness).
``send_text`` writes one message, split into continuation frames of whole
characters when it is large.

This is the one place bytes meet wsproto: a fast path for whole,
unfragmented text frames can go at the top of ``receive`` (while nothing is
buffered in wsproto or in ``_parts``) and of ``send_text``, with wsproto
kept for everything else.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Final, Optional, Union, final

import attrs
from wsproto import ConnectionType, WSConnection
from wsproto import events as ws
from wsproto.connection import ConnectionState as WSState
from wsproto.utilities import RemoteProtocolError as WSRemoteProtocolError

from .config import Config
from .errors import UpgradeRefused

__all__ = ["Framing", "Accepted", "BinaryMessage", "Lost", "SocketEvent", "utf8_len"]

CLOSE_NORMAL: Final = 1000
CLOSE_PROTOCOL_ERROR: Final = 1002
CLOSE_TOO_BIG: Final = 1009


def utf8_len(text: str) -> int:
    """The UTF-8 size of ``text``, cheaply for ASCII."""
    return len(text) if text.isascii() else len(text.encode("utf-8"))


@final
@attrs.frozen
class Accepted:
    """The engine accepted the WebSocket upgrade."""


@final
@attrs.frozen
class BinaryMessage:
    """A whole binary message arrived (the control socket carries text only)."""


@final
@attrs.frozen
class Lost:
    """The socket must be dropped: ``reason`` says why, ``code`` is the close code to send,
    ``cause`` the error behind it when there is one (a refused upgrade)."""

    reason: str
    code: int = CLOSE_PROTOCOL_ERROR
    cause: Optional[BaseException] = attrs.field(default=None, eq=False)


SocketEvent = Union[Accepted, BinaryMessage, Lost]

_ACCEPTED = Accepted()
_BINARY = BinaryMessage()


class Framing:
    """The WebSocket of the current socket. See the module docstring."""

    __slots__ = (
        "_binary",
        "_fragment_size",
        "_fragment_threshold",
        "_max_message_size",
        "_parts",
        "_size",
        "_ws",
        "out",
    )

    def __init__(self, config: Config) -> None:
        self._max_message_size = config.max_message_size
        self._fragment_threshold = config.fragment_threshold
        self._fragment_size = config.fragment_size
        self._ws: Optional[WSConnection] = None
        #: bytes for the transport, drained by ``Connection.data_to_send`` (extended
        #: in place, never rebound: Connection holds the same buffer)
        self.out = bytearray()
        self._parts: list[str] = []
        self._size = 0
        self._binary = False

    @property
    def buffered(self) -> int:
        """Bytes of the message being reassembled."""
        return self._size

    @property
    def is_open(self) -> bool:
        """Whether WebSocket messages can be sent on the current socket."""
        ws_conn = self._ws
        return ws_conn is not None and ws_conn.state is WSState.OPEN

    # -- per socket --------------------------------------------------------------

    def start(self) -> None:
        """A new socket: a fresh wsproto client, nothing half-received."""
        self._ws = WSConnection(ConnectionType.CLIENT)
        self._parts.clear()
        self._size = 0

    def request(self, host: str, target: str, headers: tuple[tuple[str, str], ...]) -> None:
        """Queue the WebSocket upgrade request."""
        assert self._ws is not None  # the state table allows this only on a socket
        self.out += self._ws.send(
            ws.Request(
                host=host,
                target=target,
                extra_headers=[(k.encode(), v.encode()) for k, v in headers],
            )
        )

    def stop(self, close_code: Optional[int]) -> None:
        """Forget the socket.  ``close_code``: queue a Close frame first (when
        the WebSocket is open); ``None``: the socket is gone already, so what
        was queued for it can go nowhere."""
        if close_code is None:
            self.out.clear()
        elif self.is_open:
            self.out += self._ws.send(ws.CloseConnection(code=close_code))  # type: ignore[union-attr]
        self._ws = None
        self._parts.clear()
        self._size = 0

    # -- input -------------------------------------------------------------------

    def receive(self, data: bytes) -> Iterator[Union[str, SocketEvent]]:
        """Feed bytes; yields each whole text message and each socket event.

        Stop iterating once the socket is dropped (the rest is for nobody).
        Nothing follows a ``Lost``.
        """
        ws_conn = self._ws
        assert ws_conn is not None  # Connection feeds only a live socket
        try:
            ws_conn.receive_data(data)
            for event in ws_conn.events():
                item: Union[str, SocketEvent, None]
                if isinstance(event, ws.TextMessage):
                    item = self._text(event.data, event.message_finished)
                elif isinstance(event, ws.BytesMessage):
                    item = self._bytes(event.data, event.message_finished)
                else:
                    item = self._control(ws_conn, event)
                if item is not None:
                    yield item
                    if type(item) is Lost:
                        return
        except (WSRemoteProtocolError, UnicodeError) as exc:
            # wsproto lets a non-ASCII byte in a handshake header escape as UnicodeError.
            yield Lost(f"WebSocket handshake failed: {exc}")

    def _text(self, data: str, finished: bool) -> Union[str, BinaryMessage, Lost, None]:
        parts = self._parts
        if not parts and self._size == 0:
            if finished:
                # One frame, one message: the common case.
                return data if utf8_len(data) <= self._max_message_size else self._too_big()
            self._binary = False
        self._size += utf8_len(data)
        parts.append(data)
        return self._added(finished)

    def _bytes(
        self, data: Union[bytes, bytearray], finished: bool
    ) -> Union[str, BinaryMessage, Lost, None]:
        if not self._parts and self._size == 0:
            self._binary = True
        self._size += len(data)
        return self._added(finished)

    def _added(self, finished: bool) -> Union[str, BinaryMessage, Lost, None]:
        """A fragment was added; returns the whole message once it is finished."""
        if self._size > self._max_message_size:
            return self._too_big()
        if not finished:
            return None
        parts = self._parts
        text = "".join(parts)
        parts.clear()
        self._size = 0
        return _BINARY if self._binary else text

    def _too_big(self) -> Lost:
        return Lost(f"engine message over the {self._max_message_size}-byte limit", CLOSE_TOO_BIG)

    def _control(self, ws_conn: WSConnection, event: ws.Event) -> Optional[SocketEvent]:
        if isinstance(event, ws.Ping):
            self.out += ws_conn.send(event.response())
            return None
        if isinstance(event, ws.AcceptConnection):
            return _ACCEPTED
        if isinstance(event, ws.CloseConnection):
            if ws_conn.state is WSState.REMOTE_CLOSING:
                self.out += ws_conn.send(event.response())
                return Lost(
                    f"engine closed the connection ({event.code} {event.reason}".rstrip() + ")"
                )
            # wsproto could not parse the engine's bytes: close with its code
            # (1002, or 1007 for invalid UTF-8).
            return Lost(f"bad WebSocket data from the engine: {event.reason}", event.code)
        if isinstance(event, ws.RejectConnection):
            refused = UpgradeRefused(event.status_code)
            return Lost(str(refused), cause=refused)
        # Pong needs nothing: any bytes already count as liveness.  RejectData
        # cannot arrive: the socket is dropped on RejectConnection.
        return None

    # -- output ------------------------------------------------------------------

    def send_text(self, text: str) -> None:
        """Queue one text message; large ones go out as continuation frames of
        whole characters, so every fragment is valid UTF-8 on its own."""
        ws_conn = self._ws
        if ws_conn is None or ws_conn.state is not WSState.OPEN:
            return  # pragma: no cover - callers check the state first
        threshold = self._fragment_threshold
        if len(text) <= threshold // 4 or utf8_len(text) <= threshold:
            self.out += ws_conn.send(ws.Message(data=text))
            return
        step = self._fragment_size
        for start in range(0, len(text), step):
            end = start + step
            self.out += ws_conn.send(
                ws.Message(data=text[start:end], message_finished=end >= len(text))
            )

    def ping(self) -> None:
        """Queue a WebSocket ping (the keep-alive)."""
        ws_conn = self._ws
        # Only called on an open socket (a Close drops it at once).
        if ws_conn is not None and ws_conn.state is WSState.OPEN:  # pragma: no branch
            self.out += ws_conn.send(ws.Ping(payload=b"iii"))
