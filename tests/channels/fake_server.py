"""A tiny scripted WebSocket server (threads + wsproto) for channel-client tests.

It stands in for the engine where the reference engine cannot misbehave on
demand: it records each upgrade request (target and headers) and then runs a
script per connection that can accept or refuse, send items, fragment, ping,
close with any code, or drop the TCP connection without a Close.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import struct
import threading
from collections.abc import Callable
from typing import Optional, Union

from wsproto import ConnectionType, WSConnection
from wsproto import events as wse
from wsproto.connection import ConnectionState as WSState

Item = Union[str, bytes]


class Peer:
    """The server side of one accepted connection."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.ws = WSConnection(ConnectionType.SERVER)
        self.request: Optional[wse.Request] = None
        self.received: list[Item] = []
        self.close_code: Optional[int] = None
        self._events: list[wse.Event] = []
        self._parts: list[Item] = []

    # -- plumbing -----------------------------------------------------------

    def _flush(self, data: bytes) -> None:
        if data:
            self.sock.sendall(data)

    def _pump(self) -> bool:
        """Read once; False at EOF."""
        data = self.sock.recv(65536)
        if not data:
            return False
        self.ws.receive_data(data)
        self._events.extend(self.ws.events())
        return True

    def _next_event(self) -> Optional[wse.Event]:
        while not self._events:
            if not self._pump():
                return None
        return self._events.pop(0)

    # -- handshake ----------------------------------------------------------

    def handshake(self) -> wse.Request:
        event = self._next_event()
        assert isinstance(event, wse.Request), event
        self.request = event
        return event

    @property
    def headers(self) -> dict[str, str]:
        assert self.request is not None
        return {k.decode().lower(): v.decode() for k, v in self.request.extra_headers}

    def accept(self) -> None:
        self._flush(self.ws.send(wse.AcceptConnection()))

    def reject(self, status: int, body: bytes = b"Channel not found") -> None:
        self._flush(
            self.ws.send(
                wse.RejectConnection(
                    status_code=status,
                    headers=[(b"content-length", str(len(body)).encode())],
                    has_body=True,
                )
            )
        )
        self._flush(self.ws.send(wse.RejectData(data=body)))

    # -- sending ------------------------------------------------------------

    def send(self, item: Item) -> None:
        self.send_fragments([item])

    def send_fragments(self, parts: list[Item]) -> None:
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            message: wse.Event = (
                wse.TextMessage(data=part, message_finished=last)
                if isinstance(part, str)
                else wse.BytesMessage(data=part, message_finished=last)
            )
            self._flush(self.ws.send(message))

    def ping(self, payload: bytes = b"hi") -> None:
        self._flush(self.ws.send(wse.Ping(payload=payload)))

    def close(self, code: int = 1000, reason: str = "") -> None:
        """Send Close and wait for the client's reply (or EOF)."""
        self._flush(self.ws.send(wse.CloseConnection(code=code, reason=reason)))
        while self.ws.state is not WSState.CLOSED:
            event = self._next_event()
            if event is None:
                return

    def drop(self) -> None:
        """Hang up without a Close frame."""
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)

    def abort(self) -> None:
        """Go away as a crashed engine does: the connection is reset (RST), so
        the client's next send or read fails, whatever its kernel buffered."""
        with contextlib.suppress(OSError):
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.sock.close()

    # -- receiving ----------------------------------------------------------

    def receive_until_close(self, reply: bool = True) -> list[Item]:
        """Collect items until the client's Close (answered when ``reply``)."""
        while True:
            event = self._next_event()
            if event is None:
                return self.received
            if isinstance(event, (wse.TextMessage, wse.BytesMessage)):
                data = event.data
                self._parts.append(data if isinstance(data, str) else bytes(data))
                if event.message_finished:
                    parts, self._parts = self._parts, []
                    if isinstance(parts[0], str):
                        self.received.append("".join(str(p) for p in parts))
                    else:
                        self.received.append(b"".join(bytes(p) for p in parts))  # type: ignore[arg-type]
            elif isinstance(event, wse.Ping):
                self._flush(self.ws.send(event.response()))
            elif isinstance(event, wse.CloseConnection):
                self.close_code = event.code
                if reply:
                    self._flush(self.ws.send(event.response()))
                return self.received

    def wait_eof(self, timeout: float = 10.0) -> None:
        """Read (and ignore) until the client hangs up."""
        self.sock.settimeout(timeout)
        with contextlib.suppress(OSError):
            while self.sock.recv(65536):
                pass


Script = Callable[[Peer], None]


class FakeChannelServer:
    """Accepts connections on 127.0.0.1 and runs ``script(peer)`` for each one."""

    def __init__(self, script: Script, *, ssl_context: Optional[ssl.SSLContext] = None) -> None:
        self._script = script
        self._ssl_context = ssl_context
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.05)
        self.port = self._listener.getsockname()[1]
        self.peers: list[Peer] = []
        self.errors: list[BaseException] = []
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._accepter = threading.Thread(target=self._accept_loop, daemon=True)
        self._accepter.start()

    @property
    def url(self) -> str:
        scheme = "wss" if self._ssl_context is not None else "ws"
        return f"{scheme}://127.0.0.1:{self.port}"

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.settimeout(10.0)
            peer = Peer(conn)
            self.peers.append(peer)
            thread = threading.Thread(target=self._serve, args=(peer,), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _serve(self, peer: Peer) -> None:
        try:
            if self._ssl_context is not None:
                try:
                    peer.sock = self._ssl_context.wrap_socket(peer.sock, server_side=True)
                except (ssl.SSLError, OSError):
                    return  # the client refused our certificate
            self._script(peer)
        except BaseException as exc:
            self.errors.append(exc)
        finally:
            with contextlib.suppress(OSError):
                peer.sock.close()

    def close(self) -> None:
        self._stop.set()
        self._accepter.join(5)
        self._listener.close()
        for thread in self._threads:
            thread.join(10)
        if self.errors:
            raise self.errors[0]

    def __enter__(self) -> FakeChannelServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
