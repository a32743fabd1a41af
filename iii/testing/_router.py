"""Invocation routing (docs/protocol.md#invocations): calls, results, the queue hand-off.

A call goes to the worker that registered the function (an ``invokefunction``
with the engine's invocation id, kept in ``pending`` until the result), to an
engine worker module's function (run on the loop), or to the remote invoker of
an HTTP-invoked function.  Its outcome goes back to the caller under the
caller's invocation id, or to a ``Waiter`` for calls the engine makes itself.
Routing one call is one dictionary lookup and one write.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Optional

import anyio

from iii_protocol import InvokeFunction
from iii_protocol._json import JSON, JSONObject

from . import _jsonio as jsonio
from ._api import RemoteInvoker
from ._records import (
    DEFAULT,
    Builtin,
    BuiltinError,
    Call,
    ErrorDict,
    FunctionEntry,
    Pending,
    Waiter,
    Worker,
    error_body,
    new_id,
)
from ._registry import Registry

__all__ = ["QUEUE_FUNCTION_ID", "ResultHook", "Router"]

log = logging.getLogger("iii.testing")

#: Where ``TriggerAction.Enqueue`` calls are handed (a queue worker module, or a
#: worker that registers it).
QUEUE_FUNCTION_ID = "engine::queue::enqueue"

#: ``hook(pending, result, error)``: True when it took the result (test controls
#: delaying or withholding it); it completes it later with ``Router.complete``.
ResultHook = Callable[[Pending, JSON, Optional[ErrorDict]], bool]

_dumps = jsonio.dumps


def enqueue_error(error: ErrorDict) -> ErrorDict:
    """The ``enqueue_error`` a caller gets when the queue provider failed: the
    real engine's words for a missing provider; an ``enqueue_error`` of the
    provider as it is (the built-in queue's, in the words of the engine that
    had the queue built in: ``Queue 'x' not found``); else ``"code: message"``."""
    code, message = error.get("code"), error.get("message")
    if code == "function_not_found":
        message = (
            "No queue provider is installed. `TriggerAction::Enqueue` routes through the "
            f"`{QUEUE_FUNCTION_ID}` provider, which the standalone queue worker registers. "
            f"Add it with `iii worker add queue`. (underlying: {message})"
        )
    elif code != "enqueue_error":
        message = f"{code}: {message}"
    return error_body("enqueue_error", str(message))


def _log_failure(function_id: str) -> Waiter:
    def done(result: JSON, error: Optional[ErrorDict]) -> None:
        if error is not None:
            log.info("engine call to %s failed: %s", function_id, error.get("message"))

    return done


class Router:
    """Invocations in flight and where their outcomes go."""

    def __init__(
        self,
        registry: Registry,
        *,
        spawn: Callable[..., None],
        relieve: Callable[[], Coroutine[Any, Any, None]],
    ) -> None:
        self.registry = registry
        self.functions = registry.functions
        self.builtins = registry.builtins
        self.pending: dict[str, Pending] = {}
        self.result_hook: Optional[ResultHook] = None
        self.remote_invoker: Optional[RemoteInvoker] = None
        self._spawn = spawn
        self._relieve = relieve

    # -- routing ---------------------------------------------------------------------

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
        ``reply_id`` (when both are set) or to ``waiter``.  ``origin`` is the
        connection the call came from (engine functions see it as the caller)."""
        entry = self.functions.get((ns, function_id))
        if entry is not None:
            pending = Pending(
                caller, reply_id, function_id, entry.owner, traceparent, baggage, waiter
            )
            if entry.http is not None:
                pending.handler = None
                self.pending[invocation_id] = pending
                self._spawn(self._remote_call, entry, invocation_id, data, traceparent, baggage)
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

    def is_builtin_target(self, ns: str, function_id: str) -> bool:
        return (
            ns == DEFAULT
            and function_id in self.builtins
            and (ns, function_id) not in self.functions
        )

    def invoke(
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
        self, ns: str, function_id: str, data: JSON, *, metadata: JSON = None
    ) -> tuple[JSON, Optional[ErrorDict]]:
        """Await an engine-made call's outcome."""
        done = anyio.Event()
        box: list[tuple[JSON, Optional[ErrorDict]]] = []

        def on_done(result: JSON, error: Optional[ErrorDict]) -> None:
            box.append((result, error))
            done.set()

        self.invoke(ns, function_id, data, metadata=metadata, on_done=on_done)
        await self._relieve()
        await done.wait()
        return box[0]

    # -- engine functions --------------------------------------------------------------

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
        call = Call(builtin.id, origin, data, traceparent, baggage, metadata)
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
            self._spawn(
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
        await self._relieve()

    async def _remote_call(
        self,
        entry: FunctionEntry,
        invocation_id: str,
        data: JSON,
        traceparent: Optional[str],
        baggage: Optional[str],
    ) -> None:
        invoker = self.remote_invoker
        if invoker is None:  # the module went away with its engine run
            result: JSON = None
            error: Optional[ErrorDict] = error_body(
                "function_not_invokable", f"no HTTP invoker for {entry.id}"
            )
        else:
            result, error = await invoker(entry, invocation_id, data, traceparent, baggage)
        pending = self.pending.pop(invocation_id, None)
        if pending is not None:
            self.complete(pending, result, error)
            await self._relieve()

    # -- outcomes ----------------------------------------------------------------------

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

    def result(self, inv_id: str, result: JSON, error: Optional[ErrorDict]) -> None:
        """A handler answered invocation ``inv_id`` (canonical form)."""
        pending = self.pending.pop(inv_id, None)
        if pending is None:
            log.debug("dropping result for unknown invocation %s", inv_id)
            return
        hook = self.result_hook
        if hook is not None and hook(pending, result, error):
            return
        self.complete(pending, result, error)

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

    def drop_worker(self, w: Worker) -> None:
        """``w`` is gone: the calls it was running fail, those it waited on are abandoned."""
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

    def active_invocations(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for p in self.pending.values():
            if p.handler is not None:
                counts[p.handler.worker_id] = counts.get(p.handler.worker_id, 0) + 1
        return counts

    # -- the queue hand-off (docs/protocol.md#routing) ------------------------------------

    def enqueue(
        self, w: Worker, f: InvokeFunction, ns: str, inv_id: Optional[str], queue: str
    ) -> None:
        """Hand the call to the queue provider; the caller gets a receipt."""
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
                self.reply(w, inv_id, f.function_id, None, enqueue_error(error))
            else:
                self.reply(w, inv_id, f.function_id, {"messageReceiptId": receipt}, None)

        self.invoke(DEFAULT, QUEUE_FUNCTION_ID, job, on_done=done)
