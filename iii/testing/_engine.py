"""The reference engine's logic: registries, routing, builtins, disconnect cleanup.

Nothing here touches a socket.  A connection is a ``Worker`` holding a
``Transport`` (anything with ``send``/``close``/``abort``); the server feeds each
received text message to ``EngineCore.handle_text`` and calls
``EngineCore.disconnect`` exactly when the socket is gone.  Every handler is
synchronous: one message is processed completely before the next one is read,
which gives the engine's ordering guarantees (registrations applied in arrival
order, a ``reattach`` eviction finished before the next frame) for free, and
keeps routing an invocation down to one dictionary lookup and one write.

Section numbers refer to PROTOCOL.md.
"""

from __future__ import annotations

import inspect
import logging
import os
import re
import time
import unicodedata
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from typing import Any, Optional, Protocol, TypeVar, Union

import anyio
from anyio.abc import TaskGroup
from cattrs.errors import BaseValidationError

from iii_protocol import (
    ANNOUNCE_FUNCTION_ID,
    CALLER_WORKER_ID_KEY,
    HttpInvocationRef,
    InvocationResult,
    InvokeFunction,
    Reattach,
    RegisterFunction,
    RegisterService,
    RegisterTrigger,
    RegisterTriggerType,
    RegistrationRejected,
    TriggerActionEnqueue,
    TriggerActionVoid,
    TriggerRegistrationResult,
    UnregisterFunction,
    UnregisterTrigger,
    WorkerRegistered,
    encode_frame,
    from_json_value,
)
from iii_protocol._json import JSON, JSONObject

from . import _jsonio as jsonio
from ._channels import ChannelRegistry
from ._options import check_option
from ._rbac import Session
from ._transcript import Transcript

__all__ = [
    "Binding",
    "Builtin",
    "BuiltinError",
    "Call",
    "EngineCore",
    "EngineOptions",
    "FunctionEntry",
    "Pending",
    "ResultRule",
    "Transport",
    "TriggerTypeEntry",
    "Worker",
    "canonical_uuid",
    "error_body",
]

log = logging.getLogger("iii.testing")

T = TypeVar("T")
ErrorDict = dict[str, JSON]
#: Called once with (result, error) when an engine-made invocation ends.
Waiter = Callable[[JSON, Optional[ErrorDict]], None]

QUEUE_FUNCTION_ID = "engine::queue::enqueue"
WORKERS_AVAILABLE = "engine::workers-available"
FUNCTIONS_AVAILABLE = "engine::functions-available"
DEFAULT = "default"

#: Registrations buffered before the namespace is known; past this the reader
#: pauses until the namespace resolves (announce or grace timer).
BACKLOG_LIMIT = 65536

_DECODE_ERRORS = (BaseValidationError, ValueError, TypeError, KeyError, AttributeError)

_CANONICAL_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_UUID_HEX = re.compile(r"[0-9a-fA-F]{32}")
_UUID_HYPHENATED = re.compile(
    r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
)
_BIDI_CONTROLS = frozenset(
    "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
)


def canonical_uuid(text: str) -> Optional[str]:
    """The lowercase hyphenated form of a UUID in any text form the ``uuid`` crate
    parses (hyphenated, simple, braced, URN), or None."""
    if len(text) == 36 and _CANONICAL_UUID.fullmatch(text):
        return text
    body = text
    if body.startswith("urn:uuid:"):
        body = body[9:]
    elif body.startswith("{") and body.endswith("}"):
        body = body[1:-1]
    if _UUID_HYPHENATED.fullmatch(body) or _UUID_HEX.fullmatch(body):
        return str(uuid.UUID(body))
    return None


def new_id() -> str:
    return str(uuid.uuid4())


def error_body(code: str, message: str) -> ErrorDict:
    return {"code": code, "message": message}


def sanitize_text(value: Optional[str], limit: int = 280) -> Optional[str]:
    """Strip control and bidi characters, cap the length, trim (announce fields)."""
    if value is None:
        return None
    cleaned = "".join(
        ch for ch in value if ch not in _BIDI_CONTROLS and unicodedata.category(ch) != "Cc"
    )
    cleaned = cleaned[:limit].strip()
    return cleaned or None


_dumps = jsonio.dumps


#: The engine (serde_json) refuses JSON nested deeper than this: the frame is a
#: "json decode error".  Accepting more would also break our own writes (orjson
#: stops at 255 levels), e.g. of ``engine::functions::list`` for everybody.
MAX_JSON_DEPTH = 127


