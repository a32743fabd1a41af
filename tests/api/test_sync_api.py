"""The public API on plain threads (``register_worker``), against the reference engine."""

from __future__ import annotations

import dataclasses
import threading
import time
from typing import Any, ClassVar, Optional, TypedDict

import attrs
import pytest

import iii
from iii import IIIInvocationError, InitOptions

FAST = InitOptions(
    reconnection_config=iii.ReconnectionConfig(initial_delay_ms=50, max_delay_ms=200),
    register_timeout_ms=5000,
    shutdown_grace_ms=2000,
)


def opts(**kw: Any) -> InitOptions:
    return attrs.evolve(FAST, **kw)


@pytest.fixture
def worker(iii_engine):
    w = iii.register_worker(iii_engine.url, opts(worker_name="api-a"))
    yield w
    w.shutdown()


@pytest.fixture
def caller(iii_engine):
    w = iii.register_worker(iii_engine.url, opts(worker_name="api-b"))
    yield w
    w.shutdown()


def wait_registered(engine, function_id: str) -> None:
    engine.wait_for_function(function_id)


def test_register_worker_returns_connected(iii_engine, worker):
    assert worker.get_connection_state() == "connected"
    assert worker.worker_id is not None
    announced = iii_engine.wait_for_worker("api-a")
    assert announced["runtime"] == "python"


def test_register_worker_raises_when_nobody_answers():
    with socket_closed_port() as url:
        start = time.monotonic()
        with pytest.raises(iii.ConnectError) as info:
            iii.register_worker(url, opts(register_timeout_ms=400))
        # The configured wait (not the 30 s default) is the one that ran out:
        # the message names it, and it was waited in full (a lower bound, which
        # a loaded machine can only exceed).
        assert "could not register" in str(info.value)
        assert "within 0.4s" in str(info.value)
        assert time.monotonic() - start >= 0.4


class socket_closed_port:
    """A URL whose port has no listener."""

    def __enter__(self) -> str:
        import socket

        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        self.port = s.getsockname()[1]
        s.close()
        return f"ws://127.0.0.1:{self.port}"

    def __exit__(self, *exc: object) -> None:
        pass


def test_duplicate_and_invalid_function_ids(worker):
    worker.register_function("dup::f", lambda d: d)
    with pytest.raises(ValueError):
        worker.register_function("dup::f", lambda d: d)
    with pytest.raises(ValueError):
        worker.register_function("  ", lambda d: d)
    with pytest.raises(TypeError):
        worker.register_function(42, lambda d: d)


def test_call_across_workers_and_errors(iii_engine, worker, caller):
    worker.register_function("math::add", lambda d: {"c": d["a"] + d["b"]})

    def boom(data: Any) -> None:
        raise RuntimeError("kaboom")

    worker.register_function("math::boom", boom)
    wait_registered(iii_engine, "math::boom")
    assert caller.trigger({"function_id": "math::add", "payload": {"a": 2, "b": 3}}) == {"c": 5}
    with pytest.raises(IIIInvocationError) as info:
        caller.trigger({"function_id": "math::boom", "payload": {}})
    assert info.value.code == "invocation_failed"
    assert info.value.message == "kaboom"
    assert info.value.function_id == "math::boom"
    assert "RuntimeError: kaboom" in (info.value.stacktrace or "")
    with pytest.raises(IIIInvocationError) as info:
        caller.trigger({"function_id": "nope::missing", "payload": {}})
    assert info.value.code == "function_not_found"


def test_trigger_request_object_and_none_payload(iii_engine, worker, caller):
    worker.register_function("echo::it", lambda d: {"got": d})
    wait_registered(iii_engine, "echo::it")
    assert caller.trigger(iii.TriggerRequest(function_id="echo::it")) == {"got": None}
    # The engine requires "data"; it is sent as null, never omitted.
    frames = iii_engine.frames(type="invokefunction", direction="in")
    assert any(f.get("function_id") == "echo::it" and "data" in f for f in frames)


