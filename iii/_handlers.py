"""Handler introspection: how to call a user's function and what it accepts.

A handler is ``f(data)`` or ``f(data, metadata)`` (a parameter named
``metadata``), sync or async.  When its first parameter is annotated with an
attrs class, a dataclass or a TypedDict, its JSON Schema is advertised as the
``request_format`` and the payload is converted (and checked) before the call;
the return annotation likewise gives the ``response_format``.
"""

from __future__ import annotations

import dataclasses
import enum
import inspect
import types
import typing
from collections.abc import Callable
from typing import Any, Literal, Optional, Union, get_args, get_origin

import attrs
import cattrs
from cattrs.errors import BaseValidationError

from iii_protocol._json import is_pydantic_model, pydantic_form

__all__ = [
    "JSON_SCHEMA_DIALECT",
    "HandlerSpec",
    "InvalidInput",
    "derived_format",
    "inspect_handler",
    "json_schema",
    "to_jsonable",
]

_NONE = type(None)


class InvalidInput(Exception):
    """The payload does not fit the handler's declared input type."""


def _strict(kind: type, *, allow_int: bool = False) -> Callable[[object, object], object]:
    def hook(value: object, _: object) -> object:
        ok = isinstance(value, kind) and not (kind is not bool and isinstance(value, bool))
        if not ok and allow_int and isinstance(value, int) and not isinstance(value, bool):
            return float(value)
        if not ok:
            raise ValueError(f"expected {kind.__name__}, got {type(value).__name__}")
        return value

    return hook


# User types, converted strictly: "1" is not 1.
_converter = cattrs.Converter(forbid_extra_keys=False)
_converter.register_structure_hook(str, _strict(str))
_converter.register_structure_hook(int, _strict(int))
_converter.register_structure_hook(bool, _strict(bool))
_converter.register_structure_hook(float, _strict(float, allow_int=True))
# A predicate hook: functools.singledispatch on 3.10 refuses ``typing.Any``.
_converter.register_structure_hook_func(lambda tp: tp is Any, lambda value, _: value)


def _is_struct(tp: object) -> bool:
    return isinstance(tp, type) and (
        attrs.has(tp) or dataclasses.is_dataclass(tp) or typing.is_typeddict(tp)
    )


def _is_pydantic_model(tp: object) -> bool:
    # Duck-typed: the SDK does not import pydantic.
    return isinstance(tp, type) and callable(getattr(tp, "model_json_schema", None))


def to_jsonable(value: object) -> object:
    """attrs/dataclass results become dicts, and so does a pydantic model (its
    ``model_dump(mode="json", by_alias=True, exclude_none=True)``, the object
    the official SDK sends for it); everything else is left as is.

    The SDK's own data models (``_payload_form``) are written as the encoder
    writes them inside payloads, fields that are ``None`` left out.
    """
    if isinstance(value, type):
        return value
    form = getattr(value, "_payload_form", None)
    if form is not None:
        return form()
    if attrs.has(type(value)) or dataclasses.is_dataclass(value):
        return _converter.unstructure(value)
    if is_pydantic_model(value):
        return pydantic_form(value)
    return value


#: The JSON Schema dialect the official SDK names (``$schema``) in the formats it derives.
JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"


def derived_format(tp: object) -> Optional[dict[str, Any]]:
    """The format derived from a type hint, as the official SDK registers it:
    its JSON Schema with ``$schema`` (``None`` when nothing useful is known)."""
    schema = json_schema(tp)
    return None if schema is None else {**schema, "$schema": JSON_SCHEMA_DIALECT}


def json_schema(tp: object) -> Optional[dict[str, Any]]:
    """A JSON Schema for a type annotation, or ``None`` when nothing useful is known
    (a pydantic model's is its ``model_json_schema()``)."""
    if tp is Any or tp is inspect.Parameter.empty or tp is None:
        return None
    if _is_pydantic_model(tp):
        return dict(tp.model_json_schema())  # type: ignore[attr-defined]
    return _schema(tp, depth=0)


