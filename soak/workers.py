"""The soak's workers: one per runtime, each serving handlers and calling the others.

Every worker runs on its own host thread:

* ``thread``: ``register_worker`` with no loop (the SDK's daemon threads; async
  handlers on its private loop), callers are threads using blocking ``trigger``;
* ``asyncio`` / ``trio``: ``async with register_worker_async`` inside
  ``asyncio.run`` / ``trio.run``, callers are tasks using ``trigger_async``;
* ``bound-asyncio`` / ``bound-trio``: ``register_worker`` called inside
  ``asyncio.run`` / ``trio.run`` (the worker binds to that loop), callers are tasks;

and every async worker also has a few plain threads calling its blocking
``trigger``.  Each worker registers the same eight functions
(``<worker>::<fn>``): sync and async, fast, slow and failing, and sinks
for void and enqueue calls.  Every call and every handler run is recorded in
the ``Ledger``.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any, Optional

import anyio
import anyio.to_thread
import sniffio

import iii
from iii import IIIInvocationError, InitOptions, ReconnectionConfig, TriggerAction

from .ledger import ERROR, RAISED, RETURNED, UNTYPED, VALUE, Call, Ledger

#: the functions every worker registers; a leading "a" marks the async handler
FUNCTIONS = ("echo", "aecho", "slow", "aslow", "fail", "afail", "sink", "asink")
REQUEST_FNS = ("echo", "aecho", "echo", "aecho", "slow", "aslow", "fail", "afail")
SINK_FNS = ("sink", "asink")
#: the runtimes, in the order workers are made
RUNTIMES = ("thread", "asyncio", "trio", "bound-asyncio", "bound-trio")
#: the queue enqueue calls go to (the reference engine's default one)
QUEUE = "default"


class SoakFailure(Exception):
    """What the ``fail`` handlers raise most of the time."""


#: how a ``fail`` handler ends, drawn by the caller: mostly an exception, sometimes
#: a BaseException that must not take the worker down with it
ENDINGS = ("error",) * 6 + ("exit", "interrupt", "generator-exit", "cancel")


def _ending(how: str, id: str, on_asyncio: bool) -> BaseException:
    if how == "exit":
        return SystemExit(4)
    if how == "interrupt":
        return KeyboardInterrupt()
    if how == "generator-exit":
        return GeneratorExit()
    if how == "cancel" and on_asyncio:  # a cancellation that is not the worker's own
        return asyncio.CancelledError()
    return SoakFailure(f"{id} fails on purpose")


def function_id(worker: str, fn: str) -> str:
    return f"{worker}::{fn}"


def worker_options(name: str, timeout_ms: int, grace_ms: int) -> InitOptions:
    return InitOptions(
        worker_name=name,
        invocation_timeout_ms=timeout_ms,
        # Faster than the default backoff (1 s doubling to 30 s) so that 64 faults
        # in 250 s leave the workers connected most of the time.
        reconnection_config=ReconnectionConfig(initial_delay_ms=100, max_delay_ms=2000),
        register_timeout_ms=120_000,
        shutdown_grace_ms=grace_ms,
    )


class Host:
    """One worker on its own thread: connect, serve, call, shut down on ``stop``.

    ``ready`` is set once the worker is connected with its functions accepted
    (or it failed: ``error``); callers start when ``go`` is set.
    """

    def __init__(
        self,
        name: str,
        runtime: str,
        url: str,
        ledger: Ledger,
        *,
        targets: list[str],
        seed: str,
        tasks: int,
        threads: int,
        timeout_ms: int,
        grace_ms: int,
        pace: float,
        go: threading.Event,
    ) -> None:
        self.name = name
        self.runtime = runtime
        self.url = url
        self.ledger = ledger
        self.targets = targets
        self.seed = seed
        self.tasks = tasks
        self.threads = threads
        self.timeout_ms = timeout_ms
        self.grace_ms = grace_ms
        self.pace = pace
        self.go = go
        #: set by the runner: the callers stop and the worker shuts down
        self.stop = threading.Event()
        self.ready = threading.Event()
        self.error: Optional[BaseException] = None
        self.worker: Optional[iii.III] = None
        #: connection state changes seen after the first connect
        self.states: Counter[str] = Counter()
        self.rejections: list[str] = []
        self.caller_threads: list[threading.Thread] = []
        self.stuck_callers: list[str] = []
        self.shutdown_seconds = 0.0
        self.thread = threading.Thread(target=self._main, name=f"soak-{name}", daemon=True)

    @property
    def reconnects(self) -> int:
        return self.states["connected"]

    def start(self) -> None:
        self.thread.start()

    def _main(self) -> None:
        try:
            if self.runtime == "thread":
                self._run_threads()
            else:
                library = self.runtime.removeprefix("bound-")
                if library == "asyncio":
                    asyncio.run(self._amain())
                else:
                    import trio

                    trio.run(self._amain)
        except BaseException as exc:
            self.error = exc
        finally:
            self.ready.set()

    # -- setup -------------------------------------------------------------------------

    def _options(self) -> InitOptions:
        return worker_options(self.name, self.timeout_ms, self.grace_ms)

    def _listen(self, worker: iii.III) -> None:
        self.worker = worker
        worker.add_connection_state_listener(self._on_state)
        worker.add_registration_rejected_listener(lambda e: self.rejections.append(str(e)))

    def _on_state(self, state: str) -> None:
        self.states[state] += 1

    def _register(self, worker: iii.III) -> list[Any]:
        return [
            worker.register_function(function_id(self.name, fn), self._handler(fn))
            for fn in FUNCTIONS
        ]

    def _handler(self, fn: str) -> Callable[[Any], Any]:
        ledger, name = self.ledger, self.name
        failing = fn.endswith("fail")

        if fn.startswith("a"):

            async def async_handler(data: Any) -> Any:
                run = ledger.run_started(data["id"], name, fn)
                try:
                    if data["sleep"]:
                        await anyio.sleep(data["sleep"])
                    if failing:
                        raise _ending(data["raise"], data["id"], _on_asyncio())
                except BaseException:
                    ledger.run_ended(run, RAISED)
                    raise
                ledger.run_ended(run, RETURNED)
                return {"id": data["id"], "by": name, "fn": fn}

            return async_handler

        def sync_handler(data: Any) -> Any:
            run = ledger.run_started(data["id"], name, fn)
            try:
                if data["sleep"]:
                    time.sleep(data["sleep"])
                if failing:
                    raise _ending(data["raise"], data["id"], False)
            except BaseException:
                ledger.run_ended(run, RAISED)
                raise
            ledger.run_ended(run, RETURNED)
            return {"id": data["id"], "by": name, "fn": fn}

        return sync_handler

    # -- calls -------------------------------------------------------------------------

    def _choose(self, rng: random.Random) -> tuple[str, str, str, dict[str, Any]]:
        target = rng.choice(self.targets)
        r = rng.random()
        if r < 0.6:
            action, fn = "request", rng.choice(REQUEST_FNS)
        elif r < 0.85:
            action, fn = "void", rng.choice(SINK_FNS)
        else:
            action, fn = "enqueue", rng.choice(SINK_FNS)
        args = {
            "sleep": round(rng.uniform(0.02, 0.4), 3) if fn in ("slow", "aslow") else 0.0,
            "raise": rng.choice(ENDINGS) if fn.endswith("fail") else None,
        }
        return target, fn, action, args

    def _request(self, call: Call, args: dict[str, Any]) -> dict[str, Any]:
        request: dict[str, Any] = {
            "function_id": function_id(call.target, call.fn),
            "payload": {"id": call.id, **args},
            "timeout_ms": self.timeout_ms,
        }
        if call.action == "void":
            request["action"] = TriggerAction.Void()
        elif call.action == "enqueue":
            request["action"] = TriggerAction.Enqueue(queue=QUEUE)
        return request

    def _sync_caller(self, worker: iii.III, index: int) -> None:
        rng = random.Random(f"{self.seed}/{self.name}/t{index}")
        caller = f"{self.name}.t{index}"
        while not self.stop.is_set():
            target, fn, action, args = self._choose(rng)
            call = self.ledger.begin(caller, "trigger", target, fn, action)
            try:
                value = worker.trigger(self._request(call, args))
            except IIIInvocationError as exc:
                self.ledger.end(call, ERROR, exc.code, exc.message)
            except BaseException as exc:
                self.ledger.end(call, UNTYPED, None, repr(exc))
                if not isinstance(exc, Exception):
                    raise
            else:
                self.ledger.end(call, VALUE, None, _plain(value))
            if self.pace:
                time.sleep(rng.uniform(0, 2 * self.pace))

    async def _async_caller(self, worker: iii.III, index: int) -> None:
        rng = random.Random(f"{self.seed}/{self.name}/a{index}")
        caller = f"{self.name}.a{index}"
        while not self.stop.is_set():
            target, fn, action, args = self._choose(rng)
            call = self.ledger.begin(caller, "trigger_async", target, fn, action)
            try:
                value = await worker.trigger_async(self._request(call, args))
            except IIIInvocationError as exc:
                self.ledger.end(call, ERROR, exc.code, exc.message)
            except BaseException as exc:
                self.ledger.end(call, UNTYPED, None, repr(exc))
                if not isinstance(exc, Exception):
                    raise
            else:
                self.ledger.end(call, VALUE, None, _plain(value))
            # A turn of the loop between calls, paced or not: a caller whose
            # call fails at once (disconnected) must not starve the others.
            await anyio.sleep(rng.uniform(0, 2 * self.pace) if self.pace else 0)

    def _start_threads(self, worker: iii.III, count: int) -> None:
        for i in range(count):
            t = threading.Thread(
                target=self._sync_caller, args=(worker, i), name=f"soak-{self.name}-t{i}"
            )
            t.daemon = True
            t.start()
            self.caller_threads.append(t)

    def _join_threads(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        for t in self.caller_threads:
            t.join(max(0.0, deadline - time.monotonic()))
            if t.is_alive():
                self.stuck_callers.append(t.name)

    # -- runtimes ----------------------------------------------------------------------

    def _run_threads(self) -> None:
        worker = iii.register_worker(self.url, self._options())
        self._listen(worker)
        for ref in self._register(worker):
            ref.wait_accepted(60)
        self.ready.set()
        self.go.wait()
        self._start_threads(worker, self.threads)
        self.stop.wait()
        started = time.monotonic()
        worker.shutdown()
        self.shutdown_seconds = time.monotonic() - started
        self._join_threads(self.timeout_ms / 1000 + 60)

    async def _amain(self) -> None:
        if self.runtime.startswith("bound-"):
            worker = iii.register_worker(self.url, self._options())
            await self._serve(worker)
        else:
            async with iii.register_worker_async(self.url, self._options()) as worker:
                await self._serve(worker)

    async def _serve(self, worker: iii.III) -> None:
        self._listen(worker)
        for ref in self._register(worker):
            await ref.wait_accepted_async(60)
        self.ready.set()
        await _wait(self.go)
        async with anyio.create_task_group() as tg:
            for i in range(self.tasks):
                tg.start_soon(self._async_caller, worker, i)
            self._start_threads(worker, self.threads)
            await _wait(self.stop)
            started = time.monotonic()
            # Shut down with calls in flight: each must still end, with SHUTDOWN.
            await worker.shutdown_async()
            self.shutdown_seconds = time.monotonic() - started
        await anyio.to_thread.run_sync(self._join_threads, self.timeout_ms / 1000 + 60)


async def _wait(event: threading.Event) -> None:
    """Wait for a ``threading.Event`` on any loop (by polling: it is set once)."""
    while not event.is_set():
        await anyio.sleep(0.05)


def _on_asyncio() -> bool:
    try:
        return sniffio.current_async_library() == "asyncio"
    except sniffio.AsyncLibraryNotFoundError:
        return False


def _plain(value: Any) -> Any:
    """An ``EnqueueResult`` (a dict subclass) as a plain dict, for the ledger."""
    return dict(value) if isinstance(value, dict) else value
