"""The runtime model: one interface for what drives a worker, and what every
runtime shares.

A runtime decides which thread or loop touches the protocol core, where
handler jobs run and how callers wait for their calls.  Two implement
``Runtime``:

* ``ThreadRuntime`` (``register_worker``, ``III(...)``): the thread
  transport; sync handlers on a bounded pool of daemon threads; async
  handlers as tasks of the asyncio loop or trio run that was running where
  the worker was made (or of a private loop thread when there was none, or
  once that loop has ended).
* ``LoopRuntime`` (``register_worker_async``): the anyio transport on the
  caller's own loop; async handlers as tasks of that loop, sync ones on the
  same kind of pool.
"""

from __future__ import annotations

import abc
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Optional, Protocol, TypeVar

from iii_protocol import Connection, ErrorBody, LocalProtocolError, TriggerActionEnqueue
from iii_protocol import events as ev
from iii_protocol.errors import InvocationError

from ._loops import Host, Job
from ._pool import HandlerPool
from ._waiters import AsyncWaiter, Outcome, Waiter
from .errors import IIIUsageError
from .iii_types import EnqueueResult

if TYPE_CHECKING:
    from ._session import Session


def send_result(
    conn: Connection,
    invocation_id: str,
    function_id: str,
    result: Any,
    error: Optional[ErrorBody],
) -> None:
    """Answer an invocation on the core (under the runtime's command)."""
    try:  # noqa: SIM105 - a try is cheaper than suppress() on this hot path
        conn.send_result(invocation_id, function_id, result, error=error)
    except LocalProtocolError:  # answered already (shutdown answered it first) or never ours
        pass


__all__ = ["Runtime", "RuntimeBase", "outcome_value", "send_result"]

T = TypeVar("T")

#: What a runtime runs a core command with: ``fn(conn, now)``.
Command = Callable[[Connection, float], T]


class Runtime(Protocol):
    """What the ``III`` façade and the session need from a runtime."""

    def start(self) -> None:
        """Start connecting."""

    def command(self, fn: Callable[[Connection, float], T]) -> T:
        """Run ``fn(conn, now)`` where the core may be touched and return its
        value (or raise its exception); what it queued is written soon."""

    def send(self, fn: Callable[[Connection, float], object]) -> None:
        """``command`` without waiting for it, from any thread (acks)."""

    def answer(
        self, invocation_id: str, function_id: str, result: Any, error: Optional[ErrorBody]
    ) -> None:
        """Answer an invocation, from any thread, without waiting (batched with
        the other answers of the same loop turn or read)."""

    def spawn(self, job: Job) -> None:
        """Run a handler job (sync: the pool; async: a loop's task)."""

    def call(self, kwargs: dict[str, Any], timeout: float) -> Any:
        """Invoke and block this thread for the outcome."""

    def call_async(self, kwargs: dict[str, Any], timeout: float) -> Awaitable[Any]:
        """Invoke and await the outcome in the calling task."""

    def shutdown(self) -> None:
        """Let running handlers finish (the grace), answer the rest, disconnect."""

    async def shutdown_async(self) -> None:
        """``shutdown`` for asyncio and trio callers."""


