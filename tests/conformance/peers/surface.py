"""Describe the public surface of an installed iii SDK as JSON, for comparison.

Run with the interpreter of the SDK to describe (a peer venv for an official
release, the project's own for ours)::

    python surface.py iii iii.helpers iii.types ... iii.iii_constants+OtelConfig

Prints one JSON object: ``{module: {"error": str} | {"names": {name: entry}}}``.

A module's public names are its ``__all__`` when it has one, else the names its
own source defines at top level (classes, functions, assignments), without
underscores, type variables, ``TYPE_CHECKING`` and loggers; re-imports are not
part of a module's surface.  Each entry says what a caller can rely on:

* ``kind``: ``class``, ``exception``, ``function``, ``coroutine``, ``module``
  or ``value`` (constants, aliases, enums' members are listed under ``members``);
* ``params``: ``[[name, kind, has_default], ...]`` of the callable (a class:
  its constructor), or ``null`` when it has no inspectable signature;
* ``methods``: ``{name: {"params": ..., "async": bool}}`` for the public
  methods a class defines in the SDK's own modules (inherited framework
  methods, e.g. pydantic's, are not the SDK's surface);
* ``attributes``: field and property names of a class; ``members``: every
  public name ``dir()`` shows on it;
* ``bases``: an exception's SDK and builtin base classes (for ``except``);
* ``pydantic``: whether a class is a pydantic model.

Only the standard library is used, so this runs in any venv.
"""

from __future__ import annotations

import ast
import dataclasses
import enum
import importlib
import inspect
import json
import logging
import sys
import types
import typing
from typing import Any, Optional

SDK_PACKAGES = ("iii", "iii_helpers", "iii_observability")


def _own(obj: Any) -> bool:
    module = getattr(obj, "__module__", None) or ""
    return module.split(".")[0] in SDK_PACKAGES


def _params(fn: Any) -> Optional[list[list[Any]]]:
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return None
    return [
        [p.name, p.kind.name, p.default is not inspect.Parameter.empty]
        for p in sig.parameters.values()
    ]


def _attributes(cls: type) -> list[str]:
    names: set[str] = set()
    fields = getattr(cls, "model_fields", None)  # pydantic
    if isinstance(fields, dict):
        names.update(fields)
    if dataclasses.is_dataclass(cls):
        names.update(f.name for f in dataclasses.fields(cls))
    attrs_fields = getattr(cls, "__attrs_attrs__", None)
    if attrs_fields is not None:
        names.update(a.name for a in attrs_fields)
    for klass in cls.__mro__:
        if not _own(klass):
            continue
        for key, value in vars(klass).items():
            if isinstance(value, property) and not key.startswith("_"):
                names.add(key)
    return sorted(n for n in names if not n.startswith("_"))


def _methods(cls: type) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for klass in reversed(cls.__mro__):
        if not _own(klass):
            continue
        for key, value in vars(klass).items():
            if key.startswith("_") and key not in (
                "__aiter__",
                "__iter__",
                "__enter__",
                "__aenter__",
                "__getitem__",
                "__contains__",
                "__eq__",
            ):
                continue
            if isinstance(value, (staticmethod, classmethod)):
                fn = value.__func__
                bound = getattr(cls, key)
            elif inspect.isfunction(value):
                fn = value
                bound = value
            else:
                continue
            out[key] = {
                "params": _params(bound),
                "async": inspect.iscoroutinefunction(fn) or inspect.isasyncgenfunction(fn),
            }
    return out


def describe(obj: Any) -> dict[str, Any]:
    if obj is typing.Any:  # a class from 3.11 on, an object before: one kind on every Python
        return {"kind": "value", "type": "Any"}
    if isinstance(obj, types.ModuleType):
        return {"kind": "module"}
    if isinstance(obj, type) and issubclass(obj, BaseException):
        return {
            "kind": "exception",
            "params": _params(obj),
            "attributes": _attributes(obj),
            "bases": sorted(
                k.__name__ for k in obj.__mro__[1:] if k.__module__ == "builtins" or _own(k)
            ),
        }
    if isinstance(obj, type) and issubclass(obj, enum.Enum):
        return {"kind": "enum", "members": sorted(m.name for m in obj)}
    if isinstance(obj, type):
        return {
            "kind": "class",
            "params": _params(obj),
            "attributes": _attributes(obj),
            "methods": _methods(obj),
            "members": sorted(n for n in dir(obj) if not n.startswith("_")),
            # A pydantic model also has BaseModel's API (model_dump, ...).
            "pydantic": isinstance(getattr(obj, "model_fields", None), dict),
        }
    if inspect.iscoroutinefunction(obj):
        return {"kind": "coroutine", "params": _params(obj)}
    if inspect.isfunction(obj) or inspect.isbuiltin(obj):
        return {"kind": "function", "params": _params(obj)}
    if callable(obj) and not isinstance(obj, typing.TypeVar) and _own(type(obj)):
        return {"kind": "function", "params": _params(obj)}
    return {"kind": "value", "type": type(obj).__name__}


def _defined_names(module: types.ModuleType) -> list[str]:
    try:
        source = inspect.getsource(module)
    except (OSError, TypeError):
        return sorted(k for k in vars(module) if not k.startswith("_"))
    names: list[str] = []
    for node in ast.parse(source).body:
        if isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            names.append(node.name)
        elif isinstance(node, ast.Assign):
            names.extend(t.id for t in node.targets if isinstance(t, ast.Name))
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.append(node.target.id)
    out = []
    for name in names:
        if name.startswith("_") or name == "TYPE_CHECKING" or name not in vars(module):
            continue
        value = vars(module)[name]
        if isinstance(value, (typing.TypeVar, logging.Logger)):
            continue
        out.append(name)
    return sorted(set(out))


def surface(module_args: list[str]) -> dict[str, Any]:
    """``module_args``: module names, each optionally ``+Name,Name`` (re-exports to add)."""
    out: dict[str, Any] = {}
    for arg in module_args:
        name, _, extra = arg.partition("+")
        try:
            module = importlib.import_module(name)
        except Exception as exc:  # a module this SDK does not have
            out[name] = {"error": f"{type(exc).__name__}: {exc}"}
            continue
        public = getattr(module, "__all__", None)
        names = sorted(public) if public is not None else _defined_names(module)
        names = sorted(set(names) | {n for n in extra.split(",") if n})
        entries: dict[str, Any] = {}
        for attr in names:
            if not hasattr(module, attr):
                entries[attr] = {"kind": "missing"}
                continue
            entries[attr] = describe(getattr(module, attr))
        out[name] = {"names": entries}
    return out


if __name__ == "__main__":
    import warnings

    warnings.simplefilter("ignore")  # deprecation notices of the SDK being described
    json.dump(surface(sys.argv[1:]), sys.stdout, indent=1, sort_keys=True)
    sys.stdout.write("\n")
