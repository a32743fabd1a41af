"""JSON text in and out, with the same limits on every Python.

orjson does the work (it is several times faster than the stdlib on every
frame we send and receive).  The gaps it leaves are closed here, so that what
is accepted never depends on the interpreter running it:

* Nesting.  ``loads`` reads up to ``MAX_READ_DEPTH`` (1 024) levels of arrays
  and objects, the outermost counted as 1: orjson's own limit, applied to every
  text before anything else.  The engine (serde_json) reads only 127 levels
  and never sends deeper than what it read plus a few levels of wrapping, so
  everything it can send fits with room to spare.  ``dumps`` writes up to
  ``MAX_WRITE_DEPTH`` (254) levels, orjson's writer limit; deeper values
  (and circular ones) raise ``NotJSONError``.
* Integer width.  orjson reads integers in [-2**63, 2**64) exactly and wider
  ones as lossy floats; those are re-read exactly.  An integer literal must fit
  a double's range (below about 1.8e308): orjson refuses larger ones, as
  serde_json does, so ``dumps`` refuses to write them.  The stdlib does the
  exact re-read; where it runs out of stack (at a depth that depends on the
  version and on the caller) a reader without recursion takes over, so wide
  integers are read at any depth orjson reads, on every Python.
* Non-finite floats.  orjson writes NaN and Infinity as ``null``; ``dumps``
  refuses them.  Only a text with a ``null`` in it can hide one, and only a
  value holding floats: such a value is looked through (its containers'
  element types first, a C-level pass) before anything is decided.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable, Iterable
from typing import Union

import orjson

__all__ = [
    "JSON",
    "JSONObject",
    "MAX_READ_DEPTH",
    "MAX_WRITE_DEPTH",
    "NotJSONError",
    "dumps",
    "loads",
]

#: Any JSON value as Python builds it from a document.
JSON = Union[None, bool, int, float, str, list["JSON"], dict[str, "JSON"]]
#: A JSON object.
JSONObject = dict[str, JSON]

#: The deepest nesting ``loads`` reads (the outermost array or object is level 1).
MAX_READ_DEPTH = 1024
#: The deepest nesting ``dumps`` writes (the outermost array or object is level 1).
MAX_WRITE_DEPTH = 254

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
    if is_pydantic_model(value):
        return pydantic_form(value)
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def is_pydantic_model(value: object) -> bool:
    """Whether ``value`` is a pydantic model instance (duck-typed: pydantic is
    not a dependency)."""
    cls = type(value)
    return callable(getattr(cls, "model_json_schema", None)) and callable(
        getattr(value, "model_dump", None)
    )


def pydantic_form(model: object) -> object:
    """A pydantic model's JSON object, as the official SDK writes one
    (its own messages are dumped with aliases and without ``None`` fields)."""
    return model.model_dump(mode="json", by_alias=True, exclude_none=True)  # type: ignore[attr-defined]


Container = Union[dict[object, object], list[object], tuple[object, ...]]
_CONTAINERS = (dict, list, tuple)
_TOO_DEEP = f"nested more than {MAX_WRITE_DEPTH} levels deep"


def _check_int(value: int) -> None:
    if not -(2**63) <= value < 2**64:
        try:
            float(value)
        except OverflowError:
            raise NotJSONError("integer too large for a JSON number") from None


def _key_text(key: object) -> str:
    """The object key the stdlib writes for ``key`` (a number, a bool or ``None``)."""
    if isinstance(key, str):
        return key
    if key is True or key is False or key is None:
        return json.dumps(key)
    if isinstance(key, int):
        return int.__repr__(key)
    if isinstance(key, float):
        if key != key or key in (_INF, -_INF):
            raise NotJSONError(f"object key {key!r} is not a finite number")
        return float.__repr__(key)
    raise NotJSONError(f"object key {key!r} is not a string, a number, a bool or None")


_INF = float("inf")


def _check_keys(item: dict[object, object]) -> None:
    # Numbers, bools and None are written as strings, as the stdlib (and so
    # the official SDK) writes them; two keys that would read back the same
    # would lose a value without a word, so they are refused.
    seen: dict[str, object] = {}
    for key in item:
        text = _key_text(key)
        if text in seen:
            raise NotJSONError(
                f"object keys {seen[text]!r} and {key!r} would both be written as {text!r}"
            )
        seen[text] = key


def _check_tree(value: object) -> None:
    """Refuse what the stdlib would write (or fail on, at a depth that depends
    on the Python version) but JSON readers refuse: nesting past
    ``MAX_WRITE_DEPTH``, cycles, keys that are not strings, numbers, bools or
    ``None`` (those are written as strings), two keys written the same, and
    integers beyond a double's range."""
    if not isinstance(value, _CONTAINERS):
        if type(value) is int:
            _check_int(value)
        return
    stack: list[tuple[Container, int]] = [(value, 1)]
    path: list[int] = []  # ids of the containers around the one being looked at
    while stack:
        item, depth = stack.pop()
        if depth > MAX_WRITE_DEPTH:
            raise NotJSONError(_TOO_DEEP)
        del path[depth - 1 :]
        ident = id(item)
        if ident in path:
            raise NotJSONError("circular reference")
        path.append(ident)
        if isinstance(item, dict):
            for key in item:
                if not isinstance(key, str):
                    _check_keys(item)
                    break
            children: Iterable[object] = item.values()
        else:
            children = item
        depth += 1
        for child in children:
            if isinstance(child, _CONTAINERS):
                stack.append((child, depth))
            elif type(child) is int:
                _check_int(child)


