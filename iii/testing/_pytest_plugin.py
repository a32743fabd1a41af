"""pytest plugin (entry point ``iii``): reference-engine fixtures.

Fixtures:

``iii_engine``
    A fresh engine per test on a background thread (``EngineThread``): works
    in sync tests and in tests that run their own loop (``anyio.run``,
    ``trio.run``, ``asyncio.run``).  Options come from the
    ``@pytest.mark.iii_engine(**serve_engine_kwargs)`` marker.

``iii_engine_factory``
    ``make(**serve_engine_kwargs) -> EngineThread``: several or custom engines,
    all stopped at teardown.

``iii_async_engine``
    The engine on the test's own event loop (an ``Engine``), for async tests
    run by anyio's pytest plugin (``@pytest.mark.anyio``; asyncio or trio via
    the ``anyio_backend`` fixture).

Every engine serves the ``http`` trigger routes on its own port
(``iii_engine.http_url``), and its schedules (``cron`` bindings, queue retries)
run on its clock: ``@pytest.mark.iii_engine(clock="manual")`` and
``iii_engine.advance_clock(seconds)`` fire them without waiting
(``iii_engine.cron_jobs()`` says when each job is due).

When a test that used an engine fails, the tail of the engine's transcript is
attached to the report.  Under pytest a worker that serves functions does not
keep the process up at exit (as a worker program does): a test that forgot
``shutdown()`` cannot hang the run.

This module is imported by every pytest run of a project that has the SDK
installed, so it imports nothing heavy and starts nothing until a fixture is
requested.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Generator, Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from ._handle import Engine
    from ._thread import EngineThread

__all__ = ["iii_async_engine", "iii_engine", "iii_engine_factory"]

_TRANSCRIPT_TAIL = 200
_ENGINES = pytest.StashKey[list[Any]]()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "iii_engine(**options): serve_engine() keyword arguments for the iii_engine fixtures",
    )
    # A worker a test forgot to shut down must not keep the run alive at exit.
    from iii import _lifecycle

    _lifecycle.release_all()


def _marker_options(request: pytest.FixtureRequest) -> dict[str, Any]:
    marker = request.node.get_closest_marker("iii_engine")
    if marker is None:
        return {}
    if marker.args:
        raise pytest.UsageError("@pytest.mark.iii_engine takes keyword arguments only")
    from ._options import check_options

    try:
        check_options(marker.kwargs)
    except (TypeError, ValueError) as exc:
        raise type(exc)(f"@pytest.mark.iii_engine: {exc}") from None
    return dict(marker.kwargs)


def _remember(request: pytest.FixtureRequest, engine: Any) -> None:
    request.node.stash.setdefault(_ENGINES, []).append(engine)


@pytest.fixture
def iii_engine(request: pytest.FixtureRequest) -> Iterator[EngineThread]:
    """A reference engine on a daemon thread; ``.url`` and the test controls."""
    from ._thread import EngineThread

    engine = EngineThread(**_marker_options(request)).start()
    _remember(request, engine)
    try:
        yield engine
    finally:
        engine.stop()


@pytest.fixture
def iii_engine_factory(
    request: pytest.FixtureRequest,
) -> Iterator[Callable[..., EngineThread]]:
    """Start engines with custom options: ``make(**serve_engine_kwargs)``."""
    from ._thread import EngineThread

    engines: list[EngineThread] = []

    def make(**options: Any) -> EngineThread:
        engine = EngineThread(**options).start()
        engines.append(engine)
        _remember(request, engine)
        return engine

    try:
        yield make
    finally:
        for engine in engines:
            engine.stop()


@pytest.fixture
async def iii_async_engine(
    request: pytest.FixtureRequest, anyio_backend: Any
) -> AsyncIterator[Engine]:
    """A reference engine on the test's own event loop (anyio-run tests)."""
    from ._handle import serve_engine

    async with serve_engine(**_marker_options(request)) as engine:
        _remember(request, engine)
        yield engine


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.failed and report.when == "call":
        engines: list[Any] = item.stash.get(_ENGINES, [])
        for index, engine in enumerate(engines):
            try:
                lines = engine.transcript_jsonl().splitlines()
            except Exception:  # the engine may be stopped or transcript-less
                continue
            tail = lines[-_TRANSCRIPT_TAIL:]
            header = f"iii engine {index} transcript (last {len(tail)} of {len(lines)} entries)"
            report.sections.append((header, "\n".join(tail)))
    return report
