"""The thread adapter: blocking sockets on one daemon thread, no event loop.

The core is guarded by ``transport.lock``; any number of user threads may call
into it at once.  A caller takes the lock, runs a command on ``transport.conn``,
releases it and calls ``process()``, which dispatches events and writes the
queued bytes itself (so a call costs no thread hop on the way out).  The one
I/O thread connects, reads, and runs the core's timers; it is a daemon, so a
script that forgets to close its worker still exits.
"""

from __future__ import annotations

import contextlib
import logging
import select
import socket
import ssl
import threading
import time
from collections.abc import Callable
from typing import Optional

from iii_protocol import Connection, ConnectionState
from iii_protocol import events as ev

__all__ = ["ThreadTransport"]

log = logging.getLogger(__name__)

_READ_SIZE = 65536

EventHandler = Callable[[ev.Event], None]


class ThreadTransport:
    """Drive a ``Connection`` from a background daemon thread.

    Args:
        conn: the session; touch it only while holding ``lock``.
        on_event: called for every application event, from whichever thread
            ran ``process()`` (the I/O thread or a caller); must not block.
        ssl_context: for ``wss://``; default verifies certificates.
        clock: monotonic seconds.
    """

    def __init__(
        self,
        conn: Connection,
        on_event: EventHandler,
        *,
        ssl_context: Optional[ssl.SSLContext] = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.conn = conn
        self.lock = threading.Lock()
        self._on_event = on_event
        self._ssl_context = ssl_context
        self.now = clock
        self._write_lock = threading.Lock()
        self._sock: Optional[socket.socket] = None
        self._retired: list[socket.socket] = []
        self._to_open: Optional[ev.OpenTransport] = None
        self._stopped = threading.Event()
        self._sleeping_until = float("inf")
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._thread = threading.Thread(target=self._run, name="iii-transport", daemon=True)

    # -- lifecycle -------------------------------------------------------------

    def start(self) -> None:
        """Start the I/O thread; it connects right away."""
        with self.lock:
            if self.conn.state is ConnectionState.DISCONNECTED:
                self.conn.connect(self.now())
        self._thread.start()
        self.process()

    def close(self, timeout: float = 5.0) -> None:
        """Close the session (pending calls fail with ``SHUTDOWN``) and stop the thread."""
        with self.lock:
            self.conn.close()
        self.process()
        self._stopped.set()
        self._wake()
        if threading.current_thread() is not self._thread and self._thread.is_alive():
            self._thread.join(timeout)

    @property
    def stopped(self) -> bool:
        return self._stopped.is_set()

    # -- called after each command ---------------------------------------------

    def process(self) -> None:
        """Dispatch the core's events and write what it queued."""
        with self.lock:
            events = list(self.conn.events())
            state = self.conn.state
            timer = self.conn.get_timer()
        for event in events:
            if isinstance(event, ev.OpenTransport):
                self._to_open = event
                self._wake()
            elif isinstance(event, ev.CloseTransport):
                self._close_socket()
            else:
                self._on_event(event)
        self.flush()
        if state is ConnectionState.FAILED:
            self._stopped.set()
            self._wake()
        elif timer is not None and timer < self._sleeping_until:
            self._wake()

    def flush(self) -> None:
        with self._write_lock:
            with self.lock:
                data = self.conn.data_to_send()
            sock = self._sock
            if data and sock is not None:
                # A broken socket is the I/O thread's to notice and report.
                with contextlib.suppress(OSError):
                    sock.sendall(data)

    # -- the I/O thread ----------------------------------------------------------

    def _wake(self) -> None:
        with contextlib.suppress(OSError):
            self._wake_w.send(b"\0")

    def _close_socket(self) -> None:
        with self._write_lock:
            with self.lock:
                # The core's last words on this socket (a Close frame).
                data = self.conn.data_to_send()
            sock, self._sock = self._sock, None
            if sock is None:
                return
            with contextlib.suppress(OSError):
                if data:
                    sock.settimeout(1.0)
                    sock.sendall(data)
            # Wakes the I/O thread's select; it closes the socket.
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            self._retired.append(sock)
            self._wake()

    def _connect(self, event: ev.OpenTransport) -> None:
        try:
            sock = socket.create_connection((event.host, event.port), timeout=event.timeout)
            if event.secure:
                context = self._ssl_context or ssl.create_default_context()
                try:
                    sock = context.wrap_socket(sock, server_hostname=event.host)
                except BaseException:
                    sock.close()
                    raise
            sock.settimeout(self.conn.config.idle_timeout)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError as exc:
            with self.lock:
                self.conn.transport_closed(self.now(), f"connect failed: {exc}")
            self.process()
            return
        with self._write_lock:
            self._sock = sock
        with self.lock:
            try:
                self.conn.transport_opened(self.now())
                wanted = True
            except Exception:  # the core gave up on this socket meanwhile
                wanted = False
        if not wanted:
            with self._write_lock:
                self._sock = None
            sock.close()
        self.process()

    def _read(self, sock: socket.socket) -> None:
        try:
            data = sock.recv(_READ_SIZE)
            while isinstance(sock, ssl.SSLSocket) and data and sock.pending():
                data += sock.recv(sock.pending())
            reason = "connection closed by the engine"
        except OSError as exc:
            data = b""
            reason = f"{type(exc).__name__}: {exc}"
        if sock is not self._sock:
            return  # retired meanwhile
        with self.lock:
            if data:
                self.conn.receive_data(data, self.now())
            else:
                self.conn.transport_closed(self.now(), reason)
        if not data:
            with self._write_lock:
                if self._sock is sock:
                    self._sock = None
            sock.close()
        self.process()

    def _run(self) -> None:
        try:
            while not self._stopped.is_set():
                to_open, self._to_open = self._to_open, None
                if to_open is not None:
                    self._connect(to_open)
                    continue
                for old in self._retired:
                    old.close()
                self._retired.clear()
                with self.lock:
                    timer = self.conn.get_timer()
                self._sleeping_until = float("inf") if timer is None else timer
                timeout = None if timer is None else max(0.0, timer - self.now())
                sock = self._sock
                readers: list[socket.socket] = (
                    [self._wake_r] if sock is None else [self._wake_r, sock]
                )
                readable, _, _ = select.select(readers, [], [], timeout)
                self._sleeping_until = float("-inf")
                if self._wake_r in readable:
                    with contextlib.suppress(OSError):
                        self._wake_r.recv(4096)
                if sock is not None and sock in readable:
                    self._read(sock)
                with self.lock:
                    self.conn.handle_timer(self.now())
                self.process()
        except Exception:  # pragma: no cover - a bug; make it loud, not silent
            log.exception("iii transport thread crashed")
            raise
        finally:
            for old in self._retired:
                old.close()
            if self._sock is not None:
                self._sock.close()
            self._wake_r.close()
            self._wake_w.close()