def _strict_dumps(value: object) -> str:
    _check_tree(value)
    try:
        text = json.dumps(
            value, allow_nan=False, separators=(",", ":"), ensure_ascii=False, default=_default
        )
        text.encode()  # a lone surrogate has no UTF-8 form
    except (TypeError, ValueError, RecursionError) as exc:
        # (RecursionError: only when called from very deep in a stack.)
        raise NotJSONError(str(exc)) from None
    return text


def dumps(value: object) -> str:
    """Write ``value`` as compact JSON text.

    Raises:
        NotJSONError: the value holds NaN or an infinity, an object key that is
            not a string, a number, a bool or ``None`` (numbers, bools and
            ``None`` are written as strings, as the stdlib writes them; two
            keys written the same are refused), a circular reference, an
            integer beyond a double's range, nesting deeper than
            ``MAX_WRITE_DEPTH`` or an object that has no JSON form.
    """
    try:
        raw = orjson.dumps(value, option=_OPTIONS)
    except orjson.JSONEncodeError:
        # Wide ints and the like: the stdlib decides, and refuses what it cannot write.
        return _strict_dumps(value)
    if _NULL in raw and _may_hold_non_finite(value):
        # A non-finite float may have become ``null``: the strict path decides.
        return _strict_dumps(value)
    return raw.decode()


_PLAIN = frozenset((str, int, bool, type(None)))


def _may_hold_non_finite(value: object) -> bool:
    """Whether ``value`` (which orjson wrote) holds NaN or an infinity, or a
    value orjson handed to ``_default`` (whose JSON form is not looked at here)."""
    stack = [value]
    while stack:
        item = stack.pop()
        kind = type(item)
        if kind is dict:
            items: Iterable[object] = item.values()  # type: ignore[attr-defined]
        elif kind is list or kind is tuple:
            items = item  # type: ignore[assignment]
        elif kind is float:
            if item - item != 0.0:  # type: ignore[operator]
                return True  # (NaN - NaN and inf - inf are NaN)
            continue
        elif kind in _PLAIN:
            continue
        else:
            return True  # another class: the strict path knows its form
        kinds = set(map(type, items))
        if kinds <= _PLAIN:
            continue  # (the common case: one C-level pass, nothing to look into)
        stack.extend(v for v in items if type(v) not in _PLAIN)
    return False


# Maps every digit to b"0", b"-" to itself and any other byte to b" ".
_DIGIT_MASK = bytes(0x30 if 0x30 <= b <= 0x39 else b if b == 0x2D else 0x20 for b in range(256))
_DIGITS_19 = b"0" * 19


def loads(text: str | bytes) -> JSON:
    """Parse JSON text, integers exactly, up to ``MAX_READ_DEPTH`` levels deep.

    Raises:
        ValueError: (``orjson.JSONDecodeError``) not strict JSON, nested
            deeper than ``MAX_READ_DEPTH``, or a number beyond a double's range.
    """
    value = orjson.loads(text)  # refuses nesting past MAX_READ_DEPTH
    # orjson reads an integer outside [-2**63, 2**64) as a float, silently
    # losing digits; such an integer has 20+ digits, or a minus and 19.  The
    # stdlib reads it exactly (orjson has already refused non-strict JSON).
    mask = (text.encode() if isinstance(text, str) else text).translate(_DIGIT_MASK)
    # (One search for the 19 digits both forms hold, the exact test only then.)
    if _DIGITS_19 in mask and (_DIGITS_19 + b"0" in mask or b"-" + _DIGITS_19 in mask):
        try:
            return json.loads(text)  # type: ignore[no-any-return]
        except RecursionError:
            # Deeper than this Python's stack allows the stdlib reader.
            return read_exactly(text if isinstance(text, str) else text.decode())
    return value  # type: ignore[no-any-return]


# The stdlib's string reader (C), not in typeshed: it stops at the closing quote.
_scan_string: Callable[[str, int, bool], tuple[str, int]] = json.decoder.scanstring  # type: ignore[attr-defined]
_SEPARATORS = re.compile(r"[ \t\n\r,:]*")
_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(\.[0-9]+)?([eE][-+]?[0-9]+)?")
_LITERALS: dict[str, tuple[JSON, int]] = {"t": (True, 4), "f": (False, 5), "n": (None, 4)}


def read_exactly(text: str) -> JSON:
    """Read JSON text that orjson has accepted, integers exactly, without
    recursion (so at any depth orjson reads, on every Python)."""
    containers: list[Union[list[JSON], dict[str, JSON]]] = []
    keys: list[Union[str, None]] = []  # the key each enclosing object awaits a value for
    key: Union[str, None] = None  # the same, for the innermost object
    pos = 0
    while True:
        # Valid JSON: a ',' or ':' is where it belongs, so they can be skipped.
        pos = _SEPARATORS.match(text, pos).end()  # type: ignore[union-attr]
        char = text[pos]
        value: JSON
        if char == "[" or char == "{":
            containers.append([] if char == "[" else {})
            keys.append(key)
            key = None
            pos += 1
            continue
        if char == "]" or char == "}":
            value = containers.pop()
            key = keys.pop()
            pos += 1
        elif char == '"':
            string, pos = _scan_string(text, pos + 1, True)
            if key is None and containers and type(containers[-1]) is dict:
                key = string
                continue
            value = string
        elif char in _LITERALS:
            value, length = _LITERALS[char]
            pos += length
        else:
            number = _NUMBER.match(text, pos)
            assert number is not None  # orjson accepted the text
            pos = number.end()
            literal = number.group()
            value = float(literal) if number.group(1) or number.group(2) else int(literal)
        if not containers:
            return value
        parent = containers[-1]
        if type(parent) is list:
            parent.append(value)
        else:
            parent[key] = value  # type: ignore[index,call-overload]
            key = None
