"""The codec: golden frames, the exact JSON we send, decoding errors, round-trip properties."""

from __future__ import annotations

import dataclasses
import datetime
import json
import math
import re
import uuid
from pathlib import Path
from typing import Any

import pytest
from cattrs.errors import BaseValidationError
from hypothesis import given, settings
from hypothesis import strategies as st

from iii_protocol import (
    KNOWN_FRAMES,
    ErrorBody,
    ErrorFrame,
    HttpAuthApiKey,
    HttpAuthBearer,
    HttpAuthHmac,
    HttpInvocationRef,
    InvocationResult,
    InvokeFunction,
    PayloadError,
    Ping,
    Pong,
    Reattach,
    RegisterFunction,
    RegisterFunctionFormat,
    RegisterService,
    RegisterTrigger,
    RegisterTriggerType,
    RemoteProtocolError,
    StreamChannelRef,
    TriggerActionEnqueue,
    TriggerActionVoid,
    TriggerRegistrationResult,
    UnknownFrame,
    UnregisterFunction,
    UnregisterTrigger,
    UnregisterTriggerType,
    WorkerRegistered,
    decode_frame,
    encode_frame,
    from_json_value,
    to_json_value,
)
from iii_protocol import strategies as s
from iii_protocol._json import MAX_WRITE_DEPTH, NotJSONError, dumps, loads, read_exactly

#: Property tests are not timed per example: CI machines under coverage are slow.
relaxed = settings(deadline=None)

GOLDEN_PATH = Path(__file__).resolve().parent.parent / "data" / "frames.jsonl"
GOLDEN: list[dict[str, Any]] = [
    json.loads(line)
    for line in GOLDEN_PATH.read_text(encoding="utf-8").splitlines()
    if line.strip()
]
#: The one golden frame the engine itself rejects (``data`` is required).
ENGINE_REJECTED = {"invoke_missing_data_field"}
#: 0.25 observe-family frames (and a made-up future type): not known to this library.
UNKNOWN_TYPES = {
    "functionregistered",
    "observe",
    "unobserve",
    "observeresult",
    "observerstatechanged",
    "observeradded",
    "observerremoved",
    "observerack",
    "invocationsobserved",
    "localinvocationstats",
    "somethingnew",
}


def wire(frame: object) -> dict[str, Any]:
    """What we put on the wire for ``frame``, parsed back into a dict."""
    out = json.loads(encode_frame(frame))  # type: ignore[arg-type]
    assert isinstance(out, dict)
    return out


# -- golden frames ----------------------------------------------------------------


def test_golden_file_covers_every_known_frame_type() -> None:
    seen = {entry["frame"].get("type") for entry in GOLDEN}
    assert {cls.TYPE for cls in KNOWN_FRAMES} - seen == set()
    assert seen >= UNKNOWN_TYPES
    assert len(GOLDEN) >= 80


@pytest.mark.parametrize(
    "entry",
    [e for e in GOLDEN if e["name"] not in ENGINE_REJECTED],
    ids=lambda e: e["name"],
)
def test_golden_frame_round_trips_stably(entry: dict[str, Any]) -> None:
    original = entry["frame"]
    for raw in (json.dumps(original), json.dumps(original).encode()):
        frame = decode_frame(raw)
        once = encode_frame(frame)
        assert encode_frame(decode_frame(once)) == once
        out = json.loads(once)
        # Every non-null key survives with its value; nothing is invented,
        # except the explicit ``"result": null`` of a successful result.
        kept = {k: v for k, v in original.items() if v is not None}
        assert {k: out[k] for k in kept} == kept
        extra = set(out) - set(original)
        if extra:
            assert original["type"] == "invocationresult"
            assert extra == {"result"}
            assert out["result"] is None
            assert "error" not in original
        if original["type"] in UNKNOWN_TYPES:
            assert isinstance(frame, UnknownFrame)
            assert frame.type == original["type"]
            assert frame.raw == original
            assert out == original
        else:
            assert not isinstance(frame, UnknownFrame)
            assert original["type"] == frame.TYPE
            assert out["type"] == original["type"]


def test_golden_frame_the_engine_rejects_is_rejected() -> None:
    (entry,) = [e for e in GOLDEN if e["name"] == "invoke_missing_data_field"]
    with pytest.raises(RemoteProtocolError) as info:
        decode_frame(json.dumps(entry["frame"]))
    assert info.value.frame_type == "invokefunction"
    assert "invokefunction" in str(info.value)
    assert "data" in str(info.value)
    assert info.value.close_code is None


