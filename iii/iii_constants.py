"""Constants of the public API, and the option types under their usual import path."""

from __future__ import annotations

from collections.abc import Callable
from typing import Final, Literal

from iii_protocol import DEFAULT_ENGINE_URL, RegisterFunctionFormat

from .iii_types import (
    FunctionRef,
    InitOptions,
    MessageType,
    OtelConfig,
    ReconnectionConfig,
    TelemetryOptions,
)

__all__ = [
    "DEFAULT_ENGINE_URL",
    "DEFAULT_INVOCATION_TIMEOUT_MS",
    "DEFAULT_RECONNECTION_CONFIG",
    "MAX_QUEUE_SIZE",
    "ConnectionStateCallback",
    "EngineFunctions",
    "EngineTriggers",
    "FunctionRef",
    "IIIConnectionState",
    "InitOptions",
    "MessageType",
    "OtelConfig",
    "ReconnectionConfig",
    "RegisterFunctionFormat",
    "TelemetryOptions",
]

#: The states of a worker's connection (``III.get_connection_state()``).
IIIConnectionState = Literal["disconnected", "connecting", "connected", "reconnecting", "failed"]

#: A connection-state listener (``III.add_connection_state_listener``).
ConnectionStateCallback = Callable[[IIIConnectionState], None]

#: ``InitOptions.invocation_timeout_ms`` when not set.
DEFAULT_INVOCATION_TIMEOUT_MS: Final = 30000

#: ``InitOptions.reconnection_config`` when not set.
DEFAULT_RECONNECTION_CONFIG: Final = ReconnectionConfig()

#: Calls made while disconnected that are held for the next connection; past
#: this, a call fails at once with ``QUEUE_FULL`` (nothing is dropped silently).
MAX_QUEUE_SIZE: Final = 1000


class EngineFunctions:
    """Ids of the engine's built-in functions."""

    LIST_FUNCTIONS: Final = "engine::functions::list"
    INFO_FUNCTIONS: Final = "engine::functions::info"
    LIST_WORKERS: Final = "engine::workers::list"
    INFO_WORKERS: Final = "engine::workers::info"
    LIST_TRIGGERS: Final = "engine::triggers::list"
    INFO_TRIGGERS: Final = "engine::triggers::info"
    LIST_REGISTERED_TRIGGERS: Final = "engine::registered-triggers::list"
    INFO_REGISTERED_TRIGGERS: Final = "engine::registered-triggers::info"
    REGISTER_WORKER: Final = "engine::workers::register"


class EngineTriggers:
    """Ids of the engine's built-in trigger types."""

    FUNCTIONS_AVAILABLE: Final = "engine::functions-available"
    WORKERS_AVAILABLE: Final = "engine::workers-available"
    LOG: Final = "log"
