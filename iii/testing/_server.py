"""Sockets: the anyio TCP listeners, the HTTP upgrade, authentication and the
routes (``/``, ``/otel``, and those of the worker modules, e.g. channels).

``Server`` owns the listeners (the trusted one, the RBAC one, and those the
worker modules open) and the engine runs: each run is an ``EngineCore`` with
its connections, in a cancel scope that ``stop`` cancels.  The test controls
and the views are the ``Engine`` handle's (``iii.testing._handle``).
"""

from __future__ import annotations

import itertools
import logging
import urllib.parse
from collections.abc import Mapping
from contextlib import suppress
from typing import Optional, Union

import anyio
import anyio.abc
from anyio.abc import SocketAttribute
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, RejectConnection, RejectData, Request
from wsproto.utilities import LocalProtocolError, RemoteProtocolError

from iii_protocol import ErrorBody, ErrorFrame, encode_frame
from iii_protocol._json import JSONObject

from ._api import WsRoute
from ._core import EngineCore
from ._options import EngineOptions
from ._rbac import RbacConfig, Session
from ._records import Worker, new_id
from ._transcript import Transcript
from ._websocket import WsConn
from ._workers.rbac import AuthFailure, authenticate

__all__ = ["DEFAULT_PORT", "MAX_FRAME_SIZE", "MAX_MESSAGE_SIZE", "Listener", "Server"]

log = logging.getLogger("iii.testing")

#: The port ``python -m iii.testing`` listens on unless told otherwise (the real engine's).
DEFAULT_PORT = 49134
MAX_MESSAGE_SIZE = 64 * 1024 * 1024
MAX_FRAME_SIZE = 16 * 1024 * 1024
_MAX_HEAD = 64 * 1024
_TELEMETRY_PREFIXES = (b"OTLP", b"MTRC", b"LOGS")


def _http_response(ws: WSConnection, status: int, body: bytes) -> bytes:
    return ws.send(
        RejectConnection(
            status_code=status,
            headers=[
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"content-length", str(len(body)).encode()),
            ],
            has_body=True,
        )
    ) + ws.send(RejectData(data=body))


def _parse_headers(head: bytes) -> dict[str, str]:
    headers: dict[str, str] = {}
    for line in head.split(b"\r\n")[1:]:
        if b":" not in line:
            continue
        name, _, value = line.partition(b":")
        key = name.strip().lower().decode("latin-1")
        text = value.strip().decode("latin-1")
        headers[key] = f"{headers[key]}, {text}" if key in headers else text
    return headers


def _url(scheme: str, host: str, port: int) -> str:
    if ":" in host:
        host = f"[{host}]"
    return f"{scheme}://{host}:{port}"


def _ignore(kind: str, payload: Union[str, bytes]) -> None:
    return None


def _telemetry_counted(core: EngineCore, kind: str, payload: Union[str, bytes]) -> bool:
    """Whether the message is a telemetry frame (OTLP, metrics, logs); counted if so."""
    if kind == "binary" and payload[:4] in _TELEMETRY_PREFIXES:
        core.telemetry_frames += 1
        return True
    return False


