"""Without the official SDKs (no network, registry unreachable, npm missing) the
conformance tests are skipped with one line, not failed; ``III_REQUIRE_PEERS=1``
turns that back into a failure.  Simulated with an empty peers directory and
package indexes that refuse connections, never by touching the real network."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

#: A port nothing listens on: connections are refused at once.
BOGUS_INDEX = "http://127.0.0.1:9"


def _run_conformance(tmp_path: Path, **extra: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "III_PEERS_DIR": str(tmp_path / "peers"),
        "PIP_INDEX_URL": f"{BOGUS_INDEX}/simple",
        "PIP_EXTRA_INDEX_URL": "",
        "PIP_FIND_LINKS": "",
        "npm_config_registry": f"{BOGUS_INDEX}/",
    }
    env.pop("III_REQUIRE_PEERS", None)
    env.update(extra)
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "tests/conformance/test_limits.py",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_unreachable_registry_skips_with_one_line(tmp_path: Path) -> None:
    proc = _run_conformance(tmp_path)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    lines = [line for line in out.splitlines() if line.startswith("conformance: skipping")]
    assert len(lines) == 1, out
    assert "the official SDKs could not be installed (pip install iii-sdk==" in lines[0]
    assert "III_REQUIRE_PEERS=1" in lines[0]
    assert " skipped" in out.splitlines()[-1] and "failed" not in out.splitlines()[-1], out


def test_require_peers_turns_the_skip_into_a_failure(tmp_path: Path) -> None:
    proc = _run_conformance(tmp_path, III_REQUIRE_PEERS="1")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out
    assert "conformance: skipping" not in out
    assert "installing the official SDKs failed" in out
    assert "check that the registries are reachable" in out
