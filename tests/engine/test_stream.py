"""The stream worker module: ``stream::*``, the ``stream`` / ``stream:join`` /
``stream:leave`` trigger types and the client stream WebSocket, on the wire, as
the real engine's ``iii-stream`` with its in-memory store."""

from __future__ import annotations

import json
from typing import Any

import pytest

from iii.testing import ManualClock
from iii.testing.__main__ import _module_settings, _parser

from .conftest import own_engine
from .test_state import bad_input, bind, err, ok
from .wsclient import Peer, RawClient, Rejected, settle

pytestmark = pytest.mark.anyio


def item(stream="todo", group="g", item_id="a", **extra):
    return {"stream_name": stream, "group_id": group, "item_id": item_id, **extra}


async def test_set_get_delete_list(engine):
    peer = await Peer.join(engine.url, "app")
    assert await ok(peer, "stream::set", item(data={"t": 1, "a": 0})) == {
        "new_value": {"a": 0, "t": 1},
        "old_value": None,
    }
    assert await ok(peer, "stream::set", item(data="v2")) == {
        "new_value": "v2",
        "old_value": {"a": 0, "t": 1},
    }
    await ok(peer, "stream::set", item(item_id="b", data="b1"))
    await ok(peer, "stream::set", item(group="h", item_id="c", data="c1"))
    await ok(peer, "stream::set", item(stream="other", group="x", item_id="d", data=1))
    assert await ok(peer, "stream::get", item()) == "v2"
    assert await ok(peer, "stream::get", item(item_id="zz")) is None
    assert await ok(peer, "stream::list", {"stream_name": "todo", "group_id": "g"}) == ["v2", "b1"]
    assert await ok(peer, "stream::list", {"stream_name": "todo", "group_id": "none"}) == []
    assert await ok(peer, "stream::list_groups", {"stream_name": "todo"}) == ["g", "h"]
    assert await ok(peer, "stream::list_all", {}) == {
        "count": 2,
        "stream": [{"groups": ["x"], "id": "other"}, {"groups": ["g", "h"], "id": "todo"}],
    }
    assert await ok(peer, "stream::delete", item()) == {"old_value": "v2"}
    assert await ok(peer, "stream::delete", item()) == {"old_value": None}
    assert await ok(peer, "stream::list", {"stream_name": "todo", "group_id": "g"}) == ["b1"]
    # Emptied groups stay listed, as in the real store.
    await ok(peer, "stream::delete", item(group="h", item_id="c"))
    assert await ok(peer, "stream::list_groups", {"stream_name": "todo"}) == ["g", "h"]
    assert (
        await ok(
            peer,
            "stream::send",
            {"stream_name": "todo", "group_id": "g", "type": "typing", "data": None},
        )
        is None
    )


async def test_update(engine):
    peer = await Peer.join(engine.url, "app")
    out = await ok(
        peer,
        "stream::update",
        item(
            ops=[
                {"type": "increment", "path": "n", "by": 2},
                {"type": "append", "path": "log", "value": "x"},
            ]
        ),
    )
    assert out == {"new_value": {"log": "x", "n": 2}, "old_value": None}
    out = await ok(
        peer,
        "stream::update",
        item(
            ops=[
                {"type": "increment", "path": "log", "by": 1},
                {"type": "merge", "value": {"done": True}},
            ]
        ),
    )
    assert out["old_value"] == {"log": "x", "n": 2}
    assert out["new_value"] == {"done": True, "log": "x", "n": 2}
    assert [e["code"] for e in out["errors"]] == ["increment.not_number"]
    assert await ok(peer, "stream::get", item()) == {"done": True, "log": "x", "n": 2}


