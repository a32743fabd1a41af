"""JSON Schemas from type hints: what ``register_function`` advertises as a
function's ``request_format`` / ``response_format`` when none is given.

attrs classes, dataclasses, TypedDicts, enums, literals, containers and
scalars are described; a pydantic model by its own ``model_json_schema()``.
"""

from __future__ import annotations

import inspect
import typing
from typing import Any, Optional

from ._handlers import derived_format

__all__ = ["extract_request_format", "extract_response_format", "python_type_to_format"]


def python_type_to_format(annotation: Any) -> Optional[dict[str, Any]]:
    """The JSON Schema (with ``$schema``) of a type annotation, or ``None`` when
    the annotation says nothing useful (``Any``, missing, unknown classes)."""
    return derived_format(annotation)


def _hints(func: Any) -> Optional[dict[str, Any]]:
    if not callable(func):
        return None
    try:
        return typing.get_type_hints(func)
    except Exception:  # unresolvable annotations: nothing to say
        return None


def extract_request_format(func: Any) -> Optional[dict[str, Any]]:
    """The schema of ``func``'s first parameter, from its type hint (or ``None``)."""
    hints = _hints(func)
    if hints is None:
        return None
    try:
        params = list(inspect.signature(func).parameters.values())
    except (TypeError, ValueError):
        return None
    first = next((p for p in params if p.name != "metadata"), None)
    if first is None or first.name not in hints:
        return None
    return python_type_to_format(hints[first.name])


def extract_response_format(func: Any) -> Optional[dict[str, Any]]:
    """The schema of ``func``'s return type hint (or ``None``)."""
    hints = _hints(func)
    if hints is None or "return" not in hints:
        return None
    return python_type_to_format(hints["return"])
