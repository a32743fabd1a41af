"""iii: the Python SDK for the iii engine.

``register_worker(url)`` connects a worker on a background thread;
``async with register_worker_async(url) as worker`` runs one on the current
asyncio or trio loop.  Both return an ``III``.

Names are loaded on first use, so ``import iii`` costs almost nothing until
a worker is actually made.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._version import __version__

if TYPE_CHECKING:
    from iii_protocol import RegisterFunctionFormat, StreamChannelRef

    from ._client import III, TriggerHandler, TriggerTypeRef, register_worker, register_worker_async
    from .channels import (
        Channel,
        ChannelError,
        ChannelReader,
        ChannelWriter,
        create_channel,
        create_channel_async,
    )
    from .errors import (
        ConnectError,
        ConnectionClosed,
        ConnectionFailed,
        IIIError,
        IIIInvocationError,
        IIIUsageError,
        RegistrationRejectedError,
        WorkerShutdownError,
    )
    from .iii_constants import IIIConnectionState, MessageType
    from .iii_types import (
        EnqueueResult,
        FunctionInfo,
        FunctionRef,
        HttpAuthApiKey,
        HttpAuthBearer,
        HttpAuthConfig,
        HttpAuthHmac,
        HttpInvocationConfig,
        InitOptions,
        OtelConfig,
        ReconnectionConfig,
        RegisterTriggerInput,
        RegisterTriggerTypeInput,
        TelemetryOptions,
        Trigger,
        TriggerAction,
        TriggerActionEnqueue,
        TriggerActionVoid,
        TriggerConfig,
        TriggerInfo,
        TriggerRequest,
    )

_WHERE = {
    "Channel": ".channels",
    "ChannelError": ".channels",
    "ChannelReader": ".channels",
    "ChannelWriter": ".channels",
    "ConnectError": ".errors",
    "ConnectionClosed": ".errors",
    "ConnectionFailed": ".errors",
    "EnqueueResult": ".iii_types",
    "FunctionInfo": ".iii_types",
    "FunctionRef": ".iii_types",
    "HttpAuthApiKey": ".iii_types",
    "HttpAuthBearer": ".iii_types",
    "HttpAuthConfig": ".iii_types",
    "HttpAuthHmac": ".iii_types",
    "HttpInvocationConfig": ".iii_types",
    "III": "._client",
    "IIIConnectionState": ".iii_constants",
    "IIIError": ".errors",
    "IIIInvocationError": ".errors",
    "IIIUsageError": ".errors",
    "InitOptions": ".iii_types",
    "MessageType": ".iii_constants",
    "OtelConfig": ".iii_types",
    "ReconnectionConfig": ".iii_types",
    "RegisterFunctionFormat": "iii_protocol",
    "RegisterTriggerInput": ".iii_types",
    "RegisterTriggerTypeInput": ".iii_types",
    "RegistrationRejectedError": ".errors",
    "StreamChannelRef": "iii_protocol",
    "TelemetryOptions": ".iii_types",
    "Trigger": ".iii_types",
    "TriggerAction": ".iii_types",
    "TriggerActionEnqueue": ".iii_types",
    "TriggerActionVoid": ".iii_types",
    "TriggerConfig": ".iii_types",
    "TriggerHandler": "._client",
    "TriggerInfo": ".iii_types",
    "TriggerRequest": ".iii_types",
    "TriggerTypeRef": "._client",
    "WorkerShutdownError": ".errors",
    "create_channel": ".channels",
    "create_channel_async": ".channels",
    "register_worker": "._client",
    "register_worker_async": "._client",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


__all__ = [
    "III",
    "Channel",
    "ChannelError",
    "ChannelReader",
    "ChannelWriter",
    "ConnectError",
    "ConnectionClosed",
    "ConnectionFailed",
    "EnqueueResult",
    "FunctionInfo",
    "FunctionRef",
    "HttpAuthApiKey",
    "HttpAuthBearer",
    "HttpAuthConfig",
    "HttpAuthHmac",
    "HttpInvocationConfig",
    "IIIConnectionState",
    "IIIError",
    "IIIInvocationError",
    "IIIUsageError",
    "InitOptions",
    "MessageType",
    "OtelConfig",
    "ReconnectionConfig",
    "RegisterFunctionFormat",
    "RegisterTriggerInput",
    "RegisterTriggerTypeInput",
    "RegistrationRejectedError",
    "StreamChannelRef",
    "TelemetryOptions",
    "Trigger",
    "TriggerAction",
    "TriggerActionEnqueue",
    "TriggerActionVoid",
    "TriggerConfig",
    "TriggerHandler",
    "TriggerInfo",
    "TriggerRequest",
    "TriggerTypeRef",
    "WorkerShutdownError",
    "__version__",
    "create_channel",
    "create_channel_async",
    "register_worker",
    "register_worker_async",
]
