"""The Python examples of the official docs (iii-hq/iii ``docs/0-19-0``) run on this SDK.

Each example (``snippets/``, unchanged) runs in its own process against a fresh engine, as
``manifest.py`` says; then the check below exercises what it registered.
"""

from __future__ import annotations

import hashlib
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

import iii
from iii.testing import EngineThread, ManualClock
from iii_protocol import JSON, JSONObject

from .extract import MARKER
from .manifest import EXAMPLES, SNIPPETS, Example
from .runner import READY

ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT = 60.0


class Engine:
    """``python -m iii.testing`` as a child process, on free ports, keeping its transcript."""

    def __init__(self, example: Example, tmp: Path) -> None:
        self.transcript_path = tmp / "transcript.jsonl"
        self.stderr_path = tmp / "engine.stderr"
        flags = ["--port", "0", "--http-port", "0", "--transcript-limit", "none"]
        flags += ["--log-level", "WARNING"]
        for key, value in example.engine.items():
            flags += ["--" + key.replace("_", "-"), str(value)]
        with self.stderr_path.open("w") as stderr:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "iii.testing",
                    *flags,
                    "--transcript",
                    str(self.transcript_path),
                ],
                cwd=ROOT,
                env={**os.environ, **example.engine_env},
                stdout=subprocess.PIPE,
                stderr=stderr,
                text=True,
            )
        assert self.proc.stdout is not None
        urls = {}
        while "main" not in urls or "http" not in urls:  # the CLI prints its URLs at once
            line = self.proc.stdout.readline().strip()
            assert line, f"the engine exited: {self.stderr_path.read_text()}"
            name, _, url = line.rpartition(": ")
            urls[name or "main"] = url
        self.url, self.http_url = urls["main"], urls["http"]
        self._frames: list[dict[str, Any]] | None = None

    def frames(self) -> list[dict[str, Any]]:
        """Every frame of the run (stops the engine, which then writes its transcript)."""
        if self._frames is None:
            self.stop()
            lines = self.transcript_path.read_text().splitlines()
            self._frames = [
                e["frame"] | {"dir": e["dir"]}
                for e in map(json.loads, lines)
                if isinstance(e.get("frame"), dict)
            ]
        return self._frames

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            self.proc.communicate(timeout=START_TIMEOUT)
            assert self.proc.returncode == 0, self.stderr_path.read_text()


class InTest:
    """The engine in this process (``EngineThread``), for clocks and frames seen live."""

    def __init__(self, example: Example) -> None:
        options: dict[str, Any] = dict(example.engine)
        if example.clock_start is not None:
            options["clock"] = ManualClock(start=example.clock_start)
        self.thread = EngineThread(**options).start()
        self.url, self.http_url = self.thread.url, self.thread.http_url

    def frames(self) -> list[dict[str, Any]]:
        return [f | {"dir": f.get("dir", "")} for f in self.thread.frames()]

    def stop(self) -> None:
        self.thread.stop()


