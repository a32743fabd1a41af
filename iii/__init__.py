"""iii: the Python SDK for the iii engine.

``register_worker(url)`` connects a worker on a background thread;
``async with register_worker_async(url) as worker`` runs one on the current
asyncio or trio loop.  Both return an ``III``.
"""

from __future__ import annotations

from iii_protocol import RegisterFunctionFormat, StreamChannelRef

from ._client import III, TriggerHandler, TriggerTypeRef, register_worker, register_worker_async
from ._version import __version__
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
    "__version__",
    "create_channel",
    "create_channel_async",
    "register_worker",
    "register_worker_async",
]
