"""Two workers of one official SDK talk through the reference engine.

Every test runs for iii-sdk 0.19.7 and 0.25.0 (PyPI) and iii-sdk 0.22.1 (npm),
``pair.a`` being the worker that registers (handler / trigger provider) and
``pair.b`` the one that calls (caller / binder).  Each asserts what the SDK's
own documentation promises; where an SDK lacks a feature the test says so.
"""

from __future__ import annotations

import http.server
import json
import re
import threading
from collections.abc import Callable, Iterator
from typing import Any, ClassVar, cast

import pytest

import iii
from iii.testing import EngineThread

from ._harness import PeerAgent, Sdk
from .conftest import Pair

pytestmark = pytest.mark.conformance

UUID4 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


def register(pair: Pair, function_id: str, behavior: str, **args: Any) -> None:
    """``a`` registers ``function_id``; wait until the engine has it."""
    pair.a.ok("register_function", function_id=function_id, behavior=behavior, **args)
    pair.engine.wait_for_function(function_id, timeout=10)


def error_message(pair: Pair, code: str, message: str) -> str:
    """The message an SDK's error object carries for a wire error.

    Python (``IIIInvocationError``/``InvocationError``): ``.message`` is the wire
    message.  Node (``InvocationError extends Error``): ``.message`` is
    ``"<code>: <message>"`` (its documented format), ``.code`` separately.
    """
    return f"{code}: {message}" if pair.sdk.kind == "node" else message


def _payload_seen(data: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in data.items() if k != "_caller_worker_id"}


# -- invocations (docs/protocol.md#invocations) ------------------------------------


def test_sync_call_returns_the_handler_result(pair: Pair) -> None:
    register(pair, "conf::echo", "echo")
    payload = {"n": 1, "s": "grüße", "list": [1, None, True]}
    out = pair.b.ok("trigger", function_id="conf::echo", payload=payload)
    echo = out["result"]["echo"]
    assert out["result"]["by"] == pair.a.name
    assert _payload_seen(echo) == payload
    # The engine tells the handler who called (docs/protocol.md#caller-id).
    assert echo["_caller_worker_id"] == pair.b.info["worker_id"]
    # ... and passes the caller's invocation_id through to the handler (5.3).
    sent = pair.engine.frames(pair.b.info["worker_id"], direction="in", type="invokefunction")
    call = next(f for f in sent if f["function_id"] == "conf::echo")
    assert isinstance(call["invocation_id"], str) and UUID4.match(call["invocation_id"])
    routed = pair.engine.frames(pair.a.info["worker_id"], direction="out", type="invokefunction")
    assert any(f["invocation_id"] == call["invocation_id"] for f in routed)


def test_none_result_is_none(pair: Pair) -> None:
    register(pair, "conf::none", "none")
    out = pair.b.ok("trigger", function_id="conf::none", payload={})
    assert out["result"] is None


def test_void_call_returns_nothing_and_the_handler_runs(pair: Pair) -> None:
    register(pair, "conf::void-target", "record")
    out = pair.b.ok("trigger", function_id="conf::void-target", payload={"v": 1}, action="void")
    assert out["result"] is None
    seen = pair.a.wait_event("invoked", lambda e: e["function_id"] == "conf::void-target")
    assert _payload_seen(seen["data"]) == {"v": 1}
    # Fire-and-forget on the wire: action void and no invocation_id (5.1).
    sent = pair.engine.frames(pair.b.info["worker_id"], direction="in", type="invokefunction")
    frame = next(f for f in sent if f["function_id"] == "conf::void-target")
    assert frame["action"] == {"type": "void"}
    assert "invocation_id" not in frame


def test_enqueue_returns_a_receipt_and_the_queue_runs_the_handler(pair: Pair) -> None:
    register(pair, "conf::job", "record")
    out = pair.b.ok(
        "trigger", function_id="conf::job", payload={"job": 7}, action={"enqueue": "default"}
    )
    receipt = out["result"]
    assert set(receipt) == {"messageReceiptId"}, receipt
    assert UUID4.match(receipt["messageReceiptId"])
    seen = pair.a.wait_event("invoked", lambda e: e["function_id"] == "conf::job")
    # Delivered by the engine's queue: the payload as enqueued, no caller id (5.2, 5.5).
    assert seen["data"] == {"job": 7}
    pair.engine.wait_for(lambda: cast(int, pair.engine.engine.queue_stats()["delivered"]) >= 1)


