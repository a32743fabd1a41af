"""The registry: functions, trigger types, bindings and services (sections 6, 7).

It applies the registration frames of a connection whose namespace is known,
decides where each binding is delivered (a worker's trigger type, or one a
worker module provides), and withdraws a connection's registrations when it
ends.  It sends only registration frames (``registertrigger``/
``unregistertrigger`` to providers, refusals to registrants); invocations are
the router's.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Optional

from iii_protocol import (
    ErrorBody,
    RegisterFunction,
    RegisterService,
    RegisterTrigger,
    RegisterTriggerType,
    RegistrationRejected,
    TriggerRegistrationResult,
    UnregisterFunction,
    UnregisterTrigger,
    encode_frame,
)
from iii_protocol._json import JSONObject

from . import _jsonio as jsonio
from ._records import (
    DEFAULT,
    Binding,
    Builtin,
    ErrorDict,
    FunctionEntry,
    TriggerTypeEntry,
    Worker,
    error_body,
)

__all__ = ["Registry"]

log = logging.getLogger("iii.testing")


class Registry:
    """Every registration of one engine run."""

    def __init__(
        self,
        *,
        notify: Callable[[], None],
        functions_changed: Callable[[], None],
        now_ms: Callable[[], int],
    ) -> None:
        self.functions: dict[tuple[str, str], FunctionEntry] = {}
        self.builtins: dict[str, Builtin] = {}
        self.trigger_types: dict[tuple[str, str], TriggerTypeEntry] = {}
        self.bindings: dict[str, Binding] = {}
        self.bindings_by_type: dict[str, dict[str, Binding]] = {}
        self.services: dict[tuple[str, str], JSONObject] = {}
        #: whether functions registered with an HTTP ``invocation`` can run
        self.remote_functions = False
        self._notify = notify
        self._functions_changed = functions_changed
        self._now_ms = now_ms

    # -- functions (docs/protocol.md#functions) -------------------------------------

    def _reject_function(self, w: Worker, ns: str, function_id: str, owner: str) -> None:
        frame = RegistrationRejected(
            code="FUNCTION_NAMESPACE_CONFLICT",
            namespace=ns,
            function_id=function_id,
            owner_worker_id=owner,
        )
        w.transport.send(encode_frame(frame).encode(), False)

    def register_function(self, w: Worker, f: RegisterFunction) -> None:
        ns = w.namespace or DEFAULT
        function_id = f.id
        session = w.session
        if session is not None:
            if not session.allow_function_registration:
                log.info("worker %s may not register functions; dropped %s", w.worker_id, f.id)
                return
            function_id = session.prefixed(function_id)
        if f.invocation is not None and not self.remote_functions:
            log.error(
                "worker %s registered HTTP function %s, but the http_functions module is "
                "off; dropped",
                w.worker_id,
                function_id,
            )
            return
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
        self.functions[key] = FunctionEntry(ns, function_id, w, f, self._now_ms())
        w.functions.add(key)
        self._functions_changed()
        self._notify()

    def unregister_function(self, w: Worker, f: UnregisterFunction) -> None:
        ns = w.namespace or DEFAULT
        function_id = w.session.prefixed(f.id) if w.session is not None else f.id
        key = (ns, function_id)
        entry = self.functions.get(key)
        if entry is not None and entry.owner is w:
            del self.functions[key]
            w.functions.discard(key)
            self._functions_changed()
            self._notify()

    def register_service(self, w: Worker, f: RegisterService) -> None:
        ns = w.namespace or DEFAULT
        self.services[(ns, f.id)] = {
            "id": f.id,
            "name": f.name or f.id,
            "description": f.description,
            "parent_service_id": f.parent_service_id,
            "worker_id": w.worker_id,
        }

    # -- trigger types (docs/protocol.md#triggers) -----------------------------------

    def register_trigger_type(self, w: Worker, f: RegisterTriggerType) -> None:
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
        self.reresolve(f.id)
        self._notify()

    def add_engine_trigger_type(self, entry: TriggerTypeEntry) -> None:
        """A trigger type a worker module provides (``entry.provider is None``)."""
        self.trigger_types[(entry.namespace, entry.id)] = entry
        self.reresolve(entry.id)
        self._notify()

    # -- bindings --------------------------------------------------------------------

    def _trigger_error(self, w: Worker, f: RegisterTrigger, code: str, message: str) -> None:
        frame = TriggerRegistrationResult(
            id=f.id,
            trigger_type=f.trigger_type,
            function_id=f.function_id,
            error=ErrorBody(code=code, message=message),
        )
        w.transport.send(encode_frame(frame).encode(), False)

    def register_trigger(self, w: Worker, f: RegisterTrigger) -> None:
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
        self._notify()

    def add_binding(self, binding: Binding) -> None:
        """Record a binding and deliver it to its provider (or park it)."""
        binding.created_at_ms = self._now_ms()
        previous = self.bindings.get(binding.id)
        target = self._resolve_provider(binding)
        if previous is not None:
            self._remove_binding(previous, notify=False)
            old = previous.provider
            if old is not None and _moves(old, target):
                self._withdraw(old, previous)
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
            refusal = entry.on_register(b) if entry.on_register is not None else None
            if refusal is None:
                b.acked = True
                self._resolve_binding_waiter(b, None)
            else:
                self._refused(b, refusal)
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
        provider.transport.send(jsonio.dumps(frame), True)

    def _withdraw(self, entry: TriggerTypeEntry, b: Binding) -> None:
        """Tell the provider ``entry`` that binding ``b`` is gone from it."""
        provider = entry.provider
        if provider is None:
            if b.acked and entry.on_unregister is not None:
                entry.on_unregister(b)
            return
        if provider.closing:
            return
        provider.transport.send(
            jsonio.dumps({"type": "unregistertrigger", "id": b.id, "trigger_type": b.trigger_type}),
            True,
        )

    def reresolve(self, type_id: str) -> None:
        """Move every binding of ``type_id`` to its current provider (or park it)."""
        for b in list(self.bindings_by_type.get(type_id, {}).values()):
            target = self._resolve_provider(b)
            old = b.provider
            if target is old:
                continue
            if old is not None and _moves(old, target):
                self._withdraw(old, b)
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
        if notify and b.provider is not None:
            self._withdraw(b.provider, b)
        self._resolve_binding_waiter(
            b, error_body("trigger_registration_failed", "binding removed")
        )

    def remove_binding(self, binding_id: str) -> bool:
        binding = self.bindings.get(binding_id)
        if binding is None:
            return False
        self._remove_binding(binding, notify=True)
        self._notify()
        return True

    def _resolve_binding_waiter(self, b: Binding, error: Optional[ErrorDict]) -> None:
        waiter, b.waiter = b.waiter, None
        if waiter is not None:
            waiter(error)

    def unregister_trigger(self, w: Worker, f: UnregisterTrigger) -> None:
        self.remove_binding(f.id)

    def trigger_result(self, w: Worker, f: TriggerRegistrationResult) -> None:
        """A provider's answer to a ``registertrigger``."""
        b = self.bindings.get(f.id)
        if b is None or b.provider is None or b.provider.provider is not w:
            log.debug("ignoring triggerregistrationresult %s from worker %s", f.id, w.worker_id)
            return
        if f.error is None:
            b.acked = True
            self._resolve_binding_waiter(b, None)
            self._notify()
            return
        log.info("provider %s refused binding %s: %s", w.worker_id, b.id, f.error.message)
        error: ErrorDict = {"code": f.error.code, "message": f.error.message}
        self._refused(b, error, f.function_id, f.error)

    def _refused(
        self,
        b: Binding,
        error: ErrorDict,
        function_id: Optional[str] = None,
        body: Optional[ErrorBody] = None,
    ) -> None:
        """The provider refused ``b``: park it (away from that provider), tell the binder."""
        b.rejected_by = b.provider
        b.provider = None
        b.refusal = error
        if b.waiter is not None:
            self._resolve_binding_waiter(b, error)
        elif b.owner is not None and not b.owner.closing:
            if body is None:
                body = ErrorBody(code=str(error.get("code")), message=str(error.get("message")))
            frame = TriggerRegistrationResult(
                id=b.id,
                trigger_type=b.trigger_type,
                function_id=function_id if function_id is not None else b.function_id,
                error=body,
            )
            b.owner.transport.send(encode_frame(frame).encode(), False)
        self._notify()

    def engine_bindings(self, type_id: str) -> list[Binding]:
        """The bindings of ``type_id`` delivered to an engine-provided type."""
        bindings = self.bindings_by_type.get(type_id)
        if not bindings:
            return []
        return [
            b
            for b in bindings.values()
            if b.provider is not None and b.provider.provider is None and b.acked
        ]

    # -- a connection ends -------------------------------------------------------------

    def drop_worker(self, w: Worker) -> None:
        """Withdraw everything ``w`` registered (docs/protocol.md#cleanup)."""
        changed = False
        for key in w.functions:
            entry = self.functions.get(key)
            if entry is not None and entry.owner is w:
                del self.functions[key]
                changed = True
        w.functions = set()
        if changed:
            self._functions_changed()
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
            self.reresolve(type_id)


def _moves(old: TriggerTypeEntry, target: Optional[TriggerTypeEntry]) -> bool:
    """Whether a binding delivered to ``old`` must be withdrawn from it when it goes
    to ``target``: always for an engine-provided type (its module hears the
    unregister before any new register), else when the providing worker changes
    (a worker provider takes a re-sent ``registertrigger`` as a replacement)."""
    return old.provider is None or target is None or target.provider is not old.provider
