"""``ChannelConnection``: one channel socket, client side, sans I/O.

Theory of operation
-------------------
A data channel is a bounded queue inside the engine with one writer socket
and one reader socket, each a WebSocket on ``/ws/channels/<id>``
(docs/protocol.md#channels).  A ``ChannelConnection`` is the client of one
such socket.  The transport opens a stream to ``address`` (TLS when
``address.secure``), calls ``start()`` to queue the upgrade request, writes
whatever ``data_to_send()`` returns, and feeds what it reads to
``receive_data`` (``b""`` when the stream ends; ``transport_failed`` when it
breaks).  ``next_event()`` returns what happened, in order, or ``NEED_DATA``
when the transport must read more.  The class never blocks and never reads a
clock: timeouts are the transport's, reported through ``transport_failed``.

The socket moves through the states of ``ChannelState``.  Everything that
changes the state is a ``ChannelInput``; ``CHANNEL_TRANSITIONS`` maps every
legal ``(state, input)`` pair to the next state, and a pair missing from it
is illegal: a local call that would make one raises ``LocalProtocolError``
and changes nothing.  What the engine sends is never an error to the caller:
it moves the socket on (possibly to ``FAILED``), and the failure is raised by
``next_event()`` once the messages that arrived before it were taken, so a
reader sees every complete item that reached it.

A stream is complete only when the engine closes the socket cleanly (Close
1000, or 1005: no code) between messages: that is ``ENDED``, and for a
reader the end of the stream.  Closing from this side (``close()``) drops
the unread messages and waits for the engine's Close: ``CLOSED`` (for a
writer, the engine confirmed the end of the stream).  Anything else (a
refused upgrade, the stream ending without a Close, an abnormal close code,
invalid WebSocket data, an item over ``max_message_size``) is ``FAILED``
with a ``ChannelError`` in ``error``.  In the three final states nothing more
is read: the transport writes what ``data_to_send()`` holds (a Close reply,
or our Close 1009/1002) and closes the stream (``finished``).
"""

from __future__ import annotations

import enum
from collections import deque
from typing import Optional, Union, final
from urllib.parse import quote, urlsplit

import attrs
from wsproto import ConnectionType, WSConnection
from wsproto import events as ws
from wsproto.connection import ConnectionState as WSState
from wsproto.utilities import RemoteProtocolError as WSRemoteProtocolError

from ._frames import StreamChannelRef
from .config import EngineAddress, parse_engine_url
from .errors import IIIError, LocalProtocolError

__all__ = [
    "CHANNEL_TRANSITIONS",
    "NEED_DATA",
    "ChannelClosed",
    "ChannelConnection",
    "ChannelEnded",
    "ChannelError",
    "ChannelEvent",
    "ChannelInput",
    "ChannelMessage",
    "ChannelOpened",
    "ChannelState",
    "NeedData",
    "channel_address",
]

_MiB = 1024 * 1024
_CLOSE_NORMAL = 1000
_CLOSE_NO_STATUS = 1005
_CLOSE_TOO_BIG = 1009
_CLEAN_CODES = (_CLOSE_NORMAL, _CLOSE_NO_STATUS)


class ChannelError(IIIError):
    """A channel socket failed: refused, lost mid-stream, closed abnormally or timed out.

    Attributes:
        channel_id: the channel, when known.
        status_code: the HTTP status of a refused upgrade (404: unknown
            channel or wrong access key), else ``None``.
        close_code: the WebSocket close code that ended the socket: the
            engine's, or ours when we refused its data (1009: an item over
            the size limit; 1002/1007: invalid WebSocket data); else ``None``.
    """

    def __init__(
        self,
        message: str,
        *,
        channel_id: Optional[str] = None,
        status_code: Optional[int] = None,
        close_code: Optional[int] = None,
    ) -> None:
        super().__init__(message)
        self.channel_id = channel_id
        self.status_code = status_code
        self.close_code = close_code


# -- the state table ------------------------------------------------------------------


