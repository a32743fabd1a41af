"""The channel client against a scripted server: handshake, framing and every way a socket ends.

Each scenario runs three ways: blocking (plain thread), asyncio and trio.
"""

from __future__ import annotations

import socket
import ssl
import threading
from typing import Any

import anyio
import anyio.to_thread
import pytest
import trustme

from iii import ChannelError, ChannelReader, ChannelWriter, IIIUsageError
from iii_protocol.strategies import OP_PING, ws_frame

from .fake_server import FakeChannelServer, Peer
from .helpers import MODES, drain, produce

REF: dict[str, Any] = {"channel_id": "c-1", "access_key": "k/+ =", "direction": "read"}


def _reader(server: FakeChannelServer, **kw: Any) -> ChannelReader:
    return ChannelReader(server.url, REF, **kw)


def _writer(server: FakeChannelServer, **kw: Any) -> ChannelWriter:
    return ChannelWriter(server.url, {**REF, "direction": "write"}, **kw)


# -- handshake -----------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_handshake_target_keeps_the_query_and_sends_headers(
    mode: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("III_TOKEN", "secret-token")

    def script(peer: Peer) -> None:
        peer.handshake()
        peer.accept()
        peer.close(1000)

    with FakeChannelServer(script) as server:
        reader = ChannelReader(
            f"{server.url}/?token=abc",
            {"channel_id": "c-1", "access_key": "k/+ =", "direction": "write"},
            headers={"x-team": "orders"},
        )
        assert reader.ref.direction == "read"
        assert drain(mode, reader) == ([], None)
    request = server.peers[0].request
    assert request is not None
    assert request.target == "/ws/channels/c-1?token=abc&key=k%2F%2B%20%3D&dir=read"
    headers = server.peers[0].headers
    assert headers["x-team"] == "orders"
    assert headers["authorization"] == "Bearer secret-token"
    assert "sec-websocket-protocol" not in headers


