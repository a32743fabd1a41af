"""``III``: a worker, on plain threads or on the caller's own event loop.

All protocol work happens in ``iii_protocol.Connection``; this module turns
its events into calls of user handlers and results of ``trigger`` calls.
Two runtimes carry it:

* ``_ThreadRuntime`` (``register_worker``): the thread adapter; callers block
  on their own waiter, sync handlers run on a bounded thread pool, async
  handlers on a private loop thread started on first use.
* ``_LoopRuntime`` (``async with register_worker_async(...)``): the anyio
  adapter on the caller's asyncio or trio loop; no thread hop on any path.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import math
import os
import platform
import socket
import sys
import threading
import traceback
import uuid
from collections import deque
from collections.abc import AsyncIterator, Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager, suppress
from typing import Any, Generic, Optional, TypeVar, Union

import anyio
import anyio.from_thread
import anyio.lowlevel
import anyio.to_thread
import attrs
import sniffio

if sys.version_info < (3, 11):  # pragma: no cover
    from exceptiongroup import BaseExceptionGroup

from iii_protocol import (
    DEFAULT_ENGINE_URL,
    Config,
    Connection,
    ConnectionFailed,
    ErrorBody,
    HttpInvocationRef,
    ReconnectPolicy,
    RegisterFunction,
    RegisterFunctionFormat,
    RegisterTrigger,
    RegisterTriggerType,
    TriggerActionEnqueue,
    to_json_value,
)
from iii_protocol import events as ev
from iii_protocol.errors import ConnectError, InvocationError
from iii_transports.anyio import AnyioTransport
from iii_transports.blocking import ThreadTransport

from . import _compat, _invocation, _otel, channels
from ._endpoint import Endpoint
from ._handlers import HandlerSpec, InvalidInput, inspect_handler, to_jsonable
from ._invocation import InvocationContext
from ._version import __version__
from ._waiters import LoopWaiter, Outcome, ThreadWaiter, Waiter
from .channels import Channel
from .errors import IIIError, IIIUsageError
from .iii_constants import IIIConnectionState
from .iii_types import (
    EnqueueResult,
    FunctionInfo,
    FunctionRef,
    HttpInvocationConfig,
    InitOptions,
    RegisterFunctionInput,
    RegisterTriggerInput,
    RegisterTriggerTypeInput,
    Trigger,
    TriggerConfig,
    TriggerInfo,
    TriggerRequest,
    WorkerInfo,
)

__all__ = ["III", "TriggerHandler", "TriggerTypeRef", "register_worker", "register_worker_async"]

log = logging.getLogger("iii")
T = TypeVar("T")
C = TypeVar("C")

# A safety margin past a call's own deadline: the core always answers first.
_WAIT_SLACK = 10.0


class TriggerHandler(Generic[C]):
    """Base for trigger type providers. Override either method; sync or async.

    ``C`` is the type of the bindings' ``config`` (``TriggerHandler[MyConfig]``).
    """

    async def register_trigger(self, config: TriggerConfig[Any]) -> None:
        """A binding of this type was created (or replayed: be idempotent per id)."""

    async def unregister_trigger(self, config: TriggerConfig[Any]) -> None:
        """A binding was removed (``function_id`` is ``""``, ``config`` ``None``)."""


@attrs.define
class TriggerTypeRef:
    """A trigger type this worker provides."""

    id: str
    _worker: III = attrs.field(repr=False)

    def register_trigger(
        self, function_id: str, config: Any = None, metadata: Any = None
    ) -> Trigger:
        """Bind ``function_id`` to this trigger type."""
        return self._worker.register_trigger(
            RegisterTriggerInput(
                type=self.id, function_id=function_id, config=config, metadata=metadata
            )
        )

    def register_function(
        self, function_id: str, handler: Callable[..., Any], *, description: Optional[str] = None
    ) -> FunctionRef:
        """Register the function this trigger type's bindings call."""
        return self._worker.register_function(function_id, handler, description=description)

    def unregister(self) -> None:
        self._worker.unregister_trigger_type(self.id)


def _env_headers(headers: Optional[dict[str, str]]) -> tuple[tuple[str, str], ...]:
    out = dict(headers or {})
    token = os.environ.get("III_TOKEN")
    if token and not any(k.lower() == "authorization" for k in out):
        out["Authorization"] = f"Bearer {token}"
    return tuple(out.items())


def _announce(options: InitOptions, namespace: Optional[str]) -> dict[str, Any]:
    pid = os.getpid()
    name = (
        options.worker_name or os.environ.get("III_WORKER_NAME") or f"{socket.gethostname()}:{pid}"
    )
    telemetry = options.telemetry
    data: dict[str, Any] = {
        "runtime": "python",
        "version": __version__,
        "name": name,
        "os": f"{platform.system()} {platform.release()} ({platform.machine()})",
        "pid": pid,
        "telemetry": {
            "language": (telemetry and telemetry.language) or "python",
            "project_name": (telemetry and telemetry.project_name) or os.path.basename(os.getcwd()),
            "framework": (telemetry and telemetry.framework) or "iii-py",
        },
    }
    if namespace:
        data["namespace"] = namespace
    if options.worker_description:
        data["description"] = options.worker_description
    isolation = os.environ.get("III_ISOLATION")
    if isolation:
        data["isolation"] = isolation
    return data