def test_golden_values_decode_to_the_expected_objects() -> None:
    by_name = {e["name"]: json.dumps(e["frame"]) for e in GOLDEN}
    assert decode_frame(by_name["workerregistered_legacy"]) == WorkerRegistered(
        worker_id="5d0c2f8e-3b7a-4c7e-9a51-0f2b8d9e6a11"
    )
    features = decode_frame(by_name["workerregistered_with_features"])
    assert isinstance(features, WorkerRegistered)
    assert features.features == ["observe.v1", "local-dispatch.v1"]
    receipt = decode_frame(by_name["invocationresult_enqueue_receipt"])
    assert isinstance(receipt, InvocationResult)
    assert isinstance(receipt.result, dict)
    assert list(receipt.result) == ["messageReceiptId"]
    enqueue = decode_frame(by_name["invoke_enqueue"])
    assert isinstance(enqueue, InvokeFunction)
    assert enqueue.action == TriggerActionEnqueue(queue="jobs")
    void = decode_frame(by_name["invoke_void"])
    assert isinstance(void, InvokeFunction)
    assert void.action == TriggerActionVoid()
    assert void.invocation_id is None
    legacy = decode_frame(by_name["invoke_null_invocation_id"])
    assert isinstance(legacy, InvokeFunction)
    assert legacy.invocation_id is None
    http = decode_frame(by_name["registerfunction_http_apikey_put"])
    assert isinstance(http, RegisterFunction)
    assert http.invocation is not None
    assert http.invocation.auth == HttpAuthApiKey(header="x-api-key", value_key="API_KEY")
    handler = decode_frame(by_name["invoke_to_handler"])
    assert isinstance(handler, InvokeFunction)
    assert isinstance(handler.data, dict)
    assert "_caller_worker_id" in handler.data  # the codec never strips it


# -- exactly what we send ------------------------------------------------------------


def test_encoding_is_compact_json_with_the_type_tag() -> None:
    text = encode_frame(InvokeFunction(function_id="math::add", data={"a": 1, "b": "é"}))
    assert text == '{"type":"invokefunction","function_id":"math::add","data":{"a":1,"b":"é"}}'


@pytest.mark.parametrize("data", [None, 0, False, "", [], {}])
def test_invokefunction_data_is_always_written(data: Any) -> None:
    assert wire(InvokeFunction(function_id="f", data=data)) == {
        "type": "invokefunction",
        "function_id": "f",
        "data": data,
    }


def test_invokefunction_void_has_no_invocation_id() -> None:
    assert wire(InvokeFunction(function_id="f", data=1, action=TriggerActionVoid())) == {
        "type": "invokefunction",
        "function_id": "f",
        "data": 1,
        "action": {"type": "void"},
    }


def test_invokefunction_every_field() -> None:
    frame = InvokeFunction(
        function_id="f",
        data={"x": None},
        invocation_id="i",
        traceparent="tp",
        baggage="b",
        action=TriggerActionEnqueue(queue="jobs"),
        metadata={"tenant": None},
        namespace="orders",
        caller={"worker": "w"},
        observe_depth=0,
        activation=False,
    )
    assert wire(frame) == {
        "type": "invokefunction",
        "function_id": "f",
        "data": {"x": None},
        "invocation_id": "i",
        "traceparent": "tp",
        "baggage": "b",
        "action": {"type": "enqueue", "queue": "jobs"},
        "metadata": {"tenant": None},
        "namespace": "orders",
        "caller": {"worker": "w"},
        "observe_depth": 0,
        "activation": False,
    }


def test_registertrigger_config_is_always_written() -> None:
    frame = RegisterTrigger(id="b", trigger_type="cron", function_id="f", config=None)
    assert wire(frame) == {
        "type": "registertrigger",
        "id": "b",
        "trigger_type": "cron",
        "function_id": "f",
        "config": None,
    }


def test_registertriggertype_description_is_always_written() -> None:
    assert wire(RegisterTriggerType(id="webhook", description="")) == {
        "type": "registertriggertype",
        "id": "webhook",
        "description": "",
    }


