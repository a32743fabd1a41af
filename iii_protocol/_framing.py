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

The fast path
-------------
wsproto does the upgrade and is the reference for everything after it, but
it is pure Python and costs more per frame than everything else the core does
for an invocation.  So, once the upgrade is done (and no extension was
negotiated), the frames of the common case are read and written here:

* In: a whole, unfragmented text frame (``FIN`` + text opcode, no RSV bits,
  not masked, its length minimally encoded and within ``max_message_size``,
  no fragmented message in progress) is decoded here, UTF-8 checked as
  wsproto checks it.  Such a frame cut across reads is held (each read's
  piece, its payload validated as it comes) until it is whole.
* Everything else (control frames, fragments, binary, oversized or odd
  headers, invalid UTF-8) goes to wsproto, frame by frame: this code still
  reads every header, so it knows where each frame wsproto reads ends, and
  takes over again at the next frame boundary.  A frame handed over after
  some of it was held is fed to wsproto in the same pieces it arrived in, so
  wsproto sees exactly what it would have seen on its own.
* Out: a message sent in one frame is framed and masked here; fragments,
  pings and the Close go through wsproto.

The upgrade response is fed to wsproto up to each place it could end (a
blank line), so no frame bytes reach wsproto's buffer with it.

The result is the same, event for event and byte for byte, as wsproto alone
(``Framing(fast_path=False)``): ``fuzz/fuzz_framing.py`` and
``tests/protocol/test_framing_fast.py`` compare the two on the same reads.
"""

from __future__ import annotations

import os
import re
from codecs import utf_8_decode
from collections.abc import Callable, Generator, Iterator
from typing import TYPE_CHECKING, Final, Optional, Union, final

import attrs

from .config import Config
from .errors import UpgradeRefused

if TYPE_CHECKING:
    from wsproto import ConnectionType, WSConnection
    from wsproto import events as ws
    from wsproto.connection import ConnectionState as WSState
    from wsproto.utilities import RemoteProtocolError as WSRemoteProtocolError


def _import_wsproto() -> None:
    """wsproto's names, loaded with the first socket: only a connection needs
    them (the upgrade, and every frame off the fast path), and wsproto brings
    h11, so a program pays for both when it connects, not when it imports."""
    if "ws" in globals():
        return
    from wsproto import ConnectionType, WSConnection
    from wsproto import events as ws
    from wsproto.connection import ConnectionState as WSState
    from wsproto.utilities import RemoteProtocolError as WSRemoteProtocolError

    globals().update(
        ConnectionType=ConnectionType,
        WSConnection=WSConnection,
        ws=ws,
        WSState=WSState,
        WSRemoteProtocolError=WSRemoteProtocolError,
    )


__all__ = [
    "Framing",
    "Accepted",
    "BinaryMessage",
    "Lost",
    "SocketEvent",
    "mask",
    "random_mask_keys",
    "utf8_len",
]

CLOSE_NORMAL: Final = 1000
CLOSE_PROTOCOL_ERROR: Final = 1002
CLOSE_TOO_BIG: Final = 1009

_TEXT_FIN: Final = 0x81  # FIN, no RSV bits, opcode 1 (text)
_MASKED: Final = 0x80


def utf8_len(text: str) -> int:
    """The UTF-8 size of ``text``, cheaply for ASCII."""
    return len(text) if text.isascii() else len(text.encode("utf-8"))


# -- masking (RFC 6455 section 5.3) ---------------------------------------------------

_XOR_TABLES: list[Optional[bytes]] = [None] * 256
_IDENTITY = int.from_bytes(bytes(range(256)), "little")


def _xor_table(byte: int) -> bytes:
    table = _XOR_TABLES[byte]
    if table is None:
        table = _XOR_TABLES[byte] = (
            _IDENTITY ^ int.from_bytes(bytes((byte,)) * 256, "little")
        ).to_bytes(256, "little")
    return table


def mask(payload: bytes, key: bytes) -> Union[bytes, bytearray]:
    """``payload`` XOR the 4-byte ``key`` repeated (masking and unmasking alike)."""
    n = len(payload)
    if n < 1024:
        # One big-integer XOR: the least Python work for small payloads.
        keys = (key * ((n >> 2) + 1))[:n]
        return (int.from_bytes(payload, "little") ^ int.from_bytes(keys, "little")).to_bytes(
            n, "little"
        )
    # Four table lookups over every fourth byte: linear and about 1 ns a byte.
    data = bytearray(payload)
    for i in range(4):
        data[i::4] = data[i::4].translate(_xor_table(key[i]))
    return data


class _SystemKeys:
    __slots__ = ("_at", "_keys", "_pool")

    def __init__(self, pool: int) -> None:
        self._pool = 4 * pool
        self._keys = b""
        self._at = 0

    def __call__(self) -> bytes:
        at = self._at
        if at >= len(self._keys):
            self._keys = os.urandom(self._pool)
            at = 0
        self._at = at + 4
        return self._keys[at : at + 4]


def random_mask_keys(pool: int = 1024) -> Callable[[], bytes]:
    """Fresh 4-byte masking keys from ``os.urandom``, drawn ``pool`` at a time
    (one system call per ``pool`` frames instead of one per frame)."""
    return _SystemKeys(pool)


# -- socket events ------------------------------------------------------------------------


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
Item = Union[str, SocketEvent]

_ACCEPTED = Accepted()
_BINARY = BinaryMessage()

# Where an HTTP response head can end: the "\n" of a blank line ("\n\n" or "\n\r\n"),
# as h11 finds it.
_HEAD_END = re.compile(rb"(?<=\n)\n|(?<=\n\r)\n")


def _header(data: bytes, pos: int) -> Optional[tuple[int, int]]:
    """(header size, payload size) of the frame at ``pos``; ``None`` until the
    length bytes are there (the masking key, if any, need not be)."""
    have = len(data) - pos
    if have < 2:
        return None
    second = data[pos + 1]
    length = second & 0x7F
    head = 6 if second & _MASKED else 2
    if length == 126:
        if have < 4:
            return None
        return head + 2, int.from_bytes(data[pos + 2 : pos + 4], "big")
    if length == 127:
        if have < 10:
            return None
        return head + 8, int.from_bytes(data[pos + 2 : pos + 10], "big")
    return head, length


class Framing:
    """The WebSocket of the current socket. See the module docstring.

    Args:
        config: the limits and fragment sizes.
        mask_key: a source of fresh 4-byte masking keys for the frames written
            here (default: ``random_mask_keys()``); wsproto draws its own.
        fast_path: ``False`` leaves every byte to wsproto (the reference the
            fast path is compared with).
    """

    __slots__ = (
        "_binary",
        "_continuing",
        "_fast",
        "_fast_path",
        "_fragment_size",
        "_fragment_threshold",
        "_head_tail",
        "_held",
        "_held_need",
        "_held_texts",
        "_held_undecoded",
        "_mask_key",
        "_max_message_size",
        "_parts",
        "_size",
        "_slow_head",
        "_slow_left",
        "_ws",
        "out",
    )

    def __init__(
        self,
        config: Config,
        *,
        mask_key: Optional[Callable[[], bytes]] = None,
        fast_path: bool = True,
    ) -> None:
        self._max_message_size = config.max_message_size
        self._fragment_threshold = config.fragment_threshold
        self._fragment_size = config.fragment_size
        self._mask_key = mask_key if mask_key is not None else random_mask_keys()
        self._fast_path = fast_path
        self._ws: Optional[WSConnection] = None
        #: bytes for the transport, drained by ``Connection.data_to_send`` (extended
        #: in place, never rebound: Connection holds the same buffer)
        self.out = bytearray()
        # the message wsproto is reassembling
        self._parts: list[str] = []
        self._size = 0
        self._binary = False
        self._reset_reader()

    def _reset_reader(self) -> None:
        #: frames are read here (the upgrade is done, no extension)
        self._fast = False
        #: the last bytes of the upgrade response so far (a blank line may span reads)
        self._head_tail = b""
        #: a fragmented message is in progress (in wsproto)
        self._continuing = False
        #: bytes of the current frame still to be fed to wsproto
        self._slow_left = 0
        #: the first bytes of the current wsproto frame, while its length is unknown
        self._slow_head: Optional[bytes] = None
        #: the pieces (one per read) of a text frame not yet whole
        self._held: list[bytes] = []
        #: its payload decoded so far, and the bytes of a character cut by a read
        self._held_texts: list[str] = []
        self._held_undecoded = b""
        #: bytes still to come before it is whole (0: only its header was held)
        self._held_need = 0

    @property
    def buffered(self) -> int:
        """Bytes of the message being reassembled."""
        return self._size + sum(map(len, self._held))

    @property
    def is_open(self) -> bool:
        """Whether WebSocket messages can be sent on the current socket."""
        ws_conn = self._ws
        return ws_conn is not None and ws_conn.state is WSState.OPEN

    # -- per socket --------------------------------------------------------------

    def start(self) -> None:
        """A new socket: a fresh wsproto client, nothing half-received."""
        _import_wsproto()
        self._ws = WSConnection(ConnectionType.CLIENT)
        self._parts.clear()
        self._size = 0
        self._reset_reader()

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
        self._reset_reader()

    # -- input -------------------------------------------------------------------

    def receive(self, data: Union[bytes, bytearray, memoryview]) -> Iterator[Item]:
        """Feed bytes; yields each whole text message and each socket event.

        Stop iterating once the socket is dropped (the rest is for nobody).
        Nothing follows a ``Lost``.
        """
        assert self._ws is not None  # Connection feeds only a live socket
        if type(data) is not bytes:
            data = bytes(data)  # (a bytearray or memoryview read: sliced and decoded below)
        if self._fast:
            return self._frames(data)
        return self._wsproto(data)

    def _wsproto(self, data: bytes) -> Iterator[Item]:
        """Through wsproto: the upgrade, and every frame when the fast path is
        off.  With it on, the upgrade response goes to wsproto up to where it
        ends at most, and the frames after it in the same read to ``_frames``."""
        ws_conn = self._ws
        assert ws_conn is not None
        used = len(data)
        try:
            if self._fast_path and ws_conn.connection is None:
                used = 0
                for piece in self._head_pieces(data):
                    ws_conn.receive_data(piece)
                    used += len(piece)
                    if ws_conn.connection is not None:
                        break  # upgraded: the rest is frames
            else:
                ws_conn.receive_data(data)
            for item in self._events(ws_conn):
                yield item
                if type(item) is Lost:
                    return
        except (WSRemoteProtocolError, UnicodeError) as exc:
            # wsproto lets a non-ASCII byte in a handshake header escape as UnicodeError.
            yield Lost(f"WebSocket handshake failed: {exc}")
            return
        if used < len(data):
            yield from self._frames(data[used:])

    def _head_pieces(self, data: bytes) -> list[bytes]:
        """``data`` cut after every place the upgrade response could end."""
        tail = self._head_tail
        joined = tail + data
        self._head_tail = joined[-2:]
        pieces = []
        start = 0
        for match in _HEAD_END.finditer(joined, len(tail)):
            end = match.end() - len(tail)
            pieces.append(data[start:end])
            start = end
        if start < len(data):
            pieces.append(data[start:])
        return pieces

    def _through_wsproto(self, data: bytes) -> Iterator[Item]:
        ws_conn = self._ws
        assert ws_conn is not None
        ws_conn.receive_data(data)
        return self._events(ws_conn)

    def _events(self, ws_conn: WSConnection) -> Iterator[Item]:
        for event in ws_conn.events():
            item: Optional[Item]
            if isinstance(event, ws.TextMessage):
                item = self._text(event.data, event.message_finished)
            elif isinstance(event, ws.BytesMessage):
                item = self._bytes(event.data, event.message_finished)
            else:
                item = self._control(ws_conn, event)
            if item is not None:
                yield item

    # -- the fast path ---------------------------------------------------------------

    def _frames(self, data: bytes) -> Iterator[Item]:
        """After the upgrade: whole text frames here, any other frame through wsproto."""
        pos = 0
        if self._slow_left or self._slow_head is not None:
            pos = yield from self._slow(data, 0)
        elif self._held:
            if self._held_need:
                pos = yield from self._resume(data)
            else:
                # Only a header was held: read it again with what follows.
                data = b"".join(self._held) + data
                self._held.clear()
        size = len(data)
        limit = self._max_message_size
        while 0 <= pos < size:
            if data[pos] == _TEXT_FIN and not self._continuing:
                length = data[pos + 1] if pos + 1 < size else 126
                if length < 126:
                    head = 2  # (the common case, read inline)
                else:
                    info = _header(data, pos)
                    if info is None:
                        self._held.append(data[pos:])  # a header cut by the read
                        return
                    head, length = info
                # Unmasked and minimally encoded (anything else is wsproto's to refuse).
                if length <= limit and (
                    head == 2
                    or (head == 4 and length > 125)
                    or (head == 10 and 0xFFFF < length < 1 << 63)
                ):
                    end = pos + head + length
                    if end <= size:
                        try:
                            text = data[pos + head : end].decode()
                        except UnicodeDecodeError:
                            pass  # wsproto reports it
                        else:
                            yield text
                            pos = end
                            continue
                    elif self._hold(data[pos:], head, end - size):
                        return
            pos = yield from self._slow(data, pos)

    def _hold(self, piece: bytes, head: int, need: int) -> bool:
        """Keep the start of a text frame until it is whole, its payload checked
        as it comes.  False (nothing kept) when it is not UTF-8: wsproto reports it."""
        try:
            text, used = utf_8_decode(piece[head:], "strict", False)
        except UnicodeDecodeError:
            return False
        self._held.append(piece)
        self._held_texts.append(text)
        self._held_undecoded = piece[head + used :]
        self._held_need = need
        return True

    def _resume(self, data: bytes) -> Generator[Item, None, int]:
        """The next read of a held text frame.  Returns where the next frame
        starts in ``data`` (-1: the socket is lost)."""
        need = self._held_need
        undecoded = self._held_undecoded
        texts = self._held_texts
        try:
            if len(data) >= need:
                texts.append((undecoded + data[:need]).decode())
            else:
                more, used = utf_8_decode(undecoded + data, "strict", False)
        except UnicodeDecodeError:
            # wsproto reads the frame from its start, in the pieces it came in.
            held = self._held
            self._held = []
            for piece in held:
                # (valid and unfinished: nothing comes of these)
                yield from self._through_wsproto(piece)
            texts.clear()
            self._held_undecoded = b""
            self._held_need = 0
            self._slow_left = need
            return (yield from self._slow(data, 0))
        if len(data) >= need:
            text = "".join(texts)
            self._held.clear()
            texts.clear()
            self._held_need = 0
            yield text
            return need
        self._held.append(data)
        texts.append(more)
        self._held_undecoded = (undecoded + data)[used:]
        self._held_need = need - len(data)
        return len(data)

    def _slow(self, data: bytes, pos: int) -> Generator[Item, None, int]:
        """Feed wsproto the frame at ``pos`` (or the rest of the one it is
        reading), as much of it as ``data`` holds.  Returns where the next
        frame starts (-1: the socket is lost)."""
        if self._slow_left:
            end = min(len(data), pos + self._slow_left)
            self._slow_left -= end - pos
        else:
            # A new frame: its header says where it ends, once it is all here.
            started = self._slow_head
            if started is None:
                first = data[pos]
                if first & 0x0F < 8:  # a data frame: is the message finished?
                    self._continuing = not first & 0x80
                info = _header(data, pos)
                before = 0
            else:
                info = _header(started + data[:10], 0)
                before = len(started)
            if info is None:
                # All header so far (wsproto may refuse it already).
                self._slow_head = (started or b"") + data[pos:]
                end = len(data)
            else:
                self._slow_head = None
                end = min(len(data), pos + info[0] + info[1] - before)
                self._slow_left = pos + info[0] + info[1] - before - end
        for item in self._through_wsproto(data[pos:end]):
            yield item
            if type(item) is Lost:
                return -1
        return end

    # -- what wsproto reports ----------------------------------------------------------

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
            # No extension is offered, so none can be negotiated (wsproto
            # refuses an answer naming one): frames are plain RFC 6455.
            self._fast = self._fast_path
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
            if self._fast:
                self._write_text(text.encode())
            else:
                self.out += ws_conn.send(ws.Message(data=text))
            return
        step = self._fragment_size
        for start in range(0, len(text), step):
            end = start + step
            self.out += ws_conn.send(
                ws.Message(data=text[start:end], message_finished=end >= len(text))
            )

    def _write_text(self, payload: bytes) -> None:
        """One masked, unfragmented text frame, as wsproto writes it."""
        n = len(payload)
        if n < 126:
            head = bytes((_TEXT_FIN, _MASKED | n))
        elif n <= 0xFFFF:
            head = bytes((_TEXT_FIN, _MASKED | 126)) + n.to_bytes(2, "big")
        else:
            head = bytes((_TEXT_FIN, _MASKED | 127)) + n.to_bytes(8, "big")
        key = self._mask_key()
        out = self.out
        out += head
        out += key
        out += mask(payload, key)

    def ping(self) -> None:
        """Queue a WebSocket ping (the keep-alive)."""
        ws_conn = self._ws
        # Only called on an open socket (a Close drops it at once).
        if ws_conn is not None and ws_conn.state is WSState.OPEN:  # pragma: no branch
            self.out += ws_conn.send(ws.Ping(payload=b"iii"))
