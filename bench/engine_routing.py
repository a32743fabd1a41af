"""How fast the reference engine routes: ``python -m bench.engine_routing``.

Runs ``python -m iii.testing`` in its own process and two raw clients (no SDK)
in this one: a handler that answers every invocation and a caller that keeps
``--inflight`` calls outstanding.  Prints routed calls per second and the
engine's CPU per routed call (read from /proc), which is what tells whether
the engine could ever be what limits a benchmark.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import orjson

from bench._ws import OP_TEXT, FrameReader, client_frame, upgrade_request

ROOT = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Client:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer, self.frames = reader, writer, FrameReader()

    @classmethod
    async def connect(cls, port: int, name: str) -> Client:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(upgrade_request("127.0.0.1", port, "/"))
        head = await reader.readuntil(b"\r\n\r\n")
        assert b" 101 " in head.split(b"\r\n", 1)[0], head
        client = cls(reader, writer)
        await client.receive()  # workerregistered
        client.send(
            {
                "type": "invokefunction",
                "function_id": "engine::workers::register",
                "data": {"name": name, "runtime": "bench", "pid": os.getpid()},
                "action": {"type": "void"},
            }
        )
        return client

    def send(self, frame: dict[str, object]) -> None:
        self.writer.write(client_frame(orjson.dumps(frame)))

    async def receive(self) -> list[dict[str, object]]:
        while True:
            data = await self.reader.read(65536)
            if not data:
                raise ConnectionError("engine closed the connection")
            frames = [orjson.loads(p) for op, _, p, _ in self.frames.feed(data) if op == OP_TEXT]
            if frames:
                return frames


async def run(port: int, seconds: float, inflight: int, engine_pid: int) -> tuple[float, float]:
    handler = await Client.connect(port, "bench-handler")
    handler.send({"type": "registerfunction", "id": "bench::echo"})
    caller = await Client.connect(port, "bench-caller")
    await asyncio.sleep(0.2)  # the registration is applied

    async def serve() -> None:
        while True:
            for frame in await handler.receive():
                if frame.get("type") == "invokefunction" and frame.get("invocation_id"):
                    handler.send(
                        {
                            "type": "invocationresult",
                            "function_id": "bench::echo",
                            "invocation_id": frame["invocation_id"],
                            "result": frame["data"],
                        }
                    )

    def call() -> None:
        caller.send(
            {
                "type": "invokefunction",
                "function_id": "bench::echo",
                "invocation_id": str(uuid.uuid4()),
                "data": {"n": 1},
            }
        )

    server = asyncio.ensure_future(serve())
    for _ in range(inflight):
        call()
    done = 0
    start = time.perf_counter()
    cpu0 = _cpu_seconds(engine_pid)
    while (elapsed := time.perf_counter() - start) < seconds:
        for frame in await caller.receive():
            if frame.get("type") == "invocationresult":
                assert "error" not in frame, frame
                done += 1
                call()
    cpu = _cpu_seconds(engine_pid) - cpu0
    server.cancel()
    return done / elapsed, cpu / max(done, 1) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--inflight", type=int, default=128)
    args = parser.parse_args()
    port = _free_port()
    engine = subprocess.Popen(
        [sys.executable, "-m", "iii.testing", "--port", str(port), "--log-level", "ERROR"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert engine.stdout is not None
        engine.stdout.readline()  # the URL: it is listening
        rate, cpu_us = asyncio.run(run(port, args.seconds, args.inflight, engine.pid))
    finally:
        engine.terminate()
        engine.wait(10)
    print(
        f"reference engine: {rate:,.0f} routed calls/s with {args.inflight} in flight; "
        f"{cpu_us:.1f} us of engine CPU per routed call "
        f"(~{1e6 / cpu_us:,.0f} calls/s of one core)"
    )


if __name__ == "__main__":
    main()
