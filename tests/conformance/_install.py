"""Install the official SDKs (the test peers) into ``.cache/peers``, once.

Layout (all under the repository's git-ignored ``.cache/peers``)::

    py-0.19.7/   a venv with iii-sdk==0.19.7 from PyPI
    py-0.25.0/   a venv with iii-sdk==0.25.0 from PyPI
    node/        npm install iii-sdk@0.22.1

Each directory gets a ``.installed`` marker, written only after its install
succeeded; a directory without a matching marker is wiped and installed again.
An ``fcntl`` lock on ``.cache/peers/.lock`` serialises concurrent test runs.

Run ``python -m tests.conformance._install`` to install (or check) by hand.
``III_PEERS_DIR`` puts the peers somewhere else (tests of the installer itself).
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("III_PEERS_DIR") or REPO / ".cache" / "peers")

PYTHON_PEERS = {"0.19.7": "iii-sdk==0.19.7", "0.25.0": "iii-sdk==0.25.0"}
NODE_VERSION = "0.22.1"
NODE_SPEC = f"iii-sdk@{NODE_VERSION}"

#: Per install step (pip resolves and downloads ~16 distributions).
INSTALL_TIMEOUT = 600.0
LOCK_TIMEOUT = 1200.0
MARKER = ".installed"


class PeerInstallError(RuntimeError):
    """An official SDK could not be installed (registry unreachable, ...)."""


@dataclass(frozen=True)
class Peers:
    """Where the installed peers are."""

    python: dict[str, Path]  # version -> the venv's python executable
    node: Path  # the node executable
    node_root: Path  # the npm project holding node_modules/iii-sdk
    node_version: str


def _run(cmd: Sequence[str], what: str, cwd: Path | None = None) -> None:
    env = dict(os.environ)
    env.setdefault("PIP_DISABLE_PIP_VERSION_CHECK", "1")
    env["npm_config_update_notifier"] = "false"
    try:
        proc = subprocess.run(
            list(cmd),
            cwd=cwd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=INSTALL_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise PeerInstallError(
            f"{what}: timed out after {INSTALL_TIMEOUT:.0f}s: {' '.join(cmd)}\n"
            "Is the package registry reachable from this machine?"
        ) from exc
    except FileNotFoundError as exc:
        raise PeerInstallError(f"{what}: {exc}") from exc
    if proc.returncode != 0:
        tail = "\n".join(proc.stdout.splitlines()[-30:])
        raise PeerInstallError(
            f"{what} failed (exit {proc.returncode}): {' '.join(cmd)}\n{tail}\n"
            "The conformance tests need the official SDKs from PyPI and npm; "
            "check that the registries are reachable (proxy settings, network)."
        )


def _marker_ok(directory: Path, spec: str) -> bool:
    marker = directory / MARKER
    try:
        recorded = json.loads(marker.read_text())
    except (OSError, ValueError):
        return False
    return isinstance(recorded, dict) and recorded.get("spec") == spec


def _write_marker(directory: Path, spec: str, started: float) -> None:
    info = {"spec": spec, "seconds": round(time.monotonic() - started, 1)}
    tmp = directory / (MARKER + ".tmp")
    tmp.write_text(json.dumps(info))
    tmp.replace(directory / MARKER)


def _python_spec(requirement: str) -> str:
    return f"{requirement} python{sys.version_info[0]}.{sys.version_info[1]}"


def _install_python(directory: Path, requirement: str) -> None:
    spec = _python_spec(requirement)
    if _marker_ok(directory, spec):
        return
    started = time.monotonic()
    shutil.rmtree(directory, ignore_errors=True)
    _run([sys.executable, "-m", "venv", str(directory)], f"creating the venv for {requirement}")
    python = directory / "bin" / "python"
    _run(
        [
            str(python),
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-input",
            "--timeout",
            "60",
            "--retries",
            "2",
            requirement,
        ],
        f"pip install {requirement}",
    )
    _write_marker(directory, spec, started)


def _install_node(directory: Path) -> None:
    spec = NODE_SPEC
    if _marker_ok(directory, spec) and (directory / "node_modules" / "iii-sdk").is_dir():
        return
    npm = shutil.which("npm")
    if npm is None:
        raise PeerInstallError("npm is not on PATH; the conformance tests need node and npm")
    started = time.monotonic()
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    (directory / "package.json").write_text(
        json.dumps({"name": "iii-conformance-peers", "private": True}, indent=2) + "\n"
    )
    _run(
        [
            npm,
            "install",
            "--no-audit",
            "--no-fund",
            "--fetch-timeout=60000",
            "--fetch-retries=2",
            spec,
        ],
        f"npm install {spec}",
        cwd=directory,
    )
    _write_marker(directory, spec, started)


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        deadline = time.monotonic() + LOCK_TIMEOUT
        while True:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise PeerInstallError(f"timed out waiting for the lock {path}") from None
                time.sleep(0.2)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def ensure_peers(root: Path = CACHE) -> Peers:
    """Install whatever is missing (under the lock) and return the peers."""
    node = shutil.which("node")
    if node is None:
        raise PeerInstallError("node is not on PATH; the conformance tests need node and npm")
    pythons = {v: root / f"py-{v}" / "bin" / "python" for v in PYTHON_PEERS}
    node_root = root / "node"
    ready = all(
        _marker_ok(root / f"py-{v}", _python_spec(req)) for v, req in PYTHON_PEERS.items()
    ) and _marker_ok(node_root, NODE_SPEC)
    if not ready:
        with _locked(root / ".lock"):
            for version, requirement in PYTHON_PEERS.items():
                _install_python(root / f"py-{version}", requirement)
            _install_node(node_root)
    return Peers(python=pythons, node=Path(node), node_root=node_root, node_version=NODE_VERSION)


if __name__ == "__main__":
    t0 = time.monotonic()
    peers = ensure_peers()
    print(f"peers ready in {time.monotonic() - t0:.1f}s: {peers}")
