"""The engine's state and stream workers through the public API: plain threads,
asyncio and trio, the typed models of ``iii.state`` / ``iii.stream`` as payloads
and results, and a custom stream served with ``iii.helpers.create_stream``."""

from __future__ import annotations

import builtins
import queue
import threading
from typing import Any, Optional

import anyio
import pytest

import iii
from iii import IIIInvocationError
from iii.helpers import create_stream
from iii.state import (
    StateDeleteInput,
    StateEventData,
    StateEventType,
    StateGetInput,
    StateListInput,
    StateSetInput,
    StateSetResult,
    StateUpdateInput,
    StateUpdateResult,
)
from iii.stream import (
    IStream,
    StreamChangeEvent,
    StreamDeleteInput,
    StreamDeleteResult,
    StreamGetInput,
    StreamListGroupsInput,
    StreamListInput,
    StreamSetInput,
    StreamSetResult,
    StreamUpdateInput,
    StreamUpdateResult,
    UpdateAppend,
    UpdateDecrement,
    UpdateIncrement,
    UpdateMerge,
    UpdateRemove,
    UpdateSet,
)

from .test_async_api import BACKENDS, off_loop
from .test_sync_api import opts


def test_state_with_typed_models_on_threads(iii_engine):
    events: queue.Queue[Any] = queue.Queue()
    w = iii.register_worker(iii_engine.url, opts(worker_name="state-app"))
    try:
        w.register_function("audit::state", lambda event: events.put(event))
        w.register_trigger(
            {"type": "state", "function_id": "audit::state", "config": {"scope": "orders"}}
        )
        created = w.trigger(
            {
                "function_id": "state::set",
                "payload": StateSetInput(scope="orders", key="o1", value={"status": "new"}),
            }
        )
        assert StateSetResult.model_validate(created).new_value == {"status": "new"}
        assert created["old_value"] is None
        updated: StateUpdateResult[Any] = StateUpdateResult.model_validate(
            w.trigger(
                {
                    "function_id": "state::update",
                    "payload": StateUpdateInput(
                        scope="orders",
                        key="o1",
                        ops=[
                            UpdateSet(path="status", value="paid"),
                            UpdateIncrement(path="total", by=30),
                            UpdateDecrement(path="total", by=5),
                            UpdateAppend(path="log", value="paid"),
                            UpdateMerge(value={"by": "ann"}),
                            UpdateRemove(path="by"),
                            UpdateMerge(path=["meta", "tags"], value={"vip": True}),
                        ],
                    ),
                }
            )
        )
        assert updated.old_value == {"status": "new"}
        assert updated.new_value == {
            "log": "paid",  # a string appended to nothing stays a string
            "meta": {"tags": {"vip": True}},
            "status": "paid",
            "total": 25,
        }
        assert updated.errors == []
        got = w.trigger(
            {"function_id": "state::get", "payload": StateGetInput(scope="orders", key="o1")}
        )
        assert got == updated.new_value
        listed = w.trigger(
            {"function_id": "state::list", "payload": StateListInput(scope="orders")}
        )
        assert listed == [updated.new_value]
        gone = w.trigger(
            {"function_id": "state::delete", "payload": StateDeleteInput(scope="orders", key="o1")}
        )
        assert gone == updated.new_value
        seen: list[StateEventData[Any]] = [
            StateEventData.model_validate(events.get(timeout=10)) for _ in range(3)
        ]
        assert [e.event_type for e in seen] == [
            StateEventType.CREATED,
            StateEventType.UPDATED,
            StateEventType.DELETED,
        ]
        assert seen[2].old_value == updated.new_value and seen[2].new_value is None
        assert all(e.scope == "orders" and e.key == "o1" and e.type == "state" for e in seen)
        with pytest.raises(IIIInvocationError) as info:
            w.trigger({"function_id": "state::get", "payload": {"scope": "orders"}})
        assert info.value.code == "deserialization_error"
        assert "missing field `key`" in str(info.value)
    finally:
        w.shutdown()


@pytest.mark.parametrize("backend", BACKENDS)
def test_state_and_stream_on_an_event_loop(iii_engine, backend):
    async def main() -> None:
        async with iii.register_worker_async(iii_engine.url, opts(worker_name="loop-app")) as w:
            changes: list[Any] = []
            got = anyio.Event()

            async def on_change(event: Any) -> None:
                changes.append(event)
                if len(changes) == 3:
                    got.set()

            w.register_function("loop::on_change", on_change)
            w.register_trigger(
                {
                    "type": "stream",
                    "function_id": "loop::on_change",
                    "config": {"stream_name": "chat", "group_id": "room-1"},
                }
            )
            await off_loop(iii_engine.wait_for_function, "loop::on_change")
            for i in range(2):
                await w.trigger_async(
                    {
                        "function_id": "stream::set",
                        "payload": StreamSetInput(
                            stream_name="chat", group_id="room-1", item_id=f"m{i}", data={"n": i}
                        ),
                    }
                )
            result = await w.trigger_async(
                {
                    "function_id": "stream::update",
                    "payload": StreamUpdateInput(
                        stream_name="chat",
                        group_id="room-1",
                        item_id="m0",
                        ops=[UpdateIncrement(path="n", by=10)],
                    ),
                }
            )
            assert StreamUpdateResult.model_validate(result).new_value == {"n": 10}
            listed = await w.trigger_async(
                {
                    "function_id": "stream::list",
                    "payload": StreamListInput(stream_name="chat", group_id="room-1"),
                }
            )
            assert listed == [{"n": 10}, {"n": 1}]
            groups = await w.trigger_async(
                {
                    "function_id": "stream::list_groups",
                    "payload": StreamListGroupsInput(stream_name="chat"),
                }
            )
            assert groups == ["room-1"]
            with anyio.fail_after(10):
                await got.wait()
            events = [StreamChangeEvent.model_validate(c) for c in changes]
            # (``event`` stays a mapping: read it by key)
            assert sorted((e.id, e.event["type"], e.event["data"]["n"]) for e in events) == [
                ("m0", "create", 0),
                ("m0", "update", 10),
                ("m1", "create", 1),
            ]
            assert all(e.streamName == "chat" and e.groupId == "room-1" for e in events)
            # state works the same on this loop
            await w.trigger_async(
                {"function_id": "state::set", "payload": {"scope": "s", "key": "k", "value": 1}}
            )
            assert await w.trigger_async({"function_id": "state::list_groups", "payload": {}}) == {
                "groups": ["s"]
            }

    anyio.run(main, backend=backend)


