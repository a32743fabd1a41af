"""Wire frames of the iii worker protocol (docs/protocol.md#frames).

One attrs class per message ``type``; the tag is the ``TYPE`` class variable.
Optional fields default to ``None`` and are omitted from the JSON when unset;
fields the engine requires have no default and are always written, even when
their value is JSON ``null`` (``InvokeFunction.data``, ``RegisterTrigger.config``).
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal, Optional, Union, final, get_args

import attrs

from ._json import JSON, JSONObject

__all__ = [
    "ErrorBody",
    "TriggerActionVoid",
    "TriggerActionEnqueue",
    "TriggerAction",
    "HttpAuthBearer",
    "HttpAuthHmac",
    "HttpAuthApiKey",
    "HttpAuth",
    "HttpInvocationRef",
    "RegisterFunctionFormat",
    "StreamChannelRef",
    "WorkerRegistered",
    "RegistrationRejected",
    "RegisterFunction",
    "UnregisterFunction",
    "RegisterTriggerType",
    "UnregisterTriggerType",
    "RegisterTrigger",
    "UnregisterTrigger",
    "TriggerRegistrationResult",
    "InvokeFunction",
    "InvocationResult",
    "RegisterService",
    "Ping",
    "Pong",
    "Reattach",
    "ErrorFrame",
    "UnknownFrame",
    "Frame",
    "KNOWN_FRAMES",
]


# -- nested values -------------------------------------------------------------


@final
@attrs.frozen(kw_only=True)
class ErrorBody:
    """``{code, message, stacktrace?}``: why an invocation or binding failed."""

    code: str
    message: str
    stacktrace: Optional[str] = None


@final
@attrs.frozen(kw_only=True)
class TriggerActionVoid:
    """Fire and forget: no ``invocation_id``, no result."""

    TYPE: ClassVar[str] = "void"

    @property
    def type(self) -> str:
        """The wire tag (``TYPE``)."""
        return self.TYPE


@final
@attrs.frozen(kw_only=True)
class TriggerActionEnqueue:
    """Route the call through the named queue; the result is a receipt."""

    TYPE: ClassVar[str] = "enqueue"
    queue: str

    @property
    def type(self) -> str:
        """The wire tag (``TYPE``)."""
        return self.TYPE


#: What the engine does with a call instead of returning its result.
TriggerAction = Union[TriggerActionVoid, TriggerActionEnqueue]


@final
@attrs.frozen(kw_only=True)
class HttpAuthBearer:
    """``Authorization: Bearer <env[token_key]>``, read on the engine's side."""

    TYPE: ClassVar[str] = "bearer"
    token_key: str

    @property
    def type(self) -> str:
        """The wire tag (``TYPE``)."""
        return self.TYPE


@final
@attrs.frozen(kw_only=True)
class HttpAuthHmac:
    """``x-iii-Signature`` HMAC-SHA256 keyed by the engine's ``env[secret_key]``."""

    TYPE: ClassVar[str] = "hmac"
    secret_key: str

    @property
    def type(self) -> str:
        """The wire tag (``TYPE``)."""
        return self.TYPE


@final
@attrs.frozen(kw_only=True)
class HttpAuthApiKey:
    """``<header>: <env[value_key]>``."""

    TYPE: ClassVar[str] = "api_key"
    header: str
    value_key: str

    @property
    def type(self) -> str:
        """The wire tag (``TYPE``)."""
        return self.TYPE


#: How the engine authenticates its calls to an HTTP-invoked function.
HttpAuth = Union[HttpAuthBearer, HttpAuthHmac, HttpAuthApiKey]


@final
@attrs.frozen(kw_only=True)
class HttpInvocationRef:
    """Where the engine sends an HTTP-invoked function's calls (docs/protocol.md#http-functions).

    ``method`` and ``headers`` are omitted when unset: the engine rejects ``null``.
    """

    url: str
    method: Optional[str] = None
    timeout_ms: Optional[int] = None
    headers: Optional[dict[str, str]] = None
    auth: Optional[HttpAuth] = None


@final
@attrs.frozen(kw_only=True)
class RegisterFunctionFormat:
    """A structured request/response description, sent as a tree (docs/protocol.md#formats)."""

    type: str
    name: Optional[str] = None
    description: Optional[str] = None
    body: Optional[list[RegisterFunctionFormat]] = None
    items: Optional[RegisterFunctionFormat] = None
    required: bool = False


@final
@attrs.frozen(kw_only=True)
class StreamChannelRef:
    """One end of a data channel (docs/protocol.md#channel-refs)."""

    channel_id: str
    access_key: str
    direction: Literal["read", "write"]

    def _payload_form(self) -> JSONObject:
        # Put inside a payload, a ref is written as its JSON object.
        return {
            "channel_id": self.channel_id,
            "access_key": self.access_key,
            "direction": self.direction,
        }

    def model_dump(
        self, *, mode: str = "python", by_alias: bool = False, exclude_none: bool = False
    ) -> dict[str, Any]:
        """The ref's JSON object (what code written for pydantic refs calls; the
        arguments change nothing for a ref).  Typed as pydantic's, so that
        ``StreamChannelRef(**ref.model_dump())`` type-checks."""
        return self._payload_form()

    @classmethod
    def model_validate(cls, obj: object) -> StreamChannelRef:
        """A ref from its JSON object (other keys ignored), or the ref itself."""
        if isinstance(obj, cls):
            return obj
        if not isinstance(obj, dict):
            raise TypeError(f"a channel ref is an object, got {type(obj).__name__}")
        return cls(
            channel_id=obj["channel_id"], access_key=obj["access_key"], direction=obj["direction"]
        )


# -- frames --------------------------------------------------------------------


