"""``ManualClock``: time moves only when a test moves it."""

from __future__ import annotations

import time

import anyio
import pytest

from iii.testing import ManualClock, SystemClock

pytestmark = pytest.mark.anyio


async def test_sleepers_wake_in_deadline_order_when_time_reaches_them():
    clock = ManualClock(start=1000.0)
    woke: list[str] = []

    async def sleeper(name: str, seconds: float) -> None:
        await clock.sleep(seconds)
        woke.append(name)

    async with anyio.create_task_group() as tg:
        tg.start_soon(sleeper, "late", 3.0)
        tg.start_soon(sleeper, "early", 1.0)
        tg.start_soon(sleeper, "middle", 2.0)
        await clock.wait_for_sleepers(3)
        assert clock.next_deadline() == 1.0
        assert clock.advance(0.5) == 0
        assert clock.advance(1.5) == 2  # now 2.0: early and middle
        await clock.wait_for_sleepers(1)
        assert clock.sleepers == 1
        assert clock.set_time(1003.0) == 1
    assert woke == ["early", "middle", "late"]
    assert clock.time() == 1003.0
    assert clock.monotonic() == 3.0


async def test_within_counts_only_sleepers_due_soon():
    clock = ManualClock()
    async with anyio.create_task_group() as tg:
        tg.start_soon(clock.sleep, 60.0)
        tg.start_soon(clock.sleep, 1.0)
        await clock.wait_for_sleepers(2)
        with anyio.move_on_after(0.05) as scope:
            await clock.wait_for_sleepers(2, within=5.0)
        assert scope.cancelled_caught  # only one is due within 5 s
        await clock.wait_for_sleepers(1, within=5.0)
        clock.advance(60.0)


async def test_a_cancelled_sleeper_is_forgotten_and_time_never_goes_back():
    clock = ManualClock()
    with anyio.move_on_after(0.01):
        await clock.sleep(10.0)
    assert clock.sleepers == 0
    await clock.sleep(0)  # already due: returns at once
    with pytest.raises(ValueError, match="cannot go back"):
        clock.advance(-1.0)


async def test_the_system_clock_is_real_time():
    clock = SystemClock()
    start = clock.monotonic()
    await clock.sleep(0)
    await clock.sleep_until(start)
    assert clock.monotonic() >= start
    assert abs(clock.time() - time.time()) < 60
