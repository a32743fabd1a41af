"""One synchronous driver per adapter, so every scenario is written once.

Each driver owns a raw ``iii_protocol.Connection`` and runs it with one
adapter: ``AnyioTransport`` on asyncio, ``AnyioTransport`` on trio,
``TrioTransport``, or ``ThreadTransport``.  The async adapters run on an
event loop in a background thread (an anyio blocking portal); the test thread
talks to them through the portal, the way an application's own task would.

The common interface:

- ``start(config, ssl_context=None)``
- ``register(function_id, handler)``: the driver answers every invocation of
  ``function_id`` with ``handler(data)``
- ``invoke(function_id, data)`` -> invocation id, once the bytes were handed
  to the socket (a slow engine makes it block: that is the backpressure)
- ``outcome(invocation_id)`` / ``call(function_id, data)``
- ``wait_event(predicate)`` / ``events_of(type)`` / ``state``
- ``on_owner(fn)``: run ``fn(conn)`` where the adapter allows it
- ``task_count()``, ``finished``, ``close()``
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from typing import Any, Optional, TypeVar, Union

import anyio
import anyio.from_thread
import trio
import trio.lowlevel

from iii_protocol import JSON, Config, Connection, ConnectionState, RegisterFunction
from iii_protocol import events as ev
from iii_transports.anyio import AnyioTransport
from iii_transports.blocking import ThreadTransport
from iii_transports.trio import TrioTransport

T = TypeVar("T")
E = TypeVar("E")
Outcome = Union[ev.InvocationSucceeded, ev.InvocationFailed]
Handler = Callable[[JSON], JSON]

ADAPTERS = ("asyncio", "trio", "trio-native", "thread", "thread-reads")


class Recorder:
    """Every application event with its arrival time; waitable from any thread."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self.log: list[tuple[float, ev.Event]] = []

    def add(self, event: ev.Event) -> None:
        with self._cond:
            self.log.append((time.monotonic(), event))
            self._cond.notify_all()

    def snapshot(self) -> list[ev.Event]:
        with self._cond:
            return [e for _, e in self.log]

    def wait(self, predicate: Callable[[list[ev.Event]], Any], timeout: float) -> Any:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                value = predicate([e for _, e in self.log])
                if value:
                    return value
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(
                        f"condition not met within {timeout}s; events: "
                        + ", ".join(type(e).__name__ for _, e in self.log[-30:])
                    )
                self._cond.wait(left)


