"""Programs written for the official SDK run unmodified on ours, with the same output.

Each program in ``programs/`` uses one official release's API only (its
names, its call forms): for 0.25, a sync worker, an asyncio worker awaiting
``trigger_async`` on its own loop, a trigger type whose bindings are fired
with a data channel, handlers writing channels with the official
fire-and-forget forms, an application made inside ``asyncio.run``, a
trigger type provider, and connection-state listeners; for 0.19, a sync
worker with that release's names, channels made and read its way (from
async and from sync handlers), HTTP functions streaming their responses as
the motia framework does, and ``III`` constructed directly as frameworks
do.  Each runs twice against one reference engine (its URL, the worker's
name and the engine's HTTP URL as arguments), once on that official iii-sdk
(its venv) and once on ours; the two outputs must be equal, line for line.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from iii.testing import EngineThread

from ._harness import _clean_env
from ._install import REPO, Peers

pytestmark = pytest.mark.conformance

PROGRAMS = Path(__file__).resolve().parent / "programs"

#: program -> the official release whose API it is written for.
RELEASE = {
    "sync_worker": "0.25.0",
    "async_worker": "0.25.0",
    "trigger_type_channel": "0.25.0",
    "handler_channels": "0.25.0",
    "asyncio_app": "0.25.0",
    "trigger_provider": "0.25.0",
    "state_listeners": "0.25.0",
    "legacy_worker": "0.19.7",
    "legacy_channels": "0.19.7",
    "http_stream": "0.19.7",
    "sync_handler_channels": "0.19.7",
    "direct_client": "0.19.7",
}


@pytest.fixture(scope="module")
def engine() -> Iterator[EngineThread]:
    # Lenient: 0.19.7 omits ``data`` for a ``None`` payload, a frame the real
    # engine (and the strict default) drops, so its call would only time out;
    # ours always sends ``data``.  Read as null, both calls get the same answer.
    with EngineThread(lenient_frames=True) as running:
        yield running


def _run(python: Path, program: str, engine: EngineThread, name: str, home: Path) -> str:
    proc = subprocess.run(
        [str(python), str(PROGRAMS / f"{program}.py"), engine.url, name, engine.http_url],
        capture_output=True,
        text=True,
        env=_clean_env(home, (), otel=False),
        cwd=str(home),
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, (
        f"{program} on {python} exited with {proc.returncode}\n"
        f"stdout:\n{proc.stdout}\nstderr (tail):\n{proc.stderr[-4000:]}"
    )
    return proc.stdout


@pytest.mark.parametrize("program", sorted(RELEASE))
def test_official_program_runs_the_same_on_ours(
    engine: EngineThread, peers: Peers, tmp_path: Path, program: str
) -> None:
    python = peers.python[RELEASE[program]]
    official = _run(python, program, engine, f"official-{program}", tmp_path)
    ours = _run(Path(sys.executable), program, engine, f"ours-{program}", tmp_path)
    assert ours.splitlines() == official.splitlines()
    assert official.rstrip().endswith("done")  # the program ran to its end on both


def test_ours_is_the_sdk_under_test() -> None:
    # The child runs from a temporary directory: the SDK it imports is this
    # repository's (installed editable), not a copy found some other way.
    out = subprocess.run(
        [sys.executable, "-c", "import iii; print(iii.__file__)"],
        capture_output=True,
        text=True,
        check=True,
        cwd=str(PROGRAMS),
    ).stdout.strip()
    assert Path(out).resolve().is_relative_to(REPO.resolve())
