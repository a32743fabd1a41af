"""The reference engine's options: one table, checked before anything starts.

``serve_engine``, ``EngineThread``, the pytest fixtures and ``python -m
iii.testing`` take the same keyword options: the listener's (``host``,
``port``, ``rbac``, ...), the core's (``namespace_grace``, ``lenient_frames``,
``clock``, ``workers``, ...) and each worker module's (its switch, e.g.
``queue=False``, and its ``config_class`` fields under its ``option_prefix``,
e.g. ``queue_max_attempts``).  They are checked here, in the caller's thread:
a typo or a wrong type is a ``TypeError``/``ValueError`` naming the option,
never an engine that "failed to start" with the reason buried.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from typing import Any, Optional

import attrs

from ._api import EngineWorker
from ._checks import (
    Check,
    anything,
    boolean,
    integer,
    option_error,
    optional,
    seconds,
    text,
)
from ._clock import Clock, ManualClock, SystemClock
from ._rbac import as_rbac
from ._workers import STANDARD_WORKERS

__all__ = [
    "EngineOptions",
    "ModuleOption",
    "check_option",
    "check_options",
    "known_options",
    "module_options",
]

#: Options of the listeners and the transcript (``Engine``).
LISTENER_OPTIONS: dict[str, Check] = {
    "host": text,
    "port": integer(0, 65535),
    "rbac": anything,  # checked by ``as_rbac`` in ``check_options``
    "rbac_port": integer(0, 65535),
    "transcript": boolean,
    "transcript_limit": optional(integer(1)),
    "max_message_size": integer(1),
    "max_frame_size": integer(1),
    "handshake_timeout": seconds(positive=True),
}


def _clock(name: str, value: Any) -> Any:
    """A ``Clock``, or ``"manual"`` (a new ``ManualClock``) / ``"system"``."""
    if value is None:
        return None
    if value == "manual":
        return ManualClock()
    if value == "system":
        return SystemClock()
    missing = [m for m in ("time", "monotonic", "sleep", "sleep_until") if not hasattr(value, m)]
    if missing:
        raise option_error(name, f"expected a Clock (missing {', '.join(missing)})", TypeError)
    return value


def _workers(name: str, value: Any) -> tuple[type[EngineWorker], ...]:
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        raise option_error(name, f"expected EngineWorker subclasses, got {value!r}", TypeError)
    out: list[type[EngineWorker]] = []
    taken = {m.name for m in STANDARD_WORKERS}
    for item in value:
        if not isinstance(item, type) or not issubclass(item, EngineWorker):
            raise option_error(name, f"{item!r} is not an EngineWorker subclass", TypeError)
        if not item.name or item.name in taken:
            raise option_error(name, f"{item.__name__}.name {item.name!r} is empty or taken")
        taken.add(item.name)
        out.append(item)
    return tuple(out)


#: Options of the core (``EngineOptions``), besides the modules' ones.
CORE_OPTIONS: dict[str, Check] = {
    "namespace_grace": optional(seconds(positive=False)),
    "trigger_ack_timeout": seconds(positive=True),
    "lenient_frames": boolean,
    "clock": _clock,
    "workers": _workers,
}


@attrs.frozen
class ModuleOption:
    """One option a worker module contributes: its switch (``field is None``)
    or a field of its ``config_class``."""

    name: str
    module: type[EngineWorker]
    field: Optional[str]
    check: Check
    default: Any
    help: str


def module_options(modules: Iterable[type[EngineWorker]]) -> dict[str, ModuleOption]:
    """The options of ``modules``, by engine option name."""
    out: dict[str, ModuleOption] = {}
    for module in modules:
        if module.switch is not None:
            out[module.switch] = ModuleOption(
                module.switch, module, None, boolean, True, f"the {module.name} worker module"
            )
        for field in attrs.fields(module.config_class):
            name = module.option_prefix + field.name
            out[name] = ModuleOption(
                name,
                module,
                field.name,
                field.metadata.get("check", anything),
                field.default,
                field.metadata.get("help", ""),
            )
    return out


def _table(extra: tuple[type[EngineWorker], ...]) -> dict[str, Check]:
    table = dict(LISTENER_OPTIONS)
    table.update(CORE_OPTIONS)
    table.update((n, o.check) for n, o in module_options(STANDARD_WORKERS + extra).items())
    return table


def known_options(extra: tuple[type[EngineWorker], ...] = ()) -> list[str]:
    return sorted(_table(extra))


def check_option(name: str, value: Any, extra: tuple[type[EngineWorker], ...] = ()) -> Any:
    check = _table(extra).get(name)
    if check is None:
        raise TypeError(
            f"unknown reference engine option {name!r}; the options are: "
            + ", ".join(known_options(extra))
        )
    return check(name, value)


def check_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """Check ``serve_engine`` keyword options; returns them normalized.

    Raises:
        TypeError: an unknown option, or a value of the wrong type.
        ValueError: a value out of range (``rbac``: a malformed config).
    """
    extra: tuple[type[EngineWorker], ...] = ()
    if options.get("workers") is not None:
        extra = _workers("workers", options["workers"])
    out = {name: check_option(name, value, extra) for name, value in options.items()}
    rbac = out.get("rbac")
    if rbac is not None:
        try:
            out["rbac"] = as_rbac(rbac)
        except (TypeError, ValueError) as exc:
            raise option_error("rbac", str(exc), type(exc)) from None
    return out


class EngineOptions:
    """The engine core's options and its worker modules' configurations.

    Keyword arguments: ``namespace_grace`` (seconds; default
    ``$III_NAMESPACE_GRACE_MS`` or 5), ``trigger_ack_timeout``,
    ``lenient_frames``, ``clock`` (a ``Clock``, or ``"manual"`` for a new
    ``ManualClock``; default ``SystemClock()``), ``workers``
    (extra ``EngineWorker`` classes), and every module option (``queue``,
    ``queue_max_attempts``, ``channel_ttl``, ``functions_poll_interval``, ...).

    ``lenient_frames``: read a missing ``invokefunction.data`` or
    ``registertrigger.config`` as ``null``.  The real engine requires both and
    drops such a frame (the caller of a dropped call times out); so does this
    one by default, and says so in its log and transcript.  The official Python
    SDKs omit them for a None payload / no config: set this to run them anyway.
    """

    __slots__ = (
        "clock",
        "configs",
        "lenient_frames",
        "modules",
        "namespace_grace",
        "trigger_ack_timeout",
    )

    def __init__(
        self,
        *,
        namespace_grace: Optional[float] = None,
        trigger_ack_timeout: float = 10.0,
        lenient_frames: bool = False,
        clock: Optional[Clock] = None,
        workers: Iterable[type[EngineWorker]] = (),
        **module_settings: Any,
    ) -> None:
        if namespace_grace is None:
            env = os.environ.get("III_NAMESPACE_GRACE_MS")
            namespace_grace = int(env) / 1000 if env and env.strip().isdigit() else 5.0
        extra = _workers("workers", workers)
        self.namespace_grace: float = check_option("namespace_grace", namespace_grace)
        self.trigger_ack_timeout: float = check_option("trigger_ack_timeout", trigger_ack_timeout)
        self.lenient_frames: bool = check_option("lenient_frames", lenient_frames)
        self.clock: Clock = _clock("clock", clock) or SystemClock()
        #: every module class this engine runs (switched-off ones included)
        self.modules: tuple[type[EngineWorker], ...] = STANDARD_WORKERS + extra
        table = module_options(self.modules)
        enabled: dict[str, bool] = {m.name: True for m in self.modules}
        fields: dict[str, dict[str, Any]] = {m.name: {} for m in self.modules}
        for name, value in module_settings.items():
            option = table.get(name)
            if option is None:
                check_option(name, value, extra)  # raises: unknown, or not a module option
                raise TypeError(f"{name!r} is not an EngineOptions option")
            checked = option.check(name, value)
            if option.field is None:
                enabled[option.module.name] = checked
            else:
                fields[option.module.name][option.field] = checked
        #: module name -> its config (None: switched off)
        self.configs: dict[str, Any] = {
            m.name: m.config_class(**fields[m.name]) if enabled[m.name] else None
            for m in self.modules
        }

    def enabled(self, name: str) -> bool:
        """Whether the worker module ``name`` runs."""
        return self.configs.get(name) is not None

    @property
    def queue(self) -> bool:
        return self.enabled("queue")
