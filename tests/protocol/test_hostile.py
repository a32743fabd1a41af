"""Hostile input against the codec and the ``Connection``: the regressions the
fuzzers found (each input is kept in ``fuzz/corpus/*/regress-*``), and property
tests driven by the public ``iii_protocol.strategies``."""

from __future__ import annotations

import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from wsproto import ConnectionType, WSConnection
from wsproto import events as wse

from iii_protocol import (
    Config,
    Connection,
    ConnectionState,
    InvocationResult,
    InvokeFunction,
    RegisterFunction,
    RemoteProtocolError,
    decode_frame,
)
from iii_protocol import events as ev
from iii_protocol import strategies as iii_st
from iii_protocol._json import MAX_READ_DEPTH, MAX_WRITE_DEPTH

from .helpers import FakeEngine, Pair, counter_ids

relaxed = settings(deadline=None, max_examples=60, suppress_health_check=[HealthCheck.too_slow])
LIMIT = 4096


def _connected(**config: object) -> tuple[Pair, FakeEngine]:
    pair = Pair(Connection(Config(**config), random=lambda: 0.5, new_id=counter_ids()))  # type: ignore[arg-type]
    pair.connect()
    engine = pair.open()
    assert pair.conn.state is ConnectionState.CONNECTED
    pair.new_events()
    return pair, engine


# -- regressions --------------------------------------------------------------------


def _deep_frame(levels: int, leaf: str) -> str:
    """An ``invokefunction`` nested ``levels`` deep, the frame object included."""
    inner = levels - 1
    return (
        '{"type":"invokefunction","function_id":"f","data":'
        + "[" * inner
        + leaf
        + "]" * inner
        + "}"
    )


WIDE = "1" + "0" * 25


@pytest.mark.parametrize("leaf", ["1", WIDE, "-" + WIDE], ids=["int", "wide", "negative-wide"])
def test_frames_nest_up_to_the_read_limit_on_every_python(leaf: str) -> None:
    # regress-deep-wide-int: the exact re-read of wide integers (stdlib json)
    # hit RecursionError, and later ran out of stack at a depth that depends on
    # the Python version (3.13 read 1 020 levels, 3.11 refused them).  The
    # limit is now MAX_READ_DEPTH on every version, wide integers or not.
    frame = decode_frame(_deep_frame(MAX_READ_DEPTH, leaf))
    assert isinstance(frame, InvokeFunction)
    value = frame.data
    for _ in range(MAX_READ_DEPTH - 1):
        assert isinstance(value, list)
        (value,) = value
    assert value == int(leaf) and type(value) is int
    with pytest.raises(RemoteProtocolError, match="not valid JSON: depth limit exceeded"):
        decode_frame(_deep_frame(MAX_READ_DEPTH + 1, leaf))


def test_the_connection_reads_deep_json_with_a_wide_integer_and_refuses_deeper() -> None:
    pair, engine = _connected()
    pair.conn.register_function(RegisterFunction(id="f"))
    engine.send_text(
        _deep_frame(MAX_READ_DEPTH, WIDE).replace('"f",', '"f","invocation_id":"i",', 1)
    )
    engine.send_text(_deep_frame(MAX_READ_DEPTH + 1, WIDE))
    pair.pump()
    requested, rejected = pair.new_events()
    assert isinstance(requested, ev.InvocationRequested)
    assert isinstance(rejected, ev.FrameRejected)
    assert pair.conn.state is ConnectionState.CONNECTED
    # Deeper than can be written: the caller still gets an answer.
    assert pair.conn.send_result("i", "f", requested.data) is True
    pair.pump()
    answer = engine.json()[-1]
    assert answer["invocation_id"] == "i"
    assert answer["error"]["code"] == "serialization_error"  # type: ignore[index]
    assert f"nested more than {MAX_WRITE_DEPTH} levels deep" in answer["error"]["message"]  # type: ignore[index]