async def test_inputs_are_read_like_serde(engine):
    peer = await Peer.join(engine.url, "app")
    assert await err(peer, "stream::set", item()) == bad_input(
        "stream::set", "missing field `data`"
    )
    assert await err(peer, "stream::get", {"stream_name": "s", "group_id": 1}) == bad_input(
        "stream::get", "invalid type: integer `1`, expected a string"
    )
    assert await err(peer, "stream::list_all", None) == bad_input(
        "stream::list_all", "invalid type: null, expected struct StreamListAllInput"
    )
    assert await err(peer, "stream::send", {"stream_name": "s", "group_id": "g", "data": 1}) == (
        bad_input("stream::send", "missing field `type`")
    )
    assert await err(peer, "stream::update", item(ops=[{"type": "nope"}])) == bad_input(
        "stream::update",
        "unknown variant `nope`, expected one of `set`, `merge`, `increment`, `decrement`, "
        "`append`, `remove`",
    )


# -- the stream trigger type -----------------------------------------------------------------


async def test_stream_trigger_payloads(engine):
    app = await Peer.join(engine.url, "app")
    watcher = await Peer.join(engine.url, "watcher")
    await bind(
        watcher, "w::todo", {"stream_name": "todo"}, trigger_type="stream", metadata={"m": 1}
    )
    await ok(app, "stream::set", item(data={"t": 1}))
    await ok(app, "stream::set", item(data={"t": 2}))
    await ok(
        app, "stream::update", item(item_id="b", ops=[{"type": "set", "path": "", "value": 5}])
    )
    await ok(app, "stream::delete", item(item_id="missing"))  # nothing existed: no event
    await ok(app, "stream::delete", item())
    await ok(
        app,
        "stream::send",
        {"stream_name": "todo", "group_id": "g", "type": "typing", "data": {"who": "x"}},
    )
    await ok(app, "stream::set", item(stream="other", data=1))  # another stream
    await ok(app, "stream::get", item())  # reads report nothing
    seen = await watcher.serve({}, count=5)
    assert all(f["metadata"] == {"m": 1} for f in seen)
    data = [f["data"] for f in seen]
    for d in data:
        assert isinstance(d.pop("timestamp"), int)
        assert d.pop("type") == "stream"
        assert (d.pop("streamName"), d.pop("groupId")) == ("todo", "g")
    assert data == [
        {"id": "a", "event": {"data": {"t": 1}, "type": "create"}},
        {"id": "a", "event": {"data": {"t": 2}, "type": "update"}},
        {"id": "b", "event": {"data": 5, "type": "create"}},
        {"id": "a", "event": {"data": {"t": 2}, "type": "delete"}},
        {"id": None, "event": {"event": {"data": {"who": "x"}, "type": "typing"}, "type": "event"}},
    ]
    assert list(seen[0]["data"]) == sorted(seen[0]["data"])  # serde_json's order
    await watcher.expect_silence()


async def test_stream_timestamps_follow_the_engine_clock():
    clock = ManualClock(start=1_000.0)
    async with own_engine(namespace_grace=0.3, clock=clock) as engine:
        app = await Peer.join(engine.url, "app")
        watcher = await Peer.join(engine.url, "watcher")
        await bind(watcher, "w::h", {"stream_name": "s"}, trigger_type="stream")
        await ok(app, "stream::set", item(stream="s", data=1))
        (seen,) = await watcher.serve({}, count=1)
        assert seen["data"]["timestamp"] == 1_000_000


async def test_stream_trigger_filters(engine):
    app = await Peer.join(engine.url, "app")
    watcher = await Peer.join(engine.url, "watcher")
    await bind(watcher, "w::group", {"stream_name": "s", "group_id": "g1"}, trigger_type="stream")
    await bind(
        watcher,
        "w::item",
        {"stream_name": "s", "group_id": "", "item_id": "i1"},
        trigger_type="stream",
    )
    await ok(app, "stream::set", item(stream="s", group="g1", item_id="i0", data=1))  # group
    await ok(app, "stream::set", item(stream="s", group="g2", item_id="i1", data=2))  # item
    await ok(app, "stream::set", item(stream="s", group="g2", item_id="i2", data=3))  # none
    await ok(
        app, "stream::send", {"stream_name": "s", "group_id": "g1", "type": "t", "data": 4}
    )  # group (no id)
    seen = await watcher.serve({}, count=3)
    got = sorted((f["function_id"], json.dumps(f["data"]["event"])) for f in seen)
    assert got == [
        ("w::group", json.dumps({"data": 1, "type": "create"})),
        ("w::group", json.dumps({"event": {"data": 4, "type": "t"}, "type": "event"})),
        ("w::item", json.dumps({"data": 2, "type": "create"})),
    ]
    await watcher.expect_silence()


