"""Fuzz the reference engine's connection handling (``iii.testing``), in memory.

One input is what a hostile client sends on one TCP connection.  It is served
by ``Server.handle`` -- the same code a real socket goes through: the HTTP
upgrade, routing, WebSocket framing, ``EngineCore`` -- over an in-memory byte
stream, on trio with a virtual clock (timers fire instantly; a handler that
waits forever shows up as a virtual-time timeout).  Two well-behaved workers
share the engine: a provider of ``good::echo`` (which answers every call) and
a caller.

Input layout:

* byte 0, flags: ``1``: a valid upgrade request is sent first (the input is
  WebSocket bytes); otherwise the input starts with the HTTP request.  ``2``:
  the rest is a list of messages separated by ``FF FF``, each sent as one
  masked text frame (``4``: binary; ``8``: in three fragments with a ping
  between them); an empty message means "pause 6 s" (grace and ack timers
  fire; at most 10 pauses).  ``16``: the connection is on an RBAC listener that exposes
  ``good::*`` (``32``: with ``good::mw`` as its middleware).  ``64``: the
  client stays connected 30 s after its last byte instead of closing.
* byte 1: read size (0 = everything at once).
* the rest: the bytes (or messages).

Invariants: the handler returns (no exception, no hang); the engine writes at
most a bounded amount; afterwards the connection is gone from every registry
(no function, binding, trigger type, name or running invocation of it is
left), and the other workers still work: a call from the caller to
``good::echo`` reaches the provider and its result comes back to the caller.

    python fuzz/fuzz_engine.py -max_total_time=60
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Optional, Union

import anyio
import anyio.abc
import orjson
from trio.testing import MockClock

from iii.testing._core import EngineCore
from iii.testing._handle import Engine
from iii.testing._options import EngineOptions
from iii.testing._rbac import RbacConfig
from iii.testing._records import Worker
from iii.testing._server import Listener
from iii.testing._workers import http_functions
from iii_protocol.strategies import OP_BINARY, OP_CONTINUATION, OP_PING, OP_TEXT, ws_frame

LIMIT = 4096
SEPARATOR = b"\xff\xff"
MASK = b"\x00\x00\x00\x00"  # a zero mask keeps the payload readable in the corpus
MAX_OUTPUT = 8 * 1024 * 1024
MAX_PAUSES = 10
#: Virtual seconds one input may take: its pauses, lingering, every engine timer.
HANG = 3600.0
UPGRADE = (
    b"GET / HTTP/1.1\r\nHost: 127.0.0.1:49134\r\nUpgrade: websocket\r\n"
    b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    b"Sec-WebSocket-Version: 13\r\n\r\n"
)
GOOD = "good::echo"
MIDDLEWARE = "good::mw"


async def _no_http(*args: object, **kwargs: object) -> tuple[object, Optional[dict[str, Any]]]:
    # HTTP-invoked functions must not reach the network while fuzzing.
    return None, {"code": "http_error", "message": "no network while fuzzing"}


@contextmanager
def _sandbox() -> Iterator[None]:
    """No network, no log output (the engine logs every bad frame), for one input."""
    logger = logging.getLogger("iii.testing")  # and its children (the worker modules')
    invoke_http, level = http_functions.invoke_http, logger.level
    http_functions.invoke_http = _no_http  # type: ignore[assignment]
    logger.setLevel(logging.CRITICAL + 1)
    try:
        yield
    finally:
        http_functions.invoke_http = invoke_http
        logger.setLevel(level)


class MemoryStream(anyio.abc.ByteStream):
    """The client end of one connection: delivers the input, then EOF."""

    def __init__(self, items: list[Union[bytes, float]], linger: float) -> None:
        self.items = items
        self.linger = linger
        self.out = bytearray()
        self.closed = False

    async def receive(self, max_bytes: int = 65536) -> bytes:
        while self.items:
            item = self.items.pop(0)
            if isinstance(item, float):
                await anyio.sleep(item)
                continue
            if len(item) > max_bytes:
                self.items.insert(0, item[max_bytes:])
                item = item[:max_bytes]
            if item:
                return item
        if self.linger:
            linger, self.linger = self.linger, 0.0
            await anyio.sleep(linger)
        raise anyio.EndOfStream

    async def send(self, item: bytes) -> None:
        if self.closed:
            raise anyio.ClosedResourceError
        self.out += item
        assert len(self.out) <= MAX_OUTPUT, "the engine keeps writing"

    async def send_eof(self) -> None:
        pass

    async def aclose(self) -> None:
        self.closed = True


class FakeTransport:
    """A well-behaved worker plugged straight into the core."""

    remote_ip = "10.0.0.1"

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []
        self.closed: Optional[int] = None
        self.aborted = False
        self.wake = anyio.Event()

    def send(self, data: bytes, throttle: bool) -> None:
        self.sent.append(orjson.loads(data))
        self.wake.set()

    def close(self, code: Optional[int]) -> None:
        self.closed = code

    def abort(self) -> None:
        self.aborted = True


def _text(obj: dict[str, Any]) -> bytes:
    return orjson.dumps(obj)


async def _provider_loop(core: EngineCore, worker: Worker, transport: FakeTransport) -> None:
    """Answer every call the provider gets, like a handler would."""
    done = 0
    while True:
        await transport.wake.wait()
        transport.wake = anyio.Event()
        while done < len(transport.sent):
            frame = transport.sent[done]
            done += 1
            if frame.get("type") != "invokefunction" or "invocation_id" not in frame:
                continue
            core.handle_text(
                worker,
                _text(
                    {
                        "type": "invocationresult",
                        "invocation_id": frame["invocation_id"],
                        "function_id": frame["function_id"],
                        "result": {"echo": frame.get("data")},
                    }
                ),
            )
        await core.relieve()


def _good_worker(core: EngineCore, name: str, functions: tuple[str, ...]) -> tuple[Worker, Any]:
    transport = FakeTransport()
    worker = core.connect(transport)
    announce = {"name": name, "pid": 1, "runtime": "fuzz"}
    core.handle_text(
        worker,
        _text(
            {
                "type": "invokefunction",
                "function_id": "engine::workers::register",
                "data": announce,
                "action": {"type": "void"},
            }
        ),
    )
    for function_id in functions:
        core.handle_text(worker, _text({"type": "registerfunction", "id": function_id}))
    assert worker.namespace == "default"
    return worker, transport


def _messages(payload: bytes, flags: int) -> Iterator[Union[bytes, float]]:
    opcode = OP_BINARY if flags & 4 else OP_TEXT
    pauses = MAX_PAUSES
    for message in payload.split(SEPARATOR):
        if not message:
            if pauses:  # bounded, or enough pauses would pass for a hang
                pauses -= 1
                yield 6.0
        elif flags & 8 and len(message) >= 3:
            third = len(message) // 3
            yield ws_frame(message[:third], opcode=opcode, fin=False, mask=MASK)
            yield ws_frame(b"p", opcode=OP_PING, mask=MASK)
            yield ws_frame(message[third : 2 * third], opcode=OP_CONTINUATION, fin=False, mask=MASK)
            yield ws_frame(message[2 * third :], opcode=OP_CONTINUATION, mask=MASK)
        else:
            yield ws_frame(message, opcode=opcode, mask=MASK)


def _items(data: bytes) -> tuple[list[Union[bytes, float]], int]:
    flags, size, payload = data[0], data[1], data[2:]
    parts: list[Union[bytes, float]] = list(_messages(payload, flags)) if flags & 2 else [payload]
    # Join the bytes, keep the pauses, then cut into reads of ``size``.
    joined: list[Union[bytes, float]] = [UPGRADE] if flags & 1 else []
    for part in parts:
        if isinstance(part, bytes) and joined and isinstance(joined[-1], bytes):
            joined[-1] += part
        else:
            joined.append(part)
    items: list[Union[bytes, float]] = []
    for part in joined:
        if isinstance(part, float) or size == 0:
            items.append(part)
        else:
            items.extend(part[i : i + size] for i in range(0, len(part), size))
    return items, flags


def _check_registries(core: EngineCore, live: set[str]) -> None:
    assert set(core.workers) == live, f"a connection outlived its socket: {set(core.workers)}"
    for key, entry in core.functions.items():
        assert entry.owner.worker_id in live, f"function {key} of a dead connection"
    for binding_id, binding in core.bindings.items():
        owner = binding.owner
        assert owner is None or owner.worker_id in live, f"binding {binding_id} of a dead owner"
    for key, t in core.trigger_types.items():
        assert t.provider is None or t.provider.worker_id in live, f"trigger type {key}"
    for key, w in core.names.items():
        assert w.worker_id in live, f"name {key} still leased by a dead connection"
    for inv_id, pending in core.pending.items():
        handler = pending.handler
        assert handler is None or handler.worker_id in live, (
            f"invocation {inv_id} on a dead handler"
        )
        caller = pending.caller
        assert caller is None or caller.worker_id in live, f"invocation {inv_id} for a dead caller"


async def _serve(data: bytes) -> None:
    items, flags = _items(data)
    options = EngineOptions(
        namespace_grace=5.0,
        trigger_ack_timeout=10.0,
        functions_poll_interval=1e9,
        channel_sweep_interval=1e9,
        rest_api=False,  # its own TCP listener is not what this target feeds
    )
    engine = Engine(
        transcript=False, max_message_size=LIMIT, handshake_timeout=10.0, options=options
    )
    rbac = None
    if flags & 16:
        rbac = RbacConfig(
            expose_functions=["good::*"],
            middleware_function_id=MIDDLEWARE if flags & 32 else None,
        )
    listener = Listener("rbac" if rbac else "main", "127.0.0.1", 49134, rbac)
    core = EngineCore(options)
    async with anyio.create_task_group() as tg:
        await tg.start(core.run)
        provider, p_transport = _good_worker(core, "good-provider", (GOOD, MIDDLEWARE))
        caller, c_transport = _good_worker(core, "good-caller", ())
        tg.start_soon(_provider_loop, core, provider, p_transport)
        stream = MemoryStream(items, linger=30.0 if flags & 64 else 0.0)
        with anyio.fail_after(HANG):
            await engine._server.handle(stream, listener, core)  # type: ignore[arg-type]
        _check_registries(core, {provider.worker_id, caller.worker_id})
        assert not provider.closing and not caller.closing, "a good worker was dropped"
        # The good workers still work.
        call_id = str(uuid.uuid4())
        core.handle_text(
            caller,
            _text(
                {
                    "type": "invokefunction",
                    "function_id": GOOD,
                    "invocation_id": call_id,
                    "data": {"n": 1},
                }
            ),
        )
        with anyio.fail_after(60):
            while True:
                answers = [f for f in c_transport.sent if f.get("invocation_id") == call_id]
                if answers:
                    break
                await c_transport.wake.wait()
                c_transport.wake = anyio.Event()
        assert len(answers) == 1, answers
        expected = {"n": 1, "_caller_worker_id": caller.worker_id}
        assert answers[0].get("result") == {"echo": expected}, answers[0]
        tg.cancel_scope.cancel()


def TestOneInput(data: bytes) -> None:
    if len(data) < 2:
        return
    with _sandbox():
        anyio.run(
            _serve, data, backend="trio", backend_options={"clock": MockClock(autojump_threshold=0)}
        )


if __name__ == "__main__":
    from _harness import main

    main("engine", TestOneInput, ("iii.testing", "iii_protocol", "wsproto", "h11"))