class Driver:
    """What every scenario uses; see the module docstring."""

    name = "?"

    def __init__(self) -> None:
        self.recorder = Recorder()
        self.handlers: dict[str, Handler] = {}
        self.conn: Optional[Connection] = None

    # -- to implement ------------------------------------------------------------

    def start(self, config: Config, *, ssl_context: Optional[ssl.SSLContext] = None) -> None:
        raise NotImplementedError

    def on_owner(self, fn: Callable[[Connection], T]) -> T:
        """Run ``fn(conn)`` with the right to touch the connection."""
        raise NotImplementedError

    def invoke(self, function_id: str, data: JSON, *, timeout: Optional[float] = None) -> str:
        raise NotImplementedError

    def now(self) -> float:
        """The adapter's clock (what it passes to the core)."""
        raise NotImplementedError

    def register(self, function_id: str, handler: Handler) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    @property
    def finished(self) -> bool:
        """The adapter stopped running (closed or failed)."""
        raise NotImplementedError

    def task_count(self) -> int:
        """Tasks alive on the adapter's loop (0 for the thread adapter)."""
        return 0

    # -- shared ------------------------------------------------------------------

    def _answer(self, conn: Connection, event: ev.InvocationRequested) -> None:
        if event.invocation_id is None:
            return
        handler = self.handlers.get(event.function_id)
        result = handler(event.data) if handler is not None else None
        conn.send_result(event.invocation_id, event.function_id, result)

    @property
    def state(self) -> ConnectionState:
        return self.on_owner(lambda c: c.state)

    def events_of(self, kind: type[E]) -> list[E]:
        return [e for e in self.recorder.snapshot() if isinstance(e, kind)]

    def wait_event(
        self,
        kind: type[E],
        where: Callable[[E], bool] = lambda e: True,
        *,
        count: int = 1,
        timeout: float = 30.0,
    ) -> E:
        """Wait until ``count`` events of ``kind`` matching ``where`` arrived; the last one."""

        def find(events: list[ev.Event]) -> Optional[E]:
            hits = [e for e in events if isinstance(e, kind) and where(e)]
            return hits[count - 1] if len(hits) >= count else None

        result: E = self.recorder.wait(find, timeout)
        return result

    def wait_connected(self, count: int = 1, timeout: float = 30.0) -> ev.Connected:
        return self.wait_event(ev.Connected, count=count, timeout=timeout)

    def outcome(self, invocation_id: str, timeout: float = 30.0) -> Outcome:
        def is_it(e: Any) -> bool:
            return getattr(e, "invocation_id", None) == invocation_id

        found: Outcome = self.recorder.wait(
            lambda events: next(
                (
                    e
                    for e in events
                    if isinstance(e, (ev.InvocationSucceeded, ev.InvocationFailed)) and is_it(e)
                ),
                None,
            ),
            timeout,
        )
        return found

    def outcomes_for(self, invocation_id: str) -> list[Outcome]:
        return [
            e
            for e in self.recorder.snapshot()
            if isinstance(e, (ev.InvocationSucceeded, ev.InvocationFailed))
            and e.invocation_id == invocation_id
        ]

    def call(
        self, function_id: str, data: JSON, *, timeout: Optional[float] = None, wait: float = 30.0
    ) -> Outcome:
        return self.outcome(self.invoke(function_id, data, timeout=timeout), wait)

    def wait_until(self, predicate: Callable[[], Any], timeout: float = 30.0) -> Any:
        """Poll ``predicate`` (every 10 ms) until truthy."""
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value:
                return value
            if time.monotonic() > deadline:
                raise TimeoutError(f"condition not met within {timeout}s")
            time.sleep(0.01)


# -- the async adapters ---------------------------------------------------------------


class _AsyncDriver(Driver):
    backend = "asyncio"

    def __init__(self) -> None:
        super().__init__()
        self._portal_cm: Optional[contextlib.AbstractContextManager[Any]] = None
        self._portal: Optional[anyio.from_thread.BlockingPortal] = None
        self._run: Optional[Future[None]] = None
        self.transport: Any = None

    def _make_transport(
        self, conn: Connection, ssl_context: Optional[ssl.SSLContext]
    ) -> Union[AnyioTransport, TrioTransport]:
        return AnyioTransport(conn, self._on_event, ssl_context=ssl_context)

    def _on_event(self, event: ev.Event) -> None:
        if isinstance(event, ev.InvocationRequested):
            assert self.conn is not None
            # On the loop, inside process(): it flushes the answer right after.
            self._answer(self.conn, event)
        self.recorder.add(event)

    @property
    def portal(self) -> anyio.from_thread.BlockingPortal:
        assert self._portal is not None
        return self._portal

    def start(self, config: Config, *, ssl_context: Optional[ssl.SSLContext] = None) -> None:
        self._portal_cm = anyio.from_thread.start_blocking_portal(self.backend)
        self._portal = self._portal_cm.__enter__()
        self.conn = Connection(config)
        self.transport = self._make_transport(self.conn, ssl_context)
        self._run = self.portal.start_task_soon(self.transport.run)

    def on_owner(self, fn: Callable[[Connection], T]) -> T:
        conn = self.conn
        assert conn is not None
        return self.portal.call(lambda: fn(conn))

    async def _ainvoke(self, function_id: str, data: JSON, timeout: Optional[float]) -> str:
        assert self.conn is not None
        invocation_id = self.conn.invoke(
            function_id, data, now=self.transport.now(), timeout=timeout
        )
        assert invocation_id is not None
        await self.transport.process()
        return invocation_id

    def invoke(self, function_id: str, data: JSON, *, timeout: Optional[float] = None) -> str:
        return self.portal.call(self._ainvoke, function_id, data, timeout)

    def now(self) -> float:
        now: float = self.portal.call(self.transport.now)
        return now

    async def _aregister(self, function_id: str) -> None:
        assert self.conn is not None
        self.conn.register_function(RegisterFunction(id=function_id))
        await self.transport.process()

    def register(self, function_id: str, handler: Handler) -> None:
        self.handlers[function_id] = handler
        self.portal.call(self._aregister, function_id)

    @property
    def finished(self) -> bool:
        return self._run is not None and self._run.done()

    def close(self) -> None:
        if self._portal is None:
            return
        try:
            self.portal.call(self.transport.aclose)
            assert self._run is not None
            self._run.result(30.0)  # run() returns once closed
        finally:
            if self._run is not None and not self._run.done():
                self._run.cancel()
            assert self._portal_cm is not None
            cm, self._portal_cm, self._portal = self._portal_cm, None, None
            cm.__exit__(None, None, None)


