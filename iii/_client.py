"""``III``: a worker connected to an iii engine; ``register_worker``,
``register_worker_async``.

This module is the public face only: argument checks and the API's shapes.
The worker's state and its handling of the core's events live in
``_session``; what drives the core (threads, or the caller's loop) is a
runtime (``_runtime``, ``_thread_runtime``, ``_loop_runtime``).
"""

from __future__ import annotations

import logging
import math
import sys
import threading
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, Generic, Optional, TypeVar, Union

import attrs

if sys.version_info < (3, 11):  # pragma: no cover
    from exceptiongroup import BaseExceptionGroup

from iii_protocol import (
    Connection,
    HttpInvocationRef,
    RegisterFunction,
    RegisterFunctionFormat,
    RegisterTrigger,
    RegisterTriggerType,
    TriggerActionEnqueue,
    TriggerActionVoid,
    to_json_value,
)
from iii_protocol.errors import ConnectError, InvocationError

from . import _compat, _invocation, _lifecycle, _otel
from ._endpoint import Endpoint
from ._handlers import HandlerSpec, inspect_handler, to_jsonable
from ._invocation import InvocationContext
from ._registration import Registration
from ._runtime import Runtime
from ._session import Session
from ._thread_runtime import ThreadRuntime
from .errors import IIIError, RegistrationRejectedError, WorkerShutdownError
from .iii_constants import IIIConnectionState
from .iii_types import (
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

log = logging.getLogger("iii")

if TYPE_CHECKING:  # channels (and anyio with them) load on first use
    from .channels import Channel

__all__ = ["III", "TriggerHandler", "TriggerTypeRef", "register_worker", "register_worker_async"]

T = TypeVar("T")
C = TypeVar("C")


class TriggerHandler(Generic[C]):
    """Base for trigger type providers. Override either method; sync or async.

    ``C`` is the type of the bindings' ``config`` (``TriggerHandler[MyConfig]``).
    """

    if TYPE_CHECKING:
        # What an override may be: a sync method or an ``async def`` one.
        def register_trigger(self, config: TriggerConfig[Any]) -> Optional[Awaitable[None]]:
            """A binding of this type was created (or replayed: be idempotent per id)."""

        def unregister_trigger(self, config: TriggerConfig[Any]) -> Optional[Awaitable[None]]:
            """A binding was removed (``function_id`` is ``""``, ``config`` ``None``)."""

    else:  # async at run time, as the official SDK's are

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
        """Bind ``function_id`` to this trigger type.  A model as ``config``
        (pydantic, attrs, a dataclass) is sent as its JSON object."""
        return self._worker.register_trigger(
            RegisterTriggerInput(
                type=self.id,
                function_id=function_id,
                config=to_jsonable(config),
                metadata=metadata,
            )
        )

    def register_function(
        self, function_id: str, handler: Callable[..., Any], *, description: Optional[str] = None
    ) -> FunctionRef:
        """Register the function this trigger type's bindings call."""
        return self._worker.register_function(function_id, handler, description=description)

    def unregister(self) -> None:
        """Stop providing this trigger type (``III.unregister_trigger_type``)."""
        self._worker.unregister_trigger_type(self.id)


# -- argument checks -------------------------------------------------------------------


def _check_id(what: str, value: object) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{what} must be a string, got {type(value).__name__}")
    if not value.strip():
        raise ValueError(f"{what} must not be blank")
    return value


def _check_action(action: object) -> Union[TriggerActionVoid, TriggerActionEnqueue, None]:
    if action is None or isinstance(action, TriggerActionVoid):
        return action
    if isinstance(action, dict):
        kind = action.get("type")
        if kind == "void" and set(action) == {"type"}:
            return TriggerActionVoid()
        if kind == "enqueue" and set(action) == {"type", "queue"}:
            action = TriggerActionEnqueue(queue=action["queue"])
    if isinstance(action, TriggerActionEnqueue):
        _check_id("the Enqueue action's queue", action.queue)
        return action
    raise TypeError(
        "action must be TriggerAction.Void(), TriggerAction.Enqueue(queue=...) or None, "
        f"got {action!r}"
    )


_FIELDS: dict[type, frozenset[str]] = {}


def _as(value: object, cls: type[T], caller: str) -> T:
    """``value`` as a ``cls``: itself, or built from a dict of its fields."""
    if isinstance(value, dict):
        names = _FIELDS.get(cls)
        if names is None:
            fields = attrs.fields(cls)  # type: ignore[arg-type]
            names = _FIELDS[cls] = frozenset(a.alias or a.name for a in fields)
        unknown = value.keys() - names
        if unknown:
            raise TypeError(f"{caller}: unknown keys {sorted(map(str, unknown))}")
        return cls(**value)
    if not isinstance(value, cls):
        raise TypeError(f"{caller} takes a {cls.__name__} or a dict, got {type(value).__name__}")
    return value


def _request_fields(request: Union[dict[str, Any], TriggerRequest]) -> TriggerRequest:
    request = _as(request, TriggerRequest, "trigger()")
    _check_id("function_id", request.function_id)
    timeout = request.timeout_ms
    if timeout is not None:
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
            raise TypeError(f"timeout_ms must be a number, got {type(timeout).__name__}")
        if not 0 < timeout < math.inf:
            raise ValueError(f"timeout_ms must be a positive number of milliseconds, got {timeout}")
    if request.namespace is not None and not isinstance(request.namespace, str):
        raise TypeError(f"namespace must be a string, got {type(request.namespace).__name__}")
    if request.dispatch not in (None, "auto", "remote"):
        raise ValueError(f"dispatch must be 'auto' or 'remote', got {request.dispatch!r}")
    action = _check_action(request.action)
    return request if action is request.action else attrs.evolve(request, action=action)


def _format(value: Union[RegisterFunctionFormat, dict[str, Any], type, None]) -> Any:
    if isinstance(value, RegisterFunctionFormat):
        return to_json_value(value)
    if isinstance(value, type):
        # A class (a pydantic model, a dataclass, ...) stands for its JSON Schema,
        # as in the official SDK's register_trigger_type examples.
        from .format_utils import python_type_to_format

        return python_type_to_format(value)
    return value


# -- the worker -----------------------------------------------------------------------------


class III:
    """A worker connected to an iii engine.

    Usually made by ``register_worker`` (which waits until the engine accepted
    it) or ``register_worker_async`` (on the caller's loop).  ``III(address,
    options)`` makes the same worker as ``register_worker`` but returns at
    once, connecting in the background; calls and registrations made
    meanwhile are held until it is connected.
    """

    def __init__(self, address: Optional[str] = None, options: Optional[InitOptions] = None):
        self._start(address, options, ThreadRuntime)

    @classmethod
    def _on(
        cls,
        address: Optional[str],
        options: Optional[InitOptions],
        make_runtime: Callable[[Session], Runtime],
    ) -> III:
        """A worker with another runtime (``register_worker_async``)."""
        worker = cls.__new__(cls)
        worker._start(address, options, make_runtime)
        return worker

    def _start(
        self,
        address: Optional[str],
        options: Optional[InitOptions],
        make_runtime: Callable[[Session], Runtime],
    ) -> None:
        self._session = Session(address, options, make_runtime)
        self._rt: Runtime = self._session.runtime
        self._held: Optional[_HeldAtExit] = None
        if isinstance(self._rt, ThreadRuntime) and self._rt.app is None:
            # A worker program serves after its last line (see iii/_lifecycle.py).
            self._held = _HeldAtExit(self)
            _lifecycle.hold(self._held)
        self._rt.start()

    # -- identity and state ------------------------------------------------------

    @property
    def address(self) -> str:
        return self._session.config.url

    def get_address(self) -> str:
        """The engine URL this worker connects to (``address``)."""
        return self._session.config.url

    def _endpoint(self) -> Endpoint:
        """The engine's URL, upgrade headers and TLS settings, for channel sockets."""
        return self._session.endpoint

    @property
    def worker_id(self) -> Optional[str]:
        return self._session.conn.worker_id

    def get_connection_state(self) -> IIIConnectionState:
        """``"disconnected"``, ``"connecting"``, ``"connected"``, ``"reconnecting"``
        or ``"failed"`` (for good: refused, retries exhausted, or an internal error)."""
        return self._session.state  # type: ignore[return-value]

    def add_connection_state_listener(
        self, handler: Callable[[IIIConnectionState], None]
    ) -> Callable[[], None]:
        """Call ``handler(state)`` at once with the current state (on the
        caller's thread), then on every state change; returns an unsubscribe
        function.

        Changes run on the thread that saw them (the worker's I/O thread, or
        its loop for ``register_worker_async``): the handler must not block.
        A change right as it subscribes may be seen twice; the last call always
        has the latest state.  An exception from the handler is logged.
        """
        session = self._session
        unsubscribe = _subscribe(session.state_listeners, handler)
        try:
            handler(session.state)  # type: ignore[arg-type]
        except Exception:
            log.exception("connection state listener failed")
        return unsubscribe

    def add_registration_rejected_listener(
        self, listener: Callable[[RegistrationRejectedError], None]
    ) -> Callable[[], None]:
        """Call ``listener(error)`` whenever the engine refuses one of this
        worker's registrations; returns an unsubscribe function.

        Each refusal is also logged at ERROR on the ``iii`` logger and shows on
        the registration's handle (``FunctionRef.state``, ``.error``,
        ``.wait_accepted()``).  Same thread rules as the state listeners.
        """
        return _subscribe(self._session.rejection_listeners, listener)

    def _check_open(self) -> None:
        session = self._session
        if session.closed or session.closing:
            raise WorkerShutdownError(
                f"this worker ({session.config.url}) "
                + ("was shut down" if session.closed else "is shutting down")
                + "; make a new one with register_worker()"
            )

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

        The returned ``FunctionRef`` tells whether the engine accepted it
        (``state``, ``wait_accepted()``); a refusal is also reported to
        ``add_registration_rejected_listener`` and logged at ERROR.

        Raises:
            TypeError: ``function_id`` is not a string, or the handler is not callable.
            ValueError: ``function_id`` is blank or already registered here.
            WorkerShutdownError: the worker was shut down.
        """
        self._check_open()
        (function_id, handler_or_invocation, description, metadata, request_format,
         response_format) = _compat.function_args(
            function_id, handler_or_invocation, description=description, metadata=metadata,
            request_format=request_format, response_format=response_format, observe=observe,
            local_dispatch=local_dispatch)  # fmt: skip
        function_id = _check_id("function_id", function_id)
        session = self._session
        if function_id in session.handlers:
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
        session.handlers[function_id] = spec
        try:
            registration = self._record(
                session.functions, "function", function_id, lambda c: c.register_function(frame)
            )
        except BaseException:
            del session.handlers[function_id]
            raise

        def unregister() -> None:
            if self._withdraw(session.functions, function_id, registration):
                session.handlers.pop(function_id, None)
                self._rt.command(
                    lambda conn, now: (
                        conn.unregister_function(function_id)
                        if function_id in conn.functions
                        else None
                    )
                )

        return FunctionRef(function_id, unregister, registration=registration)

    def _record(
        self,
        registry: dict[str, Registration],
        kind: str,
        key: str,
        register: Callable[[Connection], None],
    ) -> Registration:
        """Register with the core and track the engine's answer to it."""
        session = self._session
        registration = Registration(kind, key)
        registry[key] = registration

        def command(conn: Connection, now: float) -> None:
            register(conn)
            session.registered(conn, registration)

        try:
            self._rt.command(command)
        except BaseException:
            del registry[key]
            raise
        return registration

    def _withdraw(
        self, registry: dict[str, Registration], key: str, registration: Registration
    ) -> bool:
        """For ``unregister()``: idempotent, and a no-op once the worker is shut down."""
        if self._session.closed or registry.get(key) is not registration:
            return False
        del registry[key]
        registration.withdraw()
        return True

    def register_trigger(self, trigger: Union[RegisterTriggerInput, dict[str, Any]]) -> Trigger:
        """Bind a function to a trigger; ``.unregister()`` on the result removes it.

        As with functions, the returned ``Trigger`` tells whether the engine
        (or the trigger type's provider) accepted the binding.

        Raises:
            TypeError, ValueError: a missing, unknown or ill-typed field.
            WorkerShutdownError: the worker was shut down.
        """
        self._check_open()
        if isinstance(trigger, dict) and "trigger_type" in trigger and "type" not in trigger:
            trigger = {("type" if k == "trigger_type" else k): v for k, v in trigger.items()}
        trigger = _as(trigger, RegisterTriggerInput, "register_trigger()")
        _check_id("the trigger's type", trigger.type)
        _check_id("the trigger's function_id", trigger.function_id)
        session = self._session
        namespace = trigger.namespace if trigger.namespace is not None else session.namespace
        frame = RegisterTrigger(
            id=str(uuid.uuid4()),
            trigger_type=trigger.type,
            function_id=trigger.function_id,
            config=trigger.config,
            metadata=trigger.metadata,
            namespace=namespace or None,
            trigger_namespace=trigger.trigger_namespace,
        )
        registration = self._record(
            session.triggers, "trigger", frame.id, lambda c: c.register_trigger(frame)
        )

        def unregister() -> None:
            if self._withdraw(session.triggers, frame.id, registration):
                self._rt.command(
                    lambda conn, now: (
                        conn.unregister_trigger(frame.id) if frame.id in conn.triggers else None
                    )
                )

        return Trigger(unregister, id=frame.id, registration=registration)

    def register_trigger_type(
        self, trigger_type: Union[RegisterTriggerTypeInput, dict[str, Any]], handler: Any
    ) -> TriggerTypeRef:
        """Provide a trigger type; ``handler`` gets ``register_trigger``/``unregister_trigger``."""
        self._check_open()
        trigger_type = _as(trigger_type, RegisterTriggerTypeInput, "register_trigger_type()")
        _check_id("the trigger type's id", trigger_type.id)
        frame = RegisterTriggerType(
            id=trigger_type.id,
            description=trigger_type.description or "",
            trigger_request_format=_format(trigger_type.trigger_request_format),
            call_request_format=_format(trigger_type.call_request_format),
            namespace=trigger_type.namespace,
        )
        self._session.providers[frame.id] = handler
        self._rt.command(lambda conn, now: conn.register_trigger_type(frame))
        return TriggerTypeRef(frame.id, self)

    def unregister_trigger_type(
        self, trigger_type: Union[RegisterTriggerTypeInput, dict[str, Any], str]
    ) -> None:
        """Stop providing a trigger type (engines up to 0.23 keep it until disconnect)."""
        self._check_open()
        if isinstance(trigger_type, dict):
            type_id = trigger_type.get("id")
        elif isinstance(trigger_type, RegisterTriggerTypeInput):
            type_id = trigger_type.id
        else:
            type_id = trigger_type
        type_id = _check_id("the trigger type's id", type_id)
        self._session.providers.pop(type_id, None)
        self._rt.command(
            lambda conn, now: (
                conn.unregister_trigger_type(type_id) if type_id in conn.trigger_types else None
            )
        )

    # -- calls -------------------------------------------------------------------

    def _call_args(
        self, request: Union[dict[str, Any], TriggerRequest]
    ) -> tuple[dict[str, Any], float]:
        req = _request_fields(request)
        self._check_open()
        session = self._session
        function_id = req.function_id
        if session.failure is not None:
            raise InvocationError(
                session.failure.code, session.failure.message, function_id=function_id
            )
        namespace = req.namespace
        if namespace is not None and not namespace.strip():
            raise InvocationError(
                "INVALID_NAMESPACE", "namespace must not be blank", function_id=function_id
            )
        if namespace is None and not function_id.startswith("engine::"):
            namespace = session.namespace
        if namespace == "default":
            namespace = None
        timeout = (
            req.timeout_ms / 1000
            if req.timeout_ms is not None
            else session.config.invocation_timeout
        )
        traceparent, baggage = _otel.outbound_context()
        return {
            "function_id": function_id,
            "data": req.payload,
            "action": req.action,
            "timeout": timeout,
            "metadata": req.metadata,
            "namespace": namespace,
            "traceparent": traceparent,
            "baggage": baggage,
        }, timeout

    def trigger(self, request: Union[dict[str, Any], TriggerRequest]) -> Any:
        """Invoke a function and wait for its value.

        Returns the function's result; an ``EnqueueResult`` for
        ``TriggerAction.Enqueue``; ``None`` for ``TriggerAction.Void``.

        Raises:
            IIIInvocationError: every failure of the call (``code`` says which).
            TypeError, ValueError: a malformed request (nothing was sent).
            IIIUsageError: called on the event loop the worker's async
                handlers run on (it would block it); ``WorkerShutdownError``
                after ``shutdown()``.
        """
        return self._rt.call(*self._call_args(request))

    async def trigger_async(self, request: Union[dict[str, Any], TriggerRequest]) -> Any:
        """``trigger`` for asyncio and trio callers."""
        return await self._rt.call_async(*self._call_args(request))

    # -- engine listings ---------------------------------------------------------

    def list_functions(self) -> list[FunctionInfo]:
        """Every function the engine knows (``engine::functions::list``), with its
        description, formats, metadata, namespace and worker; fails as ``trigger`` does."""
        return _functions(self.trigger(_LIST_FUNCTIONS))

    async def list_functions_async(self) -> list[FunctionInfo]:
        """``list_functions`` for asyncio and trio callers."""
        return _functions(await self.trigger_async(_LIST_FUNCTIONS))

    def list_workers(self) -> list[WorkerInfo]:
        """Every worker connected to the engine (``engine::workers::list``)."""
        return _workers(self.trigger(_LIST_WORKERS))

    async def list_workers_async(self) -> list[WorkerInfo]:
        """``list_workers`` for asyncio and trio callers."""
        return _workers(await self.trigger_async(_LIST_WORKERS))

    def list_triggers(self) -> list[TriggerInfo]:
        """Every binding the engine knows (``engine::registered-triggers::list``),
        with its trigger type, function, config and metadata."""
        return _triggers(self.trigger(_LIST_TRIGGERS))

    async def list_triggers_async(self) -> list[TriggerInfo]:
        """``list_triggers`` for asyncio and trio callers."""
        return _triggers(await self.trigger_async(_LIST_TRIGGERS))

    # -- shutdown ----------------------------------------------------------------

    def _begin_shutdown(self) -> bool:
        session = self._session
        if session.closing:
            return False
        session.closing = True
        return True

    def _end_shutdown(self) -> None:
        self._session.closed = True
        self._session.withdraw_all()
        if self._held is not None:
            self._held.closed.set()
            _lifecycle.release(self._held)

    def shutdown(self) -> None:
        """Disconnect: pending calls fail with ``SHUTDOWN``, running handlers get
        ``shutdown_grace_ms`` to finish (then their callers get
        ``invocation_stopped``), and nothing of this worker keeps the process
        alive.  Idempotent.  Called on the loop the worker's async handlers
        run on, it cannot wait for them: use ``await shutdown_async()`` there.
        """
        if self._begin_shutdown():
            self._rt.shutdown()
            self._end_shutdown()

    async def shutdown_async(self) -> None:
        """``shutdown`` for asyncio and trio callers."""
        if self._begin_shutdown():
            await self._rt.shutdown_async()
            self._end_shutdown()

    def __enter__(self) -> III:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()

    def __repr__(self) -> str:
        session = self._session
        return f"<III {session.config.url} {session.state} worker_id={self.worker_id}>"

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
        from . import channels

        return channels.create_channel(self, buffer_size)

    async def create_channel_async(self, buffer_size: Optional[int] = None) -> Channel:
        """``create_channel`` for asyncio and trio callers."""
        from . import channels

        return await channels.create_channel_async(self, buffer_size)

    def _wait_until_connected(self) -> None:
        # Frameworks written for the official SDK call this after making a worker.
        _compat.wait_until_connected(self)


class _HeldAtExit:
    """A ``register_worker`` worker as ``iii._lifecycle`` holds it open at exit."""

    __slots__ = ("closed", "worker")

    def __init__(self, worker: III) -> None:
        self.worker = worker
        self.closed = threading.Event()

    def serves(self) -> bool:
        session = self.worker._session
        return not session.closing and bool(session.handlers or session.providers)

    def wait_closed(self) -> None:
        self.closed.wait()

    def stop(self) -> None:
        self.worker.shutdown()

    def describe(self) -> str:
        session = self.worker._session
        functions = len(session.handlers)
        return f"worker {self.worker.worker_id} ({functions} functions at {self.worker.address})"


def _subscribe(listeners: list[Any], listener: Any) -> Callable[[], None]:
    listeners.append(listener)

    def unsubscribe() -> None:
        if listener in listeners:
            listeners.remove(listener)

    return unsubscribe


_LIST_FUNCTIONS = {"function_id": "engine::functions::list", "payload": {}}
_LIST_WORKERS = {"function_id": "engine::workers::list", "payload": {}}
_LIST_TRIGGERS = {"function_id": "engine::registered-triggers::list", "payload": {}}


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


# -- entry points -------------------------------------------------------------------------


def _registration_error(worker: III, settled: bool, timeout: float) -> Optional[IIIError]:
    session = worker._session
    if settled and session.failure is None and session.accepted:
        return None
    if session.failure is not None:
        return session.failure
    return ConnectError(
        f"could not register with the engine at {session.config.url} within {timeout:g}s "
        f"({session.describe()})"
    )


def register_worker(address: Optional[str] = None, options: Optional[InitOptions] = None) -> III:
    """Connect a worker to the engine and return it once the engine accepted it.

    The socket is served by the SDK's own daemon threads.  Called inside an
    ``asyncio`` loop or a ``trio`` run, the worker binds to it: ``async def``
    handlers run as tasks of that loop and ``trigger_async`` awaits there
    (the call blocks that loop until the engine answered, as a connect does).
    See the README, "Threads, asyncio and trio".

    Raises:
        ConnectError: no connection within ``options.register_timeout_ms``;
            the message and ``__cause__`` say why (refused, DNS, TLS, HTTP
            status of a refused upgrade).
        ConnectionFailed: the engine refused the worker (e.g. its name is taken).
    """
    worker = III(address, options)
    session = worker._session
    timeout = session.options.register_timeout_ms / 1000
    settled = session.settled.wait_for(bool, timeout)
    error = _registration_error(worker, settled, timeout)
    if error is not None:
        worker.shutdown()
        raise error from session.problem_cause
    return worker


@asynccontextmanager
async def register_worker_async(
    address: Optional[str] = None, options: Optional[InitOptions] = None
) -> AsyncIterator[III]:
    """Run a worker on the current asyncio or trio loop for the ``async with`` block.

    ``async with register_worker_async(url) as worker:`` enters once the engine
    has accepted the worker and shuts it down on exit (leaving takes at most
    ``shutdown_grace_ms``).  Exceptions from the block come out as
    themselves, not wrapped in an exception group.

    Raises:
        ConnectError: no connection within ``options.register_timeout_ms``
            (the cause as for ``register_worker``).
        ConnectionFailed: the engine refused the worker.
    """
    import anyio

    from ._loop_runtime import LoopRuntime

    try:
        async with anyio.create_task_group() as tg:
            worker = III._on(address, options, lambda session: LoopRuntime(session, tg))
            session = worker._session
            timeout = session.options.register_timeout_ms / 1000
            settled = await session.settled.wait_for_async(bool, timeout)
            error = _registration_error(worker, settled, timeout)
            if error is not None:
                await worker.shutdown_async()
                raise error from session.problem_cause
            try:
                yield worker
            finally:
                with anyio.CancelScope(shield=True):
                    await worker.shutdown_async()
    except BaseExceptionGroup as group:
        real = _unwrap(group)
        raise real from real.__cause__


def _unwrap(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The one real exception of a task group, as the caller would have raised it."""
    import anyio

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
