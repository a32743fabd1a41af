"""``ChannelConnection``: one channel socket, sans I/O, against a scripted engine in memory."""

from __future__ import annotations

import itertools
import pickle
import re
from typing import Optional, Union

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from wsproto import ConnectionType, WSConnection
from wsproto import events as ws
from wsproto.connection import ConnectionState as WSState
from wsproto.frame_protocol import FrameProtocol, Opcode

from iii_protocol import (
    CHANNEL_TRANSITIONS,
    NEED_DATA,
    ChannelClosed,
    ChannelConnection,
    ChannelEnded,
    ChannelError,
    ChannelInput,
    ChannelMessage,
    ChannelOpened,
    ChannelState,
    IIIError,
    LocalProtocolError,
    StreamChannelRef,
    channel_address,
)
from iii_protocol import strategies as iii_st
from iii_protocol.strategies import (
    OP_BINARY,
    OP_CLOSE,
    OP_CONTINUATION,
    OP_PING,
    OP_PONG,
    accept_key,
    ws_close_payload,
    ws_frame,
)

S = ChannelState
I = ChannelInput  # noqa: E741
Item = Union[str, bytes]

URL = "ws://engine.test:49134"
_KEY = re.compile(rb"\r\nsec-websocket-key: *([^\r]*)\r\n", re.IGNORECASE)

