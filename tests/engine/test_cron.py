"""The ``cron`` trigger type (the engine's ``iii-cron`` worker): the expression
dialect of the Rust ``cron`` crate, and bindings firing on the engine clock.

Schedules are driven by a ``ManualClock``: a test waits until the job sleeps
(``cron_jobs()[i]["next_run"]``), advances the clock, and sees the call.
"""

from __future__ import annotations

import datetime
import queue
import threading
from typing import Any, Optional

import anyio
import pytest

import iii
from iii import IIIInvocationError
from iii.testing import EngineThread, ManualClock
from iii.testing._workers.cron_schedule import CronError, CronSchedule, rfc3339
from iii_protocol._json import JSONObject


def opts(**kw: Any) -> iii.InitOptions:
    return iii.InitOptions(
        reconnection_config=iii.ReconnectionConfig(initial_delay_ms=50, max_delay_ms=200),
        register_timeout_ms=5000,
        shutdown_grace_ms=2000,
        **kw,
    )


UTC = datetime.timezone.utc
#: 2026-01-01T12:00:00.250Z, a Thursday
NOON = datetime.datetime(2026, 1, 1, 12, 0, 0, 250000, tzinfo=UTC).timestamp()


def at(year: int, month: int, day: int, hour: int, minute: int, second: int) -> float:
    return datetime.datetime(year, month, day, hour, minute, second, tzinfo=UTC).timestamp()


def upcoming(expression: str, start: float = NOON, count: int = 3) -> list[str]:
    return [rfc3339(t) for t in CronSchedule.parse(expression).upcoming(start, count)]


# -- the expression dialect --------------------------------------------------------------


@pytest.mark.parametrize(
    "expression",
    [
        "* * * * * *",
        "0 * * * * *",
        "0 0 2 * * * *",
        "0 0 0 * * 1 *",
        "0 */5 * * * * *",
        "0,20,40 * * * * *",
        "0-5,58 * * * * *",
        "* * * * * MON,WED,FRI",
        "* * * * * MON-FRI",
        "* * * ? * *",
        "* * * * * ?",
        "* * * ? * Mon,Thu",
        "* * * 1,2 * ?",
        "* * * ? * ?",
        "1-5/59 * * * * *",
        "*/10 2 3 4 5 6",
        "* */30 * * * *",
        "* * */23 * * *",
        "* * * */30 * *",
        "* * * * */10 *",
        "1,2,3/5 * * * * *",
        "0 0 0 1 1 ? 2020-2040/10",
        "0 0 0 * Jan-Mar/2 *",
        "* * * * * Mon-Thurs/2",
        "@yearly",
        "@monthly",
        "@weekly",
        " @daily ",
        "@hourly",
        "  0   0   *   *   *   *  ",
        "******",  # a '*' needs no separator after it
        "1 - 5 * * * * *",  # blanks around numbers belong to the field
        "00 00 00 01 01 ?",
    ],
)
def test_expressions_the_engine_accepts(expression):
    CronSchedule.parse(expression)


@pytest.mark.parametrize(
    ("expression", "reason"),
    [
        ("* * * * *", "6 or 7 fields"),  # five-field crontab
        ("* * * *", "6 or 7 fields"),
        ("", "6 or 7 fields"),
        ("0 0 0 * * 0 *", "Days of Week must be greater than or equal to 1"),  # Sunday is 1
        ("0 0 0 * * 8", "Days of Week must be less than 7"),
        ("0-65 * * * * *", "Invalid range for Seconds"),
        ("103,12 * * * * *", "Seconds must be less than 59"),
        ("0-5,102 * * * * *", "Seconds must be less than 59"),
        ("5-1 * * * * *", "Invalid range for Seconds: 5-1"),
        ("* * * * * MON,TURTLE", "'TURTLE' is not a valid day of the week"),
        ("* * * * * BEAR-OWL", "'BEAR' is not a valid day of the week"),
        ("* * * * Smarch *", "'Smarch' is not a valid month name"),
        ("* * * * * FRI-MON", "Invalid named range for Days of Week"),
        ("Mon * * * * *", "does not support using names"),
        ("10-12/10-12 * * * * ?", "unexpected"),
        ("? * * * * *", "unexpected"),
        ("* ? * * * *", "unexpected"),
        ("* * ? * * *", "unexpected"),
        ("* * * * ? *", "unexpected"),
        ("* * * * * *foo *", "does not support using names"),
        ("* * * * * * * foo", "unexpected"),
        ("@dailyBla", "unexpected"),
        (" @dailyBla ", "unexpected"),
        ("@annually", "unexpected"),
        ("1-5/61 * * * * *", "Seconds must be between 1 and 59"),
        ("*/61 2 3 4 5 6", "Seconds must be between 1 and 59"),
        ("* */61 * * * *", "Minutes must be between 1 and 59"),
        ("* * */25 * * *", "Hours must be between 1 and 23"),
        ("* * * */32 * *", "Days of Month must be between 1 and 31"),
        ("* * * * */13 *", "Months must be between 1 and 12"),
        ("1,2,3/60 * * * * *", "Seconds must be between 1 and 59"),
        ("0 0 0 1 1 ? 2020-2040/2200", "Years must be between 1 and 2100"),
        ("*/0 * * * * *", "range step cannot be zero"),
        ("0 0 0 1 1 ? 1969", "Years must be greater than or equal to 1970"),
        ("0 0 0 1 1 ? 2101", "Years must be less than 2100"),
        ("Tues/2 * * * * *", "does not support using names"),
        (",1,2 * * * * *", "unexpected"),
        ("1,2, * * * * *", "unexpected"),
        ("99999999999 * * * * *", "unexpected"),
        ("0 0 0 1 1 ? 2030 x", "unexpected"),
    ],
)
def test_expressions_the_engine_refuses(expression, reason):
    with pytest.raises(CronError, match=reason.replace("(", r"\(")):
        CronSchedule.parse(expression)


