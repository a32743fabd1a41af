"""Subprocess plumbing for the runner: candidates, the stand-in, timed line reads."""

from __future__ import annotations

import contextlib
import json
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

REPO = Path(__file__).resolve().parents[1]
CACHE = REPO / ".cache" / "bench"
OFFICIAL_SPEC = "iii-sdk==0.25.0"
OFFICIAL_VENV = CACHE / "official-0.25.0"
TOOLS_VENV = CACHE / "tools"
PY = sys.executable


class RunError(RuntimeError):
    pass


# -- installs ------------------------------------------------------------------------


def _marker_ok(venv: Path, spec: str) -> bool:
    try:
        return (venv / ".installed").read_text().strip() == spec
    except OSError:
        return False


def ensure_venv(venv: Path, spec: str) -> Optional[str]:
    """A cached venv with ``spec`` installed; returns an error text or ``None``."""
    if _marker_ok(venv, spec):
        return None
    shutil.rmtree(venv, ignore_errors=True)
    try:
        subprocess.run([PY, "-m", "venv", str(venv)], check=True, capture_output=True)
        subprocess.run(
            [
                str(venv / "bin" / "python"),
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "--no-input",
                spec,
            ],
            check=True,
            capture_output=True,
            text=True,
            timeout=600,
        )
    except (subprocess.SubprocessError, OSError) as exc:
        detail = getattr(exc, "stderr", "") or ""
        return f"could not install {spec}: {exc} {detail[-400:]}"
    (venv / ".installed").write_text(spec)
    return None


def official_python() -> Path:
    return OFFICIAL_VENV / "bin" / "python"


def py_spy() -> Optional[Path]:
    exe = TOOLS_VENV / "bin" / "py-spy"
    if exe.exists():
        return exe
    if ensure_venv(TOOLS_VENV, "py-spy") is None and exe.exists():
        return exe
    return None


# -- candidates ----------------------------------------------------------------------


@dataclass(frozen=True)
class Candidate:
    key: str
    label: str
    kind: str  # "ours" | "official" | "floor"
    args: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()

    def command(
        self, mode: str, url: str, extra: tuple[str, ...], home: str
    ) -> tuple[list[str], dict[str, str], str]:
        env = dict(os.environ)
        env.pop("PYTHONPATH", None)
        env.update(self.env)
        env["PYTHONDONTWRITEBYTECODE"] = "1"
        args = [mode, url, *self.args, *extra]
        if self.kind == "official":
            env["HOME"] = home  # 0.25 writes ~/.iii/run markers
            script = str(REPO / "bench" / "workers" / "official.py")
            return [str(official_python()), "-E", "-s", script, *args], env, home
        module = "bench.workers.ours" if self.kind == "ours" else "bench.workers.floor"
        return [PY, "-m", module, *args], env, str(REPO)


CANDIDATES = {
    c.key: c
    for c in (
        Candidate("floor", "floor (asyncio, orjson)", "floor"),
        Candidate("floor-json", "floor (asyncio, stdlib json)", "floor", ("--json", "stdlib")),
        Candidate("floor-trio", "floor (trio, orjson)", "floor", ("--runtime", "trio")),
        Candidate("ours", "ours (asyncio)", "ours", ("--runtime", "asyncio")),
        Candidate(
            "ours-thread",
            "ours (threads: register_worker, no loop running)",
            "ours",
            ("--runtime", "thread"),
        ),
        Candidate("ours-trio", "ours (trio)", "ours", ("--runtime", "trio")),
        Candidate(
            "ours-docs",
            "ours (asyncio, register_worker in the loop)",
            "ours",
            ("--runtime", "asyncio", "--entry", "register_worker"),
        ),
        Candidate(
            "ours-docs-trio",
            "ours (trio, register_worker in the run)",
            "ours",
            ("--runtime", "trio", "--entry", "register_worker"),
        ),
        Candidate("official", "official 0.25.0 (default)", "official"),
        Candidate(
            "official-nootel",
            "official 0.25.0 (OTEL_ENABLED=false)",
            "official",
            env=(("OTEL_ENABLED", "false"),),
        ),
    )
}


# -- processes -----------------------------------------------------------------------


