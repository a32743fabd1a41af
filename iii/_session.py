"""A worker's state between its public face (``III``) and its runtime.

``Session`` turns the core's events into work: an invocation becomes a
handler job the runtime runs (a pool thread for sync handlers, a task of a
loop for async ones), a delivered binding becomes a trigger provider call.
It keeps the handlers, providers and bindings, the state listeners, the
engine's answers to registrations (``_registration``), the jobs in flight
(shutdown waits for them), and whether the worker is accepted, failed,
closing or closed.  It never touches a socket, a thread or a loop itself.

Every job answers its invocation exactly once, whatever the handler does:
a value, any exception (``SystemExit``, ``KeyboardInterrupt``, a
cancellation that is not the worker's own, ``GeneratorExit`` included) as
``invocation_failed`` naming it, or, when the worker shuts down or the
handler's event loop ends first, ``invocation_stopped``.
"""

from __future__ import annotations

import inspect
import logging
import os
import platform
import socket
import threading
import time
import traceback
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Optional

import attrs

from iii_protocol import (
    DEFAULT_ENGINE_URL,
    Config,
    Connection,
    ConnectionFailed,
    ConnectionState,
    ErrorBody,
    ReconnectPolicy,
    RegisterTrigger,
)
from iii_protocol import events as ev

from . import _invocation, _otel
from ._endpoint import Endpoint, handshake_headers
from ._handlers import HandlerSpec, InvalidInput, to_jsonable
from ._registration import Registration
from ._version import __version__
from ._waiters import Cell, LoopWaiter, Outcome, ThreadWaiter, Waiter
from .errors import RegistrationRejectedError
from .iii_types import InitOptions, OtelConfig, TriggerConfig

if TYPE_CHECKING:
    from ._runtime import Runtime

__all__ = ["Session", "make_config", "error_body"]

log = logging.getLogger("iii")

#: Seconds between two WARNINGs about the same connection trouble.
_WARN_EVERY = 10.0


# -- configuration -----------------------------------------------------------------------


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


def _check_options(options: InitOptions) -> None:
    for name in ("invocation_timeout_ms", "register_timeout_ms", "max_concurrent_handlers"):
        value = getattr(options, name)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
            raise ValueError(f"InitOptions.{name} must be a positive number, got {value!r}")
    grace = options.shutdown_grace_ms
    if isinstance(grace, bool) or not isinstance(grace, (int, float)) or not grace >= 0:
        raise ValueError(f"InitOptions.shutdown_grace_ms must be >= 0, got {grace!r}")
    otel = options.otel
    if isinstance(otel, dict):
        # Read as OtelConfig(**otel), as the official SDK reads it: a misspelt
        # key is an error, not a setting silently dropped.
        unknown = otel.keys() - {a.name for a in attrs.fields(OtelConfig)}
        if unknown:
            raise TypeError(f"InitOptions.otel: unknown keys {sorted(map(str, unknown))}")
    elif otel is not None and not isinstance(otel, OtelConfig):
        raise TypeError(f"InitOptions.otel must be an OtelConfig or a dict, got {otel!r}")


def make_config(address: Optional[str], options: InitOptions) -> Config:
    """The core's ``Config`` for ``register_worker(address, options)``."""
    if address is not None and not isinstance(address, str):
        raise TypeError(f"address must be a ws:// or wss:// URL string, got {address!r}")
    _check_options(options)
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
        headers=handshake_headers(options.headers),
        reconnect=policy,
        invocation_timeout=options.invocation_timeout_ms / 1000,
        announce=_announce(options, namespace),
    )


# -- jobs ----------------------------------------------------------------------------------