def test_sunday_is_1_and_both_day_fields_must_match():
    # 2026-01-01 is a Thursday; the crate numbers Sunday 1 ... Saturday 7.
    assert upcoming("0 0 0 * * 1") == [
        "2026-01-04T00:00:00+00:00",
        "2026-01-11T00:00:00+00:00",
        "2026-01-18T00:00:00+00:00",
    ]
    assert upcoming("0 0 0 * * 2-6", count=2) == [  # Monday to Friday
        "2026-01-02T00:00:00+00:00",
        "2026-01-05T00:00:00+00:00",
    ]
    assert upcoming("0 0 0 * * 1-5", count=2) == [  # Sunday to Thursday, not crontab's
        "2026-01-04T00:00:00+00:00",
        "2026-01-05T00:00:00+00:00",
    ]
    # Friday the 13th: day-of-month AND day-of-week.
    assert upcoming("0 0 0 13 * FRI", count=2) == [
        "2026-02-13T00:00:00+00:00",
        "2026-03-13T00:00:00+00:00",
    ]


def test_next_times_are_whole_seconds_after_the_current_second():
    assert upcoming("* * * * * *") == [
        "2026-01-01T12:00:01+00:00",
        "2026-01-01T12:00:02+00:00",
        "2026-01-01T12:00:03+00:00",
    ]
    # From exactly 12:00:00 the next time is still 12:00:01, never 12:00:00.
    assert upcoming("* * * * * *", at(2026, 1, 1, 12, 0, 0), 1) == ["2026-01-01T12:00:01+00:00"]
    assert upcoming("0 */5 * * * *", count=2) == [
        "2026-01-01T12:05:00+00:00",
        "2026-01-01T12:10:00+00:00",
    ]
    assert upcoming("30 59 23 31 12 *", count=2) == [
        "2026-12-31T23:59:30+00:00",
        "2027-12-31T23:59:30+00:00",
    ]


def test_steps_ranges_shorthands_and_years():
    assert upcoming("10-20/3 * * * * *", count=5) == [
        "2026-01-01T12:00:10+00:00",
        "2026-01-01T12:00:13+00:00",
        "2026-01-01T12:00:16+00:00",
        "2026-01-01T12:00:19+00:00",
        "2026-01-01T12:01:10+00:00",
    ]
    assert upcoming("50/5 * * * * *", count=3) == [  # from 50 to the maximum
        "2026-01-01T12:00:50+00:00",
        "2026-01-01T12:00:55+00:00",
        "2026-01-01T12:01:50+00:00",
    ]
    assert upcoming("0 0 0 29 2 *", count=2) == [
        "2028-02-29T00:00:00+00:00",
        "2032-02-29T00:00:00+00:00",
    ]
    assert upcoming("@hourly", count=1) == ["2026-01-01T13:00:00+00:00"]
    assert upcoming("@monthly", count=1) == ["2026-02-01T00:00:00+00:00"]
    assert upcoming("@yearly", count=1) == ["2027-01-01T00:00:00+00:00"]
    assert upcoming("@weekly", count=1) == ["2026-01-04T00:00:00+00:00"]  # Sunday
    assert upcoming("0 0 0 1 1 ? 2020-2040/10") == [
        "2030-01-01T00:00:00+00:00",
        "2040-01-01T00:00:00+00:00",
    ]
    assert upcoming("0 0 0 1 1 ? 2025") == []  # in the past: no time left
    assert CronSchedule.parse("0 0 0 30 2 *").next_after(NOON) is None  # never


