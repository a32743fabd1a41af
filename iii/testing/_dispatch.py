"""Frame dispatch: each text message from a worker, decoded and handed on.

``Dispatcher.handle_text`` reads one message with the SDK's exact JSON reader,
checks it as the real engine's serde types would (a frame missing a required
field, of an unknown type or nested too deep is dropped: counted, logged and
noted in the transcript) and hands the decoded frame to the registry
(docs/protocol.md#functions, #triggers), the router (#invocations) or the
leases (#reattach).
Registrations that arrive before the connection's namespace is known wait in
its backlog.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Optional, TypeVar, Union

from cattrs.errors import BaseValidationError

from iii_protocol import (
    CALLER_WORKER_ID_KEY,
    InvocationResult,
    InvokeFunction,
    Reattach,
    RegisterFunction,
    RegisterService,
    RegisterTrigger,
    RegisterTriggerType,
    TriggerActionEnqueue,
    TriggerActionVoid,
    TriggerRegistrationResult,
    UnregisterFunction,
    UnregisterTrigger,
    from_json_value,
)
from iii_protocol._json import JSONObject

from . import _jsonio as jsonio
from ._api import InvokeGate
from ._leases import BACKLOG_LIMIT, Leases
from ._options import EngineOptions
from ._records import (
    DEFAULT,
    MAX_JSON_DEPTH,
    ErrorDict,
    Worker,
    bracket_heavy,
    canonical_uuid,
    error_body,
    json_too_deep,
    new_id,
)
from ._registry import Registry
from ._router import Router

__all__ = ["Dispatcher"]

log = logging.getLogger("iii.testing")

T = TypeVar("T")

_DECODE_ERRORS = (BaseValidationError, ValueError, TypeError, KeyError, AttributeError)


def _explicit_null(obj: JSONObject) -> Optional[str]:
    """The engine defaults these fields and rejects an explicit ``null`` (docs/protocol.md#json);
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


class Dispatcher:
    """Decodes a connection's messages and applies them, one at a time."""

    def __init__(
        self,
        options: EngineOptions,
        *,
        leases: Leases,
        registry: Registry,
        router: Router,
        congestion: list[Any],
        evict: Callable[[Worker], None],
        note: Callable[[str, str, str], None],
    ) -> None:
        self.lenient_frames = options.lenient_frames
        self.leases = leases
        self.registry = registry
        self.router = router
        self.congestion = congestion
        #: checks the calls of connections that have a ``Policy`` (the RBAC module's)
        self.gate: Optional[InvokeGate] = None
        self.bad_frames = 0
        self._evict = evict
        self._note = note
        self._handlers: dict[str, Callable[[Worker, JSONObject], None]] = {
            "invokefunction": self._on_invoke,
            "invocationresult": self._on_result,
            "registerfunction": self._registration(RegisterFunction, registry.register_function),
            "unregisterfunction": self._registration(
                UnregisterFunction, self.registry.unregister_function
            ),
            "registertriggertype": self._registration(
                RegisterTriggerType, self.registry.register_trigger_type
            ),
            # ``config`` is required (any JSON, null included) like the real
            # engine's; the official SDKs omit it when the user gave none (Python
            # exclude_none, Node undefined): ``lenient_frames`` reads it as null.
            "registertrigger": self._registration(
                RegisterTrigger, self.registry.register_trigger, required=("config",)
            ),
            "unregistertrigger": self._registration(
                UnregisterTrigger, self.registry.unregister_trigger
            ),
            "registerservice": self._registration(RegisterService, self.registry.register_service),
            "triggerregistrationresult": self._on_trigger_result,
            "ping": self._on_ping,
            "pong": self._on_ignored,
            "reattach": self._on_reattach,
            # Engine->worker frames sent back by a confused peer: parsed, ignored.
            "workerregistered": self._on_ignored,
            "registrationrejected": self._on_ignored,
            "error": self._on_ignored,
        }

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
        if bracket_heavy(text) and json_too_deep(obj):
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
        self._note(w.worker_id, "dropped", reason)

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
                    if not self.lenient_frames:
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

    def _on_reattach(self, w: Worker, obj: JSONObject) -> None:
        f = self._decode(w, obj, Reattach)
        if f is not None:
            previous = self.leases.reattached(w, f)
            if previous is not None:
                self._evict(previous)

    def _on_trigger_result(self, w: Worker, obj: JSONObject) -> None:
        f = self._decode(w, obj, TriggerRegistrationResult)
        if f is not None:
            self.registry.trigger_result(w, f)

    def _on_invoke(self, w: Worker, obj: JSONObject) -> None:
        if "data" not in obj:
            # Required, like the real engine's (``data: Value``).  The official
            # Python SDKs omit it for a None payload: ``lenient_frames`` reads null.
            if not self.lenient_frames:
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
                error = error_body("INVALID_NAMESPACE", "namespace must not be blank")
                self.router.reply(w, inv_id, fid, None, error)
            return
        if w.session is not None and self.gate is not None and self.gate(w, f, ns, inv_id, obj):
            return
        action = f.action
        if type(action) is TriggerActionEnqueue:
            self.router.enqueue(w, f, ns, inv_id, action.queue)
            return
        data = f.data
        if type(data) is dict:
            data[CALLER_WORKER_ID_KEY] = w.worker_id
        route = self.router.route
        if inv_id is None or type(action) is TriggerActionVoid:
            route(None, None, ns, fid, data, f.metadata, f.traceparent, f.baggage, new_id(), w)
        else:
            route(w, inv_id, ns, fid, data, f.metadata, f.traceparent, f.baggage, inv_id, w)

    def _on_result(self, w: Worker, obj: JSONObject) -> None:
        f = self._decode(w, obj, InvocationResult)
        if f is None:
            return
        inv_id = canonical_uuid(f.invocation_id)
        if inv_id is None:
            bad_id = f.invocation_id
            self.refuse(
                w, f"invalid invocationresult frame: invocation_id {bad_id!r} is not a UUID"
            )
            return
        error: Optional[ErrorDict] = None
        if f.error is not None:
            error = {"code": f.error.code, "message": f.error.message}
            if f.error.stacktrace is not None:
                error["stacktrace"] = f.error.stacktrace
        self.router.result(inv_id, f.result, error)
