"""Event loops a worker runs async handlers on: the app's asyncio loop or trio
run, or a private asyncio loop on a daemon thread.

A ``Host`` is one such loop.  Other threads hand it work through a mailbox:
everything posted before the loop gets to run is drained in one callback, so a
read that produced many invocations or answers costs the loop one wake-up, not
one per item.  Handler jobs go through a ``Gate`` (at most ``limit`` running)
and run as tasks of the loop.

A host can go away under a worker: ``asyncio.run`` returns, a loop is closed,
a trio run ends.  The host then *retires*: it takes no more jobs and hands
those not started yet to ``on_gone``, which gives them to another host, so no
invocation is dropped on the floor.  Running handlers are cancelled by the
loop's own shutdown and answer with that cancellation.
"""

from __future__ import annotations

import abc
import contextvars
import functools
import logging
import sys
import threading
from collections import deque
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, Optional, Protocol

from ._waiters import AsyncWaiter, Outcome

if TYPE_CHECKING:  # imported where a loop is made or found: threads need none
    import asyncio

__all__ = ["Job", "Gate", "Host", "AsyncioHost", "TrioHost", "PrivateLoop", "running_host"]

log = logging.getLogger("iii")


class Job(Protocol):
    """One handler run (``_dispatch`` makes them); answers its invocation exactly once."""

    is_async: bool

    @property
    def name(self) -> str:
        """What the handler's task is called."""

    def run(self) -> None: ...
    async def run_async(self) -> None: ...
    def abandon(self, why: str) -> None: ...


class Gate:
    """At most ``limit`` jobs at once on one loop; the rest wait their turn, in order.

    Used from its loop's thread only, so plain counters suffice: no
    semaphore, no cancel scope, nothing per job but what runs it.  A
    waiting job starts on the loop turn after a slot frees: when the loop is
    shutting down, the host retires first and the job goes elsewhere.
    """

    __slots__ = ("_defer", "_run", "closed", "limit", "running", "waiting")

    def __init__(
        self,
        limit: int,
        run: Callable[[Job], None],
        defer: Callable[[Callable[[], None]], None],
    ):
        self.limit = max(1, limit)
        self.running: set[Job] = set()
        self.waiting: deque[Job] = deque()
        self.closed = False
        self._run = run
        self._defer = defer

    def submit(self, job: Job) -> None:
        if len(self.running) < self.limit and not self.waiting:
            self.running.add(job)
            self._run(job)
        else:
            self.waiting.append(job)

    def finished(self, job: Job) -> None:
        """``job`` ended (its host calls this): its slot is free."""
        self.running.discard(job)
        if self.waiting:
            self._defer(self._next)

    def _next(self) -> None:
        while self.waiting and len(self.running) < self.limit and not self.closed:
            job = self.waiting.popleft()
            self.running.add(job)
            self._run(job)

    def take_waiting(self) -> list[Job]:
        """Close the gate: nothing more starts; returns the jobs that were waiting."""
        self.closed = True
        waiting = list(self.waiting)
        self.waiting.clear()
        return waiting


