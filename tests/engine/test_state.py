"""The state worker module: ``state::*`` and the ``state`` trigger type, on the
wire (raw frames), as the real engine's ``iii-state`` with its in-memory store."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from iii.testing.__main__ import _module_settings, _parser

from .conftest import own_engine
from .wsclient import Peer, settle

pytestmark = pytest.mark.anyio

DOC = "https://iii.dev/docs/workers/iii-state#error-codes"


async def ok(peer, function_id, data):
    frame = await peer.call(function_id, data)
    assert "error" not in frame, frame
    return frame.get("result")


async def err(peer, function_id, data):
    frame = await peer.call(function_id, data)
    assert "error" in frame, frame
    return frame["error"]


def bad_input(function_id, reason):
    return {
        "code": "deserialization_error",
        "message": f"Failed to deserialize input for {function_id}: {reason}",
    }


async def bind(peer, function_id, config, trigger_type="state", **fields):
    """Register ``function_id`` on ``peer`` and bind it; returns the binding id."""
    await peer.register(function_id)
    binding_id = f"b-{function_id}"
    await peer.send(
        {
            "type": "registertrigger",
            "id": binding_id,
            "trigger_type": trigger_type,
            "function_id": function_id,
            "config": config,
            **fields,
        }
    )
    await settle(peer)
    return binding_id


async def test_set_get_delete_and_their_results(engine):
    peer = await Peer.join(engine.url, "app")
    first = await ok(peer, "state::set", {"scope": "users", "key": "u1", "value": {"b": 1, "a": 2}})
    # Values come back as serde_json keeps them: object keys sorted.
    assert first == {"new_value": {"a": 2, "b": 1}, "old_value": None}
    assert list(first["new_value"]) == ["a", "b"]
    again = await ok(peer, "state::set", {"scope": "users", "key": "u1", "data": [1, 2]})
    assert again == {"new_value": [1, 2], "old_value": {"a": 2, "b": 1}}  # `data` is an alias
    assert await ok(peer, "state::get", {"scope": "users", "key": "u1"}) == [1, 2]
    assert await ok(peer, "state::get", {"scope": "users", "key": "nope"}) is None
    assert await ok(peer, "state::get", {"scope": "nowhere", "key": "u1"}) is None
    # A stored null is a value (its key exists).
    await ok(peer, "state::set", {"scope": "users", "key": "nil", "value": None})
    assert await ok(peer, "state::delete", {"scope": "users", "key": "u1"}) == [1, 2]
    assert await ok(peer, "state::delete", {"scope": "users", "key": "u1"}) is None
    assert await ok(peer, "state::get", {"scope": "users", "key": "u1"}) is None


async def test_list_and_list_groups(engine):
    peer = await Peer.join(engine.url, "app")
    for key, value in (("k2", "two"), ("k1", "one"), ("k3", {"z": 1, "y": 2})):
        await ok(peer, "state::set", {"scope": "s", "key": key, "value": value})
    await ok(peer, "state::set", {"scope": "a-scope", "key": "x", "value": 0})
    # Insertion order, overwriting keeps a key's place.
    await ok(peer, "state::set", {"scope": "s", "key": "k2", "value": "TWO"})
    assert await ok(peer, "state::list", {"scope": "s"}) == ["TWO", "one", {"y": 2, "z": 1}]
    assert await ok(peer, "state::list", {"scope": "empty"}) == []
    assert await ok(peer, "state::list_groups", {}) == {"groups": ["a-scope", "s"]}
    # A scope whose last key went stays listed (the real store keeps it).
    await ok(peer, "state::delete", {"scope": "a-scope", "key": "x"})
    assert await ok(peer, "state::list", {"scope": "a-scope"}) == []
    assert await ok(peer, "state::list_groups", {"anything": 1}) == {"groups": ["a-scope", "s"]}


async def test_update_operations(engine):
    peer = await Peer.join(engine.url, "app")
    created = await ok(
        peer,
        "state::update",
        {
            "scope": "c",
            "key": "k",
            "ops": [
                {"type": "increment", "path": "count", "by": 5},
                {"type": "decrement", "path": "count", "by": 2},
                {"type": "decrement", "path": "debt", "by": 4},
                {"type": "set", "path": "status", "value": "active"},
                {"type": "append", "path": "events", "value": {"kind": "chunk"}},
                {"type": "append", "path": "text", "value": "hello"},
                {"type": "append", "path": "text", "value": " world"},
                {"type": "merge", "value": {"m": 1, "n": 2}},
                {"type": "remove", "path": "n"},
                {"type": "merge", "path": ["deep", "er"], "value": {"x": True}},
                {"type": "append", "path": ["deep", "list"], "value": "a"},
                {"type": "set", "path": "nothing"},
            ],
        },
    )
    assert created == {
        "old_value": None,
        "new_value": {
            "count": 3,
            "debt": -4,
            "deep": {"er": {"x": True}, "list": ["a"]},
            "events": [{"kind": "chunk"}],
            "m": 1,
            "nothing": None,
            "status": "active",
            "text": "hello world",
        },
    }
    updated = await ok(
        peer,
        "state::update",
        {"scope": "c", "key": "k", "ops": [{"type": "increment", "path": "count", "by": 1}]},
    )
    assert updated["old_value"]["count"] == 3 and updated["new_value"]["count"] == 4
    # The root: a missing value counts from the increment; set/remove replace it.
    root = await ok(
        peer,
        "state::update",
        {"scope": "c", "key": "n", "ops": [{"type": "increment", "path": "", "by": 7}]},
    )
    assert root == {"new_value": 7, "old_value": None}
    float_root = await ok(
        peer,
        "state::update",
        {
            "scope": "c",
            "key": "n",
            "ops": [
                {"type": "set", "path": "", "value": 1.5},
                {"type": "increment", "path": "", "by": 2},
            ],
        },
    )
    assert float_root["new_value"] == 3.5
    removed = await ok(
        peer, "state::update", {"scope": "c", "key": "n", "ops": [{"type": "remove", "path": ""}]}
    )
    assert removed == {"new_value": None, "old_value": 3.5}
    appended = await ok(
        peer,
        "state::update",
        {
            "scope": "c",
            "key": "chunks",
            "ops": [{"type": "append", "value": 1}, {"type": "append", "value": 2}],
        },
    )
    assert appended["new_value"] == [1, 2]
    assert await ok(peer, "state::get", {"scope": "c", "key": "chunks"}) == [1, 2]


async def test_update_errors_leave_the_other_operations_applied(engine):
    peer = await Peer.join(engine.url, "app")
    await ok(peer, "state::set", {"scope": "e", "key": "k", "value": {"name": "x", "n": 1}})
    out = await ok(
        peer,
        "state::update",
        {
            "scope": "e",
            "key": "k",
            "ops": [
                {"type": "increment", "path": "name", "by": 1},
                {"type": "increment", "path": "n", "by": 1},
                {"type": "merge", "path": ["a", ""], "value": {}},
                {"type": "merge", "value": {"__proto__": 1}},
                {"type": "merge", "value": [1]},
                {"type": "set", "path": "__proto__", "value": 1},
                {"type": "append", "path": "n", "value": 1},
                {"type": "append", "path": "name", "value": 5},
            ],
        },
    )
    assert out["new_value"] == {"n": 2, "name": "x"}
    assert out["old_value"] == {"n": 1, "name": "x"}
    assert out["errors"] == [
        {
            "op_index": 0,
            "code": "increment.not_number",
            "message": "Expected number at path 'name', got string.",
            "doc_url": DOC,
        },
        {
            "op_index": 2,
            "code": "merge.path.empty_segment",
            "message": "Path contains an empty segment",
            "doc_url": DOC,
        },
        {
            "op_index": 3,
            "code": "merge.value.proto_polluted",
            "message": 'Merge value top-level key "__proto__" is a prototype-pollution sink',
            "doc_url": DOC,
        },
        {
            "op_index": 4,
            "code": "merge.value.not_an_object",
            "message": "Merge value must be a JSON object",
            "doc_url": DOC,
        },
        {
            "op_index": 5,
            "code": "set.path.proto_polluted",
            "message": "Path segment '__proto__' is not allowed (prototype pollution).",
            "doc_url": DOC,
        },
        {
            "op_index": 6,
            "code": "append.type_mismatch",
            "message": "Cannot append at path 'n': target is number, expected array, string, "
            "null, or missing field.",
            "doc_url": DOC,
        },
        {
            "op_index": 7,
            "code": "append.type_mismatch",
            "message": "Expected string append value at path 'name', got number.",
            "doc_url": DOC,
        },
    ]
    # A scalar root: field operations have no object to work on.
    await ok(peer, "state::set", {"scope": "e", "key": "s", "value": "text"})
    out = await ok(
        peer,
        "state::update",
        {
            "scope": "e",
            "key": "s",
            "ops": [
                {"type": "set", "path": "f", "value": 1},
                {"type": "decrement", "path": "f", "by": 1},
                {"type": "remove", "path": "f"},
                {"type": "append", "path": ["f", "g"], "value": 1},
                {"type": "decrement", "path": "", "by": 1},
            ],
        },
    )
    assert out["new_value"] == "text"
    assert [(e["code"], e["message"]) for e in out["errors"]] == [
        ("set.target_not_object", "Cannot set at path 'f': target is string, expected object."),
        (
            "decrement.target_not_object",
            "Cannot decrement at path 'f': target is string, expected object.",
        ),
        (
            "remove.target_not_object",
            "Cannot remove at path 'f': target is string, expected object.",
        ),
        (
            "append.target_not_object",
            "Cannot append at path '[f, g]': target is string, expected object.",
        ),
        ("decrement.not_number", "Expected number at path 'root', got string."),
    ]
    # Overflow past u64 is not a number any more; past i64 it still is (u64).
    await ok(peer, "state::set", {"scope": "e", "key": "big", "value": 2**63 - 1})
    out = await ok(
        peer,
        "state::update",
        {"scope": "e", "key": "big", "ops": [{"type": "increment", "path": "", "by": 1}]},
    )
    assert out == {"new_value": 2**63, "old_value": 2**63 - 1}
    await ok(peer, "state::set", {"scope": "e", "key": "big", "value": 2**64 - 1})
    out = await ok(
        peer,
        "state::update",
        {"scope": "e", "key": "big", "ops": [{"type": "increment", "path": "", "by": 1}]},
    )
    assert out["errors"][0]["code"] == "increment.not_number"


async def test_inputs_are_read_like_serde(engine):
    peer = await Peer.join(engine.url, "app")
    assert await err(peer, "state::get", {"scope": "s"}) == bad_input(
        "state::get", "missing field `key`"
    )
    # Present fields are checked first (in key order), missing ones after.
    assert await err(peer, "state::get", {"key": 5}) == bad_input(
        "state::get", "invalid type: integer `5`, expected a string"
    )
    assert await err(peer, "state::set", {"scope": "s", "key": "k"}) == bad_input(
        "state::set", "missing field `value`"
    )
    assert await err(peer, "state::set", {"scope": "s", "key": "k", "value": 1, "data": 2}) == (
        bad_input("state::set", "duplicate field `value`")
    )
    assert await err(peer, "state::list", None) == bad_input(
        "state::list", "invalid type: null, expected struct StateGetGroupInput"
    )
    assert await err(peer, "state::list_groups", None) == bad_input(
        "state::list_groups", "invalid type: null, expected struct StateListGroupsInput"
    )
    assert await err(peer, "state::delete", "s/k") == bad_input(
        "state::delete", 'invalid type: string "s/k", expected struct StateDeleteInput'
    )
    # A struct reads from an array of its fields too.
    assert await ok(peer, "state::set", ["s", "k", 1]) == {"new_value": 1, "old_value": None}
    assert await ok(peer, "state::get", ["s", "k"]) == 1
    assert await err(peer, "state::get", ["s"]) == bad_input(
        "state::get", "invalid length 1, expected struct StateGetInput with 2 elements"
    )
    assert await err(peer, "state::get", ["s", "k", "x"]) == bad_input(
        "state::get", "invalid length 3, expected fewer elements in array"
    )
    for ops, reason in (
        ({"type": "set"}, "invalid type: map, expected a sequence"),
        ([1], "invalid type: integer `1`, expected internally tagged enum UpdateOp"),
        ([{"path": "a"}], "missing field `type`"),
        (
            [{"type": "push", "path": "a"}],
            "unknown variant `push`, expected one of `set`, `merge`, `increment`, "
            "`decrement`, `append`, `remove`",
        ),
        ([{"type": 9}], "invalid value: integer `9`, expected variant index 0 <= i < 6"),
        ([{"type": True}], "invalid type: boolean `true`, expected variant identifier"),
        ([{"type": "set", "value": 1}], "missing field `path`"),
        ([{"type": "increment", "path": "a"}], "missing field `by`"),
        (
            [{"type": "increment", "path": "a", "by": 1.5}],
            "invalid type: floating point `1.5`, expected i64",
        ),
        (
            [{"type": "increment", "path": "a", "by": 2**63}],
            f"invalid value: integer `{2**63}`, expected i64",
        ),
        ([{"type": "remove", "path": 3}], "invalid type: integer `3`, expected a string"),
        ([{"type": "merge", "path": "a"}], "missing field `value`"),
        (
            [{"type": "merge", "path": 1, "value": {}}],
            "data did not match any variant of untagged enum MergePath",
        ),
    ):
        assert await err(peer, "state::update", {"scope": "s", "key": "k", "ops": ops}) == (
            bad_input("state::update", reason)
        ), ops
    # A rejected update changed nothing.
    assert await ok(peer, "state::get", ["s", "k"]) == 1
    # The positional form of an update op works (the variant's index).
    out = await ok(
        peer, "state::update", {"scope": "s", "key": "k", "ops": [{"type": 2, "path": "", "by": 1}]}
    )
    assert out["new_value"] == 2


async def test_state_max_value_bytes():
    async with own_engine(namespace_grace=0.3, state_max_value_bytes=10) as engine:
        peer = await Peer.join(engine.url, "app")
        assert await ok(peer, "state::set", {"scope": "s", "key": "k", "value": "12345678"})
        assert await err(peer, "state::set", {"scope": "s", "key": "k", "value": "123456789"}) == {
            "code": "VALUE_TOO_LARGE",
            "message": "value of 11 bytes exceeds the configured max_value_bytes limit of 10",
        }
        assert await ok(peer, "state::get", {"scope": "s", "key": "k"}) == "12345678"


# -- the state trigger type ---------------------------------------------------------------


async def test_state_trigger_payloads_for_each_write(engine):
    app = await Peer.join(engine.url, "app")
    watcher = await Peer.join(engine.url, "watcher")
    await bind(watcher, "audit::on_change", {}, metadata={"tag": "m"})
    await ok(app, "state::set", {"scope": "users", "key": "u1", "value": {"n": 1}})
    await ok(
        app,
        "state::update",
        {"scope": "users", "key": "u1", "ops": [{"type": "increment", "path": "n", "by": 1}]},
    )
    await ok(app, "state::get", {"scope": "users", "key": "u1"})  # reads report nothing
    await ok(app, "state::delete", {"scope": "users", "key": "u1"})
    await ok(app, "state::delete", {"scope": "users", "key": "ghost"})
    await ok(
        app,
        "state::update",
        {"scope": "users", "key": "u2", "ops": [{"type": "set", "path": "", "value": 0}]},
    )
    seen = await watcher.serve({}, count=5)
    assert all(f["function_id"] == "audit::on_change" for f in seen)
    assert all(f["metadata"] == {"tag": "m"} for f in seen)
    assert [f["data"] for f in seen] == [
        {
            "event_type": "state:created",
            "key": "u1",
            "new_value": {"n": 1},
            "old_value": None,
            "scope": "users",
            "type": "state",
        },
        {
            "event_type": "state:updated",
            "key": "u1",
            "new_value": {"n": 2},
            "old_value": {"n": 1},
            "scope": "users",
            "type": "state",
        },
        {
            "event_type": "state:deleted",
            "key": "u1",
            "new_value": None,
            "old_value": {"n": 2},
            "scope": "users",
            "type": "state",
        },
        {
            "event_type": "state:deleted",
            "key": "ghost",
            "new_value": None,
            "old_value": None,
            "scope": "users",
            "type": "state",
        },
        {
            "event_type": "state:created",
            "key": "u2",
            "new_value": 0,
            "old_value": None,
            "scope": "users",
            "type": "state",
        },
    ]
    # serde_json's key order on the wire too.
    assert list(seen[0]["data"]) == sorted(seen[0]["data"])


async def test_state_trigger_scope_and_key_filters(engine):
    app = await Peer.join(engine.url, "app")
    watcher = await Peer.join(engine.url, "watcher")
    await bind(watcher, "w::scope", {"scope": "orders"})
    await bind(watcher, "w::key", {"key": "status"})
    await bind(watcher, "w::both", {"scope": "orders", "key": "status"})
    await ok(app, "state::set", {"scope": "users", "key": "name", "value": 1})  # none
    await ok(app, "state::set", {"scope": "orders", "key": "o1", "value": 2})  # scope
    await ok(app, "state::set", {"scope": "users", "key": "status", "value": 3})  # key
    await ok(app, "state::set", {"scope": "orders", "key": "status", "value": 4})  # all three
    seen = await watcher.serve({}, count=5)
    got = sorted((f["function_id"], f["data"]["new_value"]) for f in seen)
    assert got == [("w::both", 4), ("w::key", 3), ("w::key", 4), ("w::scope", 2), ("w::scope", 4)]
    await watcher.expect_silence()


async def test_state_trigger_handlers_run_one_after_the_other(engine):
    """One write's bindings are called in turn: the next only once the previous answered."""
    app = await Peer.join(engine.url, "app")
    first = await Peer.join(engine.url, "first")
    second = await Peer.join(engine.url, "second")
    await bind(first, "first::h", {})
    await bind(second, "second::h", {})
    await ok(app, "state::set", {"scope": "s", "key": "k", "value": 1})
    call = await first.recv_type("invokefunction")
    await second.expect_silence(0.3)  # the first one has not answered yet
    await first.result(call["invocation_id"], None, function_id="first::h")
    later = await second.recv_type("invokefunction")
    assert later["data"]["new_value"] == 1