def outcome_value(outcome: Outcome, action: object) -> Any:
    """A call's value, or its failure raised as ``InvocationError``."""
    if isinstance(outcome, ev.InvocationFailed):
        error = outcome.error
        raise InvocationError(
            error.code,
            error.message,
            function_id=outcome.function_id or None,
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


class RuntimeBase(abc.ABC):
    """The parts both runtimes share: the waiters of outbound calls, the
    handler pool, event routing, crash handling and the call skeletons."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.conn = session.conn
        self.waiters: dict[str, Waiter[Outcome]] = {}
        self.pool = HandlerPool(session.options.max_concurrent_handlers)

    # -- what each runtime provides -----------------------------------------------

    @abc.abstractmethod
    def command(self, fn: Callable[[Connection, float], T]) -> T: ...

    @abc.abstractmethod
    def _host_here(self) -> Optional[Host]:
        """The host of one of this worker's loops, when called on its thread."""

    @abc.abstractmethod
    def _spawn_async(self, job: Job) -> None: ...

    @abc.abstractmethod
    def _async_waiter(self) -> AsyncWaiter:
        """A waiter the calling task can await."""

    @abc.abstractmethod
    def _call_blocking(self, kwargs: dict[str, Any], timeout: float) -> Any: ...

    # -- events ------------------------------------------------------------------------

    def on_event(self, event: ev.Event) -> None:
        """The transport's callback: outcomes to their waiters, the rest to the session."""
        kind = type(event)
        if kind is ev.InvocationRequested:
            self.session.on_invocation(event)  # type: ignore[arg-type]
        elif kind is ev.InvocationSucceeded or kind is ev.InvocationFailed:
            self.complete(event)  # type: ignore[arg-type]
        else:
            self.session.on_event(event)

    def complete(self, outcome: Outcome) -> None:
        waiter = self.waiters.pop(outcome.invocation_id, None)
        if waiter is not None:
            if type(outcome) is ev.InvocationFailed:
                outcome = self.session.annotate(outcome)
            waiter.set(outcome)

    def crashed(self, exc: BaseException) -> None:
        """A transport thread or task died of a bug (already logged): fail every
        pending call at once and leave the worker visibly ``failed``."""
        failure = self.session.crash(exc)
        waiters, self.waiters = self.waiters, {}
        error = ErrorBody(code=failure.code, message=failure.message)
        for invocation_id, waiter in waiters.items():
            failed = ev.InvocationFailed(invocation_id=invocation_id, function_id="", error=error)
            waiter.set(failed)

    # -- handlers ------------------------------------------------------------------------

    def spawn(self, job: Job) -> None:
        if job.is_async:
            self._spawn_async(job)
            return
        try:
            submitted = self.pool.submit(job)
        except RuntimeError:  # CPython 3.12.0-3.12.1 after the main thread ended
            job.abandon("no thread could be started to run the handler")
            return
        if not submitted:
            job.abandon("the worker is shutting down")

    def _stop_jobs(self, why: str) -> None:
        """Shutdown, after the grace: nothing more starts; the rest is answered now."""
        self.pool.close()
        for job in self.session.inflight.jobs():
            job.abandon(why)

    # -- calls ----------------------------------------------------------------------------

    def send(self, fn: Callable[[Connection, float], object]) -> None:
        self.command(fn)

    def answer(
        self, invocation_id: str, function_id: str, result: Any, error: Optional[ErrorBody]
    ) -> None:
        self.send(lambda conn, now: send_result(conn, invocation_id, function_id, result, error))

    def _start_call(self, kwargs: dict[str, Any], waiter: Waiter[Outcome]) -> Optional[str]:
        def start(conn: Connection, now: float) -> Optional[str]:
            invocation_id = conn.invoke(now=now, **kwargs)
            if invocation_id is not None:
                self.waiters[invocation_id] = waiter
            return invocation_id

        return self.command(start)

    def _forget(self, invocation_id: str) -> None:
        """The caller gave up (cancelled): a late answer is dropped."""
        self.waiters.pop(invocation_id, None)
        self.command(lambda conn, now: conn.cancel(invocation_id))

    def call(self, kwargs: dict[str, Any], timeout: float) -> Any:
        if self._host_here() is not None:
            raise IIIUsageError(
                "trigger() would block the event loop this worker runs its handlers on "
                "(and deadlock on them); use 'await trigger_async(...)'"
            )
        return self._call_blocking(kwargs, timeout)

    async def call_async(self, kwargs: dict[str, Any], timeout: float) -> Any:
        waiter = self._async_waiter()
        action = kwargs["action"]
        invocation_id = self._start_call(kwargs, waiter)
        # No local keeps the call's arguments alive while it waits: with
        # thousands pending, that dict is a good part of each one's memory.
        del kwargs
        if invocation_id is None:
            return None
        try:
            outcome = await waiter.wait()
        except BaseException:
            self._forget(invocation_id)
            raise
        return outcome_value(outcome, action)