class Run:
    """One example running: its engine, its process, what it reported; the checks' tools."""

    def __init__(self, example: Example, tmp: Path) -> None:
        self.example = example
        self.engine: Engine | InTest = (
            InTest(example) if example.engine_in_test else Engine(example, tmp)
        )
        self.stderr_path = tmp / "runner.stderr"
        self._stderr = self.stderr_path.open("w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.docs_examples.runner", example.name],
            cwd=ROOT,
            env={**os.environ, "III_URL": self.engine.url},
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
        )
        self.stdout: list[str] = []
        lines: queue.Queue[str | None] = queue.Queue()
        self._pump_thread = threading.Thread(target=self._pump, args=(lines,), daemon=True)
        self._pump_thread.start()
        self.reports: dict[str, Any] = {}
        while True:
            try:
                line = lines.get(timeout=START_TIMEOUT)
            except queue.Empty:
                pytest.fail(f"{example.name} never got ready:\n{self.stderr()}")
            if line is None:
                pytest.fail(f"{example.name} exited ({self.proc.wait()}):\n{self.stderr()}")
            if line.startswith(READY):
                self.reports = json.loads(line[len(READY) :])
                break
        self._worker: iii.III | None = None

    def _pump(self, lines: queue.Queue[str | None]) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.stdout.append(line)
            lines.put(line)
        lines.put(None)

    def stderr(self) -> str:
        self._stderr.flush()
        return self.stderr_path.read_text()

    @property
    def worker(self) -> iii.III:
        """The test's own worker (connected on first use)."""
        if self._worker is None:
            self._worker = iii.register_worker(
                self.engine.url, iii.InitOptions(worker_name="docs-test")
            )
        return self._worker

    def call(self, function_id: str, payload: Any = None) -> Any:
        return self.worker.trigger({"function_id": function_id, "payload": payload})

    def http(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        request = urllib.request.Request(
            self.engine.http_url + path,
            method=method,
            data=None if body is None else json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=START_TIMEOUT) as response:
                return response.status, json.loads(response.read() or b"null")
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"null")

    def frames(self, type: str, **match: Any) -> list[dict[str, Any]]:
        return [
            f
            for f in self.engine.frames()
            if f.get("type") == type and all(f.get(k) == v for k, v in match.items())
        ]

    def finish(self) -> int:
        """Close the example's stdin (it shuts down and exits); its exit status."""
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
        return self.proc.wait(timeout=START_TIMEOUT)

    def close(self) -> None:
        if self._worker is not None:
            self._worker.shutdown()
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._pump_thread.join()
        for pipe in (self.proc.stdin, self.proc.stdout):
            if pipe is not None:
                pipe.close()
        self.engine.stop()
        self._stderr.close()


def wait_until(predicate: Callable[[], Any], timeout: float = START_TIMEOUT) -> Any:
    """Poll until truthy (a hang guard, not a timing assertion)."""
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        assert time.monotonic() < deadline, f"never true: {predicate}"
        time.sleep(0.02)
    return value


def function(run: Run, function_id: str) -> Any:
    return next((f for f in run.worker.list_functions() if f.function_id == function_id), None)


def worker_named(run: Run, name: str) -> Any:
    return next((w for w in run.worker.list_workers() if w.name == name), None)


# -- the checks, one per example ----------------------------------------------------------------


def check_quickstart_1(run: Run) -> None:
    assert run.call("math::add", {"a": 2, "b": 3}) == {"c": 5, "running_total": 5}
    assert run.call("math::add", {"a": 10, "b": 20}) == {"c": 30, "running_total": 35}
    assert run.call("state::get", {"scope": "math", "key": "running_total"}) == 35


def check_creating_workers_channels_1(run: Run) -> None:
    r = run.reports
    assert (r["writer"], r["reader"]) == ("ChannelWriter", "ChannelReader")
    assert (r["writer_ref"]["direction"], r["reader_ref"]["direction"]) == ("write", "read")
    assert r["writer_ref"]["channel_id"] == r["reader_ref"]["channel_id"]


def check_creating_workers_channels_2(run: Run) -> None:
    assert run.reports == {"read": "file contents"}


def check_creating_workers_channels_3(run: Run) -> None:
    assert run.reports == {"bytes_total": len(b"one two three")}


def check_creating_workers_channels_4(run: Run) -> None:
    assert run.reports == {"result": {"bytes": len(b"id,total\n1,9.50\n")}}


def check_creating_workers_channels_5(run: Run) -> None:
    channel = iii.channels.create_channel(run.worker)

    def write() -> None:
        for chunk in (b"alpha ", b"beta ", b"gamma"):
            channel.writer.write_sync(chunk)
        channel.writer.close()

    writer = threading.Thread(target=write)
    writer.start()
    result = run.call(
        "files::process", {"filename": "report.csv", "reader": channel.reader_ref.model_dump()}
    )
    writer.join()
    assert result == {"bytes": len(b"alpha beta gamma")}