def test_void_and_enqueue(iii_engine, worker, caller):
    ran = threading.Event()
    seen: list[Any] = []

    def job(data: Any) -> str:
        seen.append(data)
        ran.set()
        return "ok"

    worker.register_function("jobs::run", job)
    wait_registered(iii_engine, "jobs::run")
    assert (
        caller.trigger(
            {"function_id": "jobs::run", "payload": {"n": 1}, "action": iii.TriggerAction.Void()}
        )
        is None
    )
    assert ran.wait(30)
    ran.clear()
    receipt = caller.trigger(
        {
            "function_id": "jobs::run",
            "payload": {"n": 2},
            "action": iii.TriggerAction.Enqueue(queue="default"),
        }
    )
    assert isinstance(receipt, iii.EnqueueResult)
    assert len(receipt.message_receipt_id) == 36
    assert receipt.messageReceiptId == receipt.message_receipt_id
    assert ran.wait(30)
    assert {"n": 2} in seen


def test_timeout(iii_engine, worker, caller):
    release = threading.Event()
    worker.register_function("slow::op", lambda d: release.wait(60))
    wait_registered(iii_engine, "slow::op")
    start = time.monotonic()
    try:
        with pytest.raises(IIIInvocationError) as info:
            caller.trigger({"function_id": "slow::op", "payload": None, "timeout_ms": 200})
        # The handler is held until now: the call timed out on its own clock,
        # not because the handler returned.
        assert not release.is_set()
    finally:
        release.set()
    assert info.value.code == "TIMEOUT"
    assert "200ms" in info.value.message
    assert time.monotonic() - start >= 0.2  # not before its time (a lower bound)


def test_unserialisable_payload_and_result(iii_engine, worker, caller):
    for payload in (float("nan"), {"x": float("inf")}, {1, 2}, object()):
        with pytest.raises(IIIInvocationError) as info:
            caller.trigger({"function_id": "any::thing", "payload": payload})
        assert info.value.code == "serialization_error"
    worker.register_function("bad::result", lambda d: {"when": object()})
    wait_registered(iii_engine, "bad::result")
    with pytest.raises(IIIInvocationError) as info:
        caller.trigger({"function_id": "bad::result", "payload": {}})
    assert info.value.code == "serialization_error"


def test_payload_too_large_is_refused_locally(caller):
    with pytest.raises(IIIInvocationError) as info:
        caller.trigger({"function_id": "x::y", "payload": "x" * (64 * 1024 * 1024 + 1)})
    assert info.value.code == "payload_too_large"


def test_metadata_reaches_handlers(iii_engine, worker, caller):
    worker.register_function("meta::echo", lambda data, metadata: {"m": metadata, "d": data})
    wait_registered(iii_engine, "meta::echo")
    got = caller.trigger({"function_id": "meta::echo", "payload": 7, "metadata": {"t": "acme"}})
    assert got == {"m": {"t": "acme"}, "d": 7}


@attrs.define
class AttrsIn:
    a: int
    b: int = 0


@dataclasses.dataclass
class DataIn:
    name: str


class DictIn(TypedDict):
    q: float


def test_typed_handlers_convert_validate_and_advertise(iii_engine, worker, caller):
    worker.register_function("t::attrs", lambda d: d.a + d.b)

    def attrs_handler(data: AttrsIn) -> int:
        return data.a + data.b

    def data_handler(data: DataIn) -> DataIn:
        return DataIn(name=data.name.upper())

    def dict_handler(data: DictIn) -> float:
        return data["q"] * 2

    worker.register_function("t::a", attrs_handler)
    worker.register_function("t::d", data_handler)
    worker.register_function("t::t", dict_handler)
    wait_registered(iii_engine, "t::t")
    assert caller.trigger({"function_id": "t::a", "payload": {"a": 2, "b": 5}}) == 7
    assert caller.trigger({"function_id": "t::a", "payload": {"a": 2}}) == 2
    assert caller.trigger({"function_id": "t::d", "payload": {"name": "ada"}}) == {"name": "ADA"}
    assert caller.trigger({"function_id": "t::t", "payload": {"q": 2}}) == 4.0
    for fid, bad in (("t::a", {"a": "2"}), ("t::a", {}), ("t::d", {"name": 1}), ("t::t", [])):
        with pytest.raises(IIIInvocationError) as info:
            caller.trigger({"function_id": fid, "payload": bad})
        assert info.value.code == "INVALID_ARGUMENTS", (fid, bad)
    registered = {f["id"]: f for f in iii_engine.frames(type="registerfunction", direction="in")}
    schema = registered["t::a"]["request_format"]
    assert schema["type"] == "object"
    assert schema["properties"] == {"a": {"type": "integer"}, "b": {"type": "integer"}}
    assert schema["required"] == ["a"]
    # With $schema, as the official SDK (0.19 and 0.25) registers a derived format.
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert registered["t::a"]["response_format"] == {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "integer",
    }
    assert registered["t::t"]["request_format"]["properties"] == {"q": {"type": "number"}}
    assert "request_format" not in registered["t::attrs"]


