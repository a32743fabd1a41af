"""The runner's side of ``soak.engine``: start it, send it commands, kill it."""

from __future__ import annotations

import contextlib
import json
import os
import select
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO, Any, Optional

REPO = Path(__file__).resolve().parents[1]


class EngineError(RuntimeError):
    """The engine process did not start or did not answer."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class EngineProcess:
    """``python -m soak.engine`` on a fixed port; survives ``kill9`` by starting a
    new process on the same port (``start``).

    ``log`` receives the engines' stderr (every process appends to it).
    """

    def __init__(self, port: int, log: IO[bytes]) -> None:
        self.port = port
        self.url = f"ws://127.0.0.1:{port}"
        self._log = log
        self._proc: Optional[subprocess.Popen[bytes]] = None
        self._lock = threading.Lock()
        #: how many processes were started (1 + the restarts after kill -9)
        self.processes = 0

    @property
    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> Optional[int]:
        return self._proc.pid if self._proc is not None else None

    def start(self, timeout: float = 60.0) -> None:
        """Start a process on ``port`` and wait for its URL line.

        Binding can fail for a moment after a ``kill -9`` (the kernel releases
        the dead listener asynchronously): retried until ``timeout``.
        """
        deadline = time.monotonic() + timeout
        last = ""
        with self._lock:
            while True:
                proc = subprocess.Popen(
                    [sys.executable, "-m", "soak.engine", "--port", str(self.port)],
                    cwd=REPO,
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=self._log,
                    env={**os.environ, "PYTHONUNBUFFERED": "1"},
                )
                line = _readline(proc, deadline)
                if line.startswith("ws://"):
                    self._proc = proc
                    self.processes += 1
                    return
                proc.kill()
                proc.wait()
                last = line or f"exit status {proc.returncode}"
                if time.monotonic() > deadline:
                    raise EngineError(f"the engine did not start on port {self.port}: {last}")
                time.sleep(0.2)

    def command(self, op: str, timeout: float = 60.0, **args: Any) -> dict[str, Any]:
        """Send one command and return its answer (``EngineError`` if the process is gone)."""
        with self._lock:
            proc = self._proc
            if proc is None or proc.poll() is not None or proc.stdin is None:
                raise EngineError("the engine process is not running")
            try:
                proc.stdin.write((json.dumps({"op": op, **args}) + "\n").encode())
                proc.stdin.flush()
            except OSError as exc:
                raise EngineError(f"the engine process went away: {exc}") from exc
            line = _readline(proc, time.monotonic() + timeout)
            if not line:
                raise EngineError(f"no answer to {op!r} from the engine")
            answer: dict[str, Any] = json.loads(line)
            if "error" in answer:
                raise EngineError(f"{op}: {answer['error']}")
            return answer

    def kill9(self) -> None:
        """SIGKILL the engine process and reap it."""
        with self._lock:
            proc = self._proc
            if proc is not None:
                proc.kill()
                proc.wait()
                _close(proc)

    def stop(self) -> None:
        """End the engine gracefully (end of stdin), or kill it if it does not exit."""
        with self._lock:
            proc, self._proc = self._proc, None
        if proc is None:
            return
        try:
            if proc.stdin is not None:
                proc.stdin.close()
            proc.wait(30)
        except (OSError, subprocess.TimeoutExpired):
            proc.kill()
            proc.wait()
        _close(proc)


def _readline(proc: subprocess.Popen[bytes], deadline: float) -> str:
    """One line of the process's stdout before ``deadline`` ('' if none)."""
    out = proc.stdout
    assert out is not None
    buf = b""
    while not buf.endswith(b"\n"):
        left = deadline - time.monotonic()
        if left <= 0:
            return ""
        ready, _, _ = select.select([out], [], [], min(left, 1.0))
        if not ready:
            if proc.poll() is not None:
                return ""
            continue
        chunk = os.read(out.fileno(), 1)
        if not chunk:
            return ""
        buf += chunk
    return buf.decode().strip()


def _close(proc: subprocess.Popen[bytes]) -> None:
    for stream in (proc.stdin, proc.stdout):
        if stream is not None:
            with contextlib.suppress(OSError):
                stream.close()
