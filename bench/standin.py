"""The engine stand-in: the least an engine must do for each workload, on raw asyncio.

    python -m bench.standin --mode inbound --payload tiny --inflight 64 --warmup 0.3 --duration 1

It listens on an ephemeral port and prints ``PORT <n>``.  One worker connects
(any ``/otel`` socket, the official SDK's telemetry, is accepted and its bytes
dropped).  The stand-in completes the upgrade, sends ``workerregistered``,
ignores registrations, answers ``engine::workers::register`` when it carries
an ``invocation_id`` (our SDK waits for it; the official SDK sends it void), and:

* ``inbound``: from the worker's ``registerfunction bench::echo`` on, keeps
  ``--inflight`` ``invokefunction`` frames outstanding and counts the
  ``invocationresult`` frames; latency is timed here, per invocation.
* ``cold``: fires one invocation at ``bench::echo`` and reports when its
  result arrived (``time.monotonic()``, the runner's clock too).
* ``outbound``: answers every ``invokefunction`` at once, and counts them.
* ``pending``: answers the first few, then withholds results; answers
  ``bench::ping`` with the number withheld, and ``bench::release`` by
  answering everything withheld.

The window is ``--warmup`` seconds after the first invocation, for
``--duration`` seconds.  Over it, the worker's CPU time (``/proc/<pid>/stat``,
all threads, including ones that exited; the pid comes in the URL query) and
the stand-in's own CPU time are sampled.  The result is one line
``@@ {json}`` on stdout; the stand-in then serves on until stdin closes.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import sys
import time
import uuid
from typing import Any, Optional
from urllib.parse import parse_qs, urlsplit

import orjson

from . import _ws
from .payloads import OUTBOUND_RESULT, payload_bytes

_TICK = os.sysconf("SC_CLK_TCK")
_ID_KEY = b'"invocation_id":"'
_RESULT_TAG = b'"invocationresult"'
_INVOKE_TAG = b'"invokefunction"'
_ECHO_FID = b'"function_id":"bench::echo"'
_HEAD = 192
_TAIL = 96


def proc_cpu(pid: int) -> float:
    """User + system CPU seconds of a whole process (all its threads, dead ones too)."""
    with open(f"/proc/{pid}/stat", "rb") as fh:
        stat = fh.read()
    fields = stat[stat.rindex(b")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


def percentile(sorted_values: list[float], q: float) -> Optional[float]:
    if not sorted_values:
        return None
    i = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[i]


class Bench:
    """The workload: counters, the window, the result."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.mode: str = args.mode
        self.conn: Optional[EngineConn] = None
        self.worker_pid: Optional[int] = None
        self.started = False
        self.firing = False
        self.in_window = False
        self.done = False
        self.count = 0  # completed in the window
        self.total = 0
        self.latencies: list[float] = []
        self.sent_at: list[float] = []  # by invocation number
        self.next_id = 0
        self.withheld: list[tuple[str, str]] = []
        self.answered_echo = 0
        self.cpu0 = self.own0 = self.t0 = 0.0
        body = payload_bytes(args.payload)
        self.inv_prefix = b'{"type":"invokefunction","function_id":"bench::echo","invocation_id":"'
        self.inv_suffix = b'","data":' + body + b"}"
        length = len(self.inv_prefix) + 36 + len(self.inv_suffix)
        self.inv_head = _ws.header(_ws.OP_TEXT, length) + self.inv_prefix
        self.result = orjson.dumps(OUTBOUND_RESULT)
        body = b'{"type":"invocationresult","invocation_id":"'
        tail = b'","function_id":"bench::echo","result":' + self.result + b"}"
        self.echo_head = _ws.header(_ws.OP_TEXT, len(body) + 36 + len(tail)) + body
        self.echo_tail = tail

    # -- invocations we fire -------------------------------------------------

    def invokes(self, k: int) -> bytes:
        """``k`` invocations of bench::echo, numbered on from the last."""
        n = self.next_id
        self.next_id = n + k
        self.sent_at.extend([time.perf_counter()] * k)
        head, suffix = self.inv_head, self.inv_suffix
        return b"".join(
            [head + b"00000000-0000-4000-8000-%012x" % i + suffix for i in range(n, n + k)]
        )

    def start(self) -> None:
        if self.started:
            return
        self.started = True
        loop = asyncio.get_running_loop()
        if self.mode == "cold":
            assert self.conn is not None
            self.conn.write(self.invokes(1))
            return
        if self.mode == "inbound":
            self.firing = True
            assert self.conn is not None
            self.conn.write(self.invokes(self.args.inflight))
        loop.call_later(self.args.warmup, self.begin_window)

    def begin_window(self) -> None:
        self.in_window = True
        self.count = 0
        self.latencies.clear()
        self.cpu0 = self.worker_cpu()
        self.own0 = time.process_time()
        self.t0 = time.perf_counter()
        asyncio.get_running_loop().call_later(self.args.duration, self.end_window)

    def worker_cpu(self) -> float:
        if self.worker_pid is None:
            return float("nan")
        try:
            return proc_cpu(self.worker_pid)
        except OSError:
            return float("nan")

    def end_window(self) -> None:
        elapsed = time.perf_counter() - self.t0
        cpu = self.worker_cpu() - self.cpu0
        own = time.process_time() - self.own0
        self.in_window = False
        self.firing = False
        self.done = True
        lat = sorted(self.latencies)
        n = self.count
        self.report(
            {
                "count": n,
                "elapsed": elapsed,
                "rate": n / elapsed if elapsed > 0 else 0.0,
                "worker_cpu": cpu,
                "worker_cpu_per_op_us": cpu / n * 1e6 if n else None,
                "worker_cpu_util": cpu / elapsed if elapsed > 0 else None,
                "standin_cpu": own,
                "standin_cpu_per_op_us": own / n * 1e6 if n else None,
                "standin_cpu_util": own / elapsed if elapsed > 0 else None,
                "p50_us": (percentile(lat, 0.5) or 0.0) * 1e6 if lat else None,
                "p99_us": (percentile(lat, 0.99) or 0.0) * 1e6 if lat else None,
                "worker_pid": self.worker_pid,
            }
        )

    def report(self, obj: dict[str, Any]) -> None:
        sys.stdout.write("@@ " + orjson.dumps(obj).decode() + "\n")
        sys.stdout.flush()

    # -- frames from the worker ----------------------------------------------

    def on_results(self, ids: list[bytes]) -> None:
        now = time.perf_counter()
        sent_at = self.sent_at
        done = 0
        for iid in ids:
            try:
                n = int(iid[24:], 16)
                t = sent_at[n]
            except (ValueError, IndexError):
                continue
            done += 1
            if self.in_window:
                self.latencies.append(now - t)
        self.total += done
        if self.in_window:
            self.count += done
        if self.mode == "cold" and not self.done:
            self.done = True
            self.report({"first_result_at": time.monotonic(), "worker_pid": self.worker_pid})
            return
        if self.firing and self.conn is not None:
            self.conn.write(self.invokes(done))

    def on_frame(self, obj: dict[str, Any]) -> None:
        kind = obj.get("type")
        if kind == "registerfunction":
            if obj.get("id") == "bench::echo" and self.mode in ("inbound", "cold"):
                self.start()
        elif kind == "invokefunction":
            self.on_invoke(obj)
        elif kind == "invocationresult":
            iid = obj.get("invocation_id")
            if isinstance(iid, str):
                self.on_results([iid.encode()])

    def answered_outbound(self) -> None:
        if not self.started:
            self.start()
        self.total += 1
        if self.in_window:
            self.count += 1

    def on_invoke(self, obj: dict[str, Any]) -> None:
        fid = obj.get("function_id")
        iid = obj.get("invocation_id")
        conn = self.conn
        assert conn is not None
        if fid == "engine::workers::register":
            data = obj.get("data")
            if self.worker_pid is None and isinstance(data, dict):
                pid = data.get("pid")
                self.worker_pid = pid if isinstance(pid, int) else None
            if iid is not None:
                conn.answer(iid, fid, {"success": True})
            return
        if iid is None:
            return
        if self.mode == "outbound":
            conn.answer(iid, fid, None)
            self.answered_outbound()
        elif self.mode == "pending":
            if fid == "bench::ping":
                conn.answer(iid, fid, {"withheld": len(self.withheld)})
            elif fid == "bench::release":
                held, self.withheld = self.withheld, []
                conn.write(b"".join(conn.result_frame(i, f, None) for i, f in held))
                conn.answer(iid, fid, {"released": len(held)})
            elif self.answered_echo < self.args.answer_first:
                self.answered_echo += 1
                conn.answer(iid, fid, None)
            else:
                self.withheld.append((iid, fid))
        else:
            conn.answer(iid, fid, None)


