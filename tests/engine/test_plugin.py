"""The pytest plugin (pytest11 entry point ``iii``): fixtures, marker, failure report."""

from __future__ import annotations

import subprocess
import sys
import textwrap

EXAMPLE = '''
from __future__ import annotations

import anyio
import pytest
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, Request, TextMessage


async def greeting(url: str) -> str:
    """Open a raw WebSocket on the engine and return its first frame."""
    host, port = url.removeprefix("ws://").split(":")
    stream = await anyio.connect_tcp(host, int(port))
    ws = WSConnection(ConnectionType.CLIENT)
    await stream.send(ws.send(Request(host=host, target="/")))
    try:
        while True:
            ws.receive_data(await stream.receive())
            for event in ws.events():
                if isinstance(event, TextMessage):
                    return event.data
    finally:
        await stream.aclose()


def test_sync_fixture(iii_engine):
    assert iii_engine.url.startswith("ws://127.0.0.1:")
    assert '"workerregistered"' in anyio.run(greeting, iii_engine.url)
    iii_engine.wait_for(lambda: iii_engine.stats()["connections"] == 0)


def test_trio_inside_a_sync_test(iii_engine):
    import trio

    assert '"workerregistered"' in trio.run(greeting, iii_engine.url)


@pytest.mark.iii_engine(namespace_grace=0.1, rbac={"expose_functions": []})
def test_marker_options(iii_engine):
    assert iii_engine.engine.options.namespace_grace == 0.1
    assert iii_engine.rbac_url is not None


def test_factory(iii_engine_factory):
    one = iii_engine_factory()
    two = iii_engine_factory(queue=False)
    assert one.url != two.url
    assert two.queue_stats() == {"enabled": False}


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"])
async def test_async_fixture(iii_async_engine):
    assert '"workerregistered"' in await greeting(iii_async_engine.url)
    await iii_async_engine.wait_for(lambda: iii_async_engine.stats()["connections"] == 0)


def test_failure_shows_the_transcript(iii_engine):
    anyio.run(greeting, iii_engine.url)
    assert False, "deliberate"
'''


def test_plugin_fixtures_in_a_fresh_pytest_run(tmp_path):
    (tmp_path / "test_example.py").write_text(textwrap.dedent(EXAMPLE))
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-W",
            "error",
            "test_example.py",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    out = proc.stdout
    assert "1 failed, 6 passed" in out, out + proc.stderr
    assert "iii engine 0 transcript" in out
    assert '"workerregistered"' in out
    assert "test_failure_shows_the_transcript" in out


def test_plugin_import_is_cheap_and_starts_nothing():
    code = (
        "import sys, threading, iii.testing._pytest_plugin as p\n"
        "loaded = [m for m in ('iii.testing._server', 'iii.testing._engine',"
        " 'iii.testing._thread') if m in sys.modules]\n"
        "print(loaded, threading.active_count())\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    ).stdout
    assert out.strip() == "[] 1"
