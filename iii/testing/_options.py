"""Checking the reference engine's options: every bad one is named.

``serve_engine``, ``EngineThread``, the pytest fixtures and ``python -m
iii.testing`` all take the same keyword options.  They are checked here, in the
caller's thread and before anything starts, so a typo or a wrong type is a
``TypeError``/``ValueError`` that names the option, never an engine that
"failed to start" with the reason buried.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any, Optional

from ._rbac import as_rbac

__all__ = [
    "Check",
    "check_option",
    "check_options",
    "known_options",
    "option_error",
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


#: Every keyword option of ``serve_engine`` (``EngineThread`` adds its own two).
#: Options whose value is checked where it is used (``rbac``: ``RbacConfig``)
#: are only named here.
_OPTIONS: dict[str, Check] = {
    "host": text,
    "port": integer(0, 65535),
    "rbac": anything,
    "rbac_port": integer(0, 65535),
    "transcript": boolean,
    "transcript_limit": optional(integer(1)),
    "max_message_size": integer(1),
    "max_frame_size": integer(1),
    "handshake_timeout": seconds(positive=True),
    "namespace_grace": optional(seconds(positive=False)),
    "queue": boolean,
    "queue_max_attempts": integer(1),
    "queue_backoff": seconds(positive=False),
    "trigger_ack_timeout": seconds(positive=True),
    "functions_poll_interval": seconds(positive=True),
    "channel_ttl": seconds(positive=True),
    "channel_sweep_interval": seconds(positive=True),
    "lenient_frames": boolean,
}


def known_options() -> list[str]:
    return sorted(_OPTIONS)


def check_option(name: str, value: Any) -> Any:
    check = _OPTIONS.get(name)
    if check is None:
        raise TypeError(
            f"unknown reference engine option {name!r}; the options are: "
            + ", ".join(known_options())
        )
    return check(name, value)


def check_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """Check ``serve_engine`` keyword options; returns them normalized.

    Raises:
        TypeError: an unknown option, or a value of the wrong type.
        ValueError: a value out of range (``rbac``: a malformed config).
    """
    out = {name: check_option(name, value) for name, value in options.items()}
    rbac = out.get("rbac")
    if rbac is not None:
        try:
            out["rbac"] = as_rbac(rbac)
        except (TypeError, ValueError) as exc:
            raise option_error("rbac", str(exc), type(exc)) from None
    return out
