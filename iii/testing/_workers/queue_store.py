"""The queue worker module's store: jobs, queues and the scheduler that
delivers them (retries on the engine clock, dead letters).  See ``queue.py``."""

from __future__ import annotations

import heapq
import itertools
import logging
from collections import deque
from collections.abc import Callable
from typing import Optional

import anyio
import attrs

from iii_protocol._json import JSON, JSONObject

from .. import _jsonio as jsonio
from .._api import EngineHost, ErrorDict, new_id
from .._records import DEFAULT
from .queue_settings import QueueSettings, SubscriberSettings

__all__ = ["Consumer", "DeadLetter", "Job", "JobQueue", "Scheduler", "error_text"]

#: The real engine's default concurrency of a durable subscription.
SUBSCRIBER_CONCURRENCY = 10
#: Jobs delivered per loop turn before the queue lets other tasks run.
_BATCH = 256


class Job:
    """One message: a call to deliver (named queue) or a topic event."""

    __slots__ = (
        "attempts_made",
        "backoff_delay_ms",
        "baggage",
        "created_at",
        "data",
        "error",
        "function_id",
        "id",
        "max_attempts",
        "message_id",
        "namespace",
        "process_at",
        "queue",
        "traceparent",
    )

    def __init__(
        self,
        queue: str,
        data: JSON,
        max_attempts: int,
        backoff_delay_ms: int,
        created_at: int,
        *,
        function_id: Optional[str] = None,
        message_id: Optional[str] = None,
        namespace: Optional[str] = None,
        traceparent: Optional[str] = None,
        baggage: Optional[str] = None,
    ) -> None:
        self.id = new_id()
        self.queue = queue
        self.data = data
        self.attempts_made = 0
        self.max_attempts = max_attempts
        self.backoff_delay_ms = backoff_delay_ms
        self.created_at = created_at
        self.process_at: Optional[int] = None
        self.function_id = function_id
        self.message_id = message_id
        self.namespace = namespace
        self.traceparent = traceparent
        self.baggage = baggage
        #: the last failure
        self.error: Optional[ErrorDict] = None

    def record(self) -> JSONObject:
        """The job as the real engine stores it (its DLQ entries' sizes count this)."""
        return {
            "id": self.id,
            "queue": self.queue,
            "data": self.data,
            "attempts_made": self.attempts_made,
            "max_attempts": self.max_attempts,
            "backoff_delay_ms": self.backoff_delay_ms,
            "created_at": self.created_at,
            "process_at": self.process_at,
            "group_id": None,
            "traceparent": self.traceparent,
            "baggage": self.baggage,
            "function_id": self.function_id,
            "message_id": self.message_id,
        }


class DeadLetter:
    __slots__ = ("error", "failed_at", "job", "reason", "size")

    def __init__(self, job: Job, reason: str, failed_at: int) -> None:
        self.job = job
        self.reason = reason
        self.error = job.error
        self.failed_at = failed_at
        entry: JSONObject = {"job": job.record(), "error": reason, "failed_at": failed_at}
        self.size = len(jsonio.dumps(entry))

    def message(self) -> JSONObject:
        """An ``engine::queue::dlq_messages`` row."""
        return {
            "id": self.job.id,
            "payload": self.job.data,
            "error": self.reason,
            "failed_at": self.failed_at // 1000,
            "retries": self.job.attempts_made,
            "size_bytes": self.size,
        }


@attrs.define(eq=False)
class Consumer:
    """A ``durable:subscriber`` binding feeding a subscriber queue."""

    binding_id: str
    settings: SubscriberSettings
    condition: Optional[str]


class JobQueue:
    """Jobs waiting, running and dead for one consumer (a named queue, or one
    subscribed (topic, namespace, function))."""

    def __init__(self, key: str, name: str) -> None:
        #: the real engine's adapter key (``__fn_queue::jobs``, ``topic::fn@ns``)
        self.key = key
        #: the queue's or topic's name
        self.name = name
        self.waiting: deque[Job] = deque()
        self.active = 0
        #: dead letters, newest first
        self.dead: deque[DeadLetter] = deque()
        self.delivered = 0
        self.failed = 0
        # a named queue's settings, or a subscriber queue's target and consumers
        self.settings: Optional[QueueSettings] = None
        self.target: Optional[tuple[str, str]] = None  # (namespace, function_id)
        self.consumers: dict[str, Consumer] = {}
        self.default_capacity = SUBSCRIBER_CONCURRENCY

    @property
    def capacity(self) -> int:
        if self.settings is not None:
            return 1 if self.settings.fifo else self.settings.concurrency
        return sum(c.settings.capacity(self.default_capacity) for c in self.consumers.values())

    @property
    def fifo(self) -> bool:
        if self.settings is not None:
            return self.settings.fifo
        latest = self.latest
        return latest is not None and latest.settings.fifo

    @property
    def latest(self) -> Optional[Consumer]:
        """The most recent subscription (its tuning applies to retries)."""
        return next(reversed(self.consumers.values()), None) if self.consumers else None


def _rust_debug_str(text: str) -> str:
    out = ['"']
    for ch in text:
        if ch in ('"', "\\"):
            out.append("\\" + ch)
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\r":
            out.append("\\r")
        elif ch == "\t":
            out.append("\\t")
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{{{ord(ch):x}}}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def error_text(error: ErrorDict) -> str:
    """An error as the real engine writes it into a topic job's DLQ entry
    (``format!("{:?}", error_body)``)."""
    code, message, trace = error.get("code"), error.get("message"), error.get("stacktrace")
    stack = f"Some({_rust_debug_str(trace)})" if isinstance(trace, str) else "None"
    return (
        f"ErrorBody {{ code: {_rust_debug_str(str(code or ''))}, "
        f"message: {_rust_debug_str(str(message or ''))}, stacktrace: {stack} }}"
    )


