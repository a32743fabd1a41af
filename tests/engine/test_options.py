"""A bad engine option is named, wherever it is given (issue 15, item 7)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from iii.testing import EngineOptions, EngineThread, serve_engine
from iii.testing.__main__ import main

ROOT = Path(__file__).resolve().parents[2]

BAD = [
    ({"bogus": 1}, TypeError, "unknown reference engine option 'bogus'"),
    ({"queue": "no"}, TypeError, "option 'queue': expected True or False"),
    ({"namespace_grace": -1}, ValueError, "option 'namespace_grace': expected 0 or more"),
    ({"port": 70000}, ValueError, "option 'port': expected an int from 0 to 65535"),
    ({"transcript_limit": 0}, ValueError, "option 'transcript_limit'"),
    ({"transcript_limit": 2.5}, TypeError, "option 'transcript_limit'"),
    ({"transcript_limit": True}, TypeError, "option 'transcript_limit'"),
    ({"lenient_frames": 1}, TypeError, "option 'lenient_frames'"),
    ({"queue_backoff": float("nan")}, ValueError, "option 'queue_backoff'"),
    ({"rbac": {"nope": 1}}, ValueError, "option 'rbac': unknown rbac keys"),
    ({"rbac": 5}, TypeError, "option 'rbac'"),
]


@pytest.mark.parametrize(("options", "exc_type", "message"), BAD)
def test_engine_thread_names_the_bad_option(options, exc_type, message):
    # Raised in the caller's thread, before any engine thread starts.
    with pytest.raises(exc_type, match=message) as info:
        EngineThread(**options)
    assert "failed to start" not in str(info.value)


def test_engine_thread_checks_its_own_options():
    with pytest.raises(ValueError, match="option 'backend'"):
        EngineThread(backend="curio")
    with pytest.raises(ValueError, match="option 'start_timeout'"):
        EngineThread(start_timeout=0)


@pytest.mark.anyio
@pytest.mark.parametrize(("options", "exc_type", "message"), BAD)
async def test_serve_engine_names_the_bad_option(options, exc_type, message, anyio_backend):
    with pytest.raises(exc_type, match=message):
        async with serve_engine(**options):
            pass


def test_engine_options_name_the_bad_option():
    with pytest.raises(TypeError, match="'trigger_ack_timeout'"):
        EngineOptions(trigger_ack_timeout="10")  # type: ignore[arg-type]  # the bad type on purpose
    with pytest.raises(TypeError, match="bogus"):
        EngineOptions(bogus=1)  # module settings are **kwargs: checked at run time


PLUGIN_EXAMPLE = """
import pytest

@pytest.mark.iii_engine(bogus=1)
def test_unknown(iii_engine):
    pass

@pytest.mark.iii_engine(namespace_grace="soon")
def test_wrong_type(iii_engine):
    pass

def test_factory(iii_engine_factory):
    iii_engine_factory(transcript_limit=-3)
"""


def test_fixture_errors_name_the_option(tmp_path):
    (tmp_path / "test_bad_options.py").write_text(textwrap.dedent(PLUGIN_EXAMPLE))
    # This checkout first on the path: the interpreter may have another one installed.
    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])
    )
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_bad_options.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    out = proc.stdout
    assert "3 error" in out or "1 failed, 2 error" in out, out + proc.stderr
    assert "@pytest.mark.iii_engine: unknown reference engine option 'bogus'" in out, out
    assert "@pytest.mark.iii_engine: reference engine option 'namespace_grace'" in out, out
    assert "reference engine option 'transcript_limit'" in out, out
    assert "failed to start" not in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--bogus"], "unrecognized arguments: --bogus"),
        (["--port", "-5"], "argument --port: expected an int from 0 to 65535, got -5"),
        (["--transcript-limit", "0"], "argument --transcript-limit: expected an int 1 or more"),
        (["--namespace-grace-ms", "-1"], "argument --namespace-grace-ms: expected 0 or more"),
        (["--rbac", "{bad"], "argument --rbac: neither JSON nor a JSON file"),
        (["--rbac", '{"nope": 1}'], "argument --rbac: unknown rbac keys: ['nope']"),
        (["--log-level", "LOUD"], "argument --log-level: unknown level 'LOUD'"),
    ],
)
def test_cli_names_the_bad_flag(argv, message, capsys):
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    assert message in capsys.readouterr().err