def check_creating_workers_channels_6(run: Run) -> None:
    channel = iii.channels.create_channel(run.worker)
    assert run.call("files::generate", {"writer": channel.writer_ref.model_dump()}) == {"ok": True}
    assert channel.reader.read_all_sync() == b"hello world"


def check_math_worker(run: Run) -> None:
    assert run.call("math::add", {"a": 2, "b": 3}) == {"c": 5}
    assert worker_named(run, "math-worker") is not None


check_creating_workers_functions_1 = check_using_iii_functions_1 = check_math_worker


def check_creating_workers_functions_2(run: Run) -> None:
    assert run.call("math::add", {"a": 2, "b": 3}) == {"c": 5}
    info = run.call("engine::functions::info", {"function_id": "math::add"})
    assert info["request_schema"] == {
        "type": "object",
        "properties": {"a": {"type": "number"}, "b": {"type": "number"}},
        "required": ["a", "b"],
    }
    assert info["response_schema"] == {
        "type": "object",
        "properties": {"c": {"type": "number"}},
        "required": ["c"],
    }


def check_creating_workers_functions_3(run: Run) -> None:
    info = function(run, "notifications::send")
    assert info.description == "POST a notification to the provider webhook"
    [frame] = run.frames("registerfunction", id="notifications::send")
    assert frame["invocation"]["url"] == "https://hooks.provider.example.com/notify"
    assert frame["invocation"]["auth"] == {"type": "bearer", "token_key": "PROVIDER_API_TOKEN"}


def check_creating_workers_functions_4(run: Run) -> None:
    with pytest.raises(iii.IIIInvocationError) as info:
        run.call("math::add", {"a": 1, "b": 2})
    assert info.value.code == "function_not_found"
    assert run.finish() == 0
    assert len(run.frames("registerfunction", id="math::add", dir="in")) == 1
    assert len(run.frames("unregisterfunction", id="math::add", dir="in")) == 1


def check_http_add(run: Run) -> None:
    assert run.http("POST", "/math/add", {"a": 2, "b": 3}) == (200, {"c": 5})


check_creating_workers_triggers_1 = check_http_add


def check_creating_workers_triggers_2(run: Run) -> None:
    check_http_add(run)
    [row] = run.call("engine::registered-triggers::list", {"function_id": "math::add"})[
        "registered_triggers"
    ]
    detail = run.call("engine::registered-triggers::info", {"id": row["id"]})
    assert detail["trigger_type"] == "http"
    assert detail["metadata"] == {"team": "platform", "env": "staging"}


def trigger_types(run: Run) -> dict[str, Any]:
    return {t["id"]: t for t in run.call("engine::triggers::list", {})["triggers"]}


def check_creating_workers_triggers_3(run: Run) -> None:
    engine = run.engine
    assert isinstance(engine, InTest)
    kind = trigger_types(run)["mini-http"]
    assert kind["description"] == "Routes HTTP requests to bound functions"
    assert kind["worker_name"] == "mini-http-worker"
    run.worker.register_function("shop::orders", lambda data: data)
    trigger = run.worker.register_trigger(
        {"type": "mini-http", "function_id": "shop::orders", "config": {"api_path": "/orders"}}
    )
    # The engine hands the binding to the block's handler, whose answer accepts it.
    sent = engine.thread.wait_for_frame(
        "registertrigger",
        direction="out",
        where=lambda f: f["id"] == trigger.id,
        timeout=START_TIMEOUT,
    )
    assert sent["config"] == {"api_path": "/orders"}
    answer = engine.thread.wait_for_frame(
        "triggerregistrationresult",
        direction="in",
        where=lambda f: f["id"] == trigger.id,
        timeout=START_TIMEOUT,
    )
    assert answer.get("error") is None


