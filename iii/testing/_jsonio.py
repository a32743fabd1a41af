"""JSON in and out for the engine: exactly the SDK's reader, and a fast writer.

Frames are read with ``iii_protocol._json.loads``, the SDK's own reader, so an
integer wider than 64 bits (``10**25``) stays an integer on its way through the
engine.  Writing goes through orjson, except for a value orjson refuses (such an
integer): then the SDK's exact writer.  A value read from a frame cannot hold
NaN or an infinity, so the fast path needs no other check.
"""

from __future__ import annotations

import orjson

from iii_protocol._json import JSON, loads
from iii_protocol._json import dumps as _exact_dumps

__all__ = ["JSONDecodeError", "dumps", "dumps_line", "loads"]

#: What ``loads`` raises on text that is not JSON (a ``ValueError``).
JSONDecodeError = ValueError


def dumps(value: JSON) -> bytes:
    """Compact JSON bytes for ``value`` (a value read from JSON, or built from one)."""
    try:
        return orjson.dumps(value)
    except orjson.JSONEncodeError:
        return _exact_dumps(value).encode()


def dumps_line(value: JSON) -> str:
    """``value`` as one JSON line (with the newline)."""
    try:
        return orjson.dumps(value, option=orjson.OPT_APPEND_NEWLINE).decode()
    except orjson.JSONEncodeError:
        return _exact_dumps(value) + "\n"
