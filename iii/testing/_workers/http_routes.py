"""Routes and responses of the HTTP worker (``rest_api``), as the engine's router
and response builder treat them: route keys, ``:param`` paths, matching (static
segments before parameters before catch-alls), path parameters, a function's
``{status_code, headers, body}`` as an HTTP response, and the error envelope.
"""

from __future__ import annotations

import re
import time
from typing import Optional

import attrs

from iii_protocol._json import JSON, JSONObject

from .. import _jsonio as jsonio
from .http_server import Request, Response

__all__ = [
    "JSON_TYPE",
    "METHODS",
    "Route",
    "envelope",
    "extract_path_params",
    "header_text",
    "response_from_result",
    "route_key",
    "router_path",
]

#: Methods the engine's router serves; a route with another method is never reached.
METHODS = ("GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS")
JSON_TYPE = "application/json"
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


# -- routes --------------------------------------------------------------------------------


@attrs.frozen
class Route:
    key: str
    binding_id: str
    http_path: str
    method: str
    function_id: str
    condition_function_id: Optional[str]
    middleware_function_ids: tuple[str, ...]
    metadata: JSON
    namespace: str


def route_key(method: str, http_path: str) -> str:
    """The engine's route key: upper-case method, path without leading slashes."""
    path = "/" if http_path == "/" else http_path.lstrip("/")
    return f"{method.upper()}:{path}"


def router_path(http_path: str) -> str:
    """The path as the engine's router (axum) sees it: ``:id`` -> ``{id}``, leading ``/``."""
    path = "/".join(
        "{" + seg[1:] + "}" if seg.startswith(":") else seg for seg in http_path.split("/")
    )
    return path if path.startswith("/") else "/" + path


def shape(path: str) -> str:
    return "/".join(
        "{}" if seg.startswith("{") and seg.endswith("}") else seg for seg in path.split("/")
    )


def extract_path_params(registered: str, actual: str) -> dict[str, str]:
    """``:name`` segments of ``registered`` taken from ``actual`` (raw, not decoded)."""
    want = [s for s in registered.split("/") if s]
    got = [s for s in actual.split("/") if s]
    if len(want) != len(got):
        return {}
    return {w[1:]: g for w, g in zip(want, got, strict=True) if w.startswith(":")}


class Node:
    __slots__ = ("catch_all", "end", "param", "static")

    def __init__(self) -> None:
        self.static: dict[str, Node] = {}
        self.param: Optional[Node] = None
        self.catch_all: Optional[str] = None
        self.end: Optional[str] = None


def build_tree(paths: list[str]) -> Node:
    root = Node()
    for path in paths:
        node = root
        for seg in path.split("/"):
            if seg.startswith("{*") and seg.endswith("}"):
                node.catch_all = node.catch_all or path
                break
            if seg.startswith("{") and seg.endswith("}"):
                if node.param is None:
                    node.param = Node()
                node = node.param
            else:
                node = node.static.setdefault(seg, Node())
        else:
            node.end = node.end or path
    return root


def find_route(node: Node, segs: list[str], i: int) -> Optional[str]:
    """Static segments first, then a parameter, then a catch-all (with backtracking)."""
    if i == len(segs):
        return node.end
    child = node.static.get(segs[i])
    if child is not None:
        found = find_route(child, segs, i + 1)
        if found is not None:
            return found
    if node.param is not None and segs[i]:
        found = find_route(node.param, segs, i + 1)
        if found is not None:
            return found
    if node.catch_all is not None and "/".join(segs[i:]):
        return node.catch_all
    return None


# -- responses -------------------------------------------------------------------------------


def json_body(value: JSON) -> bytes:
    return jsonio.dumps(value)


def _error_id() -> str:
    return f"{time.time_ns() & 0xFFFFFFFFFFFF:x}"


def envelope(status: int, code: str, message: str, *, error_id: bool = False) -> Response:
    """An error the server raises itself: ``{"error": {"code", "message", "error_id"?}}``."""
    error: JSONObject = {"code": code, "message": message}
    if error_id:
        error["error_id"] = _error_id()
    return Response(status, [("content-type", JSON_TYPE)], json_body({"error": error}))


def status_code(value: JSON) -> int:
    """``status_code`` as the engine reads it (a u64 cut to u16; invalid -> 200)."""
    if type(value) is not int or value < 0 or value >= 2**64:
        return 200
    code = value & 0xFFFF
    if not 100 <= code <= 999:
        return 200
    # h11 cannot send a 1xx as the final response; the engine would send it as is.
    return 200 if code < 200 else code


def _header_ok(name: str, value: str) -> bool:
    """A header the engine's HTTP stack would send (a token; no control characters)."""
    return bool(_TOKEN.fullmatch(name)) and all(
        b == 9 or (b >= 32 and b != 127) for b in value.encode("utf-8", "surrogatepass")
    )


def _response_headers(raw: JSON) -> list[tuple[str, str]]:
    pairs: list[tuple[str, str]] = []
    if isinstance(raw, list):
        for line in raw:
            if isinstance(line, str) and ":" in line:
                name, _, value = line.partition(":")
                if name.strip():
                    pairs.append((name.strip(), value.strip()))
    elif isinstance(raw, dict):
        pairs = [(k, v) for k, v in raw.items() if isinstance(v, str)]
    return pairs


def clean_headers(pairs: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Valid headers only; the body's framing is ours."""
    out = []
    for name, value in pairs:
        value = value.strip(" \t")
        if not _header_ok(name, value):
            continue
        if name.lower() in ("content-length", "transfer-encoding"):
            continue
        out.append((name, value))
    return out


def response_from_result(value: JSON) -> Response:
    """A function's result as the HTTP response (the engine's ``HttpResponse``)."""
    fields = value if isinstance(value, dict) else {}
    status = status_code(fields.get("status_code"))
    headers = _response_headers(fields.get("headers"))
    body = fields.get("body", {}) if isinstance(value, dict) else {}
    content_type = next((v for k, v in headers if k.lower() == "content-type"), None)
    default_type: Optional[str] = None
    if content_type is not None and isinstance(body, str):
        data = body.encode()
    elif content_type is not None and body is None:
        data = b""
    elif content_type is not None and JSON_TYPE not in content_type.lower():
        data = json_body(body)
    else:
        data = json_body(body)
        default_type = JSON_TYPE
    out = clean_headers(headers)
    if default_type is not None and not any(k.lower() == "content-type" for k, _ in out):
        out.append(("content-type", default_type))
    return Response(status, out, data)


def middleware_response(response: JSON) -> Response:
    fields = response if isinstance(response, dict) else {}
    status = status_code(fields.get("status_code"))
    raw = fields.get("headers")
    headers: list[tuple[str, str]] = [("content-type", JSON_TYPE)]
    if isinstance(raw, dict) and all(isinstance(v, str) for v in raw.values()):
        for name, value in clean_headers([(k, v) for k, v in raw.items() if isinstance(v, str)]):
            headers = [(k, v) for k, v in headers if k.lower() != name.lower()]
            headers.append((name, value))
    return Response(status, headers, json_body(fields.get("body")))


def header_text(value: bytes) -> str:
    """A header value as the engine hands it on: visible ASCII, else empty."""
    if all(b == 9 or 32 <= b < 127 for b in value):
        return value.decode("ascii")
    return ""


def optional_header(request: Request, name: str) -> Optional[str]:
    value = request.header(name)
    return (header_text(value) or None) if value is not None else None
