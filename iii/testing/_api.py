"""The engine interface: what an in-process worker module sees of the engine.

The reference engine is a core (``EngineCore``: connections and their leases,
the registry of functions, trigger types and bindings, invocation routing) and a
set of *worker modules*, each a subclass of ``EngineWorker`` that registers its
functions and trigger types through ``EngineHost``, the interface below.  The
engine's own functions (``engine::*``), channels, HTTP-invoked functions and
the in-memory queue are such modules (``iii.testing._workers``); the RBAC
listener plugs in its invoke gate the same way.

A module, in full::

    @attrs.frozen
    class TickerConfig:
        period: float = setting(1.0, seconds(positive=True), "seconds between ticks")

    class Ticker(EngineWorker):
        name = "ticker"                  # switch: serve_engine(ticker=False), --no-ticker
        switch = "ticker"
        worker_name = "iii-ticker"       # shown by engine::workers::list
        option_prefix = "ticker_"        # serve_engine(ticker_period=0.5), --ticker-period
        config_class = TickerConfig
        config: TickerConfig

        def install(self) -> None:      # when the engine (re)starts: register things
            self.function("ticker::count", self.count, "Ticks so far")
            self.trigger_type("tick", "Fires every period", on_register=self.check)
            self.ticks = 0

        def count(self, call: Call) -> JSON:
            return {"ticks": self.ticks}

        def check(self, binding: Binding) -> Optional[ErrorDict]:
            return None                  # or error_body(code, message) to refuse it

        async def run(self) -> None:    # background, cancelled when the engine stops
            while True:
                await self.host.clock.sleep(self.config.period)
                self.ticks += 1
                self.host.fire_all("tick", {"n": self.ticks})

Everything a module needs is importable from here (``EngineWorker``,
``EngineHost``, ``Call``, ``Binding``, ``BuiltinError``, ``error_body``,
``setting`` and the option checks ``seconds``, ``integer``, ``boolean``, ...).
Modules are listed in ``iii.testing._workers.STANDARD_WORKERS``; a user can add
more with ``serve_engine(workers=[Ticker])``.  Each engine run (``start``,
``restart``) builds fresh module instances: state is lost on restart, like the
real engine with in-memory adapters.

Rules a module follows: it is called on the engine's event loop only, never
blocks, and mutates the registry only through ``EngineHost`` methods; the
registry views (``workers``, ``functions``, ...) are read-only.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from typing import Any, ClassVar, Optional, Protocol, Union

import anyio.abc
import attrs

from iii_protocol import InvokeFunction
from iii_protocol._json import JSON, JSONObject

from ._checks import boolean, choice, integer, optional, seconds, setting, text
from ._clock import Clock
from ._records import (
    DEFAULT,
    Binding,
    BindingHook,
    Builtin,
    BuiltinError,
    BuiltinResult,
    Call,
    ErrorDict,
    FunctionEntry,
    TriggerTypeEntry,
    Waiter,
    Worker,
    error_body,
    new_id,
)

__all__ = [
    "DEFAULT",
    "JSON",
    "Binding",
    "BuiltinError",
    "Call",
    "Clock",
    "EngineHost",
    "EngineWorker",
    "ErrorDict",
    "InvokeGate",
    "MessageHandler",
    "NoConfig",
    "RemoteInvoker",
    "RouteSocket",
    "Worker",
    "WsRoute",
    "boolean",
    "choice",
    "error_body",
    "integer",
    "new_id",
    "optional",
    "seconds",
    "setting",
    "text",
]

MessageHandler = Callable[[str, Union[str, bytes]], Optional[Awaitable[None]]]


class RouteSocket(Protocol):
    """An upgraded WebSocket on one of the engine's listeners, as a route serves it."""

    label: str
    #: the peer's address (``ip:port``) and the upgrade request's headers
    #: (lower-case names; repeated ones joined with ``", "``)
    remote_addr: str
    headers: Mapping[str, str]

    async def read_loop(self, handler: MessageHandler) -> None:
        """Deliver every message (``"text"``/``"binary"``, payload) until the socket closes."""

    def send_message(self, kind: str, payload: Union[str, bytes]) -> None:
        """Queue a text (``str``) or binary message."""

    async def wait_relieved(self) -> None:
        """Wait while the socket's outbox is over its high-water mark."""

    def close(self, code: Optional[int]) -> None:
        """Send a Close frame and stop reading soon."""