#: (due on the engine's monotonic clock, tie-break, queue, job, inline retry)
_Timer = tuple[float, int, JobQueue, Job, bool]


class Scheduler:
    """Runs the jobs of every queue: up to each queue's capacity at once, failed
    ones again after their backoff on the engine clock, exhausted ones to the
    queue's dead letters."""

    def __init__(self, host: EngineHost, log: logging.Logger, now_ms: Callable[[], int]) -> None:
        self.host = host
        self.log = log
        self.now_ms = now_ms
        self.timers: list[_Timer] = []
        self._seq = itertools.count()
        self._ready: dict[JobQueue, None] = {}
        self._wake: Optional[anyio.Event] = None

    def push(self, q: JobQueue, job: Job, *, front: bool = False) -> None:
        if front:
            q.waiting.appendleft(job)
        else:
            q.waiting.append(job)
        self.mark_ready(q)

    def mark_ready(self, q: JobQueue) -> None:
        self._ready[q] = None
        self.poke()

    def poke(self) -> None:
        if self._wake is not None:
            self._wake.set()

    async def run(self) -> None:
        """Deliver jobs as they become ready or due, until cancelled."""
        while True:
            self._wake = anyio.Event()
            # Let an enqueue's receipt reach its caller first: delivery is "later".
            await anyio.lowlevel.checkpoint()
            self._fire_due()
            if self._dispatch():
                await self.host.relieve()
                continue
            await self._sleep(self._wake)

    async def _sleep(self, wake: anyio.Event) -> None:
        if not self.timers:
            await wake.wait()
            return
        deadline = self.timers[0][0]
        clock = self.host.clock
        async with anyio.create_task_group() as tg:

            async def timer() -> None:
                await clock.sleep_until(deadline)
                tg.cancel_scope.cancel()

            tg.start_soon(timer)
            await wake.wait()
            tg.cancel_scope.cancel()

    def _fire_due(self) -> None:
        now = self.host.clock.monotonic()
        due: list[_Timer] = []
        while self.timers and self.timers[0][0] <= now:
            due.append(heapq.heappop(self.timers))
        # Only these: a retry failing at once with no backoff waits for the next turn.
        for _, _, q, job, inline in due:
            if inline:  # a fifo retry keeps its slot and goes before anything else
                self._deliver(q, job)
            else:  # back in line, ahead of the jobs waiting (the engine's rpush)
                self.push(q, job, front=True)

    def _dispatch(self) -> bool:
        """Start the jobs that may run; True when some did (or more are ready)."""
        budget = _BATCH
        for q in list(self._ready):
            while q.waiting and q.active < q.capacity and budget:
                job = q.waiting.popleft()
                q.active += 1
                budget -= 1
                self._deliver(q, job)
            if not budget:
                return True
            del self._ready[q]
        return budget < _BATCH

    def _deliver(self, q: JobQueue, job: Job) -> None:
        def done(result: JSON, error: Optional[ErrorDict]) -> None:
            self._done(q, job, error)

        if q.settings is not None:  # a named queue: the job's own target
            self.host.invoke(
                job.namespace or DEFAULT,
                job.function_id or "",
                job.data,
                traceparent=job.traceparent,
                baggage=job.baggage,
                on_done=done,
            )
            return
        assert q.target is not None
        ns, function_id = q.target
        latest = q.latest
        condition = latest.condition if latest is not None else None

        def run() -> None:
            self.host.invoke(
                ns,
                function_id,
                job.data,
                traceparent=job.traceparent,
                baggage=job.baggage,
                on_done=done,
            )

        if condition is None:
            run()
            return

        def checked(result: JSON, error: Optional[ErrorDict]) -> None:
            if error is not None:
                self._done(q, job, error, reason=f"Condition function error: {error_text(error)}")
            elif result is False:
                self._done(q, job, None)  # skipped: acknowledged
            else:
                run()

        self.host.invoke(ns, condition, job.data, on_done=checked)

    def _done(
        self, q: JobQueue, job: Job, error: Optional[ErrorDict], *, reason: Optional[str] = None
    ) -> None:
        if error is None:
            q.active -= 1
            q.delivered += 1
            self.mark_ready(q)
            self.host.notify()
            return
        q.failed += 1
        job.error = error
        job.attempts_made += 1
        max_attempts, backoff_ms = job.max_attempts, job.backoff_delay_ms
        if q.settings is None:  # a subscriber's tuning applies when deciding (HEAD)
            latest = q.latest
            if latest is not None and latest.settings.max_retries is not None:
                max_attempts = latest.settings.max_retries + 1
            if latest is not None and latest.settings.backoff_ms is not None:
                backoff_ms = latest.settings.backoff_ms
        if job.attempts_made >= max_attempts:
            q.active -= 1
            if reason is None:
                reason = "function call failed" if q.settings is not None else error_text(error)
            q.dead.appendleft(DeadLetter(job, reason, self.now_ms()))
            self.log.warning(
                "queue %s: job %s failed %d times, moved to the dead-letter queue: %s",
                q.name,
                job.id,
                job.attempts_made,
                error.get("message"),
            )
            self.mark_ready(q)
            self.host.notify()
            return
        delay = backoff_ms * 2 ** (job.attempts_made - 1) / 1000
        job.process_at = self.now_ms() + round(delay * 1000)
        inline = q.fifo
        if not inline:
            q.active -= 1
            self.mark_ready(q)
        due = self.host.clock.monotonic() + delay
        heapq.heappush(self.timers, (due, next(self._seq), q, job, inline))
        self.poke()
        self.host.notify()

    # -- dead letters and listings --------------------------------------------------------