def test_rfc3339_prints_like_the_engine():
    assert rfc3339(at(2026, 1, 1, 2, 0, 0)) == "2026-01-01T02:00:00+00:00"
    assert rfc3339(NOON) == "2026-01-01T12:00:00.250+00:00"
    assert rfc3339(NOON + 0.000125) == "2026-01-01T12:00:00.250125+00:00"


# -- bindings on the engine --------------------------------------------------------------


def wait_sleeping(engine: EngineThread, job_id: Optional[str], runs: int = 0) -> dict[str, Any]:
    """The job once it sleeps until its next time (after ``runs`` runs).

    ``job_id`` is a ``Trigger.id``: typed optional, always set on a registered trigger.
    """
    assert job_id is not None

    def find() -> Optional[JSONObject]:
        for job in engine.cron_jobs():
            if job["id"] != job_id or not job["next_run"]:
                continue
            done, skipped = job["runs"], job["skipped"]
            assert isinstance(done, int) and isinstance(skipped, int), job
            if done + skipped >= runs:
                return job
        return None

    job: dict[str, Any] = engine.wait_for(find, timeout=10)
    return job


class Calls:
    """Records a handler's invocations across threads."""

    def __init__(self) -> None:
        self.items: queue.Queue[tuple[Any, Any]] = queue.Queue()

    def handler(self, data: Any, metadata: Any = None) -> dict[str, Any]:
        self.items.put((data, metadata))
        return {"ok": True}

    def get(self) -> tuple[Any, Any]:
        return self.items.get(timeout=10)

    def empty(self) -> bool:
        return self.items.empty()


@pytest.mark.iii_engine(clock=ManualClock(start=NOON))
def test_a_binding_fires_on_the_manual_clock_with_the_engine_payload(iii_engine):
    calls = Calls()
    w = iii.register_worker(iii_engine.url, opts(worker_name="cron-w"))
    try:
        w.register_function("jobs::tick", calls.handler)
        trigger = w.register_trigger(
            {
                "type": "cron",
                "function_id": "jobs::tick",
                "config": {"expression": "*/5 * * * * *"},
                "metadata": {"team": "ops"},
            }
        )
        job = wait_sleeping(iii_engine, trigger.id)
        assert job["next_run"] == "2026-01-01T12:00:05+00:00"
        assert job["expression"] == "*/5 * * * * *"
        assert calls.empty()
        iii_engine.advance_clock(4.0)  # 12:00:04.25: not yet
        assert iii_engine.cron_jobs()[0]["runs"] == 0
        iii_engine.advance_clock(1.0)  # 12:00:05.25
        data, metadata = calls.get()
        assert data == {
            "trigger": "cron",
            "job_id": trigger.id,
            "scheduled_time": "2026-01-01T12:00:05+00:00",
            "actual_time": "2026-01-01T12:00:05.250+00:00",
        }
        assert metadata == {"team": "ops"}
        job = wait_sleeping(iii_engine, trigger.id, runs=1)
        assert job["next_run"] == "2026-01-01T12:00:10+00:00"
        iii_engine.advance_clock(5.0)
        assert calls.get()[0]["scheduled_time"] == "2026-01-01T12:00:10+00:00"
        wait_sleeping(iii_engine, trigger.id, runs=2)
        trigger.unregister()
        iii_engine.wait_for(lambda: not iii_engine.cron_jobs())
        iii_engine.advance_clock(60.0)
        assert calls.empty()
    finally:
        w.shutdown()


@pytest.mark.iii_engine(clock=ManualClock(start=NOON))
def test_a_run_never_overlaps_and_missed_times_are_skipped(iii_engine):
    started: queue.Queue[str] = queue.Queue()
    release = threading.Event()

    def slow(data: Any) -> None:
        started.put(data["scheduled_time"])
        release.wait(10)

    w = iii.register_worker(iii_engine.url, opts(worker_name="cron-slow"))
    try:
        w.register_function("jobs::slow", slow)
        trigger = w.register_trigger(
            {"type": "cron", "function_id": "jobs::slow", "config": {"expression": "* * * * * *"}}
        )
        wait_sleeping(iii_engine, trigger.id)
        iii_engine.advance_clock(1.0)
        assert started.get(timeout=10) == "2026-01-01T12:00:01+00:00"
        # The run is still going: ten more seconds go by without a second call.
        iii_engine.advance_clock(10.0)
        jobs = iii_engine.cron_jobs()
        assert jobs[0]["next_run"] is None and jobs[0]["runs"] == 0
        assert started.empty()
        release.set()
        job = wait_sleeping(iii_engine, trigger.id, runs=1)
        assert job["next_run"] == "2026-01-01T12:00:12+00:00"  # 12:00:02 .. 12:00:11 skipped
        iii_engine.advance_clock(1.0)
        assert started.get(timeout=10) == "2026-01-01T12:00:12+00:00"
    finally:
        release.set()
        w.shutdown()


