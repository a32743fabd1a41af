"""Drive the peer agents (``peers/py_agent.py``, ``peers/node_agent.mjs``) from tests.

A ``PeerAgent`` is one subprocess running one worker of an official SDK.  It
speaks a line protocol (see ``peers/py_agent.py``): commands go to its stdin as
JSON lines, its answers and its events come back as ``@@ {json}`` lines.
Commands run concurrently inside the peer, so a test can start several and
collect the answers later (``send`` / ``answer``).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

PEERS_DIR = Path(__file__).resolve().parent / "peers"

#: Official SDKs under test: id -> (kind, version).
SDK_IDS = ("py-0.19.7", "py-0.25.0", "node-0.22.1")
PY_SDKS = ("py-0.19.7", "py-0.25.0")


@dataclass(frozen=True)
class Sdk:
    """One installed official SDK."""

    id: str  # e.g. "py-0.25.0"
    kind: str  # "python" or "node"
    version: str
    executable: Path
    script: Path
    env: tuple[tuple[str, str], ...] = ()

    @property
    def root(self) -> Path:
        """Where the SDK is installed (a venv, or the npm project)."""
        if self.kind == "python":
            return self.executable.parent.parent
        return Path(dict(self.env)["III_NODE_PEER_ROOT"])

    @property
    def legacy(self) -> bool:
        """iii-sdk 0.19.7: the release our documented API describes (no reattach,
        no invocation metadata, no reconnect after a normal close)."""
        return self.id == "py-0.19.7"

    @property
    def has_invocation_metadata(self) -> bool:
        return not self.legacy

    @property
    def has_reattach(self) -> bool:
        return not self.legacy


class PeerError(AssertionError):
    pass


def poll(predicate: Callable[[], Any], *, timeout: float = 60.0, interval: float = 0.05) -> Any:
    """Call ``predicate`` until it returns something truthy, and return that.

    The timeout only turns a hang into a failure; it is not a bound on how fast
    anything must happen (the suite must pass on a loaded machine).
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"still false after {timeout:g}s: {predicate}")
        time.sleep(interval)


def _clean_env(home: Path, extra: Iterable[tuple[str, str]], otel: bool) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("III_", "OTEL_", "NODE_OPTIONS", "PYTHON"))
    }
    env["HOME"] = str(home)  # 0.25 writes ~/.iii/run markers
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    if not otel:
        env["OTEL_ENABLED"] = "false"
    env.update(extra)
    return env


