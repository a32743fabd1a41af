"""Settings of the queue worker module: named queues (``queue_configs``) and the
per-binding ``queue_config`` of a ``durable:subscriber`` trigger.

``queue_configs`` is the real engine's ``iii-queue`` config block of the same
name: ``{name: {max_retries, concurrency, type, message_group_field,
backoff_ms, poll_interval_ms}}``, checked as the engine checks it (unknown
fields, types, a ``fifo`` queue without ``message_group_field``, a zero
``concurrency``).  The option takes a mapping or its JSON text.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Optional

import attrs

from iii_protocol._json import JSON, JSONObject

from .. import _jsonio as jsonio
from .._checks import option_error

__all__ = [
    "DEFAULT_QUEUE",
    "QueueSettings",
    "SubscriberSettings",
    "queue_configs",
    "resolve_queues",
]

#: The queue every engine has, even with no ``queue_configs``.
DEFAULT_QUEUE = "default"

_U32 = 2**32
_U64 = 2**64
#: field -> (kind, real default); ``None``: taken from the module's options
_FIELDS: dict[str, tuple[str, Any]] = {
    "max_retries": ("u32", None),
    "concurrency": ("u32", 10),
    "type": ("str", "standard"),
    "message_group_field": ("opt_str", None),
    "backoff_ms": ("u64", None),
    "poll_interval_ms": ("u64", 100),
}


@attrs.frozen
class QueueSettings:
    """One named queue, every field resolved."""

    max_retries: int
    concurrency: int
    type: str
    message_group_field: Optional[str]
    backoff_ms: int
    poll_interval_ms: int

    @property
    def fifo(self) -> bool:
        return self.type == "fifo"

    def describe(self) -> JSONObject:
        return {
            "max_retries": self.max_retries,
            "concurrency": self.concurrency,
            "type": self.type,
            "message_group_field": self.message_group_field,
            "backoff_ms": self.backoff_ms,
            "poll_interval_ms": self.poll_interval_ms,
        }


def _number_ok(kind: str, value: object) -> bool:
    if isinstance(value, bool) or not isinstance(value, int):
        return False
    return 0 <= value < (_U32 if kind == "u32" else _U64)


def _check_entry(option: str, queue: str, entry: object) -> JSONObject:
    if not isinstance(entry, Mapping):
        raise option_error(
            option, f"queue {queue!r}: expected a mapping of settings, got {entry!r}", TypeError
        )
    out: JSONObject = {}
    for key, value in entry.items():
        spec = _FIELDS.get(key) if isinstance(key, str) else None
        if spec is None:
            expected = ", ".join(f"`{f}`" for f in _FIELDS)
            raise option_error(
                option, f"queue {queue!r}: unknown field `{key}`, expected one of {expected}"
            )
        kind = spec[0]
        if kind in ("u32", "u64"):
            ok = _number_ok(kind, value)
        elif kind == "str":
            ok = isinstance(value, str)
        else:
            ok = value is None or isinstance(value, str)
        if not ok:
            wanted = {"u32": "a u32", "u64": "a u64", "str": "a string"}.get(kind, "a string")
            raise option_error(
                option, f"queue {queue!r}: `{key}` must be {wanted}, got {value!r}", TypeError
            )
        out[key] = value
    # The engine's own checks (QueueModuleConfig::validate), in its words.
    mode = out.get("type", "standard")
    if mode not in ("standard", "fifo"):
        raise option_error(
            option, f"Queue '{queue}' has invalid type '{mode}'. Must be 'standard' or 'fifo'"
        )
    if mode == "fifo" and out.get("message_group_field") is None:
        raise option_error(
            option, f"Queue '{queue}' is of type 'fifo' but 'message_group_field' is not set"
        )
    if out.get("concurrency") == 0:
        raise option_error(option, f"Queue '{queue}' has 'concurrency' 0; it must be at least 1")
    return out


def queue_configs(name: str, value: Any) -> dict[str, JSONObject]:
    """Check the ``queue_configs`` option: a mapping (or its JSON text) of queue
    name to settings; returns it normalized (the settings that were given)."""
    if isinstance(value, str):
        try:
            value = jsonio.loads(value)
        except ValueError as exc:
            raise option_error(name, f"expected a JSON object: {exc}") from None
    if not isinstance(value, Mapping):
        raise option_error(
            name, f"expected a mapping of queue name to its settings, got {value!r}", TypeError
        )
    out: dict[str, JSONObject] = {}
    for queue, entry in value.items():
        if not isinstance(queue, str):
            raise option_error(name, f"queue names are strings, got {queue!r}", TypeError)
        out[queue] = _check_entry(name, queue, entry)
    return out


def resolve_queues(
    configs: Mapping[str, JSONObject], max_attempts: int, backoff_ms: int
) -> dict[str, QueueSettings]:
    """Every named queue with its settings: the configured ones, and ``default``
    unless configured (``max_retries``/``backoff_ms`` not set: the given defaults)."""
    entries = dict(configs)
    entries.setdefault(DEFAULT_QUEUE, {})
    out: dict[str, QueueSettings] = {}
    for queue, entry in entries.items():
        fields: dict[str, Any] = {}
        for key, (_, default) in _FIELDS.items():
            if key in entry:
                fields[key] = entry[key]
            elif key == "max_retries":
                fields[key] = max_attempts
            elif key == "backoff_ms":
                fields[key] = backoff_ms
            else:
                fields[key] = default
        out[queue] = QueueSettings(**fields)
    return out


def _u64(config: Mapping[str, JSON], key: str) -> Optional[int]:
    value = config.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < _U64:
        return None
    return value


@attrs.frozen
class SubscriberSettings:
    """A ``durable:subscriber`` binding's ``config.queue_config`` (each key read
    leniently, as the engine does: a value of the wrong type is ignored)."""

    fifo: bool = False
    #: retries after the first attempt (None: the module's default attempts)
    max_retries: Optional[int] = None
    #: None: the module's ``concurrency`` default (10)
    concurrency: Optional[int] = None
    backoff_ms: Optional[int] = None

    @classmethod
    def from_config(cls, value: JSON) -> SubscriberSettings:
        if not isinstance(value, dict):
            return cls()
        mode = value.get("type")
        retries = _u64(value, "maxRetries")
        concurrency = _u64(value, "concurrency")
        return cls(
            fifo=mode == "fifo",
            max_retries=None if retries is None else retries % _U32,
            concurrency=None if concurrency is None else concurrency % _U32,
            backoff_ms=_u64(value, "backoffDelayMs"),
        )

    def capacity(self, default: int) -> int:
        """Jobs this subscription runs at once (a fifo one: 1, retried inline)."""
        if self.fifo:
            return 1
        return default if self.concurrency is None else self.concurrency
