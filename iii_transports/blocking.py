"""The thread adapter: blocking sockets on daemon threads, no event loop.

The core is guarded by ``transport.lock``; any number of user threads may call
into it at once.  A caller takes the lock, runs a command on ``transport.conn``,
releases it and calls ``process()``, which dispatches events and writes the
queued bytes itself (so a call costs no thread hop on the way out), waiting
while the engine is slow to read.  The I/O thread connects, reads, and runs
the core's timers; it never writes, so a writer stuck on an engine that
stopped reading cannot stop it from reading (often what the engine waits for)
or from noticing a dead socket.  What it makes the core queue (pongs, pings,
answers, the replay) is written by a writer thread.  Both are daemons, so a
script that forgets to close its worker still exits.

TLS runs in memory (``ssl.SSLObject``) over a plain socket: OpenSSL forbids
reading and writing one SSL object from two threads at once, and a plain
socket keeps ``select()`` honest (readable means bytes arrived, not that a
TLS read will not block).  ``open_stream`` opens such a ``BlockingStream``;
blocking channel ends use it too.
"""

from __future__ import annotations

import contextlib
import logging
import select
import socket
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Optional

from iii_protocol import Connection, ConnectionState
from iii_protocol import events as ev

from ._connect import READ_SIZE, client_tls, timed_out

if TYPE_CHECKING:  # imported with the first TLS stream: ws:// needs none of it
    import ssl

__all__ = ["BlockingStream", "ThreadTransport", "open_stream"]

log = logging.getLogger(__name__)

#: Sends go out in chunks: the socket timeout bounds a chunk, not a message.
_CHUNK = 1024 * 1024
#: Bytes a non-blocking send offers the socket at once.
_SEND_SIZE = 256 * 1024
#: Seconds a socket the core dropped gets to finish a send and say goodbye.
_GRACE = 1.0
#: Seconds the I/O thread leaves the socket to callers after one read for
#: itself, unless other answers are awaited: what arrives in that window
#: waits at most this long (or for the next caller, who reads it).
_LINGER = 0.001

EventHandler = Callable[[ev.Event], None]


class BlockingStream:
    """A connected blocking socket, with TLS in memory when secure.

    Calls into the SSL object are serialised by a lock held only for
    in-memory work; socket I/O happens outside it, so one thread may read
    while another writes.  The socket's timeout bounds each call.
    """

    def __init__(self, sock: socket.socket, tls: Optional[ssl.SSLContext], host: str) -> None:
        self.sock = sock
        # Seconds a non-blocking send may wait for room (None: the socket blocks).
        self._stall: Optional[float] = None
        self._lock = threading.Lock()
        self._tls: Optional[ssl.SSLObject] = None
        if tls is not None:
            import ssl

            self._incoming = ssl.MemoryBIO()
            self._outgoing = ssl.MemoryBIO()
            self._tls = tls.wrap_bio(self._incoming, self._outgoing, server_hostname=host)

    def handshake(self, deadline: Optional[float] = None) -> None:
        """The TLS handshake, if any, by ``deadline`` (``time.monotonic()``)."""
        if self._tls is None:
            return
        import ssl

        while True:
            try:
                self._tls.do_handshake()
                done = True
            except ssl.SSLWantReadError:
                done = False
            self.sock.sendall(self._outgoing.read())
            if done:
                return
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError("timed out during the TLS handshake")
                self.sock.settimeout(left)
            data = self.sock.recv(READ_SIZE)
            if not data:
                raise ConnectionResetError("EOF during the TLS handshake")
            self._incoming.write(data)

    def settimeout(self, timeout: Optional[float]) -> None:
        """Seconds each later send or receive may take (``None``: no limit)."""
        self._stall = None
        self.sock.settimeout(timeout)

    def set_nonblocking(self, stall: float) -> None:
        """Receives return at once (callers wait in ``select()`` first: a
        receive is one system call, where a socket timeout adds a poll before
        each); a send fails once no byte could go out for ``stall`` seconds."""
        self.sock.setblocking(False)
        self._stall = stall

    def has_output(self) -> bool:
        """Whether TLS has records to send that a read produced."""
        return self._tls is not None and self._outgoing.pending > 0

    def send(self, data: bytes) -> None:
        """Send ``data`` (and any TLS records a read produced), all of it."""
        if self._tls is not None:
            with self._lock:
                if data:
                    self._tls.write(data)
                data = self._outgoing.read()
        if self._stall is not None:
            self._send_nonblocking(data, self._stall)
            return
        view = memoryview(data)
        for start in range(0, len(view), _CHUNK):
            self.sock.sendall(view[start : start + _CHUNK])

    def _send_nonblocking(self, data: bytes, stall: float) -> None:
        sock = self.sock
        try:  # the common case: the socket takes it all at once
            sent = sock.send(data) if len(data) <= _SEND_SIZE else 0
        except BlockingIOError:
            sent = 0
        view = memoryview(data)
        while sent < len(view):
            try:
                sent += sock.send(view[sent : sent + _SEND_SIZE])
                continue
            except BlockingIOError:
                pass
            _, writable, _ = select.select([], [sock], [], stall)
            if not writable:  # the engine read nothing for that long
                raise TimeoutError(f"no byte could be sent for {stall:g}s")

    def recv(self) -> Optional[bytes]:
        """Read once: the bytes that arrived; b"" at the end; None when TLS had
        no data yet (or a non-blocking socket had none)."""
        try:
            data = self.sock.recv(READ_SIZE)
        except BlockingIOError:
            return None
        if self._tls is None:
            return data
        import ssl

        plain: list[bytes] = []
        with self._lock:
            if data:
                self._incoming.write(data)
            else:
                self._incoming.write_eof()
            while True:
                try:
                    chunk = self._tls.read(READ_SIZE)
                except ssl.SSLWantReadError:
                    break
                except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                    chunk = b""
                if not chunk:
                    return b"".join(plain)  # the end (reported again next time)
                plain.append(chunk)
        return b"".join(plain) or None

    def receive(self) -> bytes:
        """Block until bytes arrive; ``b""`` at the end of the stream."""
        while True:
            data = self.recv()
            if self.has_output():
                self.send(b"")  # what TLS must answer
            if data is not None:
                return data

    def shutdown(self) -> None:
        """Wake any thread blocked on the socket; closing is left to the owner."""
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        """Close the socket (errors from a socket already gone are ignored)."""
        with contextlib.suppress(OSError):
            self.sock.close()