@pytest.mark.iii_engine(clock=ManualClock(start=NOON))
def test_the_condition_function_gates_each_run(iii_engine):
    calls = Calls()
    verdicts = iter([False, True, None])
    seen: list[Any] = []

    def condition(data: Any, metadata: Any = None) -> Any:
        seen.append((data["scheduled_time"], metadata))
        verdict = next(verdicts, "boom")
        if verdict == "boom":
            raise RuntimeError("condition broke")
        return verdict

    w = iii.register_worker(iii_engine.url, opts(worker_name="cron-cond"))
    try:
        w.register_function("jobs::run", calls.handler)
        w.register_function("jobs::when", condition)
        trigger = w.register_trigger(
            {
                "type": "cron",
                "function_id": "jobs::run",
                "config": {"expression": "0 * * * * *", "condition_function_id": "jobs::when"},
                "metadata": {"m": 1},
            }
        )
        for minute, ran in ((1, False), (2, True), (3, True), (4, False)):
            wait_sleeping(iii_engine, trigger.id, runs=minute - 1)
            iii_engine.advance_clock(60.0)
            if ran:
                data, metadata = calls.get()
                assert data["scheduled_time"] == f"2026-01-01T12:0{minute}:00+00:00"
                assert metadata == {"m": 1}
        wait_sleeping(iii_engine, trigger.id, runs=4)
        assert calls.empty()
        job = iii_engine.cron_jobs()[0]
        assert (job["runs"], job["skipped"]) == (2, 2)
        # The condition gets the payload and no metadata.
        assert seen == [(f"2026-01-01T12:0{m}:00+00:00", None) for m in (1, 2, 3, 4)]
    finally:
        w.shutdown()


@pytest.mark.iii_engine(clock=ManualClock(start=NOON))
def test_bad_expressions_are_refused_at_registration(iii_engine):
    w = iii.register_worker(iii_engine.url, opts(worker_name="cron-bad"))
    try:
        for config, message in (
            ({"expression": "* * * * *"}, "Invalid cron expression '* * * * *': expected 6 or 7"),
            ({"expression": "0 0 0 * * 0"}, "Days of Week must be greater than or equal to 1"),
            ({}, "Cron expression is required"),
            ({"expression": 5}, "Cron expression is required"),
        ):
            with pytest.raises(IIIInvocationError) as info:
                w.trigger(
                    {
                        "function_id": "engine::register_trigger",
                        "payload": {
                            "trigger_type": "cron",
                            "function_id": "jobs::none",
                            "config": config,
                        },
                    }
                )
            assert info.value.code == "trigger_registration_failed"
            assert message in info.value.message
        assert iii_engine.cron_jobs() == []
        # A worker's binding is refused with a triggerregistrationresult.
        trigger = w.register_trigger(
            {"type": "cron", "function_id": "jobs::none", "config": {"expression": "bad"}}
        )
        frame = iii_engine.wait_for_frame(
            "triggerregistrationresult", where=lambda f: f.get("id") == trigger.id
        )
        assert frame["error"]["code"] == "trigger_registration_failed"
    finally:
        w.shutdown()