#: ``route(path, query)``: ``(status, body)`` refuses the upgrade with that HTTP
#: response; ``(label, serve)`` accepts it and ``await serve(socket)`` serves it
#: (``label`` names the connection in the transcript).
WsRoute = Callable[
    [str, Mapping[str, list[str]]],
    Union[tuple[int, bytes], tuple[str, Callable[[RouteSocket], Awaitable[None]]]],
]

#: ``gate(worker, frame, namespace, invocation_id, raw)`` for a call from a
#: connection with a ``Policy``: True when the gate answered the call itself.
InvokeGate = Callable[[Worker, InvokeFunction, str, Optional[str], JSONObject], bool]

#: Runs a function registered with an HTTP ``invocation``: ``(entry,
#: invocation_id, data, traceparent, baggage) -> (result, error)``.
RemoteInvoker = Callable[
    [FunctionEntry, str, JSON, Optional[str], Optional[str]],
    Awaitable[tuple[JSON, Optional[ErrorDict]]],
]


class EngineHost(Protocol):
    """The engine, as a worker module uses it (``EngineCore`` implements it)."""

    # -- registry views (read-only) ------------------------------------------------

    #: connected workers by worker id
    workers: dict[str, Worker]
    #: functions registered by workers, by (namespace, function id)
    functions: dict[tuple[str, str], FunctionEntry]
    #: functions of worker modules (namespace ``default``), by id
    builtins: dict[str, Builtin]
    #: trigger types by (namespace, type id)
    trigger_types: dict[tuple[str, str], TriggerTypeEntry]
    #: bindings by id
    bindings: dict[str, Binding]
    #: announced names by (namespace, name)
    names: dict[tuple[str, str], Worker]
    #: when this engine run started (engine clock, ms since the epoch)
    started_at_ms: int
    #: how long ``engine::register_trigger`` waits for a provider's ack (s)
    trigger_ack_timeout: float

    @property
    def clock(self) -> Clock:
        """The engine's clock (real time, or the test's ``ManualClock``)."""

    def active_invocations(self) -> dict[str, int]:
        """Invocations running on each worker (by worker id)."""

    def module(self, name: str) -> Optional[EngineWorker]:
        """Another worker module of this run (None: switched off or unknown)."""

    # -- functions and trigger types -----------------------------------------------

    def register_function(
        self,
        function_id: str,
        handler: Callable[[Call], BuiltinResult],
        description: str,
        *,
        worker_name: str,
        request_format: JSON = None,
        response_format: JSON = None,
        metadata: JSON = None,
    ) -> Builtin:
        """Provide ``function_id`` in namespace ``default``.

        ``handler(call)`` runs on the engine's loop; it returns the result (a
        JSON value, or an awaitable of one) or raises ``BuiltinError(code,
        message)``.  A worker that registers the same id shadows it.
        """

    def unregister_function(self, function_id: str) -> None:
        """Withdraw a function this module provides."""

    def register_trigger_type(
        self,
        type_id: str,
        description: str,
        *,
        worker_name: str,
        on_register: Optional[BindingHook] = None,
        on_unregister: Optional[Callable[[Binding], None]] = None,
        configuration_schema: JSON = None,
        request_schema: JSON = None,
    ) -> TriggerTypeEntry:
        """Provide the trigger type ``type_id`` in namespace ``default``.

        Every binding of the type (from any worker, or ``engine::register_trigger``)
        is passed to ``on_register``, which accepts it (None) or refuses it (an
        ``ErrorDict``: the binder gets that error); ``on_unregister`` hears when
        it goes.  Fire with ``fire``/``fire_all``.
        """

    def bindings_of(self, type_id: str) -> list[Binding]:
        """The bindings of ``type_id`` delivered to the engine (this module)."""

    def fire(self, binding: Binding, payload: JSON, *, on_done: Optional[Waiter] = None) -> None:
        """Run the binding's function with ``payload`` (and the binding's metadata)."""

    def fire_all(self, type_id: str, payload: JSON) -> int:
        """``fire`` every binding of ``type_id``; returns how many."""

    def add_binding(self, binding: Binding) -> None:
        """Record a binding (a durable one: ``owner=None``) and deliver it."""

    def remove_binding(self, binding_id: str) -> bool:
        """Remove a binding (its provider is told); False when unknown."""

    # -- invocations and frames ----------------------------------------------------

    def invoke(
        self,
        namespace: str,
        function_id: str,
        data: JSON,
        *,
        metadata: JSON = None,
        traceparent: Optional[str] = None,
        baggage: Optional[str] = None,
        on_done: Optional[Waiter] = None,
    ) -> None:
        """Call a function as the engine (fresh invocation id, no caller);
        ``on_done(result, error)`` gets the outcome (default: failures are logged)."""

    async def call(
        self, namespace: str, function_id: str, data: JSON, *, metadata: JSON = None
    ) -> tuple[JSON, Optional[ErrorDict]]:
        """``invoke`` and wait for the outcome: ``(result, error)``."""

    def reply(
        self,
        worker: Worker,
        invocation_id: str,
        function_id: str,
        result: JSON,
        error: Optional[ErrorDict],
    ) -> None:
        """Send an ``invocationresult`` to a worker."""

    def send(self, worker: Worker, frame: JSONObject) -> None:
        """Send any frame to a worker."""

    async def relieve(self) -> None:
        """Wait for the connections the last synchronous step congested (call it
        after routing from a background task, before routing more)."""

    def announce(self, worker: Worker, fields: JSONObject) -> JSONObject:
        """Apply a worker's announce (``engine::workers::register``): metadata,
        namespace, name lease; returns the builtin's result."""

    def notify(self) -> None:
        """Wake everybody waiting for a registry change (``Engine.wait_for``)."""

    # -- tasks, listeners, routes, plug points ---------------------------------------

    def spawn(self, fn: Callable[..., Coroutine[Any, Any, Any]], *args: Any) -> None:
        """Run ``fn(*args)`` in the engine run's task group (cancelled at stop)."""

    async def open_listener(
        self, name: str, *, scheme: str = "http", host: Optional[str] = None, port: int = 0
    ) -> anyio.abc.Listener[anyio.abc.SocketStream]:
        """A TCP listener of this module's own (e.g. an HTTP server).

        It binds the engine's host unless told otherwise; ``port=0`` picks a
        port once, and a restart binds the same one again.  Its URL
        (``scheme://host:port``) is ``Engine.urls[name]`` and is printed by
        ``python -m iii.testing``.  The engine closes it when the run stops.
        """

    async def open_ws_listener(
        self, name: str, route: WsRoute, *, host: Optional[str] = None, port: int = 0
    ) -> None:
        """A WebSocket listener of this module's own (e.g. a client-facing stream
        socket): every upgrade on it, whatever its path, goes to ``route``, through
        the engine's handshake, framing and transcript.  Port and URL
        (``ws://host:port``, ``Engine.urls[name]``) as for ``open_listener``."""

    def add_route(self, prefix: str, route: WsRoute) -> None:
        """Serve WebSocket upgrades whose path starts with ``prefix`` on the
        engine's listeners (``/ws/channels/`` is the channels module's)."""

    def set_invoke_gate(self, gate: Optional[InvokeGate]) -> None:
        """Check every call from a connection that has a ``Policy`` (RBAC)."""

    def set_remote_invoker(self, invoker: Optional[RemoteInvoker]) -> None:
        """Run functions registered with an HTTP ``invocation``; without one such
        registrations are dropped, like the real engine without ``http_functions``."""

    # -- log and transcript ----------------------------------------------------------

    def note(self, conn: str, kind: str, info: str) -> None:
        """Add an entry to the transcript (``conn``: a worker id or a label)."""


