"""A raw WebSocket client for engine tests (anyio + wsproto, client mode).

No SDK involved: tests write protocol frames by hand and read exactly what the
engine sends.
"""

from __future__ import annotations

import contextlib
import os
import urllib.parse
import uuid
from collections import deque
from typing import Any, Optional, TypeVar, Union

import anyio
import anyio.abc
from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Message,
    Ping,
    Pong,
    RejectConnection,
    RejectData,
    Request,
    TextMessage,
)
from wsproto.utilities import LocalProtocolError

from iii_protocol._json import dumps as json_dumps
from iii_protocol._json import loads as json_loads

Event = tuple[str, Any]
_Client = TypeVar("_Client", bound="RawClient")

#: Every client still open; the ``engine`` fixture closes them at teardown.
OPEN_CLIENTS: list[RawClient] = []


class Rejected(Exception):
    def __init__(self, status: int, body: bytes) -> None:
        super().__init__(f"HTTP {status}: {body!r}")
        self.status = status
        self.body = body


class Closed(Exception):
    def __init__(self, code: Optional[int], reason: str = "") -> None:
        super().__init__(f"connection closed ({code} {reason})")
        self.code = code
        self.reason = reason


def new_id() -> str:
    return str(uuid.uuid4())


class RawClient:
    accepted: AcceptConnection

    def __init__(self, stream: anyio.abc.ByteStream, ws: WSConnection, leftover: bytes) -> None:
        self.stream = stream
        self.ws = ws
        self.queue: deque[Event] = deque()
        self.frames: list[dict[str, Any]] = []
        self.auto_pong = True
        self.close_code: Optional[int] = None
        self.eof = False
        self._parts: list[Any] = []
        self._pending_out = b""
        #: frames read by ``settle`` and handed back to the next ``recv``
        self.pushback: deque[dict[str, Any]] = deque()
        # wsproto may already hold frames that arrived with the 101 response.
        self._feed(leftover)
        OPEN_CLIENTS.append(self)

    @classmethod
    async def connect(
        cls: type[_Client],
        url: str,
        path: str = "/",
        *,
        headers: Optional[list[tuple[bytes, bytes]]] = None,
        extensions: Optional[list[Any]] = None,
    ) -> _Client:
        parts = urllib.parse.urlsplit(url)
        host = parts.hostname or "127.0.0.1"
        port = parts.port or 80
        stream = await anyio.connect_tcp(host, port)
        ws = WSConnection(ConnectionType.CLIENT)
        await stream.send(
            ws.send(
                Request(
                    host=f"{host}:{port}",
                    target=path,
                    extra_headers=headers or [],
                    extensions=extensions or [],
                )
            )
        )
        status = 0
        body = b""
        with anyio.fail_after(5):
            while True:
                data = await stream.receive()
                ws.receive_data(data)
                for event in ws.events():
                    if isinstance(event, AcceptConnection):
                        # Anything after the 101 head is frame data wsproto kept.
                        client = cls(stream, ws, b"")
                        client.accepted = event
                        return client
                    if isinstance(event, RejectConnection):
                        status = event.status_code
                        if not event.has_body:
                            await stream.aclose()
                            raise Rejected(status, b"")
                    if isinstance(event, RejectData):
                        body += event.data
                        if event.body_finished:
                            await stream.aclose()
                            raise Rejected(status, body)

    # -- sending ---------------------------------------------------------------

    async def send(self, frame: Union[dict[str, Any], str]) -> None:
        text = frame if isinstance(frame, str) else json_dumps(frame)
        await self.stream.send(self.ws.send(Message(data=text)))

    async def send_bytes(self, data: bytes) -> None:
        await self.stream.send(self.ws.send(Message(data=data)))

    async def send_fragments(self, text: str, size: int) -> None:
        """One text message split into continuation frames of ``size`` characters."""
        for i in range(0, len(text), size):
            chunk = text[i : i + size]
            await self.stream.send(
                self.ws.send(Message(data=chunk, message_finished=i + size >= len(text)))
            )

    async def send_raw(self, data: bytes) -> None:
        await self.stream.send(data)

    async def ping(self, payload: bytes = b"hi") -> None:
        await self.stream.send(self.ws.send(Ping(payload=payload)))

    async def close(self, code: int = 1000) -> None:
        with contextlib.suppress(
            LocalProtocolError, anyio.BrokenResourceError, anyio.ClosedResourceError
        ):
            await self.stream.send(self.ws.send(CloseConnection(code=code)))
        with anyio.move_on_after(2):
            try:
                while self.close_code is None and not self.eof:
                    await self._receive_some()
            except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
                pass
        await self.stream.aclose()

    async def abort(self) -> None:
        await self.stream.aclose()

    # -- receiving -------------------------------------------------------------

    def _feed(self, data: bytes) -> None:
        if data:
            self.ws.receive_data(data)
        for event in self.ws.events():
            if isinstance(event, (TextMessage, BytesMessage)):
                self._parts.append(event.data)
                if event.message_finished:
                    if isinstance(event, TextMessage):
                        self.queue.append(("text", "".join(self._parts)))
                    else:
                        self.queue.append(("binary", b"".join(self._parts)))
                    self._parts = []
            elif isinstance(event, Ping):
                self.queue.append(("ping", bytes(event.payload)))
                if self.auto_pong:
                    self._pending_out = self.ws.send(event.response())
            elif isinstance(event, Pong):
                self.queue.append(("pong", bytes(event.payload)))
            elif isinstance(event, CloseConnection):
                self.close_code = event.code
                self.queue.append(("close", event.code))
                with contextlib.suppress(LocalProtocolError):
                    self._pending_out = self.ws.send(event.response())

    async def _receive_some(self) -> None:
        try:
            data = await self.stream.receive(1 << 20)
        except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError):
            self.eof = True
            self.queue.append(("eof", None))
            return
        self._pending_out = b""
        self._feed(data)
        if self._pending_out:
            with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError):
                await self.stream.send(self._pending_out)

    async def next_event(self, timeout: float = 5.0) -> Event:
        with anyio.fail_after(timeout):
            while not self.queue:
                if self.eof:
                    return ("eof", None)
                await self._receive_some()
            return self.queue.popleft()

    async def recv(self, timeout: float = 5.0) -> dict[str, Any]:
        """The next JSON frame (pings and pongs skipped); ``Closed`` on close/EOF."""
        if self.pushback:
            return self.pushback.popleft()
        while True:
            kind, payload = await self.next_event(timeout)
            if kind == "text":
                frame = json_loads(payload)
                if not isinstance(frame, dict):
                    raise AssertionError(f"a frame that is not a JSON object: {payload[:80]!r}")
                self.frames.append(frame)
                return frame
            if kind in ("close", "eof"):
                raise Closed(payload if kind == "close" else None)
            if kind == "binary":
                raise AssertionError(f"unexpected binary message {payload[:40]!r}")

    async def recv_type(self, type_: str, timeout: float = 5.0) -> dict[str, Any]:
        """The next frame of ``type_``; other frames are kept in ``self.skipped``."""
        while True:
            frame = await self.recv(timeout)
            if frame.get("type") == type_:
                return frame
            self.skipped.append(frame)

    @property
    def skipped(self) -> list[dict[str, Any]]:
        if not hasattr(self, "_skipped"):
            self._skipped: list[dict[str, Any]] = []
        return self._skipped

    async def expect_silence(self, seconds: float = 0.2) -> None:
        """Assert that no frame arrives within ``seconds``."""
        with anyio.move_on_after(seconds):
            frame = await self.recv(seconds + 1)
            raise AssertionError(f"unexpected frame {frame}")

    async def wait_closed(self, timeout: float = 5.0) -> Optional[int]:
        """Read until the engine closes; the close code (None: no Close frame)."""
        while True:
            kind, payload = await self.next_event(timeout)
            if kind == "close":
                return payload  # type: ignore[no-any-return]
            if kind == "eof":
                return None


