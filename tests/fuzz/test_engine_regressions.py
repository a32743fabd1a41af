"""Reference-engine bugs the fuzzers found, reproduced over real sockets.

Each input is also kept in ``fuzz/corpus/engine/regress-*``.
"""

from __future__ import annotations

import logging
from typing import Any

import anyio
import pytest

from iii.testing import serve_engine
from iii.testing._engine import MAX_JSON_DEPTH, json_too_deep
from tests.engine.conftest import close_clients
from tests.engine.test_http_functions import HttpStub
from tests.engine.wsclient import Peer, new_id, settle

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _failures(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]


async def test_handshake_timeout_before_any_byte_closes_quietly(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # regress-handshake-timeout: ``idx`` was unbound when the timeout struck
    # before the first byte, so the handler died with UnboundLocalError.
    async with serve_engine(handshake_timeout=0.2) as engine:
        stream = await anyio.connect_tcp("127.0.0.1", engine.port)
        async with stream:
            with anyio.fail_after(5):
                with pytest.raises((anyio.EndOfStream, anyio.BrokenResourceError)):
                    await stream.receive()
    assert _failures(caplog) == []


async def test_non_ascii_host_header_is_a_400(caplog: pytest.LogCaptureFixture) -> None:
    # regress-nonascii-host: wsproto decodes Host as IDNA and let the
    # UnicodeDecodeError escape the handshake.
    async with serve_engine() as engine:
        stream = await anyio.connect_tcp("127.0.0.1", engine.port)
        async with stream:
            await stream.send(
                b"GET / HTTP/1.1\r\nHost: 127.0.\xd6\xd6.1:49134\r\nUpgrade: websocket\r\n"
                b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                b"Sec-WebSocket-Version: 13\r\n\r\n"
            )
            answer = b""
            with anyio.fail_after(5):
                while b"\r\n\r\n" not in answer:
                    answer += await stream.receive()
        assert answer.startswith(b"HTTP/1.1 400 "), answer
    assert _failures(caplog) == []


def _nested(depth: int) -> Any:
    """``depth`` nested arrays around 1."""
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


def _deep_text(depth: int) -> str:
    return "[" * depth + "1" + "]" * depth


def test_json_depth() -> None:
    assert not json_too_deep(_nested(MAX_JSON_DEPTH))
    assert json_too_deep(_nested(MAX_JSON_DEPTH + 1))
    assert not json_too_deep({"a": _nested(MAX_JSON_DEPTH - 1)})
    assert json_too_deep({"a": [1, {"b": _nested(MAX_JSON_DEPTH - 1)}]})
    assert not json_too_deep("[[[[")


async def test_deep_payloads_are_dropped_and_everybody_keeps_working(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # regress-deep-data / regress-deep-metadata: orjson writes at most 255
    # levels; a deeper payload crashed the handler of whoever the engine wrote
    # it to (the caller, or every worker listing functions).  The engine now
    # refuses frames nested deeper than serde_json reads (127), like the real one.
    async with serve_engine(namespace_grace=0.3) as engine:
        try:
            handler = await Peer.join(engine.url, "deep-handler")
            await handler.register("deep::fn")
            await settle(handler)
            deep = _deep_text(300)
            inv = new_id()
            await handler.send(
                f'{{"type":"invokefunction","function_id":"deep::fn","invocation_id":"{inv}",'
                f'"data":{deep}}}'
            )
            await handler.send(f'{{"type":"registerfunction","id":"deep::meta","metadata":{deep}}}')
            # Just under the limit is routed.
            ok = _deep_text(MAX_JSON_DEPTH - 2)  # inside the frame object: 126 levels
            await handler.send(
                f'{{"type":"invokefunction","function_id":"deep::fn",'
                f'"invocation_id":"{new_id()}","data":{ok}}}'
            )
            frame = await handler.recv_type("invokefunction")
            assert frame["data"] == _nested(MAX_JSON_DEPTH - 2)
            other = await Peer.join(engine.url, "lister")
            listed = await other.call("engine::functions::list", {})
            assert "error" not in listed, listed
            ids = {f["function_id"] for f in listed["result"]["functions"]}
            assert "deep::fn" in ids and "deep::meta" not in ids
            await settle(handler, other)
            assert engine.core.bad_frames == 2
        finally:
            await close_clients()
    assert _failures(caplog) == []


async def test_a_too_deep_http_response_is_not_json(caplog: pytest.LogCaptureFixture) -> None:
    stub = HttpStub()
    async with serve_engine(namespace_grace=0.3) as engine, anyio.create_task_group() as tg:
        try:
            await tg.start(stub.serve)
            worker = await Peer.join(engine.url, "http-owner")
            url = f"http://127.0.0.1:{stub.port}/deep"
            await worker.register("deep::http", invocation={"url": url})
            await settle(worker)
            stub.replies.append((200, _deep_text(300).encode()))
            answer = await worker.call("deep::http", {})
            assert answer["error"]["code"] == "invalid_response", answer
            tg.cancel_scope.cancel()
        finally:
            await close_clients()
    assert _failures(caplog) == []