async def test_stream_trigger_condition(engine):
    app = await Peer.join(engine.url, "app")
    watcher = await Peer.join(engine.url, "watcher")
    await watcher.register("cond::creates")
    await bind(
        watcher,
        "w::h",
        {"stream_name": "s", "condition_function_id": "cond::creates"},
        trigger_type="stream",
    )
    await ok(app, "stream::set", item(stream="s", data=1))
    await ok(app, "stream::set", item(stream="s", data=2))
    # The condition passes creates only: the update's handler call never comes.
    conditions = 0
    handled: list[dict[str, Any]] = []
    while conditions < 2 or not handled:
        frame = await watcher.recv_type("invokefunction")
        if frame["function_id"] == "cond::creates":
            conditions += 1
            await watcher.result(frame["invocation_id"], frame["data"]["event"]["type"] == "create")
        else:
            handled.append(frame)
            await watcher.result(frame["invocation_id"], None)
    await watcher.expect_silence()
    assert [f["data"]["event"] for f in handled] == [{"data": 1, "type": "create"}]


async def test_stream_trigger_config_is_checked(engine):
    watcher = await Peer.join(engine.url, "watcher")
    for config, reason in (
        ({"group_id": "g"}, "missing `stream_name`"),
        ({"stream_name": None}, "missing `stream_name`"),
        ({"stream_name": "s", "item_id": 5}, "invalid type: integer `5`, expected a string"),
        ("s", 'invalid type: string "s", expected struct StreamTriggerConfig'),
    ):
        out = await watcher.call(
            "engine::register_trigger",
            {"trigger_type": "stream", "function_id": "w::h", "config": config},
        )
        assert out["error"] == {
            "code": "trigger_registration_failed",
            "message": f"Failed to deserialize stream trigger: {reason}",
        }, config
    # join and leave take any config
    for type_id in ("stream:join", "stream:leave"):
        out = await ok(
            watcher,
            "engine::register_trigger",
            {"trigger_type": type_id, "function_id": "w::h", "config": {"anything": [1]}},
        )
        assert "id" in out


# -- a stream served by a worker ----------------------------------------------------------------


