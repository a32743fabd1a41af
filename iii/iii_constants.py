"""Constants of the public API."""

from __future__ import annotations

import enum
from typing import Literal

from iii_protocol import DEFAULT_ENGINE_URL, RegisterFunctionFormat

__all__ = ["DEFAULT_ENGINE_URL", "IIIConnectionState", "MessageType", "RegisterFunctionFormat"]

#: The states of a worker's connection (``III.get_connection_state()``).
IIIConnectionState = Literal["disconnected", "connecting", "connected", "reconnecting", "failed"]


class MessageType(str, enum.Enum):
    """Every frame ``type`` exchanged with the engine."""

    REGISTER_FUNCTION = "registerfunction"
    UNREGISTER_FUNCTION = "unregisterfunction"
    REGISTER_SERVICE = "registerservice"
    INVOKE_FUNCTION = "invokefunction"
    INVOCATION_RESULT = "invocationresult"
    REGISTER_TRIGGER_TYPE = "registertriggertype"
    UNREGISTER_TRIGGER_TYPE = "unregistertriggertype"
    REGISTER_TRIGGER = "registertrigger"
    UNREGISTER_TRIGGER = "unregistertrigger"
    TRIGGER_REGISTRATION_RESULT = "triggerregistrationresult"
    WORKER_REGISTERED = "workerregistered"
    REGISTRATION_REJECTED = "registrationrejected"
    REATTACH = "reattach"
    PING = "ping"
    PONG = "pong"
    ERROR = "error"