async def test_state_trigger_condition_function(engine):
    app = await Peer.join(engine.url, "app")
    watcher = await Peer.join(engine.url, "watcher")
    await watcher.register("cond::only_big")
    await bind(watcher, "w::big", {"condition_function_id": "cond::only_big"})
    await bind(watcher, "w::failing_cond", {"condition_function_id": "cond::missing"})

    async def answer_conditions_and_collect(n_conditions, n_handlers):
        handled: list[dict[str, Any]] = []
        conditions = 0
        while conditions < n_conditions or len(handled) < n_handlers:
            frame = await watcher.recv_type("invokefunction")
            if frame["function_id"] == "cond::only_big":
                conditions += 1
                big = frame["data"]["new_value"] > 10
                # no metadata for a condition; the same payload as the handler's
                assert frame["data"]["type"] == "state" and "metadata" not in frame
                await watcher.result(
                    frame["invocation_id"], big if frame["data"]["key"] != "null" else None
                )
            else:
                handled.append(frame)
                await watcher.result(frame["invocation_id"], None)
        return handled

    await ok(app, "state::set", {"scope": "s", "key": "small", "value": 1})
    await ok(app, "state::set", {"scope": "s", "key": "big", "value": 100})
    await ok(app, "state::set", {"scope": "s", "key": "null", "value": 0})  # condition says null
    handled = await answer_conditions_and_collect(3, 2)
    assert sorted(f["data"]["key"] for f in handled) == ["big", "null"]
    assert all(f["function_id"] == "w::big" for f in handled)
    await watcher.expect_silence()  # the binding whose condition fails never runs


