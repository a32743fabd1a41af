"""An ``async def`` handler on asyncio starts at once, inside the read that
brought its invocation, and gets a task only if it suspends; it must not be
able to tell: from its first line it runs as its own task, in its own
context, under the handler limit, as on every placement of the worker."""

from __future__ import annotations

import asyncio
import contextvars
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import attrs
import pytest

import iii

from .test_sync_api import FAST

#: private: ``register_worker`` made outside any loop (handlers on its private
#: loop thread); bound: made inside the app's loop; native: ``register_worker_async``.
PLACEMENTS = ["private", "bound", "native"]

USER_VAR: contextvars.ContextVar[str] = contextvars.ContextVar("user_var", default="unset")


def opts(**kw: Any) -> iii.InitOptions:
    return attrs.evolve(FAST, **kw)


@asynccontextmanager
async def worker_in(placement: str, url: str, **kw: Any) -> AsyncIterator[iii.III]:
    options = opts(worker_name=f"tasks-{placement}", **kw)
    if placement == "native":
        async with iii.register_worker_async(url, options) as worker:
            yield worker
    elif placement == "bound":
        worker = iii.register_worker(url, options)
        try:
            yield worker
        finally:
            await worker.shutdown_async()
    else:
        worker = await asyncio.to_thread(iii.register_worker, url, options)
        try:
            yield worker
        finally:
            await asyncio.to_thread(worker.shutdown)


def call(worker: iii.III, function_id: str, payload: Any = None) -> Any:
    return worker.trigger_async({"function_id": function_id, "payload": payload})


@pytest.mark.parametrize("placement", PLACEMENTS)
def test_a_handler_is_its_own_task_from_its_first_line(iii_engine, placement):
    async def same_task(data: Any) -> dict[str, Any]:
        first = asyncio.current_task()
        await asyncio.sleep(0)
        return {"task": first is not None, "same": first is asyncio.current_task()}

    async def never_suspends(data: Any) -> bool:
        return asyncio.current_task() is not None

    async def timeout_first(data: Any) -> str:
        # Bound to the current task at entry: the dispatcher's task here would be
        # cancelled by it, and no task at all is an error.
        if sys.version_info >= (3, 11):
            async with asyncio.timeout(30):
                await asyncio.sleep(0)
        else:
            await asyncio.wait_for(asyncio.sleep(0), 30)
        return "ok"

    async def anyio_scope_first(data: Any) -> str:
        # anyio ties a cancel scope to the task that enters it and refuses to
        # leave it from another one.
        with anyio.fail_after(30):
            await anyio.sleep(0)
            async with anyio.create_task_group() as tg:
                tg.start_soon(anyio.sleep, 0)
        return "ok"

    async def main() -> None:
        async with worker_in(placement, iii_engine.url) as worker:
            for name, fn in [
                ("t::same", same_task),
                ("t::never", never_suspends),
                ("t::timeout", timeout_first),
                ("t::anyio", anyio_scope_first),
            ]:
                worker.register_function(name, fn)
            outer = asyncio.current_task()
            results = await asyncio.gather(
                *(call(worker, "t::same") for _ in range(8)),
                *(call(worker, "t::never") for _ in range(8)),
                call(worker, "t::timeout"),
                call(worker, "t::anyio"),
            )
            assert results[:8] == [{"task": True, "same": True}] * 8
            assert results[8:16] == [True] * 8
            assert results[16:] == ["ok", "ok"]
            assert asyncio.current_task() is outer

    asyncio.run(main())


@pytest.mark.parametrize("placement", PLACEMENTS)
def test_contextvars_set_by_a_handler_stay_in_its_invocation(iii_engine, placement):
    async def sets(data: int) -> dict[str, Any]:
        before = USER_VAR.get()
        USER_VAR.set(f"set by {data}")
        inv = iii.current_invocation()
        assert inv is not None
        if data % 2:
            await asyncio.sleep(0)
        after = iii.current_invocation()
        return {
            "before": before,
            "mine": USER_VAR.get() == f"set by {data}",
            "same_invocation": after is not None and after.invocation_id == inv.invocation_id,
        }

    async def main() -> None:
        async with worker_in(placement, iii_engine.url) as worker:
            worker.register_function("t::vars", sets)
            results = await asyncio.gather(*(call(worker, "t::vars", i) for i in range(64)))
            assert results == [{"before": "unset", "mine": True, "same_invocation": True}] * 64
            # Nothing leaked into the app's task either.
            assert USER_VAR.get() == "unset"
            assert iii.current_invocation() is None

    asyncio.run(main())


@pytest.mark.parametrize("placement", PLACEMENTS)
def test_the_handler_limit_counts_handlers_that_finish_at_once(iii_engine, placement):
    running = 0
    most = 0
    release: list[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = []

    async def at_once(data: Any) -> str:
        nonlocal running, most
        running += 1
        most = max(most, running)
        running -= 1
        return "at once"

    async def blocks(data: Any) -> str:
        nonlocal running, most
        running += 1
        most = max(most, running)
        event = asyncio.Event()
        release.append((asyncio.get_running_loop(), event))
        try:
            await event.wait()
        finally:
            running -= 1
        return "released"

    async def main() -> None:
        async with worker_in(placement, iii_engine.url, max_concurrent_handlers=2) as worker:
            worker.register_function("t::block", blocks)
            worker.register_function("t::now", at_once)
            blocked = [asyncio.ensure_future(call(worker, "t::block")) for _ in range(2)]
            queued = [asyncio.ensure_future(call(worker, "t::now")) for _ in range(5)]
            while len(release) < 2:
                await asyncio.sleep(0.01)
            # Both slots are taken: the quick ones wait for a free one.
            await asyncio.sleep(0.1)
            assert not any(q.done() for q in queued)
            for loop, event in release:  # the private loop is another thread's
                loop.call_soon_threadsafe(event.set)
            assert await asyncio.gather(*blocked) == ["released"] * 2
            assert await asyncio.gather(*queued) == ["at once"] * 5
            assert most == 2

    asyncio.run(main())


@pytest.mark.parametrize("factory", [False, True], ids=["eager", "task-factory"])
def test_a_handler_never_starts_in_the_context_of_whoever_dispatched_it(factory):
    """A read may be dispatched from another handler's context (its answer asked
    for the flush that read the next invocation): the new handler must start
    from the worker's context, not inherit that one's variables."""
    from iii._loops import AsyncioHost

    seen: list[str] = []

    class Probe:
        is_async = True
        name = "probe"

        async def run_async(self) -> None:
            seen.append(USER_VAR.get())
            USER_VAR.set("probe's")
            await asyncio.sleep(0)
            seen.append(USER_VAR.get())

        def run(self) -> None:
            raise AssertionError("async only")

        def abandon(self, why: str) -> None:
            raise AssertionError(why)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        if factory:
            loop.set_task_factory(lambda loop, coro, **kw: asyncio.Task(coro, loop=loop, **kw))
        host = AsyncioHost(loop, 8, flush=lambda h: None, on_gone=lambda h, jobs: None)

        async def another_handler() -> None:
            USER_VAR.set("another handler's")
            host.submit(Probe())
            await asyncio.sleep(0)
            host.submit(Probe())

        await asyncio.create_task(another_handler())
        while len(seen) < 4:
            await asyncio.sleep(0)
        assert USER_VAR.get() == "unset"

    asyncio.run(main())
    assert sorted(seen) == ["probe's", "probe's", "unset", "unset"]