class ChannelState(str, enum.Enum):
    """The phases of a channel socket; ``ENDED``, ``CLOSED`` and ``FAILED`` are final."""

    #: Not started: open a stream to ``address``, then call ``start()``.
    IDLE = "idle"
    #: The upgrade request is out; waiting for the engine's answer.
    CONNECTING = "connecting"
    #: Accepted: items flow.
    OPEN = "open"
    #: Our Close is out; waiting for the engine's.
    CLOSING = "closing"
    #: The engine closed the socket cleanly (a reader: the stream is complete).
    ENDED = "ended"
    #: The engine answered our Close (a writer: the end of the stream is confirmed).
    CLOSED = "closed"
    #: Refused, lost, closed abnormally, invalid data or timed out: see ``error``.
    FAILED = "failed"


class ChannelInput(enum.Enum):
    """What moves a channel socket from one ``ChannelState`` to the next."""

    #: ``start()``: the upgrade request was queued.
    START = "start"
    #: The engine accepted the upgrade.
    ACCEPTED = "accepted"
    #: ``close()``: our Close frame was queued (a no-op once closing or final).
    CLOSE = "close"
    #: The engine's own clean Close (1000/1005) between messages.
    ENGINE_CLOSED = "engine closed"
    #: The engine answered our Close cleanly, or hung up after it.
    CLOSE_CONFIRMED = "close confirmed"
    #: Anything that ends the socket with an error.
    FAILURE = "failure"


S = ChannelState
I = ChannelInput  # noqa: E741

#: Every legal (state, input) pair of a channel socket and the state it leads to;
#: a pair not in the table is a ``LocalProtocolError``.
CHANNEL_TRANSITIONS: dict[tuple[ChannelState, ChannelInput], ChannelState] = {
    (S.IDLE, I.START): S.CONNECTING,
    (S.CONNECTING, I.ACCEPTED): S.OPEN,
    (S.OPEN, I.CLOSE): S.CLOSING,
    (S.CLOSING, I.CLOSE): S.CLOSING,
    (S.ENDED, I.CLOSE): S.ENDED,
    (S.CLOSED, I.CLOSE): S.CLOSED,
    (S.FAILED, I.CLOSE): S.FAILED,
    (S.OPEN, I.ENGINE_CLOSED): S.ENDED,
    (S.CLOSING, I.CLOSE_CONFIRMED): S.CLOSED,
    (S.IDLE, I.FAILURE): S.FAILED,
    (S.CONNECTING, I.FAILURE): S.FAILED,
    (S.OPEN, I.FAILURE): S.FAILED,
    (S.CLOSING, I.FAILURE): S.FAILED,
}

del S, I

_FINAL = frozenset((ChannelState.ENDED, ChannelState.CLOSED, ChannelState.FAILED))


# -- events ---------------------------------------------------------------------------


@final
@attrs.frozen
class ChannelOpened:
    """The engine accepted the upgrade (always the first event)."""


@final
@attrs.frozen
class ChannelMessage:
    """One complete item: ``str`` from a text message, ``bytes`` from a binary one."""

    data: Union[str, bytes] = attrs.field(repr=lambda d: f"<{len(d)} {type(d).__name__}>")


@final
@attrs.frozen
class ChannelEnded:
    """The engine closed the socket cleanly (``code`` 1000, or 1005: none given)."""

    code: int


@final
@attrs.frozen
class ChannelClosed:
    """The engine answered our Close, or hung up after it."""


#: What ``ChannelConnection.next_event`` returns besides ``NEED_DATA``.
ChannelEvent = Union[ChannelOpened, ChannelMessage, ChannelEnded, ChannelClosed]


