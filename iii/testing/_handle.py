"""``Engine``, the handle of a running reference engine, and ``serve_engine``.

``Engine`` puts together the server (``iii.testing._server``: listeners,
upgrade, authentication), the views and waits (``_views``) and the fault
injection (``_controls``).  Each ``start`` (and ``restart``) makes a fresh
``EngineCore`` with fresh worker modules on the same ports.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Optional

import anyio
import anyio.abc

from iii_protocol._json import JSONObject

from ._api import EngineWorker
from ._clock import Clock, ManualClock
from ._controls import Faults, ResultRule
from ._core import EngineCore
from ._options import EngineOptions, check_options
from ._rbac import RbacLike, as_rbac
from ._server import DEFAULT_PORT, MAX_FRAME_SIZE, MAX_MESSAGE_SIZE, Server
from ._transcript import DEFAULT_TRANSCRIPT_LIMIT, Transcript
from ._views import Waits
from ._workers.cron import Cron

__all__ = ["DEFAULT_PORT", "Engine", "serve_engine"]


class Engine(Faults, Waits):
    """A running reference engine: its URL, introspection and test controls.

    Get one from ``serve_engine`` (async) or ``EngineThread`` (sync).  All
    methods must be called from the engine's event loop (``EngineThread``
    wraps them for other threads).
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        rbac: Optional[RbacLike] = None,
        rbac_port: int = 0,
        transcript: bool = True,
        transcript_limit: Optional[int] = DEFAULT_TRANSCRIPT_LIMIT,
        max_message_size: int = MAX_MESSAGE_SIZE,
        max_frame_size: int = MAX_FRAME_SIZE,
        handshake_timeout: float = 10.0,
        options: Optional[EngineOptions] = None,
    ) -> None:
        self.host = host
        self.options = options or EngineOptions()
        self._transcript: Optional[Transcript] = (
            Transcript(transcript_limit) if transcript else None
        )
        self._server = Server(
            host=host,
            port=port,
            rbac=as_rbac(rbac),
            rbac_port=rbac_port,
            transcript=self._transcript,
            max_message_size=max_message_size,
            max_frame_size=max_frame_size,
            handshake_timeout=handshake_timeout,
            options=self.options,
        )
        self._rules: list[ResultRule] = []

    # -- addresses ---------------------------------------------------------------------

    @property
    def url(self) -> str:
        """``ws://host:port`` of the trusted listener."""
        return self._server.listeners[0].url

    @property
    def port(self) -> int:
        return self._server.listeners[0].port

    @property
    def rbac_url(self) -> Optional[str]:
        """``ws://host:port`` of the RBAC listener, when one is configured."""
        listeners = self._server.listeners
        return listeners[1].url if len(listeners) > 1 else None

    @property
    def urls(self) -> dict[str, str]:
        """Every listener's URL by name: ``main``, ``rbac`` and the worker modules' own."""
        out = {listener.name: listener.url for listener in self._server.listeners}
        out.update(self._server.urls)
        return out

    @property
    def http_url(self) -> str:
        """``http://host:port`` of the HTTP worker (``rest_api``), where the ``http``
        trigger routes are served.  ``RuntimeError`` when that module is off."""
        url = self._server.urls.get("http")
        if url is None or not self.options.enabled("rest_api"):
            raise RuntimeError("the HTTP worker module is off (rest_api=False)")
        return url

    @property
    def running(self) -> bool:
        return self._server.running

    @property
    def max_message_size(self) -> int:
        return self._server.max_message_size

    @property
    def max_frame_size(self) -> int:
        return self._server.max_frame_size

    @property
    def handshake_timeout(self) -> float:
        return self._server.handshake_timeout

    @property
    def generation(self) -> int:
        """How many runs this engine has started (``restart`` adds one)."""
        return self._server.generation

    def module(self, name: str) -> EngineWorker:
        """The worker module ``name`` of the current run (``KeyError`` when off)."""
        module = self.core.module(name)
        if module is None:
            raise KeyError(f"no worker module {name!r} runs in this engine")
        return module

    @property
    def clock(self) -> Clock:
        """The engine's clock (``SystemClock``, or the ``ManualClock`` a test moves)."""
        return self.options.clock

    def cron_jobs(self) -> list[JSONObject]:
        """The ``cron`` bindings' jobs: ``id``, ``function_id``, ``expression``,
        ``next_run`` (RFC 3339, set while the job sleeps until then), ``runs``..."""
        module = self.core.module("cron")
        return module.describe() if isinstance(module, Cron) else []

    def advance_clock(self, seconds: float) -> int:
        """Move the engine's ``ManualClock`` forward; returns how many sleepers woke."""
        clock = self.options.clock
        if not isinstance(clock, ManualClock):
            raise RuntimeError("advance_clock needs an engine started with clock=ManualClock()")
        return clock.advance(seconds)

    # -- start / stop ------------------------------------------------------------------

    async def start(self) -> None:
        """Open the listeners (on the same ports after a ``stop``) with fresh state."""
        if self._server.running:
            return
        if self._server.tg is None:
            raise RuntimeError("use serve_engine() to run an Engine")
        await self._server.open()
        await self._launch()

    async def _launch(self) -> None:
        core = EngineCore(self.options, transcript=self._transcript, sockets=self._server)
        self._install_rules(core)
        await self._server.launch(core)

    async def stop(self) -> None:
        """Close the listeners and drop every connection (like killing the engine)."""
        await self._server.stop()

    async def restart(self) -> None:
        """``stop`` then ``start`` on the same ports; all state is lost."""
        await self.stop()
        await self.start()