class Peer(RawClient):
    """A worker speaking the protocol by hand."""

    worker_id: str
    token: Optional[str]

    @classmethod
    async def join(
        cls,
        url: str,
        name: Optional[str] = None,
        *,
        namespace: Optional[str] = None,
        announce: bool = True,
        headers: Optional[list[tuple[bytes, bytes]]] = None,
        **extra: Any,
    ) -> Peer:
        """Connect, read ``workerregistered``, and announce (unless told not to)."""
        peer = await cls.connect(url, headers=headers)
        first = await peer.recv()
        assert first["type"] == "workerregistered", first
        peer.worker_id = first["worker_id"]
        peer.token = first.get("reattach_token")
        if announce:
            await peer.announce(name, namespace=namespace, **extra)
        return peer

    async def announce(
        self, name: Optional[str] = None, *, namespace: Optional[str] = None, **extra: Any
    ) -> None:
        data: dict[str, Any] = {"runtime": "python", "version": "test", "pid": os.getpid()}
        if name is not None:
            data["name"] = name
        if namespace is not None:
            data["namespace"] = namespace
        data.update(extra)
        await self.send(
            {
                "type": "invokefunction",
                "function_id": "engine::workers::register",
                "data": data,
                "action": {"type": "void"},
            }
        )

    async def register(self, function_id: str, **fields: Any) -> None:
        await self.send({"type": "registerfunction", "id": function_id, **fields})

    async def invoke(
        self,
        function_id: str,
        data: Any = None,
        *,
        invocation_id: Optional[str] = None,
        **fields: Any,
    ) -> str:
        inv = invocation_id or new_id()
        await self.send(
            {
                "type": "invokefunction",
                "function_id": function_id,
                "data": data,
                "invocation_id": inv,
                **fields,
            }
        )
        return inv

    async def call(self, function_id: str, data: Any = None, **fields: Any) -> dict[str, Any]:
        """Invoke and wait for the matching ``invocationresult``."""
        inv = await self.invoke(function_id, data, **fields)
        while True:
            frame = await self.recv_type("invocationresult")
            if frame["invocation_id"] == inv:
                return frame
            self.skipped.append(frame)

    async def result(
        self, invocation_id: str, result: Any = None, *, function_id: str = "", **fields: Any
    ) -> None:
        frame = {
            "type": "invocationresult",
            "invocation_id": invocation_id,
            "function_id": function_id,
            "result": result,
            **fields,
        }
        await self.send(frame)

    async def serve(self, reply: Any = "echo", count: int = 1) -> list[dict[str, Any]]:
        """Answer ``count`` invocations: echo the data back (or return ``reply``)."""
        seen = []
        for _ in range(count):
            frame = await self.recv_type("invokefunction")
            seen.append(frame)
            value = frame["data"] if reply == "echo" else reply
            await self.result(frame["invocation_id"], value, function_id=frame["function_id"])
        return seen


async def settle(*peers: RawClient) -> list[dict[str, Any]]:
    """Round-trip a protocol ping on each peer: everything it sent before has
    been processed by the engine (it handles one connection's frames in order).

    Returns the frames that arrived before the pongs; they stay queued for ``recv``.
    """
    seen: list[dict[str, Any]] = []
    for peer in peers:
        await peer.send({"type": "ping"})
        early: list[dict[str, Any]] = []
        while True:
            frame = await peer.recv()
            if frame.get("type") == "pong":
                break
            early.append(frame)
        peer.pushback.extendleft(reversed(early))
        seen.extend(early)
    return seen


UUID4 = r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$"
