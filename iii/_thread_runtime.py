"""``ThreadRuntime``: the worker of ``register_worker`` (and ``III(...)``).

The socket is driven by the thread transport (an I/O thread that reads and
runs the timers, a writer thread); callers write their own commands.  Sync
handlers run on a bounded pool of daemon threads.  Async handlers run on a
loop ``Host``:

* the app's loop: when ``register_worker`` is called with an asyncio loop or
  a trio run going in the calling thread, the worker binds to it.  Handlers
  are tasks of that loop (trio: system tasks of that run), ``trigger_async``
  awaits there with one wake-up per answer, and all the invocations and
  answers of one read reach the loop in one hop;
* a private loop on a daemon thread, started on first use (asyncio; a trio
  run for a worker bound to trio, whose handlers use trio), when no loop was
  running, and for the rest of the worker's life once the app's loop has
  ended (``asyncio.run`` returned, the loop was closed, the trio run
  finished): handlers not started by then run there; handlers that were
  running are cancelled by the loop's own shutdown and answer with that.

Writes made on a loop thread go out once per loop turn, not once per call.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Optional, TypeVar

from iii_protocol import Connection, ErrorBody
from iii_protocol.errors import InvocationError
from iii_transports.blocking import ThreadTransport

from ._loops import Host, Job, PrivateLoop, TrioHost, running_host
from ._runtime import RuntimeBase, outcome_value, send_result
from ._waiters import AsyncWaiter, LoopWaiter, Outcome, ThreadWaiter

if TYPE_CHECKING:
    from ._session import Session

__all__ = ["ThreadRuntime"]

log = logging.getLogger("iii")
T = TypeVar("T")

# A safety margin past a call's own deadline: the core always answers first.
_WAIT_SLACK = 10.0


class ThreadRuntime(RuntimeBase):
    """See the module docstring."""

    def __init__(self, session: Session) -> None:
        super().__init__(session)
        options = session.options
        self.transport = ThreadTransport(
            self.conn, self.on_event, ssl_context=options.ssl_context, on_crash=self.crashed
        )
        limit = options.max_concurrent_handlers
        self.app: Optional[Host] = running_host(
            limit, flush=self._flush, on_gone=self._app_gone, watch=True
        )
        # Handlers written for trio need trio, even after the app's run ended.
        self.private = PrivateLoop(limit, flush=self._flush, trio=isinstance(self.app, TrioHost))

    def start(self) -> None:
        self.transport.start()

    def _host_here(self) -> Optional[Host]:
        app = self.app
        if app is not None and app.serving():
            return app
        private = self.private.host
        if private is not None and private.serving():
            return private
        return None

    def command(self, fn: Callable[[Connection, float], T]) -> T:
        with self.transport.lock:
            result = fn(self.conn, self.transport.now())
        host = self._host_here()
        if host is None:
            self.transport.process()
        else:
            host.request_flush()  # one write per loop turn
        return result

    def send(self, fn: Callable[[Connection, float], object]) -> None:
        host = self._host_here()
        if host is None:
            self.command(fn)
        else:  # answers of one loop turn: one lock, one write
            host.commands.append(fn)
            host.request_flush()

    def answer(
        self, invocation_id: str, function_id: str, result: Any, error: Optional[ErrorBody]
    ) -> None:
        host = self._host_here()
        if host is None:
            with self.transport.lock:
                send_result(self.conn, invocation_id, function_id, result, error)
            self.transport.process()
        else:  # answers of one loop turn: one lock, one write
            host.commands.append((invocation_id, function_id, result, error))
            host.request_flush()

    def _flush(self, host: Host) -> None:
        commands, host.commands = host.commands, []
        if commands:
            conn = self.conn
            with self.transport.lock:
                now = self.transport.now()
                for item in commands:
                    try:
                        if type(item) is tuple:  # an answer
                            send_result(conn, *item)
                        else:
                            item(conn, now)
                    except Exception:  # answers swallow their own errors; this is a bug
                        log.exception("iii: internal error in a queued command")
        self.transport.process()

    # -- handlers --------------------------------------------------------------------------

    def _spawn_async(self, job: Job) -> None:
        app = self.app
        if app is not None and app.submit(job):
            return
        try:
            private = self.private.get()
        except RuntimeError:  # CPython 3.12.0-3.12.1 after the main thread ended
            job.abandon("no thread could be started for the handler loop")
            return
        if not private.submit(job):
            job.abandon("the worker is shutting down")

    def _app_gone(self, host: Host, jobs: list[Job]) -> None:
        """The app's loop is ending or gone: its jobs not started move to the private loop."""
        log.debug("the event loop the worker was bound to ended; handlers move to a private loop")
        if host.gone:  # closed under running handlers: none of its tasks will finish
            for job in list(host.gate.running):
                job.abandon("the event loop the handler ran on was closed")
        for job in jobs:
            self._spawn_async(job)

    # -- calls -------------------------------------------------------------------------------

    def _async_waiter(self) -> AsyncWaiter:
        host = self._host_here()
        return host.waiter() if host is not None else LoopWaiter[Outcome]()

    def _call_blocking(self, kwargs: dict[str, Any], timeout: float) -> Any:
        waiter = ThreadWaiter[Outcome]()
        invocation_id = self._start_call(kwargs, waiter)
        if invocation_id is None:
            return None
        # Read the answer on this thread when nobody else is reading: a
        # sequential caller then costs one round trip and no thread hand-off.
        self.transport.read_until(waiter.is_set, timeout + _WAIT_SLACK)
        outcome = waiter.wait(timeout + _WAIT_SLACK)
        if outcome is None:  # pragma: no cover - the core times calls out itself
            self._forget(invocation_id)
            raise InvocationError(
                "TIMEOUT", "no outcome from the connection", function_id=kwargs["function_id"]
            )
        return outcome_value(outcome, kwargs["action"])

    # -- shutdown -------------------------------------------------------------------------------

    def shutdown(self) -> None:
        # On one of the worker's loops the handlers cannot finish while this
        # thread waits for them: no grace there ('await shutdown_async()' gives it).
        if self._host_here() is None:
            self.session.inflight.wait_idle(self.session.grace)
        self._close()

    async def shutdown_async(self) -> None:
        await self.session.inflight.wait_idle_async(self.session.grace)
        self._close()

    def _close(self) -> None:
        self._stop_jobs("the worker shut down before the handler finished")
        for host in (self.app, self.private.host):
            if host is not None:
                host.run_here(host.stop_watching)
                host.run_here(host.cancel_tasks)
        self.transport.close()  # writes the answers above, then a close 1000
        self.private.stop()
