"""iii: the Python SDK for the iii engine.

``register_worker(url)`` connects a worker on a background thread;
``async with register_worker_async(url) as worker`` runs one on the current
asyncio or trio loop.  Both return an ``III``.

Names are loaded on first use, so ``import iii`` costs almost nothing until
a worker is actually made.  The names of earlier releases of the API
(``InvocationError`` and ``IIIInvocationError``, ``IIIClient`` and ``III``,
``HttpRequest`` and ``StreamRequest``...) are the same objects.
"""

from __future__ import annotations

import importlib as _importlib
import typing as _typing

from . import _lazy
from ._version import __version__

if _typing.TYPE_CHECKING:
    from iii_observability import Logger
    from iii_protocol import RegisterFunctionFormat, StreamChannelRef

    from ._client import III, TriggerHandler, TriggerTypeRef, register_worker, register_worker_async
    from ._invocation import InvocationContext, current_invocation
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
        InvocationError,
        ObserveRejection,
        RegistrationRejectedError,
        WorkerShutdownError,
    )
    from .format_utils import (
        extract_request_format,
        extract_response_format,
        python_type_to_format,
    )
    from .iii_constants import DEFAULT_ENGINE_URL, ConnectionStateCallback, IIIConnectionState
    from .iii_types import (
        AuthInput,
        AuthResult,
        EnqueueResult,
        FunctionInfo,
        FunctionRef,
        HttpAuthApiKey,
        HttpAuthBearer,
        HttpAuthConfig,
        HttpAuthHmac,
        HttpInvocationConfig,
        InitOptions,
        MessageType,
        MiddlewareFunctionInput,
        OnFunctionRegistrationInput,
        OnFunctionRegistrationResult,
        OnTriggerRegistrationInput,
        OnTriggerRegistrationResult,
        OnTriggerTypeRegistrationInput,
        OnTriggerTypeRegistrationResult,
        OtelConfig,
        ReconnectionConfig,
        RegisterFunctionInput,
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
    from .stream import (
        IStream,
        StreamChangeEvent,
        StreamChangeEventDetail,
        StreamContext,
        StreamJoinLeaveEvent,
        StreamJoinLeaveTriggerConfig,
        StreamTriggerConfig,
    )
    from .types import (
        ApiRequest,
        ApiResponse,
        HttpRequest,
        HttpResponse,
        IIIClient,
        InternalHttpRequest,
        RemoteFunctionHandler,
        StreamRequest,
        StreamResponse,
    )
    from .utils import http

_WHERE = {
    "ApiRequest": ".types",
    "ApiResponse": ".types",
    "AuthInput": ".iii_types",
    "AuthResult": ".iii_types",
    "Channel": ".channels",
    "ChannelError": ".channels",
    "ChannelReader": ".channels",
    "ChannelWriter": ".channels",
    "ConnectError": ".errors",
    "ConnectionClosed": ".errors",
    "ConnectionFailed": ".errors",
    "ConnectionStateCallback": ".iii_constants",
    "DEFAULT_ENGINE_URL": ".iii_constants",
    "EnqueueResult": ".iii_types",
    "FunctionInfo": ".iii_types",
    "FunctionRef": ".iii_types",
    "HttpAuthApiKey": ".iii_types",
    "HttpAuthBearer": ".iii_types",
    "HttpAuthConfig": ".iii_types",
    "HttpAuthHmac": ".iii_types",
    "HttpInvocationConfig": ".iii_types",
    "HttpRequest": ".types",
    "HttpResponse": ".types",
    "III": "._client",
    "IIIClient": ".types",
    "IIIConnectionState": ".iii_constants",
    "IIIError": ".errors",
    "IIIInvocationError": ".errors",
    "IIIUsageError": ".errors",
    "IStream": ".stream",
    "InitOptions": ".iii_types",
    "InternalHttpRequest": ".types",
    "InvocationContext": "._invocation",
    "InvocationError": ".errors",
    "Logger": "iii_observability",
    "MessageType": ".iii_types",
    "MiddlewareFunctionInput": ".iii_types",
    "ObserveRejection": ".errors",
    "OnFunctionRegistrationInput": ".iii_types",
    "OnFunctionRegistrationResult": ".iii_types",
    "OnTriggerRegistrationInput": ".iii_types",
    "OnTriggerRegistrationResult": ".iii_types",
    "OnTriggerTypeRegistrationInput": ".iii_types",
    "OnTriggerTypeRegistrationResult": ".iii_types",
    "OtelConfig": ".iii_types",
    "ReconnectionConfig": ".iii_types",
    "RegisterFunctionFormat": "iii_protocol",
    "RegisterFunctionInput": ".iii_types",
    "RegisterTriggerInput": ".iii_types",
    "RegisterTriggerTypeInput": ".iii_types",
    "RegistrationRejectedError": ".errors",
    "RemoteFunctionHandler": ".types",
    "StreamChangeEvent": ".stream",
    "StreamChangeEventDetail": ".stream",
    "StreamChannelRef": "iii_protocol",
    "StreamContext": ".stream",
    "StreamJoinLeaveEvent": ".stream",
    "StreamJoinLeaveTriggerConfig": ".stream",
    "StreamRequest": ".types",
    "StreamResponse": ".types",
    "StreamTriggerConfig": ".stream",
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
    "current_invocation": "._invocation",
    "extract_request_format": ".format_utils",
    "extract_response_format": ".format_utils",
    "http": ".utils",
    "python_type_to_format": ".format_utils",
    "register_worker": "._client",
    "register_worker_async": "._client",
}

#: Public submodules, importable as attributes (``iii.helpers.create_stream``).
_SUBMODULES = frozenset(
    (
        "channel",
        "channels",
        "engine",
        "errors",
        "format_utils",
        "helpers",
        "iii",
        "iii_constants",
        "iii_types",
        "internal",
        "protocol",
        "runtime",
        "state",
        "stream",
        "telemetry",
        "testing",
        "trigger",
        "triggers",
        "types",
        "utils",
    )
)


def __getattr__(name: str) -> _typing.Any:
    if name in _SUBMODULES:
        return _importlib.import_module(f".{name}", __name__)
    return _lazy.load(globals(), _WHERE, name)


def __dir__() -> list[str]:
    loaded = {k for k, v in globals().items() if k in _SUBMODULES or k.startswith("__")}
    return sorted(loaded | set(__all__))


__all__ = [
    "DEFAULT_ENGINE_URL",
    "III",
    "ApiRequest",
    "ApiResponse",
    "AuthInput",
    "AuthResult",
    "Channel",
    "ChannelError",
    "ChannelReader",
    "ChannelWriter",
    "ConnectError",
    "ConnectionClosed",
    "ConnectionFailed",
    "ConnectionStateCallback",
    "EnqueueResult",
    "FunctionInfo",
    "FunctionRef",
    "HttpAuthApiKey",
    "HttpAuthBearer",
    "HttpAuthConfig",
    "HttpAuthHmac",
    "HttpInvocationConfig",
    "HttpRequest",
    "HttpResponse",
    "IIIClient",
    "IIIConnectionState",
    "IIIError",
    "IIIInvocationError",
    "IIIUsageError",
    "IStream",
    "InitOptions",
    "InternalHttpRequest",
    "InvocationContext",
    "InvocationError",
    "Logger",
    "MessageType",
    "MiddlewareFunctionInput",
    "ObserveRejection",
    "OnFunctionRegistrationInput",
    "OnFunctionRegistrationResult",
    "OnTriggerRegistrationInput",
    "OnTriggerRegistrationResult",
    "OnTriggerTypeRegistrationInput",
    "OnTriggerTypeRegistrationResult",
    "OtelConfig",
    "ReconnectionConfig",
    "RegisterFunctionFormat",
    "RegisterFunctionInput",
    "RegisterTriggerInput",
    "RegisterTriggerTypeInput",
    "RegistrationRejectedError",
    "RemoteFunctionHandler",
    "StreamChangeEvent",
    "StreamChangeEventDetail",
    "StreamChannelRef",
    "StreamContext",
    "StreamJoinLeaveEvent",
    "StreamJoinLeaveTriggerConfig",
    "StreamRequest",
    "StreamResponse",
    "StreamTriggerConfig",
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
    "current_invocation",
    "extract_request_format",
    "extract_response_format",
    "http",
    "python_type_to_format",
    "register_worker",
    "register_worker_async",
]