@asynccontextmanager
async def serve_engine(
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    rbac: Optional[RbacLike] = None,
    rbac_port: int = 0,
    transcript: bool = True,
    transcript_limit: Optional[int] = DEFAULT_TRANSCRIPT_LIMIT,
    namespace_grace: Optional[float] = None,
    queue: bool = True,
    max_message_size: int = MAX_MESSAGE_SIZE,
    max_frame_size: int = MAX_FRAME_SIZE,
    handshake_timeout: float = 10.0,
    **options: Any,
) -> AsyncIterator[Engine]:
    """Run a reference engine on the current event loop (asyncio or trio).

    ``port=0`` picks a free port (read ``engine.url``).  ``rbac`` (an
    ``RbacConfig`` or its JSON shape) adds an RBAC-gated listener on
    ``rbac_port`` (``engine.rbac_url``) next to the trusted one.
    ``namespace_grace`` is the registration grace period in seconds (default
    ``$III_NAMESPACE_GRACE_MS`` or 5).  The transcript (``transcript=False``:
    none) keeps the last ``transcript_limit`` entries (default 10 000;
    ``None``: all of them, memory growing with the traffic).  Remaining keyword
    arguments go to ``EngineOptions``: ``lenient_frames``, ``clock``,
    ``workers``, and the worker modules' switches and options (``queue``,
    ``queue_max_attempts``, ``http_functions``, ``channel_ttl``, ...).

    Every option is checked before anything starts: an unknown one is a
    ``TypeError``, a bad value a ``TypeError``/``ValueError``, naming it.
    """
    checked = check_options(
        dict(
            options,
            host=host,
            port=port,
            rbac=rbac,
            rbac_port=rbac_port,
            transcript=transcript,
            transcript_limit=transcript_limit,
            namespace_grace=namespace_grace,
            queue=queue,
            max_message_size=max_message_size,
            max_frame_size=max_frame_size,
            handshake_timeout=handshake_timeout,
        )
    )
    engine = Engine(
        host=checked.pop("host"),
        port=checked.pop("port"),
        rbac=checked.pop("rbac"),
        rbac_port=checked.pop("rbac_port"),
        transcript=checked.pop("transcript"),
        transcript_limit=checked.pop("transcript_limit"),
        max_message_size=checked.pop("max_message_size"),
        max_frame_size=checked.pop("max_frame_size"),
        handshake_timeout=checked.pop("handshake_timeout"),
        options=EngineOptions(**checked),
    )
    server = engine._server
    # Bind first, outside the task group: a busy port raises a plain OSError.
    await server.open()
    try:
        async with anyio.create_task_group() as tg:
            server.tg = tg
            await engine._launch()
            try:
                yield engine
            finally:
                with anyio.CancelScope(shield=True):
                    await engine.stop()
                tg.cancel_scope.cancel()
    finally:
        await server.close_sockets()
