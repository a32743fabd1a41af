"""The call forms of code written for the official SDK, on ours, against the
reference engine: what each form does, and the typed errors of bad ones.

(``test_compat_surface`` checks that the names and signatures exist;
``test_compat_programs`` that whole programs print the same as on the
official SDK; this file pins the behaviour behind each form.)
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import pickle
import re
import threading
from typing import Any

import anyio
import pytest

import iii
import iii_observability
from iii.channel import ChannelDirection, ChannelItem, WritableStream, build_channel_url
from iii.helpers import create_channel, create_channel_async, create_stream
from iii.iii_types import EnqueueResult, FunctionRef, RegisterFunctionInput, Trigger
from iii.state import StateSetInput, StateUpdateInput
from iii.stream import (
    IStream,
    StreamDeleteResult,
    StreamSetResult,
    UpdateIncrement,
    UpdateMerge,
)
from iii.testing import EngineThread
from iii.types import ApiResponse, HttpRequest, HttpResponse, extract_channel_refs
from iii.utils import http

FAST = iii.InitOptions(
    reconnection_config=iii.ReconnectionConfig(initial_delay_ms=50, max_delay_ms=200),
    invocation_timeout_ms=10000,
)


def _registered(engine: EngineThread, function_id: str) -> dict[str, Any]:
    """The registerfunction frame the engine received for ``function_id``."""
    frame = engine.wait_for_frame(
        "registerfunction", direction="in", where=lambda f: f.get("id") == function_id
    )
    engine.wait_for_function(function_id)
    return frame


def _worker(engine: EngineThread, name: str) -> iii.III:
    return iii.register_worker(engine.url, iii.InitOptions(worker_name=name))


@pytest.fixture
def worker(iii_engine: EngineThread) -> Any:
    with _worker(iii_engine, "forms") as w:
        yield w


# -- register_function -------------------------------------------------------------------


def test_the_id_as_a_dict_carries_the_keyword_fields(iii_engine: EngineThread, worker: Any):
    ref = worker.register_function(
        {"id": "forms::dict", "description": "from a dict", "metadata": {"team": "a"}},
        lambda data: {"echo": data},
    )
    assert isinstance(ref, FunctionRef)
    assert ref.id == "forms::dict"
    info = _registered(iii_engine, "forms::dict")
    assert info["description"] == "from a dict"
    assert info["metadata"] == {"team": "a"}
    assert worker.trigger({"function_id": "forms::dict", "payload": 1}) == {"echo": 1}


def test_the_id_as_a_register_function_input(iii_engine: EngineThread, worker: Any):
    worker.register_function(
        RegisterFunctionInput(id="forms::input", description="typed"), lambda data: "ok"
    )
    assert _registered(iii_engine, "forms::input")["description"] == "typed"
    # A keyword equal to the dict's value is fine; a different one is not.
    worker.register_function({"id": "forms::same", "description": "d"}, print, description="d")


@pytest.mark.parametrize(
    ("function_id", "kwargs", "message"),
    [
        ({"id": "x", "descripton": "typo"}, {}, "unknown keys ['descripton']"),
        ({"description": "no id"}, {}, "has no 'id'"),
        ({"id": "x", "description": "a"}, {"description": "b"}, "'description' given both"),
        ("x", {"local_dispatch": "no"}, "local_dispatch must be a bool"),
        (42, {}, "function_id must be a string"),
    ],
)
def test_bad_function_forms_raise_type_errors(
    worker: Any, function_id: Any, kwargs: dict[str, Any], message: str
):
    with pytest.raises(TypeError, match=re.escape(message)):
        worker.register_function(function_id, lambda data: None, **kwargs)


def test_observe_and_local_dispatch_are_accepted_without_effect(
    iii_engine: EngineThread, worker: Any, caplog: pytest.LogCaptureFixture
):
    with caplog.at_level(logging.WARNING, logger="iii"):
        ref = worker.register_function(
            "forms::observed", lambda d: d, observe={"delivery": "owner"}, local_dispatch=False
        )
    assert "observe support" in caplog.text
    assert ref.is_observed() is False
    assert ref.observers() == []
    iii_engine.wait_for_function("forms::observed")
    assert worker.trigger({"function_id": "forms::observed", "payload": 3}) == 3


def test_an_http_invocation_in_the_dict(iii_engine: EngineThread, worker: Any):
    config = iii.HttpInvocationConfig(url="http://127.0.0.1:9/hook", method="PUT")
    worker.register_function({"id": "forms::http", "invocation": config})
    info = _registered(iii_engine, "forms::http")
    assert info["invocation"]["url"] == "http://127.0.0.1:9/hook"
    with pytest.raises(TypeError, match="either a handler or"):
        worker.register_function({"id": "forms::http2", "invocation": config}, print)


def test_trigger_type_ref_registers_functions_and_takes_metadata_by_position(
    iii_engine: EngineThread, worker: Any
):
    seen: list[Any] = []

    class Provider(iii.TriggerHandler[dict[str, int]]):
        async def register_trigger(self, config: iii.TriggerConfig[dict[str, int]]) -> None:
            seen.append((config.function_id, config.config, config.metadata))

    ref = worker.register_trigger_type({"id": "forms-type", "description": "d"}, Provider())
    ref.register_function("forms::bound", lambda data: data)
    iii_engine.wait_for_function("forms::bound")
    trigger = ref.register_trigger("forms::bound", {"n": 1}, {"owner": "me"})
    assert isinstance(trigger, Trigger)
    assert isinstance(trigger.id, str)
    iii_engine.wait_for(lambda: seen)
    assert seen == [("forms::bound", {"n": 1}, {"owner": "me"})]


class WebhookConfig:
    """Shaped like a pydantic model (duck-typed: pydantic is not a dependency)."""

    def __init__(self, url: str) -> None:
        self.url = url

    @classmethod
    def model_json_schema(cls) -> dict[str, Any]:
        return {"type": "object", "properties": {"url": {"type": "string"}}}

    def model_dump(self, **_: Any) -> dict[str, Any]:
        return {"url": self.url}


@dataclasses.dataclass
class WebhookCall:
    body: str


def test_a_typed_trigger_type_as_the_official_docstring_shows_it(
    iii_engine: EngineThread, worker: Any
):
    # register_trigger_type's official example: model classes as the formats, and a
    # model instance as the config given to TriggerTypeRef.register_trigger.
    seen: list[Any] = []

    class Provider(iii.TriggerHandler[Any]):
        async def register_trigger(self, config: iii.TriggerConfig[Any]) -> None:
            seen.append(config.config)

    ref = worker.register_trigger_type(
        iii.RegisterTriggerTypeInput(
            id="forms-webhook",
            description="Webhook trigger",
            trigger_request_format=WebhookConfig,
            call_request_format=WebhookCall,
        ),
        Provider(),
    )
    frame: dict[str, Any] = iii_engine.wait_for_frame(
        "registertriggertype", direction="in", where=lambda f: f.get("id") == "forms-webhook"
    )
    dialect = "https://json-schema.org/draft/2020-12/schema"
    assert frame["trigger_request_format"] == {
        "$schema": dialect,
        **WebhookConfig.model_json_schema(),
    }
    assert frame["call_request_format"]["$schema"] == dialect
    assert frame["call_request_format"]["properties"] == {"body": {"type": "string"}}
    ref.register_function("forms::hook", lambda data: data)
    iii_engine.wait_for_function("forms::hook")
    ref.register_trigger("forms::hook", WebhookConfig(url="/hook"))
    ref.register_trigger("forms::hook", WebhookCall(body="b"))
    iii_engine.wait_for(lambda: len(seen) == 2)
    assert sorted(seen, key=str) == [{"body": "b"}, {"url": "/hook"}]


# -- results and payloads ----------------------------------------------------------------


def test_enqueue_result_reads_as_a_value_and_as_the_engine_object():
    receipt = EnqueueResult(messageReceiptId="r-1")
    assert receipt == EnqueueResult(message_receipt_id="r-1") == {"messageReceiptId": "r-1"}
    assert receipt["messageReceiptId"] == receipt.get("messageReceiptId") == "r-1"
    assert receipt.message_receipt_id == receipt.messageReceiptId == "r-1"
    assert "messageReceiptId" in receipt
    assert isinstance(receipt, dict)
    assert pickle.loads(pickle.dumps(receipt)) == receipt
    assert repr(receipt) == "EnqueueResult(message_receipt_id='r-1')"
    with pytest.raises(TypeError):
        EnqueueResult()
    with pytest.raises(TypeError):
        EnqueueResult(messageReceiptId="a", message_receipt_id="b")


def test_enqueue_answers_an_enqueue_result(iii_engine: EngineThread, worker: Any):
    worker.register_function("forms::queued", lambda data: data)
    iii_engine.wait_for_function("forms::queued")
    receipt = worker.trigger(
        {
            "function_id": "forms::queued",
            "payload": {},
            "action": iii.TriggerAction.Enqueue(queue="default"),
        }
    )
    assert isinstance(receipt, EnqueueResult)
    assert list(receipt) == ["messageReceiptId"]


def test_models_travel_in_payloads_as_their_objects(iii_engine: EngineThread, worker: Any):
    worker.register_function("forms::echo", lambda data: data)
    iii_engine.wait_for_function("forms::echo")
    payload = {
        "set": StateSetInput(scope="s", key="k", value=1),
        "ops": [UpdateIncrement(path="n", by=2), UpdateMerge(value={"a": 1})],
    }
    assert worker.trigger({"function_id": "forms::echo", "payload": payload}) == {
        "set": {"scope": "s", "key": "k", "value": 1},
        "ops": [
            {"path": "n", "by": 2, "type": "increment"},
            {"value": {"a": 1}, "type": "merge"},  # path None: left out
        ],
    }


def test_models_read_like_their_json_objects():
    value = StateSetInput(scope="s", key="k", value=None)
    assert value["scope"] == "s"
    assert value.get("missing", 7) == 7
    assert "key" in value and "nope" not in value
    assert dict(value) == {"scope": "s", "key": "k", "value": None}
    assert StateSetInput(**value) == value
    assert StateSetInput.model_validate({**value, "extra": 1}) == value
    assert value.model_dump(exclude_none=True) == {"scope": "s", "key": "k"}
    nested = StateUpdateInput(scope="s", key="k", ops=[UpdateMerge(value={"a": 1})])
    assert nested.model_dump(exclude_none=True) == {
        "scope": "s",
        "key": "k",
        "ops": [{"type": "merge", "value": {"a": 1}}],
    }
    # Fields in the official models' order: model_dump() and the JSON text read the same.
    assert list(UpdateIncrement(path="n", by=1).model_dump()) == ["type", "path", "by"]
    assert list(UpdateMerge(value={}).model_dump()) == ["type", "path", "value"]
    with pytest.raises(KeyError):
        value["nope"]
    response: ApiResponse[str] = ApiResponse(statusCode=201, body="x")
    assert response.status_code == response.statusCode == 201
    assert ApiResponse(status_code=201, body="x") == response
    with pytest.raises(TypeError):
        ApiResponse(body="no status")


def test_a_handler_result_model_is_written_as_its_object(iii_engine: EngineThread, worker: Any):
    worker.register_function("forms::result", lambda data: StreamSetResult(new_value={"v": 1}))
    iii_engine.wait_for_function("forms::result")
    assert worker.trigger({"function_id": "forms::result", "payload": None}) == {
        "new_value": {"v": 1},
    }


# -- current_invocation ------------------------------------------------------------------


def test_current_invocation_inside_and_outside_handlers(iii_engine: EngineThread, worker: Any):
    seen: dict[str, Any] = {}
    voided = threading.Event()

    def sync_handler(data: Any) -> Any:
        inv = iii.current_invocation()
        assert inv is not None
        return {
            "function_id": inv.function_id,
            "invocation_id": inv.invocation_id,
            "caller": inv.caller,
            "depth": inv.observe_depth,
        }

    async def async_handler(data: Any) -> Any:
        first = worker.current_invocation()
        await anyio.sleep(0.01)
        assert worker.current_invocation() is first  # it follows the await
        return first.invocation_id

    def void_handler(data: Any) -> None:
        seen["void"] = iii.current_invocation()
        voided.set()

    worker.register_function("forms::inv-sync", sync_handler)
    worker.register_function("forms::inv-async", async_handler)
    worker.register_function("forms::inv-void", void_handler)
    iii_engine.wait_for_function("forms::inv-void")
    out = worker.trigger({"function_id": "forms::inv-sync", "payload": {}})
    assert out["function_id"] == "forms::inv-sync"
    assert isinstance(out["invocation_id"], str) and out["invocation_id"]
    assert out["caller"] == {"worker_id": worker.worker_id}
    assert out["depth"] == 0
    ids = [worker.trigger({"function_id": "forms::inv-async", "payload": {}}) for _ in range(3)]
    assert len(set(ids)) == 3
    worker.trigger(
        {"function_id": "forms::inv-void", "payload": {}, "action": iii.TriggerAction.Void()}
    )
    assert voided.wait(10)
    assert seen["void"].function_id == "forms::inv-void"
    assert isinstance(seen["void"].invocation_id, str)
    assert iii.current_invocation() is None
    assert worker.current_invocation() is None


# -- listeners and waits ------------------------------------------------------------------


@pytest.mark.iii_engine(functions_poll_interval=0.05)
def test_on_functions_available(iii_engine: EngineThread, worker: Any):
    batches: list[list[iii.FunctionInfo]] = []
    changed = threading.Event()

    def on_change(functions: list[iii.FunctionInfo]) -> None:
        batches.append(functions)
        changed.set()

    unsubscribe = worker.on_functions_available(on_change)
    iii_engine.wait_for(
        lambda: [
            b
            for b in iii_engine.bindings()
            if b.get("trigger_type") == "engine::functions-available"
        ]
    )
    with _worker(iii_engine, "forms-other") as other:
        other.register_function("forms::appears", lambda d: d)
        iii_engine.wait_for(
            lambda: any(f.function_id == "forms::appears" for b in batches for f in b), timeout=10
        )
    assert all(isinstance(f, iii.FunctionInfo) for f in batches[-1])
    unsubscribe()
    unsubscribe()  # idempotent
    iii_engine.wait_for(
        lambda: (
            not [
                b
                for b in iii_engine.bindings()
                if b.get("trigger_type") == "engine::functions-available"
            ]
        )
    )
    assert changed.is_set()


def test_wait_until_connected_returns_once_connected(worker: Any):
    worker._wait_until_connected()
    assert worker.get_connection_state() == "connected"


# -- channels ------------------------------------------------------------------------------


def test_a_channel_ref_object_inside_a_payload(iii_engine: EngineThread, worker: Any):
    def consume(data: Any) -> Any:
        reader = data["reader"]
        return {"type": type(reader).__name__, "body": reader.read_all_sync().decode()}

    worker.register_function("forms::consume", consume)
    iii_engine.wait_for_function("forms::consume")
    channel = create_channel(worker)
    answer: dict[str, Any] = {}
    caller = threading.Thread(
        target=lambda: answer.update(
            worker.trigger(
                {"function_id": "forms::consume", "payload": {"reader": channel.reader_ref}}
            )
        )
    )
    caller.start()
    channel.writer.write_sync(b"via a ref object")
    channel.writer.close()
    caller.join(20)
    assert answer == {"type": "ChannelReader", "body": "via a ref object"}
    # The official documentation's form: the ref's dict.
    second = create_channel(worker)
    caller = threading.Thread(
        target=lambda: answer.update(
            worker.trigger(
                {
                    "function_id": "forms::consume",
                    "payload": {"reader": second.reader_ref.model_dump()},
                }
            )
        )
    )
    caller.start()
    second.writer.write_sync(b"via model_dump")
    second.writer.close()
    caller.join(20)
    assert answer == {"type": "ChannelReader", "body": "via model_dump"}
    assert extract_channel_refs({"a": [{"r": channel.reader_ref}]}) == [
        ("a[0].r", channel.reader_ref)
    ]


def test_http_helper_and_streamed_response(iii_engine: EngineThread, worker: Any):
    async def callback(req: HttpRequest, res: HttpResponse) -> Any:
        body = await req.request_body.read_all()
        await res.status(201)
        await res.headers({"x-seen": req.method})
        res.stream.write(b"got " + body)
        res.close()
        await res.stream.drain()
        return None

    async def main() -> dict[str, Any]:
        request = await create_channel_async(worker)
        response = await create_channel_async(worker)
        await request.writer.write(b"ping")
        await request.writer.close_async()
        handler = http(callback)
        await handler(
            {
                "method": "POST",
                "path_params": {},
                "query_params": {},
                "headers": {},
                "body": None,
                "response": response.writer,
                "request_body": request.reader,
            }
        )
        messages = [item async for item in response.reader.messages()]
        return {"messages": messages}

    out = asyncio.run(main())
    assert out["messages"] == [
        '{"type": "set_status", "status_code": 201}',
        '{"type": "set_headers", "headers": {"x-seen": "POST"}}',
        b"got ping",
    ]


def test_writable_stream_in_a_plain_thread(worker: Any):
    channel = create_channel(worker)
    stream = WritableStream(channel.writer)
    stream.write(b"a")
    stream.end(b"b")
    assert channel.reader.read_all_sync() == b"ab"


def test_channel_values():
    assert ChannelDirection("read") is ChannelDirection.READ
    assert ChannelItem.text_item("t").is_text and ChannelItem.binary_item(b"b").is_binary
    with pytest.raises(ValueError):
        ChannelItem()
    assert build_channel_url("ws://h:1/?token=t", "c", "k y", "read") == (
        "ws://h:1/ws/channels/c?token=t&key=k%20y&dir=read"
    )


# -- streams ------------------------------------------------------------------------------


def test_create_stream_serves_a_custom_stream(iii_engine: EngineThread, worker: Any):
    store: dict[str, Any] = {}

    class Memory(IStream[Any]):
        async def get(self, input: Any) -> Any:
            return store.get(input.item_id)

        async def set(self, input: Any) -> Any:
            old = store.get(input.item_id)
            store[input.item_id] = input.data
            return StreamSetResult(old_value=old, new_value=input.data)

        async def delete(self, input: Any) -> Any:
            return StreamDeleteResult(old_value=store.pop(input.item_id, None))

        async def list(self, input: Any) -> Any:
            return list(store.values())

        async def list_groups(self, input: Any) -> Any:
            return ["g"]

        async def update(self, input: Any) -> Any:
            return None

    create_stream(worker, "mem", Memory())
    iii_engine.wait_for_function("stream::list_groups(mem)")
    item = {"stream_name": "mem", "group_id": "g", "item_id": "i"}
    assert worker.trigger({"function_id": "stream::set(mem)", "payload": {**item, "data": 5}}) == {
        "new_value": 5
    }
    assert worker.trigger({"function_id": "stream::get(mem)", "payload": item}) == 5
    assert worker.trigger(
        {"function_id": "stream::list_groups(mem)", "payload": {"stream_name": "mem"}}
    ) == ["g"]


# -- errors and observability ---------------------------------------------------------------


def test_one_error_class_under_each_name():
    assert iii.InvocationError is iii.IIIInvocationError
    assert iii.IIIClient is iii.III
    assert iii.StreamRequest is iii.HttpRequest
    err = iii.InvocationError("TIMEOUT", "slow", "fn", None, "inv-1")
    assert (err.function_id, err.invocation_id) == ("fn", "inv-1")
    rejected = iii.RegistrationRejectedError("WORKER_NAMESPACE_CONFLICT", "ns", "w", "id-1")
    assert isinstance(rejected, iii.ConnectionFailed)
    back = pickle.loads(pickle.dumps(rejected))
    assert (back.code, back.namespace, back.worker_name, back.owner_worker_id) == (
        "WORKER_NAMESPACE_CONFLICT",
        "ns",
        "w",
        "id-1",
    )
    assert str(iii.ObserveRejection("CODE", "why")) == "CODE: why"


def test_logger_takes_the_official_arguments(caplog: pytest.LogCaptureFixture):
    log = iii.Logger(trace_id="a" * 32, service_name="svc", span_id="b" * 16)
    with caplog.at_level(logging.INFO, logger="iii"):
        log.info("hello", {"k": 1})
        log.warn("plain")
    first = vars(caplog.records[0])  # the fields logging's extra= set on the record
    assert (first["trace_id"], first["span_id"], first["service_name"]) == (
        "a" * 32,
        "b" * 16,
        "svc",
    )
    assert first["iii_data"] == {"k": 1}
    # The official SDK's logger name and record field: handlers and formatters
    # written for it (logging.getLogger("iii.logger"), "%(data)s") work as they are.
    assert [r.name for r in caplog.records] == ["iii.logger", "iii.logger"]
    assert [r.data for r in caplog.records] == [{"k": 1}, None]  # type: ignore[attr-defined]
    formatter = logging.Formatter("%(levelname)s %(message)s %(data)s")
    assert formatter.format(caplog.records[1]) == "WARNING plain None"


def test_redaction_and_truncation():
    redacted = iii_observability.redact(
        {"password": "x", "token": "t", "tokens": 2, "nested": [{"api_key": "k", "ok": 1}]}
    )
    assert redacted == {
        "password": "[REDACTED]",
        "token": "[REDACTED]",
        "tokens": 2,
        "nested": [{"api_key": "[REDACTED]", "ok": 1}],
    }
    text, cut = iii_observability.redact_and_truncate({"s": "é" * 100}, max_bytes=40)
    assert cut and len(text.encode()) <= 40 and text.endswith('"[TRUNCATED]"')
    assert iii_observability.redact_and_truncate([1], max_bytes=40) == ("[1]", False)


def test_trace_helpers_follow_the_current_span():
    from opentelemetry import trace
    from opentelemetry.sdk.trace import ReadableSpan, TracerProvider

    tracer = TracerProvider().get_tracer("forms")
    assert iii_observability.current_trace_id() is None
    with tracer.start_as_current_span("outer") as span:
        context = span.get_span_context()
        assert iii_observability.current_trace_id() == f"{context.trace_id:032x}"
        assert iii_observability.current_span_id() == f"{context.span_id:016x}"
        traceparent = iii_observability.inject_traceparent()
        assert traceparent is not None
        assert traceparent.split("-")[1] == f"{context.trace_id:032x}"
        assert iii_observability.current_span_is_recording()
        iii_observability.set_current_span_attribute("k", "v")
        assert isinstance(span, ReadableSpan) and span.attributes
        assert span.attributes["k"] == "v"

    async def inside(span: Any) -> str:
        return "ran"

    assert asyncio.run(iii_observability.with_span("s", inside)) == "ran"
    assert trace.get_current_span().get_span_context().is_valid is False
