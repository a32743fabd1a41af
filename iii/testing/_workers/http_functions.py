"""The HTTP functions worker module (docs/protocol.md#http-functions): functions registered
with an ``invocation`` (a URL) run as one HTTP request per call, h11 over anyio.

Without this module (``http_functions=False``) such registrations are dropped
with an error log, like the real engine without its ``http_functions`` module.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import time
import urllib.parse
from typing import Optional

import anyio
import anyio.abc
import h11

from iii_protocol import HttpAuthApiKey, HttpAuthBearer, HttpAuthHmac, HttpInvocationRef
from iii_protocol._json import JSON

from .. import _jsonio as jsonio
from .._api import EngineWorker
from .._records import ErrorDict, FunctionEntry, json_too_deep

__all__ = ["HttpFunctions", "invoke_http"]
_MAX_RESPONSE = 64 * 1024 * 1024


def _err(code: str, message: str) -> tuple[JSON, Optional[ErrorDict]]:
    return None, {"code": code, "message": message}


def _env(name: str) -> Optional[str]:
    value = os.environ.get(name)
    return value if value else None


async def invoke_http(
    ref: HttpInvocationRef,
    function_id: str,
    invocation_id: str,
    data: JSON,
    traceparent: Optional[str],
) -> tuple[JSON, Optional[ErrorDict]]:
    """POST (or ``ref.method``) ``data`` as JSON; map the response to (result, error)."""
    url = urllib.parse.urlsplit(ref.url)
    if url.scheme not in ("http", "https") or not url.hostname:
        return _err("url_validation_failed", f"unsupported URL {ref.url!r}")
    host = url.hostname
    try:
        port = url.port or (443 if url.scheme == "https" else 80)
    except ValueError:
        return _err("url_validation_failed", f"bad port in {ref.url!r}")
    target = url.path or "/"
    if url.query:
        target += "?" + url.query
    body = jsonio.dumps(data)
    timestamp = str(int(time.time()))
    host_header = host if url.port is None else f"{host}:{url.port}"
    headers: list[tuple[str, str]] = [
        ("Host", host_header),
        ("Content-Type", "application/json"),
        ("Content-Length", str(len(body))),
        ("Connection", "close"),
        ("x-iii-Function-Path", function_id),
        ("x-iii-Invocation-ID", invocation_id),
        ("x-iii-Timestamp", timestamp),
    ]
    if traceparent:
        parts = traceparent.split("-")
        if len(parts) >= 2:
            headers.append(("x-iii-Trace-ID", parts[1]))
    for name, value in (ref.headers or {}).items():
        headers.append((name, value))
    auth = ref.auth
    if isinstance(auth, HttpAuthBearer):
        token = _env(auth.token_key)
        if token is None:
            return _err("missing_env_var", f"environment variable {auth.token_key} is not set")
        headers.append(("Authorization", f"Bearer {token}"))
    elif isinstance(auth, HttpAuthApiKey):
        key_value = _env(auth.value_key)
        if key_value is None:
            return _err("missing_env_var", f"environment variable {auth.value_key} is not set")
        headers.append((auth.header, key_value))
    elif isinstance(auth, HttpAuthHmac):
        secret = _env(auth.secret_key)
        if secret is None:
            return _err("secret_not_found", f"environment variable {auth.secret_key} is not set")
        signed = f"{timestamp}:{base64.b64encode(body).decode()}".encode()
        digest = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
        headers.append(("x-iii-Signature", f"sha256={digest}"))
    timeout = (ref.timeout_ms if ref.timeout_ms is not None else 30000) / 1000
    method = (ref.method or "POST").upper()
    with anyio.move_on_after(timeout) as scope:
        try:
            stream: anyio.abc.ByteStream
            if url.scheme == "https":
                stream = await anyio.connect_tcp(host, port, tls=True, tls_hostname=host)
            else:
                stream = await anyio.connect_tcp(host, port)
        except OSError as exc:
            return _err("http_request_failed", f"could not connect to {ref.url}: {exc}")
        async with stream:
            conn = h11.Connection(h11.CLIENT)
            try:
                out = conn.send(h11.Request(method=method, target=target, headers=headers))
                out = (out or b"") + (conn.send(h11.Data(data=body)) or b"")
                out += conn.send(h11.EndOfMessage()) or b""
                await stream.send(out)
            except (OSError, anyio.BrokenResourceError, h11.LocalProtocolError) as exc:
                return _err("http_request_failed", f"request to {ref.url} failed: {exc}")
            status = 0
            chunks: list[bytes] = []
            size = 0
            try:
                while True:
                    event = conn.next_event()
                    if event is h11.NEED_DATA:
                        try:
                            conn.receive_data(await stream.receive())
                        except anyio.EndOfStream:
                            conn.receive_data(b"")
                        continue
                    if isinstance(event, h11.Response):
                        status = event.status_code
                    elif isinstance(event, h11.InformationalResponse):
                        continue
                    elif isinstance(event, h11.Data):
                        size += len(event.data)
                        if size > _MAX_RESPONSE:
                            return _err("http_response_failed", "response body too large")
                        chunks.append(bytes(event.data))
                    elif isinstance(event, (h11.EndOfMessage, h11.ConnectionClosed)):
                        break
            except (OSError, anyio.BrokenResourceError, h11.RemoteProtocolError) as exc:
                return _err("http_response_failed", f"bad response from {ref.url}: {exc}")
    if scope.cancelled_caught:
        return _err("http_request_failed", f"request to {ref.url} timed out after {timeout}s")
    raw = b"".join(chunks)
    parsed: JSON = None
    is_json = False
    if raw.strip():
        try:
            parsed = jsonio.loads(raw)
            is_json = True
        except ValueError:
            is_json = False
        if is_json and json_too_deep(parsed):
            # Too deep to hand on (the result would break the caller's socket).
            parsed, is_json = None, False
    if 200 <= status < 300:
        if not raw.strip():
            return None, None
        if not is_json:
            return _err("invalid_response", "response body is not JSON")
        return parsed, None
    if status >= 400:
        if isinstance(parsed, dict):
            error = parsed.get("error")
            if isinstance(error, dict):
                code = error.get("code")
                message = error.get("message")
                if isinstance(code, str) and isinstance(message, str):
                    return _err(code, message)
        return _err("http_error", f"HTTP {status}")
    return (parsed if is_json else None), None


class HttpFunctions(EngineWorker):
    """Runs the functions workers register with an HTTP ``invocation``."""

    name = "http_functions"
    switch = "http_functions"

    def install(self) -> None:
        self.host.set_remote_invoker(self._invoke)

    async def _invoke(
        self,
        entry: FunctionEntry,
        invocation_id: str,
        data: JSON,
        traceparent: Optional[str],
        baggage: Optional[str],
    ) -> tuple[JSON, Optional[ErrorDict]]:
        assert entry.http is not None
        # Looked up at call time: the fuzz target swaps it for an offline stub.
        return await invoke_http(entry.http, entry.id, invocation_id, data, traceparent)
