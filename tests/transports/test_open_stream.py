"""``open_stream``, the stream opener of each backend: TCP, TLS, the timeout, the errors."""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
from collections.abc import Iterator
from typing import Any, Optional

import anyio
import pytest
import trustme

from iii_transports import anyio as anyio_transport
from iii_transports import blocking
from iii_transports import trio as trio_transport

OPENERS = ["anyio-asyncio", "anyio-trio", "trio", "blocking"]


class EchoServer:
    """Echoes every byte back, over TLS when given a context; or, ``silent``,
    accepts connections and never says anything."""

    def __init__(self, ssl_context: Optional[ssl.SSLContext] = None, silent: bool = False) -> None:
        self._ssl_context = ssl_context
        self._silent = silent
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self.tls_failures = 0
        self._conns: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept_loop, daemon=True)
        self._thread.start()

    def _accept_loop(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            self._conns.append(conn)
            if not self._silent:
                threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        sock: socket.socket = conn
        try:
            if self._ssl_context is not None:
                try:
                    sock = self._ssl_context.wrap_socket(conn, server_side=True)
                except ssl.SSLError:
                    self.tls_failures += 1
                    return
            while data := sock.recv(65536):
                sock.sendall(data)
        except OSError:
            pass
        finally:
            sock.close()
            conn.close()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes the accept() in progress
        self._listener.close()
        for conn in self._conns:
            with contextlib.suppress(OSError):
                conn.close()
        self._thread.join(5)


@pytest.fixture
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def tls_server(ca: trustme.CA) -> Iterator[EchoServer]:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    server = EchoServer(context)
    yield server
    server.close()


@pytest.fixture
def plain_server() -> Iterator[EchoServer]:
    server = EchoServer()
    yield server
    server.close()


def client_context(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return context


def echo(opener: str, port: int, **options: Any) -> bytes:
    """Open a stream with ``opener``, send ``ping``, return the echo."""
    if opener == "blocking":
        stream = blocking.open_stream("127.0.0.1", port, **options)
        try:
            stream.settimeout(10.0)
            stream.send(b"ping")
            got = b""
            while len(got) < 4:
                data = stream.receive()
                assert data, "the echo server hung up"
                got += data
            return got
        finally:
            stream.close()

    async def main() -> bytes:
        module = trio_transport if opener == "trio" else anyio_transport
        stream = await module.open_stream("127.0.0.1", port, **options)
        try:
            await stream.send(b"ping")
            got = b""
            while len(got) < 4:
                data = await stream.receive()
                assert data, "the echo server hung up"
                got += data
            return got
        finally:
            await stream.aclose()

    return anyio.run(main, backend="asyncio" if opener == "anyio-asyncio" else "trio")


@pytest.mark.parametrize("opener", OPENERS)
def test_plain_tcp(opener: str, plain_server: EchoServer, ca: trustme.CA) -> None:
    assert echo(opener, plain_server.port) == b"ping"
    # Not secure: a given TLS context is not used.
    assert echo(opener, plain_server.port, ssl_context=client_context(ca)) == b"ping"


@pytest.mark.parametrize("opener", OPENERS)
def test_tls_with_the_given_context(opener: str, tls_server: EchoServer, ca: trustme.CA) -> None:
    got = echo(opener, tls_server.port, secure=True, ssl_context=client_context(ca), timeout=10)
    assert got == b"ping"
    assert tls_server.tls_failures == 0


@pytest.mark.parametrize("opener", OPENERS)
def test_tls_verifies_by_default(opener: str, tls_server: EchoServer) -> None:
    with pytest.raises(ssl.SSLError, match="CERTIFICATE_VERIFY_FAILED"):
        echo(opener, tls_server.port, secure=True, timeout=10)


@pytest.mark.parametrize("opener", OPENERS)
def test_nobody_listening_is_an_os_error(opener: str) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(OSError) as info:
        echo(opener, port, timeout=10)
    assert not isinstance(info.value, TimeoutError)


@pytest.mark.parametrize("opener", OPENERS)
def test_a_tls_handshake_never_answered_times_out(opener: str, ca: trustme.CA) -> None:
    server = EchoServer(silent=True)
    try:
        with pytest.raises(TimeoutError, match=f"timed out connecting to 127.0.0.1:{server.port}"):
            echo(opener, server.port, secure=True, ssl_context=client_context(ca), timeout=0.2)
    finally:
        server.close()


@pytest.mark.parametrize("opener", OPENERS)
def test_a_tls_handshake_cut_short_is_a_connection_error(opener: str, ca: trustme.CA) -> None:
    # The server closes at once: the client's handshake meets EOF.
    listener = socket.create_server(("127.0.0.1", 0))

    def hang_up() -> None:
        with contextlib.suppress(OSError):
            conn, _ = listener.accept()
            conn.close()

    thread = threading.Thread(target=hang_up, daemon=True)
    thread.start()
    try:
        with pytest.raises(OSError) as info:
            echo(opener, listener.getsockname()[1], secure=True, ssl_context=client_context(ca))
        assert not isinstance(info.value, TimeoutError)
    finally:
        listener.close()
        thread.join(5)
