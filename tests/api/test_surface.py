"""The documented surface (API-SURFACE) exists, resolves, and its twins agree."""

from __future__ import annotations

import inspect
import json
import logging
import subprocess
import sys
import typing

import pytest

import iii
import iii.iii_constants
import iii.iii_types
import iii_protocol
from iii_observability import Logger


def test_every_exported_name_resolves():
    for name in iii.__all__:
        assert getattr(iii, name) is not None, name
    assert sorted(iii.__all__) == sorted(set(iii.__all__))
    for name in iii_protocol.__all__:
        assert hasattr(iii_protocol, name), name


def test_documented_names():
    for name in (
        "register_worker",
        "III",
        "TriggerAction",
        "TriggerActionVoid",
        "TriggerActionEnqueue",
        "IIIInvocationError",
        "ChannelReader",
        "ChannelWriter",
        "StreamChannelRef",
        "FunctionInfo",
        "TriggerInfo",
        "RegisterFunctionFormat",
        "MessageType",
        "EnqueueResult",
        "InitOptions",
        "HttpInvocationConfig",
    ):
        assert name in iii.__all__, name
    assert hasattr(iii.iii_types, "WorkerInfo")
    assert "WorkerInfo" not in iii.__all__  # documented as not re-exported
    assert typing.get_args(iii.iii_constants.IIIConnectionState) == (
        "disconnected",
        "connecting",
        "connected",
        "reconnecting",
        "failed",
    )
    assert iii.iii_constants.RegisterFunctionFormat is iii.RegisterFunctionFormat
    assert {m.value for m in iii.MessageType} >= {
        "registerfunction",
        "invokefunction",
        "invocationresult",
        "registertrigger",
        "workerregistered",
        "registrationrejected",
        "reattach",
    }


def test_trigger_action_factory():
    assert iii.TriggerAction.Void() == iii.TriggerActionVoid()
    enqueue = iii.TriggerAction.Enqueue(queue="math")
    assert enqueue == iii.TriggerActionEnqueue(queue="math")
    with pytest.raises(TypeError):
        iii.TriggerAction.Enqueue("math")  # type: ignore[call-arg]  # keyword-only


def test_invocation_error_attributes():
    err = iii.IIIInvocationError("TIMEOUT", "too slow", function_id="f", stacktrace="st")
    assert (err.code, err.message, err.function_id, err.stacktrace) == (
        "TIMEOUT",
        "too slow",
        "f",
        "st",
    )
    assert str(err) == "TIMEOUT: too slow"
    assert isinstance(err, iii.IIIError)


def test_documented_signatures():
    sig = inspect.signature(iii.register_worker)
    assert list(sig.parameters) == ["address", "options"]
    rf = inspect.signature(iii.III.register_function)
    assert list(rf.parameters) == [
        "self",
        "function_id",
        "handler_or_invocation",
        "description",
        "metadata",
        "request_format",
        "response_format",
        "observe",
        "local_dispatch",
    ]
    for kw in (
        "description",
        "metadata",
        "request_format",
        "response_format",
        "observe",
        "local_dispatch",
    ):
        assert rf.parameters[kw].kind is inspect.Parameter.KEYWORD_ONLY


@pytest.mark.parametrize(
    "sync_name", ["trigger", "shutdown", "list_functions", "list_workers", "list_triggers"]
)
def test_sync_and_async_twins_agree(sync_name):
    sync = inspect.signature(getattr(iii.III, sync_name))
    twin = getattr(iii.III, f"{sync_name}_async")
    assert inspect.iscoroutinefunction(twin)
    assert list(inspect.signature(twin).parameters) == list(sync.parameters)


def test_logger_levels_and_data(caplog):
    log = Logger(name="iii.test")
    with caplog.at_level(logging.DEBUG, logger="iii.test"):
        log.info("charged", {"order": 42})
        log.warn("low stock")
        log.error("failed", {"code": 7})
        log.debug("details")
    levels = [r.levelname for r in caplog.records]
    assert levels == ["INFO", "WARNING", "ERROR", "DEBUG"]
    assert caplog.records[0].iii_data == {"order": 42}
    assert "charged" in caplog.records[0].getMessage()
    assert caplog.records[0].funcName == "test_logger_levels_and_data"


def test_import_iii_is_light():
    code = (
        "import sys, iii\n"
        "heavy = [m for m in ('opentelemetry', 'pydantic', 'asyncio', 'anyio', 'cattrs', "
        "'wsproto') if m in sys.modules]\n"
        "print(heavy)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert out == "[]"
    code = (
        "import sys\nfrom iii import register_worker\n"
        "print([m for m in ('opentelemetry', 'pydantic') if m in sys.modules])"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert out == "[]"


def test_the_thread_path_loads_no_event_loop_library(iii_engine):
    """``register_worker`` with no loop running: importing it loads no event
    loop library (nor ssl, nor wsproto before a connection), and serving sync
    and async handlers loads neither anyio nor trio (async handlers run on a
    private asyncio loop)."""
    code = f"""
import json, sys
from iii import register_worker, InitOptions
light = ("asyncio", "anyio", "trio", "ssl", "wsproto", "iii.channels", "iii_transports.anyio")
at_import = [m for m in light if m in sys.modules]
watched = ("asyncio", "anyio", "trio", "iii.channels", "iii_transports.anyio")
with register_worker({iii_engine.url!r}, InitOptions(worker_name="thread-path")) as worker:
    worker.register_function("thread-path::sync", lambda data: data + 1)
    async def plus_two(data):
        return data + 2
    worker.register_function("thread-path::async", plus_two)
    results = [
        worker.trigger({{"function_id": "thread-path::sync", "payload": 1}}),
        worker.trigger({{"function_id": "thread-path::async", "payload": 1}}),
    ]
    serving = [m for m in watched if m in sys.modules]
print(json.dumps({{"at_import": at_import, "serving": serving, "results": results}}))
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    seen = json.loads(proc.stdout.strip().splitlines()[-1])
    assert seen["results"] == [2, 3]
    assert seen["at_import"] == []
    assert seen["serving"] == ["asyncio"]