def _make_config(address: Optional[str], options: InitOptions) -> Config:
    reconnection = options.reconnection_config
    policy = ReconnectPolicy()
    if reconnection is not None:
        policy = ReconnectPolicy(
            initial_delay=reconnection.initial_delay_ms / 1000,
            max_delay=reconnection.max_delay_ms / 1000,
            multiplier=reconnection.backoff_multiplier,
            jitter=reconnection.jitter_factor,
            max_retries=reconnection.max_retries,
        )
    namespace = options.namespace or os.environ.get("III_NAMESPACE") or None
    return Config(
        url=address or os.environ.get("III_URL") or DEFAULT_ENGINE_URL,
        headers=_env_headers(options.headers),
        reconnect=policy,
        invocation_timeout=options.invocation_timeout_ms / 1000,
        announce=_announce(options, namespace),
    )


def _format(value: Union[RegisterFunctionFormat, dict[str, Any], None]) -> Any:
    if isinstance(value, RegisterFunctionFormat):
        return to_json_value(value)
    return value


def _request_fields(request: Union[dict[str, Any], TriggerRequest]) -> TriggerRequest:
    if isinstance(request, TriggerRequest):
        return request
    if not isinstance(request, dict) or "function_id" not in request:
        raise TypeError("trigger() takes a TriggerRequest or a dict with 'function_id'")
    known = {a.name for a in attrs.fields(TriggerRequest)}
    unknown = set(request) - known
    if unknown:
        raise TypeError(f"unknown trigger request keys: {sorted(unknown)}")
    return TriggerRequest(**request)


def _outcome_value(outcome: Outcome, action: object) -> Any:
    if isinstance(outcome, ev.InvocationFailed):
        error = outcome.error
        raise InvocationError(
            error.code,
            error.message,
            function_id=outcome.function_id,
            stacktrace=error.stacktrace,
            invocation_id=outcome.invocation_id,
        )
    if isinstance(action, TriggerActionEnqueue):
        result = outcome.result
        receipt = result.get("messageReceiptId") if isinstance(result, dict) else None
        if not isinstance(receipt, str):
            raise InvocationError(
                "UNKNOWN",
                f"enqueue answered without a messageReceiptId: {result!r}",
                function_id=outcome.function_id,
                invocation_id=outcome.invocation_id,
            )
        return EnqueueResult(message_receipt_id=receipt)
    return outcome.result


class _Gate:
    """At most ``limit`` handler jobs at once; the rest wait their turn, in order.

    Used from one event loop thread only, so plain counters suffice: no
    semaphore, no cancel scope, nothing per job but the task itself.
    """

    __slots__ = ("_start", "limit", "running", "waiting")

    def __init__(self, limit: int, start: Callable[[Callable[[], Coroutine[Any, Any, Any]]], None]):
        self.limit = max(1, limit)
        self.running = 0
        self.waiting: deque[Callable[[], Coroutine[Any, Any, Any]]] = deque()
        self._start = start

    def submit(self, job: Callable[[], Coroutine[Any, Any, Any]]) -> None:
        if self.running < self.limit:
            self.running += 1
            self._start(lambda: self._run(job))
        else:
            self.waiting.append(job)

    async def _run(self, job: Callable[[], Coroutine[Any, Any, Any]]) -> None:
        try:
            await job()
        finally:
            if self.waiting:
                next_job = self.waiting.popleft()
                self._start(lambda: self._run(next_job))
            else:
                self.running -= 1


class _Runtime:
    """What a concurrency model must provide to ``III``."""

    worker: III

    def command(self, fn: Callable[[Connection, float], T]) -> T:
        raise NotImplementedError

    def call(self, kwargs: dict[str, Any], timeout: float) -> Any:
        raise NotImplementedError

    async def call_async(self, kwargs: dict[str, Any], timeout: float) -> Any:
        raise NotImplementedError

    def spawn(self, job: Callable[[], Any], is_async: bool) -> None:
        raise NotImplementedError

    def complete(self, outcome: Outcome) -> None:
        raise NotImplementedError

    def shutdown(self) -> None:
        raise NotImplementedError

    async def shutdown_async(self) -> None:
        raise NotImplementedError