def error_body(exc: BaseException) -> ErrorBody:
    """How a handler's exception is answered to its caller."""
    if isinstance(exc, InvalidInput):
        return ErrorBody(code="INVALID_ARGUMENTS", message=str(exc))
    name = type(exc).__name__
    text = str(exc)
    # An Exception's text says enough; SystemExit(4) would say just "4": name it.
    named = f"{name}: {text}" if text else name
    message = (text or name) if isinstance(exc, Exception) else named
    return ErrorBody(
        code="invocation_failed",
        message=message,
        stacktrace="".join(traceback.format_exception(exc)),
    )


class _Invocation:
    """One invocation of a local handler: whatever ends the handler becomes
    its one answer.  It is also what ``current_invocation()`` sees while the
    handler runs (``get``), so a call costs this one object."""

    __slots__ = ("answered", "context", "event", "is_async", "session", "spec")

    def __init__(self, session: Session, event: ev.InvocationRequested, spec: HandlerSpec) -> None:
        self.session = session
        self.event = event
        self.spec = spec
        self.is_async = spec.is_async
        self.answered = False
        self.context: Optional[_invocation.InvocationContext] = None

    @property
    def name(self) -> str:
        return self.event.function_id

    def get(self) -> _invocation.InvocationContext:
        context = self.context
        if context is None:
            context = self.context = _invocation.context_for(self.event)
        return context

    def _call(self) -> Any:
        event = self.event
        spec = self.spec
        data: Any = event.data
        if event.may_hold_channel_refs:
            data = self.session.resolve_channels(data)
        if spec.input_type is not None:
            data = spec.convert_input(data)
        if spec.takes_metadata:
            return spec.fn(data, metadata=event.metadata)
        return spec.fn(data)

    def run(self) -> None:
        # On a pool thread: the thread's context carries current_invocation()
        # for the handler's duration.
        token = _invocation.enter(self)
        try:
            otel = self._trace() if self.event.traceparent else None
            try:
                self._succeed(self._call())
            finally:
                if otel is not None:
                    otel.__exit__(None, None, None)
        except BaseException as exc:
            self._fail(exc)
        finally:
            _invocation.leave(token)
            self.session.inflight.discard(self)

    async def run_async(self) -> None:
        # In the handler's own task (and its own context).
        token = _invocation.enter(self)
        try:
            otel = self._trace() if self.event.traceparent else None
            try:
                self._succeed(await self._call())
            finally:
                if otel is not None:
                    otel.__exit__(None, None, None)
        except BaseException as exc:
            self._fail(exc)
        finally:
            _invocation.leave(token)
            self.session.inflight.discard(self)

    def abandon(self, why: str) -> None:
        self._answer(None, ErrorBody(code="invocation_stopped", message=why))
        self.session.inflight.discard(self)

    def _trace(self) -> Any:
        event = self.event
        otel = _otel.handler_context(event.traceparent, event.baggage)
        otel.__enter__()
        return otel

    def _succeed(self, result: Any) -> None:
        if type(result) not in _PLAIN:
            result = to_jsonable(result)
        self._answer(result, None)

    def _fail(self, exc: BaseException) -> None:
        try:
            if not self.answered:
                self._answer(None, error_body(exc))
        except Exception:  # never let the machinery die of a handler
            log.exception("iii: internal error answering %s", self.event.function_id)

    def _answer(self, result: Any, error: Optional[ErrorBody]) -> None:
        if self.answered:
            return
        self.answered = True
        event = self.event
        invocation_id = event.invocation_id
        if invocation_id is None:
            if error is not None:
                log.error(
                    "fire-and-forget %s failed: %s: %s",
                    event.function_id,
                    error.code,
                    error.message,
                )
            return
        self.session.runtime.answer(invocation_id, event.function_id, result, error)


#: Results sent as they are (``to_jsonable`` only converts models).
_PLAIN = frozenset((dict, list, str, int, float, bool, type(None)))


