"""Value types of the public API.

Values the caller builds (``TriggerRequest``, ``InitOptions``...) and the ones
the SDK hands back (``FunctionRef``, ``Trigger``, ``EnqueueResult``...), plus the
shapes of the engine's RBAC hooks (``AuthInput``, ``AuthResult``...), which a
worker implementing those hooks receives and returns.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Generic, Literal, Optional, TypeVar, Union

import attrs

from iii_protocol import (
    HttpAuthApiKey,
    HttpAuthBearer,
    HttpAuthHmac,
    RegisterFunctionFormat,
    StreamChannelRef,
    TriggerActionEnqueue,
    TriggerActionVoid,
)

from ._models import Model
from ._registration import Registration, RegistrationState
from .errors import RegistrationRejectedError

if TYPE_CHECKING:
    import ssl

__all__ = [
    "AuthInput",
    "AuthResult",
    "EnqueueResult",
    "FunctionInfo",
    "FunctionRef",
    "HttpAuthApiKey",
    "HttpAuthBearer",
    "HttpAuthConfig",
    "HttpAuthHmac",
    "HttpInvocationConfig",
    "HttpMethod",
    "InitOptions",
    "MessageType",
    "MiddlewareFunctionInput",
    "OnFunctionRegistrationInput",
    "OnFunctionRegistrationResult",
    "OnTriggerRegistrationInput",
    "OnTriggerRegistrationResult",
    "OnTriggerTypeRegistrationInput",
    "OnTriggerTypeRegistrationResult",
    "OtelConfig",
    "OtelLogEvent",
    "ReconnectionConfig",
    "RegisterFunctionFormat",
    "RegisterFunctionInput",
    "RegisterTriggerInput",
    "RegisterTriggerTypeInput",
    "StreamChannelRef",
    "TelemetryOptions",
    "Trigger",
    "TriggerAction",
    "TriggerActionEnqueue",
    "TriggerActionVoid",
    "TriggerConfig",
    "TriggerInfo",
    "TriggerRequest",
    "WorkerInfo",
]

C = TypeVar("C")

#: How the engine authenticates its HTTP calls to an HTTP-invoked function.
HttpAuthConfig = Union[HttpAuthHmac, HttpAuthBearer, HttpAuthApiKey]

#: The methods an HTTP-invoked function accepts.
HttpMethod = Literal["GET", "POST", "PUT", "PATCH", "DELETE"]


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


class TriggerAction:
    """Invocation actions: ``TriggerAction.Void()`` and ``TriggerAction.Enqueue(queue=...)``."""

    @staticmethod
    def Void() -> TriggerActionVoid:
        """Fire and forget: ``trigger`` returns ``None`` at once."""
        return TriggerActionVoid()

    @staticmethod
    def Enqueue(*, queue: str) -> TriggerActionEnqueue:
        """Route through the named queue: ``trigger`` returns an ``EnqueueResult``."""
        return TriggerActionEnqueue(queue=queue)


@attrs.frozen(kw_only=True)
class TriggerRequest(Model):
    """What ``trigger`` calls. A plain dict with the same keys works too.

    ``timeout_ms`` defaults to ``InitOptions.invocation_timeout_ms``;
    ``namespace`` to the worker's namespace (``engine::*`` functions always
    live in ``default``).  ``dispatch`` (``"auto"`` or ``"remote"``) is
    accepted for code that sets it: every call goes through the engine here.
    """

    function_id: str
    payload: Any = None
    action: Optional[Union[TriggerActionVoid, TriggerActionEnqueue]] = None
    timeout_ms: Optional[int] = None
    metadata: Any = None
    namespace: Optional[str] = None
    dispatch: Optional[Literal["auto", "remote"]] = None


class EnqueueResult(dict[str, str]):
    """The engine's receipt for an enqueued call.

    Read it as a value (``result.message_receipt_id``) or as the JSON object
    the engine sent (``result["messageReceiptId"]``, ``result.get(...)``,
    ``result == {"messageReceiptId": ...}``): it is both.
    """

    __slots__ = ()

    def __init__(
        self, *, messageReceiptId: Optional[str] = None, message_receipt_id: Optional[str] = None
    ) -> None:
        receipt = messageReceiptId if messageReceiptId is not None else message_receipt_id
        if messageReceiptId is not None and message_receipt_id not in (None, messageReceiptId):
            raise TypeError("EnqueueResult got two different receipt ids")
        if not isinstance(receipt, str):
            raise TypeError("EnqueueResult needs messageReceiptId, a str")
        super().__init__(messageReceiptId=receipt)

    @property
    def message_receipt_id(self) -> str:
        return self["messageReceiptId"]

    @property
    def messageReceiptId(self) -> str:
        return self["messageReceiptId"]

    def __repr__(self) -> str:
        return f"EnqueueResult(message_receipt_id={self.message_receipt_id!r})"

    def __reduce__(self) -> tuple[object, ...]:
        return (_enqueue_result, (self.message_receipt_id,))

    def model_dump(self, **_: Any) -> dict[str, str]:
        """``{"messageReceiptId": ...}`` (as pydantic's ``model_dump``)."""
        return dict(self)

    @classmethod
    def model_validate(cls, obj: Any) -> EnqueueResult:
        """From ``{"messageReceiptId": ...}`` (or an ``EnqueueResult``)."""
        if not isinstance(obj, dict) or not isinstance(obj.get("messageReceiptId"), str):
            raise TypeError("EnqueueResult.model_validate needs {'messageReceiptId': str}")
        return cls(messageReceiptId=obj["messageReceiptId"])


def _enqueue_result(receipt: str) -> EnqueueResult:
    return EnqueueResult(messageReceiptId=receipt)


@attrs.frozen(kw_only=True)
class RegisterTriggerInput(Model):
    """Bind ``function_id`` to a trigger of type ``type`` with ``config``."""

    type: str
    function_id: str
    config: Any = None
    metadata: Any = None
    namespace: Optional[str] = None
    trigger_namespace: Optional[str] = None


@attrs.frozen(kw_only=True)
class RegisterTriggerTypeInput(Model):
    """A trigger type this worker provides (``register_trigger_type``)."""

    id: str
    description: str = ""
    trigger_request_format: Any = None
    call_request_format: Any = None
    namespace: Optional[str] = None


@attrs.frozen(kw_only=True)
class TriggerConfig(Model, Generic[C]):
    """A binding delivered to a trigger type's handler."""

    id: str
    function_id: str
    config: C
    metadata: Any = None
    namespace: Optional[str] = None
    trigger_namespace: Optional[str] = None


@attrs.frozen(kw_only=True)
class HttpInvocationConfig(Model):
    """Register a function the engine invokes over HTTP (docs/protocol.md#http-functions)."""

    url: str
    method: HttpMethod = "POST"
    timeout_ms: Optional[int] = None
    headers: Optional[dict[str, str]] = None
    auth: Optional[HttpAuthConfig] = None


@attrs.frozen(kw_only=True)
class RegisterFunctionInput(Model):
    """A function's registration as one value: ``register_function(input, handler)``
    takes it (or the same keys as a dict) in place of the id."""

    id: str
    description: Optional[str] = None
    request_format: Union[RegisterFunctionFormat, dict[str, Any], None] = None
    response_format: Union[RegisterFunctionFormat, dict[str, Any], None] = None
    metadata: Any = None
    invocation: Optional[HttpInvocationConfig] = None


class _Registered:
    """The engine's answer to a registration (``FunctionRef`` and ``Trigger``).

    ``state`` is the engine's answer on the current connection: ``"pending"``
    (not answered yet, or disconnected), ``"accepted"``, ``"rejected"``
    (``error`` says why) or ``"unregistered"``.  ``wait_accepted()`` blocks
    until the engine answers and raises ``RegistrationRejectedError`` when it
    refused.  A handle made without a registration to follow (by the
    application itself) reads ``"accepted"``.
    """

    __slots__ = ("_registration",)

    _registration: Optional[Registration]

    @property
    def state(self) -> RegistrationState:
        """``"pending"``, ``"accepted"``, ``"rejected"`` or ``"unregistered"``."""
        return "accepted" if self._registration is None else self._registration.state

    @property
    def error(self) -> Optional[RegistrationRejectedError]:
        """Why the engine refused it (``state == "rejected"``), else ``None``."""
        return None if self._registration is None else self._registration.error

    def wait_accepted(self, timeout: Optional[float] = None) -> None:
        """Block until the engine accepted it (``timeout`` in seconds).

        Raises:
            RegistrationRejectedError: the engine refused it.
            TimeoutError: no answer within ``timeout``.
            IIIUsageError: it was unregistered (``WorkerShutdownError``: the
                worker was shut down).
        """
        if self._registration is not None:
            self._registration.wait(timeout)

    async def wait_accepted_async(self, timeout: Optional[float] = None) -> None:
        """``wait_accepted`` for asyncio and trio callers."""
        if self._registration is not None:
            await self._registration.wait_async(timeout)


class FunctionRef(_Registered):
    """A registered function: ``id``, and ``unregister()`` to withdraw it.

    ``state``, ``error`` and ``wait_accepted()`` tell whether the engine
    accepted it (see ``register_function``).  ``is_observed()`` /
    ``observers()`` answer ``False`` / ``[]``: this SDK has no observe
    support, so nothing observes a function.
    """

    __slots__ = ("id", "unregister")

    def __init__(
        self,
        id: str,
        unregister: Optional[Callable[[], None]] = None,
        *,
        unregister_fn: Optional[Callable[[], None]] = None,
        registration: Optional[Registration] = None,
    ) -> None:
        action = unregister if unregister is not None else unregister_fn
        if not callable(action):
            raise TypeError("FunctionRef needs an unregister callable")
        self.id = id
        self.unregister: Callable[[], None] = action
        self._registration = registration

    def is_observed(self) -> bool:
        """Always ``False``: this SDK has no observe support."""
        return False

    def observers(self) -> list[Any]:
        """Always ``[]``: this SDK has no observe support."""
        return []

    def __repr__(self) -> str:
        return f"FunctionRef(id={self.id!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, FunctionRef):
            return NotImplemented
        return (self.id, self.unregister) == (other.id, other.unregister)

    __hash__ = None  # type: ignore[assignment]


class Trigger(_Registered):
    """A registered binding; ``unregister()`` removes it (``id`` is its id).

    ``state``, ``error`` and ``wait_accepted()`` tell whether the engine (and
    the trigger type's provider) accepted it (see ``register_trigger``).
    """

    __slots__ = ("_unregister", "id")

    def __init__(
        self,
        unregister_fn: Callable[[], None],
        *,
        id: Optional[str] = None,
        registration: Optional[Registration] = None,
    ) -> None:
        if not callable(unregister_fn):
            raise TypeError("Trigger needs an unregister callable")
        self._unregister = unregister_fn
        self.id = id
        self._registration = registration

    def unregister(self) -> None:
        """Remove the binding from the engine; it is not replayed on reconnect."""
        self._unregister()

    def __repr__(self) -> str:
        return f"Trigger(id={self.id!r})"


@attrs.frozen(kw_only=True)
class FunctionInfo(Model):
    """A function the engine knows, as ``list_functions()`` reports it."""

    function_id: str
    description: Optional[str] = None
    request_format: Any = None
    response_format: Any = None
    metadata: Any = None
    namespace: Optional[str] = None
    worker_name: Optional[str] = None


@attrs.frozen(kw_only=True)
class TriggerInfo(Model):
    """A binding the engine knows, as ``list_triggers()`` reports it."""

    id: str
    trigger_type: str
    function_id: str
    config: Any = None
    metadata: Any = None
    worker_name: Optional[str] = None


@attrs.frozen(kw_only=True)
class WorkerInfo(Model):
    """A connected worker, as ``list_workers()`` reports it."""

    id: str
    name: Optional[str] = None
    description: Optional[str] = None
    runtime: Optional[str] = None
    version: Optional[str] = None
    os: Optional[str] = None
    namespace: Optional[str] = None
    ip_address: Optional[str] = None
    status: Optional[str] = None
    connected_at_ms: Optional[int] = None
    function_count: int = 0
    active_invocations: int = 0
    isolation: Optional[str] = None


@attrs.frozen
class ReconnectionConfig:
    """Backoff: ``initial_delay_ms`` doubling (``backoff_multiplier``) up to
    ``max_delay_ms``, +/- ``jitter_factor``; ``max_retries=-1`` retries forever."""

    initial_delay_ms: int = 1000
    max_delay_ms: int = 30000
    backoff_multiplier: float = 2.0
    jitter_factor: float = 0.3
    max_retries: int = -1


@attrs.frozen
class TelemetryOptions:
    """Reported to the engine in the worker announce.

    ``amplitude_api_key`` is accepted for code that sets it and not sent.
    """

    language: Optional[str] = None
    project_name: Optional[str] = None
    framework: Optional[str] = None
    amplitude_api_key: Optional[str] = None


@attrs.frozen
class OtelConfig:
    """``enabled``: propagate W3C trace context on invocations when OpenTelemetry
    is installed (``OTEL_ENABLED=false`` turns it off too).

    The other fields configure an export of spans, logs and metrics to the
    engine, which this SDK does not do (the application configures
    OpenTelemetry's own exporters); they are accepted and have no effect.
    """

    enabled: Optional[bool] = True
    service_name: Optional[str] = None
    service_version: Optional[str] = None
    service_namespace: Optional[str] = None
    service_instance_id: Optional[str] = None
    engine_ws_url: Optional[str] = None
    fetch_instrumentation_enabled: bool = True
    spans_flush_interval_ms: Optional[int] = None
    logs_enabled: Optional[bool] = None
    logs_flush_interval_ms: Optional[int] = None
    logs_batch_size: Optional[int] = None
    metrics_enabled: bool = True
    metrics_export_interval_ms: int = 60000
    engine_ws_headers: Optional[dict[str, str]] = None


@attrs.frozen
class InitOptions:
    """How a worker identifies itself and behaves.

    Attributes:
        worker_name: default ``III_WORKER_NAME``, then ``"<hostname>:<pid>"``.
        worker_description: a one-line summary shown by ``engine::workers::list``.
        namespace: the worker's namespace (default ``III_NAMESPACE``).
        enable_metrics_reporting: accepted; this SDK reports no worker metrics.
        invocation_timeout_ms: default timeout of ``trigger`` calls.
        reconnection_config: the reconnect backoff.
        otel: ``OtelConfig`` (or its fields as a dict).
        headers: extra WebSocket handshake headers (``Authorization: Bearer
            $III_TOKEN`` is added when that variable is set).
        telemetry: what the announce reports (language, project, framework).
        max_concurrent_handlers: handlers running at once; more wait their turn.
        register_timeout_ms: how long ``register_worker`` waits for the engine.
        shutdown_grace_ms: how long ``shutdown`` lets running handlers finish.
        ssl_context: TLS settings for ``wss://`` (default: verify certificates).

    The first nine may be given by position, in this order; the rest by keyword.
    """

    worker_name: Optional[str] = None
    worker_description: Optional[str] = None
    namespace: Optional[str] = None
    enable_metrics_reporting: bool = True
    invocation_timeout_ms: int = 30000
    reconnection_config: Optional[ReconnectionConfig] = None
    otel: Optional[Union[OtelConfig, dict[str, Any]]] = None
    headers: Optional[dict[str, str]] = None
    telemetry: Optional[TelemetryOptions] = None
    max_concurrent_handlers: int = attrs.field(default=64, kw_only=True)
    register_timeout_ms: int = attrs.field(default=30000, kw_only=True)
    shutdown_grace_ms: int = attrs.field(default=5000, kw_only=True)
    ssl_context: Optional[ssl.SSLContext] = attrs.field(default=None, kw_only=True)


# -- the shapes of the engine's RBAC hooks --------------------------------------------
#
# A worker that implements the auth / middleware / registration hooks of the
# engine's RBAC port receives the *Input shapes and returns the *Result ones.


@attrs.frozen(kw_only=True)
class AuthInput(Model):
    """What the auth function gets for a connecting worker's WebSocket upgrade."""

    headers: dict[str, str]
    query_params: dict[str, list[str]]
    ip_address: str


@attrs.frozen(kw_only=True)
class AuthResult(Model):
    """What the auth function returns: the session's grants and context.

    ``namespaces`` maps a namespace to the function ids (or wildcards) the
    session may call there; ``allowed_functions`` adds ids in ``default``.
    """

    namespaces: dict[str, list[str]] = attrs.Factory(dict)
    allowed_functions: list[str] = attrs.Factory(list)
    forbidden_functions: list[str] = attrs.Factory(list)
    allowed_trigger_types: Optional[list[str]] = None
    allow_trigger_type_registration: bool = False
    allow_function_registration: bool = True
    function_registration_prefix: Optional[str] = None
    context: dict[str, Any] = attrs.Factory(dict)


@attrs.frozen(kw_only=True)
class MiddlewareFunctionInput(Model):
    """What the middleware function gets for each call through the RBAC port."""

    function_id: str
    payload: Any
    action: Optional[Union[TriggerActionEnqueue, TriggerActionVoid]] = None
    context: dict[str, Any] = attrs.Factory(dict)
    namespace: Optional[str] = None


@attrs.frozen(kw_only=True)
class OnTriggerTypeRegistrationInput(Model):
    trigger_type_id: str
    description: str
    context: dict[str, Any] = attrs.Factory(dict)


@attrs.frozen(kw_only=True)
class OnTriggerTypeRegistrationResult(Model):
    """Fields left ``None`` keep the value of the request."""

    trigger_type_id: Optional[str] = None
    description: Optional[str] = None


@attrs.frozen(kw_only=True)
class OnTriggerRegistrationInput(Model):
    trigger_id: str
    trigger_type: str
    function_id: str
    config: Any = None
    metadata: Any = None
    namespace: Optional[str] = None
    context: dict[str, Any] = attrs.Factory(dict)


@attrs.frozen(kw_only=True)
class OnTriggerRegistrationResult(Model):
    """Fields left ``None`` keep the value of the request."""

    trigger_id: Optional[str] = None
    trigger_type: Optional[str] = None
    function_id: Optional[str] = None
    config: Any = None


@attrs.frozen(kw_only=True)
class OnFunctionRegistrationInput(Model):
    function_id: str
    description: Optional[str] = None
    metadata: Any = None
    namespace: Optional[str] = None
    context: dict[str, Any] = attrs.Factory(dict)


@attrs.frozen(kw_only=True)
class OnFunctionRegistrationResult(Model):
    """Fields left ``None`` keep the value of the request."""

    function_id: Optional[str] = None
    description: Optional[str] = None
    metadata: Any = None


@attrs.frozen(kw_only=True)
class OtelLogEvent(Model):
    """One OpenTelemetry log record as the engine reports it."""

    timestamp_unix_nano: int
    observed_timestamp_unix_nano: int
    severity_number: int
    severity_text: str
    body: str
    attributes: dict[str, Any] = attrs.Factory(dict)
    trace_id: Optional[str] = None
    span_id: Optional[str] = None
    resource: dict[str, str] = attrs.Factory(dict)
    service_name: str = ""
    instrumentation_scope_name: Optional[str] = None
    instrumentation_scope_version: Optional[str] = None