class GreetModel:
    """Shaped like a pydantic model (the SDK duck-types them; pydantic is not a dependency)."""

    dumps: ClassVar[list[dict[str, Any]]] = []

    def __init__(self, message: str, note: Optional[str] = None) -> None:
        self.message = message
        self.note = note

    @classmethod
    def model_json_schema(cls) -> dict[str, Any]:
        return {"type": "object", "title": cls.__name__, "required": ["message"]}

    def model_dump(self, **kwargs: Any) -> dict[str, Any]:
        GreetModel.dumps.append(kwargs)
        out = {"message": self.message, "note": self.note}
        if kwargs.get("exclude_none"):
            out = {k: v for k, v in out.items() if v is not None}
        return out


def test_pydantic_models_as_the_official_docstring_uses_them(iii_engine, worker, caller):
    # register_function's official example: a handler annotated with pydantic
    # models advertises their schemas and returns a model, sent as its object.
    async def greet(data: GreetModel) -> GreetModel:
        return GreetModel(message=f"Hello, {data['name']}!")  # type: ignore[index]

    worker.register_function("pyd::greet", greet)
    wait_registered(iii_engine, "pyd::greet")
    assert caller.trigger({"function_id": "pyd::greet", "payload": {"name": "Ada"}}) == {
        "message": "Hello, Ada!"
    }
    assert GreetModel.dumps == [{"mode": "json", "by_alias": True, "exclude_none": True}]
    registered = {f["id"]: f for f in iii_engine.frames(type="registerfunction", direction="in")}
    expected = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "title": "GreetModel",
        "required": ["message"],
    }
    assert registered["pyd::greet"]["request_format"] == expected
    assert registered["pyd::greet"]["response_format"] == expected
    assert iii.format_utils.python_type_to_format(GreetModel) == expected

    # A model as a call's payload, or inside one, goes as its object too.
    worker.register_function("pyd::echo", lambda d: d)
    wait_registered(iii_engine, "pyd::echo")
    hi = GreetModel(message="hi")
    assert caller.trigger({"function_id": "pyd::echo", "payload": hi}) == {"message": "hi"}
    assert caller.trigger({"function_id": "pyd::echo", "payload": {"m": [hi]}}) == {
        "m": [{"message": "hi"}]
    }


def test_explicit_formats_and_http_functions(iii_engine, worker):
    fmt = iii.RegisterFunctionFormat(
        type="object",
        name="input",
        body=[iii.RegisterFunctionFormat(type="number", name="a", required=True)],
    )
    worker.register_function(
        "f::fmt",
        lambda d: d,
        request_format=fmt,
        response_format={"type": "object"},
        description="formatted",
        metadata={"owner": "me"},
    )
    worker.register_function(
        "ext::hook",
        iii.HttpInvocationConfig(
            url="https://example.com/hook",
            method="PUT",
            auth=iii.HttpAuthBearer(token_key="HOOK_TOKEN"),
        ),
    )
    iii_engine.wait_for_function("ext::hook")
    frames = {f["id"]: f for f in iii_engine.frames(type="registerfunction", direction="in")}
    assert frames["f::fmt"]["request_format"] == {
        "type": "object",
        "name": "input",
        "required": False,
        "body": [{"type": "number", "name": "a", "required": True}],
    }
    assert frames["f::fmt"]["metadata"] == {"owner": "me"}
    assert frames["ext::hook"]["invocation"] == {
        "url": "https://example.com/hook",
        "method": "PUT",
        "auth": {"type": "bearer", "token_key": "HOOK_TOKEN"},
    }