#: The table, written out independently of the implementation.
EXPECTED = {
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


def ref(direction: str = "read", channel_id: str = "c-1", key: str = "k-1") -> StreamChannelRef:
    return StreamChannelRef(channel_id=channel_id, access_key=key, direction=direction)  # type: ignore[arg-type]


class Engine:
    """The engine's side of one channel socket (a wsproto server)."""

    def __init__(self) -> None:
        self.ws = WSConnection(ConnectionType.SERVER)
        self.request: Optional[ws.Request] = None
        self.received: list[Item] = []
        self.pongs: list[bytes] = []
        self.close_code: Optional[int] = None
        self._parts: list[Item] = []

    def receive(self, data: bytes) -> None:
        self.ws.receive_data(data)
        for event in self.ws.events():
            if isinstance(event, ws.Request):
                self.request = event
            elif isinstance(event, (ws.TextMessage, ws.BytesMessage)):
                part = event.data
                self._parts.append(part if isinstance(part, str) else bytes(part))
                if event.message_finished:
                    parts, self._parts = self._parts, []
                    if isinstance(parts[0], str):
                        self.received.append("".join(str(p) for p in parts))
                    else:
                        self.received.append(b"".join(bytes(p) for p in parts))  # type: ignore[arg-type]
            elif isinstance(event, ws.Pong):
                self.pongs.append(bytes(event.payload))
            elif isinstance(event, ws.CloseConnection):
                self.close_code = event.code

    def accept(self) -> bytes:
        return self.ws.send(ws.AcceptConnection())

    def send(self, item: Item, finished: bool = True) -> bytes:
        if isinstance(item, str):
            return self.ws.send(ws.TextMessage(data=item, message_finished=finished))
        return self.ws.send(ws.BytesMessage(data=item, message_finished=finished))

    def close(self, code: int = 1000, reason: str = "") -> bytes:
        return self.ws.send(ws.CloseConnection(code=code, reason=reason))


def started(direction: str = "read", **kw: object) -> tuple[ChannelConnection, Engine]:
    conn = ChannelConnection(URL, ref(direction), **kw)  # type: ignore[arg-type]
    engine = Engine()
    conn.start()
    engine.receive(conn.data_to_send())
    return conn, engine


def opened(direction: str = "read", **kw: object) -> tuple[ChannelConnection, Engine]:
    conn, engine = started(direction, **kw)
    conn.receive_data(engine.accept())
    assert conn.next_event() == ChannelOpened()
    assert conn.state is S.OPEN
    return conn, engine


def exchange(conn: ChannelConnection, engine: Engine, data: bytes) -> None:
    """Feed ``data`` to the connection and its answers to the engine."""
    conn.receive_data(data)
    out = conn.data_to_send()
    if out:
        engine.receive(out)


def drain(conn: ChannelConnection) -> tuple[list[Item], object]:
    """Every message, then what ended them (an event, NEED_DATA or the error)."""
    items: list[Item] = []
    while True:
        try:
            event = conn.next_event()
        except ChannelError as exc:
            return items, exc
        if isinstance(event, ChannelMessage):
            items.append(event.data)
        else:
            return items, event


# -- the state table ------------------------------------------------------------------


def test_table_is_exactly_the_documented_one() -> None:
    assert CHANNEL_TRANSITIONS == EXPECTED


@pytest.mark.parametrize(
    ("state", "event"),
    [pair for pair in itertools.product(S, I) if pair not in EXPECTED],
    ids=lambda v: v.value,
)
def test_every_other_pair_is_refused_and_changes_nothing(
    state: ChannelState, event: ChannelInput
) -> None:
    conn = ChannelConnection(URL, ref())
    conn._state = state
    with pytest.raises(LocalProtocolError, match=f"cannot {event.value} while {state.value}"):
        conn._transition(event)
    assert conn.state is state


def test_final_states() -> None:
    for state in S:
        conn = ChannelConnection(URL, ref())
        conn._state = state
        assert conn.finished is (state in (S.ENDED, S.CLOSED, S.FAILED))


# -- the address and the upgrade request ------------------------------------------------


@pytest.mark.parametrize(
    ("url", "host", "port", "secure", "target"),
    [
        (
            "ws://127.0.0.1:49134",
            "127.0.0.1",
            49134,
            False,
            "/ws/channels/c%2F1?key=k%20%2B&dir=read",
        ),
        (
            "wss://proxy.test/iii/?t=1&u=2",
            "proxy.test",
            443,
            True,
            "/iii/ws/channels/c%2F1?t=1&u=2&key=k%20%2B&dir=read",
        ),
        ("ws://[::1]:80/", "::1", 80, False, "/ws/channels/c%2F1?key=k%20%2B&dir=read"),
    ],
)
def test_channel_address(url: str, host: str, port: int, secure: bool, target: str) -> None:
    address = channel_address(url, ref(channel_id="c/1", key="k +"))
    assert (address.host, address.port, address.secure, address.target) == (
        host,
        port,
        secure,
        target,
    )


def test_start_sends_the_upgrade_with_the_headers() -> None:
    conn, engine = started(headers=(("Authorization", "Bearer t"), ("x-team", "orders")))
    assert conn.state is S.CONNECTING
    assert engine.request is not None
    assert engine.request.host == "engine.test:49134"
    assert engine.request.target == "/ws/channels/c-1?key=k-1&dir=read"
    headers = {k.decode().lower(): v.decode() for k, v in engine.request.extra_headers}
    assert headers["authorization"] == "Bearer t"
    assert headers["x-team"] == "orders"
    assert conn.next_event() is NEED_DATA
    assert repr(NEED_DATA) == "NEED_DATA"


def test_commands_before_start_are_refused() -> None:
    conn = ChannelConnection(URL, ref())
    assert conn.state is S.IDLE
    with pytest.raises(LocalProtocolError, match="not started"):
        conn.next_event()
    with pytest.raises(LocalProtocolError, match="not started"):
        conn.receive_data(b"x")
    with pytest.raises(LocalProtocolError, match="cannot close while idle"):
        conn.close()
    conn.start()
    with pytest.raises(LocalProtocolError, match="cannot start while connecting"):
        conn.start()
    with pytest.raises(LocalProtocolError, match="cannot close while connecting"):
        conn.close()
    # mypy keeps conn.state narrowed to IDLE across start()
    assert conn.state is S.CONNECTING  # type: ignore[comparison-overlap]


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="ws://"):
        ChannelConnection("http://engine", ref())
    with pytest.raises(ValueError, match="max_message_size"):
        ChannelConnection(URL, ref(), max_message_size=0)


