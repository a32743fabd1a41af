"""The base of the SDK's data models (stream, state, HTTP, RBAC hook shapes...).

Each model is an attrs class that also reads like the JSON object it stands
for: ``value["stream_name"]``, ``value.get("group_id")``, ``"id" in value``
and ``Model(**value)`` work, as they do on the plain dicts the engine sends.
Code written against raw payloads and code written against typed values both
run; ``model_dump()`` / ``model_validate()`` answer as pydantic's do.

Inside a payload (``trigger``, a handler's result, a trigger config) a model
is written as its JSON object, fields that are ``None`` left out.
"""

from __future__ import annotations

import collections.abc as collections_abc
import enum
import types
import typing
from collections.abc import Collection, Iterator, Mapping
from typing import Any, ClassVar, Optional, TypeVar, Union

import attrs

__all__ = ["Model", "payload_form"]

M = TypeVar("M", bound="Model")


class Model:
    """Mapping-style read access and the payload form, for attrs models.

    ``_WIRE_NAMES`` maps a field to its key in JSON when the two differ.
    """

    __slots__ = ()

    _WIRE_NAMES: ClassVar[dict[str, str]] = {}

    @classmethod
    def _fields(cls) -> tuple[tuple[str, str], ...]:
        cached: tuple[tuple[str, str], ...] | None = cls.__dict__.get("_field_keys")
        if cached is None:
            cached = tuple(
                (f.name, cls._WIRE_NAMES.get(f.name, f.name))
                for f in attrs.fields(cls)  # type: ignore[arg-type]  # subclasses are attrs
            )
            cls._field_keys = cached  # type: ignore[attr-defined]
        return cached

    def keys(self) -> list[str]:
        return [key for _, key in self._fields()]

    def values(self) -> list[Any]:
        return [getattr(self, name) for name, _ in self._fields()]

    def items(self) -> list[tuple[str, Any]]:
        return [(key, getattr(self, name)) for name, key in self._fields()]

    def __getitem__(self, key: str) -> Any:
        for name, wire in self._fields():
            if wire == key:
                return getattr(self, name)
        raise KeyError(key)

    def get(self, key: str, default: Any = None) -> Any:
        try:
            return self[key]
        except KeyError:
            return default

    def __contains__(self, key: object) -> bool:
        return any(wire == key for _, wire in self._fields())

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys())

    def __len__(self) -> int:
        return len(self._fields())

    def _payload_form(self) -> dict[str, Any]:
        return payload_form(self)

    def model_dump(
        self,
        *,
        mode: str = "python",
        by_alias: bool = False,
        exclude_none: bool = False,
        include: Optional[Collection[str]] = None,
        exclude: Optional[Collection[str]] = None,
    ) -> dict[str, Any]:
        """The value as a dict, nested models too (``by_alias``: the JSON keys;
        ``mode="json"``: enums as their values)."""
        if mode not in ("python", "json"):
            raise ValueError(f"mode must be 'python' or 'json', got {mode!r}")
        out: dict[str, Any] = {}
        for name, wire in self._fields():
            if (include is not None and name not in include) or (exclude and name in exclude):
                continue
            value = getattr(self, name)
            if value is None and exclude_none:
                continue
            out[wire if by_alias else name] = _dump(value, mode, by_alias, exclude_none)
        return out

    @classmethod
    def model_validate(cls: type[M], obj: Any) -> M:
        """``obj`` (a dict with the fields, or already a ``cls``) as a ``cls``."""
        if isinstance(obj, cls):
            return obj
        if not isinstance(obj, Mapping):
            kind = type(obj).__name__
            raise TypeError(f"{cls.__name__}.model_validate takes a mapping, got {kind}")
        # Unknown keys are ignored, as pydantic does by default; a nested
        # model (alone, optional, in a list or a dict) is built from its dict.
        names = {wire: name for name, wire in cls._fields()}
        hints = _hints(cls)
        fields: dict[str, Any] = {
            names[k]: _validate(hints.get(names[k], Any), v) for k, v in obj.items() if k in names
        }
        return cls(**fields)


def _hints(cls: type[Model]) -> dict[str, Any]:
    cached: dict[str, Any] | None = cls.__dict__.get("_field_hints")
    if cached is None:
        try:
            cached = typing.get_type_hints(cls)
        except (NameError, TypeError):  # an annotation that cannot be resolved
            cached = {}
        cls._field_hints = cached  # type: ignore[attr-defined]
    return cached


def _validate(hint: Any, value: Any) -> Any:
    """``value`` with the models ``hint`` names built from their dicts."""
    if isinstance(hint, type) and issubclass(hint, Model):
        return hint.model_validate(value) if isinstance(value, Mapping) else value
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return value if isinstance(value, hint) else hint(value)
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin is Union or origin is types.UnionType:
        if value is None:
            return None
        options = [a for a in args if a is not type(None)]
        if len(options) == 1:  # Optional[X]
            return _validate(options[0], value)
        models = [a for a in options if isinstance(a, type) and issubclass(a, Model)]
        return _validate_union(models, value) if isinstance(value, Mapping) else value
    if origin in (list, collections_abc.Sequence) and args and isinstance(value, list):
        return [_validate(args[0], item) for item in value]
    if origin in (dict, collections_abc.Mapping) and len(args) == 2 and isinstance(value, dict):
        return {key: _validate(args[1], item) for key, item in value.items()}
    return value


def _validate_union(models: list[type[Model]], value: Mapping[str, Any]) -> Any:
    """The model a ``type`` key names (the update operations), else the first
    that takes the dict."""
    kind = value.get("type")
    for model in models:
        field = attrs.fields_dict(model).get("type")  # type: ignore[arg-type]
        if kind is not None and field is not None and field.default == kind:
            return model.model_validate(value)
    for model in models:
        try:
            return model.model_validate(value)
        except (TypeError, ValueError):
            continue
    return value


def _dump(value: Any, mode: str, by_alias: bool, exclude_none: bool) -> Any:
    if isinstance(value, Model):
        return value.model_dump(mode=mode, by_alias=by_alias, exclude_none=exclude_none)
    if isinstance(value, dict):
        return {k: _dump(v, mode, by_alias, exclude_none) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_dump(v, mode, by_alias, exclude_none) for v in value)
    if mode == "json":
        if isinstance(value, enum.Enum):
            return value.value
        form = getattr(value, "_payload_form", None)
        if form is not None and not isinstance(value, type):
            return _dump(form(), mode, by_alias, exclude_none)
    return value


def payload_form(value: Any) -> dict[str, Any]:
    """The JSON object of an attrs model: wire keys, ``None`` fields left out.

    Nested values are left to the encoder, which calls back for nested models.
    """
    wire: dict[str, str] = getattr(type(value), "_WIRE_NAMES", {})
    out: dict[str, Any] = {}
    for field in attrs.fields(type(value)):
        item = getattr(value, field.name)
        if item is not None:
            out[wire.get(field.name, field.name)] = item
    return out