def check_creating_workers_triggers_4(run: Run) -> None:
    # The 0.19 engine does not understand `unregistertriggertype` (it drops the frame), so
    # mini-http stays until its worker disconnects; the reference engine does the same.
    assert "mini-http" in trigger_types(run)
    assert run.finish() == 0
    wait_until(lambda: "mini-http" not in trigger_types(run))
    assert len(run.frames("registertriggertype", id="mini-http", dir="in")) == 1
    assert len(run.frames("unregistertriggertype", id="mini-http", dir="in")) == 1


def check_creating_workers_triggers_5(run: Run) -> None:
    assert run.reports == {
        "received": {
            "method": "POST",
            "headers": {"content-type": "application/json"},
            "body": {"qty": 2},
        },
        "config": {"api_path": "/orders", "http_method": "POST"},
    }


def check_creating_workers_workers_1(run: Run) -> None:
    me = worker_named(run, "my-worker")
    assert me.description == "One-line summary of what this worker does"


def check_creating_workers_workers_2(run: Run) -> None:
    r = run.reports
    assert {"docs-worker", "iii-state", "iii-http"} <= set(r["workers"])
    assert {"state::get", "state::set", "publish"} <= set(r["functions"])
    assert {"http", "cron", "state", "stream", "subscribe", "durable:subscriber"} <= set(
        r["triggers"]
    )
    assert r["raised"]["code"] == "function_not_found"
    assert "engine::trigger-types::list" in r["raised"]["message"]
    assert r["trigger_types_read"] is False


def check_creating_workers_workers_3(run: Run) -> None:
    # None: the block returned from its `except` branch; the end of the block says otherwise.
    assert run.reports == {"returned": None}
    [error] = [
        f["error"]
        for f in run.frames("invocationresult", dir="out")
        if f.get("function_id") == "math::add"
    ]
    assert error["code"] == "invocation_stopped"


def check_creating_workers_workers_4(run: Run) -> None:
    engine = run.engine
    assert isinstance(engine, InTest)
    newcomer = iii.register_worker(engine.url, iii.InitOptions(worker_name="newcomer"))
    try:
        newcomer.register_function("newcomer::hello", lambda data: "hi")

        def called(function_id: str, where: Callable[[Any], bool]) -> Any:
            for frame in engine.thread.frames(type="invokefunction", direction="out"):
                if frame["function_id"] == function_id and where(frame["data"]):
                    return frame
            return None

        on_workers = wait_until(
            lambda: called(
                "discovery::on-workers",
                lambda d: d["event"] == "worker_connected" and d["worker_id"] == newcomer.worker_id,
            )
        )
        on_functions = wait_until(
            lambda: called(
                "discovery::on-functions",
                lambda d: "newcomer::hello" in [f["function_id"] for f in d.get("functions", [])],
            )
        )
        for invoked in (on_workers, on_functions):

            def answers(frame: JSONObject, call: JSON = invoked["invocation_id"]) -> bool:
                return frame["invocation_id"] == call

            result = engine.thread.wait_for_frame(
                "invocationresult", direction="in", timeout=START_TIMEOUT, where=answers
            )
            assert result.get("error") is None
    finally:
        newcomer.shutdown()


def check_creating_workers_workers_5(run: Run) -> None:
    assert worker_named(run, "docs-worker") is not None
    run.proc.send_signal(signal.SIGTERM)
    assert run.proc.wait(timeout=START_TIMEOUT) == 0
    wait_until(lambda: worker_named(run, "docs-worker") is None)
    assert "Traceback" not in run.stderr()


def check_using_iii_functions_2(run: Run) -> None:
    assert run.reports == {"result": {"c": 5}}


def check_using_iii_triggers_1(run: Run) -> None:
    run.worker.register_function(
        "math::add", lambda req: {"body": {"c": req["body"]["a"] + req["body"]["b"]}}
    )
    wait_until(lambda: function(run, "math::add"))
    check_http_add(run)