def test_an_explicit_authorization_header_wins_over_iii_token(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("III_TOKEN", "env-token")

    def script(peer: Peer) -> None:
        peer.handshake()
        peer.accept()
        assert peer.receive_until_close() == []

    with FakeChannelServer(script) as server:
        writer = _writer(server, headers={"authorization": "Basic xyz"})
        writer.close()  # an unused writer still connects to end the stream
    assert server.peers[0].headers["authorization"] == "Basic xyz"
    assert server.peers[0].request.target.endswith("&dir=write")  # type: ignore[union-attr]
    assert server.peers[0].close_code == 1000


def test_a_path_prefix_of_the_engine_url_is_kept() -> None:
    def script(peer: Peer) -> None:
        peer.handshake()
        peer.accept()
        peer.close(1000)

    with FakeChannelServer(script) as server:
        reader = ChannelReader(f"{server.url}/iii/", REF)
        assert reader.read_all_sync() == b""
    assert server.peers[0].request.target.startswith("/iii/ws/channels/c-1?key=")  # type: ignore[union-attr]


@pytest.mark.parametrize("mode", MODES)
def test_http_404_is_a_channel_error_and_stays_one(mode: str) -> None:
    def script(peer: Peer) -> None:
        peer.handshake()
        peer.reject(404)

    with FakeChannelServer(script) as server:
        reader = _reader(server)
        got, error = drain(mode, reader)
        assert got == []
        assert isinstance(error, ChannelError)
        assert error.status_code == 404
        assert "wrong access key" in str(error)
        assert len(server.peers) == 1


@pytest.mark.parametrize("mode", MODES)
def test_nobody_listening_is_a_channel_error(mode: str) -> None:
    probe = socket.create_server(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    reader = ChannelReader(f"ws://127.0.0.1:{port}", REF, connect_timeout=2)
    _, error = drain(mode, reader)
    assert isinstance(error, ChannelError)
    assert "could not connect" in str(error)


@pytest.mark.parametrize("mode", MODES)
def test_wss_uses_the_given_tls_context_and_verifies_by_default(mode: str) -> None:
    ca = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_context)
    client_context = ssl.create_default_context()
    ca.configure_trust(client_context)

    def script(peer: Peer) -> None:
        peer.handshake()
        peer.accept()
        peer.send(b"secret")
        peer.close(1000)

    with FakeChannelServer(script, ssl_context=server_context) as server:
        assert server.url.startswith("wss://")
        assert drain(mode, _reader(server, ssl_context=client_context)) == ([b"secret"], None)
        # Without the context the self-signed certificate is refused.
        got, error = drain(mode, _reader(server, connect_timeout=5))
        assert got == []
        assert isinstance(error, ChannelError)
        assert "CERTIFICATE_VERIFY_FAILED" in str(error)


# -- the reader ----------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_items_arrive_in_order_then_the_close_ends_the_stream(mode: str) -> None:
    def script(peer: Peer) -> None:
        peer.handshake()
        peer.accept()
        peer.send('{"kind": "meta"}')
        peer.ping()
        peer.send_fragments([b"hello ", b"wor", b"ld"])
        peer.send_fragments(["text ", "in parts"])
        peer.send(b"")
        peer.close(1000)

    with FakeChannelServer(script) as server:
        got, error = drain(mode, _reader(server))
    assert error is None
    assert got == ['{"kind": "meta"}', b"hello world", "text in parts", b""]


@pytest.mark.parametrize("mode", MODES)
def test_read_all_joins_binary_items_and_passes_text_to_callbacks(mode: str) -> None:
    def script(peer: Peer) -> None:
        peer.handshake()
        peer.accept()
        items: list[str | bytes] = ["a", b"1", "b", b"22", b"333"]
        for item in items:
            peer.send(item)
        peer.close(1000)

    texts: list[str] = []
    with FakeChannelServer(script) as server:
        reader = _reader(server)
        reader.on_message(texts.append)
        if mode == "sync":
            assert reader.read_all_sync() == b"122333"
            assert reader.ended
            assert reader.read_all_sync() == b""  # ended streams stay ended
        else:
            seen: list[str] = []

            async def remember(text: str) -> None:
                await anyio.sleep(0)
                seen.append(text)

            async def main() -> None:
                reader.on_message(remember)
                assert await reader.read_all() == b"122333"
                assert [chunk async for chunk in reader] == []

            anyio.run(main, backend=mode)
            assert seen == ["a", "b"]
    assert texts == ["a", "b"]


@pytest.mark.parametrize("mode", MODES)
def test_a_connection_lost_mid_stream_is_an_error_not_a_short_read(mode: str) -> None:
    def script(peer: Peer) -> None:
        peer.handshake()
        peer.accept()
        peer.send(b"part one")
        peer.drop()

    with FakeChannelServer(script) as server:
        got, error = drain(mode, _reader(server))
    assert got == [b"part one"]
    assert isinstance(error, ChannelError)
    assert "mid-stream" in str(error)


@pytest.mark.parametrize("mode", MODES)
def test_an_abnormal_close_code_is_an_error(mode: str) -> None:
    def script(peer: Peer) -> None:
        peer.handshake()
        peer.accept()
        peer.send(b"x")
        peer.close(1011, "engine failed")

    with FakeChannelServer(script) as server:
        got, error = drain(mode, _reader(server))
    assert got == [b"x"]
    assert isinstance(error, ChannelError)
    assert error.close_code == 1011
    assert "engine failed" in str(error)


@pytest.mark.parametrize("mode", MODES)
def test_an_oversized_item_is_refused_with_1009(mode: str) -> None:
    def script(peer: Peer) -> None:
        peer.handshake()
        peer.accept()
        peer.send(b"x" * 100)
        peer.receive_until_close()

    with FakeChannelServer(script) as server:
        got, error = drain(mode, _reader(server, max_message_size=10))
    assert got == []
    assert isinstance(error, ChannelError)
    assert error.close_code == 1009
    assert server.peers[0].close_code == 1009


@pytest.mark.parametrize("mode", MODES)
def test_closing_a_reader_early_sends_close_1000(mode: str) -> None:
    def script(peer: Peer) -> None:
        peer.handshake()
        peer.accept()
        peer.send(b"first")
        peer.send(b"second")
        peer.receive_until_close()

    with FakeChannelServer(script) as server:
        reader = _reader(server)
        if mode == "sync":
            assert next(iter(reader)) == b"first"
            reader.close()
            reader.close()  # idempotent
            with pytest.raises(ChannelError, match="closed"):
                reader.read_all_sync()
        else:

            async def main() -> None:
                async with reader:
                    async for chunk in reader:
                        assert chunk == b"first"
                        break
                with pytest.raises(ChannelError, match="closed"):
                    await reader.read_all()

            anyio.run(main, backend=mode)
    assert server.peers[0].close_code == 1000


# -- the writer ----------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_writer_frames_text_and_64k_binary_items_and_ends_with_close_1000(mode: str) -> None:
    peers: list[Peer] = []

    def script(peer: Peer) -> None:
        peers.append(peer)
        peer.handshake()
        peer.accept()
        peer.receive_until_close()

    payload = bytes(range(256)) * 800  # 204 800 bytes
    with FakeChannelServer(script) as server:
        produce(mode, _writer(server), ["meta", payload, b"tail", memoryview(b"mv")])  # type: ignore[list-item]
    received = peers[0].received
    assert received[0] == "meta"
    assert [len(x) for x in received[1:5]] == [65536, 65536, 65536, 204800 - 3 * 65536]
    assert b"".join(x for x in received[1:5] if isinstance(x, bytes)) == payload
    assert received[5:] == [b"tail", b"mv"]
    assert peers[0].close_code == 1000


@pytest.mark.parametrize("mode", MODES)
def test_a_writer_whose_close_is_never_answered_reports_it(mode: str) -> None:
    def script(peer: Peer) -> None:
        peer.handshake()
        peer.accept()
        peer.receive_until_close(reply=False)
        peer.wait_eof()

    with FakeChannelServer(script) as server:
        writer = _writer(server, close_timeout=0.3)
        with pytest.raises(ChannelError, match="did not confirm the end of the stream within"):
            produce(mode, writer, [b"data"])
        assert writer.closed


@pytest.mark.parametrize("mode", MODES)
def test_a_writer_whose_engine_went_away_fails_loudly(mode: str) -> None:
    def script(peer: Peer) -> None:
        peer.handshake()
        peer.accept()
        peer.abort()

    with FakeChannelServer(script) as server:
        writer = _writer(server)
        with pytest.raises(ChannelError):
            # The first sends may still reach the kernel; the reset shows on a
            # later send or, at the latest, while close waits for the reply.
            # (A half-close alone cannot: an engine that hangs up after the
            # writer's Close is how a clean close ends.)
            produce(mode, writer, [b"x" * 65536] * 50)


@pytest.mark.parametrize("mode", MODES)
def test_writer_sees_the_engine_closing_its_socket(mode: str) -> None:
    def script(peer: Peer) -> None:
        peer.handshake()
        peer.accept()
        peer.close(1001, "going away")

    with FakeChannelServer(script) as server:
        writer = _writer(server)
        with pytest.raises(ChannelError) as info:
            produce(mode, writer, [b"x"] * 200)
        assert info.value.close_code == 1001 or "lost" in str(info.value)


def test_leaving_a_writer_block_on_an_exception_closes_with_1011() -> None:
    def script(peer: Peer) -> None:
        peer.handshake()
        peer.accept()
        peer.receive_until_close()

    with (
        FakeChannelServer(script) as server,
        pytest.raises(RuntimeError, match="producer failed"),
        _writer(server) as writer,
    ):
        writer.write_sync(b"partial")
        raise RuntimeError("producer failed")
    assert server.peers[0].received == [b"partial"]
    assert server.peers[0].close_code == 1011


# -- mode rules ----------------------------------------------------------------


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_blocking_calls_on_an_event_loop_are_refused(backend: str) -> None:
    reader = ChannelReader("ws://127.0.0.1:9", REF)
    writer = ChannelWriter("ws://127.0.0.1:9", REF)

    async def main() -> None:
        with pytest.raises(IIIUsageError, match="await"):
            reader.read_all_sync()
        with pytest.raises(IIIUsageError):
            writer.write_sync(b"x")

    anyio.run(main, backend=backend)


def test_send_message_and_close_on_asyncio_run_in_the_background_in_order() -> None:
    # The official SDK's writer.send_message() / writer.close() on a running loop
    # are fire-and-forget; frameworks call them from async handlers (after
    # writer.stream.write(...)).  They keep their order with the stream's writes
    # and come before any later awaited operation.
    def script(peer: Peer) -> None:
        peer.handshake()
        peer.accept()
        peer.receive_until_close()

    with FakeChannelServer(script) as server:
        writer = _writer(server)

        async def main() -> None:
            await writer.write(b"a")
            writer.stream.write(b"b")
            writer.send_message("c")
            writer.stream.write(b"d")
            await writer.send_message_async("e")  # waits for b, c, d
            writer.send_message("f")
            writer.close()
            assert not writer._background.done()  # close() returned at once
            await writer.stream.drain()
            await writer.close_async()  # idempotent, after the background close

        anyio.run(main, backend="asyncio")
    assert server.peers[0].received == [b"a", b"b", "c", b"d", "e", "f"]
    assert server.peers[0].close_code == 1000
    assert writer.closed


def test_a_failed_background_operation_is_raised_by_the_next_awaited_one() -> None:
    def script(peer: Peer) -> None:
        peer.reject(404)

    with FakeChannelServer(script) as server:
        writer = _writer(server)

        async def main() -> None:
            writer.send_message("lost")
            with pytest.raises(ChannelError):
                await writer.write(b"x")
            with pytest.raises(ChannelError):
                await writer.stream.drain()

        anyio.run(main, backend="asyncio")


def test_send_message_and_close_under_trio_ask_for_the_async_forms() -> None:
    writer = ChannelWriter("ws://127.0.0.1:9", {**REF, "direction": "write"})

    async def main() -> None:
        with pytest.raises(IIIUsageError, match="send_message_async"):
            writer.send_message("x")
        with pytest.raises(IIIUsageError, match="close_async"):
            writer.close()

    anyio.run(main, backend="trio")
    assert not writer.closed


def test_an_end_keeps_the_mode_it_started_with() -> None:
    def script(peer: Peer) -> None:
        peer.handshake()
        peer.accept()
        peer.receive_until_close()

    with FakeChannelServer(script) as server:
        writer = _writer(server)
        writer.write_sync(b"x")

        async def main() -> None:
            with pytest.raises(IIIUsageError, match="sync API"):
                await writer.write(b"y")

        anyio.run(main, backend="asyncio")
        writer.close()
    assert server.peers[0].received == [b"x"]


# -- timeouts, cancellation and the closing handshake ------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_an_upgrade_never_answered_times_out(mode: str) -> None:
    def script(peer: Peer) -> None:
        peer.handshake()
        peer.wait_eof()  # no answer; the client gives up and hangs up

    with FakeChannelServer(script) as server:
        got, error = drain(mode, _reader(server, connect_timeout=0.3))
    assert got == []
    assert isinstance(error, ChannelError)
    assert "no WebSocket upgrade within 0.3s" in str(error)


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_a_cancelled_connect_is_tried_again_on_the_next_call(backend: str) -> None:
    upgrading = threading.Event()

    def script(peer: Peer) -> None:
        peer.handshake()
        if len(server.peers) == 1:
            upgrading.set()
            peer.wait_eof()  # the first upgrade is abandoned by the client
            return
        peer.accept()
        peer.send(b"second try")
        peer.close(1000)

    with FakeChannelServer(script) as server:
        reader = _reader(server)

        async def main() -> None:
            async with anyio.create_task_group() as tg:

                async def cancel_once_upgrading() -> None:
                    await anyio.to_thread.run_sync(upgrading.wait)
                    tg.cancel_scope.cancel()

                tg.start_soon(cancel_once_upgrading)
                await reader.receive()
                raise AssertionError("the first upgrade was never answered")
            assert repr(reader).endswith("not connected>")
            assert await reader.read_all() == b"second try"

        anyio.run(main, backend=backend)
    assert len(server.peers) == 2


@pytest.mark.parametrize("mode", MODES)
def test_a_ping_during_the_closing_handshake_does_not_fail_the_writer(mode: str) -> None:
    def script(peer: Peer) -> None:
        peer.handshake()
        peer.accept()
        peer.receive_until_close(reply=False)
        peer.sock.sendall(ws_frame(b"still there?", opcode=OP_PING))
        peer.close(1000)  # the reply to the writer's Close

    with FakeChannelServer(script) as server:
        produce(mode, _writer(server), [b"data"])  # close() raises if not confirmed
    assert server.peers[0].received == [b"data"]
    assert server.peers[0].close_code == 1000