class EngineConn(asyncio.Protocol):
    def __init__(self, bench: Bench) -> None:
        self.bench = bench
        self.transport: Optional[asyncio.Transport] = None
        self.http = bytearray()
        self.upgraded = False
        self.sink = False
        self.reader = _ws.FrameReader()
        self.fragments: list[bytes] = []
        self.out: list[bytes] = []
        self.batching = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def connection_lost(self, exc: Optional[Exception]) -> None:
        if self.bench.conn is self:
            self.bench.conn = None

    def write(self, data: bytes) -> None:
        """Queue bytes; everything produced by one read goes out in one write."""
        if data:
            self.out.append(data)
            if not self.batching:
                self.flush()

    def flush(self) -> None:
        if self.out and self.transport is not None:
            self.transport.write(b"".join(self.out))
        self.out.clear()

    def result_frame(self, iid: str, fid: Any, result: Any) -> bytes:
        if result is None:  # the canned outbound result, as raw JSON bytes
            body = (
                b'{"type":"invocationresult","invocation_id":'
                + orjson.dumps(iid)
                + b',"function_id":'
                + orjson.dumps(fid)
                + b',"result":'
                + self.bench.result
                + b"}"
            )
        else:
            body = orjson.dumps(
                {
                    "type": "invocationresult",
                    "invocation_id": iid,
                    "function_id": fid,
                    "result": result,
                }
            )
        return _ws.server_frame(body)

    def answer(self, iid: str, fid: Any, result: Any) -> None:
        self.write(self.result_frame(iid, fid, result))

    def data_received(self, data: bytes) -> None:
        if self.sink:
            # Telemetry is dropped unread; only a Close is answered (so the
            # official SDK's shutdown does not wait for it).
            for opcode, _fin, _payload, _key in self.reader.feed(data):
                if opcode == _ws.OP_CLOSE:
                    self.write(_ws.server_frame(b"", _ws.OP_CLOSE))
                    if self.transport is not None:
                        self.transport.close()
            return
        self.batching = True
        try:
            self.receive(data)
        finally:
            self.batching = False
            self.flush()

    def receive(self, data: bytes) -> None:
        if not self.upgraded:
            self.http += data
            end = self.http.find(b"\r\n\r\n")
            if end < 0:
                return
            self.handshake(bytes(self.http[:end]))
            rest = bytes(self.http[end + 4 :])
            self.http.clear()
            if not rest:
                return
            if self.sink:
                self.data_received(rest)
                return
            data = rest
        results: list[bytes] = []
        for opcode, fin, payload, key in self.reader.feed(data):
            if opcode == _ws.OP_TEXT or opcode == _ws.OP_BINARY or opcode == _ws.OP_CONT:
                if not fin or self.fragments:
                    self.fragments.append(_ws.mask(payload, key) if key else payload)
                    if not fin:
                        continue
                    payload, key = b"".join(self.fragments), None
                    self.fragments = []
                self.on_message(payload, key, results)
            elif opcode == _ws.OP_PING:
                body = _ws.mask(payload, key) if key else payload
                self.write(_ws.server_frame(body, _ws.OP_PONG))
            elif opcode == _ws.OP_CLOSE:
                self.write(_ws.server_frame(b"", _ws.OP_CLOSE))
                if self.transport is not None:
                    self.transport.close()
                return
        if results:
            self.bench.on_results(results)

    def on_message(self, payload: bytes, key: Optional[bytes], results: list[bytes]) -> None:
        if key is not None:
            # Fast path for results: unmask only the ends, where the type and id are.
            n = len(payload)
            head = _ws.mask(payload[:_HEAD], key)
            if _RESULT_TAG in head:
                i = head.find(_ID_KEY)
                if i >= 0 and len(head) >= i + 53:
                    results.append(head[i + 17 : i + 53])
                    return
            elif n <= _HEAD and self.bench.mode == "outbound" and _INVOKE_TAG in head:
                # Fast path for outbound calls of bench::echo: answer by splicing the id.
                i = head.find(_ID_KEY)
                if i >= 0 and len(head) >= i + 53 and _ECHO_FID in head:
                    bench = self.bench
                    self.write(bench.echo_head + head[i + 17 : i + 53] + bench.echo_tail)
                    bench.answered_outbound()
                    return
            if n > _HEAD:
                tail_at = max(_HEAD, n - _TAIL)
                tail = _ws.mask_at(payload[tail_at:], key, tail_at)
                if _RESULT_TAG in head or _RESULT_TAG in tail:
                    for part in (head, tail):
                        i = part.find(_ID_KEY)
                        if i >= 0 and len(part) >= i + 53:
                            results.append(part[i + 17 : i + 53])
                            return
            text = head if n <= _HEAD else _ws.mask(payload, key)
        else:
            text = payload
        obj = orjson.loads(text)
        if isinstance(obj, dict):
            if obj.get("type") == "invocationresult" and isinstance(obj.get("invocation_id"), str):
                results.append(obj["invocation_id"].encode())
            else:
                self.bench.on_frame(obj)

    def handshake(self, request: bytes) -> None:
        lines = request.decode("latin-1").split("\r\n")
        target = lines[0].split(" ")[1] if len(lines[0].split(" ")) > 1 else "/"
        key = b""
        for line in lines[1:]:
            name, _, value = line.partition(":")
            if name.strip().lower() == "sec-websocket-key":
                key = value.strip().encode()
        assert self.transport is not None
        self.transport.write(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Accept: " + _ws.accept_key(key) + b"\r\n\r\n"
        )
        self.upgraded = True
        parts = urlsplit(target)
        if parts.path.rstrip("/").endswith("otel"):
            self.sink = True  # the official SDK's telemetry socket
            return
        pid = parse_qs(parts.query).get("pid")
        bench = self.bench
        if pid and bench.worker_pid is None:
            bench.worker_pid = int(pid[0])
        bench.conn = self
        frame = {
            "type": "workerregistered",
            "worker_id": str(uuid.uuid4()),
            "reattach_token": str(uuid.uuid4()),
        }
        self.write(_ws.server_frame(orjson.dumps(frame)))