class _ProviderCall:
    """A trigger provider's ``register_trigger``/``unregister_trigger`` (``ack``:
    answer the engine with its success or error)."""

    __slots__ = ("ack", "config", "is_async", "method", "session")

    def __init__(
        self,
        session: Session,
        method: Callable[..., Any],
        config: TriggerConfig[Any],
        ack: Optional[Callable[[Optional[ErrorBody]], None]],
    ) -> None:
        self.session = session
        self.method = method
        self.config = config
        self.ack = ack
        self.is_async = inspect.iscoroutinefunction(method)

    def run(self) -> None:
        try:
            if inspect.isawaitable(self.method(self.config)):
                raise TypeError("a sync trigger handler returned an awaitable")
        except BaseException as exc:
            self._done(exc)
        else:
            self._done(None)

    async def run_async(self) -> None:
        try:
            await self.method(self.config)
        except BaseException as exc:
            self._done(exc)
        else:
            self._done(None)

    @property
    def name(self) -> str:
        return f"trigger provider for {self.config.id}"

    def abandon(self, why: str) -> None:
        self.session.inflight.discard(self)  # the engine re-delivers bindings on reconnect

    def _done(self, exc: Optional[BaseException]) -> None:
        try:
            if exc is not None:
                log.warning("trigger handler failed for %s: %s", self.config.id, exc)
            if self.ack is not None:
                self.ack(
                    None
                    if exc is None
                    else ErrorBody(
                        code="trigger_registration_failed", message=str(exc) or type(exc).__name__
                    )
                )
        except Exception:
            log.exception("iii: internal error answering binding %s", self.config.id)
        finally:
            self.session.inflight.discard(self)


class Inflight:
    """The jobs running or queued; shutdown waits until there are none.

    Touched twice per invocation from any thread: a lock and a set, and a
    wake-up only when it empties while someone waits.
    """

    __slots__ = ("_jobs", "_lock", "_waiters")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._jobs: set[Any] = set()
        self._waiters: list[Waiter[bool]] = []

    def add(self, job: Any) -> None:
        with self._lock:
            self._jobs.add(job)

    def discard(self, job: Any) -> None:
        with self._lock:
            jobs = self._jobs
            jobs.discard(job)
            if jobs or not self._waiters:
                return
            waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            waiter.set(True)

    def jobs(self) -> list[Any]:
        with self._lock:
            return list(self._jobs)

    def __len__(self) -> int:
        return len(self._jobs)

    def wait_idle(self, timeout: float) -> bool:
        """Block until no job is left; False if ``timeout`` seconds passed first."""
        waiter = ThreadWaiter[bool]()
        with self._lock:
            if not self._jobs:
                return True
            self._waiters.append(waiter)
        try:
            return waiter.wait(timeout) is not None
        finally:
            self._forget(waiter)

    async def wait_idle_async(self, timeout: float) -> bool:
        """``wait_idle`` for asyncio and trio tasks."""
        import anyio

        waiter = LoopWaiter[bool]()
        with self._lock:
            if not self._jobs:
                return True
            self._waiters.append(waiter)
        try:
            with anyio.move_on_after(max(timeout, 0.0)):
                await waiter.wait()
                return True
            return False
        finally:
            self._forget(waiter)

    def _forget(self, waiter: Waiter[bool]) -> None:
        with self._lock:
            if waiter in self._waiters:
                self._waiters.remove(waiter)


# -- the session -----------------------------------------------------------------------


class _Warnings:
    """At most one WARNING per ``_WARN_EVERY`` seconds for the same trouble."""

    def __init__(self) -> None:
        self._last: Optional[tuple[str, float]] = None
        self._quiet = 0

    def __call__(self, what: str, message: str, *args: object) -> None:
        now = time.monotonic()
        last = self._last
        if last is not None and last[0] == what and now - last[1] < _WARN_EVERY:
            self._quiet += 1
            log.debug(message, *args)
            return
        if self._quiet:
            message += f" ({self._quiet} more like it since the last warning)"
        self._last, self._quiet = (what, now), 0
        log.warning(message, *args)