class III:
    """A worker connected to an iii engine.

    Made by ``register_worker`` (plain threads) or ``register_worker_async``
    (the caller's asyncio/trio loop); not constructed directly.
    """

    def __init__(self, address: Optional[str] = None, options: Optional[InitOptions] = None):
        self._options = options or InitOptions()
        self._config = _make_config(address, self._options)
        namespace = (self._config.announce or {}).get("namespace")
        self._namespace: Optional[str] = namespace if isinstance(namespace, str) else None
        self._conn = Connection(self._config)
        self._handlers: dict[str, Optional[HandlerSpec]] = {}
        self._providers: dict[str, Any] = {}
        self._bindings: dict[str, tuple[str, TriggerConfig[Any]]] = {}
        self._listeners: list[Callable[[IIIConnectionState], None]] = []
        self._inflight = 0
        self._inflight_cond = threading.Condition()
        self._closing = False
        self._closed = False
        self._failure: Optional[ConnectionFailed] = None
        self._connected = threading.Event()
        self._settled = threading.Event()  # connected or failed
        self._last_problem = "no answer yet"
        self._rt: _Runtime = _NoRuntime(self)

    # -- identity and state ------------------------------------------------------

    @property
    def address(self) -> str:
        return self._config.url

    def get_address(self) -> str:
        return self._config.url

    def _endpoint(self) -> Endpoint:
        """The engine's URL, upgrade headers and TLS settings, for channel sockets."""
        return Endpoint(self._config.url, self._config.headers, self._options.ssl_context)

    @property
    def worker_id(self) -> Optional[str]:
        return self._conn.worker_id

    def get_connection_state(self) -> IIIConnectionState:
        return self._conn.state.value

    def add_connection_state_listener(
        self, handler: Callable[[IIIConnectionState], None]
    ) -> Callable[[], None]:
        """Call ``handler(state)`` on every state change; returns an unsubscribe function."""
        self._listeners.append(handler)

        def unsubscribe() -> None:
            if handler in self._listeners:
                self._listeners.remove(handler)

        return unsubscribe

    # -- events from the core ----------------------------------------------------

    def _on_event(self, event: ev.Event) -> None:
        if isinstance(event, (ev.InvocationSucceeded, ev.InvocationFailed)):
            self._rt.complete(event)
        elif isinstance(event, ev.InvocationRequested):
            self._on_invocation(event)
        elif isinstance(event, ev.TriggerRegistrationRequested):
            self._on_binding(event.binding)
        elif isinstance(event, ev.TriggerUnregistrationRequested):
            self._on_unbinding(event.id)
        elif isinstance(event, ev.StateChanged):
            for listener in list(self._listeners):
                try:
                    listener(event.new.value)
                except Exception:
                    log.exception("connection state listener failed")
        elif isinstance(event, ev.Connected):
            log.debug("connected to %s as %s", self._config.url, event.worker_id)
        elif isinstance(event, ev.Announced):
            error = event.error
            if error is not None and error.code != "function_not_found":
                # function_not_found: an engine older than the announce builtin.
                log.error(
                    "engine refused this worker's announce: %s: %s", error.code, error.message
                )
                if not self._settled.is_set():
                    self._failure = ConnectionFailed(error.code, error.message)
            else:
                self._connected.set()
            self._settled.set()
        elif isinstance(event, ev.ConnectionFailedEvent):
            self._failure = ConnectionFailed(event.code, event.message)
            log.error("worker failed: %s: %s", event.code, event.message)
            self._settled.set()
        elif isinstance(event, ev.FunctionRejected):
            r = event.rejection
            log.warning(
                "engine refused function %r in namespace %r: owned by worker %s",
                r.function_id,
                r.namespace,
                r.owner_worker_id or "(reserved)",
            )
        elif isinstance(event, ev.TriggerRegistrationFailed):
            log.warning(
                "trigger %s (%s -> %s) refused: %s: %s",
                event.id,
                event.trigger_type,
                event.function_id,
                event.error.code,
                event.error.message,
            )
        elif isinstance(event, ev.EngineErrorReceived):
            self._last_problem = f"{event.error.code}: {event.error.message}"
            log.warning("engine error: %s", self._last_problem)
        elif isinstance(event, ev.FrameRejected):
            log.warning("dropped a malformed message from the engine: %s", event.error)
        elif isinstance(event, ev.UnknownFrameReceived):
            log.debug("ignored a frame of unknown type %r", event.frame.type)

    def _reply(
        self,
        invocation_id: Optional[str],
        function_id: str,
        result: Any = None,
        error: Optional[ErrorBody] = None,
    ) -> None:
        if invocation_id is None:
            if error is not None:
                log.error(
                    "fire-and-forget %s failed: %s: %s", function_id, error.code, error.message
                )
            return
        self._rt.command(
            lambda conn, now: conn.send_result(invocation_id, function_id, result, error=error)
        )

    def _on_invocation(self, event: ev.InvocationRequested) -> None:
        spec = self._handlers.get(event.function_id)
        if self._closing or spec is None:
            self._reply(
                event.invocation_id,
                event.function_id,
                error=ErrorBody(
                    code="SHUTDOWN" if self._closing else "function_not_found",
                    message="worker is shutting down"
                    if self._closing
                    else f"Function '{event.function_id}' not found",
                ),
            )
            return
        with self._inflight_cond:
            self._inflight += 1

        def prepare() -> tuple[tuple[Any, ...], dict[str, Any]]:
            data = self._resolve_channels(event.data) if event.may_hold_channel_refs else event.data
            args = (spec.convert_input(data),)
            kwargs = {"metadata": event.metadata} if spec.takes_metadata else {}
            return args, kwargs

        def fail(exc: BaseException) -> None:
            if isinstance(exc, InvalidInput):
                error = ErrorBody(code="INVALID_ARGUMENTS", message=str(exc))
            else:
                error = ErrorBody(
                    code="invocation_failed",
                    message=str(exc) or type(exc).__name__,
                    stacktrace="".join(traceback.format_exception(exc)),
                )
            self._reply(event.invocation_id, event.function_id, error=error)

        def done() -> None:
            with self._inflight_cond:
                self._inflight -= 1
                self._inflight_cond.notify_all()

        if spec.is_async:

            async def run_async() -> None:
                try:
                    with (
                        _otel.handler_context(event.traceparent, event.baggage),
                        _invocation.scope(event),
                    ):
                        args, kwargs = prepare()
                        result = await spec.fn(*args, **kwargs)
                    self._reply(event.invocation_id, event.function_id, to_jsonable(result))
                except Exception as exc:
                    fail(exc)
                finally:
                    done()

            self._rt.spawn(run_async, True)
        else:

            def run_sync() -> None:
                try:
                    with (
                        _otel.handler_context(event.traceparent, event.baggage),
                        _invocation.scope(event),
                    ):
                        args, kwargs = prepare()
                        result = spec.fn(*args, **kwargs)
                    self._reply(event.invocation_id, event.function_id, to_jsonable(result))
                except Exception as exc:
                    fail(exc)
                finally:
                    done()

            self._rt.spawn(run_sync, False)

    def _resolve_channels(self, data: Any) -> Any:
        from .channels import resolve_channel_refs

        return resolve_channel_refs(
            data,
            self._config.url,
            dict(self._config.headers),
            ssl_context=self._options.ssl_context,
        )

    def _on_binding(self, binding: RegisterTrigger) -> None:
        provider = self._providers.get(binding.trigger_type)
        config = TriggerConfig(
            id=binding.id,
            function_id=binding.function_id,
            config=binding.config,
            metadata=binding.metadata,
            namespace=binding.namespace,
            trigger_namespace=binding.trigger_namespace,
        )
        self._bindings[binding.id] = (binding.trigger_type, config)

        def ack(error: Optional[ErrorBody]) -> None:
            self._rt.command(
                lambda conn, now: conn.send_trigger_registration_result(
                    binding.id, binding.trigger_type, binding.function_id, error=error
                )
            )

        self._run_provider(getattr(provider, "register_trigger", None), config, ack)

    def _on_unbinding(self, binding_id: str) -> None:
        entry = self._bindings.pop(binding_id, None)
        if entry is None:
            return
        trigger_type, config = entry
        provider = self._providers.get(trigger_type)
        self._run_provider(
            getattr(provider, "unregister_trigger", None),
            TriggerConfig(
                id=binding_id,
                function_id="",
                config=None,
                metadata=config.metadata,
                namespace=config.namespace,
            ),
            None,
        )

    def _run_provider(
        self,
        method: Optional[Callable[..., Any]],
        config: TriggerConfig[Any],
        ack: Optional[Callable[[Optional[ErrorBody]], None]],
    ) -> None:
        if method is None:
            if ack is not None:
                ack(None)
            return

        def report(exc: Optional[BaseException]) -> None:
            if exc is not None:
                log.warning("trigger handler failed for %s: %s", config.id, exc)
            if ack is not None:
                ack(
                    None
                    if exc is None
                    else ErrorBody(
                        code="trigger_registration_failed", message=str(exc) or type(exc).__name__
                    )
                )

        if inspect.iscoroutinefunction(method):

            async def run_async() -> None:
                try:
                    await method(config)
                except Exception as exc:
                    report(exc)
                else:
                    report(None)

            self._rt.spawn(run_async, True)
        else:

            def run_sync() -> None:
                try:
                    result = method(config)
                    if inspect.isawaitable(result):
                        raise TypeError("a sync trigger handler returned an awaitable")
                except Exception as exc:
                    report(exc)
                else:
                    report(None)

            self._rt.spawn(run_sync, False)

    # -- registrations -----------------------------------------------------------

    def register_function(
        self,
        function_id: Union[str, dict[str, Any], RegisterFunctionInput],
        handler_or_invocation: Union[Callable[..., Any], HttpInvocationConfig, None] = None,
        *,
        description: Optional[str] = None,
        metadata: Optional[dict[str, Any]] = None,
        request_format: Union[RegisterFunctionFormat, dict[str, Any], None] = None,
        response_format: Union[RegisterFunctionFormat, dict[str, Any], None] = None,
        observe: Any = None,
        local_dispatch: bool = True,
    ) -> FunctionRef:
        """Register a function on this worker (kept and re-registered on every reconnect).

        ``function_id`` may also be a dict ``{"id": ..., "description": ...}``
        (or a ``RegisterFunctionInput``) carrying the keyword fields.
        ``observe`` and ``local_dispatch`` are accepted and have no effect:
        the engine has no observe support, and every call goes through it.

        Raises:
            TypeError: ``function_id`` is not a string, or the handler is not callable.
            ValueError: ``function_id`` is blank or already registered here.
        """
        (function_id, handler_or_invocation, description, metadata, request_format,
         response_format) = _compat.function_args(
            function_id, handler_or_invocation, description=description, metadata=metadata,
            request_format=request_format, response_format=response_format, observe=observe,
            local_dispatch=local_dispatch)  # fmt: skip
        if not isinstance(function_id, str):
            raise TypeError(f"function_id must be a string, got {type(function_id).__name__}")
        if not function_id.strip():
            raise ValueError("function_id must not be blank")
        if function_id in self._handlers:
            raise ValueError(f"function {function_id!r} is already registered")
        invocation: Optional[HttpInvocationRef] = None
        spec: Optional[HandlerSpec] = None
        if isinstance(handler_or_invocation, HttpInvocationConfig):
            h = handler_or_invocation
            invocation = HttpInvocationRef(
                url=h.url, method=h.method, timeout_ms=h.timeout_ms, headers=h.headers, auth=h.auth
            )
        else:
            spec = inspect_handler(handler_or_invocation)
        frame = RegisterFunction(
            id=function_id,
            description=description,
            request_format=_format(request_format)
            if request_format is not None
            else (spec.request_schema if spec else None),
            response_format=_format(response_format)
            if response_format is not None
            else (spec.response_schema if spec else None),
            metadata=metadata,
            invocation=invocation,
        )
        self._handlers[function_id] = spec
        try:
            self._rt.command(lambda conn, now: conn.register_function(frame))
        except BaseException:
            del self._handlers[function_id]
            raise

        def unregister() -> None:
            # Idempotent: the registry check runs under the core's lock.
            self._handlers.pop(function_id, None)
            self._rt.command(
                lambda conn, now: (
                    conn.unregister_function(function_id) if function_id in conn.functions else None
                )
            )

        return FunctionRef(id=function_id, unregister_fn=unregister)

    def register_trigger(self, trigger: Union[RegisterTriggerInput, dict[str, Any]]) -> Trigger:
        """Bind a function to a trigger; ``.unregister()`` on the result removes it."""
        if isinstance(trigger, dict):
            fields = dict(trigger)
            if "trigger_type" in fields and "type" not in fields:
                fields["type"] = fields.pop("trigger_type")
            trigger = RegisterTriggerInput(**fields)
        namespace = trigger.namespace if trigger.namespace is not None else self._namespace
        frame = RegisterTrigger(
            id=str(uuid.uuid4()),
            trigger_type=trigger.type,
            function_id=trigger.function_id,
            config=trigger.config,
            metadata=trigger.metadata,
            namespace=namespace or None,
            trigger_namespace=trigger.trigger_namespace,
        )
        self._rt.command(lambda conn, now: conn.register_trigger(frame))

        def unregister() -> None:
            self._rt.command(
                lambda conn, now: (
                    conn.unregister_trigger(frame.id) if frame.id in conn.triggers else None
                )
            )

        return Trigger(id=frame.id, unregister_fn=unregister)

    def register_trigger_type(
        self, trigger_type: Union[RegisterTriggerTypeInput, dict[str, Any]], handler: Any
    ) -> TriggerTypeRef:
        """Provide a trigger type; ``handler`` gets ``register_trigger``/``unregister_trigger``."""
        if isinstance(trigger_type, dict):
            trigger_type = RegisterTriggerTypeInput(**trigger_type)
        frame = RegisterTriggerType(
            id=trigger_type.id,
            description=trigger_type.description or "",
            trigger_request_format=_format(trigger_type.trigger_request_format),
            call_request_format=_format(trigger_type.call_request_format),
            namespace=trigger_type.namespace,
        )
        self._providers[frame.id] = handler
        self._rt.command(lambda conn, now: conn.register_trigger_type(frame))
        return TriggerTypeRef(frame.id, self)

    def unregister_trigger_type(
        self, trigger_type: Union[RegisterTriggerTypeInput, dict[str, Any], str]
    ) -> None:
        """Stop providing a trigger type (engines up to 0.23 keep it until disconnect)."""
        if isinstance(trigger_type, dict):
            type_id = str(trigger_type["id"])
        elif isinstance(trigger_type, RegisterTriggerTypeInput):
            type_id = trigger_type.id
        else:
            type_id = trigger_type
        self._providers.pop(type_id, None)
        self._rt.command(
            lambda conn, now: (
                conn.unregister_trigger_type(type_id) if type_id in conn.trigger_types else None
            )
        )

    # -- calls -------------------------------------------------------------------

    def _invoke_args(
        self, request: Union[dict[str, Any], TriggerRequest]
    ) -> tuple[dict[str, Any], float]:
        req = _request_fields(request)
        namespace = req.namespace
        if namespace is not None and not namespace.strip():
            raise InvocationError(
                "INVALID_NAMESPACE", "namespace must not be blank", function_id=req.function_id
            )
        if namespace is None and not req.function_id.startswith("engine::"):
            namespace = self._namespace
        if namespace == "default":
            namespace = None
        timeout = (
            req.timeout_ms / 1000 if req.timeout_ms is not None else self._config.invocation_timeout
        )
        traceparent, baggage = _otel.outbound_context()
        return {
            "function_id": req.function_id,
            "data": req.payload,
            "action": req.action,
            "timeout": timeout,
            "metadata": req.metadata,
            "namespace": namespace,
            "traceparent": traceparent,
            "baggage": baggage,
        }, timeout

    def _check_open(self, function_id: str) -> None:
        if self._closed or self._closing:
            raise InvocationError("SHUTDOWN", "iii is shutting down", function_id=function_id)
        if self._failure is not None:
            raise InvocationError(
                self._failure.code, self._failure.message, function_id=function_id
            )

    def trigger(self, request: Union[dict[str, Any], TriggerRequest]) -> Any:
        """Invoke a function and wait for its value.

        Returns the function's result; an ``EnqueueResult`` for
        ``TriggerAction.Enqueue``; ``None`` for ``TriggerAction.Void``.

        Raises:
            IIIInvocationError: every failure (``code`` says which).
            IIIUsageError: called on the worker's own event loop (it would deadlock).
        """
        kwargs, timeout = self._invoke_args(request)
        self._check_open(kwargs["function_id"])
        return self._rt.call(kwargs, timeout)

    async def trigger_async(self, request: Union[dict[str, Any], TriggerRequest]) -> Any:
        """``trigger`` for asyncio and trio callers."""
        # No local keeps the call's arguments alive while it waits: with
        # thousands pending, that dict is a good part of each one's memory.
        return await self._rt.call_async(*self._checked_args(request))

    def _checked_args(
        self, request: Union[dict[str, Any], TriggerRequest]
    ) -> tuple[dict[str, Any], float]:
        kwargs, timeout = self._invoke_args(request)
        self._check_open(kwargs["function_id"])
        return kwargs, timeout

    # -- engine listings ---------------------------------------------------------

    def list_functions(self) -> list[FunctionInfo]:
        return _functions(self.trigger({"function_id": "engine::functions::list", "payload": {}}))

    async def list_functions_async(self) -> list[FunctionInfo]:
        return _functions(
            await self.trigger_async({"function_id": "engine::functions::list", "payload": {}})
        )

    def list_workers(self) -> list[WorkerInfo]:
        return _workers(self.trigger({"function_id": "engine::workers::list", "payload": {}}))

    async def list_workers_async(self) -> list[WorkerInfo]:
        return _workers(
            await self.trigger_async({"function_id": "engine::workers::list", "payload": {}})
        )

    def list_triggers(self) -> list[TriggerInfo]:
        return _triggers(
            self.trigger({"function_id": "engine::registered-triggers::list", "payload": {}})
        )

    async def list_triggers_async(self) -> list[TriggerInfo]:
        return _triggers(
            await self.trigger_async(
                {"function_id": "engine::registered-triggers::list", "payload": {}}
            )
        )

    # -- shutdown ----------------------------------------------------------------

    def _wait_handlers(self, timeout: float) -> None:
        deadline = threading.TIMEOUT_MAX if math.isinf(timeout) else timeout
        with self._inflight_cond:
            self._inflight_cond.wait_for(lambda: self._inflight == 0, timeout=deadline)

    def shutdown(self) -> None:
        """Disconnect: pending calls fail with ``SHUTDOWN``, running handlers get
        ``shutdown_grace_ms`` to finish, then nothing of this worker runs."""
        if self._closed:
            return
        self._closing = True
        self._rt.shutdown()
        self._closed = True

    async def shutdown_async(self) -> None:
        """``shutdown`` for asyncio and trio callers."""
        if self._closed:
            return
        self._closing = True
        await self._rt.shutdown_async()
        self._closed = True

    def __enter__(self) -> III:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()

    def __repr__(self) -> str:
        return f"<III {self._config.url} {self._conn.state.value} worker_id={self.worker_id}>"

    # -- more names for the same things (code written for other releases) -------

    def current_invocation(self) -> Optional[InvocationContext]:
        """The invocation the calling code runs in, or ``None`` outside every handler."""
        return _invocation.current_invocation()

    def on_functions_available(
        self, callback: Callable[[list[FunctionInfo]], Any]
    ) -> Callable[[], None]:
        """Call ``callback(functions)`` each time the engine's set of functions
        changes; returns an unsubscribe function."""
        return _compat.on_functions_available(self, callback)

    def create_channel(self, buffer_size: Optional[int] = None) -> Channel:
        """``iii.helpers.create_channel(self, buffer_size)`` as a method: the form the
        official docs use (``worker.create_channel()``)."""
        return channels.create_channel(self, buffer_size)

    async def create_channel_async(self, buffer_size: Optional[int] = None) -> Channel:
        """``create_channel`` for asyncio and trio callers."""
        return await channels.create_channel_async(self, buffer_size)

    def _wait_until_connected(self) -> None:
        # Frameworks written for the official SDK call this after making a worker.
        _compat.wait_until_connected(self)


