"""The engine core: connections and their leases, and the engine interface
(``EngineHost``) its worker modules are built on.

Nothing here touches a socket.  The server feeds each received text message to
``EngineCore.handle_text`` and calls ``EngineCore.disconnect`` exactly when the
socket is gone.  Every handler is synchronous: one message is processed
completely before the next one is read, which gives the engine's ordering
guarantees (registrations applied in arrival order, a ``reattach`` eviction
finished before the next frame) for free, and keeps routing an invocation down
to one dictionary lookup and one write.

Messages are decoded by ``Dispatcher``; the registrations live in
``Registry``, the invocations in ``Router``, the connections' ids, namespaces
and names in ``Leases``; the engine's own functions, channels, HTTP functions,
the queue and the RBAC gate are worker modules (``iii.testing._workers``).
The protocol it follows is described in docs/protocol.md.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine
from typing import Any, Optional, Protocol

import anyio
import anyio.abc
from anyio.abc import TaskGroup

from iii_protocol import RegistrationRejected, WorkerRegistered, encode_frame
from iii_protocol._json import JSON, JSONObject

from . import _jsonio as jsonio
from ._api import EngineHost, EngineWorker, InvokeGate, RemoteInvoker, WsRoute
from ._clock import Clock
from ._dispatch import Dispatcher
from ._leases import Leases
from ._options import EngineOptions
from ._records import (
    DEFAULT,
    Binding,
    BindingHook,
    Builtin,
    BuiltinResult,
    Call,
    ErrorDict,
    Policy,
    Transport,
    TriggerTypeEntry,
    Waiter,
    Worker,
)
from ._registry import Registry
from ._router import Router
from ._transcript import Transcript

__all__ = ["EngineCore", "Sockets"]

log = logging.getLogger("iii.testing")


class Sockets(Protocol):
    """What the core needs from the server for the worker modules' own listeners."""

    async def listen(
        self, name: str, scheme: str, host: Optional[str], port: int
    ) -> anyio.abc.Listener[anyio.abc.SocketStream]:
        """Bind a listener (the same port again after a restart) and publish its URL."""

    async def serve_websocket(
        self, stream: anyio.abc.SocketStream, route: WsRoute, core: EngineCore
    ) -> None:
        """Serve one accepted connection as a WebSocket answered by ``route``."""


class _NoServer:
    """The core alone (tests, fuzzing): plain listeners, no WebSocket serving."""

    async def listen(
        self, name: str, scheme: str, host: Optional[str], port: int
    ) -> anyio.abc.Listener[anyio.abc.SocketStream]:
        return await anyio.create_tcp_listener(local_host=host or "127.0.0.1", local_port=port)

    async def serve_websocket(
        self, stream: anyio.abc.SocketStream, route: WsRoute, core: EngineCore
    ) -> None:
        raise RuntimeError("WebSocket listeners need the engine's server (serve_engine)")


