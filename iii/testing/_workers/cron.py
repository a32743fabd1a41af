"""The cron worker module (the engine's ``iii-cron``): the ``cron`` trigger type.

A binding's ``config`` is ``{"expression": "<cron expression>",
"condition_function_id"?: "<function id>"}``; the expression is the engine's
dialect (six or seven fields, seconds first, Sunday = 1: see
``cron_schedule``), checked when the binding is registered (a bad one is
refused with ``trigger_registration_failed``).  Each binding runs as the real
engine's job loop does, on the engine clock (UTC):

1. sleep until the schedule's next time (strictly after the last one);
2. build ``{"trigger": "cron", "job_id": <binding id>, "scheduled_time":
   <RFC 3339>, "actual_time": <RFC 3339>}``;
3. with a ``condition_function_id``, call it with that payload (no metadata):
   an error or a ``false`` result skips this run;
4. call the bound function with the payload and the binding's metadata, and
   wait for its result (an error is logged; the result is ignored);
5. go to 1.

A job never overlaps itself: a run that outlasts the period skips the times it
missed (no catch-up), like the engine's single task per job.  Under a
``ManualClock`` a test fires a schedule by advancing the clock.
"""

from __future__ import annotations

from typing import Optional

import anyio

from iii_protocol._json import JSONObject

from .._api import EngineWorker
from .._records import Binding, ErrorDict, error_body
from .cron_schedule import CronError, CronSchedule, rfc3339

__all__ = ["CALL_REQUEST_SCHEMA", "CONFIGURATION_SCHEMA", "Cron", "CronJob"]

_SCHEMA = "http://json-schema.org/draft-07/schema#"

#: ``engine::triggers::info {"id": "cron"}``: what a binding's config holds.
CONFIGURATION_SCHEMA: JSONObject = {
    "$schema": _SCHEMA,
    "title": "CronTriggerConfig",
    "type": "object",
    "required": ["expression"],
    "properties": {
        "expression": {
            "description": "Cron expression (6-field format: sec min hour day month weekday)",
            "type": "string",
        },
        "condition_function_id": {
            "description": "Optional function ID to evaluate before invoking handler",
            "type": ["string", "null"],
        },
    },
}

#: What the bound function receives.
CALL_REQUEST_SCHEMA: JSONObject = {
    "$schema": _SCHEMA,
    "title": "CronCallRequest",
    "type": "object",
    "required": ["actual_time", "job_id", "scheduled_time", "trigger"],
    "properties": {
        "trigger": {"description": 'Always "cron"', "type": "string"},
        "job_id": {"description": "Unique job identifier", "type": "string"},
        "scheduled_time": {"description": "Scheduled execution time (RFC3339)", "type": "string"},
        "actual_time": {"description": "Actual execution time (RFC3339)", "type": "string"},
    },
}


class CronJob:
    """One ``cron`` binding and its loop's state."""

    __slots__ = (
        "condition_function_id",
        "expression",
        "failures",
        "function_id",
        "id",
        "metadata",
        "namespace",
        "next_time",
        "runs",
        "schedule",
        "scope",
        "skipped",
    )

    def __init__(self, binding: Binding, schedule: CronSchedule, condition: Optional[str]) -> None:
        self.id = binding.id
        self.expression = schedule.expression
        self.schedule = schedule
        self.function_id = binding.function_id
        self.condition_function_id = condition
        self.metadata = binding.metadata
        self.namespace = binding.namespace
        #: the time the loop sleeps until (epoch seconds); None while it runs the function
        self.next_time: Optional[float] = None
        self.runs = 0
        self.failures = 0
        self.skipped = 0
        self.scope: Optional[anyio.CancelScope] = None

    def describe(self) -> JSONObject:
        return {
            "id": self.id,
            "function_id": self.function_id,
            "namespace": self.namespace,
            "expression": self.expression,
            "condition_function_id": self.condition_function_id,
            "next_run": None if self.next_time is None else rfc3339(self.next_time),
            "runs": self.runs,
            "failures": self.failures,
            "skipped": self.skipped,
        }