def test_handler_error_reaches_the_caller_as_invocation_failed(pair: Pair) -> None:
    register(pair, "conf::fail", "fail", message="boom 42")
    out = pair.b.call("trigger", function_id="conf::fail", payload={"x": 1})
    assert not out["ok"]
    err = out["error"]
    assert err["code"] == "invocation_failed"
    assert err["message"] == error_message(pair, "invocation_failed", "boom 42")
    # The handler's stack trace travels with the error (Python traceback / JS stack).
    assert "boom 42" in (err["stacktrace"] or "")


def test_unknown_function_is_function_not_found(pair: Pair) -> None:
    out = pair.b.call("trigger", function_id="conf::missing", payload={})
    assert not out["ok"]
    assert out["error"]["code"] == "function_not_found"
    assert out["error"]["message"] == error_message(
        pair, "function_not_found", "Function conf::missing not found in namespace default."
    )


def test_unregistered_function_is_gone(pair: Pair) -> None:
    register(pair, "conf::temp", "const", result={"alive": True})
    assert pair.b.ok("trigger", function_id="conf::temp", payload={})["result"] == {"alive": True}
    pair.a.ok("unregister_function", function_id="conf::temp")
    pair.engine.wait_for(
        lambda: not any(f["function_id"] == "conf::temp" for f in pair.engine.engine.functions())
    )
    out = pair.b.call("trigger", function_id="conf::temp", payload={})
    assert out["error"]["code"] == "function_not_found"


def test_missing_payload(pair: Pair) -> None:
    """A call without a payload reaches the handler as None/undefined.

    Both the Python SDKs (``exclude_none``) and Node (``JSON.stringify`` drops
    ``undefined``) OMIT ``data`` then; the real engine requires it and drops
    such a frame (the caller would time out).  The ``pair`` engine is lenient
    (``lenient_frames=True``) and reads it as ``null``; the strict default is
    ``test_strict_engine_drops_a_call_without_data``.
    """
    register(pair, "conf::nodata", "echo")
    out = pair.b.ok("trigger", function_id="conf::nodata", timeout_ms=5000)
    assert out["result"] == {"echo": None, "by": pair.a.name}
    sent = pair.engine.frames(pair.b.info["worker_id"], direction="in", type="invokefunction")
    frame = next(f for f in sent if f["function_id"] == "conf::nodata")
    assert "data" not in frame  # the official SDK's quirk, named


def _dropped(engine: EngineThread, worker_id: str) -> list[str]:
    return [
        cast(str, e["info"])
        for e in engine.transcript()
        if e["kind"] == "dropped" and e["conn"] == worker_id and e["dir"] == "in"
    ]


def test_strict_engine_drops_a_call_without_data(
    sdk: Sdk, iii_engine: EngineThread, spawn: Callable[..., PeerAgent]
) -> None:
    """By default the engine is as strict as the real one: an official SDK's call
    without a payload (``data`` omitted) is dropped, the engine logs it and notes
    it in the transcript, and the caller times out."""
    a = spawn(sdk.id, iii_engine.url, f"strict-a-{sdk.id}", engine=iii_engine)
    b = spawn(sdk.id, iii_engine.url, f"strict-b-{sdk.id}", engine=iii_engine)
    a.ok("register_function", function_id="strict::echo", behavior="echo")
    iii_engine.wait_for_function("strict::echo")
    out = b.call("trigger", function_id="strict::echo", timeout_ms=500)
    assert out["error"]["code"] == "TIMEOUT"
    assert _dropped(iii_engine, b.info["worker_id"]) == [
        "invalid invokefunction frame: missing field `data`"
    ]
    # With a payload the same call goes through.
    assert b.ok("trigger", function_id="strict::echo", payload=1)["result"]["echo"] == 1


def test_strict_engine_drops_a_binding_without_config(
    sdk: Sdk, iii_engine: EngineThread, spawn: Callable[..., PeerAgent]
) -> None:
    a = spawn(sdk.id, iii_engine.url, f"strict-p-{sdk.id}", engine=iii_engine)
    b = spawn(sdk.id, iii_engine.url, f"strict-u-{sdk.id}", engine=iii_engine)
    a.ok("register_trigger_type", trigger_type="strict-bare")
    iii_engine.wait_for_trigger_type("strict-bare")
    b.ok("register_function", function_id="strict::bare", behavior="record")
    iii_engine.wait_for_function("strict::bare")
    b.ok("register_trigger", key="bare", trigger_type="strict-bare", function_id="strict::bare")
    reason = "invalid registertrigger frame: missing field `config`"
    iii_engine.wait_for(lambda: reason in _dropped(iii_engine, b.info["worker_id"]))
    assert iii_engine.bindings() == []


