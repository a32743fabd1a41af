"""A scripted stand-in for the engine (plain threads + wsproto), for the faults
the reference engine cannot produce: EOF or HTTP 500 during the upgrade, an
upgrade that is never answered, a socket that goes silent after the handshake,
a peer that stops reading, TLS with a test certificate.  It also records each
upgrade request, headers included.

``FakeEngine(scripts)`` runs ``scripts[min(n, len(scripts) - 1)](peer)`` for the
n-th accepted connection (0-based), each on its own daemon thread.
"""

from __future__ import annotations

import contextlib
import json
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Optional

from wsproto import ConnectionType, WSConnection
from wsproto import events as wse
from wsproto.connection import ConnectionState as WSState


class Gone(Exception):
    """The client hung up (or the server is shutting down)."""


class Peer:
    """The server side of one accepted connection."""

    def __init__(self, server: FakeEngine, sock: socket.socket, index: int) -> None:
        self.server = server
        self.sock = sock
        self.index = index
        self.ws = WSConnection(ConnectionType.SERVER)
        self.request: Optional[wse.Request] = None
        self.messages: list[str] = []
        self.pings = 0
        self.close_code: Optional[int] = None
        self.ended_at: Optional[float] = None  # when the client hung up
        self._events: list[wse.Event] = []
        self._parts: list[str] = []

    # -- plumbing --------------------------------------------------------------

    def recv(self) -> bytes:
        """Read once, waking up to notice the server stopping; b"" at EOF."""
        while True:
            if self.server.stopping.is_set():
                raise Gone
            try:
                return self.sock.recv(262144)
            except (TimeoutError, ssl.SSLWantReadError):
                continue
            except OSError:
                return b""

    def send(self, data: bytes) -> None:
        """Write all of ``data``, however long a slow client takes to read it.

        Not ``sendall``: its timeout bounds the whole write, so a client slowed
        down by a loaded machine would look gone."""
        view = memoryview(data)
        while view:
            if self.server.stopping.is_set():
                raise Gone
            try:
                sent = self.sock.send(view)
            except (TimeoutError, ssl.SSLWantWriteError):
                continue  # nothing went out; the same bytes again
            except OSError as exc:
                raise Gone from exc
            view = view[sent:]

    def _next_event(self) -> wse.Event:
        while not self._events:
            data = self.recv()
            if not data:
                self.ended_at = time.monotonic()
                raise Gone
            self.ws.receive_data(data)
            self._events.extend(self.ws.events())
        return self._events.pop(0)

    # -- the upgrade -----------------------------------------------------------

    def read_request(self) -> wse.Request:
        event = self._next_event()
        assert isinstance(event, wse.Request), event
        self.request = event
        return event

    @property
    def headers(self) -> dict[str, str]:
        assert self.request is not None
        return {k.decode().lower(): v.decode() for k, v in self.request.extra_headers}

    def accept(self) -> None:
        self.send(self.ws.send(wse.AcceptConnection()))

    def send_text(self, text: str) -> None:
        self.send(self.ws.send(wse.TextMessage(data=text)))

    def register(self) -> None:
        """Upgrade and greet like the engine does."""
        self.read_request()
        self.accept()
        self.send_text(json.dumps({"type": "workerregistered", "worker_id": f"fake-{self.index}"}))

    # -- after the upgrade -----------------------------------------------------

    def serve(self, *, answer: bool = True) -> None:
        """Echo every call (result = data) and answer pings until the client
        closes; ``answer=False``: read everything and reply to nothing."""
        while True:
            event = self._next_event()
            if isinstance(event, wse.TextMessage):
                self._parts.append(event.data)
                if not event.message_finished:
                    continue
                text, self._parts = "".join(self._parts), []
                self.messages.append(text)
                frame = json.loads(text)
                if answer and frame.get("type") == "invokefunction" and frame.get("invocation_id"):
                    self.send_text(
                        json.dumps(
                            {
                                "type": "invocationresult",
                                "invocation_id": frame["invocation_id"],
                                "function_id": frame["function_id"],
                                "result": frame.get("data"),
                            }
                        )
                    )
            elif isinstance(event, wse.Ping):
                self.pings += 1
                if answer and self.ws.state is WSState.OPEN:  # not after the client's Close
                    self.send(self.ws.send(event.response()))
            elif isinstance(event, wse.CloseConnection):
                self.close_code = event.code
                if self.ws.state is WSState.REMOTE_CLOSING:
                    self.send(self.ws.send(event.response()))
                self.drain()
                return

    def drain(self) -> None:
        """Read and ignore everything until the client hangs up."""
        while self.recv():
            pass
        self.ended_at = time.monotonic()


