"""The reference engine as a process (``python -m iii.testing --port N``) with all
three official SDKs and ours on it at once: each calls the next one round a ring."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import iii

from ._harness import SDK_IDS, PeerAgent, poll

pytestmark = pytest.mark.conformance


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture
def cli_engine(tmp_path: Path) -> Iterator[tuple[str, Path, subprocess.Popen[str]]]:
    transcript = tmp_path / "transcript.jsonl"
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("III_")}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "iii.testing",
            "--port",
            str(port),
            "--http-port",
            "0",
            "--transcript",
            str(transcript),
            "--log-level",
            "WARNING",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        assert url == f"ws://127.0.0.1:{port}", (url, proc.stderr.read() if proc.stderr else "")
        yield url, transcript, proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


def test_all_sdks_on_the_cli_engine(
    cli_engine: tuple[str, Path, subprocess.Popen[str]], spawn: Callable[..., PeerAgent]
) -> None:
    url, transcript, proc = cli_engine
    agents = {sdk_id: spawn(sdk_id, url, f"cli-{sdk_id}") for sdk_id in SDK_IDS}
    for sdk_id, agent in agents.items():
        agent.ok("register_function", function_id=f"ring::{sdk_id}", behavior="echo")
    ours = iii.register_worker(url, iii.InitOptions(worker_name="cli-ours"))
    try:
        ours.register_function("ring::ours", lambda data: {"ours": data["n"]})
        ring = [*SDK_IDS, "ours"]

        # Wait (through the engine's own builtin) until every ring function exists.
        def listed() -> set[str]:
            out = ours.trigger({"function_id": "engine::functions::list", "payload": {}})
            return {f["function_id"] for f in out["functions"]}

        poll(lambda: {f"ring::{s}" for s in ring} <= listed())
        for i, sdk_id in enumerate(SDK_IDS):
            target = ring[(i + 1) % len(ring)]
            out = agents[sdk_id].ok("trigger", function_id=f"ring::{target}", payload={"n": i})
            if target == "ours":
                assert out["result"] == {"ours": i}
            else:
                assert out["result"]["by"] == f"cli-{target}"
                assert out["result"]["echo"]["n"] == i
        result = ours.trigger({"function_id": f"ring::{SDK_IDS[0]}", "payload": {"n": 9}})
        assert result["by"] == f"cli-{SDK_IDS[0]}"
        workers = ours.trigger({"function_id": "engine::workers::list", "payload": {}})
        runtimes = {w["name"]: w["runtime"] for w in workers["workers"]}
        assert runtimes["cli-node-0.22.1"] == "node"
        assert runtimes["cli-py-0.19.7"] == runtimes["cli-py-0.25.0"] == "python"
    finally:
        ours.shutdown()
    for agent in agents.values():
        assert agent.close() == 0
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(10) == 0
    # The transcript the CLI wrote at exit holds the official SDKs' own frames.
    entries = [json.loads(line) for line in transcript.read_text().splitlines()]
    announces = [
        e["frame"]["data"]
        for e in entries
        if e["dir"] == "in"
        and e.get("frame", {}).get("type") == "invokefunction"
        and e["frame"]["function_id"] == "engine::workers::register"
    ]
    assert {(a["runtime"], a["version"]) for a in announces} >= {
        ("python", "0.19.7"),
        ("python", "0.25.0"),
        ("node", "0.22.1"),
    }
