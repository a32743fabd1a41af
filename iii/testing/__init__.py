"""An in-process reference iii engine for tests and local development.

It speaks the whole worker protocol of docs/protocol.md over real
WebSockets on 127.0.0.1, so any SDK -- this one or an official one -- can
connect to it.  Three ways to run it::

    # async (asyncio or trio, via anyio)
    async with serve_engine() as engine:
        ...engine.url...

    # sync: its own event loop on a daemon thread
    with EngineThread() as engine:
        ...engine.url...

    # a process
    $ python -m iii.testing --port 49134

and pytest fixtures (``iii_engine``, ``iii_engine_factory``, ``iii_async_engine``;
see ``iii.testing._pytest_plugin``).

Besides ``url`` an engine offers introspection (``workers()``, ``functions()``,
``bindings()``, ``pending_invocations()``...), waits (``wait_for_worker``,
``wait_for_function``, ``wait_for_frame``, ``wait_for``), the transcript
(``transcript()``, ``frames()``, ``transcript_jsonl()``: the last
``transcript_limit`` entries, 10 000 by default, ``None`` for all) and fault
injection (``drop``, ``drop_all``, ``stop``/``start``/``restart``, ``delay_results``,
``withhold_results``, ``send_raw``/``send_text``/``send_frame``/``send_ping``).

The engine is a core (connections, registry, routing) plus worker modules: the
``engine::*`` functions, channels, HTTP-invoked functions, the standard workers
(the queue: ``queue_configs``, ``queue_stats()``, ``dead_letters()``; pubsub:
``pubsub_stats()``) and the RBAC gate, each an ``EngineWorker`` built on the ``EngineHost``
interface (``iii.testing._api``).  Modules with a switch can be turned off
(``queue=False``, ``--no-queue``); more can be added (``workers=[...]``).  Their
schedules run on the engine's ``clock`` (``ManualClock`` lets a test advance it).

Names are imported lazily: ``import iii.testing`` is cheap (the pytest plugin
imports this package in every test run of the repository).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .._lazy import load as _load

if TYPE_CHECKING:
    from ._api import EngineHost, EngineWorker
    from ._clock import Clock, ManualClock, SystemClock
    from ._controls import ResultRule
    from ._core import EngineCore
    from ._handle import Engine, serve_engine
    from ._options import EngineOptions
    from ._rbac import ExposeRule, RbacConfig
    from ._server import DEFAULT_PORT
    from ._thread import EngineThread
    from ._transcript import DEFAULT_TRANSCRIPT_LIMIT

__all__ = [
    "DEFAULT_PORT",
    "DEFAULT_TRANSCRIPT_LIMIT",
    "Clock",
    "Engine",
    "EngineCore",
    "EngineHost",
    "EngineOptions",
    "EngineThread",
    "EngineWorker",
    "ExposeRule",
    "ManualClock",
    "RbacConfig",
    "ResultRule",
    "SystemClock",
    "serve_engine",
]

_WHERE = {
    "DEFAULT_PORT": "._server",
    "DEFAULT_TRANSCRIPT_LIMIT": "._transcript",
    "Clock": "._clock",
    "Engine": "._handle",
    "EngineCore": "._core",
    "EngineHost": "._api",
    "EngineOptions": "._options",
    "EngineThread": "._thread",
    "EngineWorker": "._api",
    "ExposeRule": "._rbac",
    "ManualClock": "._clock",
    "RbacConfig": "._rbac",
    "ResultRule": "._controls",
    "SystemClock": "._clock",
    "serve_engine": "._handle",
}


def __getattr__(name: str) -> Any:
    return _load(globals(), _WHERE, name)


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