@pytest.mark.iii_engine(clock=ManualClock(start=NOON))
def test_durable_bindings_and_a_failing_function(iii_engine):
    w = iii.register_worker(iii_engine.url, opts(worker_name="cron-durable"))
    try:
        failures: queue.Queue[str] = queue.Queue()

        def broken(data: Any) -> None:
            failures.put(data["job_id"])
            raise RuntimeError("nope")

        w.register_function("jobs::broken", broken)
        out = w.trigger(
            {
                "function_id": "engine::register_trigger",
                "payload": {
                    "trigger_type": "cron",
                    "function_id": "jobs::broken",
                    "config": {"expression": "0 0 * * * *"},
                },
            }
        )
        job_id = out["id"] if isinstance(out, dict) and "id" in out else None
        job = wait_sleeping(iii_engine, iii_engine.cron_jobs()[0]["id"])
        assert job_id in (None, job["id"])
        assert job["next_run"] == "2026-01-01T13:00:00+00:00"
        iii_engine.advance_clock(3600.0)
        assert failures.get(timeout=10) == job["id"]
        job = wait_sleeping(iii_engine, job["id"], runs=1)
        assert (job["runs"], job["failures"]) == (1, 1)  # and the job goes on
        assert job["next_run"] == "2026-01-01T14:00:00+00:00"
    finally:
        w.shutdown()


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_async_workers_get_the_cron_calls(backend):
    clock = ManualClock(start=NOON)
    with EngineThread(clock=clock) as engine:

        async def main() -> list[str]:
            got: list[str] = []
            done = anyio.Event()
            async with iii.register_worker_async(engine.url, opts(worker_name="cron-aw")) as w:

                async def tick(data: Any) -> None:
                    got.append(data["scheduled_time"])
                    await anyio.sleep(0)
                    if len(got) == 2:
                        done.set()

                w.register_function("jobs::async", tick)
                trigger = w.register_trigger(
                    {
                        "type": "cron",
                        "function_id": "jobs::async",
                        "config": {"expression": "*/30 * * * * *"},
                    }
                )
                for runs in (0, 1):
                    await anyio.to_thread.run_sync(wait_sleeping, engine, trigger.id, runs)
                    await anyio.to_thread.run_sync(engine.advance_clock, 30.0)
                with anyio.fail_after(10):
                    await done.wait()
            return got

        assert anyio.run(main, backend=backend) == [
            "2026-01-01T12:00:30+00:00",
            "2026-01-01T12:01:00+00:00",
        ]


def test_on_the_real_clock_it_fires_at_real_times(iii_engine):
    calls = Calls()
    w = iii.register_worker(iii_engine.url, opts(worker_name="cron-real"))
    try:
        w.register_function("jobs::now", calls.handler)
        w.register_trigger(
            {"type": "cron", "function_id": "jobs::now", "config": {"expression": "* * * * * *"}}
        )
        data, _ = calls.get()
        scheduled = datetime.datetime.fromisoformat(data["scheduled_time"])
        actual = datetime.datetime.fromisoformat(data["actual_time"])
        assert scheduled.microsecond == 0 and scheduled.tzinfo is not None
        assert actual >= scheduled
        second, _ = calls.get()
        assert datetime.datetime.fromisoformat(second["scheduled_time"]) > scheduled
    finally:
        w.shutdown()


def test_introspection_shows_the_cron_trigger_type(iii_engine):
    w = iii.register_worker(iii_engine.url, opts(worker_name="cron-intro"))
    try:
        info = w.trigger({"function_id": "engine::triggers::info", "payload": {"id": "cron"}})
        assert info["worker_name"] == "iii-cron"
        assert info["configuration_schema"]["required"] == ["expression"]
        assert set(info["request_schema"]["properties"]) == {
            "trigger",
            "job_id",
            "scheduled_time",
            "actual_time",
        }
        workers = w.trigger({"function_id": "engine::workers::list", "payload": {}})["workers"]
        assert any(x["name"] == "iii-cron" for x in workers)
    finally:
        w.shutdown()


@pytest.mark.iii_engine(cron=False)
def test_cron_can_be_switched_off(iii_engine):
    assert all(t["id"] != "cron" for t in iii_engine.trigger_types())
    assert iii_engine.cron_jobs() == []


def test_a_cron_job_stops_with_the_engine_and_starts_again_after_a_restart():
    clock = ManualClock(start=NOON)
    with EngineThread(clock=clock) as engine:
        calls = Calls()
        w = iii.register_worker(engine.url, opts(worker_name="cron-restart"))
        try:
            w.register_function("jobs::again", calls.handler)
            trigger = w.register_trigger(
                {
                    "type": "cron",
                    "function_id": "jobs::again",
                    "config": {"expression": "0 * * * * *"},
                }
            )
            wait_sleeping(engine, trigger.id)
            engine.restart()  # all state is lost; the worker reconnects and replays
            job = wait_sleeping(engine, trigger.id)
            assert job["next_run"] == "2026-01-01T12:01:00+00:00"
            engine.advance_clock(60.0)
            assert calls.get()[0]["job_id"] == trigger.id
        finally:
            w.shutdown()


def test_schedule_includes_matches_next_after():
    schedule = CronSchedule.parse("15 30 9 * * MON-FRI")
    when = datetime.datetime.fromtimestamp(schedule.next_after(NOON) or 0, UTC)
    assert schedule.includes(when)
    assert when == datetime.datetime(2026, 1, 2, 9, 30, 15, tzinfo=UTC)
    assert not schedule.includes(when + datetime.timedelta(seconds=1))
