"""The engine's clock: real time, or a manual clock a test advances.

Worker modules schedule through ``EngineHost.clock`` (queue retries, channel
sweeps, and the cron schedules and timestamps of the standard workers), so a
test that passes ``clock=ManualClock()`` decides when those fire::

    clock = ManualClock()
    with EngineThread(clock=clock) as engine:
        ...                          # a job failed; its retry sleeps on the clock
        engine.advance_clock(0.1)    # the retry runs now

Protocol timeouts (the namespace grace period, trigger acknowledgements, the
WebSocket handshake) stay on real time: they guard against peers, not schedules.
"""

from __future__ import annotations

import heapq
import itertools
import time
from typing import Optional, Protocol

import anyio

__all__ = ["Clock", "ManualClock", "SystemClock"]


class Clock(Protocol):
    """Time as the engine's worker modules see it."""

    def time(self) -> float:
        """Wall-clock seconds since the epoch (timestamps, calendar schedules)."""

    def monotonic(self) -> float:
        """Seconds on a clock that never goes back (deadlines)."""

    async def sleep(self, seconds: float) -> None:
        """Return once ``seconds`` have passed on this clock."""

    async def sleep_until(self, deadline: float) -> None:
        """Return once ``monotonic()`` has reached ``deadline``."""


class SystemClock(Clock):
    """Real time (the default)."""

    def time(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return anyio.current_time()

    async def sleep(self, seconds: float) -> None:
        await anyio.sleep(seconds)

    async def sleep_until(self, deadline: float) -> None:
        await anyio.sleep_until(deadline)


class ManualClock(Clock):
    """A clock that moves only when told to (``advance``, ``set_time``).

    Sleepers wake, in deadline order, when an advance reaches their deadline.
    Use it from the engine's event loop (``EngineThread.advance_clock`` does
    that from other threads).  ``sleepers`` and ``wait_for_sleepers`` let a
    test advance only once the worker it wants to wake is asleep.
    """

    def __init__(self, start: Optional[float] = None) -> None:
        #: wall time at monotonic 0
        self._epoch = time.time() if start is None else float(start)
        self._now = 0.0
        self._seq = itertools.count()
        self._sleepers: list[tuple[float, int, anyio.Event]] = []
        self._changed: Optional[anyio.Event] = None

    def time(self) -> float:
        return self._epoch + self._now

    def monotonic(self) -> float:
        return self._now

    async def sleep(self, seconds: float) -> None:
        await self.sleep_until(self._now + max(0.0, seconds))

    async def sleep_until(self, deadline: float) -> None:
        if deadline <= self._now:
            await anyio.lowlevel.checkpoint()
            return
        event = anyio.Event()
        entry = (deadline, next(self._seq), event)
        heapq.heappush(self._sleepers, entry)
        self._notify()
        try:
            await event.wait()
        finally:
            if not event.is_set():  # cancelled: forget it
                self._sleepers.remove(entry)
                heapq.heapify(self._sleepers)

    def advance(self, seconds: float) -> int:
        """Move time forward by ``seconds``; returns how many sleepers woke."""
        if seconds < 0:
            raise ValueError(f"a clock cannot go back (advance by {seconds!r})")
        self._now += seconds
        woken = 0
        while self._sleepers and self._sleepers[0][0] <= self._now:
            heapq.heappop(self._sleepers)[2].set()
            woken += 1
        return woken

    def set_time(self, wall: float) -> int:
        """Advance to the wall-clock time ``wall`` (seconds since the epoch)."""
        return self.advance(wall - self.time())

    @property
    def sleepers(self) -> int:
        """How many tasks sleep on this clock now."""
        return len(self._sleepers)

    def next_deadline(self) -> Optional[float]:
        """The earliest sleeper's deadline (``monotonic`` seconds), if any."""
        return self._sleepers[0][0] if self._sleepers else None

    async def wait_for_sleepers(self, count: int = 1, *, within: Optional[float] = None) -> None:
        """Return once at least ``count`` tasks sleep on this clock; with
        ``within``, only those due within ``within`` seconds from now count
        (the standard modules' own timers, e.g. the channel sweep, sleep too)."""
        while self._count(within) < count:
            if self._changed is None:
                self._changed = anyio.Event()
            await self._changed.wait()

    def _count(self, within: Optional[float]) -> int:
        if within is None:
            return len(self._sleepers)
        horizon = self._now + within
        return sum(1 for deadline, _, _ in self._sleepers if deadline <= horizon)

    def _notify(self) -> None:
        if self._changed is not None:
            self._changed.set()
            self._changed = None
