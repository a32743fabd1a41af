"""``LoopRuntime``: the worker of ``async with register_worker_async(...)``.

Everything runs on the caller's asyncio loop or trio run, inside the task
group of the ``async with`` block: the anyio transport, async handlers (bare
asyncio tasks; trio tasks of that group), the waits of ``trigger_async``.
No thread hop on any of those paths.  Sync handlers run on the bounded pool
of daemon threads; their answers come back to the loop in batches.  The
worker lives as long as the block: when the loop ends, the block has ended.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, Optional, TypeVar

import anyio
import anyio.abc
import anyio.from_thread
import anyio.lowlevel
import anyio.to_thread

from iii_protocol import Connection, ErrorBody
from iii_transports.anyio import AnyioTransport

from ._loops import Host, Job, running_host
from ._runtime import RuntimeBase, send_result
from ._waiters import AsyncWaiter

if TYPE_CHECKING:
    from ._session import Session

__all__ = ["LoopRuntime"]

log = logging.getLogger("iii")
T = TypeVar("T")


class LoopRuntime(RuntimeBase):
    """See the module docstring.  Made on the loop, inside ``tg``."""

    def __init__(self, session: Session, tg: anyio.abc.TaskGroup) -> None:
        super().__init__(session)
        self.tg = tg
        self.token = anyio.lowlevel.current_token()
        self.transport = AnyioTransport(
            self.conn, self.on_event, ssl_context=session.options.ssl_context
        )
        host = running_host(
            session.options.max_concurrent_handlers,
            flush=self._flush_soon,
            on_gone=_abandon,
            watch=False,
            nursery=tg,
        )
        assert host is not None, "LoopRuntime is made on a running loop"
        self.host = host

    def start(self) -> None:
        self.tg.start_soon(self._run)

    async def _run(self) -> None:
        try:
            await self.transport.run()
        except anyio.get_cancelled_exc_class():
            raise
        except Exception as exc:  # a bug in the pump: fail visibly, not silently
            log.exception("iii transport task crashed")
            self.crashed(exc)

    def _host_here(self) -> Optional[Host]:
        return self.host if self.host.serving() else None

    def command(self, fn: Callable[[Connection, float], T]) -> T:
        if not self.host.on_loop():
            return anyio.from_thread.run_sync(self.command, fn, token=self.token)
        result = fn(self.conn, self.host.now())
        self.host.request_flush()  # one write per loop turn
        return result

    def send(self, fn: Callable[[Connection, float], object]) -> None:
        if self.host.on_loop():
            self.command(fn)
        else:  # a pool thread's: no waiting for the loop
            self.host.post(lambda: self._command_soon(fn))

    def answer(
        self, invocation_id: str, function_id: str, result: Any, error: Optional[ErrorBody]
    ) -> None:
        host = self.host
        if host.on_loop():
            send_result(self.conn, invocation_id, function_id, result, error)
            host.request_flush()
        else:  # a pool thread's answer: batched with the rest of the loop's turn
            host.commands.append((invocation_id, function_id, result, error))
            host.post(self._answer_soon)

    def _answer_soon(self) -> None:
        commands, self.host.commands = self.host.commands, []
        conn = self.conn
        for item in commands:
            send_result(conn, *item)
        self.host.request_flush()

    def _command_soon(self, fn: Callable[[Connection, float], object]) -> None:
        self.command(fn)

    def _flush_soon(self, host: Host) -> None:
        # Whatever this turn queued, the transport's writer task writes at once.
        self.transport.after_command()

    def _spawn_async(self, job: Job) -> None:
        if not self.host.submit(job):
            job.abandon("the worker's event loop ended before the handler ran")

    # -- calls ------------------------------------------------------------------------

    def _async_waiter(self) -> AsyncWaiter:
        return self.host.waiter()

    def call_async(self, kwargs: dict[str, Any], timeout: float) -> Coroutine[Any, Any, Any]:
        # Not a coroutine itself: a frame here would keep every pending call's
        # arguments alive (memory per pending call is a target).
        if not self.host.on_loop():  # another thread or loop
            return anyio.to_thread.run_sync(self.call, kwargs, timeout)
        return RuntimeBase.call_async(self, kwargs, timeout)

    def _call_blocking(self, kwargs: dict[str, Any], timeout: float) -> Any:
        return anyio.from_thread.run(self.call_async, kwargs, timeout, token=self.token)

    # -- shutdown -----------------------------------------------------------------------

    def shutdown(self) -> None:
        if self.host.on_loop():
            # Blocking here would freeze the loop the shutdown needs: start it
            # and return; the worker's block ends once it is done.
            self.tg.start_soon(self.shutdown_async)
            return
        anyio.from_thread.run(self.shutdown_async, token=self.token)

    async def shutdown_async(self) -> None:
        if not self.host.on_loop():
            await anyio.to_thread.run_sync(self.shutdown)
            return
        await self.session.inflight.wait_idle_async(self.session.grace)
        self._stop_jobs("the worker shut down before the handler finished")
        self.host.cancel_tasks()
        await self.transport.aclose()


def _abandon(host: Host, jobs: list[Job]) -> None:
    for job in jobs:
        job.abandon("the worker's event loop ended before the handler ran")