async def test_state_trigger_config_is_checked(engine):
    watcher = await Peer.join(engine.url, "watcher")
    await watcher.register("w::h")
    await watcher.send(
        {
            "type": "registertrigger",
            "id": "bad",
            "trigger_type": "state",
            "function_id": "w::h",
            "config": {"scope": 123},
        }
    )
    frame = await watcher.recv_type("triggerregistrationresult")
    assert frame["error"] == {
        "code": "trigger_registration_failed",
        "message": "Failed to parse trigger config: invalid type: integer `123`, expected a string",
    }
    out = await watcher.call(
        "engine::register_trigger",
        {"trigger_type": "state", "function_id": "w::h", "config": None},
    )
    assert out["error"] == {
        "code": "trigger_registration_failed",
        "message": "Failed to parse trigger config: invalid type: null, expected struct "
        "StateTriggerConfig",
    }


async def test_durable_state_binding_and_unbinding(engine):
    app = await Peer.join(engine.url, "app")
    watcher = await Peer.join(engine.url, "watcher")
    await watcher.register("w::h")
    await settle(watcher)
    out = await ok(
        app,
        "engine::register_trigger",
        {"trigger_type": "state", "function_id": "w::h", "config": {"scope": "s"}},
    )
    await ok(app, "state::set", {"scope": "s", "key": "k", "value": 1})
    (seen,) = await watcher.serve({}, count=1)
    assert seen["data"]["event_type"] == "state:created"
    assert await ok(app, "engine::unregister_trigger", {"id": out["id"]}) == {"removed": True}
    await ok(app, "state::set", {"scope": "s", "key": "k", "value": 2})
    await watcher.expect_silence()