async def _send_quietly(stream: anyio.abc.ByteStream, data: bytes) -> None:
    with suppress(anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
        await stream.send(data)


class Listener:
    """One of the engine's WebSocket listeners (``main``, or ``rbac``)."""

    def __init__(self, name: str, host: str, port: int, rbac: Optional[RbacConfig]) -> None:
        self.name = name
        self.host = host
        self.port = port
        self.rbac = rbac
        self.sockets: list[anyio.abc.SocketListener] = []

    @property
    def url(self) -> str:
        return _url("ws", self.host, self.port)


#: Stands for a worker module's own WebSocket listener (no RBAC, no main route).
_MODULE_LISTENER = Listener("module", "", 0, None)


class Server:
    """The listeners and the engine runs behind them."""

    def __init__(
        self,
        *,
        host: str,
        port: int,
        rbac: Optional[RbacConfig],
        rbac_port: int,
        transcript: Optional[Transcript],
        max_message_size: int,
        max_frame_size: int,
        handshake_timeout: float,
        options: EngineOptions,
    ) -> None:
        self.host = host
        self.listeners = [Listener("main", host, port, None)]
        if rbac is not None:
            self.listeners.append(Listener("rbac", host, rbac_port, rbac))
        self.options = options
        self.transcript = transcript
        self.max_message_size = max_message_size
        self.max_frame_size = min(max_frame_size, max_message_size)
        self.handshake_timeout = handshake_timeout
        self.core: Optional[EngineCore] = None
        self.tg: Optional[anyio.abc.TaskGroup] = None
        self.generation = 0
        #: live sockets, and the worker connections by worker id
        self.conns: set[WsConn] = set()
        self.workers_by_conn: dict[str, WsConn] = {}
        #: URLs of the listeners worker modules opened, by name; their ports
        self.urls: dict[str, str] = {}
        self._module_ports: dict[str, int] = {}
        self._gen_scope: Optional[anyio.CancelScope] = None
        self._gen_done: Optional[anyio.Event] = None
        self._counter = itertools.count(1)

    @property
    def running(self) -> bool:
        return self._gen_scope is not None

    # -- runs ------------------------------------------------------------------------

    async def open(self) -> None:
        """Bind the listeners (the same ports again after a ``stop``)."""
        try:
            for listener in self.listeners:
                multi = await anyio.create_tcp_listener(
                    local_host=listener.host, local_port=listener.port
                )
                socks = [s for s in multi.listeners if isinstance(s, anyio.abc.SocketListener)]
                listener.sockets = socks
                listener.port = socks[0].extra(SocketAttribute.local_port)
        except BaseException:
            await self.close_sockets()
            raise

    async def close_sockets(self) -> None:
        with anyio.CancelScope(shield=True):
            for listener in self.listeners:
                for sock in listener.sockets:
                    await sock.aclose()
                listener.sockets = []

    async def launch(self, core: EngineCore) -> None:
        """Start a run with ``core`` (the listeners are open)."""
        assert self.tg is not None
        self.core = core
        self.generation += 1
        self._gen_done = anyio.Event()
        await self.tg.start(self._run_generation, core)

    async def _run_generation(
        self, core: EngineCore, *, task_status: anyio.abc.TaskStatus[None]
    ) -> None:
        assert self._gen_done is not None
        done = self._gen_done
        try:
            with anyio.CancelScope() as scope:
                self._gen_scope = scope
                async with anyio.create_task_group() as tg:
                    await tg.start(core.run)
                    for listener in self.listeners:
                        for sock in listener.sockets:
                            tg.start_soon(self._accept_loop, listener, sock, core, tg)
                    task_status.started()
        finally:
            self._gen_scope = None
            await self.close_sockets()
            done.set()

    async def stop(self) -> None:
        """Close the listeners and drop every connection (like killing the engine)."""
        scope, done = self._gen_scope, self._gen_done
        if scope is None or done is None:
            return
        scope.cancel()
        await done.wait()

    async def listen(
        self, name: str, scheme: str, host: Optional[str], port: int
    ) -> anyio.abc.Listener[anyio.abc.SocketStream]:
        """A worker module's own listener: same port across restarts, URL published."""
        bind = host or self.host
        port = port or self._module_ports.get(name, 0)
        listener = await anyio.create_tcp_listener(local_host=bind, local_port=port)
        socks = [s for s in listener.listeners if isinstance(s, anyio.abc.SocketListener)]
        bound = socks[0].extra(SocketAttribute.local_port) if socks else port
        self._module_ports[name] = bound
        self.urls[name] = _url(scheme, bind, bound)
        return listener

    async def _accept_loop(
        self,
        listener: Listener,
        sock: anyio.abc.SocketListener,
        core: EngineCore,
        tg: anyio.abc.TaskGroup,
    ) -> None:
        while True:
            try:
                stream = await sock.accept()
            except (anyio.ClosedResourceError, anyio.BrokenResourceError):
                return
            except OSError as exc:
                log.warning("accept failed on %s: %s", listener.url, exc)
                await anyio.sleep(0.05)
                continue
            tg.start_soon(self._serve_connection, stream, listener, core)

    # -- one connection --------------------------------------------------------------

    async def _serve_connection(
        self, stream: anyio.abc.SocketStream, listener: Listener, core: EngineCore
    ) -> None:
        try:
            await self.handle(stream, listener, core)
        except Exception:
            log.exception("connection handler failed")
        finally:
            with anyio.CancelScope(shield=True), anyio.move_on_after(1):
                await stream.aclose()

    async def _handshake(
        self, stream: anyio.abc.SocketStream
    ) -> Optional[tuple[WSConnection, Request, dict[str, str], bytes]]:
        data = b""
        idx = -1  # stays -1 when the timeout strikes before any data
        with anyio.move_on_after(self.handshake_timeout):
            while True:
                try:
                    data += await stream.receive(65536)
                except (anyio.EndOfStream, anyio.BrokenResourceError, OSError):
                    return None
                idx = data.find(b"\r\n\r\n")
                if idx >= 0:
                    break
                if len(data) > _MAX_HEAD:
                    await _send_quietly(
                        stream,
                        b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
                        b"content-length: 0\r\nconnection: close\r\n\r\n",
                    )
                    return None
        if idx < 0:
            return None
        head, rest = data[: idx + 4], data[idx + 4 :]
        ws = WSConnection(ConnectionType.SERVER)
        try:
            ws.receive_data(head)
            for event in ws.events():
                if isinstance(event, Request):
                    return ws, event, _parse_headers(head), rest
        except (RemoteProtocolError, UnicodeError) as exc:
            # (wsproto lets a non-ASCII Host or Connection header escape as UnicodeError.)
            hint = getattr(exc, "event_hint", None)
            body = f"{exc}\n".encode()
            try:
                status = hint.status_code if isinstance(hint, RejectConnection) else 400
                await _send_quietly(stream, _http_response(ws, status, body))
            except LocalProtocolError:
                await _send_quietly(
                    stream,
                    b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                )
        return None

    def _conn(
        self,
        stream: anyio.abc.SocketStream,
        ws: WSConnection,
        core: EngineCore,
        label: str,
        leftover: bytes,
    ) -> WsConn:
        remote_port = None
        try:
            remote = stream.extra(SocketAttribute.remote_address)
            remote_ip = str(remote[0]) if isinstance(remote, tuple) else str(remote)
            if isinstance(remote, tuple):
                remote_port = remote[1]
        except Exception:
            remote_ip = ""
        conn = WsConn(
            stream,
            ws,
            remote_ip=remote_ip,
            label=label,
            transcript=self.transcript,
            congestion=core.congestion,
            relieve=core.relieve,
            max_message_size=self.max_message_size,
            max_frame_size=self.max_frame_size,
            leftover=leftover,
        )
        if remote_port is not None:
            host = f"[{remote_ip}]" if ":" in remote_ip else remote_ip
            conn.remote_addr = f"{host}:{remote_port}"
        return conn

    async def serve_websocket(
        self, stream: anyio.abc.SocketStream, route: WsRoute, core: EngineCore
    ) -> None:
        """A connection on a worker module's WebSocket listener: ``route`` answers it."""
        try:
            await self.handle(stream, _MODULE_LISTENER, core, route)
        except Exception:
            log.exception("connection handler failed")
        finally:
            with anyio.CancelScope(shield=True), anyio.move_on_after(1):
                await stream.aclose()

    async def handle(
        self,
        stream: anyio.abc.SocketStream,
        listener: Listener,
        core: EngineCore,
        only: Optional[WsRoute] = None,
    ) -> None:
        """Serve one accepted TCP connection until it ends (``only``: every path
        goes to that route, on a module's own listener)."""
        shake = await self._handshake(stream)
        if shake is None:
            return
        ws, request, headers, leftover = shake
        target = urllib.parse.urlsplit(request.target)
        path = target.path
        query = urllib.parse.parse_qs(target.query, keep_blank_values=True)
        n = next(self._counter)
        serve = None
        if only is None and path == "/":
            route, label = "main", f"pending:{n}"
        elif only is None and path == "/otel":
            route, label = "otel", f"otel:{n}"
        else:
            found = only if only is not None else core.find_route(path)
            if found is None:
                await _send_quietly(stream, _http_response(ws, 404, b"Not Found\n"))
                return
            answer = found(path, query)
            if isinstance(answer[0], int):
                status, body = answer
                assert isinstance(body, bytes)
                await _send_quietly(stream, _http_response(ws, status, body))
                return
            route = "module"
            label, serve = answer
        try:
            await stream.send(ws.send(AcceptConnection()))
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
            return
        conn = self._conn(stream, ws, core, label, leftover)
        conn.headers = headers
        if self.transcript is not None and route != "main":
            self.transcript.record(label, "in", "open", request.target)
        self.conns.add(conn)
        try:
            async with conn.running():
                if route == "module":
                    assert serve is not None
                    await serve(conn)
                    return
                ok, session = await self._session(
                    conn, listener, core, headers, query, request.target
                )
                if not ok:
                    return
                if route == "main":
                    await self._serve_main(conn, listener, core, session, request.target)
                else:
                    await self._serve_otel(conn, core)
        finally:
            self.conns.discard(conn)
            if self.transcript is not None:
                self.transcript.record(conn.label, "out", "end", None)

    async def _session(
        self,
        conn: WsConn,
        listener: Listener,
        core: EngineCore,
        headers: Mapping[str, str],
        query: Mapping[str, list[str]],
        target: str,
    ) -> tuple[bool, Optional[Session]]:
        if listener.rbac is None:
            return True, None
        try:
            session = await authenticate(core, listener.rbac, headers, query, conn.remote_ip)
            return True, session
        except AuthFailure as exc:
            log.warning("authentication failed on %s: %s", listener.url, exc)
            if self.transcript is not None and conn.label.startswith("pending:"):
                self.transcript.record(conn.label, "in", "open", target)
            frame = ErrorFrame(error=ErrorBody(code="AUTH_ERROR", message=str(exc)))
            conn.send(encode_frame(frame).encode(), False)
            conn.close(None)
            await conn.read_loop(_ignore)
            return False, None

    async def _serve_main(
        self,
        conn: WsConn,
        listener: Listener,
        core: EngineCore,
        session: Optional[Session],
        target: str,
    ) -> None:
        worker_id = new_id()
        conn.label = worker_id
        if self.transcript is not None:
            self.transcript.record(worker_id, "in", "open", target)
        worker = core.connect(conn, session=session, listener=listener.name, worker_id=worker_id)
        self.workers_by_conn[worker.worker_id] = conn
        handle_text = core.handle_text

        def on_message(kind: str, payload: Union[str, bytes]) -> None:
            if not _telemetry_counted(core, kind, payload):
                handle_text(worker, payload)

        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(core.grace_timer, worker)
                await conn.read_loop(on_message)
                tg.cancel_scope.cancel()
        finally:
            self.workers_by_conn.pop(worker.worker_id, None)
            core.disconnect(worker)

    async def _serve_otel(self, conn: WsConn, core: EngineCore) -> None:
        def on_message(kind: str, payload: Union[str, bytes]) -> None:
            _telemetry_counted(core, kind, payload)

        await conn.read_loop(on_message)

    def worker_conn(self, worker_id: str) -> WsConn:
        conn = self.workers_by_conn.get(worker_id)
        if conn is None:
            raise KeyError(f"no connected worker {worker_id!r}")
        return conn

    def worker(self, worker_id: str) -> Optional[Worker]:
        return self.core.workers.get(worker_id) if self.core is not None else None

    def describe(self) -> JSONObject:
        return {"connections": len(self.conns), "generation": self.generation}