@attrs.frozen
class NoConfig:
    """The configuration of a module without options."""


class EngineWorker:
    """Base class of a worker module (see the module docstring for an example).

    Class attributes:
        name: the module's name (``Engine.module(name)``); unique.
        switch: when set, the boolean engine option (and ``--no-<switch>`` CLI
            flag) that turns the module off; None: always installed.
        worker_name: the worker its functions and trigger types belong to in
            ``engine::workers::list`` / ``engine::functions::list``.
        option_prefix: prefix of its options' engine names.
        config_class: an attrs class whose fields (made with ``setting``) are
            its options; the module gets an instance as ``self.config``.

    Methods to override (all optional): ``install`` (register functions,
    trigger types, routes, plug points: called once per engine run, when the
    core is built, before any connection; nothing runs yet, so no ``spawn``
    there), ``start`` (open listeners whose URLs must be known when the engine
    has started; ``spawn`` works), ``run`` (background work, started with the
    run and cancelled at its end: open listeners and ``spawn`` tasks from here
    or from handlers),
    ``close`` (release resources after ``run`` ended), and the hooks
    ``worker_connected``, ``worker_updated`` (announce), ``worker_disconnected``
    and ``functions_changed``.
    """

    name: ClassVar[str] = ""
    switch: ClassVar[Optional[str]] = None
    worker_name: ClassVar[str] = "iii-engine"
    option_prefix: ClassVar[str] = ""
    config_class: ClassVar[type[Any]] = NoConfig

    def __init__(self, host: EngineHost, config: Any) -> None:
        self.host = host
        self.config = config
        self.log = logging.getLogger(f"iii.testing.{self.name}" if self.name else "iii.testing")

    def install(self) -> None:
        """Register functions, trigger types, routes."""

    async def start(self) -> None:
        """Open the module's listeners: the engine counts as started (``serve_engine``
        returns, the CLI prints the URLs) once every module's ``start`` returned."""

    async def run(self) -> None:
        """Background work for the engine run (return when there is none)."""

    def close(self) -> None:
        """Release what the module holds (after ``run`` was cancelled)."""

    def worker_connected(self, worker: Worker) -> None:
        """A connection was accepted (before its announce)."""

    def worker_updated(self, worker: Worker) -> None:
        """A worker announced itself (name, namespace, metadata)."""

    def worker_disconnected(self, worker: Worker) -> None:
        """A connection ended; its registrations are already gone."""

    def functions_changed(self) -> None:
        """The set of functions registered by workers changed."""

    # -- helpers -----------------------------------------------------------------

    def function(
        self,
        function_id: str,
        handler: Callable[[Call], BuiltinResult],
        description: str,
        **fields: Any,
    ) -> Builtin:
        """``host.register_function`` under this module's worker name."""
        return self.host.register_function(
            function_id, handler, description, worker_name=self.worker_name, **fields
        )

    def trigger_type(self, type_id: str, description: str, **fields: Any) -> TriggerTypeEntry:
        """``host.register_trigger_type`` under this module's worker name."""
        return self.host.register_trigger_type(
            type_id, description, worker_name=self.worker_name, **fields
        )

    @classmethod
    def overrides(cls, hook: str) -> bool:
        """Whether this module implements ``hook`` (the engine calls only those)."""
        return getattr(cls, hook) is not getattr(EngineWorker, hook)
