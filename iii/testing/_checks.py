"""Checks for the reference engine's options, and ``setting`` to declare one.

Each check is ``check(name, value) -> value`` (normalized) and raises a
``TypeError`` (wrong type) or ``ValueError`` (out of range) whose message names
the option.  A worker module declares its options as attrs fields made with
``setting`` (see ``iii.testing._api.EngineWorker``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Optional

import attrs

__all__ = [
    "Check",
    "anything",
    "boolean",
    "choice",
    "integer",
    "option_error",
    "optional",
    "seconds",
    "setting",
    "text",
]

#: ``check(name, value) -> value`` (normalized) or raise TypeError/ValueError.
Check = Callable[[str, Any], Any]


def option_error(name: str, problem: str, exc_type: type[Exception] = ValueError) -> Exception:
    return exc_type(f"reference engine option {name!r}: {problem}")


def boolean(name: str, value: Any) -> bool:
    if type(value) is not bool:
        raise option_error(name, f"expected True or False, got {value!r}", TypeError)
    return value


def _real(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise option_error(name, f"expected a number, got {value!r}", TypeError)
    if not math.isfinite(value):
        raise option_error(name, f"expected a finite number, got {value!r}")
    return float(value)


def seconds(*, positive: bool) -> Check:
    """A duration in seconds: > 0 (``positive``) or >= 0."""

    def check(name: str, value: Any) -> float:
        number = _real(name, value)
        if number < 0 or (positive and number == 0):
            bound = "greater than 0" if positive else "0 or more"
            raise option_error(name, f"expected {bound} seconds, got {value!r}")
        return number

    return check


def integer(low: int, high: Optional[int] = None) -> Check:
    def check(name: str, value: Any) -> int:
        if type(value) is not int:
            raise option_error(name, f"expected an int, got {value!r}", TypeError)
        if value < low or (high is not None and value > high):
            span = f"from {low} to {high}" if high is not None else f"{low} or more"
            raise option_error(name, f"expected an int {span}, got {value!r}")
        return value

    return check


def text(name: str, value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise option_error(name, f"expected a non-empty string, got {value!r}", TypeError)
    return value


def optional(check: Check) -> Check:
    def check_optional(name: str, value: Any) -> Any:
        return None if value is None else check(name, value)

    return check_optional


def choice(*allowed: str) -> Check:
    def check(name: str, value: Any) -> str:
        if value not in allowed:
            raise option_error(
                name, f"expected one of {', '.join(map(repr, allowed))}, got {value!r}"
            )
        return str(value)

    return check


def anything(name: str, value: Any) -> Any:
    return value


def setting(default: Any, check: Check, help: str) -> Any:
    """An option of a worker module: an attrs field with its check and help.

    The field ``max_attempts`` of a module whose ``option_prefix`` is ``queue_``
    is the engine option ``queue_max_attempts`` (CLI ``--queue-max-attempts``).
    """
    return attrs.field(default=default, metadata={"check": check, "help": help})