def test_builtin_workers_list_sees_both_workers(pair: Pair) -> None:
    out = pair.b.ok("trigger", function_id="engine::workers::list", payload={})
    names = {w["name"]: w for w in out["result"]["workers"]}
    assert {pair.a.name, pair.b.name} <= set(names)
    assert names[pair.a.name]["runtime"] == pair.sdk.kind


# -- trigger types and bindings (docs/protocol.md#triggers) ----------------------------


def test_binding_reaches_the_provider_fires_and_unregisters(pair: Pair) -> None:
    pair.a.ok("register_trigger_type", trigger_type="conf-hook", description="conformance hook")
    pair.engine.wait_for_trigger_type("conf-hook")
    pair.b.ok("register_function", function_id="conf::hooked", behavior="record")
    pair.engine.wait_for_function("conf::hooked")
    pair.b.ok(
        "register_trigger",
        key="hook1",
        trigger_type="conf-hook",
        function_id="conf::hooked",
        config={"path": "/hook"},
        metadata={"src": "b"},
    )
    # The provider's register_trigger gets the binding's config (and metadata).
    got = pair.a.wait_event(
        "register_trigger", lambda e: e["config"]["function_id"] == "conf::hooked"
    )
    config = got["config"]
    assert config["config"] == {"path": "/hook"}
    assert config["metadata"] == {"src": "b"}
    binding_id = config["id"]
    assert UUID4.match(binding_id)
    pair.engine.wait_for_binding(binding_id, acked=True)

    # The provider fires: the bound function runs with the payload (and, where the
    # SDK has per-invocation metadata, the binding's metadata as the sidecar).
    out = pair.a.ok("fire", binding_id=binding_id, payload={"via": "hook"})
    assert out["result"] == {"recorded": "conf::hooked"}
    seen = pair.b.wait_event("invoked", lambda e: e["function_id"] == "conf::hooked")
    assert _payload_seen(seen["data"]) == {"via": "hook"}
    if pair.sdk.has_invocation_metadata:
        assert seen["metadata"] == {"src": "b"}
    else:
        # iii-sdk 0.19.7 lacks per-invocation metadata: its trigger() cannot send
        # it and its handlers cannot receive it.
        assert seen["metadata"] is None

    # Unregistering the binding tells the provider.
    pair.b.ok("unregister_trigger", key="hook1")
    gone = pair.a.wait_event("unregister_trigger", lambda e: e["config"]["id"] == binding_id)
    assert gone["trigger_type"] == "conf-hook"
    pair.engine.wait_for(lambda: all(b["id"] != binding_id for b in pair.engine.engine.bindings()))


def test_binding_without_config(pair: Pair) -> None:
    """``register_trigger`` without a config.

    The official SDKs then OMIT ``config`` (Python ``exclude_none``, Node
    ``undefined``); the real engine requires it and silently drops the binding.
    The lenient ``pair`` engine reads it as ``null``; the strict default is
    ``test_strict_engine_drops_a_binding_without_config``.
    """
    pair.a.ok("register_trigger_type", trigger_type="conf-bare")
    pair.engine.wait_for_trigger_type("conf-bare")
    pair.b.ok("register_function", function_id="conf::bare", behavior="record")
    pair.engine.wait_for_function("conf::bare")
    pair.b.ok("register_trigger", key="bare", trigger_type="conf-bare", function_id="conf::bare")
    got = pair.a.wait_event("register_trigger", lambda e: e["trigger_type"] == "conf-bare")
    assert got["config"]["config"] is None
    sent = pair.engine.frames(pair.b.info["worker_id"], direction="in", type="registertrigger")
    assert "config" not in next(f for f in sent if f["trigger_type"] == "conf-bare")
    pair.b.ok("unregister_trigger", key="bare")