def _schema(tp: object, depth: int) -> Optional[dict[str, Any]]:
    if depth > 20:
        return None
    if tp is _NONE:
        return {"type": "null"}
    if tp is bool:
        return {"type": "boolean"}
    if tp is int:
        return {"type": "integer"}
    if tp is float:
        return {"type": "number"}
    if tp is str:
        return {"type": "string"}
    origin = get_origin(tp)
    args = get_args(tp)
    if origin in (Union, types.UnionType):
        parts = [_schema(a, depth + 1) for a in args]
        if any(p is None for p in parts):
            return None
        return {"anyOf": parts}
    if origin is Literal:
        return {"enum": list(args)}
    if origin in (list, tuple, set, frozenset) or tp in (list, tuple):
        item = _schema(args[0], depth + 1) if args and args[0] is not Ellipsis else None
        return {"type": "array", "items": item} if item else {"type": "array"}
    if origin is dict or tp is dict:
        value = _schema(args[1], depth + 1) if len(args) == 2 else None
        return {"type": "object", "additionalProperties": value} if value else {"type": "object"}
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return {"enum": [m.value for m in tp]}
    if _is_struct(tp):
        return _struct_schema(tp, depth)  # type: ignore[arg-type]
    return None


def _struct_schema(tp: type, depth: int) -> dict[str, Any]:
    hints = typing.get_type_hints(tp)
    properties: dict[str, Any] = {}
    required: list[str] = []
    if typing.is_typeddict(tp):
        required_keys: frozenset[str] = getattr(tp, "__required_keys__", frozenset(hints))
        for name, hint in hints.items():
            properties[name] = _schema(hint, depth + 1) or {}
            if name in required_keys:
                required.append(name)
    elif attrs.has(tp):
        for field in attrs.fields(tp):
            properties[field.alias or field.name] = _schema(hints.get(field.name), depth + 1) or {}
            if field.default is attrs.NOTHING:
                required.append(field.alias or field.name)
    else:
        for dfield in dataclasses.fields(tp):
            properties[dfield.name] = _schema(hints.get(dfield.name), depth + 1) or {}
            if (
                dfield.default is dataclasses.MISSING
                and dfield.default_factory is dataclasses.MISSING
            ):
                required.append(dfield.name)
    schema: dict[str, Any] = {"type": "object", "title": tp.__name__, "properties": properties}
    if required:
        schema["required"] = required
    return schema


@attrs.frozen
class HandlerSpec:
    """How to call one handler."""

    fn: Callable[..., Any]
    is_async: bool
    takes_metadata: bool
    input_type: Optional[type]
    request_schema: Optional[dict[str, Any]]
    response_schema: Optional[dict[str, Any]]

    def convert_input(self, data: object) -> object:
        if self.input_type is None:
            return data
        try:
            return _converter.structure(data, self.input_type)
        except (BaseValidationError, ValueError, TypeError, KeyError) as exc:
            detail = (
                "; ".join(cattrs.transform_error(exc, path="input"))
                if isinstance(exc, BaseValidationError)
                else str(exc)
            )
            raise InvalidInput(
                f"input does not match {self.input_type.__name__}: {detail}"
            ) from None


def inspect_handler(fn: Callable[..., Any]) -> HandlerSpec:
    """Read a handler's signature once, at registration."""
    if not callable(fn):
        raise TypeError(f"handler must be callable, got {type(fn).__name__}")
    target = fn
    is_async = inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
        getattr(fn, "__call__", None)  # noqa: B004 - callable objects too
    )
    try:
        signature = inspect.signature(target)
    except (TypeError, ValueError):
        return HandlerSpec(fn, is_async, False, None, None, None)
    params = list(signature.parameters.values())
    takes_metadata = "metadata" in signature.parameters
    try:
        hints = typing.get_type_hints(target)
    except Exception:  # unresolvable annotations: call it untyped
        hints = {}
    first = next((p for p in params if p.name != "metadata"), None)
    input_hint = hints.get(first.name) if first is not None else None
    input_type = input_hint if _is_struct(input_hint) else None
    return HandlerSpec(
        fn=fn,
        is_async=is_async,
        takes_metadata=takes_metadata,
        input_type=input_type,
        request_schema=derived_format(input_hint) if input_hint is not None else None,
        response_schema=derived_format(hints["return"]) if "return" in hints else None,
    )
