"""``Framing`` on its own: whole messages out of WebSocket frames, socket events."""

from __future__ import annotations

import itertools
from typing import AnyStr

import pytest
from wsproto import ConnectionType, WSConnection
from wsproto import events as ws

from iii_protocol import Config
from iii_protocol._framing import Accepted, BinaryMessage, Framing, Lost

LIMIT = 64


def _open(limit: int = LIMIT) -> tuple[Framing, WSConnection]:
    """A framing whose upgrade a wsproto server accepted."""
    framing = Framing(Config(max_message_size=limit))
    framing.start()
    framing.request("engine.test", "/", ())
    server = WSConnection(ConnectionType.SERVER)
    server.receive_data(bytes(framing.out))
    framing.out.clear()
    assert any(isinstance(e, ws.Request) for e in server.events())
    assert list(framing.receive(server.send(ws.AcceptConnection()))) == [Accepted()]
    assert framing.is_open
    return framing, server


def _message(server: WSConnection, data: AnyStr, *parts: int) -> bytes:
    """``data`` as one message, split at ``parts`` into continuation frames."""
    cuts = [0, *parts, len(data)]
    return b"".join(
        server.send(ws.Message(data=data[a:b], message_finished=b == len(data)))
        for a, b in itertools.pairwise(cuts)
    )


def test_whole_messages_come_out_as_text() -> None:
    framing, server = _open()
    stream = _message(server, "one") + _message(server, "tw\u00f6", 1, 2) + _message(server, "")
    assert list(framing.receive(stream)) == ["one", "tw\u00f6", ""]
    assert framing.buffered == 0


def test_a_ping_is_answered_and_yields_nothing() -> None:
    framing, server = _open()
    assert list(framing.receive(server.send(ws.Ping(payload=b"hi")))) == []
    server.receive_data(bytes(framing.out))
    assert [type(e) for e in server.events()] == [ws.Pong]


def test_a_binary_message_is_reported_whole() -> None:
    framing, server = _open()
    stream = _message(server, b"bin", 1) + _message(server, "after")
    assert list(framing.receive(stream)) == [BinaryMessage(), "after"]


@pytest.mark.parametrize(
    "parts", [(), (LIMIT // 2,), (LIMIT,)], ids=["one-frame", "fragments", "last-fragment"]
)
def test_a_message_over_the_limit_is_lost_with_1009(parts: tuple[int, ...]) -> None:
    framing, server = _open()
    (item,) = framing.receive(_message(server, "x" * (LIMIT + 1), *parts))
    assert item == Lost(f"engine message over the {LIMIT}-byte limit", 1009)


def test_nothing_follows_a_lost_socket_even_when_asked() -> None:
    framing, server = _open()
    stream = _message(server, "before") + server.send(ws.CloseConnection(code=1001))
    after = b"\x81\x05after"  # a text frame the server (closed now) would not send
    items = list(framing.receive(stream + after))
    assert items == ["before", Lost("engine closed the connection (1001)")]
    server.receive_data(bytes(framing.out))
    assert [type(e) for e in server.events()] == [ws.CloseConnection]  # answered


def test_stop_queues_a_close_only_on_an_open_socket_and_forgets_the_message() -> None:
    framing, server = _open()
    assert list(framing.receive(_message(server, "partial", 3)[:5])) == []
    framing.stop(1000)
    assert framing.buffered == 0 and not framing.is_open
    server.receive_data(bytes(framing.out))
    assert [type(e) for e in server.events()] == [ws.CloseConnection]
    framing.out.clear()
    framing.start()
    framing.stop(1000)  # not upgraded: nothing to send
    assert framing.out == b""
    framing.out += b"queued"
    framing.stop(None)  # the socket closed itself: what was queued goes nowhere
    assert framing.out == b""