async def test_state_triggers_can_be_turned_off():
    async with own_engine(namespace_grace=0.3, state_triggers_enabled=False) as engine:
        app = await Peer.join(engine.url, "app")
        watcher = await Peer.join(engine.url, "watcher")
        await bind(watcher, "w::h", {})
        await ok(app, "state::set", {"scope": "s", "key": "k", "value": 1})
        await watcher.expect_silence()


async def test_a_failing_handler_changes_nothing(engine):
    app = await Peer.join(engine.url, "app")
    watcher = await Peer.join(engine.url, "watcher")
    await bind(watcher, "w::a", {})
    await bind(watcher, "w::b", {})
    await ok(app, "state::set", {"scope": "s", "key": "k", "value": 1})
    first = await watcher.recv_type("invokefunction")
    await watcher.result(
        first["invocation_id"], None, error={"code": "boom", "message": "handler failed"}
    )
    second = await watcher.recv_type("invokefunction")  # the next binding still runs
    assert {first["function_id"], second["function_id"]} == {"w::a", "w::b"}
    assert await ok(app, "state::get", {"scope": "s", "key": "k"}) == 1


# -- switch, options, introspection ---------------------------------------------------------


async def test_state_can_be_turned_off():
    async with own_engine(namespace_grace=0.3, state=False) as engine:
        peer = await Peer.join(engine.url, "app")
        error = await err(peer, "state::get", {"scope": "s", "key": "k"})
        assert error["code"] == "function_not_found"
        types = await ok(peer, "engine::triggers::list", {})
        assert "state" not in {t["id"] for t in types["triggers"]}