class MemoryTodos(IStream[Any]):
    """A custom stream kept by the worker itself."""

    def __init__(self) -> None:
        self.items: dict[tuple[str, str], Any] = {}
        self.calls: list[str] = []

    async def get(self, input: StreamGetInput) -> Optional[Any]:
        self.calls.append("get")
        return self.items.get((input.group_id, input.item_id))

    async def set(self, input: StreamSetInput) -> Optional[StreamSetResult[Any]]:
        self.calls.append("set")
        old = self.items.get((input.group_id, input.item_id))
        self.items[(input.group_id, input.item_id)] = input.data
        return StreamSetResult(old_value=old, new_value=input.data)

    async def delete(self, input: StreamDeleteInput) -> StreamDeleteResult:
        self.calls.append("delete")
        return StreamDeleteResult(old_value=self.items.pop((input.group_id, input.item_id), None))

    async def list(self, input: StreamListInput) -> list[Any]:
        self.calls.append("list")
        return [v for (g, _), v in self.items.items() if g == input.group_id]

    async def list_groups(self, input: StreamListGroupsInput) -> builtins.list[str]:
        self.calls.append("list_groups")
        return sorted({g for g, _ in self.items})

    async def update(self, input: StreamUpdateInput) -> Optional[StreamUpdateResult[Any]]:
        raise NotImplementedError  # create_stream does not serve updates


def test_a_custom_stream_with_create_stream(iii_engine):
    todos = MemoryTodos()
    changes: queue.Queue[Any] = queue.Queue()
    owner = iii.register_worker(iii_engine.url, opts(worker_name="todo-owner"))
    app = iii.register_worker(iii_engine.url, opts(worker_name="todo-app"))
    try:
        create_stream(owner, "todos", todos)
        owner.register_function("todos::changed", lambda e: changes.put(e))
        owner.register_trigger(
            {"type": "stream", "function_id": "todos::changed", "config": {"stream_name": "todos"}}
        )
        iii_engine.wait_for_function("stream::list_groups(todos)")
        iii_engine.wait_for(
            lambda: any(b["function_id"] == "todos::changed" for b in iii_engine.bindings())
        )
        key = {"stream_name": "todos", "group_id": "inbox", "item_id": "t1"}
        set_result = app.trigger(
            {"function_id": "stream::set", "payload": {**key, "data": "buy milk"}}
        )
        assert set_result == {"new_value": "buy milk", "old_value": None}
        assert app.trigger({"function_id": "stream::get", "payload": key}) == "buy milk"
        assert app.trigger(
            {
                "function_id": "stream::list",
                "payload": {"stream_name": "todos", "group_id": "inbox"},
            }
        ) == ["buy milk"]
        assert app.trigger(
            {"function_id": "stream::list_groups", "payload": {"stream_name": "todos"}}
        ) == ["inbox"]
        assert app.trigger({"function_id": "stream::delete", "payload": key}) == {
            "old_value": "buy milk"
        }
        assert todos.calls == ["set", "get", "list", "list_groups", "delete"]
        first = StreamChangeEvent.model_validate(changes.get(timeout=10))
        second = StreamChangeEvent.model_validate(changes.get(timeout=10))
        assert {(e.event["type"], e.event["data"]) for e in (first, second)} == {
            ("create", "buy milk"),
            ("delete", "buy milk"),
        }
        # Nothing of it went into the engine's own store.
        assert app.trigger({"function_id": "stream::list_all", "payload": {}}) == {
            "count": 0,
            "stream": [],
        }
    finally:
        app.shutdown()
        owner.shutdown()


def test_stream_functions_from_many_threads(iii_engine):
    """Concurrent atomic updates from several threads lose no increment."""
    w = iii.register_worker(iii_engine.url, opts(worker_name="counter"))
    errors: list[BaseException] = []

    def bump() -> None:
        try:
            for _ in range(25):
                w.trigger(
                    {
                        "function_id": "stream::update",
                        "payload": {
                            "stream_name": "c",
                            "group_id": "g",
                            "item_id": "n",
                            "ops": [{"type": "increment", "path": "hits", "by": 1}],
                        },
                    }
                )
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    try:
        threads = [threading.Thread(target=bump) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert not errors
        got = w.trigger(
            {
                "function_id": "stream::get",
                "payload": {"stream_name": "c", "group_id": "g", "item_id": "n"},
            }
        )
        assert got == {"hits": 100}
    finally:
        w.shutdown()