def test_optional_fields_are_omitted_when_unset() -> None:
    assert wire(RegisterFunction(id="f")) == {"type": "registerfunction", "id": "f"}
    assert wire(UnregisterTrigger(id="b")) == {"type": "unregistertrigger", "id": "b"}
    assert wire(UnregisterTriggerType(id="t")) == {"type": "unregistertriggertype", "id": "t"}
    assert wire(UnregisterFunction(id="f")) == {"type": "unregisterfunction", "id": "f"}
    assert wire(Reattach(previous_worker_id="w")) == {"type": "reattach", "previous_worker_id": "w"}
    assert wire(RegisterService(id="svc")) == {"type": "registerservice", "id": "svc"}
    assert wire(Ping()) == {"type": "ping"}
    assert wire(Pong()) == {"type": "pong"}
    assert wire(TriggerRegistrationResult(id="b", trigger_type="t", function_id="f")) == {
        "type": "triggerregistrationresult",
        "id": "b",
        "trigger_type": "t",
        "function_id": "f",
    }
    assert wire(ErrorFrame(error=ErrorBody(code="AUTH_ERROR", message="no"))) == {
        "type": "error",
        "error": {"code": "AUTH_ERROR", "message": "no"},
    }
    # method/headers must be absent rather than null (the engine rejects null).
    assert wire(RegisterFunction(id="f", invocation=HttpInvocationRef(url="https://x"))) == {
        "type": "registerfunction",
        "id": "f",
        "invocation": {"url": "https://x"},
    }


def test_http_invocation_every_field_and_auth_tag() -> None:
    cases: list[tuple[Any, dict[str, str]]] = [
        (HttpAuthBearer(token_key="TOKEN"), {"type": "bearer", "token_key": "TOKEN"}),
        (HttpAuthHmac(secret_key="S"), {"type": "hmac", "secret_key": "S"}),
        (
            HttpAuthApiKey(header="x-api-key", value_key="K"),
            {"type": "api_key", "header": "x-api-key", "value_key": "K"},
        ),
    ]
    for auth, expected in cases:
        frame = RegisterFunction(
            id="ext::f",
            invocation=HttpInvocationRef(
                url="https://x", method="POST", timeout_ms=3000, headers={"a": "b"}, auth=auth
            ),
        )
        assert wire(frame)["invocation"] == {
            "url": "https://x",
            "method": "POST",
            "timeout_ms": 3000,
            "headers": {"a": "b"},
            "auth": expected,
        }


def test_success_result_writes_result_null() -> None:
    assert wire(InvocationResult(invocation_id="i", function_id="f")) == {
        "type": "invocationresult",
        "invocation_id": "i",
        "function_id": "f",
        "result": None,
    }
    falsies: list[Any] = [0, False, "", [], {}]
    for falsy in falsies:
        assert (
            wire(InvocationResult(invocation_id="i", function_id="f", result=falsy))["result"]
            == falsy
        )


def test_error_result_has_no_result_key() -> None:
    frame = InvocationResult(
        invocation_id="i",
        function_id="f",
        error=ErrorBody(code="invocation_failed", message="boom", stacktrace="tb"),
        traceparent="tp",
    )
    assert wire(frame) == {
        "type": "invocationresult",
        "invocation_id": "i",
        "function_id": "f",
        "error": {"code": "invocation_failed", "message": "boom", "stacktrace": "tb"},
        "traceparent": "tp",
    }


def test_camel_case_inside_results_is_untouched() -> None:
    frame = InvocationResult(
        invocation_id="i", function_id="f", result={"messageReceiptId": "r", "nested": {"aB": 1}}
    )
    out = wire(frame)
    assert out["result"] == {"messageReceiptId": "r", "nested": {"aB": 1}}
    assert decode_frame(encode_frame(frame)) == frame


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
@pytest.mark.parametrize(
    "make",
    [
        lambda v: InvokeFunction(function_id="math::add", data={"x": [1, v]}),
        lambda v: InvokeFunction(function_id="math::add", data=None, metadata={"m": v}),
        lambda v: InvocationResult(invocation_id="i", function_id="math::add", result=v),
        lambda v: RegisterTrigger(id="b", trigger_type="t", function_id="math::add", config=v),
    ],
    ids=["invoke-data", "invoke-metadata", "result", "trigger-config"],
)
def test_nan_and_infinity_are_refused(make: Any, bad: float) -> None:
    with pytest.raises(PayloadError) as info:
        encode_frame(make(bad))
    assert info.value.code == "serialization_error"
    assert info.value.function_id == "math::add"


def test_payload_error_names_the_frame_type() -> None:
    with pytest.raises(PayloadError) as info:
        encode_frame(RegisterFunction(id="f", metadata={"x": math.nan}))
    assert "registerfunction" in str(info.value)
    assert info.value.function_id is None  # a registerfunction has no function_id field
    with pytest.raises(PayloadError) as info:
        encode_frame(UnknownFrame(type="custom", raw={"type": "custom", "x": math.inf}))
    assert info.value.function_id is None
    assert "frame is not valid JSON" in str(info.value)