def test_repr_keeps_the_access_key_secret() -> None:
    conn = ChannelConnection(URL, ref(key="secret-key"))
    assert repr(conn) == "<ChannelConnection c-1 read idle>"
    assert "secret" not in repr(ChannelMessage(b"secret-data"))
    assert repr(ChannelMessage("text")) == "ChannelMessage(data=<4 str>)"


# -- the engine's answer ------------------------------------------------------------------


def test_accepted_then_items_in_order() -> None:
    conn, engine = opened()
    data = engine.send("meta") + engine.send(b"hello ", finished=False) + engine.send(b"world")
    data += engine.send("text ", finished=False) + engine.send("in parts") + engine.send(b"")
    exchange(conn, engine, data)
    assert drain(conn) == (["meta", b"hello world", "text in parts", b""], NEED_DATA)


def test_items_arriving_with_the_101_are_kept() -> None:
    conn, engine = started()
    conn.receive_data(engine.accept() + engine.send(b"early") + engine.close(1000))
    assert conn.state is S.ENDED
    assert conn.next_event() == ChannelOpened()
    assert drain(conn) == ([b"early"], ChannelEnded(1000))
    engine.receive(conn.data_to_send())
    assert engine.close_code == 1000  # the Close was answered


def test_pings_are_answered_and_pongs_ignored() -> None:
    conn, engine = opened()
    exchange(conn, engine, engine.ws.send(ws.Ping(payload=b"hi")))
    assert engine.pongs == [b"hi"]
    exchange(conn, engine, engine.ws.send(ws.Pong(payload=b"late")))
    assert conn.next_event() is NEED_DATA
    assert conn.state is S.OPEN


@pytest.mark.parametrize(
    ("status", "hint"), [(404, "unknown channel or wrong access key"), (400, "HTTP 400")]
)
def test_a_refused_upgrade_fails_with_its_status(status: int, hint: str) -> None:
    conn, engine = started()
    answer = engine.ws.send(
        ws.RejectConnection(status_code=status, headers=[(b"content-length", b"2")], has_body=True)
    ) + engine.ws.send(ws.RejectData(data=b"no"))
    conn.receive_data(answer)
    assert conn.state is S.FAILED
    with pytest.raises(ChannelError, match=re.escape(hint)) as info:
        conn.next_event()
    assert info.value.status_code == status
    assert info.value.close_code is None
    assert info.value.channel_id == "c-1"
    assert conn.data_to_send() == b""


@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: wrong\r\n\r\n",
        b"HTTP/1.1 101 Switching Protocols\r\nX-Bad: \xff\xfe\r\n\r\n",
        b"\x00\x01 garbage\r\n\r\n",
    ],
    ids=["wrong-accept", "non-ascii-header", "garbage"],
)
def test_an_invalid_upgrade_answer_fails(answer: bytes) -> None:
    conn, _ = started()
    conn.receive_data(answer)
    assert conn.state is S.FAILED
    with pytest.raises(ChannelError, match="invalid answer to the WebSocket upgrade"):
        conn.next_event()


def test_a_correct_101_written_by_hand_is_accepted() -> None:
    conn = ChannelConnection(URL, ref())
    conn.start()
    match = _KEY.search(conn.data_to_send())
    assert match is not None
    conn.receive_data(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: " + accept_key(match.group(1)).encode() + b"\r\n\r\n"
    )
    assert conn.next_event() == ChannelOpened()


# -- how the stream ends ----------------------------------------------------------------


@pytest.mark.parametrize(("code", "frame_code"), [(1000, 1000), (1005, None)])
def test_the_engines_clean_close_ends_the_stream(code: int, frame_code: Optional[int]) -> None:
    conn, engine = opened()
    exchange(
        conn,
        engine,
        engine.send(b"last") + ws_frame(ws_close_payload(frame_code), opcode=OP_CLOSE),
    )
    assert conn.state is S.ENDED
    assert conn.finished
    assert drain(conn) == ([b"last"], ChannelEnded(code))
    assert conn.next_event() == ChannelEnded(code)  # again, on every call
    assert conn.error is None
    # Nothing more is read or written.
    conn.receive_data(ws_frame(b"after", opcode=OP_BINARY))
    conn.receive_data(b"")
    assert conn.transport_failed("too late") is None
    conn.close()
    assert conn.state is S.ENDED
    assert conn.data_to_send() == b""


