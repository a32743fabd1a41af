"""The in-memory key-value store behind the state and stream modules, like the
real engine's built-in ``kv`` adapter (``in_memory``): named indexes of keys,
in insertion order, and the atomic update operations of ``state::update`` /
``stream::update``.

Values are kept as the real engine keeps them after reading them with
serde_json: object keys sorted, integers wider than 64 bits turned into floats.
A stored value is never changed in place (an update works on a copy), so
results and trigger payloads may share it.

Inputs are read the way serde reads them (``parse_struct``, ``parse_ops``):
present fields in key order first (type errors), then the missing ones in
declaration order, a struct also from an array of its fields by position, and
the update operations as the internally tagged enum they are.  A problem fails
the call with ``deserialization_error`` (``Failed to deserialize input for
<id>: <reason>``).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from typing import Optional, Union

from iii_protocol._json import JSON, JSONObject

from .._records import BuiltinError, Call
from .inputs import _describe

__all__ = [
    "ANY",
    "MISSING",
    "OPS",
    "OPT_ANY",
    "OPT_STR",
    "STR",
    "KvStore",
    "Op",
    "SerdeError",
    "apply_update_ops",
    "canonical",
    "ops_json",
    "parse_ops",
    "parse_struct",
    "read_struct",
    "stored",
]

I64_MIN, I64_MAX, U64_MAX = -(2**63), 2**63 - 1, 2**64 - 1


class _Missing:
    """No value at all (a key that does not exist), unlike a stored ``null``."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "MISSING"


MISSING = _Missing()

Stored = Union[JSON, _Missing]


def canonical(value: JSON) -> JSON:
    """``value`` as serde_json holds it: object keys sorted (recursively), integers
    outside the 64-bit range as floats.  Always a fresh copy of containers."""
    if isinstance(value, dict):
        return {k: canonical(value[k]) for k in sorted(value)}
    if isinstance(value, list):
        return [canonical(v) for v in value]
    if isinstance(value, int) and not isinstance(value, bool) and not I64_MIN <= value <= U64_MAX:
        return float(value)
    return value


def _plain(value: Stored) -> JSON:
    return None if isinstance(value, _Missing) else value


class KvStore:
    """Indexes of keys to values, each in insertion order.  An index stays listed
    once created, even when its last key is deleted (as in the real store)."""

    def __init__(self) -> None:
        self._indexes: dict[str, dict[str, JSON]] = {}

    def get(self, index: str, key: str) -> Stored:
        items = self._indexes.get(index)
        if items is None or key not in items:
            return MISSING
        return items[key]

    def set(self, index: str, key: str, value: JSON) -> Stored:
        """Store ``value`` (already canonical); returns the old value or MISSING."""
        items = self._indexes.setdefault(index, {})
        old = items.get(key, MISSING)
        items[key] = value
        return old

    def delete(self, index: str, key: str) -> Stored:
        items = self._indexes.get(index)
        if items is None or key not in items:
            return MISSING
        return items.pop(key)

    def update(
        self, index: str, key: str, ops: Sequence[Op]
    ) -> tuple[Stored, JSON, list[JSONObject]]:
        """Apply ``ops`` to the value (creating the index and the key):
        ``(old value or MISSING, new value, errors)``."""
        items = self._indexes.setdefault(index, {})
        old = items.get(key, MISSING)
        new, errors = apply_update_ops(old, ops)
        items[key] = new
        return old, new, errors

    def values(self, index: str) -> list[JSON]:
        return list(self._indexes.get(index, {}).values())

    def indexes(self) -> list[str]:
        return list(self._indexes)

    def clear(self) -> None:
        self._indexes.clear()


# -- reading inputs like serde ---------------------------------------------------------

STR, ANY, OPT_STR, OPT_ANY, OPS = "str", "any", "opt_str", "opt_any", "ops"

#: ``(name, kind, alias)`` in declaration order.
Field = tuple[str, str, Optional[str]]