class Cron(EngineWorker):
    """The ``cron`` trigger type: bindings fire on their schedule (engine clock)."""

    name = "cron"
    switch = "cron"
    worker_name = "iii-cron"

    def install(self) -> None:
        self.jobs: dict[str, CronJob] = {}
        self._running = False
        self.trigger_type(
            "cron",
            "Cron-based scheduled triggers",
            on_register=self._register,
            on_unregister=self._unregister,
            configuration_schema=CONFIGURATION_SCHEMA,
            request_schema=CALL_REQUEST_SCHEMA,
        )

    def _register(self, binding: Binding) -> Optional[ErrorDict]:
        config = binding.config if isinstance(binding.config, dict) else {}
        expression = config.get("expression")
        if not isinstance(expression, str) or not expression:
            self.log.error("cron expression is not set for trigger %s", binding.id)
            return error_body("trigger_registration_failed", "Cron expression is required")
        if binding.id in self.jobs:
            return error_body(
                "trigger_registration_failed", f"Cron job '{binding.id}' is already registered"
            )
        try:
            schedule = CronSchedule.parse(expression)
        except CronError as exc:
            return error_body(
                "trigger_registration_failed", f"Invalid cron expression '{expression}': {exc}"
            )
        condition = config.get("condition_function_id")
        job = CronJob(binding, schedule, condition if isinstance(condition, str) else None)
        self.jobs[job.id] = job
        self.log.info("cron job %s (%s) -> %s", job.id, expression, job.function_id)
        if self._running:
            self.host.spawn(self._loop, job)
        return None

    def _unregister(self, binding: Binding) -> None:
        job = self.jobs.pop(binding.id, None)
        if job is not None and job.scope is not None:
            job.scope.cancel()

    async def run(self) -> None:
        self._running = True
        for job in list(self.jobs.values()):
            if job.scope is None:
                self.host.spawn(self._loop, job)

    async def _loop(self, job: CronJob) -> None:
        clock = self.host.clock
        with anyio.CancelScope() as scope:
            job.scope = scope
            if self.jobs.get(job.id) is not job:  # unregistered before it started
                return
            last: Optional[float] = None
            while True:
                now = clock.time()
                due = job.schedule.next_after(now if last is None else max(now, last))
                if due is None:
                    self.log.warning("cron job %s has no upcoming time; it stops", job.id)
                    job.next_time = None
                    return
                job.next_time = due
                self.host.notify()
                await clock.sleep(max(0.0, due - clock.time()))
                job.next_time = None
                last = due
                await self._fire(job, due)

    async def _fire(self, job: CronJob, due: float) -> None:
        event: JSONObject = {
            "trigger": "cron",
            "job_id": job.id,
            "scheduled_time": rfc3339(due),
            "actual_time": rfc3339(self.host.clock.time()),
        }
        if job.condition_function_id is not None:
            verdict, error = await self.host.call(job.namespace, job.condition_function_id, event)
            if error is not None:
                self.log.error(
                    "cron job %s: condition %s failed: %s",
                    job.id,
                    job.condition_function_id,
                    error.get("message"),
                )
                job.skipped += 1
                return
            if verdict is False:
                job.skipped += 1
                return
        _, error = await self.host.call(
            job.namespace, job.function_id, event, metadata=job.metadata
        )
        job.runs += 1
        if error is not None:
            job.failures += 1
            self.log.error(
                "cron job %s -> %s failed: %s", job.id, job.function_id, error.get("message")
            )
        self.host.notify()

    def close(self) -> None:
        for job in self.jobs.values():
            if job.scope is not None:
                job.scope.cancel()

    def describe(self) -> list[JSONObject]:
        """The jobs, in registration order: schedule, next run, counters."""
        return [job.describe() for job in self.jobs.values()]
