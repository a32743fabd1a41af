"""The sans-I/O core alone: CPU per invocation through a connected ``Connection``.

    python -m bench.core_micro                    # this tree vs main, interleaved
    python -m bench.core_micro --baseline HEAD~3  # vs any commit
    python -m bench.core_micro --rounds 7 --only in-tiny out-tiny

No sockets, no event loop, no threads: the engine's bytes are prebuilt, so
what is measured is the core's own work per invocation (framing, JSON,
frame decoding and encoding, events), which is the floor under every runtime.

* ``in-<size>``: the engine sends ``invokefunction`` frames of ``bench::echo``
  64 at a time, cut into reads of at most 64 KiB (as a transport reads them);
  the worker answers each ``InvocationRequested`` with ``send_result`` of its
  data and takes ``data_to_send()`` once per read.
* ``out-<size>``: 64 ``invoke`` calls, ``data_to_send()``, then the engine's
  64 ``invocationresult`` frames (reads of at most 64 KiB) and the
  ``InvocationSucceeded`` events drained.

Sizes are the payloads of ``make bench`` (``bench/payloads.py``): tiny, 1k, 64k.

Each round runs the baseline (the ``iii_protocol`` of ``--baseline``, taken
with ``git archive`` into a scratch directory) and this tree in fresh
processes, alternating which goes first; a figure is the median over rounds of
the CPU time per operation (``time.process_time``, so other jobs on the machine
cost little).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BATCH = 64
READ = 65536
SIZES = ("tiny", "1k", "64k")
WORKLOADS = tuple(f"{d}-{s}" for d in ("in", "out") for s in SIZES)


# -- the measured side (a fresh process with one core on sys.path) ---------------


def _ws_frame(payload: bytes) -> bytes:
    """An engine's (unmasked) text frame."""
    n = len(payload)
    if n < 126:
        head = bytes((0x81, n))
    elif n <= 0xFFFF:
        head = bytes((0x81, 126)) + n.to_bytes(2, "big")
    else:
        head = bytes((0x81, 127)) + n.to_bytes(8, "big")
    return head + payload


def _uuid(i: int) -> str:
    return f"00000000-0000-4000-8000-{i:012x}"


def _reads(data: bytes) -> list[bytes]:
    return [data[i : i + READ] for i in range(0, len(data), READ)]


