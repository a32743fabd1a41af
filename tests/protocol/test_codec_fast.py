"""The hot frames' own reader and writer, and ``dumps``' NaN check, against the
general paths: the same frames, the same text, the same refusals and errors."""

from __future__ import annotations

import math
import uuid
from collections import OrderedDict
from typing import Any, Union
from unittest import mock

import pytest
from cattrs.errors import BaseValidationError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from wsproto.frame_protocol import FrameProtocol

from iii_protocol import (
    Config,
    Connection,
    ErrorBody,
    InvocationResult,
    InvokeFunction,
    PayloadError,
    RegisterFunction,
    RemoteProtocolError,
    StreamChannelRef,
    TriggerActionEnqueue,
    TriggerActionVoid,
    decode_frame,
    encode_frame,
    to_json_value,
)
from iii_protocol import strategies as iii_st
from iii_protocol._codec import (
    _FAST_STRUCTURE,
    _FAST_UNSTRUCTURE,
    _describe,
    converter,
    invocation_result,
    invoke_function,
)
from iii_protocol._connection import RandomIds
from iii_protocol._json import NotJSONError, _strict_dumps, dumps, loads

from .helpers import FakeEngine, Pair, counter_ids

relaxed = settings(
    deadline=None,
    max_examples=300,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

HOT: tuple[type[Union[InvokeFunction, InvocationResult]], ...] = (InvokeFunction, InvocationResult)
HOT_TYPES = [cls.TYPE for cls in HOT]

# -- reading -------------------------------------------------------------------------------


def _by_the_converter(text: Union[str, bytes]) -> object:
    """``decode_frame`` as it was before the fast path: the converter alone."""
    obj = loads(text)
    assert isinstance(obj, dict)
    tag = obj["type"]
    assert isinstance(tag, str)
    cls = {c.TYPE: c for c in HOT}[tag]
    try:
        return converter.structure(obj, cls)
    except BaseValidationError as exc:
        return RemoteProtocolError(f"invalid {tag} frame: {_describe(exc)}", frame_type=tag)


def _decoded(text: Union[str, bytes]) -> object:
    try:
        return decode_frame(text)
    except RemoteProtocolError as exc:
        return exc


def _same_outcome(fast: object, general: object) -> None:
    if isinstance(general, RemoteProtocolError):
        assert isinstance(fast, RemoteProtocolError), fast
        assert (str(fast), fast.frame_type) == (str(general), general.frame_type)
    else:
        assert fast == general
        assert type(fast) is type(general)


_odd = st.sampled_from(
    [None, 0, 1, -1, 2**40, True, False, 1.5, "", "x", [], ["x"], {}, {"type": "void"}]
)


@st.composite
def _hot_objects(draw: st.DrawFn) -> dict[str, Any]:
    """An invokefunction or invocationresult object, valid or wrong in places."""
    cls = draw(st.sampled_from(HOT))
    value = to_json_value(draw(iii_st.FRAME_STRATEGIES[cls]))
    assert isinstance(value, dict)
    obj: dict[str, Any] = value
    for name in draw(st.lists(st.sampled_from(iii_st.FIELDS[cls.TYPE]), max_size=3)):
        if draw(st.booleans()):
            obj.pop(name, None)
        else:
            obj[name] = draw(_odd | iii_st.json_values(max_leaves=3) | _nested_odd)
    return obj


_nested_odd = st.one_of(
    st.fixed_dictionaries(
        {"type": st.sampled_from(["void", "enqueue", "other", 1])},
        optional={"queue": _odd},
    ),
    st.fixed_dictionaries(
        {"code": _odd, "message": _odd},
        optional={"stacktrace": _odd},
    ),
)


@relaxed
@given(_hot_objects() | iii_st.fuzzed_frame_objects() | iii_st.mutated_frame_objects())
def test_hot_frames_decode_as_the_converter_decodes_them(obj: dict[str, Any]) -> None:
    if obj.get("type") not in HOT_TYPES:
        obj["type"] = HOT_TYPES[len(obj) % 2]
    text = dumps(obj)
    _same_outcome(_decoded(text), _by_the_converter(text))


_INVOKE = "invokefunction"
_RESULT = "invocationresult"


@pytest.mark.parametrize(
    ("tag", "obj"),
    [
        (_INVOKE, {"function_id": "f", "data": 1, "action": {"type": "void", "queue": 3}}),
        (_INVOKE, {"function_id": "f", "data": 1, "action": {"type": "enqueue", "queue": "q"}}),
        (_INVOKE, {"function_id": "f", "data": 1, "action": {"type": "enqueue"}}),
        (_INVOKE, {"function_id": "f", "data": 1, "action": {"type": "enqueue", "queue": None}}),
        (_INVOKE, {"function_id": "f", "data": 1, "action": "void"}),
        (_INVOKE, {"function_id": "f", "data": 1, "observe_depth": True}),
        (_INVOKE, {"function_id": "f", "data": 1, "observe_depth": 1.0}),
        (_INVOKE, {"function_id": "f", "data": None, "observe_depth": 3, "caller": {"a": [1]}}),
        (_INVOKE, {"function_id": "f", "data": 1, "namespace": 5}),
        (_INVOKE, {"function_id": "f"}),
        (_INVOKE, {"data": 1}),
        (
            _RESULT,
            {"invocation_id": "i", "function_id": "f", "error": {"code": "c", "message": "m"}},
        ),
        (_RESULT, {"invocation_id": "i", "function_id": "f", "error": {"code": "c", "message": 1}}),
        (_RESULT, {"invocation_id": "i", "function_id": "f", "error": {"code": "c"}}),
        (_RESULT, {"invocation_id": "i", "function_id": "f", "error": ["c", "m"]}),
        (
            _RESULT,
            {
                "invocation_id": "i",
                "function_id": "f",
                "error": {"code": "c", "message": "m", "stacktrace": 1},
            },
        ),
        (_RESULT, {"invocation_id": "i", "function_id": "f", "result": None, "traceparent": 7}),
        (_RESULT, {"invocation_id": 1, "function_id": "f"}),
        (_RESULT, {"invocation_id": "i", "function_id": None}),
        (_RESULT, {"invocation_id": "i"}),
    ],
)
def test_hot_frames_with_edge_fields(tag: str, obj: dict[str, Any]) -> None:
    text = dumps({"type": tag, **obj})
    _same_outcome(_decoded(text), _by_the_converter(text))


def test_the_fast_reader_returns_the_converter_value() -> None:
    obj = {
        "type": "invokefunction",
        "function_id": "f",
        "data": {"x": [1, 2]},
        "invocation_id": "i",
        "action": {"type": "enqueue", "queue": "q"},
        "observe_depth": 2,
        "unknown": "ignored",
    }
    frame = _FAST_STRUCTURE["invokefunction"](obj)  # type: ignore[arg-type]
    assert frame == converter.structure(obj, InvokeFunction)
    assert frame == InvokeFunction(
        function_id="f",
        data={"x": [1, 2]},
        invocation_id="i",
        action=TriggerActionEnqueue(queue="q"),
        observe_depth=2,
    )
    assert _FAST_STRUCTURE["invokefunction"]({"function_id": 1, "data": 1}) is None


# -- writing -------------------------------------------------------------------------------


def _written(frame: object) -> object:
    try:
        return encode_frame(frame)  # type: ignore[arg-type]
    except PayloadError as exc:
        return ("PayloadError", exc.message, exc.function_id)
    except Exception as exc:
        return (type(exc).__name__, str(exc))


def _written_by_the_converter(frame: Any) -> object:
    try:
        data = converter.unstructure(frame)
    except Exception as exc:
        return (type(exc).__name__, str(exc))
    try:
        return dumps(data)
    except NotJSONError as exc:
        function_id = frame.function_id if isinstance(frame.function_id, str) else None
        return ("PayloadError", f"{frame.TYPE} is not valid JSON: {exc}", function_id)


_weird_values = st.sampled_from(
    [
        {"type": "other"},
        "void",
        {"code": "c", "message": "m"},
        math.nan,
        -math.inf,
        (1, 2.5),
        uuid.UUID(int=5),
        StreamChannelRef(channel_id="c", access_key="k", direction="read"),
        OrderedDict(a=1),
        {1: "non-string key"},
        2**70,
        "\ud800",
    ]
)


@st.composite
def _hot_frames(draw: st.DrawFn) -> Any:
    frame = draw(iii_st.frames_of(*HOT))
    assert isinstance(frame, HOT)
    names = draw(st.lists(st.sampled_from(iii_st.FIELDS[frame.TYPE]), max_size=2, unique=True))
    changes = {name: draw(_weird_values | st.none() | iii_st.json_values(3)) for name in names}
    return type(frame)(**{**{a: getattr(frame, a) for a in iii_st.FIELDS[frame.TYPE]}, **changes})


@relaxed
@given(_hot_frames())
def test_hot_frames_encode_as_the_converter_encodes_them(frame: Any) -> None:
    assert _written(frame) == _written_by_the_converter(frame)
    fast = _FAST_UNSTRUCTURE[type(frame)](frame)
    if fast is not None:
        # The same keys in the same order (so the same text).
        assert list(fast.items()) == list(converter.unstructure(frame).items())


@pytest.mark.parametrize(
    "frame",
    [
        InvokeFunction(function_id="f", data=None, action=TriggerActionVoid()),
        InvokeFunction(function_id="f", data=1, action={"type": "other"}),  # type: ignore[arg-type]
        InvocationResult(invocation_id="i", function_id="f"),
        InvocationResult(
            invocation_id="i", function_id="f", result=0, traceparent="t", baggage="b"
        ),
        InvocationResult(
            invocation_id="i", function_id="f", error=ErrorBody(code="c", message="m")
        ),
        InvocationResult(invocation_id="i", function_id="f", error={"code": "c"}),  # type: ignore[arg-type]
        InvocationResult(invocation_id="i", function_id="f", result=[math.nan]),
    ],
)
def test_hot_frames_with_odd_values(frame: Any) -> None:
    assert _written(frame) == _written_by_the_converter(frame)


def test_the_writers_say_when_the_converter_must_decide() -> None:
    assert invoke_function("f", 1, None, action="void") is None  # type: ignore[arg-type]
    assert invocation_result("i", "f", None, "boom", None, None) is None  # type: ignore[arg-type]
    assert invocation_result("i", "f", None, None, None, None) == {
        "type": "invocationresult",
        "invocation_id": "i",
        "function_id": "f",
        "result": None,
    }


# -- dumps: NaN and infinities hide behind "null" ------------------------------------------------


class _Form:
    def __init__(self, form: object) -> None:
        self.form = form

    def _payload_form(self) -> object:
        return self.form


_leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),  # NaN and infinities included
    st.text(max_size=5),
    st.sampled_from([uuid.UUID(int=1), _Form([math.nan]), _Form({"a": None}), 2**65]),
)
_values = st.recursive(
    _leaves,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.lists(inner, max_size=3).map(tuple)
        | st.dictionaries(st.text(max_size=3), inner, max_size=4)
    ),
    max_leaves=12,
)