@final
@attrs.frozen(kw_only=True)
class WorkerRegistered:
    """E->W, first frame on every connection."""

    TYPE: ClassVar[str] = "workerregistered"
    worker_id: str
    reattach_token: Optional[str] = None
    features: Optional[list[str]] = None


@final
@attrs.frozen(kw_only=True)
class RegistrationRejected:
    """E->W: a worker-name (fatal) or function-id conflict in a namespace."""

    TYPE: ClassVar[str] = "registrationrejected"
    code: str
    namespace: str
    owner_worker_id: str
    worker_name: Optional[str] = None
    function_id: Optional[str] = None


@final
@attrs.frozen(kw_only=True)
class RegisterFunction:
    """W->E: expose a function, run here or (with ``invocation``) over HTTP."""

    TYPE: ClassVar[str] = "registerfunction"
    id: str
    description: Optional[str] = None
    request_format: JSON = None
    response_format: JSON = None
    metadata: JSON = None
    invocation: Optional[HttpInvocationRef] = None
    observe: JSON = None


@final
@attrs.frozen(kw_only=True)
class UnregisterFunction:
    """W→E: withdraw a function this connection registered."""

    TYPE: ClassVar[str] = "unregisterfunction"
    id: str


@final
@attrs.frozen(kw_only=True)
class RegisterTriggerType:
    """W->E: become the provider of a trigger type. ``description`` is required."""

    TYPE: ClassVar[str] = "registertriggertype"
    id: str
    description: str
    trigger_request_format: JSON = None
    call_request_format: JSON = None
    namespace: Optional[str] = None


@final
@attrs.frozen(kw_only=True)
class UnregisterTriggerType:
    """W->E, SDK-only: engines up to 0.23 ignore it."""

    TYPE: ClassVar[str] = "unregistertriggertype"
    id: str
    namespace: Optional[str] = None


@final
@attrs.frozen(kw_only=True)
class RegisterTrigger:
    """W->E binds a function; E->W delivers the binding to its provider.

    ``config`` is required by the engine and always written.
    """

    TYPE: ClassVar[str] = "registertrigger"
    id: str
    trigger_type: str
    function_id: str
    config: JSON
    metadata: JSON = None
    namespace: Optional[str] = None
    trigger_namespace: Optional[str] = None


@final
@attrs.frozen(kw_only=True)
class UnregisterTrigger:
    """Both ways: remove a binding (W→E), or tell its provider to drop it (E→W)."""

    TYPE: ClassVar[str] = "unregistertrigger"
    id: str
    trigger_type: Optional[str] = None


@final
@attrs.frozen(kw_only=True)
class TriggerRegistrationResult:
    """A provider's ack (no ``error``) or refusal of a delivered binding."""

    TYPE: ClassVar[str] = "triggerregistrationresult"
    id: str
    trigger_type: str
    function_id: str
    error: Optional[ErrorBody] = None


@final
@attrs.frozen(kw_only=True)
class InvokeFunction:
    """Call a function (W->E) or run one (E->W). ``data`` is always written."""

    TYPE: ClassVar[str] = "invokefunction"
    function_id: str
    data: JSON
    invocation_id: Optional[str] = None
    traceparent: Optional[str] = None
    baggage: Optional[str] = None
    action: Optional[TriggerAction] = None
    metadata: JSON = None
    namespace: Optional[str] = None
    # 0.25 observe fields, carried through untouched.
    caller: JSON = None
    observe_depth: Optional[int] = None
    activation: JSON = None


@final
@attrs.frozen(kw_only=True)
class InvocationResult:
    """The outcome of an invocation; ``error`` wins over ``result``.

    A successful result is always written, as ``"result": null`` for None.
    """

    TYPE: ClassVar[str] = "invocationresult"
    invocation_id: str
    function_id: str
    result: JSON = None
    error: Optional[ErrorBody] = None
    traceparent: Optional[str] = None
    baggage: Optional[str] = None


@final
@attrs.frozen(kw_only=True)
class RegisterService:
    """W->E, legacy: group functions under a service id."""

    TYPE: ClassVar[str] = "registerservice"
    id: str
    name: Optional[str] = None
    description: Optional[str] = None
    parent_service_id: Optional[str] = None


@final
@attrs.frozen(kw_only=True)
class Ping:
    """The protocol-level liveness probe; the engine answers ``pong``."""

    TYPE: ClassVar[str] = "ping"


@final
@attrs.frozen(kw_only=True)
class Pong:
    """The answer to ``ping``."""

    TYPE: ClassVar[str] = "pong"


@final
@attrs.frozen(kw_only=True)
class Reattach:
    """W->E, first frame after a reconnect: retire my previous connection."""

    TYPE: ClassVar[str] = "reattach"
    previous_worker_id: str
    reattach_token: Optional[str] = None


@final
@attrs.frozen(kw_only=True)
class ErrorFrame:
    """E->W ``{"type":"error"}``: RBAC authentication failed; a Close follows."""

    TYPE: ClassVar[str] = "error"
    error: ErrorBody


@final
@attrs.frozen(kw_only=True)
class UnknownFrame:
    """A JSON object whose ``type`` this library does not know: log it and skip it."""

    type: str
    raw: JSONObject


#: Every frame this library encodes and decodes.
Frame = Union[
    WorkerRegistered,
    RegistrationRejected,
    RegisterFunction,
    UnregisterFunction,
    RegisterTriggerType,
    UnregisterTriggerType,
    RegisterTrigger,
    UnregisterTrigger,
    TriggerRegistrationResult,
    InvokeFunction,
    InvocationResult,
    RegisterService,
    Ping,
    Pong,
    Reattach,
    ErrorFrame,
]

#: The frame classes, one per known ``type`` (the members of ``Frame``).
KNOWN_FRAMES: tuple[type[Frame], ...] = get_args(Frame)