def test_a_clean_close_in_the_middle_of_a_message_fails() -> None:
    conn, engine = opened()
    exchange(conn, engine, engine.send(b"whole") + engine.send(b"par", finished=False))
    exchange(conn, engine, ws_frame(ws_close_payload(1000, b"bye"), opcode=OP_CLOSE))
    items, error = drain(conn)
    assert items == [b"whole"]
    assert isinstance(error, ChannelError)
    assert "mid-message (1000 bye)" in str(error)
    assert error.close_code == 1000
    assert engine.close_code == 1000  # answered all the same


@pytest.mark.parametrize(
    ("reason", "shown"), [("engine failed", "(1011 engine failed)"), ("", "(1011)")]
)
def test_an_abnormal_close_code_fails(reason: str, shown: str) -> None:
    conn, engine = opened()
    exchange(conn, engine, engine.send(b"x") + engine.close(1011, reason))
    assert conn.state is S.FAILED
    items, error = drain(conn)
    assert items == [b"x"]  # what arrived before the failure first
    assert isinstance(error, ChannelError)
    assert f"abnormally {shown}" in str(error)
    assert error.close_code == 1011
    assert engine.close_code == 1011
    with pytest.raises(ChannelError) as again:
        conn.next_event()
    assert again.value is error


def test_end_of_file_during_the_upgrade() -> None:
    conn, _ = started()
    conn.receive_data(b"")
    with pytest.raises(ChannelError, match="during the WebSocket upgrade"):
        conn.next_event()


def test_end_of_file_mid_stream_is_an_error_not_a_short_read() -> None:
    conn, engine = opened()
    exchange(conn, engine, engine.send(b"part one"))
    conn.receive_data(b"")
    items, error = drain(conn)
    assert items == [b"part one"]
    assert isinstance(error, ChannelError)
    assert "mid-stream" in str(error)


@pytest.mark.parametrize("state", ["connecting", "open", "closing"])
def test_transport_failed_records_the_reason(state: str) -> None:
    conn, _ = (started if state == "connecting" else opened)()
    if state == "closing":
        conn.close()
    error = conn.transport_failed("connection to the engine lost: reset")
    assert error is conn.error
    assert conn.state is S.FAILED
    assert str(error) == "channel c-1: connection to the engine lost: reset"
    assert conn.transport_failed("second") is error  # the first failure wins


def test_transport_failed_before_start_is_a_connect_failure() -> None:
    conn = ChannelConnection(URL, ref())
    error = conn.transport_failed("could not connect")
    assert error is not None and conn.state is S.FAILED
    assert conn.finished
    conn.close()  # a no-op once failed
    assert conn.state is S.FAILED


# -- items over the limit ---------------------------------------------------------------


@pytest.mark.parametrize(
    "frames",
    [
        [b"x" * 11],
        [b"x" * 6, b"x" * 5],
        ["é" * 6],  # 12 UTF-8 bytes in 6 characters
    ],
    ids=["one-frame", "fragments", "utf8-text"],
)
def test_an_item_over_the_limit_fails_with_1009(frames: list[Item]) -> None:
    conn, engine = opened(max_message_size=10)
    data = engine.send(b"ok")
    for i, frame in enumerate(frames):
        data += engine.send(frame, finished=i == len(frames) - 1)
    exchange(conn, engine, data)
    assert engine.close_code == 1009
    items, error = drain(conn)
    assert items == [b"ok"]
    assert isinstance(error, ChannelError)
    assert error.close_code == 1009
    assert "over the 10-byte limit" in str(error)