def _functions(result: Any) -> list[FunctionInfo]:
    items = result.get("functions", []) if isinstance(result, dict) else []
    return [
        FunctionInfo(
            function_id=i["function_id"],
            description=i.get("description"),
            request_format=i.get("request_format") or i.get("request_schema"),
            response_format=i.get("response_format") or i.get("response_schema"),
            metadata=i.get("metadata"),
            namespace=i.get("namespace"),
            worker_name=i.get("worker_name"),
        )
        for i in items
        if isinstance(i, dict) and "function_id" in i
    ]


def _workers(result: Any) -> list[WorkerInfo]:
    items = result.get("workers", []) if isinstance(result, dict) else []
    names = {a.name for a in attrs.fields(WorkerInfo)}
    return [
        WorkerInfo(**{k: v for k, v in i.items() if k in names and v is not None})
        for i in items
        if isinstance(i, dict) and "id" in i
    ]


def _triggers(result: Any) -> list[TriggerInfo]:
    items = result.get("registered_triggers", []) if isinstance(result, dict) else []
    return [
        TriggerInfo(
            id=i["id"],
            trigger_type=i.get("trigger_type", ""),
            function_id=i.get("function_id", ""),
            config=i.get("config"),
            metadata=i.get("metadata"),
            worker_name=i.get("worker_name"),
        )
        for i in items
        if isinstance(i, dict) and "id" in i
    ]