Script = Callable[[Peer], None]


# -- scripts ------------------------------------------------------------------------


def engine(peer: Peer) -> None:
    peer.register()
    peer.serve()


def eof_at_accept(peer: Peer) -> None:
    """Hang up before reading anything."""


def eof_after_request(peer: Peer) -> None:
    peer.read_request()


def http_500(peer: Peer) -> None:
    peer.read_request()
    peer.send(b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 5\r\n\r\noops\n")


def http_500_keep_open(peer: Peer) -> None:
    """Refuse the upgrade but leave closing the socket to the client."""
    http_500(peer)
    peer.drain()


def never_answer(peer: Peer) -> None:
    """Accept TCP, read the upgrade request, never reply."""
    peer.drain()


def go_silent(peer: Peer) -> None:
    """Handshake, greet, then read everything and answer nothing (no pongs)."""
    peer.register()
    peer.serve(answer=False)


def stop_reading(peer: Peer) -> None:
    """Handshake, greet, then neither read nor write until ``server.release``
    is set; then serve like ``engine``."""
    peer.register()
    server = peer.server
    server.release.wait()
    peer.serve()


class FakeEngine:
    """Accepts connections on 127.0.0.1 (TLS with ``ssl_context``) and runs scripts."""

    def __init__(
        self,
        scripts: Sequence[Script],
        *,
        ssl_context: Optional[ssl.SSLContext] = None,
        host: str = "127.0.0.1",
        rcvbuf: Optional[int] = None,
    ) -> None:
        self._scripts = list(scripts)
        self._ssl_context = ssl_context
        self._listener = socket.socket()
        if rcvbuf is not None:
            # Inherited by accepted sockets; a fixed size turns off autotuning,
            # so a peer that stops reading stops the sender soon.
            self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self._listener.bind((host, 0))
        self._listener.listen()
        self._listener.settimeout(0.05)
        self.port: int = self._listener.getsockname()[1]
        self.host = host
        self.peers: list[Peer] = []
        self.accepted_at: list[float] = []
        self.addresses: list[tuple[str, int]] = []  # the clients' ends, in accept order
        self.tls_failures = 0
        self.errors: list[BaseException] = []
        self.stopping = threading.Event()
        self.release = threading.Event()
        self._threads: list[threading.Thread] = []
        self._accepter = threading.Thread(target=self._accept_loop, daemon=True)
        self._accepter.start()

    def url(self, host: Optional[str] = None) -> str:
        scheme = "wss" if self._ssl_context is not None else "ws"
        return f"{scheme}://{host or self.host}:{self.port}"

    @property
    def accepted(self) -> int:
        return len(self.accepted_at)

    def _accept_loop(self) -> None:
        while not self.stopping.is_set():
            try:
                sock, address = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            index = len(self.accepted_at)
            self.addresses.append(address)
            self.accepted_at.append(time.monotonic())
            thread = threading.Thread(target=self._serve, args=(sock, index), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _serve(self, sock: socket.socket, index: int) -> None:
        try:
            sock.settimeout(0.1)
            if self._ssl_context is not None:
                sock.settimeout(5.0)
                try:
                    sock = self._ssl_context.wrap_socket(sock, server_side=True)
                except (ssl.SSLError, OSError):
                    self.tls_failures += 1
                    return
                sock.settimeout(0.1)
            peer = Peer(self, sock, index)
            self.peers.append(peer)
            self._scripts[min(index, len(self._scripts) - 1)](peer)
        except Gone:
            pass
        except BaseException as exc:
            self.errors.append(exc)
        finally:
            with contextlib.suppress(OSError):
                sock.close()

    def close(self) -> None:
        self.stopping.set()
        self.release.set()
        self._accepter.join(5)
        self._listener.close()
        for thread in self._threads:
            thread.join(5)
        if self.errors:
            raise self.errors[0]

    def __enter__(self) -> FakeEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@contextlib.contextmanager
def connect_to(server: FakeEngine) -> Iterator[tuple[str, int]]:
    """A plain TCP connection to ``server`` (no upgrade); yields its local address."""
    with socket.create_connection((server.host, server.port)) as sock:
        address: tuple[str, int] = sock.getsockname()
        yield address


def dead_port() -> int:
    """A port with nothing listening on it."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port