def _bad(function_id: str, reason: str) -> BuiltinError:
    return BuiltinError(
        "deserialization_error", f"Failed to deserialize input for {function_id}: {reason}"
    )


class SerdeError(Exception):
    """What serde would say about an input (without the function's prefix)."""


def _read_field(kind: str, value: JSON) -> JSON:
    if kind in (ANY, OPT_ANY):
        return value
    if kind == OPS:
        return _ops(value)  # type: ignore[return-value]
    if kind == OPT_STR and value is None:
        return None
    if not isinstance(value, str):
        raise SerdeError(f"invalid type: {_describe(value)}, expected a string")
    return value


def parse_struct(call: Call, fields: Sequence[Field], struct: str) -> dict[str, object]:
    """Read ``call.data`` as the serde struct ``struct`` with ``fields``."""
    try:
        return read_struct(call.data, fields, struct)
    except SerdeError as exc:
        raise _bad(call.function_id, str(exc)) from None


def read_struct(data: JSON, fields: Sequence[Field], struct: str) -> dict[str, object]:
    """Read ``data`` as the serde struct ``struct``; raises ``SerdeError``."""
    out: dict[str, object] = {}
    if isinstance(data, list):
        # serde reads a struct from a sequence too: its fields by position, all of them.
        for i, (name, kind, _alias) in enumerate(fields):
            if i >= len(data):
                raise SerdeError(
                    f"invalid length {i}, expected struct {struct} with {len(fields)} elements"
                )
            out[name] = _read_field(kind, data[i])
        if len(data) > len(fields):
            raise SerdeError(f"invalid length {len(data)}, expected fewer elements in array")
        return out
    if not isinstance(data, dict):
        raise SerdeError(f"invalid type: {_describe(data)}, expected struct {struct}")
    by_key = {name: (name, kind) for name, kind, _ in fields}
    by_key.update({alias: (name, kind) for name, kind, alias in fields if alias})
    for key in sorted(data):  # serde_json hands the keys over sorted
        hit = by_key.get(key)
        if hit is None:
            continue
        name, kind = hit
        if name in out:
            raise SerdeError(f"duplicate field `{name}`")
        out[name] = _read_field(kind, data[key])
    for name, kind, _ in fields:
        if name not in out:
            if kind in (OPT_STR, OPT_ANY):
                out[name] = None
            else:
                raise SerdeError(f"missing field `{name}`")
    return out


# -- update operations -------------------------------------------------------------------

_VARIANTS = ("set", "merge", "increment", "decrement", "append", "remove")


class Op:
    """One update operation.  ``path``: a field name (``""``: the root) for
    set/increment/decrement/remove; None, a name or a list of literal segments
    for merge/append."""

    __slots__ = ("by", "kind", "path", "value")

    def __init__(
        self,
        kind: str,
        path: Union[str, list[str], None],
        value: JSON = None,
        by: int = 0,
    ) -> None:
        self.kind = kind
        self.path = path
        self.value = value
        self.by = by

    def to_json(self) -> JSONObject:
        """The operation as serde writes it (an absent merge/append path is left out)."""
        out: JSONObject = {"type": self.kind}
        path: JSON = self.path if isinstance(self.path, str) or self.path is None else [*self.path]
        if self.kind in ("increment", "decrement"):
            out["path"] = path
            out["by"] = self.by
        elif self.kind == "remove":
            out["path"] = path
        elif self.kind == "set":
            out["path"] = path
            out["value"] = self.value
        else:
            if path is not None:
                out["path"] = path
            out["value"] = self.value
        return out


def ops_json(ops: Sequence[Op]) -> list[JSON]:
    return [op.to_json() for op in ops]


def parse_ops(call: Call, raw: JSON) -> list[Op]:
    try:
        return _ops(raw)
    except SerdeError as exc:
        raise _bad(call.function_id, str(exc)) from None