class _NoRuntime(_Runtime):
    """Before a runtime is attached: commands go straight to the core."""

    def __init__(self, worker: III) -> None:
        self.worker = worker

    def command(self, fn: Callable[[Connection, float], T]) -> T:
        return fn(self.worker._conn, 0.0)


# -- plain threads ---------------------------------------------------------------


class _ThreadRuntime(_Runtime):
    def __init__(self, worker: III) -> None:
        self.worker = worker
        self.conn = worker._conn
        self.transport = ThreadTransport(
            worker._conn, worker._on_event, ssl_context=worker._options.ssl_context
        )
        self.waiters: dict[str, Waiter] = {}
        self.limit = max(1, worker._options.max_concurrent_handlers)
        self.executor = ThreadPoolExecutor(self.limit, thread_name_prefix="iii-handler")
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._handler_thread: Optional[threading.Thread] = None
        self._handler_lock = threading.Lock()
        self._gate: Optional[_Gate] = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._process_scheduled = False

    def start(self) -> None:
        self.transport.start()

    def command(self, fn: Callable[[Connection, float], T]) -> T:
        with self.transport.lock:
            result = fn(self.conn, self.transport.now())
        loop = self._loop
        if loop is not None and threading.current_thread() is self._handler_thread:
            # From an async handler: one write per turn of the handler loop.
            if not self._process_scheduled:
                self._process_scheduled = True
                loop.call_soon(self._process_batched)
        else:
            self.transport.process()
        return result

    def _process_batched(self) -> None:
        self._process_scheduled = False
        self.transport.process()

    def _start_call(
        self, kwargs: dict[str, Any], waiter_factory: Callable[[], Waiter]
    ) -> tuple[Optional[str], Optional[Waiter]]:
        waiter: Optional[Waiter] = None
        with self.transport.lock:
            invocation_id = self.conn.invoke(now=self.transport.now(), **kwargs)
            if invocation_id is not None:
                waiter = waiter_factory()
                self.waiters[invocation_id] = waiter
        self.transport.process()
        return invocation_id, waiter

    def _abandon(self, invocation_id: str) -> None:
        with self.transport.lock:
            self.conn.cancel(invocation_id)
            self.waiters.pop(invocation_id, None)

    def call(self, kwargs: dict[str, Any], timeout: float) -> Any:
        if self._handler_thread is not None and threading.current_thread() is self._handler_thread:
            raise IIIUsageError(
                "trigger() inside an async handler would block this worker's handler loop; "
                "use 'await trigger_async(...)'"
            )
        invocation_id, waiter = self._start_call(kwargs, ThreadWaiter)
        if invocation_id is None:
            return None
        assert isinstance(waiter, ThreadWaiter)
        outcome = waiter.wait(timeout + _WAIT_SLACK)
        if outcome is None:  # pragma: no cover - the core times calls out itself
            self._abandon(invocation_id)
            raise InvocationError(
                "TIMEOUT", "no outcome from the connection", function_id=kwargs["function_id"]
            )
        return _outcome_value(outcome, kwargs["action"])

    async def call_async(self, kwargs: dict[str, Any], timeout: float) -> Any:
        invocation_id, waiter = self._start_call(kwargs, LoopWaiter)
        if invocation_id is None:
            return None
        assert isinstance(waiter, LoopWaiter)
        try:
            outcome = await waiter.wait()
        except BaseException:
            self._abandon(invocation_id)
            raise
        return _outcome_value(outcome, kwargs["action"])

    def complete(self, outcome: Outcome) -> None:
        waiter = self.waiters.pop(outcome.invocation_id, None)
        if waiter is not None:
            waiter.set(outcome)

    def _handler_loop(self) -> tuple[asyncio.AbstractEventLoop, _Gate]:
        """The event loop async handlers run on: one daemon thread, started on first use."""
        with self._handler_lock:
            if self._loop is None or self._gate is None:
                loop = asyncio.new_event_loop()

                def start(make: Callable[[], Coroutine[Any, Any, Any]]) -> None:
                    task: asyncio.Task[None] = loop.create_task(make())
                    self._tasks.add(task)
                    task.add_done_callback(self._tasks.discard)

                self._gate = _Gate(self.limit, start)

                def serve() -> None:
                    try:
                        loop.run_forever()
                        # Let cancelled handlers unwind, then release the loop.
                        pending = [t for t in self._tasks if not t.done()]
                        if pending:
                            loop.run_until_complete(
                                asyncio.gather(*pending, return_exceptions=True)
                            )
                    finally:
                        loop.close()

                self._handler_thread = threading.Thread(
                    target=serve, name="iii-async-handlers", daemon=True
                )
                self._handler_thread.start()
                self._loop = loop
            return self._loop, self._gate

    def spawn(self, job: Callable[[], Any], is_async: bool) -> None:
        if not is_async:
            self.executor.submit(job)
            return
        loop, gate = self._handler_loop()
        # No waiting for the task to start: the reader thread moves on at once.
        loop.call_soon_threadsafe(gate.submit, job)

    def _stop_handler_loop(self) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return

        def stop() -> None:
            for task in list(self._tasks):
                task.cancel()
            loop.call_soon(loop.stop)

        with suppress(RuntimeError):
            loop.call_soon_threadsafe(stop)
        thread = self._handler_thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(5)

    def shutdown(self) -> None:
        grace = self.worker._options.shutdown_grace_ms / 1000
        self.worker._wait_handlers(grace)
        self.transport.close()
        self.executor.shutdown(wait=False, cancel_futures=True)
        self._stop_handler_loop()

    async def shutdown_async(self) -> None:
        await anyio.to_thread.run_sync(self.shutdown)