def test_state_cli_flags():
    args = _parser().parse_args(
        ["--no-state", "--state-max-value-bytes", "64", "--no-state-triggers-enabled"]
    )
    assert _module_settings(args) == {
        "state": False,
        "state_max_value_bytes": 64,
        "state_triggers_enabled": False,
    }


async def test_state_in_introspection(engine):
    peer = await Peer.join(engine.url, "app")
    listed = await ok(peer, "engine::functions::list", {"prefix": "state::"})
    assert [
        (f["function_id"], f["worker_name"], f["description"]) for f in listed["functions"]
    ] == [
        ("state::delete", "iii-state", "Delete a value from state"),
        ("state::get", "iii-state", "Get a value from state"),
        ("state::list", "iii-state", "Get a group from state"),
        ("state::list_groups", "iii-state", "List all state groups"),
        ("state::set", "iii-state", "Set a value in state"),
        ("state::update", "iii-state", "Update a value in state"),
    ]
    types = await ok(peer, "engine::triggers::list", {"prefix": "state"})
    assert types["triggers"] == [
        {
            "id": "state",
            "namespace": "default",
            "worker_name": "iii-state",
            "description": "State trigger",
        }
    ]
    workers = await ok(peer, "engine::workers::list", {"runtime": "engine"})
    row = next(w for w in workers["workers"] if w["name"] == "iii-state")
    assert row["function_count"] == 6 and row["status"] == "available"


async def test_state_lives_as_long_as_the_engine_run():
    async with own_engine(namespace_grace=0.3) as engine:
        peer = await Peer.join(engine.url, "app")
        await ok(peer, "state::set", {"scope": "s", "key": "k", "value": 1})
        await engine.restart()
        with anyio.fail_after(10):
            while True:
                try:
                    peer = await Peer.join(engine.url, "app")
                    break
                except OSError:
                    await anyio.sleep(0.01)
        assert await ok(peer, "state::get", {"scope": "s", "key": "k"}) is None
