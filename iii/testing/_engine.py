"""Former home of the engine core, kept so that existing imports keep working.

The core is ``iii.testing._core.EngineCore``; its records are in ``_records``,
its options in ``_options``, the result rules in ``_controls``.
"""

from __future__ import annotations

from ._controls import ResultRule
from ._core import EngineCore
from ._options import EngineOptions
from ._records import (
    DEFAULT,
    MAX_JSON_DEPTH,
    Binding,
    Builtin,
    BuiltinError,
    Call,
    FunctionEntry,
    Pending,
    Transport,
    TriggerTypeEntry,
    Worker,
    canonical_uuid,
    error_body,
    json_too_deep,
    new_id,
)

__all__ = [
    "DEFAULT",
    "MAX_JSON_DEPTH",
    "Binding",
    "Builtin",
    "BuiltinError",
    "Call",
    "EngineCore",
    "EngineOptions",
    "FunctionEntry",
    "Pending",
    "ResultRule",
    "Transport",
    "TriggerTypeEntry",
    "Worker",
    "canonical_uuid",
    "error_body",
    "json_too_deep",
    "new_id",
]