class Lines:
    """Read ``\\n``-terminated lines from a pipe with a deadline."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None
        self.fd = proc.stdout.fileno()
        self.buf = b""

    def next(self, timeout: float, prefix: bytes = b"") -> bytes:
        deadline = time.monotonic() + timeout
        while True:
            while b"\n" in self.buf:
                line, _, self.buf = self.buf.partition(b"\n")
                if line.startswith(prefix):
                    return line[len(prefix) :]
            left = deadline - time.monotonic()
            if left <= 0:
                raise RunError("timed out waiting for output")
            ready, _, _ = select.select([self.fd], [], [], left)
            if ready:
                chunk = os.read(self.fd, 65536)
                if not chunk:
                    raise RunError("process ended without the expected output")
                self.buf += chunk


def _stop(proc: Optional[subprocess.Popen[bytes]]) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(5)


def _tail(path: str) -> str:
    try:
        return Path(path).read_text(errors="replace")[-1500:]
    except OSError:
        return ""


@dataclass
class Run:
    """One measurement: a fresh stand-in, a fresh candidate process."""

    candidate: Candidate
    mode: str
    standin_args: list[str]
    extra: tuple[str, ...] = ()
    timeout: float = 30.0
    kill_worker_after_standin: bool = True
    worker_pid: Optional[int] = None
    spawned_at: float = 0.0
    profile_hook: Any = None  # called with the worker pid right after it is spawned
    wait_worker: float = 0.0  # let the worker exit by itself for this long (profiles)
    out: dict[str, Any] = field(default_factory=dict)

    def execute(self) -> dict[str, Any]:
        standin: Optional[subprocess.Popen[bytes]] = None
        worker: Optional[subprocess.Popen[bytes]] = None
        with tempfile.TemporaryDirectory(prefix="iii-bench-") as tmp:
            si_err = os.path.join(tmp, "standin.err")
            w_err = os.path.join(tmp, "worker.err")
            home = os.path.join(tmp, "home")
            os.mkdir(home)
            try:
                # The runner listens, so the worker can be started (and
                # connect) while the stand-in is still starting up.
                listener = socket.socket()
                listener.bind(("127.0.0.1", 0))
                listener.listen(64)
                port = listener.getsockname()[1]
                with open(si_err, "wb") as se, listener:
                    standin = subprocess.Popen(
                        [
                            PY,
                            "-m",
                            "bench.standin",
                            *self.standin_args,
                            "--fd",
                            str(listener.fileno()),
                        ],
                        cwd=REPO,
                        stdin=subprocess.PIPE,
                        stdout=subprocess.PIPE,
                        stderr=se,
                        pass_fds=(listener.fileno(),),
                    )
                si_lines = Lines(standin)
                if self.mode == "cold":
                    si_lines.next(10, b"PORT ")  # ready before the clock starts
                url = f"ws://127.0.0.1:{port}/"
                argv, env, cwd = self.candidate.command(self.mode, url, self.extra, home)
                with open(w_err, "wb") as we:
                    self.spawned_at = time.monotonic()
                    worker = subprocess.Popen(
                        argv,
                        cwd=cwd,
                        env=env,
                        stdout=subprocess.PIPE,
                        stderr=we,
                        stdin=subprocess.DEVNULL,
                    )
                self.worker_pid = worker.pid
                if self.profile_hook is not None:
                    self.profile_hook(worker.pid)
                w_lines = Lines(worker)
                if self.kill_worker_after_standin:
                    self.out["standin"] = json.loads(si_lines.next(self.timeout, b"@@ "))
                else:
                    self.out["worker"] = json.loads(w_lines.next(self.timeout, b"@@ "))
                    if self.mode.startswith("outbound"):
                        self.out["standin"] = json.loads(si_lines.next(10, b"@@ "))
            except (RunError, ValueError, subprocess.SubprocessError, OSError) as exc:
                raise RunError(
                    f"{self.candidate.key} {self.mode} {' '.join(self.standin_args)}: {exc}\n"
                    f"--- worker stderr ---\n{_tail(w_err)}\n--- stand-in stderr ---\n"
                    f"{_tail(si_err)}"
                ) from None
            finally:
                if worker is not None and self.wait_worker:
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        worker.wait(self.wait_worker)
                _stop(worker)
                if standin is not None:
                    if standin.stdin is not None:
                        with contextlib.suppress(OSError):
                            standin.stdin.close()
                    try:
                        standin.wait(5)
                    except subprocess.TimeoutExpired:
                        _stop(standin)
        self.out["spawned_at"] = self.spawned_at
        return self.out