@pytest.mark.parametrize(
    "header",
    [
        b"Connection: Upgr\x93ade",
        b"Sec-WebSocket-Protocol: \xe9",
        b"Sec-WebSocket-Extensions: \xff",
    ],
)
def test_a_non_ascii_handshake_header_fails_the_handshake(header: bytes) -> None:
    # regress-nonascii-handshake-header: wsproto let UnicodeDecodeError escape
    # receive_data while parsing the 101 response.
    pair = Pair(Connection(Config(), random=lambda: 0.5))
    pair.connect()
    answer = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n" + header + b"\r\n\r\n"
    if not header.startswith(b"Connection"):
        answer = answer.replace(
            b"Upgrade: websocket\r\n", b"Upgrade: websocket\r\nConnection: Upgrade\r\n"
        )
    pair.open(handshake_bytes=answer)
    events = pair.new_events()
    close = [e for e in events if isinstance(e, ev.CloseTransport)]
    assert close and close[0].reason.startswith("WebSocket handshake failed: ")
    assert pair.conn.state is ConnectionState.RECONNECTING


def test_an_invocation_id_reused_while_its_orphan_runs_is_rejected() -> None:
    # Found by fuzz_connection: an invocation lost with its socket (an orphan,
    # still running in the app) and a new invocation under the same id on the
    # next socket shared one entry; the app's second answer raised
    # LocalProtocolError and the first answer went to the wrong invocation.
    pair, _ = _connected()
    conn = pair.conn
    conn.register_function(RegisterFunction(id="f"))
    pair.send(InvokeFunction(function_id="f", data=1, invocation_id="in-1"))
    assert [type(e) for e in pair.new_events()] == [ev.InvocationRequested]
    pair.drop()
    pair.advance(1.0)
    engine = pair.open()
    pair.new_events()
    engine.send(InvokeFunction(function_id="f", data=2, invocation_id="in-1"))
    pair.pump()
    (event,) = pair.new_events()
    assert isinstance(event, ev.FrameRejected)
    assert str(event.error) == "invocation in-1 is already running"
    assert conn.send_result("in-1", "f", "old") is False  # the orphan's answer goes nowhere
    pair.pump()
    assert [f for f in engine.frames if isinstance(f, InvocationResult)] == []


# -- properties with the public strategies ------------------------------------------

_KEY = re.compile(rb"sec-websocket-key: *([^\r]*)\r\n", re.IGNORECASE)


def _events_ok(events: list[ev.Event]) -> None:
    failed = False
    for event in events:
        assert not failed, "an event after ConnectionFailedEvent"
        failed = isinstance(event, ev.ConnectionFailedEvent)


@relaxed
@given(stream=iii_st.ws_streams(masked=False, max_message_size=LIMIT), data=st.data())
def test_a_connected_worker_survives_any_engine_stream(stream: bytes, data: st.DataObject) -> None:
    pair, _ = _connected(max_message_size=LIMIT)
    conn = pair.conn
    conn.register_function(RegisterFunction(id="f"))
    for chunk in data.draw(iii_st.chunked(stream)):
        conn.receive_data(chunk, 0.0)  # never raises
        assert conn._framing.buffered <= LIMIT
    _events_ok(list(conn.events()))
    conn.close()
    assert conn.state in (ConnectionState.DISCONNECTED, ConnectionState.FAILED)


@relaxed
@given(data=st.data())
def test_the_handshake_survives_any_answer(data: st.DataObject) -> None:
    conn = Connection(Config(), random=lambda: 0.5)
    conn.connect(0.0)
    conn.transport_opened(0.0)
    request = conn.data_to_send()
    match = _KEY.search(request)
    assert match is not None
    key = match.group(1).decode()
    answer = data.draw(iii_st.handshake_responses(key))
    tail = data.draw(iii_st.ws_streams(masked=False, max_message_size=LIMIT))
    for chunk in data.draw(iii_st.chunked(answer + tail)):
        conn.receive_data(chunk, 0.0)
    _events_ok(list(conn.events()))


@relaxed
@given(data=st.data())
def test_a_good_answer_is_one_wsproto_accepts(data: st.DataObject) -> None:
    # The non-hostile answers really are good (checked by a second implementation).
    client = WSConnection(ConnectionType.CLIENT)
    request = client.send(wse.Request(host="h", target="/"))
    match = _KEY.search(request)
    assert match is not None
    client.receive_data(
        data.draw(iii_st.handshake_responses(match.group(1).decode(), hostile=False))
    )
    assert any(isinstance(e, wse.AcceptConnection) for e in client.events())