async def test_a_worker_can_serve_a_stream(engine):
    app = await Peer.join(engine.url, "app")
    owner = await Peer.join(engine.url, "owner")
    watcher = await Peer.join(engine.url, "watcher")
    for op in ("get", "set", "delete", "list", "list_groups", "update"):
        await owner.register(f"stream::{op}(custom)")
    await settle(owner)
    await bind(watcher, "w::h", {"stream_name": "custom"}, trigger_type="stream")

    async def expect(function_id, data, answer, **fields):
        frame = await owner.recv_type("invokefunction")
        assert frame["function_id"] == function_id
        assert frame["data"] == data
        await owner.result(frame["invocation_id"], answer, **fields)

    key = item(stream="custom")
    await app.invoke("stream::get", key)
    await expect("stream::get(custom)", key, {"from": "owner"})
    assert (await app.recv_type("invocationresult"))["result"] == {"from": "owner"}

    await app.invoke("stream::set", {**key, "data": {"v": 1}})
    await expect(
        "stream::set(custom)",
        {**key, "data": {"v": 1}},
        {"old_value": {"v": 0}, "new_value": {"v": "stored"}},
    )
    result = await app.recv_type("invocationresult")
    assert result["result"] == {"new_value": {"v": "stored"}, "old_value": {"v": 0}}
    (event,) = await watcher.serve({}, count=1)
    assert event["data"]["event"] == {"data": {"v": "stored"}, "type": "update"}

    await app.invoke("stream::update", {**key, "ops": [{"type": "merge", "value": {"x": 1}}]})
    await expect(
        "stream::update(custom)",
        {**key, "ops": [{"type": "merge", "value": {"x": 1}}]},
        {"new_value": {"x": 1}},
    )
    assert (await app.recv_type("invocationresult"))["result"] == {
        "new_value": {"x": 1},
        "old_value": None,
    }
    (event,) = await watcher.serve({}, count=1)
    assert event["data"]["event"] == {"data": {"x": 1}, "type": "create"}

    await app.invoke("stream::list", {"stream_name": "custom", "group_id": "g"})
    await expect("stream::list(custom)", {"group_id": "g", "stream_name": "custom"}, [1, 2])
    assert (await app.recv_type("invocationresult"))["result"] == [1, 2]

    await app.invoke("stream::list_groups", {"stream_name": "custom"})
    await expect("stream::list_groups(custom)", {"stream_name": "custom"}, ["g"])
    assert (await app.recv_type("invocationresult"))["result"] == ["g"]

    # A write function that answers nothing, an error, or the wrong shape.
    await app.invoke("stream::set", {**key, "data": 1})
    await expect("stream::set(custom)", {**key, "data": 1}, None)
    assert (await app.recv_type("invocationresult"))["error"] == {
        "code": "STREAM_SET_ERROR",
        "message": "Failed to set value: Function returned no result",
    }
    await app.invoke("stream::delete", key)
    await expect("stream::delete(custom)", key, None, error={"code": "nope", "message": 'no "way"'})
    assert (await app.recv_type("invocationresult"))["error"] == {
        "code": "STREAM_DELETE_ERROR",
        "message": 'Failed to delete value: Failed to invoke function: ErrorBody { code: "nope", '
        'message: "no \\"way\\"", stacktrace: None }',
    }
    await app.invoke("stream::set", {**key, "data": 1})
    await expect("stream::set(custom)", {**key, "data": 1}, {"old_value": 1})
    assert (await app.recv_type("invocationresult"))["error"] == {
        "code": "JSON_ERROR",
        "message": "Failed to convert result to value: missing field `new_value`",
    }
    # A read function's error comes back as it is.
    await app.invoke("stream::get", key)
    await expect("stream::get(custom)", key, None, error={"code": "E1", "message": "m1"})
    assert (await app.recv_type("invocationresult"))["error"] == {"code": "E1", "message": "m1"}
    await app.invoke("stream::delete", key)
    await expect("stream::delete(custom)", key, {"old_value": "gone"})
    assert (await app.recv_type("invocationresult"))["result"] == {"old_value": "gone"}
    (event,) = await watcher.serve({}, count=1)
    assert event["data"]["event"] == {"data": "gone", "type": "delete"}
    # The engine's own store was never used for that stream.
    assert await ok(app, "stream::list_all", {}) == {"count": 0, "stream": []}


# -- the client WebSocket -------------------------------------------------------------------------


async def ws_client(engine, path="/", headers=None):
    await engine.wait_for(lambda: "stream" in engine.urls)
    return await RawClient.connect(engine.urls["stream"], path, headers=headers)


def join(sub, stream="todo", group="g", item_id=None, kind="join"):
    data = {"subscriptionId": sub, "streamName": stream, "groupId": group}
    if item_id is not None:
        data["id"] = item_id
    return {"type": kind, "data": data}


async def next_message(client):
    frame = await client.recv()
    assert frame["type"] == "stream" and isinstance(frame.pop("timestamp"), int)
    return frame


