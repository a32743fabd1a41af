"""The one cattrs converter, and ``encode_frame`` / ``decode_frame``.

Decoding is strict where the engine is strict (a required field missing or of
the wrong type rejects the frame) and lenient where it is lenient (unknown keys
are ignored, an unknown ``type`` is handed back as ``UnknownFrame``).
Payload fields (``JSON``) pass through untouched in both directions: no copy.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Optional, TypeVar, Union, get_origin

import cattrs
from cattrs.cols import list_structure_factory
from cattrs.errors import BaseValidationError
from cattrs.gen import make_dict_unstructure_fn, override

from . import _frames as f
from ._json import JSON, JSONObject, NotJSONError, dumps, loads
from .errors import PayloadError, RemoteProtocolError

__all__ = [
    "converter",
    "encode_frame",
    "encode_object",
    "decode_frame",
    "invocation_result",
    "invoke_function",
    "plain_invocation",
    "plain_result",
    "read_object",
    "structure_object",
    "to_json_value",
    "from_json_value",
]

T = TypeVar("T")

converter = cattrs.Converter(omit_if_default=True, detailed_validation=True)


# -- primitives: no coercion (cattrs would turn 1 into "1") ---------------------


def _strict_str(value: object, _: object) -> str:
    if not isinstance(value, str):
        raise ValueError(f"expected a string, got {type(value).__name__}")
    return value


def _strict_int(value: object, _: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"expected an integer, got {type(value).__name__}")
    return value


def _strict_bool(value: object, _: object) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"expected a boolean, got {type(value).__name__}")
    return value


def _strict_float(value: object, _: object) -> float:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise ValueError(f"expected a number, got {type(value).__name__}")
    return float(value)


converter.register_structure_hook(str, _strict_str)
converter.register_structure_hook(int, _strict_int)
converter.register_structure_hook(bool, _strict_bool)
converter.register_structure_hook(float, _strict_float)


def _is_list(tp: Any) -> bool:
    return get_origin(tp) is list


def _strict_list_factory(tp: Any, conv: cattrs.BaseConverter) -> Callable[[Any, Any], Any]:
    # cattrs would build a list from any iterable: "ab" -> ["a", "b"], {"a": 1} -> ["a"].
    base = list_structure_factory(tp, conv)

    def structure(value: Any, cls: Any) -> Any:
        if not isinstance(value, list):
            raise ValueError(f"expected an array, got {type(value).__name__}")
        return base(value, cls)

    return structure


converter.register_structure_hook_factory(_is_list, _strict_list_factory)


_JSON_SCALARS = JSON.__args__[:5]  # type: ignore[attr-defined]


def _is_json(tp: object) -> bool:
    # Resolved annotations rebuild the alias with their own ForwardRef objects,
    # so the alias is recognised by its members, not by identity.
    args = getattr(tp, "__args__", None)
    return tp is JSON or (
        args is not None
        and len(args) == 7
        and args[:5] == _JSON_SCALARS
        and get_origin(args[5]) is list
        and get_origin(args[6]) is dict
    )


def _json_structure(value: JSON, _: object) -> JSON:
    return value


def _identity(value: JSON) -> JSON:
    return value


converter.register_structure_hook_func(_is_json, _json_structure)
converter.register_unstructure_hook_func(_is_json, _identity)


def _object(value: object) -> JSONObject:
    if not isinstance(value, dict):
        raise ValueError(f"expected an object, got {type(value).__name__}")
    return value


# -- tagged classes: the ``type`` key comes from the ``TYPE`` class variable -----


def _has_tag(cls: object) -> bool:
    return isinstance(cls, type) and attrs_has(cls) and isinstance(getattr(cls, "TYPE", None), str)


def attrs_has(cls: type) -> bool:
    return hasattr(cls, "__attrs_attrs__")


_KEEP = override(omit_if_default=False)

# Fields written even when they hold their default.
_ALWAYS_WRITTEN: dict[type, dict[str, object]] = {
    f.RegisterFunctionFormat: {"required": _KEEP},
}


def _tagged_unstructure_factory(cls: type) -> Callable[[object], JSONObject]:
    base: Callable[[object], JSONObject] = make_dict_unstructure_fn(
        cls,
        converter,
        _cattrs_omit_if_default=True,
        **_ALWAYS_WRITTEN.get(cls, {}),  # type: ignore[arg-type]
    )
    tag: str = cls.TYPE  # type: ignore[attr-defined]

    def unstructure(value: object) -> JSONObject:
        out: JSONObject = {"type": tag}
        out.update(base(value))
        return out

    return unstructure


converter.register_unstructure_hook_factory(_has_tag, _tagged_unstructure_factory)
converter.register_unstructure_hook(
    f.RegisterFunctionFormat,
    make_dict_unstructure_fn(
        f.RegisterFunctionFormat, converter, _cattrs_omit_if_default=True, required=_KEEP
    ),
)

_invocation_result_base = converter.get_unstructure_hook(f.InvocationResult)


def _unstructure_invocation_result(value: f.InvocationResult) -> JSONObject:
    out: JSONObject = _invocation_result_base(value)
    # A success always carries ``result``, ``null`` included (callers in other
    # languages tell "no value" from "absent").
    if value.error is None and "result" not in out:
        out["result"] = None
    return out


converter.register_unstructure_hook(f.InvocationResult, _unstructure_invocation_result)


def _tagged_structure(
    classes: tuple[type[T], ...],
) -> Callable[[object, object], Optional[T]]:
    by_tag = {c.TYPE: c for c in classes}  # type: ignore[attr-defined]

    def structure(value: object, _: object) -> Optional[T]:
        if value is None:
            return None
        obj = _object(value)
        tag = obj.get("type")
        cls = by_tag.get(tag) if isinstance(tag, str) else None
        if cls is None:
            raise ValueError(f"unknown type {tag!r}, expected one of {sorted(by_tag)}")
        return converter.structure(obj, cls)

    return structure


converter.register_structure_hook(
    Optional[f.TriggerAction], _tagged_structure((f.TriggerActionVoid, f.TriggerActionEnqueue))
)
converter.register_structure_hook(
    Optional[f.HttpAuth], _tagged_structure((f.HttpAuthBearer, f.HttpAuthHmac, f.HttpAuthApiKey))
)

_BY_TYPE: dict[str, type[f.Frame]] = {cls.TYPE: cls for cls in f.KNOWN_FRAMES}


# -- the hot frames, without the general converter ------------------------------
#
# ``invokefunction`` and ``invocationresult`` are nearly all of the traffic.
# These read and write them directly, with the converter's rules (strict types,
# unknown keys ignored, fields at their default omitted, in field order).
# Whatever they are not sure of (a wrong type, a missing field, a value of a
# class they do not know) goes to the converter, so what is refused, and how
# the error reads, stays the converter's.  tests/protocol/test_codec_fast.py
# checks them against it.

_DOUBT: Any = object()  # "ask the converter"
_VOID = f.TriggerActionVoid()


def _optional_str(value: object) -> bool:
    return value is None or type(value) is str


def _structure_action(value: object) -> Any:
    if value is None:
        return None
    if type(value) is dict:
        tag = value.get("type")
        if tag == "void":
            return _VOID
        queue = value.get("queue")
        if tag == "enqueue" and type(queue) is str:
            return f.TriggerActionEnqueue(queue=queue)
    return _DOUBT


def _structure_error(value: object) -> Any:
    if value is None:
        return None
    if type(value) is dict:
        code = value.get("code")
        message = value.get("message")
        stacktrace = value.get("stacktrace")
        if type(code) is str and type(message) is str and _optional_str(stacktrace):
            return f.ErrorBody(code=code, message=message, stacktrace=stacktrace)
    return _DOUBT


def plain_invocation(obj: JSONObject) -> Optional[tuple[str, Optional[str], JSON]]:
    """``(function_id, invocation_id, data)`` of an ``invokefunction`` object
    that has no other field (the common case), or ``None``."""
    function_id = obj.get("function_id")
    invocation_id = obj.get("invocation_id")
    if (
        len(obj) == (4 if "invocation_id" in obj else 3)  # (with "type" and "data")
        and type(function_id) is str
        and "data" in obj
        and (invocation_id is None or type(invocation_id) is str)
    ):
        return function_id, invocation_id, obj["data"]
    return None


def _structure_invoke(obj: JSONObject) -> Optional[f.InvokeFunction]:
    plain = plain_invocation(obj)
    if plain is not None:
        return f.InvokeFunction(function_id=plain[0], invocation_id=plain[1], data=plain[2])
    get = obj.get
    function_id = get("function_id")
    invocation_id = get("invocation_id")
    traceparent = get("traceparent")
    baggage = get("baggage")
    namespace = get("namespace")
    observe_depth = get("observe_depth")
    action = _structure_action(get("action"))
    if (
        type(function_id) is not str
        or "data" not in obj
        or not (
            _optional_str(invocation_id)
            and _optional_str(traceparent)
            and _optional_str(baggage)
            and _optional_str(namespace)
        )
        or (observe_depth is not None and type(observe_depth) is not int)
        or action is _DOUBT
    ):
        return None
    return f.InvokeFunction(
        function_id=function_id,
        data=obj["data"],
        invocation_id=invocation_id,  # type: ignore[arg-type]
        traceparent=traceparent,  # type: ignore[arg-type]
        baggage=baggage,  # type: ignore[arg-type]
        action=action,
        metadata=get("metadata"),
        namespace=namespace,  # type: ignore[arg-type]
        caller=get("caller"),
        observe_depth=observe_depth,
        activation=get("activation"),
    )


def plain_result(obj: JSONObject) -> Optional[tuple[str, str, JSON]]:
    """``(invocation_id, function_id, result)`` of an ``invocationresult``
    object with no other field (a success, the common case), or ``None``."""
    invocation_id = obj.get("invocation_id")
    function_id = obj.get("function_id")
    if (
        len(obj) == (4 if "result" in obj else 3)  # (with "type")
        and type(invocation_id) is str
        and type(function_id) is str
    ):
        return invocation_id, function_id, obj.get("result")
    return None


def _structure_result(obj: JSONObject) -> Optional[f.InvocationResult]:
    plain = plain_result(obj)
    if plain is not None:
        return f.InvocationResult(invocation_id=plain[0], function_id=plain[1], result=plain[2])
    get = obj.get
    invocation_id = get("invocation_id")
    function_id = get("function_id")
    traceparent = get("traceparent")
    baggage = get("baggage")
    error = _structure_error(get("error"))
    if (
        type(invocation_id) is not str
        or type(function_id) is not str
        or not (_optional_str(traceparent) and _optional_str(baggage))
        or error is _DOUBT
    ):
        return None
    return f.InvocationResult(
        invocation_id=invocation_id,
        function_id=function_id,
        result=get("result"),
        error=error,
        traceparent=traceparent,  # type: ignore[arg-type]
        baggage=baggage,  # type: ignore[arg-type]
    )


_FAST_STRUCTURE: dict[str, Callable[[JSONObject], Optional[f.Frame]]] = {
    f.InvokeFunction.TYPE: _structure_invoke,
    f.InvocationResult.TYPE: _structure_result,
}

# The converter leaves a field out when it ``!=`` its default (None here):
# the same comparison is made below, so no value is treated differently.


def _unstructure_error(error: object) -> Any:
    if type(error) is not f.ErrorBody:
        return _DOUBT
    out: JSONObject = {"code": error.code, "message": error.message}
    if error.stacktrace != None:  # noqa: E711
        out["stacktrace"] = error.stacktrace
    return out


def invocation_result(
    invocation_id: str,
    function_id: str,
    result: JSON,
    error: Optional[f.ErrorBody],
    traceparent: Optional[str],
    baggage: Optional[str],
) -> Optional[JSONObject]:
    """The JSON object of an ``invocationresult`` frame with these fields, as the
    converter writes it; ``None`` when only the converter can tell."""
    out: JSONObject = {
        "type": "invocationresult",
        "invocation_id": invocation_id,
        "function_id": function_id,
    }
    if result != None:  # noqa: E711
        out["result"] = result
    if error != None:  # noqa: E711
        body = _unstructure_error(error)
        if body is _DOUBT:
            return None
        out["error"] = body
    if traceparent != None:  # noqa: E711
        out["traceparent"] = traceparent
    if baggage != None:  # noqa: E711
        out["baggage"] = baggage
    if error is None and "result" not in out:
        out["result"] = None  # a success always carries its result
    return out


def _unstructure_result(frame: f.InvocationResult) -> Optional[JSONObject]:
    return invocation_result(
        frame.invocation_id,
        frame.function_id,
        frame.result,
        frame.error,
        frame.traceparent,
        frame.baggage,
    )


def _unstructure_action(action: object) -> Any:
    if type(action) is f.TriggerActionVoid:
        return {"type": "void"}
    if type(action) is f.TriggerActionEnqueue:
        return {"type": "enqueue", "queue": action.queue}
    return _DOUBT


def invoke_function(
    function_id: str,
    data: JSON,
    invocation_id: Optional[str],
    traceparent: Optional[str] = None,
    baggage: Optional[str] = None,
    action: Optional[f.TriggerAction] = None,
    metadata: JSON = None,
    namespace: Optional[str] = None,
    caller: JSON = None,
    observe_depth: Optional[int] = None,
    activation: JSON = None,
) -> Optional[JSONObject]:
    """The JSON object of an ``invokefunction`` frame with these fields, as the
    converter writes it; ``None`` when only the converter can tell."""
    out: JSONObject = {"type": "invokefunction", "function_id": function_id, "data": data}
    if invocation_id != None:  # noqa: E711
        out["invocation_id"] = invocation_id
    if traceparent != None:  # noqa: E711
        out["traceparent"] = traceparent
    if baggage != None:  # noqa: E711
        out["baggage"] = baggage
    if action != None:  # noqa: E711
        written = _unstructure_action(action)
        if written is _DOUBT:
            return None
        out["action"] = written
    if metadata != None:  # noqa: E711
        out["metadata"] = metadata
    if namespace != None:  # noqa: E711
        out["namespace"] = namespace
    if caller != None:  # noqa: E711
        out["caller"] = caller
    if observe_depth != None:  # noqa: E711
        out["observe_depth"] = observe_depth
    if activation != None:  # noqa: E711
        out["activation"] = activation
    return out


def _unstructure_invoke(frame: f.InvokeFunction) -> Optional[JSONObject]:
    return invoke_function(
        frame.function_id,
        frame.data,
        frame.invocation_id,
        frame.traceparent,
        frame.baggage,
        frame.action,
        frame.metadata,
        frame.namespace,
        frame.caller,
        frame.observe_depth,
        frame.activation,
    )


_FAST_UNSTRUCTURE: dict[type, Callable[[Any], Optional[JSONObject]]] = {
    f.InvokeFunction: _unstructure_invoke,
    f.InvocationResult: _unstructure_result,
}


# -- public entry points -------------------------------------------------------


def to_json_value(value: object) -> JSON:
    """Unstructure an attrs value of this package (a frame, a format tree...) to JSON data."""
    return converter.unstructure(value)  # type: ignore[no-any-return]


def from_json_value(value: JSON, cls: type[T]) -> T:
    """Structure JSON data into ``cls``; raises ``cattrs`` validation errors."""
    return converter.structure(value, cls)


def encode_object(data: JSONObject, frame_type: str, function_id: object = None) -> str:
    """The JSON text of a frame's object (``invocation_result()``...).

    Raises:
        PayloadError: as ``encode_frame``.
    """
    try:
        return dumps(data)
    except NotJSONError as exc:
        raise PayloadError(
            f"{frame_type} is not valid JSON: {exc}",
            function_id=function_id if isinstance(function_id, str) else None,
        ) from None


def encode_frame(frame: Union[f.Frame, f.UnknownFrame]) -> str:
    """Encode one frame as compact JSON text, exactly as the engine accepts it.

    Raises:
        PayloadError: a payload holds NaN/Infinity or a value with no JSON form.
    """
    fast = _FAST_UNSTRUCTURE.get(type(frame))
    data = fast(frame) if fast is not None else None
    if data is None:
        data = frame.raw if isinstance(frame, f.UnknownFrame) else converter.unstructure(frame)
    return encode_object(
        data,
        getattr(frame, "TYPE", "frame"),
        getattr(frame, "function_id", None),
    )


def _describe(exc: Exception) -> str:
    if isinstance(exc, BaseValidationError):
        return "; ".join(cattrs.transform_error(exc, path="$"))
    return str(exc)  # pragma: no cover - cattrs wraps everything when detailed


def read_object(data: Union[str, bytes, bytearray, memoryview]) -> tuple[str, JSONObject]:
    """The ``type`` and JSON object of one text frame (``decode_frame``'s first half).

    Raises:
        RemoteProtocolError: as ``decode_frame``, for the JSON and the ``type``.
    """
    try:
        obj = loads(data if isinstance(data, (str, bytes)) else bytes(data))
    except ValueError as exc:
        raise RemoteProtocolError(f"frame is not valid JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise RemoteProtocolError(f"frame is not a JSON object but {type(obj).__name__}")
    tag = obj.get("type")
    if not isinstance(tag, str):
        raise RemoteProtocolError("frame has no string 'type' field")
    return tag, obj


def structure_object(tag: str, obj: JSONObject) -> Union[f.Frame, f.UnknownFrame]:
    """The frame of a JSON object of type ``tag`` (``decode_frame``'s second half).

    Raises:
        RemoteProtocolError: as ``decode_frame``, for the fields.
    """
    fast = _FAST_STRUCTURE.get(tag)
    if fast is not None:
        frame = fast(obj)
        if frame is not None:
            return frame
    cls = _BY_TYPE.get(tag)
    if cls is None:
        return f.UnknownFrame(type=tag, raw=obj)
    try:
        return converter.structure(obj, cls)
    except BaseValidationError as exc:
        raise RemoteProtocolError(
            f"invalid {tag} frame: {_describe(exc)}", frame_type=tag
        ) from None


def decode_frame(data: Union[str, bytes, bytearray, memoryview]) -> Union[f.Frame, f.UnknownFrame]:
    """Decode one JSON text frame.

    Returns:
        The typed frame, or ``UnknownFrame`` when its ``type`` is not one this
        library knows (log it and skip it: newer engines add types).

    Raises:
        RemoteProtocolError: invalid JSON or UTF-8, not an object, no string
            ``type``, or a known frame with a missing or mistyped field
            (``frame_type`` names it).
    """
    return structure_object(*read_object(data))
