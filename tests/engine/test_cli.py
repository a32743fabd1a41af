"""``python -m iii.testing`` as a process (issue part 3)."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys

import anyio
import pytest

from .wsclient import OPEN_CLIENTS, Peer, settle


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start(*args: str) -> subprocess.Popen[str]:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env.pop("III_NAMESPACE_GRACE_MS", None)
    if "--http-port" not in args:  # not the CLI's fixed 3111: tests run side by side
        args = (*args, "--http-port", "0")
    return subprocess.Popen(
        [sys.executable, "-m", "iii.testing", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def talk(url: str) -> str:
    async def main() -> str:
        try:
            peer = await Peer.join(url, "cli-peer")
            await settle(peer)
            return peer.worker_id
        finally:
            while OPEN_CLIENTS:
                await OPEN_CLIENTS.pop().stream.aclose()

    return anyio.run(main)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_cli_prints_url_serves_and_stops_on_signal(sig, tmp_path):
    port = free_port()
    transcript = tmp_path / "frames.jsonl"
    proc = start("--port", str(port), "--transcript", str(transcript))
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        assert url == f"ws://127.0.0.1:{port}"
        worker_id = talk(url)
        proc.send_signal(sig)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        stdout, _stderr = proc.communicate()
    # Then only the worker modules' listeners, one "name: url" line each.
    assert all(
        re.fullmatch(r"[a-z_]+: \w+://127\.0\.0\.1:\d+", line) for line in stdout.splitlines()
    )
    lines = [json.loads(line) for line in transcript.read_text().splitlines()]
    assert any(e["conn"] == worker_id and e.get("frame", {}).get("type") == "pong" for e in lines)


def test_cli_defaults_and_rbac_listener(tmp_path):
    config = tmp_path / "rbac.json"
    config.write_text(json.dumps({"rbac": {"expose_functions": ['match("open::*")']}}))
    proc = start("--port", "0", "--rbac", str(config), "--namespace-grace-ms", "100")
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        rbac_url = proc.stdout.readline().strip()
        assert url.startswith("ws://127.0.0.1:") and rbac_url.startswith("ws://127.0.0.1:")
        assert url != rbac_url
        talk(rbac_url)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.communicate()


def test_cli_reports_a_busy_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        proc = start("--port", str(port))
        try:
            assert proc.wait(timeout=10) == 1
        finally:
            if proc.poll() is None:
                proc.kill()
            _, stderr = proc.communicate()
    assert proc.returncode == 1
    assert "error:" in stderr


def test_cli_help_mentions_the_default_port():
    out = subprocess.run(
        [sys.executable, "-m", "iii.testing", "--help"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout
    assert "49134" in out and "--rbac" in out and "--host" in out