def test_provider_refusal_is_forwarded_to_the_binder(pair: Pair) -> None:
    pair.a.ok("register_trigger_type", trigger_type="conf-picky")
    pair.engine.wait_for_trigger_type("conf-picky")
    pair.b.ok("register_function", function_id="conf::picky", behavior="record")
    pair.engine.wait_for_function("conf::picky")
    pair.b.ok(
        "register_trigger",
        key="picky",
        trigger_type="conf-picky",
        function_id="conf::picky",
        config={"refuse": "bad path"},
    )
    got = pair.a.wait_event("register_trigger", lambda e: e["trigger_type"] == "conf-picky")
    binding_id = got["config"]["id"]
    # The SDK answers with an error ack; the engine forwards it to the binder.
    refusal = pair.engine.wait_for_frame(
        "triggerregistrationresult",
        worker_id=pair.b.info["worker_id"],
        direction="out",
        where=lambda f: f["id"] == binding_id,
    )
    assert refusal["error"] == {"code": "trigger_registration_failed", "message": "bad path"}
    binding = pair.engine.wait_for_binding(binding_id)
    assert binding["parked"] and not binding["acked"]
    pair.b.ok("unregister_trigger", key="picky")


def test_unregister_trigger_type_is_ignored_like_the_engine(pair: Pair) -> None:
    """``unregistertriggertype`` is SDK-only: the HEAD engine does not know it and
    keeps the type till its provider leaves (docs/protocol.md#unregistertriggertype); the connection
    stays usable."""
    pair.a.ok("register_trigger_type", trigger_type="conf-gone")
    pair.engine.wait_for_trigger_type("conf-gone")
    pair.a.ok("unregister_trigger_type", trigger_type="conf-gone")
    frame = pair.engine.wait_for_frame(
        "unregistertriggertype", worker_id=pair.a.info["worker_id"], direction="in"
    )
    assert frame["id"] == "conf-gone"
    assert any(t["id"] == "conf-gone" for t in pair.engine.trigger_types())
    register(pair, "conf::after-gone", "const", result="still here")
    assert pair.b.ok("trigger", function_id="conf::after-gone")["result"] == "still here"


# -- channels (docs/protocol.md#channels) ---------------------------------------------


def test_channel_reader_ref_across_workers(pair: Pair) -> None:
    """``b`` creates a channel (engine::channels::create), passes the reader ref
    to ``a``'s function and writes a text message and two binary chunks."""
    register(pair, "conf::sink", "sink")
    out = pair.b.ok("channel_send", function_id="conf::sink")
    ref = out["ref"]
    assert ref["direction"] == "read" and UUID4.match(ref["channel_id"])
    result = out["result"]
    assert result["reader_type"] == "ChannelReader"  # the SDK resolved the ref
    assert result["text"] == "hello world"
    assert result["bytes"] == 11
    assert [json.loads(m) for m in result["messages"]] == [{"kind": "meta", "n": 2}]


def test_channel_writer_ref_across_workers(pair: Pair) -> None:
    """``b`` passes the writer ref to ``a``'s function, which writes; ``b`` reads."""
    register(pair, "conf::source", "source")
    out = pair.b.ok("channel_receive", function_id="conf::source")
    assert out["result"] == {"writer_type": "ChannelWriter"}
    assert out["text"] == f"hello from {pair.a.name}"
    assert [json.loads(m) for m in out["messages"]] == [{"from": pair.a.name}]


def test_no_protocol_errors_on_the_engine(pair: Pair) -> None:
    """Nothing an official SDK sent so far was malformed for the engine, except
    ``unregistertriggertype`` (SDK-only, ignored like the real engine does)."""
    stats = pair.engine.stats()
    unknown = [
        f
        for w in (pair.a, pair.b)
        for f in pair.engine.frames(
            w.info["worker_id"], direction="in", type="unregistertriggertype"
        )
    ]
    assert stats["bad_frames"] == len(unknown), stats


def test_durable_binding_through_the_builtin(pair: Pair) -> None:
    """``engine::register_trigger`` (docs/protocol.md#built-ins): the engine delivers the binding to
    the official provider and answers only once the provider acked it."""
    pair.a.ok("register_trigger_type", trigger_type="conf-durable")
    pair.engine.wait_for_trigger_type("conf-durable")
    register(pair, "conf::durable", "record")
    out = pair.b.ok(
        "trigger",
        function_id="engine::register_trigger",
        payload={
            "trigger_type": "conf-durable",
            "function_id": "conf::durable",
            "config": {"every": "1m"},
        },
    )
    binding_id = out["result"]["id"]
    assert UUID4.match(binding_id)
    got = pair.a.wait_event("register_trigger", lambda e: e["config"]["id"] == binding_id)
    assert got["config"]["config"] == {"every": "1m"}
    assert pair.engine.wait_for_binding(binding_id)["acked"]
    out = pair.b.ok("trigger", function_id="engine::unregister_trigger", payload={"id": binding_id})
    assert out["result"] == {"removed": True}
    pair.a.wait_event("unregister_trigger", lambda e: e["config"]["id"] == binding_id)