@pytest.mark.parametrize(
    "value",
    [
        {1, 2},
        object(),
        b"bytes",
        datetime.datetime(2026, 1, 1),
        {"k": {1: "int key", "1": "the same key as a string"}},
        {"a": [{"b": {(1, 2): 0}}]},
        "lone \ud800 surrogate",
        {"key \udfff": 1},
    ],
    ids=[
        "set",
        "object",
        "bytes",
        "datetime",
        "int-key-twice",
        "tuple-key",
        "surrogate",
        "surrogate-key",
    ],
)
def test_values_with_no_strict_json_form_are_refused(value: object) -> None:
    with pytest.raises(PayloadError):
        encode_frame(InvokeFunction(function_id="f", data=value))  # type: ignore[arg-type]


def test_number_bool_and_none_keys_are_written_as_the_stdlib_writes_them() -> None:
    # As json.dumps (and so the official SDK) writes them: {404: 3} is {"404": 3}.
    value = {"a": {404: 3, -1: [{2.5: None}]}, True: 1, False: 0, None: "n", 10**30: "wide"}
    expected = json.dumps(value, separators=(",", ":"))
    assert dumps(value) == expected
    assert encode_frame(InvokeFunction(function_id="f", data=value)) == (  # type: ignore[arg-type]
        '{"type":"invokefunction","function_id":"f","data":' + expected + "}"
    )


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({1: "a", "1": "b"}, "object keys 1 and '1' would both be written as '1'"),
        ({True: "a", "true": "b"}, "object keys True and 'true' would both be written"),
        ({1.0e16: "a", "1e+16": "b"}, "would both be written as '1e+16'"),
        ({math.nan: 1}, "object key nan is not a finite number"),
        ({-math.inf: 1}, "object key -inf is not a finite number"),
        ({b"k": 1}, "object key b'k' is not a string, a number, a bool or None"),
    ],
)
def test_keys_that_cannot_be_written_or_would_collide_are_refused(
    value: dict[object, object], message: str
) -> None:
    with pytest.raises(NotJSONError, match=re.escape(message)):
        dumps(value)


class _PydanticShaped:
    """Shaped like a pydantic model (duck-typed: pydantic is not a dependency)."""

    def __init__(self, **fields: object) -> None:
        self.fields = fields
        self.asked: list[dict[str, object]] = []

    @classmethod
    def model_json_schema(cls) -> dict[str, object]:
        return {"type": "object"}

    def model_dump(self, **options: object) -> dict[str, object]:
        self.asked.append(options)
        return {k: v for k, v in self.fields.items() if v is not None}


def test_a_pydantic_model_in_a_payload_is_written_as_the_official_sdk_writes_it() -> None:
    model = _PydanticShaped(name="ada", note=None)
    frame = InvokeFunction(function_id="f", data={"user": model, "n": 1})  # type: ignore[dict-item]
    assert encode_frame(frame) == (
        '{"type":"invokefunction","function_id":"f","data":{"user":{"name":"ada"},"n":1}}'
    )
    assert model.asked == [{"mode": "json", "by_alias": True, "exclude_none": True}]
    # A class is not a model instance: it still has no JSON form.
    with pytest.raises(NotJSONError):
        dumps({"model": _PydanticShaped})


def test_dataclass_payload_is_refused() -> None:
    @dataclasses.dataclass
    class Point:
        x: int

    with pytest.raises(PayloadError):
        encode_frame(InvokeFunction(function_id="f", data=Point(1)))  # type: ignore[arg-type]


def test_circular_payload_is_refused() -> None:
    loop: list[object] = []
    loop.append(loop)
    with pytest.raises(PayloadError, match="circular reference"):
        encode_frame(InvokeFunction(function_id="f", data=loop))  # type: ignore[arg-type]
    ring: dict[str, object] = {"a": [1, {"b": None}]}
    ring["a"][1]["b"] = ring  # type: ignore[index]
    with pytest.raises(NotJSONError, match="circular reference"):
        dumps(ring)
    shared = [1, None]
    assert dumps({"a": shared, "b": [shared, (shared,)]}) == (
        '{"a":[1,null],"b":[[1,null],[[1,null]]]}'
    )  # shared, not circular


def test_uuid_payload_is_written_as_a_string_on_both_paths() -> None:
    u = uuid.UUID("7b3f2c73-9da0-404e-b343-b5d6ccd91452")
    assert dumps({"u": u}) == '{"u":"7b3f2c73-9da0-404e-b343-b5d6ccd91452"}'
    # A wide int sends the whole value down the stdlib path, which must agree.
    assert dumps({"u": u, "n": 2**70}) == (
        '{"u":"7b3f2c73-9da0-404e-b343-b5d6ccd91452","n":1180591620717411303424}'
    )