def test_async_handlers_on_a_thread_worker(iii_engine, worker, caller):
    async def double(data: int) -> int:
        return data * 2

    async def nested(data: Any) -> Any:
        with pytest.raises(iii.IIIUsageError):
            worker.trigger({"function_id": "a::double", "payload": 1})
        return await worker.trigger_async({"function_id": "a::double", "payload": 21})

    worker.register_function("a::double", double)
    worker.register_function("a::nested", nested)
    wait_registered(iii_engine, "a::nested")
    assert caller.trigger({"function_id": "a::double", "payload": 4}) == 8
    assert caller.trigger({"function_id": "a::nested", "payload": None}) == 42


def test_blocking_handler_does_not_stall_other_calls(iii_engine, worker, caller):
    entered = threading.Event()
    release = threading.Event()
    returned = threading.Event()

    def block(data: Any) -> None:
        entered.set()
        release.wait(60)
        returned.set()

    worker.register_function("b::block", block)
    worker.register_function("b::fast", lambda d: "fast")
    wait_registered(iii_engine, "b::fast")
    blocked = threading.Thread(
        target=lambda: caller.trigger(
            {"function_id": "b::block", "payload": None, "timeout_ms": 120000}
        )
    )
    blocked.start()
    try:
        assert entered.wait(30)
        assert caller.trigger({"function_id": "b::fast", "payload": None}) == "fast"
        # Ordering, not speed: the fast call was answered while the blocking
        # handler was still held (it returns only once released).
        assert not returned.is_set()
    finally:
        release.set()
        blocked.join(30)
    assert returned.is_set()


