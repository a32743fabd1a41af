"""The motia framework (PyPI ``motia==1.0.4rc1``) runs on our SDK.

motia is written against the official SDK (``from iii import IIIClient,
Logger, http``, ``iii.telemetry``, ``iii.types.HttpRequest``,
``register_function({"id": ...}, handler)``, ``_wait_until_connected()``...).
In a venv where ours replaces the official one (``_motia.py``), ``import
motia`` works and ``motia run`` connects a worker to the reference engine,
registers its steps' functions and triggers, runs a step when called, and
stops on SIGTERM.  What the steps then ask of the engine (its queue, state
and stream workers) is the engine's side, not tested here.

Skipped, with one line, when PyPI cannot be reached to install motia.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Optional

import pytest

import iii
from iii.testing import EngineThread

from ._harness import _clean_env
from ._install import REPO, PeerInstallError
from ._motia import MOTIA_VERSION, ensure_motia

pytestmark = pytest.mark.conformance

STEP = """
from motia import logger

config = {
    "name": "hello",
    "description": "Greets whoever is queued",
    "triggers": [{"type": "queue", "topic": "greetings"}],
    "enqueues": [],
}


async def handler(input, context):
    logger.info("greeting", {"input": input})
    return {"hello": input["name"], "has_trace_id": bool(context.trace_id)}
"""

FUNCTION_ID = "steps::hello::trigger::queue(greetings)"


@pytest.fixture(scope="module")
def motia_python() -> Path:
    try:
        return ensure_motia()
    except PeerInstallError as exc:
        first = str(exc).strip().splitlines()[0]
        pytest.skip(f"motia=={MOTIA_VERSION} could not be installed from PyPI: {first}")


def _python(motia_python: Path, code: str, cwd: Path) -> str:
    proc = subprocess.run(
        [str(motia_python), "-c", code],
        capture_output=True,
        text=True,
        env=_clean_env(cwd, (), otel=False),
        cwd=str(cwd),
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc.stdout


def test_import_motia_uses_our_sdk(motia_python: Path, tmp_path: Path) -> None:
    out = _python(
        motia_python,
        "import iii, motia, motia.runtime\n"
        "print(iii.__file__)\n"
        "print(motia.ChannelReader is iii.ChannelReader, motia.logger.__class__ is iii.Logger)",
        tmp_path,
    )
    location, same = out.splitlines()
    assert Path(location).resolve().is_relative_to(REPO.resolve())
    assert same == "True True"


@pytest.fixture
def engine() -> Iterator[EngineThread]:
    with EngineThread() as running:
        yield running


def test_motia_worker_connects_registers_and_runs_a_step(
    motia_python: Path, engine: EngineThread, tmp_path: Path
) -> None:
    (tmp_path / "steps").mkdir()
    (tmp_path / "steps" / "hello_step.py").write_text(textwrap.dedent(STEP))
    env = _clean_env(tmp_path, (("III_URL", engine.url),), otel=False)
    log = (tmp_path / "motia.log").open("w")
    proc = subprocess.Popen(
        [str(motia_python), "-m", "motia.cli", "run", "--dir", "steps"],
        cwd=str(tmp_path),
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        # motia names no worker: ours defaults to "<hostname>:<pid>".
        info = engine.wait_for_worker(f"{socket.gethostname()}:{proc.pid}", timeout=60)
        assert info["runtime"] == "python"
        engine.wait_for_function(FUNCTION_ID, timeout=30)
        # The step's binding follows its function on the wire: wait for it too.
        bindings = engine.wait_for(
            lambda: [b for b in engine.bindings() if b.get("function_id") == FUNCTION_ID],
            timeout=30,
        )
        assert [b.get("trigger_type") for b in bindings] == ["queue"]
        with iii.register_worker(engine.url, iii.InitOptions(worker_name="motia-probe")) as probe:
            answer = probe.trigger({"function_id": FUNCTION_ID, "payload": {"name": "ada"}})
        assert answer == {"hello": "ada", "has_trace_id": True}
    finally:
        proc.send_signal(signal.SIGTERM)
        code: Optional[int]
        try:
            code = proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
            code = None
        log.close()
    output = (tmp_path / "motia.log").read_text()
    assert code == 0, output
    assert "Connected. Waiting for events" in output
    assert "greeting {'input': {'name': 'ada'}}" in output
