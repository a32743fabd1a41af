"""HTTP-invoked functions (docs/protocol.md#http-functions): the engine calls the registered URL."""

from __future__ import annotations

import base64
import hashlib
import hmac

import anyio
import h11
import orjson
import pytest

from .wsclient import Peer, settle

pytestmark = pytest.mark.anyio


class HttpStub:
    """A one-route HTTP server answering from a script, recording requests."""

    def __init__(self) -> None:
        self.requests: list[tuple[h11.Request, bytes]] = []
        self.replies: list[tuple[int, bytes]] = []
        self.port = 0

    async def serve(self, *, task_status=anyio.TASK_STATUS_IGNORED) -> None:
        async with await anyio.create_tcp_listener(local_host="127.0.0.1") as listener:
            self.port = listener.extra(anyio.abc.SocketAttribute.local_port)
            task_status.started()
            await listener.serve(self.handle)

    async def handle(self, stream) -> None:
        async with stream:
            conn = h11.Connection(h11.SERVER)
            request = None
            body = b""
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    conn.receive_data(await stream.receive())
                    continue
                if isinstance(event, h11.Request):
                    request = event
                elif isinstance(event, h11.Data):
                    body += event.data
                elif isinstance(event, h11.EndOfMessage):
                    break
            assert request is not None
            self.requests.append((request, body))
            status, payload = self.replies.pop(0) if self.replies else (200, b"")
            headers = [("content-length", str(len(payload)))]
            out = conn.send(h11.Response(status_code=status, headers=headers))
            out += conn.send(h11.Data(data=payload)) if payload else b""
            out += conn.send(h11.EndOfMessage())
            await stream.send(out)

    def headers(self, index: int = -1) -> dict[str, str]:
        request = self.requests[index][0]
        return {k.decode().lower(): v.decode() for k, v in request.headers}


async def test_http_function_calls_and_results(engine, monkeypatch):
    monkeypatch.setenv("HOOK_TOKEN", "s3cret")
    stub = HttpStub()
    async with anyio.create_task_group() as tg:
        await tg.start(stub.serve)
        owner = await Peer.join(engine.url, "http-owner")
        await owner.register(
            "ext::fn",
            invocation={
                "url": f"http://127.0.0.1:{stub.port}/hook?x=1",
                "headers": {"x-custom": "v"},
                "auth": {"type": "bearer", "token_key": "HOOK_TOKEN"},
            },
        )
        caller = await Peer.join(engine.url, "caller")
        await settle(owner)
        assert engine.functions()[0]["http"] is True

        stub.replies = [
            (200, b'{"ok": true}'),
            (200, b""),
            (200, b"not json"),
            (404, b'{"error": {"code": "nope", "message": "no such thing"}}'),
            (500, b"boom"),
        ]
        result = await caller.call("ext::fn", {"a": 1})
        assert result["result"] == {"ok": True}
        request, body = stub.requests[0]
        assert request.method == b"POST" and request.target == b"/hook?x=1"
        assert orjson.loads(body) == {"a": 1, "_caller_worker_id": caller.worker_id}
        headers = stub.headers(0)
        assert headers["authorization"] == "Bearer s3cret"
        assert headers["x-custom"] == "v"
        assert headers["content-type"] == "application/json"
        assert headers["x-iii-function-path"] == "ext::fn"
        assert headers["x-iii-invocation-id"] == result["invocation_id"]
        assert headers["x-iii-timestamp"].isdigit()
        assert "result" not in await caller.call("ext::fn", 1)
        assert (await caller.call("ext::fn", 1))["error"]["code"] == "invalid_response"
        assert (await caller.call("ext::fn", 1))["error"] == {
            "code": "nope",
            "message": "no such thing",
        }
        assert (await caller.call("ext::fn", 1))["error"] == {
            "code": "http_error",
            "message": "HTTP 500",
        }
        # The owner's disconnect removes the function.
        await owner.abort()
        await engine.wait_for(lambda: not engine.functions())
        tg.cancel_scope.cancel()


async def test_http_function_hmac_and_failures(engine, monkeypatch):
    monkeypatch.setenv("HOOK_SECRET", "k")
    monkeypatch.delenv("NOT_SET", raising=False)
    stub = HttpStub()
    async with anyio.create_task_group() as tg:
        await tg.start(stub.serve)
        owner = await Peer.join(engine.url, "http-owner")
        url = f"http://127.0.0.1:{stub.port}/h"
        await owner.register(
            "ext::signed",
            invocation={
                "url": url,
                "method": "PUT",
                "auth": {"type": "hmac", "secret_key": "HOOK_SECRET"},
            },
        )
        await owner.register(
            "ext::nokey",
            invocation={
                "url": url,
                "auth": {"type": "api_key", "header": "x-api-key", "value_key": "NOT_SET"},
            },
        )
        await owner.register("ext::down", invocation={"url": "http://127.0.0.1:1/x"})
        await owner.register("ext::badurl", invocation={"url": "ftp://example/x"})
        await settle(owner)
        stub.replies = [(201, b"[1]")]
        result = await owner.call("ext::signed", "payload")
        assert result["result"] == [1]
        request, body = stub.requests[0]
        assert request.method == b"PUT"
        headers = stub.headers(0)
        signed = f"{headers['x-iii-timestamp']}:{base64.b64encode(body).decode()}".encode()
        expected = hmac.new(b"k", signed, hashlib.sha256).hexdigest()
        assert headers["x-iii-signature"] == f"sha256={expected}"
        assert (await owner.call("ext::nokey", 1))["error"]["code"] == "missing_env_var"
        assert (await owner.call("ext::down", 1))["error"]["code"] == "http_request_failed"
        assert (await owner.call("ext::badurl", 1))["error"]["code"] == "url_validation_failed"
        tg.cancel_scope.cancel()