def open_stream(
    host: str,
    port: int,
    *,
    secure: bool = False,
    ssl_context: Optional[ssl.SSLContext] = None,
    timeout: Optional[float] = None,
) -> BlockingStream:
    """Connect to ``host:port`` over TCP, with TLS when ``secure``, within ``timeout`` s.

    The socket keeps the timeout for its next calls until ``settimeout``.

    Args:
        ssl_context: the TLS settings when ``secure`` (default: verify the
            certificate against the system's CAs); ignored otherwise.
        timeout: seconds for TCP and TLS together; ``None``: no limit.

    Raises:
        OSError: refused, unreachable, a TLS failure (``ssl.SSLError``), or
            ``TimeoutError`` after ``timeout``.
    """
    return _open(host, port, secure=secure, ssl_context=ssl_context, timeout=timeout)


def _open(
    host: str,
    port: int,
    *,
    secure: bool,
    ssl_context: Optional[ssl.SSLContext],
    timeout: Optional[float],
    on_socket: Optional[Callable[[socket.socket], None]] = None,
) -> BlockingStream:
    """``open_stream``; ``on_socket`` sees the TCP socket before the TLS
    handshake (it may raise to abandon the attempt: the socket is closed)."""
    context = client_tls(secure, ssl_context)
    deadline = None if timeout is None else time.monotonic() + timeout
    try:
        sock = socket.create_connection((host, port), timeout=timeout)
    except TimeoutError as exc:
        raise timed_out(host, port) from exc
    try:
        if on_socket is not None:
            on_socket(sock)
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        stream = BlockingStream(sock, context, host)
        stream.handshake(deadline)
    except TimeoutError as exc:
        sock.close()
        raise timed_out(host, port) from exc
    except BaseException:
        sock.close()
        raise
    return stream


#: Who reads the socket (``ThreadTransport._reader``) besides a leading caller's
#: thread id: the I/O thread waiting for it to be readable, or reading it.
_WATCHING = "io-watching"
_READING = "io-reading"