def test_channel_ref_inside_a_payload_is_written_as_its_object() -> None:
    ref = StreamChannelRef(channel_id="c1", access_key="k1", direction="read")
    # Not JSON-typed: the encoder writes an SDK value by its _payload_form().
    payload: Any = {"r": ref, "all": [ref]}
    text = encode_frame(InvokeFunction(function_id="f", data=payload))
    expected = {"channel_id": "c1", "access_key": "k1", "direction": "read"}
    assert json.loads(text)["data"] == {"r": expected, "all": [expected]}


def test_channel_ref_dumps_and_validates_like_a_model() -> None:
    ref = StreamChannelRef(channel_id="c1", access_key="k1", direction="write")
    data = {"channel_id": "c1", "access_key": "k1", "direction": "write"}
    assert ref.model_dump() == ref.model_dump(mode="json", by_alias=True) == data
    assert StreamChannelRef.model_validate({**data, "extra": 1}) == ref
    assert StreamChannelRef.model_validate(ref) is ref
    with pytest.raises(TypeError):
        StreamChannelRef.model_validate("c1")


def test_payload_form_is_asked_of_instances_only() -> None:
    class Shaped:
        def _payload_form(self) -> dict[str, int]:
            return {"x": 1}

    assert dumps([Shaped()]) == '[{"x":1}]'
    # The class itself has the method too, but a class is not a value.
    with pytest.raises(ValueError):
        dumps([Shaped])


@pytest.mark.parametrize(
    ("value", "tag"),
    [
        (TriggerActionVoid(), "void"),
        (TriggerActionEnqueue(queue="q"), "enqueue"),
        (HttpAuthBearer(token_key="T"), "bearer"),
        (HttpAuthHmac(secret_key="S"), "hmac"),
        (HttpAuthApiKey(header="h", value_key="V"), "api_key"),
    ],
)
def test_tagged_values_read_their_tag_as_type(value: Any, tag: str) -> None:
    assert value.type == tag == type(value).TYPE


@pytest.mark.parametrize("n", [2**64, -(2**63) - 1, 2**200, -(10**30)])
def test_wide_integers_survive_both_ways(n: int) -> None:
    frame = InvokeFunction(function_id="f", data={"n": n, "list": [n, 1.5]})
    text = encode_frame(frame)
    assert str(n) in text
    back = decode_frame(text)
    assert isinstance(back, InvokeFunction)
    assert isinstance(back.data, dict)
    assert back.data["n"] == n
    assert type(back.data["n"]) is int
    assert back == frame


def test_long_digit_runs_inside_strings_are_not_numbers() -> None:
    text = '{"type":"invokefunction","function_id":"f","data":["123456789012345678901234", 1e2]}'
    frame = decode_frame(text)
    assert isinstance(frame, InvokeFunction)
    assert frame.data == ["123456789012345678901234", 100.0]


def _nested(levels: int, leaf: object, kind: str) -> object:
    value = leaf
    for _ in range(levels):
        value = [value] if kind == "list" else {"k": value}
    return value


@pytest.mark.parametrize("kind", ["list", "dict"])
@pytest.mark.parametrize(
    "leaf",
    [1, None, 2**70],
    ids=["orjson-path", "null-path", "wide-int-path"],
)
def test_writes_nest_up_to_the_write_limit_on_every_path(leaf: object, kind: str) -> None:
    # A leaf of None or a wide int sends the value down the stdlib path, which
    # must stop where orjson stops.
    text = dumps(_nested(MAX_WRITE_DEPTH, leaf, kind))
    assert loads(text) == _nested(MAX_WRITE_DEPTH, leaf, kind)
    for levels in (MAX_WRITE_DEPTH + 1, 600, 5000):  # 5000: past every stdlib stack
        with pytest.raises(NotJSONError, match=f"nested more than {MAX_WRITE_DEPTH} levels deep"):
            dumps(_nested(levels, leaf, kind))


@pytest.mark.parametrize(
    "n", [10**308, -(10**308), 2**1024 - 2**971], ids=["1e308", "-1e308", "largest-finite"]
)
def test_integers_a_double_can_hold_are_written_and_read_exactly(n: int) -> None:
    assert loads(dumps(n)) == n
    text = dumps([n, None])
    assert loads(text) == [n, None]
    assert type(loads(text)[0]) is int  # type: ignore[index]


