"""Value types of the public API."""

from __future__ import annotations

import ssl
from collections.abc import Callable
from typing import Any, Generic, Literal, Optional, TypeVar, Union

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

from ._registration import Registration, RegistrationState
from .errors import RegistrationRejectedError

__all__ = [
    "EnqueueResult",
    "FunctionInfo",
    "FunctionRef",
    "HttpAuthApiKey",
    "HttpAuthBearer",
    "HttpAuthConfig",
    "HttpAuthHmac",
    "HttpInvocationConfig",
    "InitOptions",
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
    "TriggerInfo",
    "TriggerRequest",
    "WorkerInfo",
]

C = TypeVar("C")

HttpAuthConfig = Union[HttpAuthHmac, HttpAuthBearer, HttpAuthApiKey]


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
class TriggerRequest:
    """What ``trigger`` calls. A plain dict with the same keys works too.

    ``timeout_ms`` defaults to ``InitOptions.invocation_timeout_ms``;
    ``namespace`` to the worker's namespace (``engine::*`` functions always
    live in ``default``).
    """

    function_id: str
    payload: Any = None
    action: Optional[Union[TriggerActionVoid, TriggerActionEnqueue]] = None
    timeout_ms: Optional[int] = None
    metadata: Any = None
    namespace: Optional[str] = None


@attrs.frozen(kw_only=True)
class EnqueueResult:
    """The engine's receipt for an enqueued call."""

    message_receipt_id: str

    @property
    def messageReceiptId(self) -> str:
        return self.message_receipt_id


@attrs.frozen(kw_only=True)
class RegisterTriggerInput:
    """Bind ``function_id`` to a trigger of type ``type`` with ``config``."""

    type: str
    function_id: str
    config: Any = None
    metadata: Any = None
    namespace: Optional[str] = None
    trigger_namespace: Optional[str] = None


@attrs.frozen(kw_only=True)
class RegisterTriggerTypeInput:
    id: str
    description: str = ""
    trigger_request_format: Any = None
    call_request_format: Any = None
    namespace: Optional[str] = None


@attrs.frozen(kw_only=True)
class TriggerConfig(Generic[C]):
    """A binding delivered to a trigger type's handler."""

    id: str
    function_id: str
    config: C
    metadata: Any = None
    namespace: Optional[str] = None
    trigger_namespace: Optional[str] = None


@attrs.frozen(kw_only=True)
class HttpInvocationConfig:
    """Register a function the engine invokes over HTTP (PROTOCOL.md section 6.3)."""

    url: str
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"] = "POST"
    timeout_ms: Optional[int] = None
    headers: Optional[dict[str, str]] = None
    auth: Optional[HttpAuthConfig] = None


@attrs.define(kw_only=True)
class _Registered:
    """What ``register_function`` and ``register_trigger`` return.

    ``state`` is the engine's answer on the current connection: ``"pending"``
    (not answered yet, or disconnected), ``"accepted"``, ``"rejected"``
    (``error`` says why) or ``"unregistered"``.  ``wait_accepted()`` blocks
    until the engine answers and raises ``RegistrationRejectedError`` when it
    refused.
    """

    id: str
    _unregister: Callable[[], None] = attrs.field(repr=False, alias="unregister_fn")
    _registration: Optional[Registration] = attrs.field(
        default=None, repr=False, alias="registration"
    )

    def unregister(self) -> None:
        self._unregister()

    @property
    def state(self) -> RegistrationState:
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


@attrs.define(kw_only=True)
class FunctionRef(_Registered):
    """A registered function; ``unregister()`` withdraws it."""


@attrs.define(kw_only=True)
class Trigger(_Registered):
    """A registered binding; ``unregister()`` removes it."""


@attrs.frozen(kw_only=True)
class FunctionInfo:
    function_id: str
    description: Optional[str] = None
    request_format: Any = None
    response_format: Any = None
    metadata: Any = None
    namespace: Optional[str] = None
    worker_name: Optional[str] = None


@attrs.frozen(kw_only=True)
class TriggerInfo:
    id: str
    trigger_type: str
    function_id: str
    config: Any = None
    metadata: Any = None
    worker_name: Optional[str] = None


@attrs.frozen(kw_only=True)
class WorkerInfo:
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


@attrs.frozen(kw_only=True)
class ReconnectionConfig:
    """Backoff: ``initial_delay_ms`` doubling (``backoff_multiplier``) up to
    ``max_delay_ms``, +/- ``jitter_factor``; ``max_retries=-1`` retries forever."""

    initial_delay_ms: int = 1000
    max_delay_ms: int = 30000
    backoff_multiplier: float = 2.0
    jitter_factor: float = 0.3
    max_retries: int = -1


@attrs.frozen(kw_only=True)
class TelemetryOptions:
    """Reported to the engine in the worker announce."""

    language: Optional[str] = None
    project_name: Optional[str] = None
    framework: Optional[str] = None


@attrs.frozen(kw_only=True)
class OtelConfig:
    """``enabled``: propagate W3C trace context on invocations when OpenTelemetry
    is installed (``OTEL_ENABLED=false`` turns it off too)."""

    enabled: bool = True


@attrs.frozen(kw_only=True)
class InitOptions:
    """How a worker identifies itself and behaves.

    Attributes:
        worker_name: default ``III_WORKER_NAME``, then ``"<hostname>:<pid>"``.
        worker_description: a one-line summary shown by ``engine::workers::list``.
        invocation_timeout_ms: default timeout of ``trigger`` calls.
        reconnection_config: the reconnect backoff.
        headers: extra WebSocket handshake headers (``Authorization: Bearer
            $III_TOKEN`` is added when that variable is set).
        namespace: the worker's namespace (default ``III_NAMESPACE``).
        max_concurrent_handlers: handlers running at once; more wait their turn.
        register_timeout_ms: how long ``register_worker`` waits for the engine.
        shutdown_grace_ms: how long ``shutdown`` lets running handlers finish.
        ssl_context: TLS settings for ``wss://`` (default: verify certificates).
    """

    worker_name: Optional[str] = None
    worker_description: Optional[str] = None
    enable_metrics_reporting: bool = True
    invocation_timeout_ms: int = 30000
    reconnection_config: Optional[ReconnectionConfig] = None
    otel: Optional[Union[OtelConfig, dict[str, Any]]] = None
    headers: Optional[dict[str, str]] = None
    telemetry: Optional[TelemetryOptions] = None
    namespace: Optional[str] = None
    max_concurrent_handlers: int = 64
    register_timeout_ms: int = 30000
    shutdown_grace_ms: int = 5000
    ssl_context: Optional[ssl.SSLContext] = None