def _dumped(value: object, how: Any) -> object:
    try:
        return loads(how(value))
    except NotJSONError as exc:
        return NotJSONError, str(exc)


@relaxed
@given(_values)
def test_dumps_refuses_exactly_what_the_strict_writer_refuses(value: object) -> None:
    fast, strict = _dumped(value, dumps), _dumped(value, _strict_dumps)
    if isinstance(strict, tuple):
        assert isinstance(fast, tuple) and fast[0] is NotJSONError
    else:
        assert fast == strict


@pytest.mark.parametrize(
    "value",
    [
        None,
        [None, 1.5],
        {"a": None, "b": [1.0, {"c": None}]},
        (None, (2.0,)),
        {"a": None, "ref": StreamChannelRef(channel_id="c", access_key="k", direction="write")},
        {"a": None, "id": uuid.UUID(int=3)},
        OrderedDict(a=None),
        [None, True, "x"],
    ],
)
def test_values_with_null_and_no_non_finite_float_are_written(value: object) -> None:
    assert loads(dumps(value)) == loads(_strict_dumps(value))


@pytest.mark.parametrize(
    "value",
    [
        math.nan,
        [None, math.inf],
        {"a": None, "b": [1.0, {"c": -math.inf}]},
        (None, (math.nan,)),
        {"a": None, "f": _Form([math.nan])},
    ],
)
def test_non_finite_floats_next_to_null_are_refused(value: object) -> None:
    with pytest.raises(NotJSONError):
        dumps(value)