@pytest.mark.parametrize(
    "n", [10**309, -(10**309), 2**1024 - 2**970], ids=["1e309", "-1e309", "rounds-to-inf"]
)
def test_integers_beyond_a_double_are_refused_both_ways(n: int) -> None:
    # orjson (and the engine's serde_json) refuse such a number: writing it
    # would only have the frame dropped.
    for value in (n, {"n": n}, [[n]]):
        with pytest.raises(NotJSONError, match="integer too large for a JSON number"):
            dumps(value)
    with pytest.raises(ValueError, match="number is infinity"):
        loads(json.dumps({"n": n}))


def test_integers_past_any_digit_limit_are_refused_for_their_size() -> None:
    # Not for the interpreter's int-to-str limit, whose message varies by version.
    with pytest.raises(NotJSONError, match="integer too large for a JSON number"):
        dumps({"n": 10**5000})


_ANY_JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**300), max_value=10**300)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner) | st.dictionaries(st.text(), inner),
    max_leaves=30,
)


@relaxed
@given(_ANY_JSON, st.booleans())
def test_the_exact_reader_reads_what_the_stdlib_reads(value: Any, pretty: bool) -> None:
    text = json.dumps(value, indent=1 if pretty else None, ensure_ascii=pretty)
    try:
        loads(text)
    except ValueError:
        return  # not strict JSON (a lone surrogate): the reader never sees it
    expected = json.loads(text)
    got = read_exactly(text)
    assert got == expected
    assert repr(got) == repr(expected)  # -0.0, int vs float


def test_loads_refuses_what_strict_json_refuses() -> None:
    for text in ["NaN", "[Infinity]", "[1e400]", '"\\ud800"', "{'a': 1}", "[1,]", ""]:
        with pytest.raises(ValueError):
            loads(text)
    with pytest.raises(NotJSONError):
        dumps(math.nan)
    assert loads(b"[1]") == [1]


def test_register_function_format_always_writes_required() -> None:
    fmt = RegisterFunctionFormat(
        type="object",
        name="input",
        description="two numbers",
        body=[
            RegisterFunctionFormat(type="number", name="a", required=True),
            RegisterFunctionFormat(
                type="array", name="b", items=RegisterFunctionFormat(type="string")
            ),
        ],
    )
    expected: dict[str, Any] = {
        "type": "object",
        "name": "input",
        "description": "two numbers",
        "body": [
            {"type": "number", "name": "a", "required": True},
            {
                "type": "array",
                "name": "b",
                "items": {"type": "string", "required": False},
                "required": False,
            },
        ],
        "required": False,
    }
    assert to_json_value(fmt) == expected
    assert from_json_value(expected, RegisterFunctionFormat) == fmt
    frame = RegisterFunction(id="math::fmt", request_format=to_json_value(fmt))
    assert wire(frame)["request_format"] == expected


def test_from_json_value_is_strict() -> None:
    assert from_json_value({"code": "c", "message": "m"}, ErrorBody) == ErrorBody(
        code="c", message="m"
    )
    assert from_json_value(
        {"channel_id": "c", "access_key": "k", "direction": "read"}, StreamChannelRef
    ) == StreamChannelRef(channel_id="c", access_key="k", direction="read")
    assert from_json_value(1, float) == 1.0
    assert type(from_json_value(1, float)) is float
    assert from_json_value(2.5, float) == 2.5
    bad: list[tuple[Any, type]] = [
        ({"code": 1, "message": "m"}, ErrorBody),
        ({"code": "c"}, ErrorBody),
        ({"type": "number", "required": 1}, RegisterFunctionFormat),
        ({"type": "object", "body": "ab"}, RegisterFunctionFormat),
        ({"channel_id": "c", "access_key": "k", "direction": "both"}, StreamChannelRef),
    ]
    for value, cls in bad:
        with pytest.raises(BaseValidationError):
            from_json_value(value, cls)
    not_floats: list[Any] = [True, "1", None]
    for not_float in not_floats:
        with pytest.raises((BaseValidationError, ValueError)):
            from_json_value(not_float, float)


# -- decoding errors -------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        b'{"type":',
        b"",
        b"   ",
        b"not json",
        b'{"type":"ping"} trailing',
        b'{"type":"ping","x":"\xff"}',
        b"\xc3\x28",
        '{"type":"ping","x":NaN}',
        b'{"type":"ping","x":1e400}',
    ],
    ids=[
        "truncated",
        "empty",
        "blank",
        "text",
        "trailing",
        "invalid-utf8-in-string",
        "invalid-utf8",
        "nan",
        "overflow",
    ],
)
def test_malformed_json_is_a_remote_protocol_error(raw: bytes | str) -> None:
    with pytest.raises(RemoteProtocolError) as info:
        decode_frame(raw)
    assert info.value.frame_type is None
    assert "not valid JSON" in str(info.value)


