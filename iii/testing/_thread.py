"""``EngineThread``: a reference engine on a daemon thread, for synchronous code."""

from __future__ import annotations

import contextlib
import functools
import inspect
import threading
from collections.abc import Awaitable, Callable, Mapping
from types import TracebackType
from typing import Any, Optional, TypeVar, Union, overload

import anyio
from anyio.from_thread import BlockingPortal

from iii_protocol import Frame, UnknownFrame
from iii_protocol._json import JSON, JSONObject

from ._api import EngineWorker
from ._checks import choice, seconds
from ._clock import Clock
from ._controls import ResultRule
from ._core import EngineCore
from ._handle import Engine, serve_engine
from ._options import check_options

__all__ = ["EngineThread"]

T = TypeVar("T")

check_backend = choice("asyncio", "trio")
check_timeout = seconds(positive=True)


class EngineThread:
    """Run ``serve_engine`` on its own event loop in a background daemon thread.

    Every method is a thread-safe wrapper around the ``Engine`` method of the
    same name (see ``Engine`` for the details)::

        with EngineThread() as engine:
            connect_my_worker(engine.url)
            engine.wait_for_worker("my-worker")
            engine.drop_all()

    ``backend`` is ``"asyncio"`` (default) or ``"trio"``; the other keyword
    arguments go to ``serve_engine``.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        backend: str = "asyncio",
        start_timeout: float = 10.0,
        **options: Any,
    ) -> None:
        # Checked here, in the caller's thread: a bad option names itself.
        self._args = check_options(dict(options, host=host, port=port))
        self._backend = check_backend("backend", backend)
        self._start_timeout = check_timeout("start_timeout", start_timeout)
        self._thread: Optional[threading.Thread] = None
        self._ready = threading.Event()
        self._engine: Optional[Engine] = None
        self._portal: Optional[BlockingPortal] = None
        self._stop_event: Optional[anyio.Event] = None
        self._error: Optional[BaseException] = None

    # -- lifecycle ---------------------------------------------------------------

    def start(self) -> EngineThread:
        """Start the engine's thread and wait until it listens; returns ``self``."""
        if self._thread is not None:
            raise RuntimeError("EngineThread already started")
        self._thread = threading.Thread(target=self._main, name="iii-reference-engine", daemon=True)
        self._thread.start()
        if not self._ready.wait(self._start_timeout):
            raise TimeoutError("the reference engine did not start")
        if self._error is not None:
            raise RuntimeError("the reference engine failed to start") from self._error
        return self

    def _main(self) -> None:
        async def main() -> None:
            async with BlockingPortal() as portal, serve_engine(**self._args) as engine:
                self._stop_event = anyio.Event()
                self._engine = engine
                self._portal = portal
                self._ready.set()
                await self._stop_event.wait()

        try:
            anyio.run(main, backend=self._backend)
        except BaseException as exc:
            self._error = exc
        finally:
            self._ready.set()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the engine and join the thread (idempotent)."""
        thread = self._thread
        if thread is None or not thread.is_alive():
            return
        portal, stop_event = self._portal, self._stop_event
        if portal is not None and stop_event is not None:
            with contextlib.suppress(RuntimeError):
                portal.call(stop_event.set)
        thread.join(timeout)

    def __enter__(self) -> EngineThread:
        return self.start()

    def __exit__(
        self,
        exc_type: Optional[type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        self.stop()

    @overload
    def _call(self, fn: Callable[..., Awaitable[T]], *args: Any, **kwargs: Any) -> T: ...

    @overload
    def _call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T: ...

    def _call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        portal = self._portal
        if portal is None:
            raise RuntimeError("EngineThread is not running")
        if threading.current_thread() is self._thread:
            # Already on the engine's loop (e.g. inside a ``wait_for`` predicate).
            result = fn(*args, **kwargs)
            if inspect.isawaitable(result):
                if inspect.iscoroutine(result):
                    result.close()
                raise RuntimeError("blocking EngineThread calls cannot run on the engine's thread")
            return result
        if kwargs:
            return portal.call(functools.partial(fn, *args, **kwargs))
        return portal.call(fn, *args)

    @property
    def engine(self) -> Engine:
        """The ``Engine`` (only touch it through ``run``/``call`` from this thread)."""
        if self._engine is None:
            raise RuntimeError("EngineThread is not running")
        return self._engine

    def call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run ``fn(*args, **kwargs)`` (sync or async) on the engine's loop."""
        return self._call(fn, *args, **kwargs)

    # -- addresses ---------------------------------------------------------------

    @property
    def url(self) -> str:
        return self.engine.url

    @property
    def port(self) -> int:
        return self.engine.port

    @property
    def rbac_url(self) -> Optional[str]:
        return self.engine.rbac_url

    @property
    def urls(self) -> dict[str, str]:
        """Every listener's URL by name (``main``, ``rbac``, worker modules' own)."""
        return self._call(lambda: self.engine.urls)

    @property
    def http_url(self) -> str:
        """``http://host:port`` of the HTTP worker (``rest_api``): the ``http`` routes."""
        return self._call(lambda: self.engine.http_url)

    @property
    def transcript_limit(self) -> Optional[int]:
        return self.engine.transcript_limit

    def module(self, name: str) -> EngineWorker:
        """The worker module ``name`` of the current run.  It lives on the engine's
        thread: read or change it through ``call`` (``call(lambda: m.stats())``)."""
        return self._call(self.engine.module, name)

    @property
    def clock(self) -> Clock:
        """The engine's clock; move a ``ManualClock`` with ``advance_clock``."""
        return self.engine.clock

    def cron_jobs(self) -> list[JSONObject]:
        """The ``cron`` bindings' jobs (``next_run`` is set while a job sleeps)."""
        return self._call(self.engine.cron_jobs)

    def advance_clock(self, seconds: float) -> int:
        """Move the engine's ``ManualClock`` forward (on the engine's thread)."""
        return self._call(self.engine.advance_clock, seconds)

    @property
    def core(self) -> EngineCore:
        return self.engine.core

    # -- introspection -------------------------------------------------------------

    def workers(self) -> list[JSONObject]:
        """Connected workers: ids, announce metadata, namespace, functions."""
        return self._call(self.engine.workers)

    def worker(self, name_or_id: str) -> JSONObject:
        """One connected worker by announced name or id (``KeyError`` if none)."""
        return self._call(self.engine.worker, name_or_id)

    def functions(self, namespace: Optional[str] = None) -> list[JSONObject]:
        """Registered functions (all, or one ``namespace``'s), sorted by namespace and id."""
        return self._call(self.engine.functions, namespace)

    def trigger_types(self) -> list[JSONObject]:
        """Registered trigger types: the engine's own and the workers'."""
        return self._call(self.engine.trigger_types)

    def bindings(self) -> list[JSONObject]:
        """Trigger bindings: owner, provider, config, and whether parked or acknowledged."""
        return self._call(self.engine.bindings)

    def pending_invocations(self) -> list[JSONObject]:
        """Invocations the engine routed and has no answer for yet."""
        return self._call(self.engine.pending_invocations)

    def channels(self) -> list[JSONObject]:
        """Open data channels and their ends."""
        return self._call(self.engine.channels)

    def queue_stats(self) -> JSONObject:
        """The queue module's counters (``Engine.queue_stats``)."""
        return self._call(self.engine.queue_stats)

    def dead_letters(self) -> list[JSONObject]:
        """Every dead-lettered job, oldest first (``Engine.dead_letters``)."""
        return self._call(self.engine.dead_letters)

    def pubsub_stats(self) -> JSONObject:
        """The pubsub module's counters (``Engine.pubsub_stats``)."""
        return self._call(self.engine.pubsub_stats)

    def stats(self) -> JSONObject:
        """Counters: workers, functions, pending calls, bad frames, connections, transcript."""
        return self._call(self.engine.stats)

    def transcript(self) -> list[JSONObject]:
        """Every kept transcript entry: ``{ts, conn, dir, kind, frame|text|info|size}``."""
        return self._call(self.engine.transcript)

    def transcript_jsonl(self) -> str:
        """The transcript as JSON lines."""
        return self._call(self.engine.transcript_jsonl)

    def dump_transcript(self, path: str) -> None:
        """Write the transcript to ``path`` as JSON lines."""
        self._call(self.engine.dump_transcript, path)

    def clear_transcript(self) -> None:
        """Forget every transcript entry kept so far."""
        self._call(self.engine.clear_transcript)

    def frames(
        self,
        worker_id: Optional[str] = None,
        *,
        direction: Optional[str] = None,
        type: Optional[str] = None,
    ) -> list[JSONObject]:
        """Protocol frames from the transcript, filtered by worker, direction and type."""
        return self._call(self.engine.frames, worker_id, direction=direction, type=type)

    # -- waiting -------------------------------------------------------------------

    def wait_for(self, predicate: Callable[[], Any], timeout: float = 5.0) -> Any:
        """Wait until ``predicate()`` (run on the engine's thread) is truthy."""
        return self._call(self.engine.wait_for, predicate, timeout)

    def wait_for_worker(
        self,
        name: Optional[str] = None,
        *,
        namespace: Optional[str] = None,
        announced: bool = True,
        timeout: float = 5.0,
    ) -> JSONObject:
        """Wait for a connected worker (by announced name, or any) and return it."""
        return self._call(
            self.engine.wait_for_worker,
            name,
            namespace=namespace,
            announced=announced,
            timeout=timeout,
        )

    def wait_for_function(
        self, function_id: str, namespace: str = "default", *, timeout: float = 5.0
    ) -> JSONObject:
        """Wait until ``function_id`` is registered in ``namespace``; return it."""
        return self._call(self.engine.wait_for_function, function_id, namespace, timeout=timeout)

    def wait_for_trigger_type(
        self, type_id: str, namespace: str = "default", *, timeout: float = 5.0
    ) -> JSONObject:
        """Wait until the trigger type ``type_id`` is registered; return it."""
        return self._call(self.engine.wait_for_trigger_type, type_id, namespace, timeout=timeout)

    def wait_for_binding(
        self, binding_id: str, *, acked: bool = False, timeout: float = 5.0
    ) -> JSONObject:
        """Wait for the binding ``binding_id`` (``acked``: once its provider accepted it)."""
        return self._call(self.engine.wait_for_binding, binding_id, acked=acked, timeout=timeout)

    def wait_for_frame(
        self,
        type: Optional[str] = None,
        *,
        worker_id: Optional[str] = None,
        direction: Optional[str] = None,
        where: Optional[Callable[[JSONObject], bool]] = None,
        count: int = 1,
        timeout: float = 5.0,
    ) -> JSONObject:
        """Wait until the transcript holds ``count`` matching frames; return the last."""
        return self._call(
            self.engine.wait_for_frame,
            type,
            worker_id=worker_id,
            direction=direction,
            where=where,
            count=count,
            timeout=timeout,
        )

    # -- fault injection -------------------------------------------------------------

    def drop(self, worker_id: str, *, code: Optional[int] = None) -> None:
        """Drop one worker's connection: abruptly, or with a Close frame of ``code``."""
        self._call(self.engine.drop, worker_id, code=code)

    def drop_all(self, *, code: Optional[int] = None) -> int:
        """Drop every worker connection; returns how many."""
        return self._call(self.engine.drop_all, code=code)

    def stop_engine(self) -> None:
        """Close the listeners and drop every connection; the thread keeps running."""
        self._call(self.engine.stop)

    def start_engine(self) -> None:
        """Listen again on the same port(s) with fresh state."""
        self._call(self.engine.start)

    def restart(self) -> None:
        """Stop and start again on the same port(s) with fresh state (workers reconnect)."""
        self._call(self.engine.restart)

    def delay_results(
        self, seconds: float, function_id: Optional[str] = None, *, count: Optional[int] = None
    ) -> ResultRule:
        """Forward results of ``function_id`` (any, when None) ``seconds`` late."""
        return self._call(self.engine.delay_results, seconds, function_id, count=count)

    def withhold_results(
        self, function_id: Optional[str] = None, *, count: Optional[int] = None
    ) -> ResultRule:
        """Keep results of ``function_id`` from their callers until ``release``."""
        return self._call(self.engine.withhold_results, function_id, count=count)

    def release(self, rule: ResultRule) -> int:
        """Deliver the results ``rule`` withheld."""
        return self._call(rule.release)

    def clear_faults(self) -> None:
        """Remove every result rule (withheld results stay undelivered)."""
        self._call(self.engine.clear_faults)

    def send_raw(self, worker_id: str, data: bytes) -> None:
        """Write ``data`` to the worker's TCP stream as is (no WebSocket framing)."""
        self._call(self.engine.send_raw, worker_id, data)

    def send_text(self, worker_id: str, text: str) -> None:
        """Send one WebSocket text message with arbitrary content."""
        self._call(self.engine.send_text, worker_id, text)

    def send_binary(self, worker_id: str, data: bytes) -> None:
        """Send one WebSocket binary message."""
        self._call(self.engine.send_binary, worker_id, data)

    def send_frame(
        self, worker_id: str, frame: Union[Frame, UnknownFrame, Mapping[str, JSON]]
    ) -> None:
        """Send a protocol frame (an ``iii_protocol`` frame or a JSON object)."""
        self._call(self.engine.send_frame, worker_id, frame)

    def send_ping(self, worker_id: str, payload: bytes = b"") -> None:
        """Send a WebSocket Ping control frame."""
        self._call(self.engine.send_ping, worker_id, payload)