def register_worker(address: Optional[str] = None, options: Optional[InitOptions] = None) -> III:
    """Connect a worker to the engine on a background thread and return it.

    Returns once the engine has accepted the worker.

    Raises:
        ConnectError: no connection within ``options.register_timeout_ms``.
        ConnectionFailed: the engine refused the worker (e.g. its name is taken).
    """
    worker = III(address, options)
    runtime = _ThreadRuntime(worker)
    worker._rt = runtime
    runtime.start()
    timeout = worker._options.register_timeout_ms / 1000
    if not worker._settled.wait(timeout) or worker._failure is not None:
        failure = worker._failure
        worker.shutdown()
        if failure is not None:
            raise failure
        raise ConnectError(
            f"could not register with the engine at {worker.address} within {timeout:g}s "
            f"(state {worker._conn.state.value}; {worker._last_problem})"
        )
    return worker


# -- the caller's event loop -------------------------------------------------------


class _LoopRuntime(_Runtime):
    def __init__(self, worker: III, tg: anyio.abc.TaskGroup) -> None:
        self.worker = worker
        self.conn = worker._conn
        self.transport = AnyioTransport(
            worker._conn, worker._on_event, ssl_context=worker._options.ssl_context
        )
        self.tg = tg
        self.token = anyio.lowlevel.current_token()
        self.thread = threading.get_ident()
        self.gate = _Gate(worker._options.max_concurrent_handlers, self._start)
        self._tasks: set[asyncio.Task[None]] = set()
        self._asyncio_loop: Optional[asyncio.AbstractEventLoop] = None
        if sniffio.current_async_library() == "asyncio":
            self._asyncio_loop = asyncio.get_running_loop()
        # asyncio: a bare future per pending call (a third of an anyio.Event's
        # memory); trio: an anyio.Event and a one-item list.
        self.waiters: dict[str, Union[asyncio.Future[Outcome], tuple[anyio.Event, list[Outcome]]]]
        self.waiters = {}
        self._flush_scheduled = False

    def _on_loop(self) -> bool:
        return threading.get_ident() == self.thread

    def _schedule_flush(self) -> None:
        # One write per loop turn, however many calls and results it queued.
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._start(self._flush)

    def command(self, fn: Callable[[Connection, float], T]) -> T:
        if not self._on_loop():
            return anyio.from_thread.run_sync(self.command, fn, token=self.token)
        result = fn(self.conn, self.transport.now())
        self._schedule_flush()
        return result

    async def _flush(self) -> None:
        self._flush_scheduled = False
        await self.transport.process()

    async def call_async(self, kwargs: dict[str, Any], timeout: float) -> Any:
        if not self._on_loop():
            return await anyio.to_thread.run_sync(self.call, kwargs, timeout)
        invocation_id = self.conn.invoke(now=self.transport.now(), **kwargs)
        self._schedule_flush()
        if invocation_id is None:
            return None
        action = kwargs["action"]
        del kwargs
        loop = self._asyncio_loop
        try:
            if loop is not None:
                future: asyncio.Future[Outcome] = loop.create_future()
                self.waiters[invocation_id] = future
                outcome = await future
            else:
                slot: tuple[anyio.Event, list[Outcome]] = (anyio.Event(), [])
                self.waiters[invocation_id] = slot
                await slot[0].wait()
                outcome = slot[1][0]
        except BaseException:
            self.conn.cancel(invocation_id)
            self.waiters.pop(invocation_id, None)
            raise
        return _outcome_value(outcome, action)

    def call(self, kwargs: dict[str, Any], timeout: float) -> Any:
        if self._on_loop():
            raise IIIUsageError(
                "trigger() on the worker's own event loop would deadlock it; "
                "use 'await trigger_async(...)'"
            )
        return anyio.from_thread.run(self.call_async, kwargs, timeout, token=self.token)

    def complete(self, outcome: Outcome) -> None:
        waiter = self.waiters.pop(outcome.invocation_id, None)
        if isinstance(waiter, asyncio.Future):
            if not waiter.done():
                waiter.set_result(outcome)
        elif waiter is not None:
            waiter[1].append(outcome)
            waiter[0].set()

    def spawn(self, job: Callable[[], Any], is_async: bool) -> None:
        if is_async:
            self.gate.submit(job)
        else:
            self.gate.submit(lambda: anyio.to_thread.run_sync(job))

    def _start(self, make: Callable[[], Coroutine[Any, Any, Any]]) -> None:
        if self._asyncio_loop is not None:
            # asyncio: a bare task is several times cheaper than an anyio task
            # (no cancel scope); shutdown cancels the ones still running.
            task = self._asyncio_loop.create_task(make())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        else:
            self.tg.start_soon(make)

    def shutdown(self) -> None:
        if self._on_loop():
            # Blocking here would freeze the loop the shutdown needs: start it
            # and return; the worker's block ends once it is done.
            self.tg.start_soon(self.shutdown_async)
            return
        anyio.from_thread.run(self.shutdown_async, token=self.token)

    async def shutdown_async(self) -> None:
        if not self._on_loop():
            await anyio.to_thread.run_sync(self.shutdown)
            return
        grace = self.worker._options.shutdown_grace_ms / 1000
        with anyio.move_on_after(grace):
            while self.worker._inflight:
                await anyio.sleep(0.01)
        for task in list(self._tasks):
            task.cancel()
        await self.transport.aclose()
        self.tg.cancel_scope.cancel()