@pytest.mark.parametrize("raw", ["[1]", '"ping"', "null", "1", "true"])
def test_non_object_is_a_remote_protocol_error(raw: str) -> None:
    with pytest.raises(RemoteProtocolError, match="not a JSON object"):
        decode_frame(raw)


@pytest.mark.parametrize("raw", ["{}", '{"type":1}', '{"type":null}', '{"type":["ping"]}'])
def test_missing_or_non_string_type_is_a_remote_protocol_error(raw: str) -> None:
    with pytest.raises(RemoteProtocolError, match="no string 'type'") as info:
        decode_frame(raw)
    assert info.value.frame_type is None


@pytest.mark.parametrize(
    ("obj", "where"),
    [
        ({"type": "workerregistered"}, "worker_id"),
        ({"type": "registertrigger", "id": "b", "trigger_type": "t", "function_id": "f"}, "config"),
        ({"type": "registertriggertype", "id": "t"}, "description"),
        ({"type": "invocationresult", "invocation_id": "i"}, "function_id"),
        ({"type": "error"}, "error"),
        ({"type": "error", "error": {"code": "c"}}, "message"),
        ({"type": "reattach"}, "previous_worker_id"),
        ({"type": "registrationrejected", "code": "c", "namespace": "n"}, "owner_worker_id"),
    ],
)
def test_missing_required_field_is_a_remote_protocol_error(obj: dict[str, Any], where: str) -> None:
    with pytest.raises(RemoteProtocolError) as info:
        decode_frame(json.dumps(obj))
    assert info.value.frame_type == obj["type"]
    assert where in str(info.value)
    assert "required field missing" in str(info.value)


@pytest.mark.parametrize(
    "obj",
    [
        {"type": "unregisterfunction", "id": 1},
        {"type": "unregisterfunction", "id": None},
        {"type": "unregisterfunction", "id": True},
        {"type": "unregisterfunction", "id": ["f"]},
        {"type": "workerregistered", "worker_id": 7},
        {"type": "workerregistered", "worker_id": "w", "reattach_token": 5},
        {"type": "workerregistered", "worker_id": "w", "features": "observe.v1"},
        {"type": "workerregistered", "worker_id": "w", "features": {"observe.v1": True}},
        {"type": "workerregistered", "worker_id": "w", "features": [1]},
        {"type": "invokefunction", "function_id": "f", "data": 1, "invocation_id": 12},
        {"type": "invokefunction", "function_id": "f", "data": 1, "observe_depth": "1"},
        {"type": "invokefunction", "function_id": "f", "data": 1, "observe_depth": True},
        {"type": "invokefunction", "function_id": "f", "data": 1, "observe_depth": 1.5},
        {"type": "invocationresult", "invocation_id": "i", "function_id": "f", "error": "boom"},
        {"type": "invocationresult", "invocation_id": "i", "function_id": "f", "error": [1]},
        {"type": "error", "error": {"code": 1, "message": "m"}},
        {"type": "registerfunction", "id": "f", "description": 3},
        {"type": "registerfunction", "id": "f", "invocation": "https://x"},
        {"type": "registerfunction", "id": "f", "invocation": {"url": "u", "timeout_ms": "1"}},
        {"type": "registerfunction", "id": "f", "invocation": {"url": "u", "timeout_ms": True}},
        {
            "type": "registerfunction",
            "id": "f",
            "invocation": {"url": "u", "headers": [["a", "b"]]},
        },
        {"type": "registerfunction", "id": "f", "invocation": {"url": "u", "headers": {"a": 1}}},
        {"type": "registertriggertype", "id": "t", "description": None},
        {"type": "triggerregistrationresult", "id": "b", "trigger_type": "t", "function_id": 0},
    ],
)
def test_wrong_field_types_are_not_coerced(obj: dict[str, Any]) -> None:
    with pytest.raises(RemoteProtocolError) as info:
        decode_frame(json.dumps(obj))
    assert info.value.frame_type == obj["type"]
    assert f"invalid {obj['type']} frame" in str(info.value)


