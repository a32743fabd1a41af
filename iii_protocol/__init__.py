"""iii_protocol: the iii worker protocol as a sans-I/O state machine.

Bytes in, events out, bytes out; time is passed in.  No sockets, threads,
clocks or event loops: embed it in any I/O framework.
"""

from __future__ import annotations

import typing as _typing

from ._codec import decode_frame, encode_frame, from_json_value, to_json_value
from ._connection import ANNOUNCE_FUNCTION_ID, CALLER_WORKER_ID_KEY, Connection
from ._frames import (
    KNOWN_FRAMES,
    ErrorBody,
    ErrorFrame,
    Frame,
    HttpAuth,
    HttpAuthApiKey,
    HttpAuthBearer,
    HttpAuthHmac,
    HttpInvocationRef,
    InvocationResult,
    InvokeFunction,
    Ping,
    Pong,
    Reattach,
    RegisterFunction,
    RegisterFunctionFormat,
    RegisterService,
    RegisterTrigger,
    RegisterTriggerType,
    RegistrationRejected,
    StreamChannelRef,
    TriggerAction,
    TriggerActionEnqueue,
    TriggerActionVoid,
    TriggerRegistrationResult,
    UnknownFrame,
    UnregisterFunction,
    UnregisterTrigger,
    UnregisterTriggerType,
    WorkerRegistered,
)
from ._json import JSON, JSONObject
from ._state import PHASES, TRANSITIONS, ConnectionInput, ConnectionState, SocketPhase
from .config import DEFAULT_ENGINE_URL, Config, EngineAddress, ReconnectPolicy, parse_engine_url
from .errors import (
    ConnectError,
    ConnectionClosed,
    ConnectionFailed,
    HeldCallsFull,
    IIIError,
    InvocationError,
    LocalProtocolError,
    PayloadError,
    PayloadTooLarge,
    ProtocolError,
    RemoteProtocolError,
    TransportError,
    UpgradeRefused,
)

if _typing.TYPE_CHECKING:  # pragma: no cover - names for type checkers
    from ._channel import (
        CHANNEL_TRANSITIONS,
        NEED_DATA,
        ChannelClosed,
        ChannelConnection,
        ChannelEnded,
        ChannelError,
        ChannelEvent,
        ChannelInput,
        ChannelMessage,
        ChannelOpened,
        ChannelState,
        NeedData,
        channel_address,
    )

#: Loaded on first use (with wsproto): only channel ends need them.
_CHANNEL_NAMES = frozenset(
    (
        "CHANNEL_TRANSITIONS",
        "NEED_DATA",
        "ChannelClosed",
        "ChannelConnection",
        "ChannelEnded",
        "ChannelError",
        "ChannelEvent",
        "ChannelInput",
        "ChannelMessage",
        "ChannelOpened",
        "ChannelState",
        "NeedData",
        "channel_address",
    )
)


def __getattr__(name: str) -> _typing.Any:
    if name not in _CHANNEL_NAMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from . import _channel

    value = getattr(_channel, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | _CHANNEL_NAMES)


__all__ = [
    "ANNOUNCE_FUNCTION_ID",
    "CALLER_WORKER_ID_KEY",
    "CHANNEL_TRANSITIONS",
    "DEFAULT_ENGINE_URL",
    "JSON",
    "JSONObject",
    "KNOWN_FRAMES",
    "NEED_DATA",
    "PHASES",
    "TRANSITIONS",
    "ChannelClosed",
    "ChannelConnection",
    "ChannelEnded",
    "ChannelError",
    "ChannelEvent",
    "ChannelInput",
    "ChannelMessage",
    "ChannelOpened",
    "ChannelState",
    "Config",
    "ConnectError",
    "Connection",
    "ConnectionClosed",
    "ConnectionFailed",
    "ConnectionInput",
    "ConnectionState",
    "EngineAddress",
    "ErrorBody",
    "ErrorFrame",
    "Frame",
    "HeldCallsFull",
    "HttpAuth",
    "HttpAuthApiKey",
    "HttpAuthBearer",
    "HttpAuthHmac",
    "HttpInvocationRef",
    "IIIError",
    "InvocationError",
    "InvocationResult",
    "InvokeFunction",
    "LocalProtocolError",
    "NeedData",
    "PayloadError",
    "PayloadTooLarge",
    "Ping",
    "Pong",
    "ProtocolError",
    "Reattach",
    "ReconnectPolicy",
    "RegisterFunction",
    "RegisterFunctionFormat",
    "RegisterService",
    "RegisterTrigger",
    "RegisterTriggerType",
    "RegistrationRejected",
    "RemoteProtocolError",
    "SocketPhase",
    "StreamChannelRef",
    "TransportError",
    "TriggerAction",
    "TriggerActionEnqueue",
    "TriggerActionVoid",
    "TriggerRegistrationResult",
    "UnknownFrame",
    "UnregisterFunction",
    "UnregisterTrigger",
    "UnregisterTriggerType",
    "UpgradeRefused",
    "WorkerRegistered",
    "channel_address",
    "decode_frame",
    "encode_frame",
    "from_json_value",
    "parse_engine_url",
    "to_json_value",
]
