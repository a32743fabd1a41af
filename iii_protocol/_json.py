"""JSON text in and out.

orjson does the work (it is several times faster than the stdlib on every
frame we send and receive). Two gaps are closed here: orjson writes NaN and
Infinity as ``null`` instead of refusing them, and it rejects integers wider
than 64 bits that the stdlib (and serde_json's arbitrary precision) accept.
"""

from __future__ import annotations

import json
import uuid
from typing import Union

import orjson

__all__ = ["JSON", "JSONObject", "dumps", "loads", "NotJSONError"]

#: Any JSON value as Python builds it from a document.
JSON = Union[None, bool, int, float, str, list["JSON"], dict[str, "JSON"]]
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
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def _strict_dumps(value: object) -> str:
    try:
        return json.dumps(
            value, allow_nan=False, separators=(",", ":"), ensure_ascii=False, default=_default
        )
    except (TypeError, ValueError, RecursionError) as exc:
        raise NotJSONError(str(exc)) from None


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


def loads(text: str | bytes) -> JSON:
    """Parse JSON text; raises ``ValueError`` (``orjson.JSONDecodeError``) on bad input."""
    return orjson.loads(text)  # type: ignore[no-any-return]