async def test_a_client_subscribes_and_gets_every_change(engine):
    app = await Peer.join(engine.url, "app")
    await ok(app, "stream::set", item(data={"t": 1}))
    client = await ws_client(engine)
    await client.send(join("s1"))
    sync = await next_message(client)
    assert sync == {
        "type": "stream",
        "streamName": "todo",
        "groupId": "g",
        "id": None,
        "event": {"type": "sync", "data": [{"t": 1}]},
    }
    await ok(app, "stream::set", item(item_id="b", data=2))
    await ok(app, "stream::update", item(ops=[{"type": "set", "path": "t", "value": 3}]))
    await ok(app, "stream::delete", item(item_id="b"))
    await ok(
        app,
        "stream::send",
        {"stream_name": "todo", "group_id": "g", "id": "b", "type": "typing", "data": "x"},
    )
    await ok(app, "stream::set", item(group="other", data=1))  # another group
    got = [await next_message(client) for _ in range(4)]
    assert [(m["id"], m["event"]) for m in got] == [
        ("b", {"type": "create", "data": 2}),
        ("a", {"type": "update", "data": {"t": 3}}),
        ("b", {"type": "delete", "data": 2}),
        ("b", {"type": "event", "event": {"type": "typing", "data": "x"}}),
    ]
    # The real engine's field order on this socket.
    raw = json.dumps(got[0])
    assert raw.index('"streamName"') < raw.index('"groupId"') < raw.index('"event"')
    await client.expect_silence()
    # Leaving ends the subscription.
    await client.send(join("s1", kind="leave"))
    await settle(app)
    await ok(app, "stream::set", item(data=9))
    await client.expect_silence()


async def test_an_item_subscription_gets_that_item_only(engine):
    app = await Peer.join(engine.url, "app")
    client = await ws_client(engine)
    await client.send(join("s1", item_id="a"))
    sync = await next_message(client)
    assert (sync["id"], sync["event"]) == ("a", {"type": "sync", "data": None})
    await ok(app, "stream::set", item(item_id="b", data=1))
    await ok(app, "stream::set", item(item_id="a", data=2))
    message = await next_message(client)
    assert (message["id"], message["event"]) == ("a", {"type": "create", "data": 2})
    # Two subscriptions to the same group: one copy of each change per subscription.
    await client.send(join("s2"))
    assert (await next_message(client))["event"]["type"] == "sync"
    await ok(app, "stream::set", item(item_id="a", data=3))
    twice = [await next_message(client) for _ in range(2)]
    assert twice[0] == twice[1]
    await client.expect_silence()


async def test_join_and_leave_triggers_and_refusal(engine):
    app = await Peer.join(engine.url, "app")
    gate = await Peer.join(engine.url, "gate")
    await bind(gate, "gate::join", {}, trigger_type="stream:join", metadata={"g": 1})
    await bind(gate, "gate::leave", {}, trigger_type="stream:leave")
    client = await ws_client(engine)
    await client.send(join("s1", item_id="a"))
    call = await gate.recv_type("invokefunction")
    assert call["function_id"] == "gate::join" and call["metadata"] == {"g": 1}
    assert call["data"] == {
        "context": None,
        "group_id": "g",
        "id": "a",
        "stream_name": "todo",
        "subscription_id": "s1",
    }
    await client.expect_silence()  # no sync before the join binding answered
    await gate.result(call["invocation_id"], {"unauthorized": False})
    assert (await next_message(client))["event"]["type"] == "sync"
    # A refusal: an "unauthorized" message, no subscription.
    await client.send(join("s2"))
    call = await gate.recv_type("invokefunction")
    await gate.result(call["invocation_id"], {"unauthorized": True})
    refused = await next_message(client)
    assert refused == {
        "type": "stream",
        "streamName": "todo",
        "groupId": "g",
        "id": None,
        "event": {"type": "unauthorized"},
    }
    await ok(app, "stream::set", item(item_id="b", data=1))  # s2 would have got it
    await client.expect_silence()
    # Closing the connection: its remaining subscription (s1) leaves.
    await client.close()
    call = await gate.recv_type("invokefunction")
    assert call["function_id"] == "gate::leave"
    assert call["data"]["subscription_id"] == "s1"
    await gate.result(call["invocation_id"], None)
    await gate.expect_silence()