def _ops(raw: JSON) -> list[Op]:
    if not isinstance(raw, list):
        raise SerdeError(f"invalid type: {_describe(raw)}, expected a sequence")
    return [_op(item) for item in raw]


def _variant(tag: JSON) -> str:
    if isinstance(tag, str):
        if tag not in _VARIANTS:
            expected = ", ".join(f"`{v}`" for v in _VARIANTS)
            raise SerdeError(f"unknown variant `{tag}`, expected one of {expected}")
        return tag
    if isinstance(tag, int) and not isinstance(tag, bool) and tag >= 0:
        if tag >= len(_VARIANTS):
            raise SerdeError(
                f"invalid value: integer `{tag}`, expected variant index 0 <= i < {len(_VARIANTS)}"
            )
        return _VARIANTS[tag]
    raise SerdeError(f"invalid type: {_describe(tag)}, expected variant identifier")


def _string(value: JSON) -> str:
    if not isinstance(value, str):
        raise SerdeError(f"invalid type: {_describe(value)}, expected a string")
    return value


def _i64(value: JSON) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise SerdeError(f"invalid type: {_describe(value)}, expected i64")
    if isinstance(value, float):
        raise SerdeError(f"invalid type: {_describe(value)}, expected i64")
    if value < I64_MIN or value > I64_MAX:
        raise SerdeError(f"invalid value: integer `{value}`, expected i64")
    return value


def _merge_path(value: JSON) -> Union[str, list[str], None]:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(s, str) for s in value):
        return [s for s in value if isinstance(s, str)]
    raise SerdeError("data did not match any variant of untagged enum MergePath")


def _op(item: JSON) -> Op:
    if not isinstance(item, dict):
        raise SerdeError(
            f"invalid type: {_describe(item)}, expected internally tagged enum UpdateOp"
        )
    if "type" not in item:
        raise SerdeError("missing field `type`")
    kind = _variant(item["type"])
    fields = {k: item[k] for k in sorted(item) if k != "type"}
    path: Union[str, list[str], None] = None
    value: JSON = None
    by = 0
    has_path = has_value = has_by = False
    for key, v in fields.items():
        if key == "path":
            path = _merge_path(v) if kind in ("merge", "append") else _string(v)
            has_path = True
        elif key == "value" and kind != "increment" and kind != "decrement" and kind != "remove":
            value = v
            has_value = True
        elif key == "by" and kind in ("increment", "decrement"):
            by = _i64(v)
            has_by = True
    if kind in ("set", "increment", "decrement", "remove") and not has_path:
        raise SerdeError("missing field `path`")
    if kind in ("increment", "decrement") and not has_by:
        raise SerdeError("missing field `by`")
    if kind in ("merge", "append") and not has_value:
        raise SerdeError("missing field `value`")
    return Op(kind, path, canonical(value), by)


# -- applying them (the real engine's semantics, error codes and messages) -----------------

MAX_PATH_DEPTH = 32
MAX_SEGMENT_BYTES = 256
MAX_VALUE_DEPTH = 16
MAX_VALUE_KEYS = 1024
_PROTO_KEYS = ("__proto__", "constructor", "prototype")
_DOC_URL = "https://iii.dev/docs/workers/iii-state#error-codes"


def _err(errors: list[JSONObject], index: int, code: str, message: str) -> None:
    errors.append({"op_index": index, "code": code, "message": message, "doc_url": _DOC_URL})


def _segments(path: Union[str, list[str], None]) -> list[str]:
    if path is None or path == "":
        return []
    if isinstance(path, str):
        return [path]
    return list(path)


