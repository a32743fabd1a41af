"""The queue worker module: ``engine::queue::enqueue``, the in-memory queue behind
``TriggerAction.Enqueue`` (docs/protocol.md#routing).

A job is delivered to its function after the caller got its receipt.  A failed
delivery (an error result, or no such function yet) is retried after
``backoff * 2**(attempt - 1)`` seconds on the engine clock; after
``max_attempts`` deliveries the job is dead-lettered.
"""

from __future__ import annotations

from collections import deque
from typing import Optional

import anyio
import attrs

from iii_protocol import CALLER_WORKER_ID_KEY
from iii_protocol._json import JSON, JSONObject

from .._api import EngineWorker
from .._checks import integer, seconds, setting
from .._records import DEFAULT, Call, ErrorDict, new_id
from .inputs import ANY, STR, parse_input

__all__ = ["QUEUE_FUNCTION_ID", "MemoryQueue", "QueueConfig"]

QUEUE_FUNCTION_ID = "engine::queue::enqueue"

#: Jobs delivered per loop turn before the queue lets other tasks run.
_BATCH = 256


@attrs.frozen
class QueueConfig:
    max_attempts: int = setting(3, integer(1), "deliveries before a job is dead-lettered")
    backoff: float = setting(
        0.1, seconds(positive=False), "seconds before the first retry, doubling (engine clock)"
    )


class MemoryQueue(EngineWorker):
    """Named in-memory queues: enqueue, deliver, retry, dead-letter."""

    name = "queue"
    switch = "queue"
    worker_name = "iii-queue"
    option_prefix = "queue_"
    config_class = QueueConfig
    config: QueueConfig

    def install(self) -> None:
        self.jobs: deque[JSONObject] = deque()
        self.dead_letters: list[JSONObject] = []
        self.delivered = 0
        self.in_flight = 0
        self._wake: Optional[anyio.Event] = None
        self.function(QUEUE_FUNCTION_ID, self._enqueue, "Enqueue a call (in-memory queue)")

    def _enqueue(self, call: Call) -> JSON:
        inp = parse_input(
            call,
            {
                "queue": (STR, True),
                "function_id": (STR, True),
                "data": (ANY, False),
                "messageReceiptId": (STR, False),
                "namespace": (STR, False),
                "traceparent": (STR, False),
                "baggage": (STR, False),
            },
            "EnqueueInput",
        )
        data = call.data
        job: JSONObject = dict(inp)
        job["data"] = data.get("data") if isinstance(data, dict) else None
        job.pop(CALLER_WORKER_ID_KEY, None)
        receipt = inp.get("messageReceiptId")
        if not isinstance(receipt, str) or not receipt:
            receipt = new_id()
        job["messageReceiptId"] = receipt
        self.push(job)
        return {"messageReceiptId": receipt}

    def push(self, job: JSONObject) -> None:
        self.jobs.append(job)
        if self._wake is not None:
            self._wake.set()
            self._wake = None

    async def run(self) -> None:
        while True:
            if not self.jobs:
                self._wake = anyio.Event()
                await self._wake.wait()
                continue
            # Let the receipt reach the caller first: delivery is really "later".
            await anyio.lowlevel.checkpoint()
            batch = 0
            while self.jobs and batch < _BATCH:
                job = self.jobs.popleft()
                batch += 1
                self._deliver(job)
            await self.host.relieve()

    def _deliver(self, job: JSONObject) -> None:
        self.in_flight += 1
        ns = job.get("namespace")
        function_id = job["function_id"]
        tp = job.get("traceparent")
        bg = job.get("baggage")
        self.host.invoke(
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
        if attempts >= self.config.max_attempts:
            job["error"] = error
            self.log.warning(
                "queue %s: giving up on %s after %d attempts: %s",
                job.get("queue"),
                job.get("function_id"),
                attempts,
                error.get("message"),
            )
            self.dead_letters.append(job)
            self.host.notify()
            return
        delay = self.config.backoff * (2 ** (attempts - 1))
        self.host.spawn(self._retry, job, delay)

    async def _retry(self, job: JSONObject, delay: float) -> None:
        await self.host.clock.sleep(delay)
        self.push(job)

    def stats(self) -> JSONObject:
        return {
            "enabled": True,
            "queued": len(self.jobs),
            "in_flight": self.in_flight,
            "delivered": self.delivered,
            "dead_letters": len(self.dead_letters),
        }
