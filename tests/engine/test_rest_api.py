"""The ``http`` trigger type (the engine's ``iii-http`` worker, ``rest_api``): routes
served by a real HTTP server, requested here with the standard library's client."""

from __future__ import annotations

import functools
import http.client
import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import urllib.parse
import urllib.request
from collections.abc import Iterator
from typing import Any, Optional

import anyio
import pytest

import iii
from iii.channels import ChannelReader, ChannelWriter
from iii.testing import EngineThread, ManualClock
from iii.testing._workers.http_routes import (
    build_tree,
    extract_path_params,
    find_route,
    response_from_result,
    route_key,
    router_path,
)
from iii.utils import http as http_handler


def opts(**kw: Any) -> iii.InitOptions:
    return iii.InitOptions(
        reconnection_config=iii.ReconnectionConfig(initial_delay_ms=50, max_delay_ms=200),
        register_timeout_ms=5000,
        shutdown_grace_ms=2000,
        **kw,
    )


class Reply:
    """A response read to its end: status, headers (lower-case names), body."""

    def __init__(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        self.status = status
        self.header_list = [(k.lower(), v) for k, v in headers]
        self.headers = dict(self.header_list)
        self.body = body

    def json(self) -> Any:
        return json.loads(self.body)


def send(
    base: str,
    method: str,
    path: str,
    body: Optional[bytes] = None,
    headers: Optional[dict[str, str]] = None,
    conn: Optional[http.client.HTTPConnection] = None,
) -> Reply:
    """One request with ``http.client`` (on ``conn`` when given: keep-alive)."""
    own = conn is None
    if conn is None:
        parts = urllib.parse.urlsplit(base)
        assert parts.hostname is not None, base
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return Reply(resp.status, resp.getheaders(), resp.read())
    finally:
        if own:
            conn.close()


@pytest.fixture
def worker(iii_engine) -> Iterator[iii.III]:
    w = iii.register_worker(iii_engine.url, opts(worker_name="http-w"))
    yield w
    w.shutdown()


def route(engine: EngineThread, w: iii.III, function_id: str, **config: Any) -> iii.Trigger:
    """Bind ``function_id`` to an ``http`` route and wait until it is served."""
    metadata = config.pop("metadata", None)
    trigger = w.register_trigger(
        {"type": "http", "function_id": function_id, "config": config, "metadata": metadata}
    )
    assert trigger.id is not None  # always set on a registered trigger
    engine.wait_for_binding(trigger.id, acked=True)
    return trigger


def plain(data: dict[str, Any]) -> dict[str, Any]:
    """The request without its channel ends."""
    return {k: v for k, v in data.items() if k not in ("request_body", "response")}


# -- routes and responses, on their own ------------------------------------------------------


def test_route_keys_and_paths_as_the_engine_builds_them():
    assert route_key("post", "/users/:id") == "POST:users/:id"
    assert route_key("GET", "users/:id") == route_key("GET", "//users/:id")
    assert route_key("GET", "/") == "GET:/"
    assert router_path("users/:id/posts/:post") == "/users/{id}/posts/{post}"
    assert router_path("/") == "/"
    assert extract_path_params("/users/:id/posts/:post", "/users/7/posts/a%20b") == {
        "id": "7",
        "post": "a%20b",  # raw, as the engine hands it on
    }
    assert extract_path_params("/users/:id", "/users/7/extra") == {}
    assert extract_path_params("/files/{name}", "/files/x") == {}  # only :name segments


def segments(path: str) -> list[str]:
    return path.split("/")


def test_matching_prefers_static_segments_then_parameters_then_catch_alls():
    tree = build_tree(["/users/{id}", "/users/new", "/users/{id}/posts", "/files/{*rest}", "/"])
    assert find_route(tree, segments("/users/new"), 0) == "/users/new"
    assert find_route(tree, segments("/users/42"), 0) == "/users/{id}"
    assert find_route(tree, segments("/users/new/posts"), 0) == "/users/{id}/posts"
    assert find_route(tree, segments("/users/"), 0) is None  # an empty segment is no id
    assert find_route(tree, segments("/users/42/"), 0) is None  # no trailing-slash folding
    assert find_route(tree, segments("/files/a/b.txt"), 0) == "/files/{*rest}"
    assert find_route(tree, segments("/files/"), 0) is None
    assert find_route(tree, segments("/"), 0) == "/"


@pytest.mark.parametrize(
    ("result", "status", "content_type", "body"),
    [
        ({"status_code": 201, "body": {"a": 1}}, 201, "application/json", b'{"a":1}'),
        ({}, 200, "application/json", b"{}"),  # every field optional
        ({"status_code": 404}, 404, "application/json", b"{}"),
        ({"body": None}, 200, "application/json", b"null"),
        ("just a string", 200, "application/json", b"{}"),  # not an object: defaults
        ({"status_code": "201"}, 200, "application/json", b"{}"),
        ({"status_code": 201.0}, 200, "application/json", b"{}"),
        ({"status_code": -1}, 200, "application/json", b"{}"),
        ({"status_code": 1000}, 200, "application/json", b"{}"),
        ({"status_code": 65536 + 202}, 202, "application/json", b"{}"),  # cut to 16 bits
        ({"body": "hi"}, 200, "application/json", b'"hi"'),
        ({"headers": {"Content-Type": "text/plain"}, "body": "hi"}, 200, "text/plain", b"hi"),
        ({"headers": ["Content-Type: text/xml"], "body": "<a/>"}, 200, "text/xml", b"<a/>"),
        ({"headers": {"content-type": "text/plain"}, "body": None}, 200, "text/plain", b""),
        ({"headers": {"content-type": "text/plain"}, "body": [1]}, 200, "text/plain", b"[1]"),
        (
            {"headers": {"Content-Type": "application/json; charset=utf-8"}, "body": "s"},
            200,
            "application/json; charset=utf-8",
            b"s",
        ),
    ],
)
def test_a_function_result_becomes_the_response(result, status, content_type, body):
    response = response_from_result(result)
    assert response.status == status
    assert response.header("content-type") == content_type
    assert response.body == body


def test_response_headers_in_both_forms_and_invalid_ones_dropped():
    response = response_from_result(
        {
            "headers": ["X-A: one", 123, None, "no-colon", "X-B:  two ", ": empty", "Bad Name: x"],
            "body": {},
        }
    )
    assert response.headers == [
        ("X-A", "one"),
        ("X-B", "two"),
        ("content-type", "application/json"),
    ]
    response = response_from_result(
        {"headers": {"X-C": "c", "X-N": 5, "Content-Length": "999", "X-Bad": "a\nb"}}
    )
    assert response.headers == [("X-C", "c"), ("content-type", "application/json")]


# -- a route end to end ----------------------------------------------------------------------


def test_the_request_shape_and_the_response(iii_engine, worker):
    seen: queue.Queue[tuple[dict[str, Any], Any]] = queue.Queue()

    def handler(data: dict[str, Any], metadata: Any = None) -> dict[str, Any]:
        seen.put((data, metadata))
        return {
            "status_code": 201,
            "headers": {"X-User": data["path_params"]["id"]},
            "body": {"created": data["body"]},
        }

    worker.register_function("users::create", handler)
    route(
        iii_engine,
        worker,
        "users::create",
        api_path="/users/:id",
        http_method="POST",
        metadata={"route": "users"},
    )
    reply = send(
        iii_engine.http_url,
        "POST",
        "/users/42?page=2&tag=a&tag=b&flag",
        body=b'{"name": "Ada"}',
        headers={"Content-Type": "application/json", "X-Request-Id": "r-1"},
    )
    assert reply.status == 201
    assert reply.headers["x-user"] == "42"
    assert reply.headers["content-type"] == "application/json"
    assert reply.json() == {"created": {"name": "Ada"}}
    data, metadata = seen.get(timeout=10)
    assert metadata == {"route": "users"}
    assert isinstance(data["request_body"], ChannelReader)
    assert isinstance(data["response"], ChannelWriter)
    host = urllib.parse.urlsplit(iii_engine.http_url).netloc
    assert plain(data) == {
        "query_params": {"page": "2", "tag": "b", "flag": ""},  # a repeated key: the last
        "path_params": {"id": "42"},
        "headers": {
            "host": host,
            "accept-encoding": "identity",
            "content-length": "15",
            "content-type": "application/json",
            "x-request-id": "r-1",
        },
        "path": "/users/:id",  # the route, not the URL
        "method": "POST",
        "body": {"name": "Ada"},
        "trigger": {"type": "http", "path": "/users/:id", "method": "POST"},
    }


def test_unknown_routes_methods_head_and_options(iii_engine, worker):
    calls: list[str] = []

    def get_item(data: dict[str, Any]) -> dict[str, Any]:
        calls.append(data["method"])
        return {"body": "ok"}

    worker.register_function("items::get", get_item)
    route(iii_engine, worker, "items::get", api_path="/items/:id")  # GET by default
    route(iii_engine, worker, "items::get", api_path="/items/:id", http_method="delete")
    base = iii_engine.http_url
    assert send(base, "GET", "/items/1").json() == "ok"
    missing = send(base, "GET", "/nothing/here")
    assert missing.status == 404
    assert missing.headers["content-type"] == "application/json"
    assert missing.json() == {"error": {"code": "NOT_FOUND", "message": "Not Found"}}
    wrong = send(base, "PUT", "/items/1")
    assert wrong.status == 405 and wrong.body == b""
    assert sorted(wrong.headers["allow"].split(",")) == ["DELETE", "GET", "HEAD"]
    assert send(base, "DELETE", "/items/1").status == 200
    # HEAD reaches the GET route's handler in the engine's router, which then looks the
    # route up by HEAD and finds none: a 404 without a body.
    head = send(base, "HEAD", "/items/1")
    assert head.status == 404 and head.body == b""
    # The CORS layer answers every OPTIONS request itself.
    options = send(base, "OPTIONS", "/items/1")
    assert options.status == 200 and options.body == b""
    assert options.headers["access-control-allow-methods"] == "*"
    assert calls == ["GET", "DELETE"]


def test_a_failing_function_is_a_500_with_the_error(iii_engine, worker):
    def broken(data: Any) -> None:
        raise ValueError("no such order")

    worker.register_function("orders::get", broken)
    route(iii_engine, worker, "orders::get", api_path="/orders/:id")
    route(iii_engine, worker, "orders::gone", api_path="/gone")  # nobody provides it
    reply = send(iii_engine.http_url, "GET", "/orders/9")
    assert reply.status == 500
    error = reply.json()["error"]
    assert "no such order" in error["message"]
    assert error["code"] and error["error_id"]
    gone = send(iii_engine.http_url, "GET", "/gone").json()["error"]
    assert gone["code"] == "function_not_found"
    assert gone["error_id"]


def test_bodies_that_are_not_json_stream_through_the_request_channel(iii_engine, worker):
    def upload(data: dict[str, Any]) -> dict[str, Any]:
        raw = data["request_body"].read_all_sync()
        return {"body": {"json": data["body"], "size": len(raw), "head": raw[:5].decode()}}

    worker.register_function("files::upload", upload)
    route(iii_engine, worker, "files::upload", api_path="/upload", http_method="POST")
    blob = b"hello" + os.urandom(300_000)
    reply = send(
        iii_engine.http_url,
        "POST",
        "/upload",
        body=blob,
        headers={"Content-Type": "application/octet-stream"},
    )
    assert reply.json() == {"json": None, "size": len(blob), "head": "hello"}
    # application/json that is not JSON: body null, bytes still readable.
    reply = send(
        iii_engine.http_url,
        "POST",
        "/upload",
        body=b"{not json",
        headers={"Content-Type": "application/json"},
    )
    assert reply.json() == {"json": None, "size": 9, "head": "{not "}


def test_a_streamed_response_with_our_http_helper(iii_engine, worker):
    async def echo(req: Any, res: Any) -> None:
        body = await req.request_body.read_all()
        await res.status(202)
        await res.headers({"Content-Type": "text/plain", "X-Length": str(len(body))})
        for part in (b"echo: ", body, b"!"):
            await res.writer.write(part)
        await res.writer.close_async()

    worker.register_function("api::echo", http_handler(echo))
    route(iii_engine, worker, "api::echo", api_path="/echo", http_method="POST")
    parts = urllib.parse.urlsplit(iii_engine.http_url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    try:
        # Keep-alive: the same connection serves request after request.
        for body in (b"first", b"x" * 200_000, b"third"):
            reply = send("", "POST", "/echo", body=body, conn=conn)
            assert reply.status == 202
            assert reply.headers["transfer-encoding"] == "chunked"
            assert reply.headers["content-type"] == "text/plain"
            assert reply.headers["x-length"] == str(len(body))
            assert reply.body == b"echo: " + body + b"!"
    finally:
        conn.close()
    assert iii_engine.channels() == []  # every channel is gone


def test_no_result_and_nothing_written_is_an_empty_200(iii_engine, worker):
    def quiet(data: dict[str, Any]) -> None:
        data["response"].close()

    worker.register_function("api::quiet", quiet)
    route(iii_engine, worker, "api::quiet", api_path="/quiet")
    reply = send(iii_engine.http_url, "GET", "/quiet")
    assert (reply.status, reply.body) == (200, b"")
    assert "content-type" not in reply.headers


@pytest.mark.iii_engine(clock=ManualClock(), http_default_timeout=5.0)
def test_past_the_timeout_the_client_gets_a_504(iii_engine, worker):
    release = threading.Event()
    started = threading.Event()

    def slow(data: Any) -> dict[str, Any]:
        started.set()
        release.wait(20)
        return {"body": "late"}

    worker.register_function("api::slow", slow)
    route(iii_engine, worker, "api::slow", api_path="/slow")
    box: list[Reply] = []
    client = threading.Thread(target=lambda: box.append(send(iii_engine.http_url, "GET", "/slow")))
    client.start()
    try:
        assert started.wait(10)
        clock = iii_engine.clock
        assert isinstance(clock, ManualClock)
        iii_engine.call(lambda: clock.wait_for_sleepers(1, within=5.0))
        iii_engine.advance_clock(5.0)
        client.join(10)
        assert box[0].status == 504
        assert box[0].json()["error"]["code"] == "TIMEOUT"
    finally:
        release.set()
        client.join(10)


def test_the_condition_function_gates_the_route(iii_engine, worker):
    verdicts = queue.Queue[Any]()
    conditions: list[dict[str, Any]] = []

    def condition(data: dict[str, Any]) -> Any:
        conditions.append(data)
        verdict = verdicts.get(timeout=5)
        if verdict == "raise":
            raise RuntimeError("condition broke")
        return verdict

    worker.register_function("api::guarded", lambda d: {"body": "in"})
    worker.register_function("api::guard", condition)
    route(
        iii_engine,
        worker,
        "api::guarded",
        api_path="/guarded",
        condition_function_id="api::guard",
    )
    base = iii_engine.http_url
    verdicts.put(False)
    refused = send(base, "GET", "/guarded?x=1")
    assert refused.status == 422
    assert refused.json() == {
        "error": {"code": "CONDITION_NOT_MET", "message": "Request condition not met"},
        "skipped": True,
    }
    verdicts.put(True)
    assert send(base, "GET", "/guarded").json() == "in"
    verdicts.put(None)  # no result: go ahead
    assert send(base, "GET", "/guarded").json() == "in"
    verdicts.put("raise")
    broken = send(base, "GET", "/guarded")
    assert broken.status == 500 and "condition broke" in broken.json()["error"]["message"]
    # The condition sees the request without its channels.
    assert set(conditions[0]) == {
        "query_params",
        "path_params",
        "headers",
        "path",
        "method",
        "body",
        "trigger",
    }
    assert conditions[0]["query_params"] == {"x": "1"}


@pytest.mark.iii_engine(
    http_middleware=[{"function_id": "mw::second", "priority": 20}, "mw::first"]
)
def test_middleware_global_then_per_route(iii_engine, worker):
    order: list[str] = []
    inputs: list[dict[str, Any]] = []

    def middleware(name: str, answer: Any) -> Any:
        def run(data: dict[str, Any]) -> Any:
            order.append(name)
            inputs.append(data)
            return answer(data) if callable(answer) else answer

        return run

    def auth(data: dict[str, Any]) -> dict[str, Any]:
        if data["request"]["headers"].get("authorization") == "Bearer ok":
            return {"action": "continue"}
        return {
            "action": "respond",
            "response": {
                "status_code": 401,
                "body": {"error": "unauthorized"},
                "headers": {"WWW-Authenticate": "Bearer"},
            },
        }

    worker.register_function("mw::first", middleware("first", {"action": "continue"}))
    worker.register_function("mw::second", middleware("second", {"action": "continue"}))
    worker.register_function("mw::auth", middleware("auth", auth))
    worker.register_function("mw::odd", middleware("odd", {"action": "dance"}))

    def secret(data: dict[str, Any]) -> dict[str, Any]:
        order.append("handler")
        return {"body": 7}

    worker.register_function("api::secret", secret)
    route(
        iii_engine,
        worker,
        "api::secret",
        api_path="/secret/:id",
        middleware_function_ids=["mw::auth", "mw::odd"],
    )
    base = iii_engine.http_url
    denied = send(base, "GET", "/secret/1?q=x", body=b"ignored", headers={"X-Y": "z"})
    assert denied.status == 401
    assert denied.headers["www-authenticate"] == "Bearer"
    assert denied.json() == {"error": "unauthorized"}
    assert order == ["first", "second", "auth"]
    assert inputs[0] == {
        "phase": "preHandler",
        "request": {
            "path_params": {"id": "1"},
            "query_params": {"q": "x"},
            "headers": inputs[0]["request"]["headers"],
            "method": "GET",
        },
        "context": {},
    }
    assert inputs[0]["request"]["headers"]["x-y"] == "z"
    order.clear()
    allowed = send(base, "GET", "/secret/1", headers={"Authorization": "Bearer ok"})
    assert allowed.json() == 7
    # An unknown action is taken as "continue".
    assert order == ["first", "second", "auth", "odd", "handler"]


@pytest.mark.iii_engine(clock=ManualClock(), http_middleware="mw::stuck", http_default_timeout=5.0)
def test_a_stuck_middleware_runs_into_the_request_timeout(iii_engine, worker):
    # The middleware's own timeout is as long as the request's, which started first:
    # the request's fires (in the engine too), and the handler is never called.
    release = threading.Event()
    called: list[str] = []
    worker.register_function("mw::stuck", lambda d: release.wait(20) and {"action": "continue"})

    def behind(data: dict[str, Any]) -> dict[str, Any]:
        called.append("x")
        return {"body": "never"}

    worker.register_function("api::behind", behind)
    route(iii_engine, worker, "api::behind", api_path="/behind")
    box: list[Reply] = []
    client = threading.Thread(
        target=lambda: box.append(send(iii_engine.http_url, "GET", "/behind"))
    )
    client.start()
    try:
        clock = iii_engine.clock
        assert isinstance(clock, ManualClock)
        iii_engine.call(lambda: clock.wait_for_sleepers(2, within=5.0))
        iii_engine.advance_clock(5.0)
        client.join(10)
        assert box[0].status == 504
        assert box[0].json()["error"]["code"] == "TIMEOUT"
        assert "access-control-allow-origin" not in box[0].headers  # outside the CORS layer
        assert called == []
    finally:
        release.set()
        client.join(10)


def test_a_failing_route_middleware_is_a_500(iii_engine, worker):
    def broken(data: Any) -> None:
        raise RuntimeError("mw exploded")

    worker.register_function("mw::broken", broken)
    worker.register_function("api::x", lambda d: {"body": 1})
    route(iii_engine, worker, "api::x", api_path="/x", middleware_function_ids=["mw::broken"])
    reply = send(iii_engine.http_url, "GET", "/x")
    assert reply.status == 500
    assert "mw exploded" in reply.json()["error"]["message"]


def test_the_latest_binding_of_a_route_serves_it_and_conflicts_are_refused(iii_engine, worker):
    worker.register_function("v::one", lambda d: {"body": 1})
    worker.register_function("v::two", lambda d: {"body": 2})
    first = route(iii_engine, worker, "v::one", api_path="/v/:id")
    assert send(iii_engine.http_url, "GET", "/v/a").json() == 1
    second = route(iii_engine, worker, "v::two", api_path="v/:id")  # same key
    assert send(iii_engine.http_url, "GET", "/v/a").json() == 2
    first.unregister()  # no longer its route: nothing changes
    iii_engine.wait_for(lambda: all(b["id"] != first.id for b in iii_engine.bindings()))
    assert send(iii_engine.http_url, "GET", "/v/a").json() == 2
    second.unregister()
    iii_engine.wait_for(lambda: all(b["id"] != second.id for b in iii_engine.bindings()))
    assert send(iii_engine.http_url, "GET", "/v/a").status == 404
    # Same shape, other parameter names: refused (the engine's router cannot hold both).
    route(iii_engine, worker, "v::one", api_path="/s/:list/:user")
    with pytest.raises(iii.IIIInvocationError) as info:
        worker.trigger(
            {
                "function_id": "engine::register_trigger",
                "payload": {
                    "trigger_type": "http",
                    "function_id": "v::two",
                    "config": {"api_path": "/s/:user/:list"},
                },
            }
        )
    assert info.value.code == "trigger_registration_failed"
    assert "conflicts with already-registered route 'GET /s/:list/:user'" in info.value.message
    with pytest.raises(iii.IIIInvocationError, match="api_path is required"):
        worker.trigger(
            {
                "function_id": "engine::register_trigger",
                "payload": {"trigger_type": "http", "function_id": "v::two", "config": {}},
            }
        )


@pytest.mark.iii_engine(
    http_cors_allowed_origins="http://app.test, http://other.test",
    http_cors_allowed_methods=["GET", "POST"],
)
def test_cors_follows_the_options(iii_engine, worker):
    worker.register_function("api::cors", lambda d: {"body": "c"})
    route(iii_engine, worker, "api::cors", api_path="/cors")
    base = iii_engine.http_url
    ok = send(base, "GET", "/cors", headers={"Origin": "http://app.test"})
    assert ok.headers["access-control-allow-origin"] == "http://app.test"
    assert "access-control-expose-headers" not in ok.headers
    assert ok.headers["vary"] == (
        "origin, access-control-request-method, access-control-request-headers"
    )
    other = send(base, "GET", "/cors", headers={"Origin": "http://evil.test"})
    assert "access-control-allow-origin" not in other.headers
    preflight = send(
        base,
        "OPTIONS",
        "/cors",
        headers={"Origin": "http://other.test", "Access-Control-Request-Method": "POST"},
    )
    assert preflight.status == 200
    assert preflight.headers["access-control-allow-origin"] == "http://other.test"
    assert preflight.headers["access-control-allow-methods"] == "GET,POST"
    assert preflight.headers["access-control-allow-headers"] == "*"


@pytest.mark.iii_engine(http_concurrency_request_limit=1)
def test_requests_over_the_concurrency_limit_wait(iii_engine, worker):
    release = threading.Event()
    entered: queue.Queue[str] = queue.Queue()

    def hold(data: dict[str, Any]) -> dict[str, Any]:
        entered.put(data["path_params"]["n"])
        release.wait(20)
        return {"body": data["path_params"]["n"]}

    worker.register_function("api::hold", hold)
    route(iii_engine, worker, "api::hold", api_path="/hold/:n")
    replies: list[Reply] = []
    clients = [
        threading.Thread(
            target=lambda n=n: replies.append(send(iii_engine.http_url, "GET", f"/hold/{n}"))
        )
        for n in (1, 2)
    ]
    for client in clients:
        client.start()
    try:
        first = entered.get(timeout=10)
        with pytest.raises(queue.Empty):  # the other request waits for a slot
            entered.get(timeout=0.3)
        release.set()
        assert entered.get(timeout=10) != first
        for client in clients:
            client.join(10)
        assert sorted(r.json() for r in replies) == ["1", "2"]
    finally:
        release.set()


def test_traceparent_reaches_the_function(iii_engine, worker):
    worker.register_function("api::trace", lambda d: {"body": "t"})
    route(iii_engine, worker, "api::trace", api_path="/trace")
    tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    send(iii_engine.http_url, "GET", "/trace", headers={"traceparent": tp, "baggage": "k=v"})
    frame = iii_engine.wait_for_frame(
        "invokefunction", direction="out", where=lambda f: f.get("function_id") == "api::trace"
    )
    assert frame["traceparent"] == tp and frame["baggage"] == "k=v"


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_async_workers_serve_and_stream_routes(iii_engine, backend):
    async def main() -> tuple[Reply, Reply]:
        async with iii.register_worker_async(iii_engine.url, opts(worker_name="http-aw")) as w:

            async def hello(data: dict[str, Any]) -> dict[str, Any]:
                await anyio.sleep(0)
                return {"status_code": 200, "body": {"hello": data["query_params"]["who"]}}

            async def shout(req: Any, res: Any) -> None:
                text = (await req.request_body.read_all()).decode()
                await res.status(200)
                await res.headers({"content-type": "text/plain"})
                await res.writer.write(text.upper().encode())
                await res.writer.close_async()

            w.register_function("api::hello", hello)
            w.register_function("api::shout", http_handler(shout))
            triggers = [
                w.register_trigger(
                    {
                        "type": "http",
                        "function_id": fid,
                        "config": {"api_path": path, "http_method": m},
                    }
                )
                for fid, path, m in (
                    ("api::hello", "/hello", "GET"),
                    ("api::shout", "/shout", "POST"),
                )
            ]
            for trigger in triggers:
                await anyio.to_thread.run_sync(
                    functools.partial(iii_engine.wait_for_binding, trigger.id, acked=True)
                )
            hello_reply = await anyio.to_thread.run_sync(
                send, iii_engine.http_url, "GET", f"/hello?who={backend}"
            )
            shout_reply = await anyio.to_thread.run_sync(
                lambda: send(
                    iii_engine.http_url, "POST", "/shout", b"quiet", {"Content-Type": "text/plain"}
                )
            )
            return hello_reply, shout_reply

    hello_reply, shout_reply = anyio.run(main, backend=backend)
    assert hello_reply.json() == {"hello": backend}
    assert shout_reply.body == b"QUIET"
    assert shout_reply.headers["transfer-encoding"] == "chunked"


def test_introspection_shows_the_http_trigger_type(iii_engine, worker):
    info = worker.trigger({"function_id": "engine::triggers::info", "payload": {"id": "http"}})
    assert info["worker_name"] == "iii-http"
    assert info["configuration_schema"]["required"] == ["api_path"]
    assert "path_params" in info["request_schema"]["properties"]
    workers = worker.trigger({"function_id": "engine::workers::list", "payload": {}})["workers"]
    assert any(w["name"] == "iii-http" for w in workers)


def test_the_port_is_kept_across_restarts_and_routes_come_back(iii_engine, worker):
    worker.register_function("api::again", lambda d: {"body": "again"})
    trigger = route(iii_engine, worker, "api::again", api_path="/again")
    url = iii_engine.http_url
    assert send(url, "GET", "/again").json() == "again"
    iii_engine.restart()
    assert iii_engine.http_url == url
    iii_engine.wait_for_binding(trigger.id, acked=True, timeout=10)  # the worker replays it
    assert send(url, "GET", "/again").json() == "again"


@pytest.mark.iii_engine(rest_api=False)
def test_the_http_worker_can_be_switched_off(iii_engine):
    assert all(t["id"] != "http" for t in iii_engine.trigger_types())
    assert "http" not in iii_engine.urls
    with pytest.raises(RuntimeError, match="rest_api=False"):
        assert iii_engine.http_url


def test_options_are_checked():
    with pytest.raises(TypeError, match="http_middleware"):
        EngineThread(http_middleware=5)
    with pytest.raises(ValueError, match="http_middleware"):
        EngineThread(http_middleware=[{"function_id": "a", "priority": "high"}])
    with pytest.raises(ValueError, match="http_middleware"):
        EngineThread(http_middleware="[not json")
    with pytest.raises(TypeError, match="http_cors_allowed_origins"):
        EngineThread(http_cors_allowed_origins=[1])
    with pytest.raises(ValueError, match="http_port"):
        EngineThread(http_port=70000)


def test_urllib_against_the_cli_engine(tmp_path):
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(
        [sys.executable, "-m", "iii.testing", "--port", "0", "--http-port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        name, _, http_url = proc.stdout.readline().strip().partition(": ")
        assert name == "http" and http_url.startswith("http://127.0.0.1:")
        w = iii.register_worker(url, opts(worker_name="cli-http"))
        try:
            w.register_function(
                "math::add", lambda d: {"body": {"c": d["body"]["a"] + d["body"]["b"]}}
            )
            w.register_trigger(
                {
                    "type": "http",
                    "function_id": "math::add",
                    "config": {"api_path": "/math/add", "http_method": "POST"},
                }
            )
            request = urllib.request.Request(
                http_url + "/math/add",
                data=b'{"a": 2, "b": 3}',
                headers={"Content-Type": "application/json"},
                method="POST",
            )
            for _ in range(100):  # the binding is registered right after the call returns
                try:
                    with urllib.request.urlopen(request, timeout=10) as response:
                        assert json.loads(response.read()) == {"c": 5}
                        break
                except urllib.error.HTTPError as exc:
                    exc.close()
                    assert exc.code == 404
                    threading.Event().wait(0.05)
            else:
                raise AssertionError("the route never answered")
        finally:
            w.shutdown()
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.communicate()


def test_the_cli_defaults_to_the_engines_http_port():
    out = subprocess.run(
        [sys.executable, "-m", "iii.testing", "--help"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout
    assert "--http-port" in out and "3111" in out and "--no-rest-api" in out


# -- the HTTP server itself ---------------------------------------------------------------------


def raw_exchange(base: str, data: bytes, *, until: bytes = b"\r\n\r\n") -> bytes:
    """Send raw bytes; read until ``until`` has arrived (or the server closes)."""
    parts = urllib.parse.urlsplit(base)
    assert parts.port is not None, base
    with socket.create_connection((parts.hostname, parts.port), timeout=30) as sock:
        sock.sendall(data)
        got = b""
        while until not in got:
            chunk = sock.recv(65536)
            if not chunk:
                break
            got += chunk
        return got


def test_a_malformed_request_gets_a_400_and_the_server_goes_on(iii_engine, worker):
    worker.register_function("api::ok", lambda d: {"body": "ok"})
    route(iii_engine, worker, "api::ok", api_path="/ok")
    reply = raw_exchange(iii_engine.http_url, b"NOT HTTP AT ALL\r\n\r\n", until=b"\n\n")
    assert reply.startswith(b"HTTP/1.1 400 ")
    assert send(iii_engine.http_url, "GET", "/ok").json() == "ok"


def test_expect_100_continue_is_answered_when_the_body_is_read(iii_engine, worker):
    worker.register_function(
        "api::size", lambda d: {"body": len(d["request_body"].read_all_sync())}
    )
    route(iii_engine, worker, "api::size", api_path="/size", http_method="POST")
    parts = urllib.parse.urlsplit(iii_engine.http_url)
    with socket.create_connection((parts.hostname, parts.port), timeout=30) as sock:
        sock.sendall(
            b"POST /size HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\n"
            b"Content-Length: 5\r\nExpect: 100-continue\r\n\r\n"
        )
        interim = b""
        while b"\r\n\r\n" not in interim:
            interim += sock.recv(65536)
        assert interim.startswith(b"HTTP/1.1 100 ")
        sock.sendall(b"hello")
        final = interim.partition(b"\r\n\r\n")[2]
        while not final.endswith(b"5"):
            chunk = sock.recv(65536)
            assert chunk, final
            final += chunk
        assert final.startswith(b"HTTP/1.1 200 ")


def test_a_client_leaving_mid_stream_does_not_hurt_the_server(iii_engine, worker):
    go_on = threading.Event()
    finished = threading.Event()

    async def slow_stream(req: Any, res: Any) -> None:
        await res.status(200)
        await res.writer.write(b"first chunk")
        await anyio.to_thread.run_sync(go_on.wait, 20)
        for _ in range(20):
            await res.writer.write(b"more" * 1000)
        await res.writer.close_async()
        finished.set()

    worker.register_function("api::slow_stream", http_handler(slow_stream))
    worker.register_function("api::ok", lambda d: {"body": "ok"})
    route(iii_engine, worker, "api::slow_stream", api_path="/slow-stream")
    route(iii_engine, worker, "api::ok", api_path="/ok")
    got = raw_exchange(
        iii_engine.http_url, b"GET /slow-stream HTTP/1.1\r\nHost: x\r\n\r\n", until=b"first chunk"
    )
    assert b"first chunk" in got  # and the client is gone
    go_on.set()
    assert finished.wait(20)  # the function's writes after that do not fail it
    assert send(iii_engine.http_url, "GET", "/ok").json() == "ok"
    iii_engine.wait_for(lambda: iii_engine.channels() == [])


def test_an_unread_request_body_closes_the_connection_after_the_response(iii_engine, worker):
    worker.register_function("api::ignore", lambda d: {"body": "ignored"})
    route(iii_engine, worker, "api::ignore", api_path="/ignore", http_method="POST")
    parts = urllib.parse.urlsplit(iii_engine.http_url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    try:
        big = b"z" * 2_000_000  # more than the body channel holds unread
        reply = send("", "POST", "/ignore", big, {"Content-Type": "text/plain"}, conn=conn)
        assert reply.json() == "ignored"
    finally:
        conn.close()
    assert send(iii_engine.http_url, "GET", "/nothing").status == 404