def test_an_item_at_the_limit_is_fine() -> None:
    conn, engine = opened(max_message_size=10)
    exchange(conn, engine, engine.send("é" * 5) + engine.send(b"y" * 10))
    assert drain(conn) == (["é" * 5, b"y" * 10], NEED_DATA)


# -- invalid WebSocket data ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (ws_frame(b"masked", mask=b"abcd"), 1002),  # an engine never masks
        (ws_frame(b"x", opcode=3), 1002),
        (ws_frame(b"x", opcode=OP_CONTINUATION), 1002),
        (ws_frame(b"\xed\xa0\x80"), 1007),
    ],
    ids=["masked", "opcode", "continuation", "bad-utf8"],
)
def test_invalid_frames_fail_with_wsprotos_code(data: bytes, code: int) -> None:
    conn, engine = opened()
    exchange(conn, engine, data)
    assert conn.state is S.FAILED
    assert engine.close_code == code  # our Close says why
    with pytest.raises(ChannelError, match="invalid WebSocket data") as info:
        conn.next_event()
    assert info.value.close_code == code


def test_invalid_frames_while_closing_fail_without_a_second_close() -> None:
    conn, engine = opened()
    conn.close()
    engine.receive(conn.data_to_send())
    conn.receive_data(ws_frame(b"x", opcode=3))
    assert conn.state is S.FAILED
    assert conn.data_to_send() == b""


# -- closing from this side ---------------------------------------------------------------


def test_close_drops_unread_items_and_waits_for_the_engine() -> None:
    conn, engine = opened()
    conn.receive_data(engine.send(b"unread"))
    conn.close(1000, "done")
    assert conn.state is S.CLOSING
    assert not conn.finished
    engine.receive(conn.data_to_send())
    assert engine.close_code == 1000
    assert conn.next_event() is NEED_DATA  # the unread item is gone
    # What still arrives is dropped; a ping is not answered once our Close is out.
    data = ws_frame(b"more", opcode=OP_BINARY) + ws_frame(b"frag", opcode=OP_BINARY, fin=False)
    data += ws_frame(b"p", opcode=OP_PING)
    conn.receive_data(data)
    assert conn.data_to_send() == b""
    assert conn.next_event() is NEED_DATA
    conn.close()  # again: a no-op
    assert conn.data_to_send() == b""
    conn.receive_data(ws_frame(ws_close_payload(1000), opcode=OP_CLOSE))
    # mypy keeps conn.state narrowed to CLOSING across receive_data()
    assert conn.state is S.CLOSED  # type: ignore[comparison-overlap]
    assert conn.next_event() == ChannelClosed()
    assert conn.next_event() == ChannelClosed()
    conn.close()
    assert conn.state is S.CLOSED


def test_the_engine_hanging_up_after_our_close_confirms_it() -> None:
    conn, _ = opened()
    conn.close()
    conn.receive_data(b"")
    assert conn.state is S.CLOSED
    assert conn.error is None


def test_an_echo_of_our_own_code_confirms_the_close() -> None:
    conn, _ = opened("write")
    conn.close(1011, "writer failed")
    conn.receive_data(ws_frame(ws_close_payload(1011, b"writer failed"), opcode=OP_CLOSE))
    assert conn.state is S.CLOSED


def test_another_abnormal_answer_to_our_close_fails() -> None:
    conn, _ = opened("write")
    conn.close()
    conn.receive_data(ws_frame(ws_close_payload(1001, b"going away"), opcode=OP_CLOSE))
    assert conn.state is S.FAILED
    with pytest.raises(ChannelError, match="abnormally") as info:
        conn.next_event()
    assert info.value.close_code == 1001


def test_the_close_confirmation_keeps_the_opened_event() -> None:
    conn, engine = started("write")
    conn.receive_data(engine.accept())
    conn.close()
    assert conn.next_event() == ChannelOpened()
    assert conn.next_event() is NEED_DATA


# -- sending --------------------------------------------------------------------------------


