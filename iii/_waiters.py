"""Waiting across threads: one-shot waiters and watched values.

A waiter is completed once with ``set`` from any thread.  How its owner
waits depends on where the owner is:

* ``ThreadWaiter``: a blocked thread;
* ``LoopWaiter``: a task on any asyncio loop or trio run (one hop per
  ``set``); the runtimes' own loops use cheaper waiters (``_loops``), woken
  in batches;
* ``Cell``: a value that changes, waited on by threads (``wait_for``) and
  tasks (``wait_for_async``) until it passes a test, so that shutdown and
  registration waits sleep on a condition instead of polling.
"""

from __future__ import annotations

import contextlib
import math
import threading
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Generic, Optional, Protocol, TypeVar

import sniffio

from iii_protocol import events as ev

if TYPE_CHECKING:  # loaded by whoever runs a loop; the thread path never does
    import asyncio

__all__ = ["Outcome", "Waiter", "AsyncWaiter", "ThreadWaiter", "LoopWaiter", "Cell"]

Outcome = ev.InvocationSucceeded | ev.InvocationFailed
T = TypeVar("T")
T_contra = TypeVar("T_contra", contravariant=True)


class Waiter(Protocol[T_contra]):
    def set(self, value: T_contra) -> None: ...


class AsyncWaiter(Protocol):
    def set(self, value: Outcome) -> None: ...
    def wait(self) -> Awaitable[Outcome]: ...


class ThreadWaiter(Generic[T]):
    """Blocks one thread until ``set`` (from any thread, once)."""

    __slots__ = ("_lock", "outcome")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._lock.acquire()
        self.outcome: Optional[T] = None

    def set(self, value: T) -> None:
        self.outcome = value
        self._lock.release()

    def is_set(self) -> bool:
        return self.outcome is not None

    def wait(self, timeout: float) -> Optional[T]:
        if self._lock.acquire(timeout=min(max(timeout, 0.0), threading.TIMEOUT_MAX)):
            return self.outcome
        return None


class LoopWaiter(Generic[T]):
    """Awaited by a task of the current asyncio loop or trio run; ``set`` from any thread."""

    __slots__ = ("_event", "_future", "_loop", "_token", "has_value", "value")

    def __init__(self) -> None:
        self.value: Optional[T] = None
        self.has_value = False
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._future: Optional[asyncio.Future[None]] = None
        self._token: Any = None
        self._event: Any = None
        if sniffio.current_async_library() == "trio":
            import trio

            self._token = trio.lowlevel.current_trio_token()
            self._event = trio.Event()
        else:
            import asyncio

            self._loop = asyncio.get_running_loop()
            self._future = self._loop.create_future()

    def set(self, value: T) -> None:
        self.value = value
        self.has_value = True
        if self._event is not None:
            # RuntimeError: that trio run has ended and nobody is waiting.
            with contextlib.suppress(RuntimeError):
                self._token.run_sync_soon(self._event.set)
        else:
            assert self._loop is not None
            # RuntimeError: the loop is closed and nobody is waiting.
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._resolve)

    def _resolve(self) -> None:
        assert self._future is not None
        if not self._future.done():
            self._future.set_result(None)

    async def wait(self) -> T:
        if self._event is not None:
            await self._event.wait()
        else:
            assert self._future is not None
            await self._future
        return self.value  # type: ignore[return-value]


def _timeout(seconds: Optional[float]) -> Optional[float]:
    if seconds is None or math.isinf(seconds):
        return None
    return min(max(seconds, 0.0), threading.TIMEOUT_MAX)


class Cell(Generic[T]):
    """A value any thread may change; threads and tasks wait until it passes a test."""

    __slots__ = ("_cond", "_value", "_watchers")

    def __init__(self, value: T) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._value = value
        self._watchers: list[tuple[Callable[[T], bool], LoopWaiter[None]]] = []

    @property
    def value(self) -> T:
        return self._value

    def update(self, change: Callable[[T], T]) -> T:
        """Replace the value with ``change(value)`` (run under the cell's lock)."""
        with self._cond:
            self._value = value = change(self._value)
            self._cond.notify_all()
            ready = [w for w in self._watchers if w[0](value)] if self._watchers else []
            for watcher in ready:
                self._watchers.remove(watcher)
        for _, waiter in ready:
            waiter.set(None)
        return value

    def set(self, value: T) -> None:
        self.update(lambda _: value)

    def wait_for(self, test: Callable[[T], bool], timeout: Optional[float] = None) -> bool:
        """Block until ``test(value)``; False if ``timeout`` seconds passed first."""
        with self._cond:
            return self._cond.wait_for(lambda: test(self._value), timeout=_timeout(timeout))

    async def wait_for_async(
        self, test: Callable[[T], bool], timeout: Optional[float] = None
    ) -> bool:
        """``wait_for`` for asyncio and trio tasks."""
        import anyio

        with self._cond:
            if test(self._value):
                return True
            watcher = (test, LoopWaiter[None]())
            self._watchers.append(watcher)
        try:
            with anyio.move_on_after(math.inf if timeout is None else max(timeout, 0.0)):
                await watcher[1].wait()
                return True
            return False
        finally:
            with self._cond:
                if watcher in self._watchers:
                    self._watchers.remove(watcher)