@final
class NeedData:
    """The type of ``NEED_DATA``: read from the stream and feed ``receive_data``."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "NEED_DATA"


#: ``next_event`` has nothing until more bytes are fed to ``receive_data``.
NEED_DATA = NeedData()


# -- the address ----------------------------------------------------------------------


def channel_address(engine_url: str, ref: StreamChannelRef) -> EngineAddress:
    """Where the socket of ``ref`` lives on the engine at ``engine_url``.

    ``<engine base>/ws/channels/<id>?<engine URL query>&key=<key>&dir=<direction>``:
    the query of the engine URL is kept and of its path only a prefix, so an
    engine behind a path-routing proxy still works
    (``ws://proxy/iii/?t=1`` -> ``/iii/ws/channels/<id>?t=1&key=...``).

    Raises:
        ValueError: ``engine_url`` is not a ``ws://`` or ``wss://`` URL.
    """
    address = parse_engine_url(engine_url)
    parts = urlsplit(engine_url)
    query = f"{parts.query}&" if parts.query else ""
    target = (
        f"{parts.path.rstrip('/')}/ws/channels/{quote(ref.channel_id, safe='')}"
        f"?{query}key={quote(ref.access_key, safe='')}&dir={ref.direction}"
    )
    return EngineAddress(address.host, address.port, address.secure, target)


def _utf8_len(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode("utf-8"))


# -- the connection -------------------------------------------------------------------


class ChannelConnection:
    """The protocol state of one channel socket. See the module docstring.

    Args:
        engine_url: the engine's URL (``ws://`` or ``wss://``); see
            ``channel_address``.
        ref: the end to open: its ``direction`` says whether this socket
            reads or writes.
        headers: extra headers for the upgrade request.
        max_message_size: the largest item accepted from the engine, in
            bytes (text counted as UTF-8); a bigger one fails the socket with
            Close 1009.

    Raises:
        ValueError: ``engine_url`` is not a ``ws://`` or ``wss://`` URL, or
            ``max_message_size`` is not positive.

    Exactly one thread or task may use a ``ChannelConnection`` at a time.
    """

    def __init__(
        self,
        engine_url: str,
        ref: StreamChannelRef,
        *,
        headers: tuple[tuple[str, str], ...] = (),
        max_message_size: int = 64 * _MiB,
    ) -> None:
        if max_message_size <= 0:
            raise ValueError(f"max_message_size must be > 0, got {max_message_size!r}")
        self.ref = ref
        self.address = channel_address(engine_url, ref)
        self.headers = headers
        self.max_message_size = max_message_size
        self._state = ChannelState.IDLE
        self._ws = WSConnection(ConnectionType.CLIENT)
        self._out = bytearray()
        self._events: deque[ChannelEvent] = deque()
        self._parts: list[Union[str, bytes]] = []
        self._size = 0
        self._end_code = _CLOSE_NORMAL
        self._close_code: Optional[int] = None  # the one we sent
        self._error: Optional[ChannelError] = None

    # -- read-only views -------------------------------------------------------

    @property
    def state(self) -> ChannelState:
        return self._state

    @property
    def error(self) -> Optional[ChannelError]:
        """Why the socket is ``FAILED``, else ``None``."""
        return self._error

    @property
    def finished(self) -> bool:
        """Nothing more will be read: write ``data_to_send()``, then close the stream."""
        return self._state in _FINAL

    def __repr__(self) -> str:
        # The access key is a secret: the target holds it, so it is left out.
        return f"<ChannelConnection {self.ref.channel_id} {self.ref.direction} {self._state.value}>"

    # -- output ----------------------------------------------------------------

    def data_to_send(self) -> bytes:
        """Everything queued for the stream since the last call."""
        out = bytes(self._out)
        self._out.clear()
        return out

    def next_event(self) -> Union[ChannelEvent, NeedData]:
        """The next event, or ``NEED_DATA`` while the socket waits for the engine.

        In a final state with no event left this returns ``ChannelEnded`` or
        ``ChannelClosed`` again on every call, or raises the failure.

        Raises:
            ChannelError: the socket failed (once the messages before the
                failure were taken; then on every call).
            LocalProtocolError: ``start()`` was not called.
        """
        if self._events:
            return self._events.popleft()
        state = self._state
        if state is ChannelState.FAILED:
            assert self._error is not None
            raise self._error
        if state is ChannelState.ENDED:
            return ChannelEnded(self._end_code)
        if state is ChannelState.CLOSED:
            return ChannelClosed()
        if state is ChannelState.IDLE:
            raise LocalProtocolError("the channel socket was not started")
        return NEED_DATA

    # -- local commands --------------------------------------------------------

    def start(self) -> None:
        """The stream to ``address`` is open: queue the WebSocket upgrade request.

        Raises:
            LocalProtocolError: not ``IDLE``.
        """
        self._transition(ChannelInput.START)
        self._out += self._ws.send(
            ws.Request(
                host=self.address.host_header,
                target=self.address.target,
                extra_headers=[(k.encode(), v.encode()) for k, v in self.headers],
            )
        )

    def send(self, data: Union[str, bytes, bytearray, memoryview]) -> None:
        """Queue one item: a ``str`` as a text message, bytes as a binary one.

        Raises:
            ChannelError: the socket failed, or the engine closed it.
            LocalProtocolError: this is a reader's socket, or it is not ``OPEN``.
            TypeError: ``data`` is neither text nor bytes.
        """
        if self.ref.direction != "write":
            raise LocalProtocolError("a reader's channel socket sends no items")
        state = self._state
        if state is ChannelState.FAILED:
            assert self._error is not None
            raise self._error
        if state is ChannelState.ENDED:
            raise self._fail_with(
                f"the engine closed the channel socket ({self._end_code}); "
                "nothing more can be sent",
                close_code=self._end_code,
            )
        if state is not ChannelState.OPEN:
            raise LocalProtocolError(f"cannot send while {state.value}")
        message: Union[ws.TextMessage, ws.BytesMessage]
        if isinstance(data, str):
            message = ws.TextMessage(data=data)
        elif isinstance(data, (bytes, bytearray, memoryview)):
            message = ws.BytesMessage(data=bytes(data))
        else:
            raise TypeError(f"an item is str or bytes, not {type(data).__name__}")
        self._out += self._ws.send(message)

    def close(self, code: int = _CLOSE_NORMAL, reason: str = "") -> None:
        """Start the closing handshake: queue a Close frame and drop the unread messages.

        A no-op once closing or in a final state.

        Raises:
            LocalProtocolError: ``IDLE`` or ``CONNECTING`` (abandon the stream instead).
        """
        if self._state is ChannelState.OPEN:
            self._out += self._ws.send(ws.CloseConnection(code=code, reason=reason))
            self._close_code = code
            self._drop_messages()
        self._transition(ChannelInput.CLOSE)

    # -- input -----------------------------------------------------------------

    def receive_data(self, data: bytes) -> None:
        """Feed bytes read from the stream; ``b""`` means it ended.

        Never raises for anything the engine sends.  Ignored in a final state.

        Raises:
            LocalProtocolError: ``start()`` was not called.
        """
        state = self._state
        if state is ChannelState.IDLE:
            raise LocalProtocolError("the channel socket was not started")
        if state in _FINAL:
            return
        if not data:
            self._on_eof()
            return
        try:
            self._ws.receive_data(data)
            for event in self._ws.events():
                self._on_ws_event(event)
                if self._state in _FINAL:
                    return
        except (WSRemoteProtocolError, UnicodeError) as exc:
            # Only the HTTP upgrade raises (wsproto lets a non-ASCII header
            # byte escape as UnicodeError); bad frames arrive as a Close event.
            self._fail(f"invalid answer to the WebSocket upgrade: {exc}")

    def transport_failed(self, reason: str) -> Optional[ChannelError]:
        """The stream broke, could not be opened, or timed out: the socket failed.

        ``reason`` becomes the error's message.  Ignored in a final state (the
        first failure wins).  Returns ``error``: ``None`` when the socket had
        already ended cleanly.
        """
        if self._state not in _FINAL:
            self._fail(reason)
        return self._error

    def _on_eof(self) -> None:
        state = self._state
        if state is ChannelState.CLOSING:
            # The engine hung up after our Close: nothing was lost.
            self._transition(ChannelInput.CLOSE_CONFIRMED)
        elif state is ChannelState.CONNECTING:
            self._fail("the engine closed the connection during the WebSocket upgrade")
        else:
            self._fail(
                "connection to the engine lost mid-stream (no Close frame): "
                "the stream is incomplete"
            )

    def _on_ws_event(self, event: ws.Event) -> None:
        if isinstance(event, (ws.TextMessage, ws.BytesMessage)):
            self._on_part(event.data, event.message_finished)
        elif isinstance(event, ws.Ping):
            if self._ws.state is WSState.OPEN:  # not once our Close is out
                self._out += self._ws.send(event.response())
        elif isinstance(event, ws.CloseConnection):
            self._on_close(event)
        elif isinstance(event, ws.AcceptConnection):
            self._transition(ChannelInput.ACCEPTED)
            self._events.append(ChannelOpened())
        elif isinstance(event, ws.RejectConnection):
            status = event.status_code
            hint = " (unknown channel or wrong access key)" if status == 404 else ""
            self._fail(
                f"the engine refused the channel socket: HTTP {status}{hint}", status_code=status
            )
        # Pong needs nothing; RejectData cannot arrive (the socket failed on
        # RejectConnection).

    def _on_part(self, data: Union[str, bytes, bytearray], finished: bool) -> None:
        if self._state is ChannelState.CLOSING:
            return  # we are done reading: what still arrives is dropped
        self._size += _utf8_len(data) if isinstance(data, str) else len(data)
        if self._size > self.max_message_size:
            self._out += self._ws.send(
                ws.CloseConnection(code=_CLOSE_TOO_BIG, reason="message too big")
            )
            self._fail(
                f"channel message over the {self.max_message_size}-byte limit",
                close_code=_CLOSE_TOO_BIG,
            )
            return
        self._parts.append(data if isinstance(data, str) else bytes(data))
        if not finished:
            return
        parts = self._parts
        self._drop_partial()
        if len(parts) == 1:
            item = parts[0]
        elif isinstance(parts[0], str):
            item = "".join(p for p in parts if isinstance(p, str))
        else:
            item = b"".join(p for p in parts if isinstance(p, bytes))
        self._events.append(ChannelMessage(item))

    def _on_close(self, event: ws.CloseConnection) -> None:
        ws_state = self._ws.state
        code = event.code
        if ws_state is WSState.REMOTE_CLOSING:  # the engine closes first: answer
            self._out += self._ws.send(event.response())
        elif ws_state is not WSState.CLOSED:
            # Not a Close frame: wsproto could not parse the engine's bytes
            # and suggests a code (1002, or 1007 for invalid UTF-8).
            if ws_state is WSState.OPEN:
                self._out += self._ws.send(ws.CloseConnection(code=code))
            self._fail(f"invalid WebSocket data from the engine: {event.reason}", close_code=code)
            return
        clean = code in _CLEAN_CODES
        if self._state is ChannelState.CLOSING:
            if clean or code == self._close_code:
                self._transition(ChannelInput.CLOSE_CONFIRMED)
                return
        elif clean and not self._parts:
            self._end_code = code
            self._transition(ChannelInput.ENGINE_CLOSED)
            return
        reason = f" {event.reason}" if event.reason else ""
        if clean:  # a clean code in the middle of a message
            message = f"the engine closed the channel socket mid-message ({code}{reason})"
        else:
            message = f"the engine closed the channel socket abnormally ({code}{reason})"
        self._fail(message, close_code=code)

    # -- helpers ---------------------------------------------------------------

    def _transition(self, event: ChannelInput) -> None:
        try:
            self._state = CHANNEL_TRANSITIONS[self._state, event]
        except KeyError:
            raise LocalProtocolError(f"cannot {event.value} while {self._state.value}") from None

    def _fail_with(
        self,
        message: str,
        *,
        status_code: Optional[int] = None,
        close_code: Optional[int] = None,
    ) -> ChannelError:
        channel_id = self.ref.channel_id
        return ChannelError(
            f"channel {channel_id}: {message}",
            channel_id=channel_id,
            status_code=status_code,
            close_code=close_code,
        )

    def _fail(
        self,
        message: str,
        *,
        status_code: Optional[int] = None,
        close_code: Optional[int] = None,
    ) -> None:
        self._transition(ChannelInput.FAILURE)
        self._error = self._fail_with(message, status_code=status_code, close_code=close_code)
        self._drop_partial()

    def _drop_partial(self) -> None:
        self._parts = []
        self._size = 0

    def _drop_messages(self) -> None:
        self._events = deque(e for e in self._events if not isinstance(e, ChannelMessage))
        self._drop_partial()