@asynccontextmanager
async def register_worker_async(
    address: Optional[str] = None, options: Optional[InitOptions] = None
) -> AsyncIterator[III]:
    """Run a worker on the current asyncio or trio loop for the ``async with`` block.

    ``async with register_worker_async(url) as worker:`` enters once the engine
    has accepted the worker and shuts it down on exit.  Exceptions from the
    block come out as themselves, not wrapped in an exception group.

    Raises:
        ConnectError: no connection within ``options.register_timeout_ms``.
        ConnectionFailed: the engine refused the worker.
    """
    worker = III(address, options)
    try:
        async with anyio.create_task_group() as tg:
            runtime = _LoopRuntime(worker, tg)
            settled = anyio.Event()
            on_event = worker._on_event

            def watch(event: ev.Event) -> None:
                on_event(event)
                if worker._settled.is_set():
                    settled.set()

            runtime.transport._on_event = watch
            worker._rt = runtime
            tg.start_soon(runtime.transport.run)
            timeout = worker._options.register_timeout_ms / 1000
            with anyio.move_on_after(timeout):
                await settled.wait()
            if worker._failure is not None or not worker._connected.is_set():
                failure: IIIError = worker._failure or ConnectError(
                    f"could not register with the engine at {worker.address} within "
                    f"{timeout:g}s (state {worker._conn.state.value}; {worker._last_problem})"
                )
                await worker.shutdown_async()
                raise failure
            try:
                yield worker
            finally:
                with anyio.CancelScope(shield=True):
                    await worker.shutdown_async()
    except BaseExceptionGroup as group:
        raise _unwrap(group) from None


def _unwrap(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The one real exception of a task group, as the caller would have raised it."""
    leaves: list[BaseException] = []

    def collect(exc: BaseException) -> None:
        if isinstance(exc, BaseExceptionGroup):
            for inner in exc.exceptions:
                collect(inner)
        else:
            leaves.append(exc)

    collect(group)
    real = [e for e in leaves if not isinstance(e, anyio.get_cancelled_exc_class())]
    return real[0] if len(real) == 1 else group