class AsyncioDriver(_AsyncDriver):
    name = "asyncio"
    backend = "asyncio"

    def task_count(self) -> int:
        return self.portal.call(lambda: len(asyncio.all_tasks()))


def _trio_tasks() -> int:
    def walk(task: trio.lowlevel.Task) -> Iterator[trio.lowlevel.Task]:
        yield task
        for nursery in task.child_nurseries:
            for child in nursery.child_tasks:
                yield from walk(child)

    root = trio.lowlevel.current_root_task()
    assert root is not None
    return sum(1 for _ in walk(root))


class AnyioTrioDriver(_AsyncDriver):
    name = "trio"
    backend = "trio"

    def task_count(self) -> int:
        return self.portal.call(_trio_tasks)


class TrioNativeDriver(AnyioTrioDriver):
    name = "trio-native"

    def _make_transport(
        self, conn: Connection, ssl_context: Optional[ssl.SSLContext]
    ) -> Union[AnyioTransport, TrioTransport]:
        return TrioTransport(conn, self._on_event, ssl_context=ssl_context)


# -- the thread adapter -----------------------------------------------------------------


class ThreadDriver(Driver):
    name = "thread"

    def __init__(self) -> None:
        super().__init__()
        self.transport: Optional[ThreadTransport] = None

    def _on_event(self, event: ev.Event) -> None:
        if isinstance(event, ev.InvocationRequested):
            # Called outside the lock by whichever thread ran process(); it
            # writes the answer when it flushes right after.
            assert self.transport is not None and self.conn is not None
            with self.transport.lock:
                self._answer(self.conn, event)
        self.recorder.add(event)

    def start(self, config: Config, *, ssl_context: Optional[ssl.SSLContext] = None) -> None:
        self.conn = Connection(config)
        self.transport = ThreadTransport(self.conn, self._on_event, ssl_context=ssl_context)
        self.transport.start()

    def on_owner(self, fn: Callable[[Connection], T]) -> T:
        assert self.transport is not None and self.conn is not None
        with self.transport.lock:
            return fn(self.conn)

    def invoke(self, function_id: str, data: JSON, *, timeout: Optional[float] = None) -> str:
        transport = self.transport
        assert transport is not None and self.conn is not None
        with transport.lock:
            invocation_id = self.conn.invoke(
                function_id, data, now=transport.now(), timeout=timeout
            )
        transport.process()
        assert invocation_id is not None
        return invocation_id

    def now(self) -> float:
        assert self.transport is not None
        return self.transport.now()

    def register(self, function_id: str, handler: Handler) -> None:
        self.handlers[function_id] = handler
        self.on_owner(lambda c: c.register_function(RegisterFunction(id=function_id)))
        assert self.transport is not None
        self.transport.process()

    @property
    def finished(self) -> bool:
        transport = self.transport
        return transport is not None and transport.stopped and not transport._thread.is_alive()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


class ThreadReadsDriver(ThreadDriver):
    """The thread adapter with the waiting thread reading for itself
    (``read_until``), as a blocking ``trigger`` does: every scenario then runs
    with callers and the I/O thread handing the socket back and forth."""

    name = "thread-reads"

    def outcome(self, invocation_id: str, timeout: float = 10.0) -> Outcome:
        assert self.transport is not None
        self.transport.read_until(lambda: bool(self.outcomes_for(invocation_id)), timeout)
        return super().outcome(invocation_id, timeout)


DRIVERS: dict[str, type[Driver]] = {
    "asyncio": AsyncioDriver,
    "trio": AnyioTrioDriver,
    "trio-native": TrioNativeDriver,
    "thread": ThreadDriver,
    "thread-reads": ThreadReadsDriver,
}