class PeerAgent:
    """One official-SDK worker in a subprocess."""

    def __init__(
        self,
        sdk: Sdk,
        url: str,
        name: str,
        *,
        home: Path,
        log_dir: Path,
        fast_reconnect: bool = True,
        otel: bool = False,
        headers: Optional[dict[str, str]] = None,
        namespace: Optional[str] = None,
        env: Optional[dict[str, str]] = None,
    ) -> None:
        self.sdk = sdk
        self.url = url
        self.name = name
        flags = []
        if fast_reconnect:
            flags.append("--fast-reconnect")
        if otel:
            flags.append("--otel")
        flags.extend(f"--header={k}={v}" for k, v in (headers or {}).items())
        if namespace:
            flags.append(f"--namespace={namespace}")
        log_dir.mkdir(parents=True, exist_ok=True)
        self.stderr_path = log_dir / f"{name}.stderr.log"
        self._stderr = open(self.stderr_path, "w")  # noqa: SIM115 (closed in close())
        self.noise: list[str] = []
        #: the engine's view of this worker (set by the fixtures once it announced)
        self.info: dict[str, Any] = {}
        self.events: list[dict[str, Any]] = []
        self._answers: dict[int, dict[str, Any]] = {}
        self._cond = threading.Condition()
        self._ids = itertools.count(1)
        self._eof = False
        cmd = [str(sdk.executable), str(sdk.script), url, name, *flags]
        self.proc = subprocess.Popen(
            cmd,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
            bufsize=1,
            env=_clean_env(home, (*sdk.env, *(env or {}).items()), otel),
            cwd=str(home),
        )
        self._reader = threading.Thread(target=self._read, name=f"peer-{name}", daemon=True)
        self._reader.start()
        try:
            self.ready = self.wait_event("ready", timeout=60)
        except PeerError:
            self.kill()  # never left running: nobody holds it to close it later
            raise
        # The peer runs the official SDK it was installed with, never this project.
        # (Resolved: .cache may be a symlink, and node reports the real path.)
        module = Path(str(self.ready.get("module") or "/")).resolve()
        if self.ready.get("version") != sdk.version or not module.is_relative_to(
            sdk.root.resolve()
        ):
            self.kill()
            raise PeerError(f"{name}: not the official {sdk.id}: {self.ready}")

    # -- plumbing ------------------------------------------------------------------

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if not line.startswith("@@ "):
                self.noise.append(line.rstrip("\n"))
                continue
            obj = json.loads(line[3:])
            with self._cond:
                if "id" in obj and "event" not in obj:
                    self._answers[obj["id"]] = obj
                else:
                    self.events.append(obj)
                self._cond.notify_all()
        with self._cond:
            self._eof = True
            self._cond.notify_all()

    def stderr_tail(self, lines: int = 40) -> str:
        try:
            text = self.stderr_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def _describe(self) -> str:
        return (
            f"peer {self.name} ({self.sdk.id}, exit={self.proc.poll()})\n"
            f"stderr tail:\n{self.stderr_tail()}\nstdout noise tail:\n"
            + "\n".join(self.noise[-20:])
        )

    # -- commands --------------------------------------------------------------------

    def send(self, op: str, **args: Any) -> int:
        """Start a command; returns its id (see ``answer``)."""
        cmd_id = next(self._ids)
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(json.dumps({"id": cmd_id, "op": op, **args}) + "\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, ValueError) as exc:
            raise PeerError(f"cannot send {op}: {exc}\n{self._describe()}") from exc
        return cmd_id

    def answer(self, cmd_id: int, timeout: float = 30.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        with self._cond:
            while cmd_id not in self._answers:
                left = deadline - time.monotonic()
                if left <= 0 or self._eof:
                    raise PeerError(
                        f"no answer to command {cmd_id} within {timeout}s\n{self._describe()}"
                    )
                self._cond.wait(min(left, 0.5))
            return self._answers.pop(cmd_id)

    def call(self, op: str, timeout: float = 30.0, **args: Any) -> dict[str, Any]:
        """Run a command and return its answer (``ok`` false answers included)."""
        return self.answer(self.send(op, **args), timeout)

    def ok(self, op: str, timeout: float = 30.0, **args: Any) -> dict[str, Any]:
        """Run a command that must succeed."""
        out = self.call(op, timeout, **args)
        if not out.get("ok"):
            raise PeerError(f"{self.name}: {op} {args} failed: {out}\n{self._describe()}")
        return out

    # -- events ----------------------------------------------------------------------

    def wait_event(
        self,
        event: str,
        where: Optional[Callable[[dict[str, Any]], bool]] = None,
        *,
        timeout: float = 10.0,
        count: int = 1,
    ) -> dict[str, Any]:
        """Wait until ``count`` events named ``event`` (matching ``where``) were seen."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                found = self.find_events(event, where)
                if len(found) >= count:
                    return found[count - 1]
                left = deadline - time.monotonic()
                if left <= 0 or self._eof:
                    raise PeerError(
                        f"no {event!r} event (x{count}) within {timeout}s; "
                        f"events: {self.events[-10:]}\n{self._describe()}"
                    )
                self._cond.wait(min(left, 0.5))

    def find_events(
        self, event: str, where: Optional[Callable[[dict[str, Any]], bool]] = None
    ) -> list[dict[str, Any]]:
        with self._cond:
            return [
                e for e in self.events if e.get("event") == event and (where is None or where(e))
            ]

    # -- lifetime --------------------------------------------------------------------

    def close(self, timeout: float = 15.0) -> Optional[int]:
        """Shut the worker down (kill it if it does not exit); returns the exit code."""
        if self.proc.poll() is None:
            try:
                assert self.proc.stdin is not None
                self.proc.stdin.write(json.dumps({"op": "shutdown"}) + "\n")
                self.proc.stdin.close()
            except (BrokenPipeError, ValueError, OSError):
                pass
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._reader.join(5)
        if self.proc.stdout is not None and not self._reader.is_alive():
            self.proc.stdout.close()
        self._stderr.close()
        return self.proc.returncode

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.close()


class TcpProxy:
    """A TCP relay in front of the engine that can cut its clients off while the
    engine's side of each connection stays open: the engine keeps a half-open
    "ghost" of every cut worker (the case ``reattach`` exists for, docs/protocol.md#reconnect).
    """

    def __init__(self, upstream_url: str) -> None:
        host, _, port = upstream_url.removeprefix("ws://").rstrip("/").rpartition(":")
        self.upstream = (host, int(port))
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.url = f"ws://127.0.0.1:{self.port}"
        self._lock = threading.Lock()
        self._live: list[tuple[socket.socket, socket.socket]] = []
        self._ghosts: list[socket.socket] = []
        self._closed = False
        threading.Thread(target=self._accept, name="tcp-proxy", daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            try:
                up = socket.create_connection(self.upstream, timeout=5)
                up.settimeout(None)
            except OSError:
                client.close()
                continue
            with self._lock:
                if self._closed:
                    client.close()
                    up.close()
                    return
                self._live.append((client, up))
            for src, dst in ((client, up), (up, client)):
                threading.Thread(target=self._pump, args=(src, dst, client), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, client: socket.socket) -> None:
        while True:
            try:
                data = src.recv(65536)
            except OSError:
                data = b""
            if not data:
                break
            try:
                dst.sendall(data)
            except OSError:
                break
        with self._lock:
            ghost = any(g is dst or g is src for g in self._ghosts)
        if not ghost:
            with contextlib.suppress(OSError):
                dst.shutdown(socket.SHUT_WR)

    def cut_clients(self) -> int:
        """Reset every client connection (the SDK sees a dropped socket); keep the
        engine side open and silent.  Returns how many were cut."""
        with self._lock:
            live, self._live = self._live, []
            self._ghosts.extend(up for _, up in live)
        for client, _ in live:
            with contextlib.suppress(OSError):
                client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                client.shutdown(socket.SHUT_RD)
            client.close()
        return len(live)

    def release_ghosts(self) -> None:
        """Close the engine side of the cut connections."""
        with self._lock:
            ghosts, self._ghosts = self._ghosts, []
        for up in ghosts:
            with contextlib.suppress(OSError):
                up.shutdown(socket.SHUT_RDWR)
            up.close()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            live, self._live = self._live, []
        self.listener.close()
        for client, up in live:
            for s in (client, up):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                s.close()
        self.release_ghosts()