class _Core:
    """A ``Connection`` connected to a canned engine."""

    def __init__(self, new_id: Callable[[], str]) -> None:
        import base64
        import hashlib
        import re

        from iii_protocol import Config, Connection, RegisterFunction

        self.conn = conn = Connection(
            Config(url="ws://engine.test:49134/", invocation_timeout=1e9), new_id=new_id
        )
        conn.register_function(RegisterFunction(id="bench::echo"))
        conn.connect(0.0)
        conn.transport_opened(0.0)
        request = conn.data_to_send()
        match = re.search(rb"(?i)sec-websocket-key: *([^\r]+)", request)
        assert match is not None
        accept = base64.b64encode(
            hashlib.sha1(match.group(1) + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest()
        )
        conn.receive_data(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n",
            0.0,
        )
        conn.receive_data(_ws_frame(b'{"type":"workerregistered","worker_id":"w-1"}'), 0.0)
        conn.data_to_send()
        list(conn.events())
        assert conn.state.name == "CONNECTED", conn.state


def _inbound(size: str) -> Callable[[int], None]:
    from bench.payloads import payload_bytes
    from iii_protocol import events as ev

    core = _Core(lambda: "unused")
    conn = core.conn
    body = payload_bytes(size)
    head = b'{"type":"invokefunction","function_id":"bench::echo","invocation_id":"'
    tail = b'","data":' + body + b"}"
    batches = [
        _reads(
            b"".join(_ws_frame(head + _uuid(b * BATCH + i).encode() + tail) for i in range(BATCH))
        )
        for b in range(4)
    ]
    requested = ev.InvocationRequested

    def run(rounds: int) -> None:
        receive, events, send_result = conn.receive_data, conn.events, conn.send_result
        for r in range(rounds):
            for data in batches[r % 4]:
                receive(data, 1.0)
                for event in events():
                    if type(event) is requested and event.invocation_id is not None:
                        send_result(event.invocation_id, event.function_id, event.data)
                conn.data_to_send()

    return run


def _outbound(size: str) -> Callable[[int], None]:
    from bench.payloads import payload, payload_bytes
    from iii_protocol import events as ev

    # Each batch is answered before the next is made, so the ids can repeat
    # and the engine's answers be built once.
    ids = itertools.cycle([_uuid(i) for i in range(BATCH)])
    core = _Core(lambda: next(ids))
    conn = core.conn
    data = payload(size)
    body = payload_bytes(size)
    head = b'{"type":"invocationresult","invocation_id":"'
    tail = b'","function_id":"bench::echo","result":' + body + b"}"
    answers = _reads(b"".join(_ws_frame(head + _uuid(i).encode() + tail) for i in range(BATCH)))
    succeeded = ev.InvocationSucceeded

    def run(rounds: int) -> None:
        invoke, receive, events = conn.invoke, conn.receive_data, conn.events
        for _ in range(rounds):
            for _ in range(BATCH):
                invoke("bench::echo", data, now=1.0)
            conn.data_to_send()
            got = 0
            for chunk in answers:
                receive(chunk, 1.0)
                for event in events():
                    got += type(event) is succeeded
            assert got == BATCH, got

    return run


def _measure(run: Callable[[int], None], budget: float) -> float:
    """CPU microseconds per invocation: the best of a few timed stretches."""
    run(2)  # warm up (and check it works)
    rounds = 1
    while True:
        start = time.process_time()
        run(rounds)
        spent = time.process_time() - start
        if spent > budget / 10 or rounds > 1 << 20:
            break
        rounds *= 2
    samples = []
    for _ in range(5):
        start = time.process_time()
        run(rounds)
        samples.append((time.process_time() - start) / (rounds * BATCH) * 1e6)
    return min(samples)


def _worker(core: str, only: list[str], budget: float) -> None:
    sys.path.insert(0, core)
    import iii_protocol

    assert Path(iii_protocol.__file__).resolve().is_relative_to(Path(core).resolve())
    out: dict[str, float] = {}
    for name in only:
        direction, size = name.split("-")
        run = _inbound(size) if direction == "in" else _outbound(size)
        out[name] = _measure(run, budget)
    print(json.dumps(out))


# -- the runner ------------------------------------------------------------------


def _baseline(ref: str, into: Path) -> Path:
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", ref, "iii_protocol"], check=True, capture_output=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into


def _run(core: Path, only: list[str], budget: float) -> dict[str, float]:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.core_micro",
            "--worker",
            str(core),
            "--budget",
            str(budget),
            "--only",
            *only,
        ],
        cwd=REPO,
        check=True,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONHASHSEED": "0"},
    )
    return json.loads(proc.stdout)  # type: ignore[no-any-return]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--baseline", help="git ref of the 'before' core (default: where HEAD left main)"
    )
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--only", nargs="*", default=list(WORKLOADS), choices=WORKLOADS)
    parser.add_argument("--budget", type=float, default=0.6, help="CPU seconds per figure")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        _worker(args.worker, args.only, args.budget)
        return 0
    results: dict[str, dict[str, list[float]]] = {"before": {}, "after": {}}
    if args.baseline is None:
        args.baseline = _git("merge-base", "HEAD", "main")[:9]
    with tempfile.TemporaryDirectory() as tmp:
        base = _baseline(args.baseline, Path(tmp))
        sides = {"before": base, "after": REPO}
        for r in range(args.rounds):
            order = ("before", "after") if r % 2 == 0 else ("after", "before")
            for side in order:
                for name, value in _run(sides[side], args.only, args.budget).items():
                    results[side].setdefault(name, []).append(value)
            print(f"round {r + 1}/{args.rounds} done", file=sys.stderr, flush=True)
    commit = _git("rev-parse", "--short", "HEAD")
    print(
        f"core_micro: CPU us per invocation, median of {args.rounds} interleaved rounds; "
        f"before = {args.baseline}, after = this tree ({commit}"
        f"{', modified' if _dirty() else ''}); Python {sys.version.split()[0]}\n"
    )
    print("| workload | before us/op | after us/op | after / before |")
    print("|---|--:|--:|--:|")
    for name in args.only:
        before = statistics.median(results["before"][name])
        after = statistics.median(results["after"][name])
        print(f"| {name} | {before:.1f} | {after:.1f} | {after / before:.2f}x |")
    return 0


def _git(*args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(REPO), *args], check=True, capture_output=True, text=True
    ).stdout.strip()


def _dirty() -> bool:
    return bool(_git("status", "--porcelain", "iii_protocol"))


if __name__ == "__main__":
    sys.exit(main())
