"""Candidate: the floor, a bare client with no SDK doing the same request/response.

    python -m bench.workers.floor MODE URL [--json orjson|stdlib] [--handler sync]

What a reasonably efficient, simple Python client does, and nothing more:

* asyncio ``Protocol`` (inbound, outbound-async, pending, cold): frames parsed
  straight out of ``data_received``; each ``invokefunction`` is decoded, the
  handler called inline, the result encoded and masked, and all the answers
  to one read written at once.  Outbound calls are ``dict[id, Future]``.
* ``--handler sync`` (inbound): a reader thread on a blocking socket hands
  each invocation to a ``ThreadPoolExecutor(64)``; the pool thread encodes and
  sends its answer under a lock (the minimal design for off-loop handlers).
* ``outbound-sync``: one blocking socket, send and read until the answer.
* ``--runtime trio`` (outbound-async): a reader task, 32 callers, a send lock.

JSON is orjson by default (our SDK uses orjson), stdlib ``json`` with
``--json stdlib``.  Invocation ids are ``str(uuid.uuid4())``; frames are
masked with a fresh random key each (RFC 6455), as every SDK must.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Optional
from urllib.parse import urlsplit

import orjson

from bench import _ws
from bench.workers import _common as c

MODES = ["inbound", "cold", "outbound-sync", "outbound-async", "pending"]

NULL_CLIENT = False
_NULL_HEAD = b'{"type":"invocationresult","invocation_id":"'
_NULL_TAIL = b'","function_id":"bench::echo","result":null}'

loads: Callable[[bytes], Any] = orjson.loads
dumps: Callable[[Any], bytes] = orjson.dumps


def use_stdlib_json() -> None:
    import json

    global loads, dumps

    def _dumps(value: Any) -> bytes:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()

    loads = json.loads
    dumps = _dumps


def register_frame() -> bytes:
    return _ws.client_frame(dumps({"type": "registerfunction", "id": "bench::echo"}))


def result_frame(iid: str, fid: str, result: Any) -> bytes:
    return _ws.client_frame(
        dumps(
            {"type": "invocationresult", "invocation_id": iid, "function_id": fid, "result": result}
        )
    )


def invoke_frame(iid: str, fid: str, data: Any) -> bytes:
    return _ws.client_frame(
        dumps({"type": "invokefunction", "function_id": fid, "data": data, "invocation_id": iid})
    )


class CallFailed(Exception):
    pass


# -- asyncio ------------------------------------------------------------------------


class Client(asyncio.Protocol):
    """One WebSocket to the engine on the running asyncio loop."""

    def __init__(self, host: str, port: int, target: str, serve: bool) -> None:
        self.request = _ws.upgrade_request(host, port, target)
        self.serve = serve  # answer invocations of bench::echo
        self.transport: Optional[asyncio.Transport] = None
        self.http = bytearray()
        self.upgraded = False
        self.reader = _ws.FrameReader()
        self.pending: dict[str, asyncio.Future[Any]] = {}
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        if not self.upgraded:
            self.http += data
            end = self.http.find(b"\r\n\r\n")
            if end < 0:
                return
            if b" 101 " not in self.http[: self.http.find(b"\r\n")]:
                raise RuntimeError(f"upgrade refused: {bytes(self.http[:end])!r}")
            self.upgraded = True
            data = bytes(self.http[end + 4 :])
        out: list[bytes] = []
        if NULL_CLIENT:
            self.null_answers(data, out)
            if out and self.transport is not None:
                self.transport.write(b"".join(out))
            return
        for opcode, _fin, payload, _key in self.reader.feed(data):
            if opcode != _ws.OP_TEXT:
                if opcode == _ws.OP_PING:
                    out.append(_ws.client_frame(payload, _ws.OP_PONG))
                continue
            msg = loads(payload)
            kind = msg["type"]
            if kind == "invokefunction":
                iid = msg.get("invocation_id")
                result = c.echo(msg["data"])
                if iid is not None:
                    out.append(result_frame(iid, msg["function_id"], result))
            elif kind == "invocationresult":
                fut = self.pending.pop(msg["invocation_id"], None)
                if fut is not None and not fut.done():
                    error = msg.get("error")
                    if error is None:
                        fut.set_result(msg.get("result"))
                    else:
                        fut.set_exception(CallFailed(error))
            elif kind == "workerregistered":
                if self.serve:
                    out.append(register_frame())
                if not self.ready.done():
                    self.ready.set_result(None)
        if out and self.transport is not None:
            self.transport.write(b"".join(out))

    def null_answers(self, data: bytes, out: list[bytes]) -> None:
        """The stand-in check: answer without any JSON work (splice the id)."""
        for opcode, _fin, payload, _key in self.reader.feed(data):
            if opcode != _ws.OP_TEXT:
                continue
            i = payload.find(b'"invocation_id":"', 0, 200)
            if i >= 0 and payload.startswith(b'{"type":"invokefunction"'):
                iid = payload[i + 17 : i + 53]
                out.append(_ws.client_frame(_NULL_HEAD + iid + _NULL_TAIL))
            elif b'"workerregistered"' in payload:
                out.append(register_frame())
                if not self.ready.done():
                    self.ready.set_result(None)

    def call(self, fid: str, data: Any) -> asyncio.Future[Any]:
        iid = str(uuid.uuid4())
        fut = asyncio.get_running_loop().create_future()
        self.pending[iid] = fut
        assert self.transport is not None
        self.transport.write(invoke_frame(iid, fid, data))
        return fut


async def connect_asyncio(url: str, serve: bool) -> Client:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    loop = asyncio.get_running_loop()
    _, client = await loop.create_connection(lambda: Client(host, port, target, serve), host, port)
    await client.ready
    return client


async def asyncio_main(args: Any, url: str) -> None:
    if args.mode in ("inbound", "cold"):
        await connect_asyncio(url, serve=True)
        await asyncio.sleep(args.lifetime or float("inf"))
        return
    client = await connect_asyncio(url, serve=False)
    if args.mode == "outbound-async":

        def call() -> Any:
            return client.call("bench::echo", c.TINY_CALL)

        c.emit(await c.asyncio_callers(call, args.callers, args.warmup, args.duration))
    elif args.mode == "pending":
        # A coroutine per call, as the SDKs' ``trigger_async`` is one, so every
        # candidate's pending call is one Task around one coroutine.
        async def call(fid: str, data: Any) -> Any:
            return await client.call(fid, data)

        c.emit(await c.pending_memory(call, args.pending))


# -- blocking sockets ------------------------------------------------------------------


class Blocking:
    """One blocking socket: the reader is the caller (sync) or a thread (inbound)."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        host, port = parts.hostname or "127.0.0.1", parts.port or 80
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self.sock = socket.create_connection((host, port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.sendall(_ws.upgrade_request(host, port, target))
        self.reader = _ws.FrameReader()
        self.lock = threading.Lock()
        http = b""
        while b"\r\n\r\n" not in http:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise RuntimeError("engine closed during the upgrade")
            http += chunk
        head, _, rest = http.partition(b"\r\n\r\n")
        if b" 101 " not in head.split(b"\r\n")[0]:
            raise RuntimeError(f"upgrade refused: {head!r}")
        self.backlog: list[Any] = []
        if rest:
            self.backlog = self._messages(rest)
        while not any(m.get("type") == "workerregistered" for m in self.backlog):
            self.backlog += self.recv_messages()
        self.backlog = [m for m in self.backlog if m.get("type") != "workerregistered"]

    def _messages(self, data: bytes) -> list[Any]:
        out = []
        for opcode, _fin, payload, _key in self.reader.feed(data):
            if opcode == _ws.OP_TEXT:
                out.append(loads(payload))
            elif opcode == _ws.OP_PING:
                self.send(_ws.client_frame(payload, _ws.OP_PONG))
        return out

    def recv_messages(self) -> list[Any]:
        data = self.sock.recv(262144)
        if not data:
            raise RuntimeError("engine closed the connection")
        return self._messages(data)

    def send(self, frame: bytes) -> None:
        with self.lock:
            self.sock.sendall(frame)

    def call(self, fid: str, data: Any) -> Any:
        iid = str(uuid.uuid4())
        self.send(invoke_frame(iid, fid, data))
        while True:
            msgs, self.backlog = self.backlog or self.recv_messages(), []
            for msg in msgs:
                if msg.get("type") == "invocationresult" and msg.get("invocation_id") == iid:
                    return msg.get("result")

    def serve_threaded(self, workers: int) -> None:
        pool = ThreadPoolExecutor(workers, thread_name_prefix="floor-handler")

        def run(msg: Any) -> None:
            result = c.echo(msg["data"])
            iid = msg.get("invocation_id")
            if iid is not None:
                self.send(result_frame(iid, msg["function_id"], result))

        self.send(register_frame())
        while True:
            msgs, self.backlog = self.backlog or self.recv_messages(), []
            for msg in msgs:
                if msg.get("type") == "invokefunction":
                    pool.submit(run, msg)


# -- trio ------------------------------------------------------------------------------


async def trio_main(args: Any, url: str) -> None:
    import trio

    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    stream = await trio.open_tcp_stream(host, port)
    await stream.send_all(_ws.upgrade_request(host, port, target))
    http = b""
    while b"\r\n\r\n" not in http:
        http += await stream.receive_some(4096)
    _, _, rest = http.partition(b"\r\n\r\n")
    reader = _ws.FrameReader()
    pending: dict[str, list[Any]] = {}
    send_lock = trio.Lock()
    ready = trio.Event()

    def dispatch(data: bytes) -> None:
        for opcode, _fin, payload, _key in reader.feed(data):
            if opcode != _ws.OP_TEXT:
                continue
            msg = loads(payload)
            kind = msg["type"]
            if kind == "invocationresult":
                slot = pending.pop(msg["invocation_id"], None)
                if slot is not None:
                    slot.append(msg.get("result"))
                    slot[0].set()
            elif kind == "workerregistered":
                ready.set()

    async def read_loop() -> None:
        if rest:
            dispatch(rest)
        while True:
            data = await stream.receive_some(262144)
            if not data:
                return
            dispatch(data)

    async def call() -> Any:
        iid = str(uuid.uuid4())
        slot: list[Any] = [trio.Event()]
        pending[iid] = slot
        frame = invoke_frame(iid, "bench::echo", c.TINY_CALL)
        async with send_lock:
            await stream.send_all(frame)
        await slot[0].wait()
        return slot[1]

    async with trio.open_nursery() as nursery:
        nursery.start_soon(read_loop)
        await ready.wait()
        c.emit(await c.trio_callers(call, args.callers, args.warmup, args.duration))
        nursery.cancel_scope.cancel()


def main() -> None:
    args = c.parser(MODES).parse_args()
    if args.json == "stdlib":
        use_stdlib_json()
    elif args.json == "none":
        global NULL_CLIENT
        NULL_CLIENT = True
    url = c.url_with_pid(args.url)
    if args.mode == "outbound-sync":
        client = Blocking(url)
        c.emit(
            c.sync_callers(
                lambda: client.call("bench::echo", c.TINY_CALL), args.warmup, args.duration
            )
        )
    elif args.mode in ("inbound", "cold") and args.handler == "sync":
        Blocking(url).serve_threaded(64)
    elif args.runtime == "trio":
        import trio

        trio.run(trio_main, args, url)
    else:
        asyncio.run(asyncio_main(args, url))


if __name__ == "__main__":
    main()