@pytest.mark.parametrize(
    "action",
    [
        {"type": "later"},
        {"type": 1},
        {},
        {"type": "enqueue"},
        {"type": "enqueue", "queue": 5},
        "void",
        ["void"],
        7,
    ],
)
def test_bad_action_is_a_remote_protocol_error(action: object) -> None:
    obj = {"type": "invokefunction", "function_id": "f", "data": None, "action": action}
    with pytest.raises(RemoteProtocolError) as info:
        decode_frame(json.dumps(obj))
    assert info.value.frame_type == "invokefunction"
    assert "action" in str(info.value)


@pytest.mark.parametrize(
    "auth",
    [{"type": "basic"}, {"type": "bearer"}, {"type": "api_key", "header": "h"}, "bearer", {}],
)
def test_bad_auth_is_a_remote_protocol_error(auth: object) -> None:
    obj = {"type": "registerfunction", "id": "f", "invocation": {"url": "u", "auth": auth}}
    with pytest.raises(RemoteProtocolError) as info:
        decode_frame(json.dumps(obj))
    assert info.value.frame_type == "registerfunction"
    assert "auth" in str(info.value)


def test_null_optional_values_and_unknown_keys_are_accepted() -> None:
    frame = decode_frame(
        '{"type":"invokefunction","function_id":"f","data":null,"action":null,'
        '"invocation_id":null,"surprise":{"x":1}}'
    )
    assert frame == InvokeFunction(function_id="f", data=None)
    frame = decode_frame(
        '{"type":"registerfunction","id":"f","invocation":{"url":"u","auth":null,"x":1}}'
    )
    assert frame == RegisterFunction(id="f", invocation=HttpInvocationRef(url="u"))


def test_decode_accepts_str_bytes_bytearray_and_memoryview() -> None:
    text = '{"type":"pong"}'
    for raw in (text, text.encode(), bytearray(text.encode()), memoryview(text.encode())):
        assert decode_frame(raw) == Pong()


def test_unknown_type_round_trips_unchanged() -> None:
    text = '{"type":"observe","id":"o","source":{"function_id":"f"},"n":[1,null]}'
    frame = decode_frame(text)
    assert frame == UnknownFrame(type="observe", raw=json.loads(text))
    assert json.loads(encode_frame(frame)) == json.loads(text)


# -- properties -------------------------------------------------------------------------


def test_every_known_frame_type_has_a_strategy() -> None:
    assert set(s.FRAME_STRATEGIES) == {*KNOWN_FRAMES, UnknownFrame}


@pytest.mark.parametrize(
    "cls", [*KNOWN_FRAMES, UnknownFrame], ids=lambda c: getattr(c, "TYPE", c.__name__)
)
@relaxed
@given(data=st.data())
def test_round_trip_every_frame_type(cls: type, data: st.DataObject) -> None:
    frame = data.draw(s.FRAME_STRATEGIES[cls])
    text = encode_frame(frame)
    back = decode_frame(text)
    assert back == frame
    assert type(back) is cls
    assert encode_frame(back) == text
    assert decode_frame(text.encode()) == frame


@relaxed
@given(s.formats)
def test_register_function_format_round_trips(fmt: RegisterFunctionFormat) -> None:
    value = to_json_value(fmt)
    assert isinstance(value, dict)
    assert "required" in value
    assert from_json_value(json.loads(json.dumps(value)), RegisterFunctionFormat) == fmt


def _decodes_or_protocol_error(raw: str | bytes) -> None:
    try:
        frame = decode_frame(raw)
    except RemoteProtocolError as exc:
        assert str(exc)
    else:
        assert isinstance(frame, (*KNOWN_FRAMES, UnknownFrame))


@relaxed
@given(st.binary(max_size=200))
def test_decode_arbitrary_bytes(raw: bytes) -> None:
    _decodes_or_protocol_error(raw)


@relaxed
@given(st.text(max_size=200))
def test_decode_arbitrary_text(raw: str) -> None:
    _decodes_or_protocol_error(raw)


@relaxed
@given(s.json_values())
def test_decode_arbitrary_json(value: object) -> None:
    _decodes_or_protocol_error(json.dumps(value))


@relaxed
@given(st.one_of(s.fuzzed_frame_objects(), s.mutated_frame_objects()))
def test_decode_fuzzed_frames(obj: dict[str, Any]) -> None:
    text = json.dumps(obj)
    try:
        frame = decode_frame(text)
    except RemoteProtocolError as exc:
        assert exc.frame_type == obj["type"]
    else:
        assert obj["type"] == frame.TYPE  # type: ignore[union-attr]
        # Whatever we accept, we can write back and read again identically.
        assert decode_frame(encode_frame(frame)) == frame


@relaxed
@given(s.json_values())
def test_dumps_loads_round_trip(value: object) -> None:
    assert loads(dumps(value)) == value
