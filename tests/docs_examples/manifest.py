"""How each Python example of the official docs runs (``snippets/``, copied by ``extract.py``).

Every example runs in its own process (``runner.py``) with ``III_URL`` set, against a fresh
engine started as ``python -m iii.testing``, or, where the test must move the engine's clock or
watch frames as they pass, an engine in the test's process (``engine_in_test`` says why). The
example's code is not changed. What a fragment assumes (a connected ``worker``, a handler the
page defined in an earlier block, a function to call) comes from its ``prelude``; its
``epilogue`` reports what it left behind. ``test_docs.py`` then exercises what it registered,
from outside: calls, HTTP requests, the engine's clock, the engine's transcript of frames.

``program``: a whole script, run as it is. ``fragment``: not a whole program; the prelude
gives it the names it uses.

Names a prelude or an epilogue can use (``runner.py``): ``connect(name)`` (a worker of ours),
``docs(name)`` (run another example, unchanged, in the same namespace), ``report(**values)``
(values for the test), ``wait_until(predicate)``, ``alongside(coroutine_function)`` (run
next to an async block), ``child(code)`` (a helper process).
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import attrs

SNIPPETS = Path(__file__).resolve().parent / "snippets"


def code(text: str) -> str:
    return textwrap.dedent(text).lstrip("\n")


WORKER = code("""
    worker = connect("docs-worker")
""")

#: the handler of the page's first block (creating-workers/functions, using-iii/functions)
ADD_HANDLER = code("""
    def add_handler(payload: dict) -> dict:
        return {"c": payload["a"] + payload["b"]}
""")

#: a ``math::add`` for the ``http`` trigger: the request's JSON body in, a response out
HTTP_ADD = code("""
    worker.register_function(
        "math::add",
        lambda req: {"status_code": 200, "body": {"c": req["body"]["a"] + req["body"]["b"]}},
    )