class EngineCore(EngineHost):
    """One engine run (a restart makes a new one); implements ``EngineHost``."""

    def __init__(
        self,
        options: EngineOptions,
        *,
        transcript: Optional[Transcript] = None,
        sockets: Optional[Sockets] = None,
    ) -> None:
        self.options = options
        self.transcript = transcript
        self._clock = options.clock
        self._sockets: Sockets = sockets or _NoServer()
        self.started_at_ms = self.now_ms()
        self.trigger_ack_timeout = options.trigger_ack_timeout
        self.leases = Leases()
        self.workers = self.leases.workers
        self.names = self.leases.names
        self.registry = Registry(
            notify=self.notify, functions_changed=self._functions_changed, now_ms=self.now_ms
        )
        self.functions = self.registry.functions
        self.builtins = self.registry.builtins
        self.trigger_types = self.registry.trigger_types
        self.bindings = self.registry.bindings
        self.services = self.registry.services
        self.router = Router(self.registry, spawn=self.spawn, relieve=self.relieve)
        self.pending = self.router.pending
        #: connections (or gates) the message being processed congested; the
        #: reader that produced it waits on them before reading on.
        self.congestion: list[Any] = []
        self.telemetry_frames = 0
        self.routes: dict[str, WsRoute] = {}
        self._listeners: list[anyio.abc.Listener[anyio.abc.SocketStream]] = []
        self._tg: Optional[TaskGroup] = None
        self._changed: Optional[anyio.Event] = None
        self.dispatch = Dispatcher(
            options,
            leases=self.leases,
            registry=self.registry,
            router=self.router,
            congestion=self.congestion,
            evict=self.evict,
            note=self.note,
        )
        #: ``handle_text(worker, text)``: process one message (the hot path)
        self.handle_text = self.dispatch.handle_text
        self.refuse = self.dispatch.refuse
        #: the worker modules of this run, by name
        self.modules: dict[str, EngineWorker] = {}
        for cls in options.modules:
            config = options.configs[cls.name]
            if config is not None:
                self.modules[cls.name] = cls(self, config)
        mods = list(self.modules.values())
        self._on_connected = [m.worker_connected for m in mods if m.overrides("worker_connected")]
        self._on_updated = [m.worker_updated for m in mods if m.overrides("worker_updated")]
        self._on_gone = [m.worker_disconnected for m in mods if m.overrides("worker_disconnected")]
        self._on_functions = [m.functions_changed for m in mods if m.overrides("functions_changed")]
        for module in mods:
            module.install()

    # -- lifecycle ---------------------------------------------------------------------

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Run the modules' background work until cancelled; then close them."""
        try:
            async with anyio.create_task_group() as tg:
                self._tg = tg
                for module in self.modules.values():
                    if module.overrides("start"):
                        await module.start()
                for module in self.modules.values():
                    if module.overrides("run"):
                        tg.start_soon(module.run)
                task_status.started()
        finally:
            for module in self.modules.values():
                module.close()
            with anyio.CancelScope(shield=True):
                for listener in self._listeners:
                    await listener.aclose()

    def module(self, name: str) -> Optional[EngineWorker]:
        """The worker module ``name`` of this run (None: not running)."""
        return self.modules.get(name)

    @property
    def clock(self) -> Clock:
        return self._clock

    def now_ms(self) -> int:
        """The engine clock's wall time in milliseconds since the epoch."""
        return int(self._clock.time() * 1000)

    def spawn(self, fn: Callable[..., Coroutine[Any, Any, Any]], *args: Any) -> None:
        if self._tg is None:
            raise RuntimeError("engine core is not running")
        self._tg.start_soon(fn, *args)

    async def relieve(self) -> None:
        """Wait for the connections the last synchronous step congested."""
        while self.congestion:
            items = self.congestion[:]
            self.congestion.clear()
            for item in items:
                await item.wait_relieved()

    def notify(self) -> None:
        """Wake everybody waiting for a registry change."""
        event = self._changed
        if event is not None:
            self._changed = None
            event.set()

    def changed(self) -> anyio.Event:
        """An event set at the next registry change (``notify``)."""
        if self._changed is None:
            self._changed = anyio.Event()
        return self._changed

    @property
    def bad_frames(self) -> int:
        """Frames refused so far (malformed, unknown type, missing a required field)."""
        return self.dispatch.bad_frames

    def _functions_changed(self) -> None:
        for hook in self._on_functions:
            hook()

    # -- connections (docs/protocol.md#session-lifecycle) -------------------------------

    def connect(
        self,
        transport: Transport,
        *,
        session: Optional[Policy] = None,
        listener: str = "main",
        worker_id: Optional[str] = None,
    ) -> Worker:
        """Register a new connection and greet it with ``workerregistered``
        (docs/protocol.md#new-connections)."""
        worker = Worker(
            transport, session=session, listener=listener, connected_at_ms=self.now_ms()
        )
        if worker_id is not None:
            worker.worker_id = worker_id
        self.leases.add(worker)
        greeting = WorkerRegistered(
            worker_id=worker.worker_id, reattach_token=worker.reattach_token
        )
        transport.send(encode_frame(greeting).encode(), False)
        for hook in self._on_connected:
            hook(worker)
        self.notify()
        return worker

    async def grace_timer(self, worker: Worker) -> None:
        """Resolve the namespace to ``default`` if no announce came in time."""
        await anyio.sleep(self.options.namespace_grace)
        if worker.namespace is None and not worker.closing:
            log.warning(
                "worker %s did not announce within %.3gs; using namespace 'default'",
                worker.worker_id,
                self.options.namespace_grace,
            )
            if self.leases.fix_namespace(worker, DEFAULT):
                self.notify()
            self.leases.drain(worker)
            await self.relieve()

    def close_worker(self, worker: Worker, code: Optional[int] = 1000) -> None:
        """Engine-initiated close: clean up now, then send Close."""
        worker.closing = True
        self.disconnect(worker)
        worker.transport.close(code)

    def evict(self, worker: Worker) -> None:
        """Retire a connection (reattach, fault injection): clean up, drop the socket."""
        worker.closing = True
        self.disconnect(worker)
        worker.transport.abort()

    def disconnect(self, w: Worker) -> None:
        """Section 4.8 cleanup, exactly once per connection."""
        if w.cleaned:
            return
        w.cleaned = True
        w.closing = True
        self.leases.release(w)
        self.registry.drop_worker(w)
        self.router.drop_worker(w)
        for hook in self._on_gone:
            hook(w)
        self.notify()

    def announce(self, w: Worker, fields: JSONObject) -> JSONObject:
        """``engine::workers::register`` for connection ``w`` (input already validated)."""
        namespace, name = self.leases.read_announce(w, fields)
        if self.leases.fix_namespace(w, namespace):
            self.notify()
        if name is not None:
            holder = self.leases.claim_name(w, name)
            if holder is not None:
                assert w.namespace is not None
                frame = RegistrationRejected(
                    code="WORKER_NAMESPACE_CONFLICT",
                    namespace=w.namespace,
                    worker_name=name,
                    owner_worker_id=holder.worker_id,
                )
                w.transport.send(encode_frame(frame).encode(), False)
                self.close_worker(w, None)
                return {"success": False}
        self.leases.drain(w)
        for hook in self._on_updated:
            hook(w)
        self.notify()
        return {"success": True}

    def iter_workers(self) -> list[Worker]:
        """The connected workers, as a list (safe to iterate while they change)."""
        return list(self.workers.values())

    def active_invocations(self) -> dict[str, int]:
        return self.router.active_invocations()

    # -- the engine interface (``EngineHost``) for worker modules ---------------------

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
        builtin = Builtin(
            function_id,
            handler,
            description,
            worker_name=worker_name,
            request_format=request_format,
            response_format=response_format,
            metadata=metadata,
        )
        self.builtins[function_id] = builtin
        self.notify()
        return builtin

    def unregister_function(self, function_id: str) -> None:
        if self.builtins.pop(function_id, None) is not None:
            self.notify()

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
        entry = TriggerTypeEntry(
            DEFAULT,
            type_id,
            description,
            None,
            trigger_request_format=configuration_schema,
            call_request_format=request_schema,
            worker_name=worker_name,
            on_register=on_register,
            on_unregister=on_unregister,
        )
        self.registry.add_engine_trigger_type(entry)
        return entry

    def bindings_of(self, type_id: str) -> list[Binding]:
        return self.registry.engine_bindings(type_id)

    def fire(self, binding: Binding, payload: JSON, *, on_done: Optional[Waiter] = None) -> None:
        self.router.invoke(
            binding.namespace,
            binding.function_id,
            payload,
            metadata=binding.metadata,
            on_done=on_done,
        )

    def fire_all(self, type_id: str, payload: JSON) -> int:
        bindings = self.registry.engine_bindings(type_id)
        for b in bindings:
            self.fire(b, payload)
        return len(bindings)

    def add_binding(self, binding: Binding) -> None:
        self.registry.add_binding(binding)

    def remove_binding(self, binding_id: str) -> bool:
        return self.registry.remove_binding(binding_id)

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
        self.router.invoke(
            namespace,
            function_id,
            data,
            metadata=metadata,
            traceparent=traceparent,
            baggage=baggage,
            on_done=on_done,
        )

    async def call(
        self, namespace: str, function_id: str, data: JSON, *, metadata: JSON = None
    ) -> tuple[JSON, Optional[ErrorDict]]:
        return await self.router.call(namespace, function_id, data, metadata=metadata)

    def reply(
        self,
        worker: Worker,
        invocation_id: str,
        function_id: str,
        result: JSON,
        error: Optional[ErrorDict],
    ) -> None:
        self.router.reply(worker, invocation_id, function_id, result, error)

    def send(self, worker: Worker, frame: JSONObject) -> None:
        worker.transport.send(jsonio.dumps(frame), False)

    async def open_listener(
        self, name: str, *, scheme: str = "http", host: Optional[str] = None, port: int = 0
    ) -> anyio.abc.Listener[anyio.abc.SocketStream]:
        listener = await self._sockets.listen(name, scheme, host, port)
        self._listeners.append(listener)
        return listener

    async def open_ws_listener(
        self, name: str, route: WsRoute, *, host: Optional[str] = None, port: int = 0
    ) -> None:
        listener = await self.open_listener(name, scheme="ws", host=host, port=port)
        serve = self._sockets.serve_websocket

        async def handle(stream: anyio.abc.SocketStream) -> None:
            await serve(stream, route, self)

        self.spawn(listener.serve, handle)

    def add_route(self, prefix: str, route: WsRoute) -> None:
        if prefix == "/" or not prefix.startswith("/"):
            raise ValueError(f"a route prefix starts with '/' and is not '/': {prefix!r}")
        self.routes[prefix] = route

    def find_route(self, path: str) -> Optional[WsRoute]:
        """The WebSocket route serving ``path`` (by prefix), if any."""
        for prefix, route in self.routes.items():
            if path.startswith(prefix):
                return route
        return None

    def set_invoke_gate(self, gate: Optional[InvokeGate]) -> None:
        self.dispatch.gate = gate

    def set_remote_invoker(self, invoker: Optional[RemoteInvoker]) -> None:
        self.router.remote_invoker = invoker
        self.registry.remote_functions = invoker is not None

    def note(self, conn: str, kind: str, info: str) -> None:
        if self.transcript is not None:
            self.transcript.record(conn, "in", kind, info)
