"""Input checking for engine functions, like serde would do it.

Unknown keys are ignored; a missing required key or a wrong type fails the
call with ``deserialization_error`` (``Failed to deserialize input for <id>:
<reason>``), the real engine's wording.
"""

from __future__ import annotations

from typing import Optional

from iii_protocol._json import JSON, JSONObject

from .._records import BuiltinError, Call

__all__ = [
    "ANY",
    "BOOL",
    "INT",
    "OBJ",
    "STR",
    "STRS",
    "U32",
    "Fields",
    "opt_bool",
    "opt_str",
    "parse_input",
    "publish_input",
]

STR, BOOL, INT, U32, STRS, OBJ, ANY = "str", "bool", "int", "u32", "strs", "obj", "any"
_EXPECTED = {
    STR: "a string",
    BOOL: "a boolean",
    INT: "i64",
    U32: "u32",
    STRS: "a sequence of strings",
    OBJ: "a map",
    ANY: "any value",
}

Fields = dict[str, tuple[str, bool]]


def _describe(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"boolean `{str(value).lower()}`"
    if isinstance(value, int):
        return f"integer `{value}`"
    if isinstance(value, float):
        return f"floating point `{value}`"
    if isinstance(value, str):
        return f'string "{value}"'
    if isinstance(value, list):
        return "sequence"
    return "map"


def _ok(kind: str, value: object) -> bool:
    if kind == ANY:
        return True
    if kind == STR:
        return isinstance(value, str)
    if kind == BOOL:
        return isinstance(value, bool)
    if kind == INT:
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == U32:
        return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**32
    if kind == STRS:
        return isinstance(value, list) and all(isinstance(v, str) for v in value)
    return isinstance(value, dict)


def _bad_input(function_id: str, reason: str) -> BuiltinError:
    return BuiltinError(
        "deserialization_error", f"Failed to deserialize input for {function_id}: {reason}"
    )


def parse_input(call: Call, fields: Fields, struct: str) -> JSONObject:
    data = call.data
    if data is None and not any(required for _, required in fields.values()):
        data = {}
    if not isinstance(data, dict):
        raise _bad_input(
            call.function_id, f"invalid type: {_describe(data)}, expected struct {struct}"
        )
    out: JSONObject = {}
    for name, (kind, required) in fields.items():
        value = data.get(name)
        if value is None:
            if required:
                if name in data and kind != ANY:
                    raise _bad_input(
                        call.function_id, f"invalid type: null, expected {_EXPECTED[kind]}"
                    )
                if name not in data:
                    raise _bad_input(call.function_id, f"missing field `{name}`")
            continue
        if not _ok(kind, value):
            raise _bad_input(
                call.function_id, f"invalid type: {_describe(value)}, expected {_EXPECTED[kind]}"
            )
        out[name] = value
    return out


def opt_str(inp: JSONObject, key: str) -> Optional[str]:
    value = inp.get(key)
    return value if isinstance(value, str) else None


def opt_bool(inp: JSONObject, key: str) -> bool:
    return inp.get(key) is True


def publish_input(call: Call, struct: str) -> tuple[str, JSON]:
    """``(topic, data)`` of a publish call (pubsub's or the queue's ``publish``):
    both required, ``data`` may be null, an empty topic is ``topic_not_set``."""
    inp = parse_input(call, {"topic": (STR, True), "data": (ANY, True)}, struct)
    topic = inp["topic"]
    assert isinstance(topic, str)
    if not topic:
        raise BuiltinError("topic_not_set", "Topic is not set")
    data = call.data.get("data") if isinstance(call.data, dict) else None
    return topic, data