""")


@attrs.frozen
class Example:
    #: ``snippets/<name>.py``
    name: str
    #: ``program`` or ``fragment``
    kind: str
    #: what the test does with it, in a few words
    exercised: str
    #: engine options (``serve_engine`` keywords, given to ``python -m iii.testing`` as flags)
    engine: dict[str, Any] = attrs.field(factory=dict)
    #: environment of the engine process
    engine_env: dict[str, str] = attrs.field(factory=dict)
    #: why the engine runs in the test's process (``EngineThread``), if it does
    engine_in_test: str = ""
    #: the engine's ``ManualClock`` starts here (seconds since the epoch), if given
    clock_start: float | None = None
    prelude: str = ""
    epilogue: str = ""
    #: the block is the body of a function (it has a bare ``return``)
    as_function_body: bool = False
    #: why the block stops with an error on the real engine too (a docs error); the runner
    #: then reports that error instead of failing
    fails_on_the_real_engine: str = ""


EXAMPLES: dict[str, Example] = {
    e.name: e
    for e in [
        Example(
            "quickstart_1",
            "fragment",
            "math::add called twice: the running total in state (5, then 35), state::get reads it",
            # The quickstart template's math worker around the handler the page has you edit.
            prelude=code("""
                import iii_observability
                worker = connect("math-worker")
                logger = iii_observability.Logger()
            """),
            epilogue=code("""
                worker.register_function("math::add", add_handler)
            """),
        ),
        Example(
            "creating_workers_channels_1",
            "fragment",
            "iii_client.create_channel(): both ends and both refs, one channel",
            prelude=code("""
                iii_client = connect("docs-worker")
            """),
            epilogue=code("""
                report(
                    writer=type(channel.writer).__name__,
                    reader=type(channel.reader).__name__,
                    writer_ref=channel.writer_ref.model_dump(),
                    reader_ref=channel.reader_ref.model_dump(),
                )
            """),
        ),
        Example(
            "creating_workers_channels_2",
            "fragment",
            "written and closed with the async API; the reader end then reads the bytes",
            prelude=code("""
                iii_client = connect("docs-worker")
            """),
            epilogue=code("""
                report(read=channel.reader.read_all_sync().decode())
            """),
        ),
        Example(
            "creating_workers_channels_3",
            "fragment",
            "reads until the writer closes, while the prelude writes three chunks",
            prelude=code("""
                import asyncio
                iii_client = connect("docs-worker")

                async def feed():
                    while "channel" not in globals():
                        await asyncio.sleep(0.01)
                    for chunk in (b"one ", b"two ", b"three"):
                        await channel.writer.write(chunk)
                    await channel.writer.close_async()

                alongside(feed)
            """),
            epilogue=code("""
                report(bytes_total=bytes_total)
            """),
        ),
        Example(
            "creating_workers_channels_4",
            "fragment",
            "a reader ref to files::process (block 5 of the page, on another worker)",
            prelude=code("""
                worker = connect("files-worker")
                docs("creating_workers_channels_5")
                iii_client = connect("docs-worker")
                channel = iii_client.create_channel()

                async def feed():
                    await channel.writer.write(b"id,total\\n1,9.50\\n")
                    await channel.writer.close_async()

                alongside(feed)
            """),
            epilogue=code("""
                report(result=result)
            """),
        ),
        Example(
            "creating_workers_channels_5",
            "fragment",
            "the test writes three chunks and calls files::process with the reader ref",
            prelude=WORKER,
        ),
        Example(
            "creating_workers_channels_6",
            "fragment",
            "the test calls files::generate with a writer ref and reads 'hello world'",
            prelude=WORKER,
        ),
        Example(
            "creating_workers_functions_1",
            "program",
            "math::add called; math-worker listed",
        ),
        Example(
            "creating_workers_functions_2",
            "fragment",
            "math::add called; its request and response schemas listed",
            prelude=ADD_HANDLER,
        ),
        Example(
            "creating_workers_functions_3",
            "program",
            "registered and listed with its description; not invoked (an external webhook)",
            engine_env={"PROVIDER_API_TOKEN": "docs-example-token"},
        ),
        Example(
            "creating_workers_functions_4",
            "fragment",
            "registered, then unregistered (the frames); a call then fails",
            prelude=WORKER + ADD_HANDLER,
        ),
        Example(
            "creating_workers_triggers_1",
            "fragment",
            "POST /math/add answers {'c': 5}",
            prelude=WORKER + HTTP_ADD,
        ),
        Example(
            "creating_workers_triggers_2",
            "fragment",
            "POST /math/add answers; engine::triggers::list shows the metadata",
            prelude=WORKER + HTTP_ADD,
        ),
        Example(
            "creating_workers_triggers_3",
            "program",
            "mini-http listed; a binding of the test's reaches the handler, which accepts it",
            engine_in_test="the test waits for the handler's answer to its binding",
        ),
        Example(
            "creating_workers_triggers_4",
            "fragment",
            "after block 3's mini-http: the frame is sent; the engine ignores it, as 0.19 does",
            prelude=code("""
                docs("creating_workers_triggers_3")
            """),
        ),
        Example(
            "creating_workers_triggers_5",
            "fragment",
            "after block 3's mini-http and another worker's binding: the bound function runs",
            prelude=code("""
                docs("creating_workers_triggers_3")
                import queue
                consumer = connect("orders-worker")
                received = queue.Queue()
                consumer.register_function("orders::create", received.put)
                consumer.register_trigger({
                    "type": "mini-http",
                    "function_id": "orders::create",
                    "config": {"api_path": "/orders", "http_method": "POST"},
                })
                matched_trigger_id = wait_until(lambda: next(iter(bindings), None))
                method, headers, body = "POST", {"content-type": "application/json"}, {"qty": 2}
            """),
            epilogue=code("""
                report(
                    received=received.get(timeout=30),
                    config=bindings[matched_trigger_id].config,
                )
            """),
        ),
        Example(
            "creating_workers_workers_1",
            "program",
            "my-worker listed with its description",
        ),
        Example(
            "creating_workers_workers_2",
            "fragment",
            "three lists read; the fourth call fails with function_not_found, as on the engine",
            fails_on_the_real_engine="the 0.19 engine has no engine::trigger-types::list "
            "(engine::triggers::list lists the trigger types, "
            "engine::registered-triggers::list the bindings)",
            prelude=WORKER,
            epilogue=code("""
                report(
                    workers=sorted(w["name"] for w in workers),
                    functions=sorted(f["function_id"] for f in functions),
                    triggers=sorted(t["id"] for t in triggers),
                    trigger_types_read="trigger_types" in globals(),
                )
            """),
        ),
        Example(
            "creating_workers_workers_3",
            "fragment",
            "math::add's worker dies mid-call; the block catches invocation_stopped",
            as_function_body=True,
            prelude=WORKER
            + code("""
                child('''
                import os, threading, iii
                dies = iii.register_worker(os.environ["III_URL"],
                                           iii.InitOptions(worker_name="dies-mid-call"))
                dies.register_function("math::add", lambda data: os._exit(1))
                threading.Event().wait()
                ''')
                wait_until(lambda: any(f.function_id == "math::add"
                                       for f in worker.list_functions()))
            """),
        ),
        Example(
            "creating_workers_workers_4",
            "fragment",
            "a worker connects and registers a function: both handlers are called",
            engine={"functions_poll_interval": 0.2},
            engine_in_test="the test waits for the two handlers' calls as they happen",
            prelude=WORKER,
        ),
        Example(
            "creating_workers_workers_5",
            "fragment",
            "SIGTERM: the handler shuts the worker down, exit status 0, the worker is gone",
            prelude=WORKER,
        ),
        Example(
            "using_iii_functions_1",
            "program",
            "math::add called; math-worker listed",
        ),
        Example(
            "using_iii_functions_2",
            "fragment",
            "its result is {'c': 5} (math::add from block 1 of the page)",
            prelude=WORKER + ADD_HANDLER + 'worker.register_function("math::add", add_handler)\n',
            epilogue=code("""
                report(result=result)
            """),
        ),
        Example(
            "using_iii_triggers_1",
            "program",
            "the test serves math::add; POST /math/add answers {'c': 5}",
        ),
        Example(
            "using_iii_triggers_2",
            "fragment",
            "POST /reports/generate answers; the cron schedule fires on the engine's clock",
            engine_in_test="the test moves the engine's clock to the schedule's next time",
            clock_start=1767268800.0,  # 2026-01-01T12:00:00Z, a Thursday
            prelude=WORKER
            + code("""
                worker.register_function(
                    "reports::generate",
                    lambda data: {"status_code": 202, "body": {"queued": True}},
                )
            """),
        ),
        Example(
            "using_iii_triggers_3",
            "fragment",
            "the condition gets the HTTP request, so the block's test refuses it (422)",
            prelude=WORKER
            + code("""
                worker.register_function(
                    "orders::expedite", lambda req: {"status_code": 200, "body": {"ok": True}}
                )
            """),
        ),
        Example(
            "using_iii_triggers_4",
            "fragment",
            "bound, then unbound (the frames); POST /math/add is a 404",
            prelude=WORKER + HTTP_ADD,
        ),
    ]
}