# -- the connection writes what encode_frame writes ---------------------------------------------


def _connected() -> tuple[Pair, FakeEngine]:
    pair = Pair(Connection(Config(), new_id=counter_ids()))
    pair.connect()
    engine = pair.open()
    pair.conn.register_function(RegisterFunction(id="f"))
    pair.pump()
    pair.new_events()
    return pair, engine


def _written_now(conn: Connection) -> list[str]:
    """The text messages ``conn`` queued (read as the engine reads them)."""
    reader = FrameProtocol(client=False, extensions=[])
    reader.receive_bytes(conn.data_to_send())
    texts = []
    for frame in reader.received_frames():
        assert isinstance(frame.payload, str), frame
        texts.append(frame.payload)
    return texts


@pytest.mark.parametrize(
    "action",
    [None, TriggerActionVoid(), TriggerActionEnqueue(queue="q"), {"type": "custom"}],
)
def test_invoke_writes_the_frame_encode_frame_writes(action: Any) -> None:
    pair, _ = _connected()
    invocation_id = pair.conn.invoke(
        "g", {"x": None}, now=0.0, action=action, metadata={"m": 1}, traceparent="tp"
    )
    expected = InvokeFunction(
        function_id="g",
        data={"x": None},
        invocation_id=invocation_id,
        action=action,
        metadata={"m": 1},
        traceparent="tp",
    )
    assert _written_now(pair.conn) == [encode_frame(expected)]