async def test_the_auth_function_gives_each_connection_its_context():
    async with own_engine(namespace_grace=0.3, stream_auth_function="auth::stream") as engine:
        auth = await Peer.join(engine.url, "auth")
        await auth.register("auth::stream")
        await bind(auth, "auth::on_join", {}, trigger_type="stream:join")
        await settle(auth)
        client = await ws_client(engine, "/?token=abc&token=def&x=", headers=[(b"X-User", b"ann")])
        call = await auth.recv_type("invokefunction")
        assert call["function_id"] == "auth::stream"
        request = call["data"]
        assert request["path"] == "/"
        assert request["query_params"] == {"token": ["abc", "def"], "x": [""]}
        assert request["headers"]["x-user"] == "ann"
        assert request["addr"].startswith("127.0.0.1:") and request["addr"].split(":")[1].isdigit()
        await auth.result(call["invocation_id"], {"context": {"user": "ann"}})
        await client.send(join("s1"))
        on_join = await auth.recv_type("invokefunction")
        assert on_join["data"]["context"] == {"user": "ann"}
        await auth.result(on_join["invocation_id"], {})
        assert (await next_message(client))["event"]["type"] == "sync"
        # An auth function that fails or answers no object: no context, still connected.
        other = await ws_client(engine)
        call = await auth.recv_type("invokefunction")
        await auth.result(call["invocation_id"], "not an object")
        await other.send(join("s9"))
        on_join = await auth.recv_type("invokefunction")
        assert on_join["data"]["context"] is None


async def test_the_socket_ignores_what_it_does_not_understand(engine):
    client = await ws_client(engine)
    for junk in ("", "   ", "not json", '{"type": "dance"}', '{"type": "join", "data": {}}'):
        await client.send(junk)
    await client.send_bytes(json.dumps(join("s1")).encode())
    assert (await next_message(client))["event"] == {"type": "sync", "data": []}
    with pytest.raises(Rejected) as info:
        await ws_client(engine, "/stream/todo/g/")
    assert info.value.status == 404


# -- switch, options, introspection --------------------------------------------------------------


async def test_stream_can_be_turned_off():
    async with own_engine(namespace_grace=0.3, stream=False) as engine:
        peer = await Peer.join(engine.url, "app")
        assert (await err(peer, "stream::get", item()))["code"] == "function_not_found"
        assert "stream" not in engine.urls
        types = await ok(peer, "engine::triggers::list", {})
        assert not {"stream", "stream:join", "stream:leave"} & {t["id"] for t in types["triggers"]}


def test_stream_cli_flags():
    args = _parser().parse_args(
        ["--no-stream", "--stream-port", "3112", "--stream-auth-function", "auth::fn"]
    )
    assert _module_settings(args) == {
        "stream": False,
        "stream_port": 3112,
        "stream_auth_function": "auth::fn",
    }


async def test_stream_in_introspection(engine):
    peer = await Peer.join(engine.url, "app")
    listed = await ok(peer, "engine::functions::list", {"prefix": "stream::"})
    assert [(f["function_id"], f["worker_name"]) for f in listed["functions"]] == [
        (f"stream::{op}", "iii-stream")
        for op in ("delete", "get", "list", "list_all", "list_groups", "send", "set", "update")
    ]
    types = await ok(peer, "engine::triggers::list", {"prefix": "stream"})
    assert [(t["id"], t["worker_name"], t["description"]) for t in types["triggers"]] == [
        ("stream", "iii-stream", "Stream trigger"),
        ("stream:join", "iii-stream", "Stream join trigger"),
        ("stream:leave", "iii-stream", "Stream leave trigger"),
    ]
    workers = await ok(peer, "engine::workers::list", {"runtime": "engine"})
    row = next(w for w in workers["workers"] if w["name"] == "iii-stream")
    assert row["function_count"] == 8