class Session:
    """See the module docstring.  ``make_runtime`` builds the runtime from the
    session (the runtime needs the session's core and events)."""

    def __init__(
        self,
        address: Optional[str],
        options: Optional[InitOptions],
        make_runtime: Callable[[Session], Runtime],
    ) -> None:
        self.options = options if options is not None else InitOptions()
        self.config = make_config(address, self.options)
        namespace = (self.config.announce or {}).get("namespace")
        self.namespace: Optional[str] = namespace if isinstance(namespace, str) else None
        self.conn = Connection(self.config)
        #: the engine's URL, upgrade headers and TLS settings, for channel sockets
        self.endpoint = Endpoint(self.config.url, self.config.headers, self.options.ssl_context)
        self.handlers: dict[str, Optional[HandlerSpec]] = {}
        self.providers: dict[str, Any] = {}
        self.bindings: dict[str, tuple[str, TriggerConfig[Any]]] = {}
        self.state_listeners: list[Callable[[str], None]] = []
        self.rejection_listeners: list[Callable[[RegistrationRejectedError], None]] = []
        self.inflight = Inflight()
        self.settled: Cell[bool] = Cell(False)  # accepted, refused or failed
        self.accepted = False
        self.failure: Optional[ConnectionFailed] = None
        self.crashed = False
        self.closing = False
        self.closed = False
        self.problem = "no answer yet"
        self.problem_cause: Optional[BaseException] = None
        self.functions: dict[str, Registration] = {}
        self.triggers: dict[str, Registration] = {}
        self._syncs: dict[int, list[Registration]] = {}
        self._announced = False
        self._warn = _Warnings()
        self._lock = threading.Lock()
        self.runtime = make_runtime(self)

    # -- state -----------------------------------------------------------------------

    @property
    def state(self) -> str:
        return "failed" if self.crashed else self.conn.state.value

    @property
    def grace(self) -> float:
        """Seconds shutdown lets running handlers finish."""
        return self.options.shutdown_grace_ms / 1000

    def describe(self) -> str:
        return f"state {self.state}; last error: {self.problem}"

    def annotate(self, outcome: Outcome) -> Outcome:
        """A call that timed out while disconnected says so."""
        if (
            isinstance(outcome, ev.InvocationFailed)
            and outcome.error.code == "TIMEOUT"
            and self.conn.state is not ConnectionState.CONNECTED
        ):
            error = attrs.evolve(
                outcome.error,
                message=f"{outcome.error.message} (the worker is {self.describe()})",
            )
            return attrs.evolve(outcome, error=error)
        return outcome

    def _notify(self, state: str) -> None:
        for listener in list(self.state_listeners):
            try:
                listener(state)
            except Exception:
                log.exception("connection state listener failed")

    def crash(self, exc: BaseException) -> ConnectionFailed:
        """An SDK thread or task died of a bug: the worker is failed, visibly."""
        failure = ConnectionFailed(
            "INTERNAL_ERROR", f"the worker's I/O stopped on an internal error: {exc!r}"
        )
        with self._lock:
            if self.crashed or self.closed:
                return self.failure or failure
            self.crashed = True
            self.failure = failure
        self.problem = failure.message
        self.settled.set(True)
        self._notify("failed")
        return failure

    # -- events from the core -------------------------------------------------------------

    def on_event(self, event: ev.Event) -> None:
        """Every application event but the outcomes of our own calls (the runtime's)."""
        try:
            handle = _HANDLERS.get(type(event))
            if handle is not None:
                handle(self, event)
        except Exception:  # never let the transport die of this
            log.exception("iii: internal error handling %s", type(event).__name__)

    def on_invocation(self, event: ev.InvocationRequested) -> None:
        """An invocation of a local function: its handler starts (or it is refused)."""
        try:
            self._on_invocation(event)
        except Exception:  # never let the transport die of this
            log.exception("iii: internal error handling an invocation")

    def _on_invocation(self, event: ev.InvocationRequested) -> None:
        spec = self.handlers.get(event.function_id)
        if self.closing or spec is None:
            if event.invocation_id is not None:
                error = (
                    ErrorBody(code="SHUTDOWN", message="worker is shutting down")
                    if self.closing
                    else ErrorBody(
                        code="function_not_found",
                        message=f"Function '{event.function_id}' not found",
                    )
                )
                self.runtime.answer(event.invocation_id, event.function_id, None, error)
            return
        job = _Invocation(self, event, spec)
        self.inflight.add(job)
        self.runtime.spawn(job)

    def resolve_channels(self, data: Any) -> Any:
        from .channels import resolve_channel_refs

        endpoint = self.endpoint
        return resolve_channel_refs(
            data, endpoint.url, dict(endpoint.headers), ssl_context=endpoint.ssl_context
        )

    def _on_binding(self, event: ev.TriggerRegistrationRequested) -> None:
        binding: RegisterTrigger = event.binding
        config = TriggerConfig(
            id=binding.id,
            function_id=binding.function_id,
            config=binding.config,
            metadata=binding.metadata,
            namespace=binding.namespace,
            trigger_namespace=binding.trigger_namespace,
        )
        self.bindings[binding.id] = (binding.trigger_type, config)

        def ack(error: Optional[ErrorBody]) -> None:
            self.runtime.send(
                lambda conn, now: conn.send_trigger_registration_result(
                    binding.id, binding.trigger_type, binding.function_id, error=error
                )
            )

        provider = self.providers.get(binding.trigger_type)
        self._run_provider(getattr(provider, "register_trigger", None), config, ack)

    def _on_unbinding(self, event: ev.TriggerUnregistrationRequested) -> None:
        entry = self.bindings.pop(event.id, None)
        if entry is None:
            return
        trigger_type, config = entry
        provider = self.providers.get(trigger_type)
        gone = TriggerConfig(
            id=event.id,
            function_id="",
            config=None,
            metadata=config.metadata,
            namespace=config.namespace,
        )
        self._run_provider(getattr(provider, "unregister_trigger", None), gone, None)

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
        job = _ProviderCall(self, method, config, ack)
        self.inflight.add(job)
        self.runtime.spawn(job)

    def _on_state(self, event: ev.StateChanged) -> None:
        if event.new is not ConnectionState.CONNECTED:
            self._announced = False
            self._syncs.clear()
            for registration in self._registrations():
                registration.reset()
        if event.reason is not None:
            self.problem = event.reason
            self.problem_cause = event.cause
            if event.new is ConnectionState.RECONNECTING:
                what = (
                    "could not connect to"
                    if event.old is ConnectionState.CONNECTING
                    else "lost the connection to"
                )
                self._warn(what, "iii: %s %s: %s; retrying", what, self.config.url, event.reason)
        self._notify(event.new.value)

    def _on_connected(self, event: ev.Connected) -> None:
        log.debug("connected to %s as %s", self.config.url, event.worker_id)

    def _on_announced(self, event: ev.Announced) -> None:
        error = event.error
        if error is not None and error.code != "function_not_found":
            # function_not_found: an engine older than the announce builtin.
            log.error("engine refused this worker's announce: %s: %s", error.code, error.message)
            self.problem = f"{error.code}: {error.message}"
            if not self.settled.value:
                self.failure = ConnectionFailed(error.code, error.message)
        else:
            self.accepted = True
            # The engine knows our namespace now and has handled the replay:
            # one round trip settles every registration sent so far.
            self._announced = True
            self.runtime.send(self._barrier)
        self.settled.set(True)

    def _on_failed(self, event: ev.ConnectionFailedEvent) -> None:
        self.problem = f"{event.code}: {event.message}"
        log.error("worker failed: %s: %s", event.code, event.message)
        rejection = event.rejection
        if rejection is None:
            self.failure = ConnectionFailed(event.code, event.message)
        else:
            # The engine refused the worker itself (its name is taken): the
            # failure is a RegistrationRejectedError, as the official SDK's.
            error = RegistrationRejectedError(
                rejection.code,
                rejection.namespace,
                rejection.worker_name,
                rejection.owner_worker_id,
                function_id=rejection.function_id,
                message=event.message,
            )
            self.failure = error
            self._rejected(error)
        self.settled.set(True)

    def _on_function_rejected(self, event: ev.FunctionRejected) -> None:
        r = event.rejection
        error = RegistrationRejectedError(
            r.code, r.namespace, r.worker_name, r.owner_worker_id, function_id=r.function_id
        )
        self._rejected(error, self.functions.get(r.function_id or ""))

    def _on_trigger_failed(self, event: ev.TriggerRegistrationFailed) -> None:
        registration = self.triggers.get(event.id)
        error = RegistrationRejectedError(
            event.error.code,
            "",
            function_id=event.function_id,
            trigger_id=event.id,
            message=f"trigger {event.id} ({event.trigger_type} -> {event.function_id}) refused: "
            f"{event.error.message}",
        )
        self._rejected(error, registration)

    def _rejected(
        self, error: RegistrationRejectedError, registration: Optional[Registration] = None
    ) -> None:
        log.error("registration refused by the engine: %s", error)
        for listener in list(self.rejection_listeners):
            try:
                listener(error)
            except Exception:
                log.exception("registration rejection listener failed")
        if registration is not None:  # last: who waits on it sees the log and listeners done
            registration.reject(error)

    def _on_synced(self, event: ev.Synced) -> None:
        for registration in self._syncs.pop(event.token, ()):
            registration.accept()

    def _on_engine_error(self, event: ev.EngineErrorReceived) -> None:
        self.problem = f"{event.error.code}: {event.error.message}"
        log.warning("engine error: %s", self.problem)

    def _on_frame_rejected(self, event: ev.FrameRejected) -> None:
        log.warning("dropped a malformed message from the engine: %s", event.error)

    def _on_unknown_frame(self, event: ev.UnknownFrameReceived) -> None:
        frame = event.frame
        if frame.type == "functionregistered":  # 0.25 engines ack registrations
            registration = self.functions.get(str(frame.raw.get("id")))
            if registration is not None:
                registration.accept()
            return
        log.debug("ignored a frame of unknown type %r", frame.type)

    # -- registrations --------------------------------------------------------------------

    def _registrations(self) -> list[Registration]:
        return [*self.functions.values(), *self.triggers.values()]

    def _barrier(self, conn: Connection, now: float) -> None:
        """Ask the engine for a round trip covering the registrations not answered yet."""
        pending = [r for r in self._registrations() if r.state == "pending"]
        if pending:
            token = conn.sync()
            if token is not None:
                self._syncs[token] = pending

    def registered(self, conn: Connection, registration: Registration) -> None:
        """After a registration command (under the runtime's command): settle it
        with a round trip if the engine is ready, else at the next replay."""
        if self._announced:
            token = conn.sync()
            if token is not None:
                self._syncs[token] = [registration]

    def withdraw_all(self) -> None:
        for registration in self._registrations():
            registration.withdraw(shut_down=True)


_HANDLERS: dict[type, Callable[[Session, Any], None]] = {
    ev.InvocationRequested: Session._on_invocation,
    ev.TriggerRegistrationRequested: Session._on_binding,
    ev.TriggerUnregistrationRequested: Session._on_unbinding,
    ev.StateChanged: Session._on_state,
    ev.Connected: Session._on_connected,
    ev.Announced: Session._on_announced,
    ev.ConnectionFailedEvent: Session._on_failed,
    ev.FunctionRejected: Session._on_function_rejected,
    ev.TriggerRegistrationFailed: Session._on_trigger_failed,
    ev.Synced: Session._on_synced,
    ev.EngineErrorReceived: Session._on_engine_error,
    ev.FrameRejected: Session._on_frame_rejected,
    ev.UnknownFrameReceived: Session._on_unknown_frame,
}