@pytest.mark.parametrize(
    ("result", "error"),
    [
        (None, None),
        ({"ok": [1.5, None]}, None),
        ("ignored", ErrorBody(code="c", message="m")),
        (None, {"code": "c", "message": "m"}),  # not an ErrorBody: the converter decides
    ],
)
def test_send_result_writes_the_frame_encode_frame_writes(result: Any, error: Any) -> None:
    pair, _ = _connected()
    pair.send(InvokeFunction(function_id="f", data=None, invocation_id="in-1"))
    pair.new_events()
    try:
        expected = encode_frame(
            InvocationResult(
                invocation_id="in-1",
                function_id="f",
                result=None if error is not None else result,
                error=error,
            )
        )
    except AttributeError as exc:  # what the converter makes of a dict as the error
        with pytest.raises(AttributeError, match=str(exc)):
            pair.conn.send_result("in-1", "f", result, error=error)
        return
    assert pair.conn.send_result("in-1", "f", result, error=error) is True
    assert _written_now(pair.conn) == [expected]


@relaxed
@given(
    data=iii_st.json_values(),
    invocation_id=st.none() | st.text(max_size=8),
    extra=st.dictionaries(
        st.sampled_from(["traceparent", "baggage", "metadata", "namespace", "action"]),
        st.none(),
        min_size=1,
    ),
)
def test_a_plain_invocation_is_acted_on_as_its_frame(
    data: Any, invocation_id: Any, extra: dict[str, None]
) -> None:
    """The connection's shortcut for frames with only the common fields gives
    the same events and bytes as the same frame read in full."""
    outcomes = []
    for fields in ({}, extra):
        pair, engine = _connected()
        obj = {"type": "invokefunction", "function_id": "f", "data": data, **fields}
        if invocation_id is not None:
            obj["invocation_id"] = invocation_id
        engine.send_text(dumps(obj))
        engine.send_text(dumps({**obj, "function_id": "nobody"}))
        pair.feed(engine.take())
        outcomes.append((pair.new_events(), _written_now(pair.conn)))
    assert outcomes[0] == outcomes[1]


@relaxed
@given(result=iii_st.json_values(), extra=st.sampled_from([{"error": None}, {"baggage": None}]))
def test_a_plain_result_is_acted_on_as_its_frame(result: Any, extra: dict[str, None]) -> None:
    outcomes = []
    for fields in ({}, extra):
        pair, engine = _connected()
        invocation_id = pair.conn.invoke("g", 1, now=0.0)
        _written_now(pair.conn)
        answer = {"type": "invocationresult", "invocation_id": invocation_id, "function_id": "g"}
        engine.send_text(dumps({**answer, "result": result, **fields}))
        engine.send_text(dumps({**answer, "invocation_id": "unknown"}))
        pair.feed(engine.take())
        outcomes.append(pair.new_events())
    assert outcomes[0] == outcomes[1]


# -- invocation ids ---------------------------------------------------------------------------


def test_invocation_ids_are_uuid4_strings_drawn_from_the_system() -> None:
    ids = RandomIds()
    drawn = [ids() for _ in range(1000)]  # (several pools)
    assert len(set(drawn)) == len(drawn)
    for text in drawn:
        value = uuid.UUID(text)
        assert str(value) == text
        assert value.version == 4 and value.variant == uuid.RFC_4122
    with mock.patch("os.urandom", return_value=bytes(range(16)) * 256) as urandom:
        assert RandomIds()() == str(uuid.UUID(bytes=bytes(range(16)), version=4))
    urandom.assert_called_once_with(16 * 256)
