"""JSON text in and out.

orjson does the work (it is several times faster than the stdlib on every
frame we send and receive). Two gaps are closed here: orjson writes NaN and
Infinity as ``null`` instead of refusing them, and it rejects integers wider
than 64 bits that the stdlib (and serde_json's arbitrary precision) accept
(and reads them back as lossy floats).
"""

from __future__ import annotations

import json
import uuid
from typing import Union

import orjson

__all__ = ["JSON", "JSONObject", "dumps", "loads", "NotJSONError"]

#: Any JSON value as Python builds it from a document.
JSON = Union[None, bool, int, float, str, list["JSON"], dict[str, "JSON"]]
#: A JSON object.
JSONObject = dict[str, JSON]

_NULL = b"null"


class NotJSONError(ValueError):
    """The value cannot be written as strict JSON (RFC 8259)."""


# orjson writes UUIDs natively; the fallback must agree.  Dataclasses and
# datetimes are passed through to the fallback, which refuses them: a payload
# is JSON data, not whatever orjson happens to know.
_OPTIONS = orjson.OPT_PASSTHROUGH_DATACLASS | orjson.OPT_PASSTHROUGH_DATETIME


def _default(value: object) -> object:
    if isinstance(value, uuid.UUID):
        return str(value)
    # A value of the SDK that stands for a JSON object (a channel ref, a data
    # model) says so with ``_payload_form()``; anything else has no JSON form.
    form = getattr(value, "_payload_form", None)
    if form is not None and not isinstance(value, type):
        return form()
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def _strict_dumps(value: object) -> str:
    try:
        text = json.dumps(
            value, allow_nan=False, separators=(",", ":"), ensure_ascii=False, default=_default
        )
        text.encode()  # a lone surrogate has no UTF-8 form
    except (TypeError, ValueError, RecursionError) as exc:
        raise NotJSONError(str(exc)) from None
    # The stdlib turns int/float/bool/None keys into strings; JSON data has none.
    # (json.dumps succeeded, so the value has no cycles to walk into.)
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            for key, child in item.items():
                if not isinstance(key, str):
                    raise NotJSONError(f"object key {key!r} is not a string")
                stack.append(child)
        elif isinstance(item, (list, tuple)):
            stack.extend(item)
    return text


def dumps(value: object) -> str:
    """Write ``value`` as compact JSON text.

    Raises:
        NotJSONError: the value holds NaN or an infinity, a non-string key, a
            circular reference or an object that has no JSON form.
    """
    try:
        raw = orjson.dumps(value, option=_OPTIONS)
    except orjson.JSONEncodeError:
        # Wide ints and the like: the stdlib decides, and refuses what it cannot write.
        return _strict_dumps(value)
    if _NULL in raw:
        # A non-finite float became ``null``: only the strict path can tell.
        return _strict_dumps(value)
    return raw.decode()


# Maps every digit to b"0", b"-" to itself and any other byte to b" ".
_DIGIT_MASK = bytes(0x30 if 0x30 <= b <= 0x39 else b if b == 0x2D else 0x20 for b in range(256))


def loads(text: str | bytes) -> JSON:
    """Parse JSON text; raises ``ValueError`` (``orjson.JSONDecodeError``) on bad input,
    and on input nested too deeply for Python to read exactly."""
    value = orjson.loads(text)
    # orjson reads an integer outside [-2**63, 2**64) as a float, silently
    # losing digits; such an integer has 20+ digits, or a minus and 19.  The
    # stdlib reads it exactly (orjson has already refused non-strict JSON).
    mask = (text.encode() if isinstance(text, str) else text).translate(_DIGIT_MASK)
    if b"00000000000000000000" in mask or b"-0000000000000000000" in mask:
        try:
            return json.loads(text)  # type: ignore[no-any-return]
        except RecursionError:
            # orjson reads 1 024 levels; the stdlib runs out of stack before that.
            raise ValueError("JSON nested too deeply to read its wide integers") from None
    return value  # type: ignore[no-any-return]
