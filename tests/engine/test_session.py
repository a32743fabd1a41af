"""Transport and session basics: routes, handshake, greeting, pings (docs/protocol.md#transport)."""

from __future__ import annotations

import re

import anyio
import pytest
from wsproto.extensions import PerMessageDeflate

from .conftest import own_engine
from .wsclient import UUID4, Peer, RawClient, Rejected, settle

pytestmark = pytest.mark.anyio


async def test_workerregistered_is_the_first_frame(engine):
    client = await RawClient.connect(engine.url)
    first = await client.recv()
    assert set(first) == {"type", "worker_id", "reattach_token"}
    assert first["type"] == "workerregistered"
    assert re.match(UUID4, first["worker_id"])
    assert re.match(UUID4, first["reattach_token"])
    assert first["worker_id"] != first["reattach_token"]
    other = await RawClient.connect(engine.url)
    second = await other.recv()
    assert second["worker_id"] != first["worker_id"]
    assert second["reattach_token"] != first["reattach_token"]
    assert {w["worker_id"] for w in engine.workers()} == {first["worker_id"], second["worker_id"]}


async def test_query_string_is_allowed_on_the_control_socket(engine):
    client = await RawClient.connect(engine.url, "/?token=abc&x=1")
    assert (await client.recv())["type"] == "workerregistered"


async def test_other_paths_are_not_routed(engine):
    for path in ("/nope", "/ws", "/ws/channels", "/otel/x"):
        with pytest.raises(Rejected) as info:
            await RawClient.connect(engine.url, path)
        assert info.value.status == 404
    assert (await Peer.join(engine.url)).worker_id


async def test_plain_http_request_gets_400_and_engine_keeps_serving(engine):
    stream = await anyio.connect_tcp("127.0.0.1", engine.port)
    await stream.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    reply = b""
    with anyio.fail_after(5):
        while b"\r\n\r\n" not in reply:
            reply += await stream.receive()
    await stream.aclose()
    assert reply.startswith(b"HTTP/1.1 400 ")
    assert (await Peer.join(engine.url)).worker_id


async def test_garbage_before_the_upgrade_is_rejected(engine):
    stream = await anyio.connect_tcp("127.0.0.1", engine.port)
    await stream.send(b"\x00\x01\x02 not http at all\r\n\r\n")
    with anyio.fail_after(5):
        data = b""
        try:
            while True:
                data += await stream.receive()
        except anyio.EndOfStream:
            pass
    await stream.aclose()
    assert data == b"" or data.startswith(b"HTTP/1.1 400")
    assert (await Peer.join(engine.url)).worker_id


async def test_handshake_timeout_closes_idle_sockets():
    async with own_engine(handshake_timeout=0.2) as eng:
        stream = await anyio.connect_tcp("127.0.0.1", eng.port)
        with anyio.fail_after(5):
            with pytest.raises((anyio.EndOfStream, anyio.BrokenResourceError)):
                await stream.receive()
        await stream.aclose()


async def test_websocket_ping_is_answered_with_same_payload(engine):
    client = await RawClient.connect(engine.url)
    await client.recv()
    await client.ping(b"\x01\x02abc")
    assert await client.next_event() == ("pong", b"\x01\x02abc")


async def test_protocol_ping_frame_gets_pong(engine):
    client = await RawClient.connect(engine.url)
    await client.recv()
    await client.send({"type": "ping"})
    assert await client.recv() == {"type": "pong"}
    await client.send({"type": "pong"})  # a pong is a no-op
    await client.expect_silence(0.1)


async def test_engine_never_pings_on_its_own(engine):
    client = await RawClient.connect(engine.url)
    await client.recv()
    with anyio.move_on_after(0.3):
        event = await client.next_event(1)
        raise AssertionError(f"unexpected {event}")


async def test_permessage_deflate_offer_is_declined(engine):
    client = await RawClient.connect(engine.url, extensions=[PerMessageDeflate()])
    assert client.accepted.extensions == []
    assert (await client.recv())["type"] == "workerregistered"


async def test_binary_json_frames_are_protocol_messages(engine):
    peer = await Peer.join(engine.url)
    await peer.send_bytes(b'{"type":"ping"}')
    assert await peer.recv() == {"type": "pong"}
    await peer.send_bytes(b'OTLP{"resourceSpans":[]}')
    await peer.send_bytes(b"LOGS{}")
    await peer.send_bytes(b"MTRC{}")
    await settle(peer)
    assert engine.stats()["telemetry_frames"] == 3


async def test_otel_socket_accepts_telemetry_and_is_not_a_worker(engine):
    otel = await RawClient.connect(engine.url, "/otel")
    await otel.send_bytes(b'OTLP{"resourceSpans":[]}')
    await otel.send("text frames are ignored here")
    await otel.ping(b"p")
    assert await otel.next_event() == ("pong", b"p")
    assert engine.stats()["telemetry_frames"] == 1
    assert engine.workers() == []
    await otel.close()
    assert otel.close_code == 1000


async def test_client_close_is_echoed_and_cleans_up(engine):
    peer = await Peer.join(engine.url, "closer")
    await peer.register("x::y")
    await engine.wait_for_function("x::y")
    await peer.close(1000)
    assert peer.close_code == 1000
    await engine.wait_for(lambda: not engine.workers())
    assert engine.functions() == []


async def test_abrupt_disconnect_cleans_up(engine):
    peer = await Peer.join(engine.url, "gone")
    await peer.register("x::y")
    await engine.wait_for_function("x::y")
    await peer.abort()
    await engine.wait_for(lambda: not engine.workers())
    assert engine.functions() == []


@pytest.mark.parametrize("anyio_backend", ["trio"])
async def test_engine_runs_under_trio(anyio_backend):
    async with own_engine(namespace_grace=0.2) as eng:
        a = await Peer.join(eng.url, "a")
        await a.register("t::echo")
        b = await Peer.join(eng.url, "b")
        await eng.wait_for_function("t::echo")
        inv = await b.invoke("t::echo", [1, 2])
        await a.serve()
        result = await b.recv_type("invocationresult")
        assert result["invocation_id"] == inv
        assert result["result"] == [1, 2]


async def test_frames_pipelined_with_the_upgrade_request_are_read(engine):
    from wsproto import ConnectionType, WSConnection
    from wsproto.events import AcceptConnection, Message, Request, TextMessage

    client = WSConnection(ConnectionType.CLIENT)
    upgrade = client.send(Request(host="127.0.0.1", target="/"))
    # A second client object in OPEN state builds a correctly masked frame.
    helper = WSConnection(ConnectionType.CLIENT)
    server = WSConnection(ConnectionType.SERVER)
    server.receive_data(helper.send(Request(host="x", target="/")))
    next(server.events())
    helper.receive_data(server.send(AcceptConnection()))
    list(helper.events())
    ping = helper.send(Message(data='{"type":"ping"}'))
    stream = await anyio.connect_tcp("127.0.0.1", engine.port)
    await stream.send(upgrade + ping)
    texts: list[str] = []
    with anyio.fail_after(5):
        while len(texts) < 2:
            client.receive_data(await stream.receive())
            texts += [e.data for e in client.events() if isinstance(e, TextMessage)]
    await stream.aclose()
    assert '"workerregistered"' in texts[0]
    assert texts[1] == '{"type":"pong"}'