def check_using_iii_triggers_2(run: Run) -> None:
    engine = run.engine
    assert isinstance(engine, InTest)
    assert run.http("POST", "/reports/generate", {}) == (202, {"queued": True})
    [job] = wait_until(lambda: [j for j in engine.thread.cron_jobs() if j["next_run"]])
    # "0 0 9 * * 1": in the engine's cron dialect day 1 is Sunday (the docs' comment says
    # Monday), so the first run after Thursday 2026-01-01 is Sunday 2026-01-04 09:00 UTC.
    due = datetime(2026, 1, 4, 9, 0, tzinfo=timezone.utc)
    assert job["next_run"] == due.isoformat()
    engine.thread.advance_clock(due.timestamp() - engine.thread.clock.time())
    frame = engine.thread.wait_for_frame(
        "invokefunction",
        direction="out",
        where=lambda f: (
            f["function_id"] == "reports::generate"
            and isinstance(f["data"], dict)
            and f["data"].get("trigger") == "cron"
        ),
        timeout=START_TIMEOUT,
    )
    data = frame["data"]
    assert isinstance(data, dict) and data["scheduled_time"] == due.isoformat()


def check_using_iii_triggers_3(run: Run) -> None:
    assert run.call("orders::is-priority", {"customer_tier": "gold"}) is True
    assert run.call("orders::is-priority", {"customer_tier": "silver"}) is False
    # Over HTTP the condition gets the request ({body, headers, ...}), as the handler would:
    # the block's `payload.get("customer_tier")` is None there, so every request is refused.
    status, body = run.http("POST", "/orders/expedite", {"customer_tier": "gold"})
    assert status == 422
    assert body["skipped"] is True and body["error"]["code"] == "CONDITION_NOT_MET"
    assert run.finish() == 0
    [asked] = [
        f["data"]
        for f in run.frames("invokefunction", dir="out")
        if f["function_id"] == "orders::is-priority" and "body" in f["data"]
    ]
    assert asked["body"] == {"customer_tier": "gold"} and "customer_tier" not in asked
    assert not [
        f for f in run.frames("invokefunction", dir="out") if f["function_id"] == "orders::expedite"
    ]


def check_using_iii_triggers_4(run: Run) -> None:
    assert run.http("POST", "/math/add", {"a": 2, "b": 3})[0] == 404
    assert run.finish() == 0
    [bound] = run.frames("registertrigger", function_id="math::add", dir="in")
    assert bound["trigger_type"] == "http"
    assert len(run.frames("unregistertrigger", id=bound["id"], dir="in")) == 1


CHECKS: dict[str, Callable[[Run], None]] = {name: globals()[f"check_{name}"] for name in EXAMPLES}


@pytest.fixture
def run_example(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[str], Run]]:
    runs: list[Run] = []

    def start(name: str) -> Run:
        runs.append(Run(EXAMPLES[name], tmp_path))
        return runs[-1]

    yield start
    for run in runs:
        run.close()


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_docs_example(run_example: Callable[[str], Run], name: str) -> None:
    run = run_example(name)
    CHECKS[name](run)
    assert run.finish() == 0, run.stderr()
    assert "Traceback" not in run.stderr(), run.stderr()


def test_every_block_is_run_and_unchanged() -> None:
    """Each snippet's code is the docs' (``extract.py --check`` compares it with the docs
    themselves); here: every snippet has an entry and a check, and none was edited since."""
    snippets = {p.stem for p in SNIPPETS.glob("*.py")}
    assert snippets == set(EXAMPLES) == set(CHECKS)
    digest = hashlib.sha256()
    for name in sorted(snippets):
        text = (SNIPPETS / f"{name}.py").read_text(encoding="utf-8")
        head, marker, body = text.partition(MARKER + "\n")
        assert marker and head.startswith("# From the official iii docs: "), name
        digest.update(f"{name}\n{body}".encode())
    assert digest.hexdigest() == SNIPPETS_SHA256


#: The docs' code of every snippet, hashed (after the marker line). A change here means a
#: snippet was edited: copy them again with ``extract.py`` instead, then update this.
SNIPPETS_SHA256 = "3744751d5c31fbf98279f1cd0250a686b89431aba6a45561d9797f45b6b3bb21"
