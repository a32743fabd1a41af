"""One-shot waiters: a call's outcome, completed from any thread."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from typing import Any, Optional, Protocol

import sniffio

from iii_protocol import events as ev

__all__ = ["Outcome", "Waiter", "ThreadWaiter", "LoopWaiter"]

Outcome = ev.InvocationSucceeded | ev.InvocationFailed


class Waiter(Protocol):
    def set(self, outcome: Outcome) -> None: ...


class ThreadWaiter:
    """Blocks one thread until ``set`` (from any thread)."""

    __slots__ = ("_lock", "outcome")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._lock.acquire()
        self.outcome: Optional[Outcome] = None

    def set(self, outcome: Outcome) -> None:
        self.outcome = outcome
        self._lock.release()

    def wait(self, timeout: float) -> Optional[Outcome]:
        if self._lock.acquire(timeout=timeout):
            return self.outcome
        return None


class LoopWaiter:
    """Awaited on the caller's asyncio or trio loop; ``set`` from any thread."""

    __slots__ = ("_event", "_future", "_library", "_loop", "_token", "outcome")

    def __init__(self) -> None:
        self._library = sniffio.current_async_library()
        self.outcome: Optional[Outcome] = None
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._future: Optional[asyncio.Future[None]] = None
        self._token: Any = None
        self._event: Any = None
        if self._library == "trio":
            import trio

            self._token = trio.lowlevel.current_trio_token()
            self._event = trio.Event()
        else:
            self._loop = asyncio.get_running_loop()
            self._future = self._loop.create_future()

    def set(self, outcome: Outcome) -> None:
        self.outcome = outcome
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

    async def wait(self) -> Outcome:
        if self._event is not None:
            await self._event.wait()
        else:
            assert self._future is not None
            await self._future
        assert self.outcome is not None
        return self.outcome
