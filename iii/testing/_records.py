"""The engine's records and the small helpers everything shares.

A connection is a ``Worker`` holding a ``Transport`` (anything with
``send``/``close``/``abort``); registered functions are ``FunctionEntry``s (a
worker's) or ``Builtin``s (an engine worker module's); trigger types are
``TriggerTypeEntry``s, bindings ``Binding``s, invocations in flight
``Pending``s.  Nothing here touches a socket or a clock.
"""

from __future__ import annotations

import re
import unicodedata
import uuid
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Optional, Protocol, Union

import anyio

from iii_protocol import HttpInvocationRef, RegisterFunction
from iii_protocol._json import JSON

__all__ = [
    "DEFAULT",
    "MAX_JSON_DEPTH",
    "Binding",
    "Builtin",
    "BuiltinError",
    "BindingHook",
    "BuiltinResult",
    "Call",
    "ErrorDict",
    "FunctionEntry",
    "Pending",
    "Policy",
    "Transport",
    "TriggerTypeEntry",
    "Waiter",
    "Worker",
    "bracket_heavy",
    "canonical_uuid",
    "error_body",
    "json_too_deep",
    "new_id",
    "sanitize_text",
]

DEFAULT = "default"

ErrorDict = dict[str, JSON]
#: Called once with (result, error) when an engine-made invocation ends.
Waiter = Callable[[JSON, Optional[ErrorDict]], None]

# -- helpers ---------------------------------------------------------------------

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


def bracket_heavy(text: Union[str, bytes]) -> bool:
    """Cheap filter: fewer brackets than the depth limit cannot nest too deep."""
    if isinstance(text, str):
        return text.count("[") + text.count("{") > MAX_JSON_DEPTH
    return text.count(b"[") + text.count(b"{") > MAX_JSON_DEPTH


# -- what the engine needs from a socket and from an access policy ----------------


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


class Policy(Protocol):
    """What one connection of an access-controlled listener may do.

    The RBAC session (``iii.testing._rbac.Session``) is the one implementation;
    a trusted connection has none (``Worker.session is None``), which keeps the
    routing hot path to a single test.  The calls such a connection makes are
    checked by the engine's invoke gate (``EngineHost.set_invoke_gate``).
    """

    allow_function_registration: bool
    allow_trigger_type_registration: bool
    allowed_trigger_types: Optional[list[str]]
    context: JSON

    @property
    def middleware_function_id(self) -> Optional[str]:
        """A function every non-builtin call of this connection goes through."""

    def prefixed(self, function_id: str) -> str:
        """The id a function registered as ``function_id`` gets."""

    def denial(self, namespace: str, function_id: str, metadata: JSON) -> Optional[str]:
        """Why this connection may not call ``(namespace, function_id)``; None if it may."""

    def namespace_denial(self, namespace: str) -> Optional[str]:
        """Why this connection may not declare ``namespace`` in its announce."""


# -- records -----------------------------------------------------------------------


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
        session: Optional[Policy],
        listener: str,
        connected_at_ms: int = 0,
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
        self.connected_at_ms = connected_at_ms
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
    """A function a connected worker registered."""

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
        registered_at_ms: int = 0,
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
        self.registered_at_ms = registered_at_ms


#: ``on_register(binding)``: None accepts the binding, an ``ErrorDict`` refuses it.
BindingHook = Callable[["Binding"], Optional[ErrorDict]]


class TriggerTypeEntry:
    """A trigger type, provided by a worker or (``provider is None``) by the engine."""

    __slots__ = (
        "call_request_format",
        "description",
        "id",
        "namespace",
        "on_register",
        "on_unregister",
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
        on_register: Optional[BindingHook] = None,
        on_unregister: Optional[Callable[[Binding], None]] = None,
    ) -> None:
        self.namespace = namespace
        self.id = type_id
        self.description = description
        #: None: provided by the engine itself (a worker module).
        self.provider = provider
        self.trigger_request_format = trigger_request_format
        self.call_request_format = call_request_format
        self.worker_name = worker_name
        #: engine-provided types: called when a binding arrives / leaves
        self.on_register = on_register
        self.on_unregister = on_unregister


class Binding:
    """A trigger binding: (trigger type, config, metadata) -> (namespace, function)."""

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
        "refusal",
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
        #: the error of the provider's last refusal
        self.refusal: Optional[ErrorDict] = None
        self.acked = False
        #: ``engine::register_trigger`` waiting for the provider's ack
        self.waiter: Optional[Callable[[Optional[ErrorDict]], None]] = None
        #: set by the registry when it records the binding (engine clock)
        self.created_at_ms = 0


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


class BuiltinError(Exception):
    """An engine function failed with ``{code, message}`` (raise it from a handler)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message

    def body(self) -> ErrorDict:
        return error_body(self.code, self.message)


class Call:
    """The invocation an engine function (``Builtin``) runs for."""

    __slots__ = ("baggage", "caller", "data", "function_id", "metadata", "traceparent")

    def __init__(
        self,
        function_id: str,
        caller: Optional[Worker],
        data: JSON,
        traceparent: Optional[str] = None,
        baggage: Optional[str] = None,
        metadata: JSON = None,
    ) -> None:
        self.function_id = function_id
        #: the connection that called (None: the engine itself, e.g. a trigger)
        self.caller = caller
        self.data = data
        self.traceparent = traceparent
        self.baggage = baggage
        self.metadata = metadata


#: What an engine function returns: a JSON value, or an awaitable of one.
BuiltinResult = Union[JSON, Awaitable[JSON]]


class Builtin:
    """A function an engine worker module provides, in namespace ``default``."""

    __slots__ = (
        "description",
        "fn",
        "id",
        "metadata",
        "request_format",
        "response_format",
        "worker_name",
    )

    def __init__(
        self,
        function_id: str,
        fn: Callable[[Call], BuiltinResult],
        description: str,
        *,
        worker_name: str = "iii-engine",
        request_format: JSON = None,
        response_format: JSON = None,
        metadata: JSON = None,
    ) -> None:
        self.id = function_id
        self.fn = fn
        self.description = description
        self.worker_name = worker_name
        self.request_format = request_format
        self.response_format = response_format
        self.metadata = metadata