class Host(abc.ABC):
    """One event loop that runs handler jobs and wakes waiting tasks.

    Thread-safe: ``submit``, ``post``, ``on_loop``.  On the loop's thread
    only: ``request_flush``, ``waiter``, ``cancel_tasks``, ``retire``.
    """

    def __init__(
        self,
        limit: int,
        *,
        flush: Callable[[Host], None],
        on_gone: Callable[[Host, list[Job]], None],
    ) -> None:
        self.thread_id = threading.get_ident()
        self.gate = Gate(limit, self._run_job, self._defer)
        self._flush = flush
        self._flush_scheduled = False
        self._draining = False
        #: commands the runtime queued on this loop for its flush (its business)
        self.commands: list[Any] = []
        self._on_gone = on_gone
        self._lock = threading.Lock()
        # The mailbox: jobs (another host may run them) and callbacks.
        self._jobs: list[Job] = []
        self._calls: list[Callable[[], None]] = []
        self._scheduled = False
        self.retired = False  # no new jobs (they go to another host)
        self.gone = False  # the loop itself is gone: nothing runs here any more

    # -- for subclasses ------------------------------------------------------------

    @abc.abstractmethod
    def _wake(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` on the loop soon, from any thread; RuntimeError if it is gone."""

    @abc.abstractmethod
    def _defer(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` on the loop after this turn (called on the loop)."""

    @abc.abstractmethod
    def _run_job(self, job: Job) -> None:
        """Run ``job.run_async()`` (on the loop); ``gate.finished(job)`` when it ends."""

    @abc.abstractmethod
    def waiter(self) -> AsyncWaiter:
        """A waiter a task of this loop awaits; ``set`` from any thread."""

    @abc.abstractmethod
    def now(self) -> float:
        """The loop's clock (anyio's ``current_time``, which needs a task to ask)."""

    @abc.abstractmethod
    def cancel_tasks(self) -> None:
        """Cancel every task this host started (on the loop)."""

    @abc.abstractmethod
    def stop_watching(self) -> None:
        """The worker is closing: stop watching for the loop's end (on the loop)."""

    def run_here(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` on the loop: now when called there, else soon."""
        if self.on_loop():
            callback()
        else:
            self.post(callback)

    # -- any thread ----------------------------------------------------------------

    def on_loop(self) -> bool:
        return threading.get_ident() == self.thread_id and not self.gone

    def serving(self) -> bool:
        """Called from this loop while it runs and hosts the worker's handlers."""
        return self.on_loop() and not self.retired and self._running()

    def _running(self) -> bool:
        return True

    def submit(self, job: Job) -> bool:
        """Run a handler job here; False if this host takes no more jobs."""
        if self.on_loop() and not self.retired:
            self.gate.submit(job)
            return True
        with self._lock:
            if self.retired:  # (gone implies retired)
                return False
            self._jobs.append(job)
            if self._scheduled:
                return True
            self._scheduled = True
        self._schedule()
        return True

    def post(self, callback: Callable[[], None]) -> bool:
        """Run ``callback`` on the loop soon; False if the loop is gone (it never runs)."""
        with self._lock:
            if self.gone:
                return False
            self._calls.append(callback)
            if self._scheduled:
                return True
            self._scheduled = True
        self._schedule()
        return True

    def _schedule(self) -> None:
        try:
            self._wake(self._drain)
        except RuntimeError:  # closed loop, finished run
            self._lost()

    def _drain(self) -> None:
        """Everything posted since the last drain, in one loop callback; what
        it made the runtime queue is flushed at its end (one write per drain)."""
        with self._lock:
            calls, self._calls = self._calls, []
            jobs, self._jobs = self._jobs, []
            self._scheduled = False
        self._draining = True
        try:
            for callback in calls:
                try:
                    callback()
                except Exception:  # never let one item break the loop's callback
                    log.exception("iii: internal error delivering work to an event loop")
            submit = self.gate.submit
            for job in jobs:
                try:
                    submit(job)
                except Exception:
                    log.exception("iii: internal error delivering work to an event loop")
        finally:
            self._draining = False
        if self._flush_scheduled:
            self._run_flush()

    def _lost(self) -> None:
        """The loop is gone: jobs not started go elsewhere, callbacks are dropped."""
        with self._lock:
            self.gone = self.retired = True
            jobs, self._jobs = self._jobs, []
            self._calls = []
            self._scheduled = False
        self._on_gone(self, jobs + self.gate.take_waiting())

    # -- on the loop -----------------------------------------------------------------

    def request_flush(self) -> None:
        """Have ``flush(host)`` run once, at the end of this drain or loop turn."""
        if not self._flush_scheduled:
            self._flush_scheduled = True
            if not self._draining:
                self._defer(self._run_flush)

    def _run_flush(self) -> None:
        if self._flush_scheduled:
            self._flush_scheduled = False
            self._flush(self)

    def retire(self) -> None:
        """Take no more jobs: the ones not started yet go to ``on_gone``."""
        with self._lock:
            if self.retired:
                return
            self.retired = True
            jobs, self._jobs = self._jobs, []
        self._on_gone(self, jobs + self.gate.take_waiting())


class _HostWaiter(abc.ABC):
    """Set from any thread; delivered on the host's loop (batched with the
    rest of what one read produced)."""

    __slots__ = ("host",)

    def __init__(self, host: Host) -> None:
        self.host = host

    def set(self, value: Outcome) -> None:
        if self.host.on_loop():
            self._resolve(value)
        else:
            self.host.post(lambda: self._resolve(value))

    @abc.abstractmethod
    def _resolve(self, value: Outcome) -> None: ...


# -- asyncio ---------------------------------------------------------------------------

#: A task of ``loop`` running ``coro`` (named ``name``) in ``context``, started
#: eagerly when the loop allows it.
TaskStarter = Callable[[Coroutine[Any, Any, Any], str, contextvars.Context], "asyncio.Task[Any]"]


class _CaughtStep:
    """Stands in for ``loop.call_soon`` while a task is made: keeps its first step."""

    __slots__ = ("context", "step")

    def __call__(self, step: Callable[[], None], *args: Any, context: Any = None) -> None:
        self.step = step
        self.context = context


def _plain(loop: asyncio.AbstractEventLoop) -> TaskStarter:
    def start(
        coro: Coroutine[Any, Any, Any], name: str, context: contextvars.Context
    ) -> asyncio.Task[Any]:
        if sys.version_info >= (3, 11):
            return loop.create_task(coro, name=name, context=context)
        return context.run(loop.create_task, coro, name=name)  # it copies the current one

    return start


def _eager_starter(loop: asyncio.AbstractEventLoop) -> TaskStarter:
    """How this host starts handler tasks: eagerly (Python 3.12's eager tasks,
    done portably), so a handler that returns without suspending costs no
    loop turn and no scheduling.

    The first step runs inside ``Task`` (3.12+: ``eager_start``), or, before
    3.12, right after it: the step ``Task`` schedules is taken from the
    loop's ``call_soon`` and run at once, with the task as the current task
    and in the task's own context.  Either way the handler sees exactly what
    a task sees (``current_task()``, its own contextvars, cancellation), and
    a handler that suspends simply continues as that task.  A loop with a
    task factory (the app's choice) or one whose ``call_soon`` cannot be
    stood in for (uvloop) gets plain ``create_task``.
    """
    import asyncio

    if loop.get_task_factory() is not None:
        return _plain(loop)
    if sys.version_info >= (3, 12):
        Task: Any = asyncio.Task

        def eager(
            coro: Coroutine[Any, Any, Any], name: str, context: contextvars.Context
        ) -> asyncio.Task[Any]:
            task: asyncio.Task[Any] = Task(
                coro, loop=loop, name=name, context=context, eager_start=True
            )
            return task

        return eager
    slots = getattr(loop, "__dict__", None)
    if slots is None or "call_soon" in slots:
        return _plain(loop)
    from asyncio.tasks import _enter_task, _leave_task, current_task

    caught = _CaughtStep()

    def started(
        coro: Coroutine[Any, Any, Any], name: str, context: contextvars.Context
    ) -> asyncio.Task[Any]:
        slots["call_soon"] = caught
        try:
            if sys.version_info >= (3, 11):
                task = asyncio.Task(coro, loop=loop, name=name, context=context)
            else:  # it copies the current context
                task = context.run(asyncio.Task, coro, loop=loop, name=name)
        finally:
            del slots["call_soon"]
        step, task_context = caught.step, caught.context
        del caught.step, caught.context
        outer = current_task(loop)  # the task that dispatched it, if any
        if outer is not None:
            _leave_task(loop, outer)
        try:
            task_context.run(step)
        finally:
            if outer is not None:
                _enter_task(loop, outer)
        return task

    return started


class _FutureWaiter(_HostWaiter):
    """A bare future on the host's loop: one wake-up of the awaiting task."""

    __slots__ = ("future",)

    def __init__(self, host: AsyncioHost) -> None:
        super().__init__(host)
        self.future: asyncio.Future[Outcome] = host.loop.create_future()

    def _resolve(self, value: Outcome) -> None:
        if not self.future.done():
            self.future.set_result(value)

    def wait(self) -> asyncio.Future[Outcome]:
        # The future itself, not a coroutine around it: a frame less per pending call.
        return self.future


class AsyncioHost(Host):
    """An asyncio loop: the app's (bound at ``register_worker``) or a private one.

    With ``watch``, a sentinel task notices the loop shutting down
    (``asyncio.run`` cancels every task when ``main`` returns) and retires
    the host while the loop still runs.
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        limit: int,
        *,
        flush: Callable[[Host], None],
        on_gone: Callable[[Host, list[Job]], None],
        watch: bool = False,
        thread_id: Optional[int] = None,
    ) -> None:
        super().__init__(limit, flush=flush, on_gone=on_gone)
        if thread_id is not None:
            self.thread_id = thread_id
        self.loop = loop
        self.tasks: set[asyncio.Task[Any]] = set()
        self._task = _eager_starter(loop)
        # What handler tasks start from: the context where the host was made
        # (the app's, for a loop the worker was bound to).  Never the context
        # that happens to be current when one starts: that may be another
        # handler's (its answer asked for the flush that read this invocation).
        self._base = contextvars.copy_context()
        self._sentinel: Optional[asyncio.Future[None]] = None
        if watch:
            self._sentinel = loop.create_future()
            loop.create_task(self._watch(self._sentinel), name="iii: watch the loop's end")

    async def _watch(self, stop: asyncio.Future[None]) -> None:
        import asyncio

        try:
            await stop
        except asyncio.CancelledError:
            _guarded(self.retire)  # the loop is shutting down; its tasks are being cancelled

    def stop_watching(self) -> None:
        if self._sentinel is not None and not self._sentinel.done():
            self._sentinel.set_result(None)

    def _wake(self, callback: Callable[[], None]) -> None:
        self.loop.call_soon_threadsafe(callback, context=self._base)

    def _running(self) -> bool:
        return self.loop.is_running()  # run_until_complete returned: a plain thread again

    def _defer(self, callback: Callable[[], None]) -> None:
        self.loop.call_soon(callback, context=self._base)

    def _run_job(self, job: Job) -> None:
        # Started eagerly: a handler that never suspends is done on return,
        # with nothing scheduled and nothing to track.
        task = self._task(job.run_async(), job.name, self._base.copy())
        if task.done():
            self.gate.finished(job)
        else:
            self.tasks.add(task)
            task.add_done_callback(functools.partial(self._job_done, job))

    def _job_done(self, job: Job, task: asyncio.Task[Any]) -> None:
        self.tasks.discard(task)
        self.gate.finished(job)

    def waiter(self) -> _FutureWaiter:
        return _FutureWaiter(self)

    def now(self) -> float:
        return self.loop.time()

    def cancel_tasks(self) -> None:
        for task in list(self.tasks):
            task.cancel()


# -- trio --------------------------------------------------------------------------------


class _ParkedTask(_HostWaiter):
    """A trio task parked until ``set``: one reschedule, no Event."""

    __slots__ = ("has_value", "task", "value")

    def __init__(self, host: TrioHost) -> None:
        super().__init__(host)
        self.task: Any = None
        self.value: Optional[Outcome] = None
        self.has_value = False

    def _resolve(self, value: Outcome) -> None:
        import trio

        if self.has_value:
            return
        self.value, self.has_value = value, True
        task, self.task = self.task, None
        if task is not None:
            # The task reads ``self.value``: no ``outcome`` (a dependency of
            # trio's, not of ours) is needed to pass it.
            trio.lowlevel.reschedule(task)

    async def wait(self) -> Outcome:
        import trio

        if self.has_value:
            await trio.lowlevel.checkpoint()
            assert self.value is not None
            return self.value
        self.task = trio.lowlevel.current_task()

        def abort(_: Any) -> trio.lowlevel.Abort:
            self.task = None
            self.has_value = True  # a late value is dropped
            return trio.lowlevel.Abort.SUCCEEDED

        await trio.lowlevel.wait_task_rescheduled(abort)
        assert self.value is not None
        return self.value


class TrioHost(Host):
    """A trio run: tasks are system tasks of the run (``nursery``: tasks of that
    nursery instead), each in a cancel scope shutdown can cancel.

    With ``watch``, a system task notices the run ending (trio cancels system
    tasks when ``main`` returns) and retires the host.
    """

    def __init__(
        self,
        limit: int,
        *,
        flush: Callable[[Host], None],
        on_gone: Callable[[Host, list[Job]], None],
        nursery: Any = None,
        watch: bool = False,
    ) -> None:
        import trio

        super().__init__(limit, flush=flush, on_gone=on_gone)
        self.token = trio.lowlevel.current_trio_token()
        self._spawn: Callable[[Callable[[], Coroutine[Any, Any, Any]]], Any] = (
            trio.lowlevel.spawn_system_task if nursery is None else nursery.start_soon
        )
        self.scopes: set[trio.CancelScope] = set()
        self._deferred: list[Callable[[], None]] = []
        self._deferrer: Any = None  # the parked task that runs them; False once it ended
        self._deferrer_scope = trio.CancelScope()
        self._sentinel = trio.CancelScope()
        self._watching = watch
        if watch:
            trio.lowlevel.spawn_system_task(self._watch, name="iii: watch the run's end")

    async def _watch(self) -> None:
        import trio

        # A system task that raises crashes the whole run: nothing escapes here.
        with self._sentinel:
            try:
                await trio.sleep_forever()
            except trio.Cancelled:
                if self._watching:  # main returned: the run cancels its system tasks
                    _guarded(self.retire)
                raise

    def stop_watching(self) -> None:
        self._watching = False
        self._sentinel.cancel()

    def _wake(self, callback: Callable[[], None]) -> None:
        # An exception out of a run_sync_soon callback crashes the whole run.
        self.token.run_sync_soon(_guarded, callback)

    def _defer(self, callback: Callable[[], None]) -> None:
        # run_sync_soon would cost a wake-up write even from the run's own
        # thread: a parked system task rescheduled is trio's cheap call_soon.
        import trio

        deferrer = self._deferrer
        if deferrer is False:  # the run is ending
            try:
                self.token.run_sync_soon(_guarded, callback)
            except RuntimeError:  # it has ended: nothing runs there any more
                _guarded(callback)
            return
        self._deferred.append(callback)
        if deferrer is None:
            self._deferrer = True  # starting; it runs what is queued
            trio.lowlevel.spawn_system_task(self._run_deferred, name="iii: end of turn")
        elif deferrer is not True:  # parked: wake it
            self._deferrer = True
            trio.lowlevel.reschedule(deferrer)

    async def _run_deferred(self) -> None:
        import trio

        def abort(_: Any) -> trio.lowlevel.Abort:
            return trio.lowlevel.Abort.SUCCEEDED

        try:
            with self._deferrer_scope:
                while True:
                    while self._deferred:
                        callbacks, self._deferred = self._deferred, []
                        for callback in callbacks:
                            _guarded(callback)
                    self._deferrer = trio.lowlevel.current_task()
                    await trio.lowlevel.wait_task_rescheduled(abort)
        except trio.Cancelled:
            pass  # the run is ending: what is left goes through run_sync_soon
        finally:
            self._deferrer = False
            left, self._deferred = self._deferred, []
            for callback in left:
                self._defer(callback)

    def _run_job(self, job: Job) -> None:
        import trio

        async def scoped() -> None:
            with trio.CancelScope() as scope:
                self.scopes.add(scope)
                try:
                    await job.run_async()
                except Exception:  # jobs catch everything; a system task must not raise
                    log.exception("iii: internal error in a handler task")
                finally:
                    self.scopes.discard(scope)
                    self.gate.finished(job)

        self._spawn(scoped)

    def waiter(self) -> _ParkedTask:
        return _ParkedTask(self)

    def now(self) -> float:
        import trio

        return trio.current_time()

    def cancel_tasks(self) -> None:
        for scope in list(self.scopes):
            scope.cancel()
        self._deferrer_scope.cancel()  # later turns go through run_sync_soon


# -- the private loop ----------------------------------------------------------------------


class PrivateLoop:
    """A worker's own loop on a daemon thread, started on first use: asyncio,
    or a trio run for a worker that was bound to trio (its handlers use trio)."""

    def __init__(self, limit: int, *, flush: Callable[[Host], None], trio: bool = False) -> None:
        self._limit = limit
        self._flush = flush
        self._trio = trio
        self._lock = threading.Lock()
        self._stop: Callable[[], None] = lambda: None
        self.host: Optional[Host] = None

    def get(self) -> Host:
        host = self.host
        if host is not None:
            return host
        with self._lock:
            if self.host is None:
                ready = threading.Event()
                serve = self._serve_trio if self._trio else self._serve_asyncio
                threading.Thread(
                    target=serve, args=(ready,), name="iii-async-handlers", daemon=True
                ).start()
                ready.wait()
                assert self.host is not None
            return self.host

    def _serve_asyncio(self, ready: threading.Event) -> None:
        import asyncio

        loop = asyncio.new_event_loop()
        host = AsyncioHost(loop, self._limit, flush=self._flush, on_gone=_drop_jobs)

        def stop() -> None:
            host.cancel_tasks()
            loop.call_soon(loop.stop)

        self.host, self._stop = host, stop
        ready.set()
        try:
            loop.run_forever()
            # Let cancelled handlers unwind, then release the loop.
            pending = [t for t in host.tasks if not t.done()]
            if pending:
                loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        finally:
            loop.close()

    def _serve_trio(self, ready: threading.Event) -> None:
        import trio

        async def serve() -> None:
            done = trio.Event()
            host = TrioHost(self._limit, flush=self._flush, on_gone=_drop_jobs)

            def stop() -> None:
                host.cancel_tasks()
                done.set()

            self.host, self._stop = host, stop
            ready.set()
            await done.wait()

        trio.run(serve)

    def stop(self) -> None:
        """Cancel its handlers and end the loop (without waiting for the thread)."""
        with self._lock:
            host = self.host
        if host is not None:
            host.run_here(self._stop)


def _guarded(callback: Callable[[], None]) -> None:
    try:
        callback()
    except Exception:
        log.exception("iii: internal error")


def _drop_jobs(host: Host, jobs: list[Job]) -> None:
    for job in jobs:
        job.abandon("the worker's event loop ended before the handler ran")


def running_host(
    limit: int,
    *,
    flush: Callable[[Host], None],
    on_gone: Callable[[Host, list[Job]], None],
    watch: bool,
    nursery: Any = None,
) -> Optional[Host]:
    """A host for the asyncio loop or trio run running in this thread, or None."""
    # Neither imported: nothing can be running (and importing them would cost
    # every thread-only program their import time).
    if "trio" in sys.modules:
        import trio

        try:
            trio.lowlevel.current_trio_token()
        except RuntimeError:
            pass
        else:
            return TrioHost(limit, flush=flush, on_gone=on_gone, nursery=nursery, watch=watch)
    if "asyncio" not in sys.modules:
        return None
    import asyncio

    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return None
    return AsyncioHost(loop, limit, flush=flush, on_gone=on_gone, watch=watch)