def test_concurrent_handler_limit(iii_engine, caller):
    w = iii.register_worker(iii_engine.url, opts(worker_name="limited", max_concurrent_handlers=2))
    running = 0
    peak = 0
    lock = threading.Lock()

    def slow(data: Any) -> None:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        time.sleep(0.05)
        with lock:
            running -= 1

    try:
        w.register_function("lim::slow", slow)
        iii_engine.wait_for_function("lim::slow")
        threads = [
            threading.Thread(
                target=caller.trigger, args=({"function_id": "lim::slow", "payload": i},)
            )
            for i in range(8)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert peak == 2
    finally:
        w.shutdown()


def test_many_threads_call_at_once(iii_engine, worker, caller):
    worker.register_function("c::inc", lambda d: d + 1)
    wait_registered(iii_engine, "c::inc")
    results: dict[int, int] = {}

    def run(i: int) -> None:
        results[i] = caller.trigger({"function_id": "c::inc", "payload": i})

    threads = [threading.Thread(target=run, args=(i,)) for i in range(32)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert results == {i: i + 1 for i in range(32)}


def test_callers_waiting_on_answers_still_serve_their_worker(iii_engine, worker, caller):
    """A blocked ``trigger`` may be the one reading the socket: what arrives
    meanwhile (invocations of this worker's own handlers, sync and async, and
    other threads' answers) is still served."""

    async def inner_async(d: int) -> int:
        return d * 10

    caller.register_function("nest::inner", lambda d: d + 1)
    caller.register_function("nest::inner_async", inner_async)
    worker.register_function(
        "nest::outer",
        lambda d: (
            worker.trigger({"function_id": "nest::inner", "payload": d})
            + worker.trigger({"function_id": "nest::inner_async", "payload": d})
        ),
    )
    wait_registered(iii_engine, "nest::inner_async")
    wait_registered(iii_engine, "nest::outer")
    for i in range(5):  # sequential: each call may be read by the calling thread
        assert caller.trigger({"function_id": "nest::outer", "payload": i}) == (i + 1) + i * 10
    results: dict[int, int] = {}

    def run(i: int) -> None:
        results[i] = caller.trigger({"function_id": "nest::outer", "payload": i})

    threads = [threading.Thread(target=run, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert results == {i: (i + 1) + i * 10 for i in range(8)}


def test_connection_lost_fails_calls_at_once_then_reconnects(iii_engine, worker, caller):
    states: list[str] = []
    caller.add_connection_state_listener(states.append)
    worker.register_function("l::hang", lambda d: time.sleep(0.5))
    worker.register_function("l::ok", lambda d: "ok")
    wait_registered(iii_engine, "l::ok")
    iii_engine.withhold_results("l::hang")
    outcome: list[Any] = []

    def call() -> None:
        try:
            caller.trigger({"function_id": "l::hang", "payload": None, "timeout_ms": 600000})
        except IIIInvocationError as exc:
            outcome.append(exc)

    t = threading.Thread(target=call)
    t.start()
    iii_engine.wait_for_frame(
        "invokefunction", direction="in", where=lambda f: f.get("function_id") == "l::hang"
    )
    iii_engine.drop(caller.worker_id, code=1011)
    t.join(60)
    # Failed by the drop, not by its (10 min) timeout.
    assert not t.is_alive()
    assert outcome and outcome[0].code == "CONNECTION_LOST"
    deadline = time.monotonic() + 30
    while caller.get_connection_state() != "connected" and time.monotonic() < deadline:
        time.sleep(0.02)
    iii_engine.clear_faults()
    assert caller.trigger({"function_id": "l::ok", "payload": None}) == "ok"
    assert "reconnecting" in states and states[-1] == "connected"
    # The failed call was not sent again on the new connection.
    sent = [
        f
        for f in iii_engine.frames(type="invokefunction", direction="in")
        if f.get("function_id") == "l::hang"
    ]
    assert len(sent) == 1


def test_registrations_are_replayed_after_a_drop(iii_engine, worker, caller):
    worker.register_function("r::f", lambda d: "again")
    wait_registered(iii_engine, "r::f")
    old_id = worker.worker_id
    iii_engine.drop(old_id, code=1000)
    iii_engine.wait_for_frame(
        "reattach", direction="in", where=lambda f: f.get("previous_worker_id") == old_id
    )
    iii_engine.wait_for(lambda: True)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            assert (
                caller.trigger({"function_id": "r::f", "payload": None, "timeout_ms": 30000})
                == "again"
            )
            break
        except IIIInvocationError as exc:
            if exc.code not in ("function_not_found", "CONNECTION_LOST"):
                raise
            time.sleep(0.05)
    else:
        pytest.fail("function never came back")
    assert worker.worker_id != old_id


def test_shutdown_fails_pending_calls_and_later_calls(iii_engine, worker, caller):
    worker.register_function("s::hang", lambda d: time.sleep(0.2))
    wait_registered(iii_engine, "s::hang")
    iii_engine.withhold_results("s::hang")
    outcome: list[Any] = []

    def call() -> None:
        try:
            caller.trigger({"function_id": "s::hang", "payload": None})
        except IIIInvocationError as exc:
            outcome.append(exc.code)

    t = threading.Thread(target=call)
    t.start()
    iii_engine.wait_for_frame(
        "invokefunction", direction="in", where=lambda f: f.get("function_id") == "s::hang"
    )
    caller.shutdown()
    t.join(30)
    assert outcome == ["SHUTDOWN"]
    with pytest.raises(IIIInvocationError) as info:
        caller.trigger({"function_id": "s::hang", "payload": None})
    assert info.value.code == "SHUTDOWN"
    caller.shutdown()  # idempotent


def test_worker_name_conflict_is_fatal(iii_engine, worker):
    iii_engine.wait_for_worker("api-a")
    with pytest.raises(iii.ConnectionFailed) as info:
        iii.register_worker(iii_engine.url, opts(worker_name="api-a"))
    assert info.value.code == "WORKER_NAMESPACE_CONFLICT"
    # The official SDK's class for it, with the engine's fields.
    assert isinstance(info.value, iii.RegistrationRejectedError)
    assert (info.value.namespace, info.value.worker_name, info.value.owner_worker_id) == (
        "default",
        "api-a",
        worker.worker_id,
    )


def test_trigger_types_and_bindings(iii_engine, worker, caller):
    events: list[tuple[str, Any]] = []
    registered = threading.Event()
    unregistered = threading.Event()

    class Webhooks(iii.TriggerHandler[Any]):
        async def register_trigger(self, config: iii.TriggerConfig[Any]) -> None:
            events.append(("register", config))
            registered.set()

        async def unregister_trigger(self, config: iii.TriggerConfig[Any]) -> None:
            events.append(("unregister", config))
            unregistered.set()

    ref = worker.register_trigger_type({"id": "webhook", "description": "hooks"}, Webhooks())
    assert ref.id == "webhook"
    iii_engine.wait_for_trigger_type("webhook")
    caller.register_function("hook::target", lambda d, metadata: {"d": d, "m": metadata})
    trigger = caller.register_trigger(
        {
            "type": "webhook",
            "function_id": "hook::target",
            "config": {"path": "/x"},
            "metadata": {"src": "t"},
        }
    )
    assert registered.wait(30)
    kind, config = events[0]
    assert kind == "register" and config.id == trigger.id
    assert config.config == {"path": "/x"} and config.metadata == {"src": "t"}
    iii_engine.wait_for_binding(trigger.id, acked=True)
    # The provider fires the binding by invoking the bound function.
    fired = worker.trigger(
        {"function_id": config.function_id, "payload": {"hit": 1}, "metadata": config.metadata}
    )
    assert fired == {"d": {"hit": 1}, "m": {"src": "t"}}
    trigger.unregister()
    assert unregistered.wait(30)
    assert events[-1][1].id == trigger.id


def test_a_result_with_number_keys_is_answered_as_json_dumps_writes_it(iii_engine, worker, caller):
    # Official code may count by status code: {404: 3} is {"404": 3}, as json.dumps has it.
    worker.register_function("keys::count", lambda d: {404: 3, 200: 1})
    wait_registered(iii_engine, "keys::count")
    assert caller.trigger({"function_id": "keys::count", "payload": None}) == {"404": 3, "200": 1}


def test_a_trigger_handler_may_override_with_a_sync_method(iii_engine, worker, caller):
    # Typed as the base allows (mypy checks this file): a sync override of one
    # method, the other left as the base's no-op.
    seen: list[Optional[str]] = []
    called = threading.Event()

    class Ticks(iii.TriggerHandler[Any]):
        def register_trigger(self, config: iii.TriggerConfig[Any]) -> None:
            seen.append(config.id)
            called.set()

    worker.register_trigger_type({"id": "ticks", "description": ""}, Ticks())
    iii_engine.wait_for_trigger_type("ticks")
    caller.register_function("ticks::t", lambda d: d)
    trigger = caller.register_trigger({"type": "ticks", "function_id": "ticks::t", "config": {}})
    assert called.wait(30)
    assert seen == [trigger.id]
    iii_engine.wait_for_binding(trigger.id, acked=True)  # the provider's answer reached it
    trigger.unregister()
    iii_engine.wait_for(lambda: all(b["id"] != trigger.id for b in iii_engine.bindings()))
    assert trigger.state == "unregistered"


def test_failing_trigger_provider_refuses_the_binding(iii_engine, worker, caller):
    class Picky:
        def register_trigger(self, config: Any) -> None:
            raise ValueError("bad path")

    worker.register_trigger_type({"id": "picky", "description": ""}, Picky())
    iii_engine.wait_for_trigger_type("picky")
    caller.register_function("p::t", lambda d: d)
    trigger = caller.register_trigger({"type": "picky", "function_id": "p::t", "config": {}})
    frame = iii_engine.wait_for_frame(
        "triggerregistrationresult", direction="in", where=lambda f: f.get("id") == trigger.id
    )
    assert frame["error"] == {"code": "trigger_registration_failed", "message": "bad path"}


def test_unregister_function(iii_engine, worker, caller):
    ref = worker.register_function("u::gone", lambda d: 1)
    wait_registered(iii_engine, "u::gone")
    assert caller.trigger({"function_id": "u::gone", "payload": None}) == 1
    ref.unregister()
    iii_engine.wait_for(lambda: True)
    iii_engine.wait_for_frame("unregisterfunction", direction="in")
    with pytest.raises(IIIInvocationError) as info:
        caller.trigger({"function_id": "u::gone", "payload": None})
    assert info.value.code == "function_not_found"
    ref.unregister()  # idempotent
    worker.register_function("u::gone", lambda d: 2)  # the id is free again


def test_listings(iii_engine, worker, caller):
    worker.register_function("list::me", lambda d: d, description="listed")
    wait_registered(iii_engine, "list::me")
    functions = {f.function_id: f for f in caller.list_functions()}
    assert isinstance(functions["list::me"], iii.FunctionInfo)
    assert functions["list::me"].description == "listed"
    workers = caller.list_workers()
    assert {"api-a", "api-b"} <= {w.name for w in workers}
    assert all(isinstance(w, iii.iii_types.WorkerInfo) for w in workers)
    worker.register_trigger_type(
        {"id": "list-type", "description": "for listing"}, iii.TriggerHandler()
    )
    iii_engine.wait_for_trigger_type("list-type")
    caller.register_function("list::target", lambda d: d)
    trigger = caller.register_trigger(
        {"type": "list-type", "function_id": "list::target", "config": {"k": 1}}
    )
    iii_engine.wait_for_binding(trigger.id)
    triggers = caller.list_triggers()
    mine = [t for t in triggers if t.id == trigger.id]
    assert len(mine) == 1 and isinstance(mine[0], iii.TriggerInfo)
    assert mine[0].trigger_type == "list-type" and mine[0].function_id == "list::target"
    assert mine[0].config == {"k": 1}


def test_namespace_of_calls(iii_engine):
    w = iii.register_worker(iii_engine.url, opts(worker_name="ns-w", namespace="orders"))
    try:
        w.register_function("orders::make", lambda d: "made")
        iii_engine.wait_for_function("orders::make", "orders")
        assert w.trigger({"function_id": "orders::make", "payload": None}) == "made"
        w.list_functions()  # engine:: calls stay in default
        calls = iii_engine.frames(type="invokefunction", direction="in")
        by_fn = {c["function_id"]: c for c in calls}
        assert by_fn["orders::make"]["namespace"] == "orders"
        assert "namespace" not in by_fn["engine::functions::list"]
        with pytest.raises(IIIInvocationError) as info:
            w.trigger({"function_id": "x", "payload": None, "namespace": " "})
        assert info.value.code == "INVALID_NAMESPACE"
    finally:
        w.shutdown()


def test_trigger_async_from_user_loops(iii_engine, worker, caller):
    import anyio

    worker.register_function("la::x", lambda d: d * 3)
    wait_registered(iii_engine, "la::x")

    async def main() -> list[int]:
        out: list[int] = []
        async with anyio.create_task_group() as tg:

            async def one(i: int) -> None:
                out.append(await caller.trigger_async({"function_id": "la::x", "payload": i}))

            for i in range(10):
                tg.start_soon(one, i)
        await caller.shutdown_async() if False else None
        return sorted(out)

    expected = [i * 3 for i in range(10)]
    assert anyio.run(main) == expected
    assert anyio.run(main, backend="trio") == expected


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_shutdown_async_of_a_thread_worker(iii_engine, backend):
    import anyio

    w = iii.register_worker(iii_engine.url, opts(worker_name=f"sa-{backend}"))
    w.register_function("sa::f", lambda d: d)
    iii_engine.wait_for_function("sa::f")

    async def main() -> None:
        assert await w.trigger_async({"function_id": "sa::f", "payload": 5}) == 5
        await w.shutdown_async()

    anyio.run(main, backend=backend)
    assert w.get_connection_state() == "disconnected"
    iii_engine.wait_for(
        lambda: not any(f["function_id"] == "sa::f" for f in iii_engine.functions())
    )


def test_unregister_trigger_type(iii_engine, worker):
    worker.register_trigger_type(
        iii.RegisterTriggerTypeInput(id="gone-type", description="x"), iii.TriggerHandler()
    )
    iii_engine.wait_for_trigger_type("gone-type")
    worker.unregister_trigger_type({"id": "gone-type"})
    frame = iii_engine.wait_for_frame("unregistertriggertype", direction="in")
    assert frame == {"type": "unregistertriggertype", "id": "gone-type"}
    # Unknown or already removed: nothing is sent, nothing raised.
    worker.unregister_trigger_type("gone-type")
    assert len(iii_engine.frames(type="unregistertriggertype", direction="in")) == 1