def json_too_deep(value: JSON, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether ``value`` nests more than ``limit`` arrays/objects (itself included)."""
    stack: list[tuple[JSON, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Iterable[JSON] = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))
    return False


def _bracket_heavy(text: Union[str, bytes]) -> bool:
    """Cheap filter: fewer brackets than the depth limit cannot nest too deep."""
    if isinstance(text, str):
        return text.count("[") + text.count("{") > MAX_JSON_DEPTH
    return text.count(b"[") + text.count(b"{") > MAX_JSON_DEPTH


def _encode(frame: Any) -> bytes:
    return encode_frame(frame).encode()


class Transport(Protocol):
    """What the engine needs from a connection's socket."""

    remote_ip: str

    def send(self, data: bytes, throttle: bool) -> None:
        """Queue one text message (UTF-8 JSON).  Never blocks.

        ``throttle``: when this connection is congested, the sender of the
        message being processed should wait for it to drain (requests); results
        and replies to the sender itself pass ``False``.
        """

    def close(self, code: Optional[int]) -> None:
        """Send a Close frame (``None``: without a status code), then end."""

    def abort(self) -> None:
        """Drop the connection now (no Close frame)."""


# -- records ---------------------------------------------------------------------


class Worker:
    """One connection on the control socket (``/``)."""

    __slots__ = (
        "announced",
        "backlog",
        "bindings",
        "cleaned",
        "closing",
        "connected_at_ms",
        "description",
        "features",
        "functions",
        "isolation",
        "listener",
        "name",
        "namespace",
        "os",
        "pid",
        "reattach_token",
        "remote_ip",
        "resolved",
        "runtime",
        "session",
        "telemetry",
        "transport",
        "trigger_types",
        "version",
        "worker_id",
    )

    def __init__(
        self,
        transport: Transport,
        *,
        session: Optional[Session],
        listener: str,
    ) -> None:
        self.worker_id = new_id()
        self.reattach_token = new_id()
        self.transport = transport
        self.session = session
        self.listener = listener
        self.remote_ip = transport.remote_ip
        self.namespace: Optional[str] = None
        self.backlog: list[tuple[Callable[[Worker, Any], None], Any]] = []
        self.resolved: Optional[anyio.Event] = None
        self.closing = False
        self.cleaned = False
        self.connected_at_ms = int(time.time() * 1000)
        self.announced = False
        self.name: Optional[str] = None
        self.description: Optional[str] = None
        self.version: Optional[str] = None
        self.runtime: Optional[str] = None
        self.os: Optional[str] = None
        self.pid: Optional[int] = None
        self.isolation: Optional[str] = None
        self.telemetry: JSON = None
        self.features: Optional[list[str]] = None
        self.functions: set[tuple[str, str]] = set()
        self.trigger_types: set[tuple[str, str]] = set()
        self.bindings: set[str] = set()

    @property
    def live(self) -> bool:
        return not self.closing

    async def wait_relieved(self) -> None:
        """Backpressure gate: wait until the namespace is resolved."""
        if self.namespace is None and not self.closing:
            if self.resolved is None:
                self.resolved = anyio.Event()
            await self.resolved.wait()

    def __repr__(self) -> str:
        return f"<Worker {self.worker_id} name={self.name!r} ns={self.namespace!r}>"


class FunctionEntry:
    __slots__ = (
        "description",
        "handler_id",
        "http",
        "id",
        "metadata",
        "namespace",
        "owner",
        "registered_at_ms",
        "request_format",
        "response_format",
    )

    def __init__(
        self,
        namespace: str,
        function_id: str,
        owner: Worker,
        frame: RegisterFunction,
    ) -> None:
        self.namespace = namespace
        self.id = function_id
        self.handler_id = frame.id
        self.owner = owner
        self.description = frame.description
        self.request_format = frame.request_format
        self.response_format = frame.response_format
        self.metadata = frame.metadata
        self.http: Optional[HttpInvocationRef] = frame.invocation
        self.registered_at_ms = int(time.time() * 1000)


class TriggerTypeEntry:
    __slots__ = (
        "call_request_format",
        "description",
        "id",
        "namespace",
        "provider",
        "trigger_request_format",
        "worker_name",
    )

    def __init__(
        self,
        namespace: str,
        type_id: str,
        description: str,
        provider: Optional[Worker],
        *,
        trigger_request_format: JSON = None,
        call_request_format: JSON = None,
        worker_name: Optional[str] = None,
    ) -> None:
        self.namespace = namespace
        self.id = type_id
        self.description = description
        #: None: provided by the engine itself.
        self.provider = provider
        self.trigger_request_format = trigger_request_format
        self.call_request_format = call_request_format
        self.worker_name = worker_name


class Binding:
    __slots__ = (
        "acked",
        "config",
        "created_at_ms",
        "function_id",
        "home_namespace",
        "id",
        "metadata",
        "namespace",
        "owner",
        "provider",
        "rejected_by",
        "trigger_namespace",
        "trigger_type",
        "waiter",
    )

    def __init__(
        self,
        binding_id: str,
        trigger_type: str,
        function_id: str,
        config: JSON,
        metadata: JSON,
        *,
        namespace: str,
        trigger_namespace: Optional[str],
        home_namespace: str,
        owner: Optional[Worker],
    ) -> None:
        self.id = binding_id
        self.trigger_type = trigger_type
        self.function_id = function_id
        self.config = config
        self.metadata = metadata
        #: namespace the target function resolves in
        self.namespace = namespace
        #: explicit provider namespace (strict) or None (home, then default)
        self.trigger_namespace = trigger_namespace
        self.home_namespace = home_namespace
        #: registering connection; None for durable ``engine::register_trigger`` bindings
        self.owner = owner
        #: where it is delivered; None = parked
        self.provider: Optional[TriggerTypeEntry] = None
        self.rejected_by: Optional[TriggerTypeEntry] = None
        self.acked = False
        #: ``engine::register_trigger`` waiting for the provider's ack
        self.waiter: Optional[Callable[[Optional[ErrorDict]], None]] = None
        self.created_at_ms = int(time.time() * 1000)


class Pending:
    """An invocation the engine has sent to a handler and not seen answered."""

    __slots__ = (
        "baggage",
        "caller",
        "function_id",
        "handler",
        "reply_id",
        "traceparent",
        "waiter",
    )

    def __init__(
        self,
        caller: Optional[Worker],
        reply_id: Optional[str],
        function_id: str,
        handler: Optional[Worker],
        traceparent: Optional[str],
        baggage: Optional[str],
        waiter: Optional[Waiter],
    ) -> None:
        self.caller = caller
        self.reply_id = reply_id
        self.function_id = function_id
        self.handler = handler
        self.traceparent = traceparent
        self.baggage = baggage
        self.waiter = waiter


class ResultRule:
    """Fault injection: delay or withhold the results of matching invocations.

    Created by ``Engine.delay_results`` / ``Engine.withhold_results``.
    """

    def __init__(
        self, function_id: Optional[str], delay: Optional[float], count: Optional[int]
    ) -> None:
        self.function_id = function_id
        self.delay = delay
        self.remaining = count
        self.active = True
        self.matched = 0
        self.held: list[tuple[Pending, JSON, Optional[ErrorDict]]] = []
        self._core: Optional[EngineCore] = None

    def matches(self, function_id: str) -> bool:
        return self.active and (self.function_id is None or self.function_id == function_id)

    def take(self) -> None:
        self.matched += 1
        if self.remaining is not None:
            self.remaining -= 1
            if self.remaining <= 0:
                self.active = False

    def cancel(self) -> None:
        """Stop matching new results (held ones stay held until ``release``)."""
        self.active = False

    def release(self) -> int:
        """Deliver every withheld result now; returns how many were delivered."""
        held, self.held = self.held, []
        core = self._core
        if core is None:
            return 0
        for pending, result, error in held:
            core.complete(pending, result, error)
        return len(held)


class BuiltinError(Exception):
    """An engine builtin failed with ``{code, message}``."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message

    def body(self) -> ErrorDict:
        return error_body(self.code, self.message)


class Call:
    """The invocation a builtin runs for."""

    __slots__ = ("baggage", "caller", "core", "data", "function_id", "metadata", "traceparent")

    def __init__(
        self,
        core: EngineCore,
        function_id: str,
        caller: Optional[Worker],
        data: JSON,
        traceparent: Optional[str],
        baggage: Optional[str],
        metadata: JSON,
    ) -> None:
        self.core = core
        self.function_id = function_id
        self.caller = caller
        self.data = data
        self.traceparent = traceparent
        self.baggage = baggage
        self.metadata = metadata


BuiltinResult = Union[JSON, Awaitable[JSON]]


class Builtin:
    """An engine-owned function in ``default`` (section 8)."""

    __slots__ = ("description", "fn", "id", "metadata", "request_format", "worker_name")

    def __init__(
        self,
        function_id: str,
        fn: Callable[[Call], BuiltinResult],
        description: str,
        *,
        worker_name: str = "iii-engine",
        request_format: JSON = None,
        metadata: JSON = None,
    ) -> None:
        self.id = function_id
        self.fn = fn
        self.description = description
        self.worker_name = worker_name
        self.request_format = request_format
        self.metadata = metadata


class EngineOptions:
    """Engine behaviour knobs (all durations in seconds).

    ``lenient_frames``: read a missing ``invokefunction.data`` or
    ``registertrigger.config`` as ``null``.  The real engine requires both and
    drops such a frame (the caller of a dropped call times out); so does this
    one by default, and says so in its log and transcript.  The official Python
    SDKs omit them for a None payload / no config: set this to run them anyway.
    """

    __slots__ = (
        "channel_sweep_interval",
        "channel_ttl",
        "functions_poll_interval",
        "lenient_frames",
        "namespace_grace",
        "queue",
        "queue_backoff",
        "queue_max_attempts",
        "trigger_ack_timeout",
    )

    def __init__(
        self,
        *,
        namespace_grace: Optional[float] = None,
        queue: bool = True,
        queue_max_attempts: int = 3,
        queue_backoff: float = 0.1,
        trigger_ack_timeout: float = 10.0,
        functions_poll_interval: float = 5.0,
        channel_ttl: float = 300.0,
        channel_sweep_interval: float = 60.0,
        lenient_frames: bool = False,
    ) -> None:
        if namespace_grace is None:
            env = os.environ.get("III_NAMESPACE_GRACE_MS")
            namespace_grace = int(env) / 1000 if env and env.strip().isdigit() else 5.0
        self.namespace_grace = check_option("namespace_grace", namespace_grace)
        self.queue = check_option("queue", queue)
        self.queue_max_attempts = check_option("queue_max_attempts", queue_max_attempts)
        self.queue_backoff = check_option("queue_backoff", queue_backoff)
        self.trigger_ack_timeout = check_option("trigger_ack_timeout", trigger_ack_timeout)
        self.functions_poll_interval = check_option(
            "functions_poll_interval", functions_poll_interval
        )
        self.channel_ttl = check_option("channel_ttl", channel_ttl)
        self.channel_sweep_interval = check_option("channel_sweep_interval", channel_sweep_interval)
        self.lenient_frames = check_option("lenient_frames", lenient_frames)


# -- the in-memory queue (the ``engine::queue::enqueue`` provider) ---------------


class MemoryQueue:
    """Delivers enqueued calls to their function, after the receipt went out.

    Failed deliveries (an error result, or no such function yet) are retried
    with exponential backoff; after ``max_attempts`` the job is dead-lettered.
    """

    def __init__(self, core: EngineCore, max_attempts: int, backoff: float) -> None:
        self.core = core
        self.max_attempts = max_attempts
        self.backoff = backoff
        self.jobs: deque[JSONObject] = deque()
        self.dead_letters: list[JSONObject] = []
        self.delivered = 0
        self.in_flight = 0
        self._wake: Optional[anyio.Event] = None

    def push(self, job: JSONObject) -> None:
        self.jobs.append(job)
        if self._wake is not None:
            self._wake.set()
            self._wake = None

    async def run(self) -> None:
        core = self.core
        while True:
            if not self.jobs:
                self._wake = anyio.Event()
                await self._wake.wait()
                continue
            # Let the receipt reach the caller first: delivery is really "later".
            await anyio.lowlevel.checkpoint()
            batch = 0
            while self.jobs and batch < 256:
                job = self.jobs.popleft()
                batch += 1
                self._deliver(job)
            await core.relieve()

    def _deliver(self, job: JSONObject) -> None:
        self.in_flight += 1
        ns = job.get("namespace")
        function_id = job["function_id"]
        tp = job.get("traceparent")
        bg = job.get("baggage")
        self.core.invoke_internal(
            ns if isinstance(ns, str) else DEFAULT,
            function_id if isinstance(function_id, str) else "",
            job.get("data"),
            traceparent=tp if isinstance(tp, str) else None,
            baggage=bg if isinstance(bg, str) else None,
            on_done=lambda result, error: self._done(job, error),
        )

    def _done(self, job: JSONObject, error: Optional[ErrorDict]) -> None:
        self.in_flight -= 1
        if error is None:
            self.delivered += 1
            return
        attempts = job.get("attempts")
        attempts = (attempts if isinstance(attempts, int) else 0) + 1
        job["attempts"] = attempts
        if attempts >= self.max_attempts:
            job["error"] = error
            log.warning(
                "queue %s: giving up on %s after %d attempts: %s",
                job.get("queue"),
                job.get("function_id"),
                attempts,
                error.get("message"),
            )
            self.dead_letters.append(job)
            self.core.notify()
            return
        delay = self.backoff * (2 ** (attempts - 1))
        self.core.spawn(self._retry, job, delay)

    async def _retry(self, job: JSONObject, delay: float) -> None:
        await anyio.sleep(delay)
        self.push(job)


# -- the engine ------------------------------------------------------------------


class EngineCore:
    """Registries and routing for one engine run (a restart makes a new one)."""

    def __init__(
        self,
        options: EngineOptions,
        *,
        result_rules: Optional[list[ResultRule]] = None,
        transcript: Optional[Transcript] = None,
    ) -> None:
        from . import _builtins

        self.options = options
        self.workers: dict[str, Worker] = {}
        self.functions: dict[tuple[str, str], FunctionEntry] = {}
        self.builtins: dict[str, Builtin] = {}
        self.trigger_types: dict[tuple[str, str], TriggerTypeEntry] = {}
        self.bindings: dict[str, Binding] = {}
        self.bindings_by_type: dict[str, dict[str, Binding]] = {}
        self.pending: dict[str, Pending] = {}
        self.names: dict[tuple[str, str], Worker] = {}
        self.services: dict[tuple[str, str], JSONObject] = {}
        self.channels = ChannelRegistry()
        self.result_rules: list[ResultRule] = result_rules if result_rules is not None else []
        #: connections (or gates) the message being processed congested; the
        #: reader that produced it waits on them before reading on.
        self.congestion: list[Any] = []
        self.queue: Optional[MemoryQueue] = (
            MemoryQueue(self, options.queue_max_attempts, options.queue_backoff)
            if options.queue
            else None
        )
        self.telemetry_frames = 0
        self.bad_frames = 0
        self.transcript = transcript
        self._tg: Optional[TaskGroup] = None
        self._changed: Optional[anyio.Event] = None
        self._functions_dirty = False
        self._handlers: dict[str, Callable[[Worker, JSONObject], None]] = {
            "invokefunction": self._on_invoke,
            "invocationresult": self._on_result,
            "registerfunction": self._registration(RegisterFunction, self._apply_register_function),
            "unregisterfunction": self._registration(
                UnregisterFunction, self._apply_unregister_function
            ),
            "registertriggertype": self._registration(
                RegisterTriggerType, self._apply_register_trigger_type
            ),
            # ``config`` is required (any JSON, null included) like the real
            # engine's; the official SDKs omit it when the user gave none (Python
            # exclude_none, Node undefined): ``lenient_frames`` reads it as null.
            "registertrigger": self._registration(
                RegisterTrigger, self._apply_register_trigger, required=("config",)
            ),
            "unregistertrigger": self._registration(
                UnregisterTrigger, self._apply_unregister_trigger
            ),
            "registerservice": self._registration(RegisterService, self._apply_register_service),
            "triggerregistrationresult": self._on_trigger_result,
            "ping": self._on_ping,
            "pong": self._on_ignored,
            "reattach": self._on_reattach,
            # Engine->worker frames sent back by a confused peer: parsed, ignored.
            "workerregistered": self._on_ignored,
            "registrationrejected": self._on_ignored,
            "error": self._on_ignored,
        }
        for entry in (
            TriggerTypeEntry(
                DEFAULT,
                WORKERS_AVAILABLE,
                "Fires when workers connect, disconnect or update their metadata",
                None,
                worker_name="iii-engine",
            ),
            TriggerTypeEntry(
                DEFAULT,
                FUNCTIONS_AVAILABLE,
                "Fires when the set of registered functions changes",
                None,
                worker_name="iii-engine",
            ),
        ):
            self.trigger_types[(DEFAULT, entry.id)] = entry
        _builtins.install(self)

    # -- lifecycle -------------------------------------------------------------

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Run the background tasks (queue, sweeps, polls) until cancelled."""
        try:
            async with anyio.create_task_group() as tg:
                self._tg = tg
                if self.queue is not None:
                    tg.start_soon(self.queue.run)
                tg.start_soon(self._functions_poller)
                tg.start_soon(self._channel_sweeper)
                task_status.started()
        finally:
            self.channels.close_all()

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
        if self._changed is None:
            self._changed = anyio.Event()
        return self._changed

    # -- connections -----------------------------------------------------------

    def connect(
        self,
        transport: Transport,
        *,
        session: Optional[Session] = None,
        listener: str = "main",
        worker_id: Optional[str] = None,
    ) -> Worker:
        """Register a new connection and greet it with ``workerregistered`` (section 4.1)."""
        worker = Worker(transport, session=session, listener=listener)
        if worker_id is not None:
            worker.worker_id = worker_id
        self.workers[worker.worker_id] = worker
        transport.send(
            _encode(
                WorkerRegistered(worker_id=worker.worker_id, reattach_token=worker.reattach_token)
            ),
            False,
        )
        self._fire_engine_trigger(
            WORKERS_AVAILABLE, {"event": "worker_connected", "worker_id": worker.worker_id}
        )
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
            self._fix_namespace(worker, DEFAULT)
            self._drain(worker)
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
        if self.workers.get(w.worker_id) is w:
            del self.workers[w.worker_id]
        w.backlog = []
        if w.resolved is not None:
            w.resolved.set()
        # Functions it registered (only where it is still the owner).
        for key in w.functions:
            entry = self.functions.get(key)
            if entry is not None and entry.owner is w:
                del self.functions[key]
                self._functions_dirty = True
        w.functions = set()
        # Invocations it was executing fail; those it was waiting on are abandoned.
        stopped: list[Pending] = []
        for inv_id, p in list(self.pending.items()):
            if p.handler is w:
                del self.pending[inv_id]
                stopped.append(p)
            elif p.caller is w:
                p.caller = None
        for p in stopped:
            self.finish(
                p.caller,
                p.reply_id,
                p.function_id,
                p.waiter,
                None,
                error_body("invocation_stopped", "Invocation stopped"),
                p.traceparent,
                p.baggage,
            )
        # Bindings it registered (providers are told).
        for binding_id in list(w.bindings):
            binding = self.bindings.get(binding_id)
            if binding is not None and binding.owner is w:
                self._remove_binding(binding, notify=True)
        w.bindings = set()
        # Trigger types it provided: their bindings move elsewhere or park.
        orphaned: set[str] = set()
        for key in w.trigger_types:
            entry_t = self.trigger_types.get(key)
            if entry_t is not None and entry_t.provider is w:
                del self.trigger_types[key]
                orphaned.add(key[1])
        w.trigger_types = set()
        for type_id in sorted(orphaned):
            self._reresolve(type_id)
        self.channels.drop_owned(w)
        if w.name is not None and w.namespace is not None:
            key_n = (w.namespace, w.name)
            if self.names.get(key_n) is w:
                del self.names[key_n]
        self._fire_engine_trigger(
            WORKERS_AVAILABLE, {"event": "worker_disconnected", "worker_id": w.worker_id}
        )
        self.notify()

    # -- inbound messages ------------------------------------------------------

    def handle_text(self, w: Worker, text: Union[str, bytes]) -> None:
        """Process one protocol message from ``w`` (text, or JSON in a binary frame)."""
        if w.closing:
            return
        try:
            obj = jsonio.loads(text)
        except ValueError as exc:
            if not text.strip():
                return
            self.refuse(w, f"json decode error: {exc}")
            return
        if type(obj) is not dict:
            self.refuse(w, f"json decode error: expected an object, got {type(obj).__name__}")
            return
        if _bracket_heavy(text) and json_too_deep(obj):
            self.refuse(w, f"json decode error: nested deeper than {MAX_JSON_DEPTH} levels")
            return
        tag = obj.get("type")
        handler = self._handlers.get(tag) if type(tag) is str else None
        if handler is None:
            self.refuse(w, f"json decode error: unknown type {tag!r}")
            return
        handler(w, obj)

    def refuse(self, w: Worker, reason: str) -> None:
        """Drop a frame from ``w``: counted, logged and noted in the transcript."""
        self.bad_frames += 1
        log.warning("dropped a frame from worker %s: %s", w.worker_id, reason)
        if self.transcript is not None:
            self.transcript.record(w.worker_id, "in", "dropped", reason)

    def _decode(self, w: Worker, obj: JSONObject, cls: type[T]) -> Optional[T]:
        try:
            return from_json_value(obj, cls)
        except _DECODE_ERRORS as exc:
            self.refuse(w, f"invalid {obj.get('type')} frame: {exc}")
            return None

    def _registration(
        self,
        cls: type[T],
        apply: Callable[[Worker, T], None],
        *,
        required: tuple[str, ...] = (),
    ) -> Callable[[Worker, JSONObject], None]:
        def on_frame(w: Worker, obj: JSONObject) -> None:
            for key in required:
                if key not in obj:
                    if not self.options.lenient_frames:
                        self.refuse(w, f"invalid {obj.get('type')} frame: missing field `{key}`")
                        return
                    obj[key] = None
            bad = _explicit_null(obj)
            if bad is not None:
                self.refuse(w, f"invalid {obj.get('type')} frame: {bad} must be omitted, not null")
                return
            frame = self._decode(w, obj, cls)
            if frame is None:
                return
            if w.namespace is None:
                w.backlog.append((apply, frame))
                if len(w.backlog) >= BACKLOG_LIMIT:
                    self.congestion.append(w)
                return
            apply(w, frame)

        return on_frame

    def _on_ignored(self, w: Worker, obj: JSONObject) -> None:
        log.debug("ignoring %s frame from worker %s", obj.get("type"), w.worker_id)

    def _on_ping(self, w: Worker, obj: JSONObject) -> None:
        w.transport.send(b'{"type":"pong"}', True)

    # -- invocations (section 5) ----------------------------------------------

    def _on_invoke(self, w: Worker, obj: JSONObject) -> None:
        if "data" not in obj:
            # Required, like the real engine's (``data: Value``).  The official
            # Python SDKs omit it for a None payload: ``lenient_frames`` reads null.
            if not self.options.lenient_frames:
                self.refuse(w, "invalid invokefunction frame: missing field `data`")
                return
            obj["data"] = None
        f = self._decode(w, obj, InvokeFunction)
        if f is None:
            return
        inv_id = f.invocation_id
        if inv_id is not None:
            inv_id = canonical_uuid(inv_id)
            if inv_id is None:
                bad_id = f.invocation_id
                self.refuse(
                    w, f"invalid invokefunction frame: invocation_id {bad_id!r} is not a UUID"
                )
                return
        fid = f.function_id
        ns = f.namespace
        if ns is None:
            ns = DEFAULT
        elif not ns.strip():
            if inv_id is not None:
                self.reply(
                    w,
                    inv_id,
                    fid,
                    None,
                    error_body("INVALID_NAMESPACE", "namespace must not be blank"),
                )
            return
        action = f.action
        data = f.data
        session = w.session
        if session is not None:
            entry = self.functions.get((ns, fid))
            denial = session.denial(ns, fid, entry.metadata if entry is not None else None)
            if denial is None and fid == ANNOUNCE_FUNCTION_ID and isinstance(data, dict):
                declared = data.get("namespace")
                if isinstance(declared, str) and declared.strip():
                    denial = session.namespace_denial(declared)
            if denial is not None:
                rid = (
                    inv_id
                    if inv_id is not None and type(action) is not TriggerActionVoid
                    else new_id()
                )
                self.reply(w, rid, fid, None, error_body("FORBIDDEN", denial))
                return
            middleware = session.rbac.middleware_function_id
            if middleware is not None and not self._is_builtin_target(ns, fid):
                self._through_middleware(w, session, middleware, f, ns, inv_id, obj)
                return
        if type(action) is TriggerActionEnqueue:
            self._enqueue(w, f, ns, inv_id, action.queue)
            return
        if type(data) is dict:
            data[CALLER_WORKER_ID_KEY] = w.worker_id
        if inv_id is None or type(action) is TriggerActionVoid:
            self.route(None, None, ns, fid, data, f.metadata, f.traceparent, f.baggage, new_id(), w)
        else:
            self.route(w, inv_id, ns, fid, data, f.metadata, f.traceparent, f.baggage, inv_id, w)

    def route(
        self,
        caller: Optional[Worker],
        reply_id: Optional[str],
        ns: str,
        function_id: str,
        data: JSON,
        metadata: JSON,
        traceparent: Optional[str],
        baggage: Optional[str],
        invocation_id: str,
        origin: Optional[Worker] = None,
        waiter: Optional[Waiter] = None,
    ) -> None:
        """Run ``function_id`` in ``ns``; its result goes to ``caller`` under
        ``reply_id`` (when both are set) or to ``waiter``."""
        entry = self.functions.get((ns, function_id))
        if entry is not None:
            pending = Pending(
                caller, reply_id, function_id, entry.owner, traceparent, baggage, waiter
            )
            if entry.http is not None:
                pending.handler = None
                self.pending[invocation_id] = pending
                self.spawn(self._http_call, entry, invocation_id, data, traceparent, baggage)
                return
            self.pending[invocation_id] = pending
            frame: JSONObject = {
                "type": "invokefunction",
                "invocation_id": invocation_id,
                "function_id": entry.handler_id,
                "data": data,
            }
            if traceparent is not None:
                frame["traceparent"] = traceparent
            if baggage is not None:
                frame["baggage"] = baggage
            if metadata is not None:
                frame["metadata"] = metadata
            entry.owner.transport.send(_dumps(frame), True)
            return
        if ns == DEFAULT:
            builtin = self.builtins.get(function_id)
            if builtin is not None:
                self._run_builtin(
                    builtin, caller, reply_id, origin, data, traceparent, baggage, metadata, waiter
                )
                return
        self.finish(
            caller,
            reply_id,
            function_id,
            waiter,
            None,
            error_body("function_not_found", self.not_found_message(ns, function_id)),
            traceparent,
            baggage,
        )

    def not_found_message(self, ns: str, function_id: str) -> str:
        others = {k[0] for k in self.functions if k[1] == function_id and k[0] != ns}
        if ns != DEFAULT and function_id in self.builtins:
            others.add(DEFAULT)
        message = f"Function {function_id} not found in namespace {ns}."
        if others:
            message += f" It is registered in namespace(s): {', '.join(sorted(others))}."
        return message

    def invoke_internal(
        self,
        ns: str,
        function_id: str,
        data: JSON,
        *,
        metadata: JSON = None,
        traceparent: Optional[str] = None,
        baggage: Optional[str] = None,
        on_done: Optional[Waiter] = None,
    ) -> None:
        """An engine-made call (trigger fire, queue delivery, auth, middleware):
        fresh invocation id, no ``_caller_worker_id``."""
        self.route(
            None,
            None,
            ns,
            function_id,
            data,
            metadata,
            traceparent,
            baggage,
            new_id(),
            None,
            on_done if on_done is not None else _log_failure(function_id),
        )

    async def call(
        self,
        ns: str,
        function_id: str,
        data: JSON,
        *,
        metadata: JSON = None,
    ) -> tuple[JSON, Optional[ErrorDict]]:
        """Await an engine-made call's outcome."""
        done = anyio.Event()
        box: list[tuple[JSON, Optional[ErrorDict]]] = []

        def on_done(result: JSON, error: Optional[ErrorDict]) -> None:
            box.append((result, error))
            done.set()

        self.invoke_internal(ns, function_id, data, metadata=metadata, on_done=on_done)
        await self.relieve()
        await done.wait()
        return box[0]

    def _is_builtin_target(self, ns: str, function_id: str) -> bool:
        return (
            ns == DEFAULT
            and function_id in self.builtins
            and (ns, function_id) not in self.functions
        )

    def _run_builtin(
        self,
        builtin: Builtin,
        caller: Optional[Worker],
        reply_id: Optional[str],
        origin: Optional[Worker],
        data: JSON,
        traceparent: Optional[str],
        baggage: Optional[str],
        metadata: JSON,
        waiter: Optional[Waiter],
    ) -> None:
        call = Call(self, builtin.id, origin, data, traceparent, baggage, metadata)
        try:
            out = builtin.fn(call)
        except BuiltinError as exc:
            if reply_id is None and waiter is None:
                log.info("builtin %s failed (no reply wanted): %s", builtin.id, exc)
            self.finish(
                caller, reply_id, builtin.id, waiter, None, exc.body(), traceparent, baggage
            )
            return
        if inspect.isawaitable(out):
            self.spawn(
                self._await_builtin, builtin.id, out, caller, reply_id, waiter, traceparent, baggage
            )
            return
        self.finish(caller, reply_id, builtin.id, waiter, out, None, traceparent, baggage)

    async def _await_builtin(
        self,
        function_id: str,
        awaitable: Awaitable[JSON],
        caller: Optional[Worker],
        reply_id: Optional[str],
        waiter: Optional[Waiter],
        traceparent: Optional[str],
        baggage: Optional[str],
    ) -> None:
        try:
            result = await awaitable
        except BuiltinError as exc:
            if reply_id is None and waiter is None:
                log.info("builtin %s failed (no reply wanted): %s", function_id, exc)
            self.finish(
                caller, reply_id, function_id, waiter, None, exc.body(), traceparent, baggage
            )
        else:
            self.finish(caller, reply_id, function_id, waiter, result, None, traceparent, baggage)
        await self.relieve()

    def finish(
        self,
        caller: Optional[Worker],
        reply_id: Optional[str],
        function_id: str,
        waiter: Optional[Waiter],
        result: JSON,
        error: Optional[ErrorDict],
        traceparent: Optional[str] = None,
        baggage: Optional[str] = None,
    ) -> None:
        """Hand an invocation's outcome to whoever waits for it."""
        if waiter is not None:
            waiter(result, error)
        elif caller is not None and reply_id is not None and not caller.cleaned:
            self.reply(caller, reply_id, function_id, result, error, traceparent, baggage)

    def reply(
        self,
        w: Worker,
        invocation_id: str,
        function_id: str,
        result: JSON,
        error: Optional[ErrorDict],
        traceparent: Optional[str] = None,
        baggage: Optional[str] = None,
    ) -> None:
        frame: JSONObject = {
            "type": "invocationresult",
            "invocation_id": invocation_id,
            "function_id": function_id,
        }
        if error is not None:
            frame["error"] = error
        elif result is not None:
            frame["result"] = result
        if traceparent is not None:
            frame["traceparent"] = traceparent
        if baggage is not None:
            frame["baggage"] = baggage
        w.transport.send(_dumps(frame), False)

    def _on_result(self, w: Worker, obj: JSONObject) -> None:
        f = self._decode(w, obj, InvocationResult)
        if f is None:
            return
        inv_id = canonical_uuid(f.invocation_id)
        if inv_id is None:
            self.refuse(
                w,
                f"invalid invocationresult frame: invocation_id {f.invocation_id!r} is not a UUID",
            )
            return
        pending = self.pending.pop(inv_id, None)
        if pending is None:
            log.debug("dropping result for unknown invocation %s", inv_id)
            return
        error: Optional[ErrorDict] = None
        if f.error is not None:
            error = {"code": f.error.code, "message": f.error.message}
            if f.error.stacktrace is not None:
                error["stacktrace"] = f.error.stacktrace
        if self.result_rules and self._apply_rules(pending, f.result, error):
            return
        self.complete(pending, f.result, error)

    def complete(self, pending: Pending, result: JSON, error: Optional[ErrorDict]) -> None:
        self.finish(
            pending.caller,
            pending.reply_id,
            pending.function_id,
            pending.waiter,
            result,
            error,
            pending.traceparent,
            pending.baggage,
        )

    def _apply_rules(self, pending: Pending, result: JSON, error: Optional[ErrorDict]) -> bool:
        for rule in self.result_rules:
            if not rule.matches(pending.function_id):
                continue
            rule.take()
            rule._core = self
            if rule.delay is None:
                rule.held.append((pending, result, error))
            else:
                self.spawn(self._delayed_complete, rule.delay, pending, result, error)
            return True
        return False

    async def _delayed_complete(
        self, delay: float, pending: Pending, result: JSON, error: Optional[ErrorDict]
    ) -> None:
        await anyio.sleep(delay)
        self.complete(pending, result, error)
        await self.relieve()

    def _enqueue(
        self,
        w: Worker,
        f: InvokeFunction,
        ns: str,
        inv_id: Optional[str],
        queue: str,
    ) -> None:
        """Section 5.2 step 5: hand the call to the queue provider."""
        receipt = new_id()
        job: JSONObject = {
            "queue": queue,
            "function_id": f.function_id,
            "data": f.data,
            "messageReceiptId": receipt,
        }
        if f.traceparent is not None:
            job["traceparent"] = f.traceparent
        if f.baggage is not None:
            job["baggage"] = f.baggage
        if ns != DEFAULT:
            job["namespace"] = ns

        def done(result: JSON, error: Optional[ErrorDict]) -> None:
            if inv_id is None or w.cleaned:
                return
            if error is not None:
                self.reply(
                    w,
                    inv_id,
                    f.function_id,
                    None,
                    error_body(
                        "enqueue_error", f"Failed to enqueue message: {error.get('message')}"
                    ),
                )
            else:
                self.reply(w, inv_id, f.function_id, {"messageReceiptId": receipt}, None)

        if (DEFAULT, QUEUE_FUNCTION_ID) not in self.functions and self.queue is None:
            done(
                None,
                error_body(
                    "function_not_found",
                    f"function {QUEUE_FUNCTION_ID} not found: no queue worker is installed",
                ),
            )
            return
        self.invoke_internal(DEFAULT, QUEUE_FUNCTION_ID, job, on_done=done)

    def _through_middleware(
        self,
        w: Worker,
        session: Session,
        middleware: str,
        f: InvokeFunction,
        ns: str,
        inv_id: Optional[str],
        obj: JSONObject,
    ) -> None:
        """Section 5.2 step 4: the middleware's outcome is the call's outcome."""
        void = type(f.action) is TriggerActionVoid
        rid = inv_id if inv_id is not None and not void else new_id()
        payload: JSONObject = {
            "function_id": f.function_id,
            "payload": f.data,
            "action": obj.get("action"),
            "context": session.context,
            "namespace": ns,
        }

        def done(result: JSON, error: Optional[ErrorDict]) -> None:
            if not w.cleaned:
                self.reply(w, rid, f.function_id, result, error)

        self.invoke_internal(DEFAULT, middleware, payload, on_done=done)

    async def _http_call(
        self,
        entry: FunctionEntry,
        invocation_id: str,
        data: JSON,
        traceparent: Optional[str],
        baggage: Optional[str],
    ) -> None:
        from ._http import invoke_http

        assert entry.http is not None
        result, error = await invoke_http(entry.http, entry.id, invocation_id, data, traceparent)
        pending = self.pending.pop(invocation_id, None)
        if pending is not None:
            self.complete(pending, result, error)
            await self.relieve()

    # -- namespace, announce, names (sections 4.1, 4.3) -------------------------

    def _fix_namespace(self, w: Worker, ns: str) -> None:
        if w.namespace is None:
            w.namespace = ns
            self.notify()
        elif w.namespace != ns:
            log.warning(
                "worker %s announced namespace %r but is already bound to %r",
                w.worker_id,
                ns,
                w.namespace,
            )

    def _drain(self, w: Worker) -> None:
        backlog, w.backlog = w.backlog, []
        for apply, frame in backlog:
            if w.closing:
                break
            apply(w, frame)
        if w.resolved is not None:
            w.resolved.set()

    def announce(self, w: Worker, inp: JSONObject) -> JSONObject:
        """``engine::workers::register`` for connection ``w`` (input already validated)."""
        declared = inp.get("namespace")
        if isinstance(declared, str) and not declared.strip():
            raise BuiltinError("INVALID_NAMESPACE", "namespace must not be blank")
        runtime = inp.get("runtime")
        w.runtime = runtime if isinstance(runtime, str) else "unknown"
        for key in ("version", "os", "isolation"):
            value = inp.get(key)
            setattr(w, key, value if isinstance(value, str) else None)
        description = inp.get("description")
        w.description = sanitize_text(description if isinstance(description, str) else None)
        pid = inp.get("pid")
        w.pid = pid if isinstance(pid, int) else None
        w.telemetry = inp.get("telemetry")
        features = inp.get("features")
        w.features = (
            [x for x in features if isinstance(x, str)] if isinstance(features, list) else None
        )
        w.announced = True
        self._fix_namespace(w, declared if isinstance(declared, str) else DEFAULT)
        raw_name = inp.get("name")
        name = sanitize_text(raw_name if isinstance(raw_name, str) else None)
        if name is not None and not self._claim_name(w, name):
            return {"success": False}
        self._drain(w)
        self._fire_engine_trigger(
            WORKERS_AVAILABLE, {"event": "worker_metadata_updated", "worker_id": w.worker_id}
        )
        self.notify()
        return {"success": True}

    def _claim_name(self, w: Worker, name: str) -> bool:
        assert w.namespace is not None
        key = (w.namespace, name)
        holder = self.names.get(key)
        if holder is not None and holder is not w and not holder.closing:
            log.warning(
                "worker %s: name %r in namespace %r is held by %s; rejecting",
                w.worker_id,
                name,
                w.namespace,
                holder.worker_id,
            )
            w.transport.send(
                _encode(
                    RegistrationRejected(
                        code="WORKER_NAMESPACE_CONFLICT",
                        namespace=w.namespace,
                        worker_name=name,
                        owner_worker_id=holder.worker_id,
                    )
                ),
                False,
            )
            self.close_worker(w, None)
            return False
        if w.name is not None and w.name != name:
            old = (w.namespace, w.name)
            if self.names.get(old) is w:
                del self.names[old]
        self.names[key] = w
        w.name = name
        return True

    # -- registrations (sections 6, 7) -----------------------------------------

    def _reject_function(self, w: Worker, ns: str, function_id: str, owner: str) -> None:
        w.transport.send(
            _encode(
                RegistrationRejected(
                    code="FUNCTION_NAMESPACE_CONFLICT",
                    namespace=ns,
                    function_id=function_id,
                    owner_worker_id=owner,
                )
            ),
            False,
        )

    def _apply_register_function(self, w: Worker, f: RegisterFunction) -> None:
        ns = w.namespace or DEFAULT
        function_id = f.id
        session = w.session
        if session is not None:
            if not session.allow_function_registration:
                log.info("worker %s may not register functions; dropped %s", w.worker_id, f.id)
                return
            function_id = session.prefixed(function_id)
        if function_id.startswith("engine::") and ns != DEFAULT:
            self._reject_function(w, ns, function_id, "")
            return
        key = (ns, function_id)
        current = self.functions.get(key)
        if current is not None and current.owner is not w:
            if not current.owner.closing:
                self._reject_function(w, ns, function_id, current.owner.worker_id)
                return
            current.owner.functions.discard(key)
        if ns == DEFAULT and function_id in self.builtins:
            log.warning("worker %s registered %s, shadowing the builtin", w.worker_id, function_id)
        self.functions[key] = FunctionEntry(ns, function_id, w, f)
        w.functions.add(key)
        self._functions_dirty = True
        self.notify()

    def _apply_unregister_function(self, w: Worker, f: UnregisterFunction) -> None:
        ns = w.namespace or DEFAULT
        function_id = w.session.prefixed(f.id) if w.session is not None else f.id
        key = (ns, function_id)
        entry = self.functions.get(key)
        if entry is not None and entry.owner is w:
            del self.functions[key]
            w.functions.discard(key)
            self._functions_dirty = True
            self.notify()

    def _apply_register_service(self, w: Worker, f: RegisterService) -> None:
        ns = w.namespace or DEFAULT
        self.services[(ns, f.id)] = {
            "id": f.id,
            "name": f.name or f.id,
            "description": f.description,
            "parent_service_id": f.parent_service_id,
            "worker_id": w.worker_id,
        }

    def _apply_register_trigger_type(self, w: Worker, f: RegisterTriggerType) -> None:
        if f.namespace is not None and not f.namespace.strip():
            log.warning(
                "worker %s: blank namespace for trigger type %s; ignored", w.worker_id, f.id
            )
            return
        session = w.session
        if session is not None and not session.allow_trigger_type_registration:
            log.info("worker %s may not register trigger types; dropped %s", w.worker_id, f.id)
            return
        ns = f.namespace if f.namespace is not None else (w.namespace or DEFAULT)
        key = (ns, f.id)
        previous = self.trigger_types.get(key)
        if previous is not None and previous.provider is not None and previous.provider is not w:
            previous.provider.trigger_types.discard(key)
        self.trigger_types[key] = TriggerTypeEntry(
            ns,
            f.id,
            f.description,
            w,
            trigger_request_format=f.trigger_request_format,
            call_request_format=f.call_request_format,
        )
        w.trigger_types.add(key)
        self._reresolve(f.id)
        self.notify()

    def _trigger_error(self, w: Worker, f: RegisterTrigger, code: str, message: str) -> None:
        w.transport.send(
            _encode(
                TriggerRegistrationResult(
                    id=f.id,
                    trigger_type=f.trigger_type,
                    function_id=f.function_id,
                    error=_error_body_frame(code, message),
                )
            ),
            False,
        )

    def _apply_register_trigger(self, w: Worker, f: RegisterTrigger) -> None:
        for value in (f.namespace, f.trigger_namespace):
            if value is not None and not value.strip():
                self._trigger_error(w, f, "INVALID_NAMESPACE", "namespace must not be blank")
                return
        target_ns = f.namespace if f.namespace is not None else DEFAULT
        function_id = f.function_id
        session = w.session
        if session is not None:
            allowed = session.allowed_trigger_types
            if allowed is not None and f.trigger_type not in allowed:
                log.info(
                    "worker %s may not bind trigger type %s; dropped %s",
                    w.worker_id,
                    f.trigger_type,
                    f.id,
                )
                return
            function_id = session.prefixed(function_id)
            entry = self.functions.get((target_ns, function_id))
            if session.denial(target_ns, function_id, entry.metadata if entry else None):
                self._trigger_error(
                    w,
                    f,
                    "FORBIDDEN",
                    f"function '{function_id}' not allowed in namespace '{target_ns}'",
                )
                return
        binding = Binding(
            f.id,
            f.trigger_type,
            function_id,
            f.config,
            f.metadata,
            namespace=target_ns,
            trigger_namespace=f.trigger_namespace,
            home_namespace=w.namespace or DEFAULT,
            owner=w,
        )
        self.add_binding(binding)
        self.notify()

    def add_binding(self, binding: Binding) -> None:
        """Record a binding and deliver it to its provider (or park it)."""
        previous = self.bindings.get(binding.id)
        target = self._resolve_provider(binding)
        if previous is not None:
            self._remove_binding(previous, notify=False)
            old = previous.provider
            if (
                old is not None
                and old.provider is not None
                and (target is None or old.provider is not target.provider)
            ):
                self._send_unregister(old.provider, previous)
        self.bindings[binding.id] = binding
        self.bindings_by_type.setdefault(binding.trigger_type, {})[binding.id] = binding
        if binding.owner is not None:
            binding.owner.bindings.add(binding.id)
        if target is None:
            log.warning(
                "no provider for trigger type %r; binding %s parked",
                binding.trigger_type,
                binding.id,
            )
            return
        self._deliver(binding, target)

    def _resolve_provider(self, b: Binding) -> Optional[TriggerTypeEntry]:
        if b.trigger_namespace is not None:
            entry = self.trigger_types.get((b.trigger_namespace, b.trigger_type))
        else:
            entry = self.trigger_types.get((b.home_namespace, b.trigger_type))
            if entry is None and b.home_namespace != DEFAULT:
                entry = self.trigger_types.get((DEFAULT, b.trigger_type))
        if entry is not None and entry is b.rejected_by:
            return None
        return entry

    def _deliver(self, b: Binding, entry: TriggerTypeEntry) -> None:
        b.provider = entry
        b.acked = False
        provider = entry.provider
        if provider is None:
            b.acked = True
            self._resolve_binding_waiter(b, None)
            return
        frame: JSONObject = {
            "type": "registertrigger",
            "id": b.id,
            "trigger_type": b.trigger_type,
            "function_id": b.function_id,
            "config": b.config,
        }
        if b.metadata is not None:
            frame["metadata"] = b.metadata
        if b.namespace != DEFAULT:
            frame["namespace"] = b.namespace
        if entry.namespace != DEFAULT:
            frame["trigger_namespace"] = entry.namespace
        provider.transport.send(_dumps(frame), True)

    def _send_unregister(self, provider: Worker, b: Binding) -> None:
        if provider.closing:
            return
        provider.transport.send(
            _dumps({"type": "unregistertrigger", "id": b.id, "trigger_type": b.trigger_type}),
            True,
        )

    def _reresolve(self, type_id: str) -> None:
        """Move every binding of ``type_id`` to its current provider (or park it)."""
        for b in list(self.bindings_by_type.get(type_id, {}).values()):
            target = self._resolve_provider(b)
            old = b.provider
            if target is old:
                continue
            if (
                old is not None
                and old.provider is not None
                and (target is None or target.provider is not old.provider)
            ):
                self._send_unregister(old.provider, b)
            if target is None:
                b.provider = None
                b.acked = False
                log.warning("trigger type %r has no provider; binding %s parked", type_id, b.id)
            else:
                self._deliver(b, target)

    def _remove_binding(self, b: Binding, *, notify: bool) -> None:
        if self.bindings.get(b.id) is b:
            del self.bindings[b.id]
        by_type = self.bindings_by_type.get(b.trigger_type)
        if by_type is not None and by_type.get(b.id) is b:
            del by_type[b.id]
            if not by_type:
                del self.bindings_by_type[b.trigger_type]
        if b.owner is not None:
            b.owner.bindings.discard(b.id)
        if notify and b.provider is not None and b.provider.provider is not None:
            self._send_unregister(b.provider.provider, b)
        self._resolve_binding_waiter(
            b, error_body("trigger_registration_failed", "binding removed")
        )

    def remove_binding(self, binding_id: str) -> bool:
        binding = self.bindings.get(binding_id)
        if binding is None:
            return False
        self._remove_binding(binding, notify=True)
        self.notify()
        return True

    def _resolve_binding_waiter(self, b: Binding, error: Optional[ErrorDict]) -> None:
        waiter, b.waiter = b.waiter, None
        if waiter is not None:
            waiter(error)

    def _apply_unregister_trigger(self, w: Worker, f: UnregisterTrigger) -> None:
        self.remove_binding(f.id)

    def _on_trigger_result(self, w: Worker, obj: JSONObject) -> None:
        f = self._decode(w, obj, TriggerRegistrationResult)
        if f is None:
            return
        b = self.bindings.get(f.id)
        if b is None or b.provider is None or b.provider.provider is not w:
            log.debug("ignoring triggerregistrationresult %s from worker %s", f.id, w.worker_id)
            return
        if f.error is None:
            b.acked = True
            self._resolve_binding_waiter(b, None)
            self.notify()
            return
        error: ErrorDict = {"code": f.error.code, "message": f.error.message}
        log.info("provider %s refused binding %s: %s", w.worker_id, b.id, f.error.message)
        b.rejected_by = b.provider
        b.provider = None
        if b.waiter is not None:
            self._resolve_binding_waiter(b, error)
        elif b.owner is not None and not b.owner.closing:
            b.owner.transport.send(
                _encode(
                    TriggerRegistrationResult(
                        id=b.id,
                        trigger_type=b.trigger_type,
                        function_id=f.function_id,
                        error=f.error,
                    )
                ),
                False,
            )
        self.notify()

    def _fire_engine_trigger(self, type_id: str, payload: JSONObject) -> None:
        bindings = self.bindings_by_type.get(type_id)
        if not bindings:
            return
        for b in list(bindings.values()):
            if b.provider is not None and b.provider.provider is None:
                self.invoke_internal(b.namespace, b.function_id, payload, metadata=b.metadata)

    # -- reattach (section 4.5) ------------------------------------------------

    def _on_reattach(self, w: Worker, obj: JSONObject) -> None:
        f = self._decode(w, obj, Reattach)
        if f is None:
            return
        previous = canonical_uuid(f.previous_worker_id)
        if previous is None or previous == w.worker_id:
            return
        old = self.workers.get(previous)
        if old is None:
            log.info("reattach from %s: previous worker %s is unknown", w.worker_id, previous)
            return
        if f.reattach_token is None or f.reattach_token != old.reattach_token:
            log.warning(
                "reattach from %s: wrong token for worker %s; ignored", w.worker_id, previous
            )
            return
        log.info("reattach: worker %s evicts its previous connection %s", w.worker_id, previous)
        self.evict(old)

    # -- background ------------------------------------------------------------

    async def _functions_poller(self) -> None:
        interval = self.options.functions_poll_interval
        while True:
            await anyio.sleep(interval)
            if not self._functions_dirty:
                continue
            self._functions_dirty = False
            if not self.bindings_by_type.get(FUNCTIONS_AVAILABLE):
                continue
            from ._builtins import function_summaries

            self._fire_engine_trigger(
                FUNCTIONS_AVAILABLE,
                {"event": "functions_changed", "functions": function_summaries(self)},
            )
            await self.relieve()

    async def _channel_sweeper(self) -> None:
        while True:
            await anyio.sleep(self.options.channel_sweep_interval)
            swept = self.channels.sweep(self.options.channel_ttl)
            if swept:
                log.info("swept %d unused channel(s)", swept)

    # -- introspection helpers -------------------------------------------------

    def active_invocations(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for p in self.pending.values():
            if p.handler is not None:
                counts[p.handler.worker_id] = counts.get(p.handler.worker_id, 0) + 1
        return counts

    def iter_workers(self) -> Iterable[Worker]:
        return list(self.workers.values())


def _explicit_null(obj: JSONObject) -> Optional[str]:
    """The engine defaults these fields and rejects an explicit ``null`` (section 1.4);
    ``iii_protocol`` reads null as absent, so the check is made here."""
    tag = obj.get("type")
    if tag == "registerfunction":
        invocation = obj.get("invocation")
        if isinstance(invocation, dict):
            for key in ("method", "headers"):
                if key in invocation and invocation[key] is None:
                    return f"invocation.{key}"
    elif tag == "registerservice" and "name" in obj and obj["name"] is None:
        return "name"
    return None


def _error_body_frame(code: str, message: str) -> Any:
    from iii_protocol import ErrorBody

    return ErrorBody(code=code, message=message)


def _log_failure(function_id: str) -> Waiter:
    def done(result: JSON, error: Optional[ErrorDict]) -> None:
        if error is not None:
            log.info("engine call to %s failed: %s", function_id, error.get("message"))

    return done