def test_a_writer_sends_text_and_binary_items() -> None:
    conn, engine = opened("write")
    conn.send("meta")
    conn.send(b"bytes")
    conn.send(bytearray(b"array"))
    conn.send(memoryview(b"view"))
    engine.receive(conn.data_to_send())
    assert engine.received == ["meta", b"bytes", b"array", b"view"]
    with pytest.raises(TypeError, match="not int"):
        conn.send(5)  # type: ignore[arg-type]


def test_a_reader_sends_nothing() -> None:
    conn, _ = opened("read")
    with pytest.raises(LocalProtocolError, match="sends no items"):
        conn.send(b"x")


def test_sending_outside_open_is_refused() -> None:
    conn, engine = started("write")
    with pytest.raises(LocalProtocolError, match="cannot send while connecting"):
        conn.send(b"x")
    conn.receive_data(engine.accept())
    conn.close()
    with pytest.raises(LocalProtocolError, match="cannot send while closing"):
        conn.send(b"x")


def test_sending_after_the_engine_closed_the_socket_is_a_channel_error() -> None:
    conn, engine = opened("write")
    conn.receive_data(engine.close(1000))
    with pytest.raises(ChannelError, match=r"closed the channel socket \(1000\)") as info:
        conn.send(b"x")
    assert info.value.close_code == 1000


def test_sending_after_a_failure_raises_the_failure() -> None:
    conn, _ = opened("write")
    error = conn.transport_failed("connection to the engine lost: broken pipe")
    with pytest.raises(ChannelError) as info:
        conn.send(b"x")
    assert info.value is error


# -- the error ----------------------------------------------------------------------------


def test_channel_error_is_an_iii_error_and_pickles() -> None:
    error = ChannelError("boom", channel_id="c", status_code=404, close_code=None)
    assert isinstance(error, IIIError)
    copy = pickle.loads(pickle.dumps(error))
    assert (str(copy), copy.channel_id, copy.status_code, copy.close_code) == (
        "boom",
        "c",
        404,
        None,
    )


# -- whatever the engine sends ------------------------------------------------------------


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    stream=iii_st.ws_streams(masked=False, max_message_size=64),
    data=st.data(),
    direction=st.sampled_from(["read", "write"]),
    close_first=st.booleans(),
    eof=st.booleans(),
)
def test_any_engine_bytes_end_in_a_known_way(
    stream: bytes, data: st.DataObject, direction: str, close_first: bool, eof: bool
) -> None:
    conn, _ = opened(direction, max_message_size=64)
    if close_first:
        conn.close()
    out = bytearray(conn.data_to_send())
    items: list[Item] = []
    for chunk in data.draw(iii_st.chunked(stream)):
        conn.receive_data(chunk)  # never raises
        out += conn.data_to_send()
        while isinstance(event := _next(conn), ChannelMessage):
            items.append(event.data)
    if eof:
        conn.receive_data(b"")
    assert all(len(i.encode() if isinstance(i, str) else i) <= 64 for i in items)
    if close_first:
        assert not items
    # What we wrote is valid client framing: pongs, then at most one Close, then nothing.
    frames = FrameProtocol(client=False, extensions=[])
    frames.receive_bytes(bytes(out))
    closes = 0
    for frame in frames.received_frames():  # raises ParseFailed on bad framing
        assert closes == 0, f"bytes after our Close: {frame!r}"
        if frame.opcode is Opcode.CLOSE:
            closes += 1
        else:
            assert frame.opcode is Opcode.PONG, frame
    if conn.finished:
        assert (conn.error is not None) is (conn.state is S.FAILED)
    else:
        assert conn.next_event() is NEED_DATA


def _next(conn: ChannelConnection) -> object:
    try:
        return conn.next_event()
    except ChannelError:
        return None


def test_binary_opcode_helpers_are_what_the_engine_sends() -> None:
    conn, engine = opened()
    exchange(conn, engine, ws_frame(b"raw", opcode=OP_BINARY) + ws_frame(b"", opcode=OP_PONG))
    assert drain(conn) == ([b"raw"], NEED_DATA)
    assert engine.ws.state is WSState.OPEN