async def main(argv: Optional[list[str]] = None) -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--mode", choices=["inbound", "cold", "outbound", "pending"], required=True)
    p.add_argument("--payload", default="tiny", choices=["tiny", "1k", "64k"])
    p.add_argument("--inflight", type=int, default=64)
    p.add_argument("--warmup", type=float, default=0.3)
    p.add_argument("--duration", type=float, default=1.0)
    p.add_argument("--answer-first", type=int, default=16)
    p.add_argument(
        "--fd", type=int, default=None, help="listening socket inherited from the runner"
    )
    args = p.parse_args(argv)
    bench = Bench(args)
    loop = asyncio.get_running_loop()
    if args.fd is not None:  # a socket the runner bound and listens on
        sock = socket.socket(fileno=args.fd)
        server = await loop.create_server(lambda: EngineConn(bench), sock=sock)
    else:
        server = await loop.create_server(lambda: EngineConn(bench), "127.0.0.1", 0, backlog=16)
    port = server.sockets[0].getsockname()[1]
    sys.stdout.write(f"PORT {port}\n")
    sys.stdout.flush()
    stop = asyncio.Event()

    def on_stdin() -> None:
        if not os.read(sys.stdin.fileno(), 4096):
            loop.remove_reader(sys.stdin.fileno())
            stop.set()

    loop.add_reader(sys.stdin.fileno(), on_stdin)
    await stop.wait()
    server.close()


if __name__ == "__main__":
    asyncio.run(main())