def test_engine_trigger_type_fires_an_official_binding(pair: Pair) -> None:
    """A binding on the engine's own ``engine::workers-available`` type fires into an
    official handler, with the binding's metadata (where the SDK has metadata)."""
    pair.b.ok("register_function", function_id="conf::watch", behavior="record")
    pair.engine.wait_for_function("conf::watch")
    pair.b.ok(
        "register_trigger",
        key="watch",
        trigger_type="engine::workers-available",
        function_id="conf::watch",
        config={},
        metadata={"w": 1},
    )
    pair.engine.wait_for(
        lambda: any(
            b["function_id"] == "conf::watch" and b["acked"] for b in pair.engine.engine.bindings()
        )
    )
    # A short-lived worker (of our own SDK) makes the engine fire.
    visitor = iii.register_worker(pair.url, iii.InitOptions(worker_name="visitor"))
    visitor_id = visitor.worker_id
    visitor.shutdown()

    def about_visitor(e: dict[str, Any]) -> bool:
        return bool(e["function_id"] == "conf::watch" and e["data"].get("worker_id") == visitor_id)

    pair.b.wait_event("invoked", about_visitor, count=3)
    events = [e["data"]["event"] for e in pair.b.find_events("invoked", about_visitor)]
    # (Handlers run concurrently in the SDKs, so compare without order.)
    assert sorted(events) == ["worker_connected", "worker_disconnected", "worker_metadata_updated"]
    seen = pair.b.find_events("invoked", lambda e: e["function_id"] == "conf::watch")[-1]
    assert seen["metadata"] == ({"w": 1} if pair.sdk.has_invocation_metadata else None)
    pair.b.ok("unregister_trigger", key="watch")


def test_many_concurrent_calls(pair: Pair) -> None:
    register(pair, "conf::echo-many", "echo")
    ids = [
        pair.b.send("trigger", function_id="conf::echo-many", payload={"i": i}) for i in range(100)
    ]
    for i, cmd_id in enumerate(ids):
        out = pair.b.answer(cmd_id)
        assert out["ok"], out
        assert out["result"]["echo"]["i"] == i


# -- HTTP-invoked functions (docs/protocol.md#http-functions) -----------------


class _Endpoint(http.server.BaseHTTPRequestHandler):
    seen: ClassVar[list[dict[str, Any]]] = []

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["content-length"])))
        self.seen.append({"path": self.path, "headers": dict(self.headers), "body": body})
        if self.path == "/fail":
            status, out = 500, {"error": {"code": "upstream_down", "message": "try later"}}
        else:
            status, out = 200, {"echo": body}
        data = json.dumps(out).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Endpoint)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_http_invoked_function(pair: Pair, endpoint: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """An official worker registers an HTTP-invoked function (``HttpInvocationConfig``
    / Node's invocation object); the engine POSTs the payload there."""
    monkeypatch.setenv("CONF_HTTP_TOKEN", "s3cret")  # read by the (in-process) engine
    auth = {"type": "bearer", "token_key": "CONF_HTTP_TOKEN"}
    for fid, path in (("conf::http", "/ok"), ("conf::http-fail", "/fail")):
        pair.a.ok(
            "register_http_function",
            function_id=fid,
            url=endpoint + path,
            headers={"x-team": "blue"},
            auth=auth,
        )
        assert pair.engine.wait_for_function(fid)["worker_id"] == pair.a.info["worker_id"]
    out = pair.b.ok("trigger", function_id="conf::http", payload={"q": 1})
    assert _payload_seen(out["result"]["echo"]) == {"q": 1}
    request = _Endpoint.seen[-1]
    headers = {k.lower(): v for k, v in request["headers"].items()}
    assert headers["authorization"] == "Bearer s3cret"
    assert headers["x-team"] == "blue"
    assert headers["x-iii-function-path"] == "conf::http"
    assert UUID4.match(headers["x-iii-invocation-id"])
    out = pair.b.call("trigger", function_id="conf::http-fail", payload={})
    assert out["error"]["code"] == "upstream_down"
    assert out["error"]["message"] == error_message(pair, "upstream_down", "try later")