def _valid_path(op: str, index: int, segments: list[str], errors: list[JSONObject]) -> bool:
    if len(segments) > MAX_PATH_DEPTH:
        _err(
            errors,
            index,
            f"{op}.path.too_deep",
            f"Path depth {len(segments)} exceeds maximum of {MAX_PATH_DEPTH}",
        )
        return False
    for seg in segments:
        if not seg:
            _err(errors, index, f"{op}.path.empty_segment", "Path contains an empty segment")
            return False
        size = len(seg.encode())
        if size > MAX_SEGMENT_BYTES:
            _err(
                errors,
                index,
                f"{op}.path.segment_too_long",
                f"Path segment of {size} bytes exceeds maximum of {MAX_SEGMENT_BYTES}",
            )
            return False
        if seg in _PROTO_KEYS:
            _err(
                errors,
                index,
                f"{op}.path.proto_polluted",
                f"Path segment '{seg}' is not allowed (prototype pollution).",
            )
            return False
    return True


def _depth(value: JSON) -> int:
    if isinstance(value, dict):
        return 1 + max((_depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((_depth(v) for v in value), default=0)
    return 0


def _valid_merge_value(index: int, value: JSON, errors: list[JSONObject]) -> bool:
    if not isinstance(value, dict):
        _err(errors, index, "merge.value.not_an_object", "Merge value must be a JSON object")
        return False
    if len(value) > MAX_VALUE_KEYS:
        _err(
            errors,
            index,
            "merge.value.too_many_keys",
            f"Merge value has {len(value)} top-level keys, exceeds maximum of {MAX_VALUE_KEYS}",
        )
        return False
    for key in value:
        if key in _PROTO_KEYS:
            _err(
                errors,
                index,
                "merge.value.proto_polluted",
                f'Merge value top-level key "{key}" is a prototype-pollution sink',
            )
            return False
    depth = _depth(value)
    if depth > MAX_VALUE_DEPTH:
        _err(
            errors,
            index,
            "merge.value.too_deep",
            f"Merge value JSON nesting depth {depth} exceeds maximum of {MAX_VALUE_DEPTH}",
        )
        return False
    return True


def _type_name(value: JSON) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _label(path: str) -> str:
    return path or "root"


def _label_segments(segments: list[str]) -> str:
    return "root" if not segments else "[" + ", ".join(segments) + "]"


def _add(value: JSON, by: int, sign: int) -> Optional[JSON]:
    """``value + sign*by`` as serde_json numbers add: i64, then u64, then f64."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if isinstance(value, int):
        result = value + sign * by
        if I64_MIN <= value <= I64_MAX and I64_MIN <= result <= I64_MAX:
            return result
        if 0 <= value <= U64_MAX and 0 <= result <= U64_MAX:
            return result
        return None
    result_f = value + sign * float(by)
    return result_f if math.isfinite(result_f) else None


def _walk_or_create(current: JSONObject, segments: list[str]) -> JSONObject:
    node = current
    for seg in segments:
        child = node.get(seg)
        if not isinstance(child, dict):
            child = {}
            node[seg] = child
        node = child
    return node


def _initial_append(value: JSON) -> JSON:
    return value if isinstance(value, str) else [value]


def _append_to(
    holder: Union[JSONObject, list[JSON]],
    key: Union[str, int],
    value: JSON,
    label: str,
    index: int,
    errors: list[JSONObject],
) -> bool:
    target = holder[key]  # type: ignore[index]
    if isinstance(target, list):
        target.append(value)
        return True
    if isinstance(target, str):
        if isinstance(value, str):
            holder[key] = target + value  # type: ignore[index]
            return True
        _err(
            errors,
            index,
            "append.type_mismatch",
            f"Expected string append value at path '{_label(label)}', got {_type_name(value)}.",
        )
        return False
    if target is None:
        holder[key] = _initial_append(value)  # type: ignore[index]
        return True
    _err(
        errors,
        index,
        "append.type_mismatch",
        f"Cannot append at path '{_label(label)}': target is {_type_name(target)}, "
        "expected array, string, null, or missing field.",
    )
    return False


def apply_update_ops(old: Stored, ops: Sequence[Op]) -> tuple[JSON, list[JSONObject]]:
    """The new value and the errors of the operations that were not applied (the
    others are, in order).  ``old`` is not changed."""
    missing = isinstance(old, _Missing)
    box: list[JSON] = [{} if isinstance(old, _Missing) else copy.deepcopy(old)]
    errors: list[JSONObject] = []
    for i, op in enumerate(ops):
        current = box[0]
        kind = op.kind
        if kind in ("set", "increment", "decrement", "remove"):
            path = op.path if isinstance(op.path, str) else ""
            if not _valid_path(kind, i, _segments(path), errors):
                continue
            if kind == "set":
                if not path:
                    box[0] = copy.deepcopy(op.value)
                    missing = False
                elif isinstance(current, dict):
                    current[path] = copy.deepcopy(op.value)
                    missing = False
                else:
                    _err(
                        errors,
                        i,
                        "set.target_not_object",
                        f"Cannot set at path '{_label(path)}': target is "
                        f"{_type_name(current)}, expected object.",
                    )
            elif kind == "remove":
                if not path:
                    box[0] = None
                    missing = False
                elif isinstance(current, dict):
                    current.pop(path, None)
                    missing = False
                else:
                    _err(
                        errors,
                        i,
                        "remove.target_not_object",
                        f"Cannot remove at path '{_label(path)}': target is "
                        f"{_type_name(current)}, expected object.",
                    )
            else:
                sign = 1 if kind == "increment" else -1
                if not path:
                    if missing:
                        box[0] = sign * op.by
                    else:
                        updated = _add(current, op.by, sign)
                        if updated is None:
                            _err(
                                errors,
                                i,
                                f"{kind}.not_number",
                                f"Expected number at path 'root', got {_type_name(current)}.",
                            )
                            continue
                        box[0] = updated
                    missing = False
                elif isinstance(current, dict):
                    if path in current:
                        updated = _add(current[path], op.by, sign)
                        if updated is None:
                            _err(
                                errors,
                                i,
                                f"{kind}.not_number",
                                f"Expected number at path '{path}', got "
                                f"{_type_name(current[path])}.",
                            )
                            continue
                        current[path] = updated
                    else:
                        current[path] = sign * op.by
                    missing = False
                else:
                    _err(
                        errors,
                        i,
                        f"{kind}.target_not_object",
                        f"Cannot {kind} at path '{_label(path)}': target is "
                        f"{_type_name(current)}, expected object.",
                    )
        elif kind == "merge":
            segments = _segments(op.path)
            if not _valid_path("merge", i, segments, errors):
                continue
            if not _valid_merge_value(i, op.value, errors):
                continue
            assert isinstance(op.value, dict)
            if not segments:
                # A root merge needs an object there; otherwise it is skipped (no error).
                if isinstance(current, dict):
                    current.update(copy.deepcopy(op.value))
                    missing = False
            else:
                if not isinstance(current, dict):
                    current = {}
                    box[0] = current
                _walk_or_create(current, segments).update(copy.deepcopy(op.value))
                missing = False
        else:  # append
            segments = _segments(op.path)
            if not _valid_path("append", i, segments, errors):
                continue
            value = copy.deepcopy(op.value)
            if not segments:
                if missing:
                    box[0] = None
                if _append_to(box, 0, value, "root", i, errors):
                    missing = False
            elif not isinstance(current, dict):
                _err(
                    errors,
                    i,
                    "append.target_not_object",
                    f"Cannot append at path '{_label_segments(segments)}': target is "
                    f"{_type_name(current)}, expected object.",
                )
            elif len(segments) == 1:
                leaf = segments[0]
                if leaf in current:
                    _append_to(current, leaf, value, leaf, i, errors)
                else:
                    current[leaf] = _initial_append(value)
                missing = False
            else:
                parent = _walk_or_create(current, segments[:-1])
                leaf = segments[-1]
                if leaf in parent:
                    _append_to(parent, leaf, value, leaf, i, errors)
                else:
                    parent[leaf] = [value]
                missing = False
    return canonical(box[0]), errors


def stored(value: Stored) -> JSON:
    """A stored value for a result: ``null`` for MISSING."""
    return _plain(value)