class ThreadTransport:
    """Drive a ``Connection`` from background daemon threads.

    Args:
        conn: the session; touch it only while holding ``lock``.
        on_event: called for every application event, from whichever thread
            ran ``process()`` (the I/O thread, a caller, or a caller reading
            for itself: ``read_until``); must not block.
        ssl_context: for ``wss://``; default verifies certificates.
        clock: monotonic seconds.
        on_crash: called with the exception if a bug kills the I/O or writer
            thread (it is logged first); the transport is dead after that.

    Reading is one role at a time: the I/O thread holds it while it waits for
    the socket, and a caller waiting for an answer may take it over
    (``read_until``) while the I/O thread is only waiting.  The I/O thread
    then stops watching the socket until the caller is done (and a moment
    more, ``_LINGER``, for a caller that calls again right away), and keeps
    running the timers and reconnects.
    """

    def __init__(
        self,
        conn: Connection,
        on_event: EventHandler,
        *,
        ssl_context: Optional[ssl.SSLContext] = None,
        clock: Callable[[], float] = time.monotonic,
        on_crash: Optional[Callable[[BaseException], None]] = None,
    ) -> None:
        self.conn = conn
        self._on_crash = on_crash
        self.lock = threading.Lock()
        self._on_event = on_event
        self._ssl_context = ssl_context
        self.now = clock
        self._write_lock = threading.Lock()  # one writer at a time, in core order
        self._wire: Optional[BlockingStream] = None  # guarded by ``lock``
        # What the reading side took from the core for the writer (``lock``).
        self._backlog = bytearray()
        # Who may read the socket: None, _WATCHING, _READING or a caller's thread id (``lock``).
        self._reader: object = None
        # The I/O thread stopped watching the socket for a caller (``lock``).
        self._following = False
        self._retired: list[BlockingStream] = []
        self._finished = False  # the I/O thread is gone: nobody closes retired sockets
        self._opening: Optional[socket.socket] = None  # in its TLS handshake
        self._to_open: Optional[ev.OpenTransport] = None
        self._stopped = threading.Event()
        self._write_wanted = threading.Event()
        self._sleeping_until = float("inf")
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._thread = threading.Thread(target=self._run, name="iii-transport", daemon=True)
        self._writer = threading.Thread(
            target=self._write_loop, name="iii-transport-writer", daemon=True
        )

    # -- lifecycle -------------------------------------------------------------

    def start(self) -> None:
        """Start the threads; the I/O thread connects right away."""
        with self.lock:
            if self.conn.state is ConnectionState.DISCONNECTED:
                self.conn.connect(self.now())
        self._thread.start()
        self._writer.start()
        self.process()

    def close(self, timeout: float = 5.0) -> None:
        """Close the session (pending calls fail with ``SHUTDOWN``) and stop the threads."""
        with self.lock:
            self.conn.close()
        self.process()
        self._stop()
        for thread in (self._thread, self._writer):
            if threading.current_thread() is not thread and thread.is_alive():
                thread.join(timeout)

    @property
    def stopped(self) -> bool:
        return self._stopped.is_set()

    def _stop(self) -> None:
        self._stopped.set()
        self._write_wanted.set()
        self._wake()
        opening = self._opening
        if opening is not None:  # a handshake with a silent peer would hold close() up
            with contextlib.suppress(OSError):
                opening.shutdown(socket.SHUT_RDWR)

    # -- called after each command ---------------------------------------------

    def process(self) -> None:
        """Dispatch the core's events and write what it queued (waits while
        the engine is slow to read)."""
        self._dispatch()
        self.flush()

    def flush(self) -> None:
        """Write everything the core queued to the current socket."""
        with self._write_lock:
            while True:
                with self.lock:
                    data = self.conn.data_to_send()
                    backlog = self._backlog
                    if backlog:
                        data = bytes(backlog) + data
                        backlog.clear()
                    wire = self._wire
                if wire is None or not (data or wire.has_output()):
                    if not data:
                        return
                    continue  # queued for a socket that is gone
                try:
                    wire.send(data)
                except OSError:
                    # Part of a frame may be out: no more bytes on this socket.
                    # The I/O thread notices the shutdown and reports it.
                    wire.shutdown()

    def _dispatch(self) -> bool:
        """Handle the core's events: socket bookkeeping under the lock, in order.

        Returns whether bytes wait to be written (taken from the core into the
        backlog, so that the reading side knows without waking the writer)."""
        retired: list[tuple[BlockingStream, bytes]] = []
        conn = self.conn
        with self.lock:
            events = list(conn.events())
            for event in events:
                kind = type(event)
                if kind is ev.OpenTransport:
                    self._to_open = event  # type: ignore[assignment]
                elif kind is ev.CloseTransport:
                    # What the core queued before dropping the socket is its
                    # last words on it (a Close frame); never for the next one.
                    last_words = bytes(self._backlog) + conn.data_to_send()
                    self._backlog.clear()
                    if self._wire is not None:
                        retired.append((self._wire, last_words))
                        self._wire = None
            state = conn.state
            timer = conn.get_timer()
        for wire, last_words in retired:
            self._retire(wire, last_words)
        on_event = self._on_event
        for event in events:
            kind = type(event)
            if kind is not ev.OpenTransport and kind is not ev.CloseTransport:
                on_event(event)
        if state is ConnectionState.FAILED:
            self._stop()
        elif self._to_open is not None or (timer is not None and timer < self._sleeping_until):
            self._wake()
        with self.lock:  # after the events: their handlers may have queued answers
            data = conn.data_to_send()
            if data:
                self._backlog += data
            return bool(self._backlog)

    def _retire(self, wire: BlockingStream, last_words: bytes) -> None:
        # A send in progress gets _GRACE seconds; then it is cut.
        if not self._write_lock.acquire(timeout=_GRACE):
            wire.shutdown()
            self._write_lock.acquire()
        try:
            if last_words:
                with contextlib.suppress(OSError):
                    wire.settimeout(_GRACE)
                    wire.send(last_words)
        finally:
            self._write_lock.release()
        wire.shutdown()
        with self.lock:
            orphaned = self._finished  # a dead I/O thread (a crash) cannot close it
            if not orphaned:
                self._retired.append(wire)
        if orphaned:
            wire.close()
        self._wake()

    # -- the writer thread: what the reading side made the core queue ------------

    def _write_loop(self) -> None:
        try:
            while True:
                self._write_wanted.wait()
                self._write_wanted.clear()
                if self._stopped.is_set():
                    return
                self.flush()
        except Exception as exc:  # pragma: no cover - a bug; make it loud, not silent
            self._crashed("writer", exc)

    def _crashed(self, which: str, exc: BaseException) -> None:
        log.exception("iii transport %s thread crashed", which)
        self._stop()
        if self._on_crash is not None:
            self._on_crash(exc)

    # -- reading -------------------------------------------------------------------

    def _wake(self) -> None:
        with contextlib.suppress(OSError):
            self._wake_w.send(b"\0")

    def _after_io(self) -> None:
        """After reading or the timers: dispatch; the writer writes what they
        made the core queue (woken only when there is something)."""
        pending = self._dispatch()
        wire = self._wire
        if pending or (wire is not None and wire.has_output()):
            self._write_wanted.set()

    def _read(self, wire: BlockingStream) -> bool:
        """Read once from ``wire`` into the core; False when it ended or was dropped."""
        cause: Optional[OSError] = None
        try:
            data = wire.recv()
            reason = "connection closed by the engine"
        except OSError as exc:
            data = b""
            reason = f"{type(exc).__name__}: {exc}"
            cause = exc
        if data is None:
            self._write_wanted.set()  # TLS may have something to answer
            return True
        with self.lock:
            if wire is not self._wire:
                return False  # retired meanwhile
            if data:
                self.conn.receive_data(data, self.now())
                return True
            self._wire = None
            self.conn.transport_closed(self.now(), reason, cause=cause)
            self.conn.data_to_send()  # what is still queued was for that socket
            self._backlog.clear()
            self._retired.append(wire)
        wire.shutdown()
        return False

    def read_until(self, done: Callable[[], bool], timeout: float) -> None:
        """Read the socket on this thread until ``done()`` (or ``timeout``
        seconds), if no other thread is reading it; return at once if one is.

        For a caller blocked on its call: when nobody else reads, the answer
        costs no hand-off between threads.  Everything read meanwhile is
        dispatched from here as the I/O thread would (other calls' answers,
        invocations for handlers), and timers that fall due meanwhile (such as
        the call's own timeout) run here too.  Whatever ``done`` waits for
        must also be set by other means (the caller waits for it after this
        returns).
        """
        me = threading.get_ident()
        with self.lock:
            wire = self._wire
            if wire is None or self._stopped.is_set() or self._reader not in (None, _WATCHING):
                return
            self._reader = me  # the I/O thread, if it was watching, leaves the socket to us
        try:
            conn = self.conn
            deadline = self.now() + timeout
            sock = wire.sock
            while not done():
                now = self.now()
                if now >= deadline:
                    break
                with self.lock:
                    timer = conn.get_timer()
                if timer is not None and timer <= now:
                    # Due now (this call's own timeout, a ping): run it rather
                    # than wait for the I/O thread to.
                    with self.lock:
                        conn.handle_timer(now)
                    self._after_io()
                    continue
                wait = deadline - now if timer is None else min(deadline, timer) - now
                try:
                    readable, _, _ = select.select([sock], [], [], wait)
                except (OSError, ValueError):  # closed under us: the I/O thread reports it
                    break
                if readable:
                    more = self._read(wire)
                    self._after_io()
                    if not more:
                        break
        except Exception as exc:  # a bug in the core: as if the I/O thread died of it
            self._crashed("reader", exc)
        finally:
            with self.lock:
                self._reader = None
                # Others wait for answers: the I/O thread takes the socket back
                # now.  Else it does when its short linger ends: a caller
                # calling again meanwhile reads for itself, and a sequential
                # caller costs the I/O thread no wake-up per call.
                urgent = self._following and self.conn.pending_count > 0
                if urgent:
                    self._following = False
            if urgent:
                self._wake()

    # -- the I/O thread ------------------------------------------------------------

    def _opened(self, sock: socket.socket) -> None:
        # Seen by _stop, which shuts it down: a TLS handshake with a silent
        # peer would otherwise hold close() up until the connect timeout.
        self._opening = sock
        if self._stopped.is_set():
            raise ConnectionAbortedError("the transport is closing")

    def _connect(self, event: ev.OpenTransport) -> None:
        try:
            try:
                wire = _open(
                    event.host,
                    event.port,
                    secure=event.secure,
                    ssl_context=self._ssl_context,
                    timeout=event.timeout,
                    on_socket=self._opened,
                )
            finally:
                self._opening = None
            # Reads wait in select() and a send only when the socket is full,
            # so each is one system call; a send stuck on an engine that reads
            # nothing is cut after idle_timeout, even one that still writes.
            wire.set_nonblocking(self.conn.config.idle_timeout)
        except OSError as exc:
            with self.lock:
                self.conn.transport_closed(self.now(), f"connect failed: {exc}", cause=exc)
            self._after_io()
            return
        with self.lock:
            try:
                self.conn.transport_opened(self.now())
                self._wire = wire
            except Exception:  # the core gave up on this socket meanwhile
                wire.close()
        self._after_io()

    def _close_retired(self) -> None:
        # Only while no writer can be using them.
        if self._retired and self._write_lock.acquire(blocking=False):
            try:
                retired, self._retired = self._retired, []
                for old in retired:
                    old.close()
            finally:
                self._write_lock.release()

    def _run(self) -> None:
        try:
            while not self._stopped.is_set():
                to_open, self._to_open = self._to_open, None
                if to_open is not None:
                    self._connect(to_open)
                    continue
                self._close_retired()
                with self.lock:
                    timer = self.conn.get_timer()
                    wire = self._wire
                    watch = wire is not None and self._reader is None
                    if watch:
                        self._reader = _WATCHING
                    self._following = wire is not None and not watch
                self._sleeping_until = float("inf") if timer is None else timer
                timeout = None if timer is None else max(0.0, timer - self.now())
                if self._following:  # a caller reads, or did a moment ago
                    timeout = _LINGER if timeout is None else min(timeout, _LINGER)
                if self._retired:
                    timeout = 0.05 if timeout is None else min(timeout, 0.05)
                sock = wire.sock if watch and wire is not None else None
                readers = [self._wake_r] if sock is None else [self._wake_r, sock]
                readable, _, _ = select.select(readers, [], [], timeout)
                self._sleeping_until = float("-inf")
                if self._wake_r in readable:
                    with contextlib.suppress(OSError):
                        self._wake_r.recv(4096)
                if sock is not None and wire is not None:
                    with self.lock:
                        mine = self._reader is _WATCHING  # else a caller took over
                        ready = mine and sock in readable
                        if mine:
                            self._reader = _READING if ready else None
                    if ready:
                        try:
                            self._read(wire)
                        finally:
                            with self.lock:
                                self._reader = None
                with self.lock:
                    self.conn.handle_timer(self.now())
                self._after_io()
        except Exception as exc:  # a bug; make it loud, not silent
            self._crashed("I/O", exc)
        finally:
            self._stop()
            if self._writer.is_alive():
                self._writer.join(2 * _GRACE)
            with self.lock:
                wire, self._wire = self._wire, None
                self._finished = True
                retired, self._retired = self._retired, []
            if wire is not None:
                wire.shutdown()  # a caller reading it wakes up (closing would not wake it)
            for old in [*retired, *([wire] if wire is not None else [])]:
                old.close()
            self._wake_r.close()
            self._wake_w.close()
