"""``python -m soak.engine --port N``: the reference engine with a control pipe.

The soak runs the engine in its own process, so that ``kill -9`` is a real fault
(the process dies with its sockets, and a new one listens on the same port) and
the engine's CPU does not share the workers' GIL.  The other faults need the
engine's own controls (``drop`` with a close code, ``restart``...), so this
process is ``serve_engine`` exactly as ``python -m iii.testing`` runs it, plus a
command loop on stdin: one JSON object a line in, one JSON object a line out.

Commands (``op``):

* ``workers``: ``{"workers": [{"worker_id", "name"}, ...]}``
* ``drop``: ``name`` (a worker name), ``code`` (a close code, or null to abort
  the TCP stream without a Close frame): ``{"dropped": n}``
* ``drop_all``: ``code`` as for ``drop``: ``{"dropped": n}``
* ``garbage``: ``name``, ``hex``: write those bytes to the worker's TCP stream as
  they are (not a WebSocket frame): ``{"sent": n}``
* ``restart``, ``stop``, ``start``: the engine's own (same port, state lost)
* ``stats``: ``Engine.stats()`` and ``queue_stats()``

The first line written is the engine URL.  End of stdin stops the engine.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import Any, Optional

import anyio
import anyio.to_thread

from iii.testing import Engine, serve_engine


async def _command(engine: Engine, request: dict[str, Any]) -> dict[str, Any]:
    op = request.get("op")
    if op == "workers":
        return {
            "workers": [
                {"worker_id": w["worker_id"], "name": w["name"]}
                for w in (engine.workers() if engine.running else [])
            ]
        }
    if op == "drop":
        if not engine.running:
            return {"dropped": 0}
        code: Optional[int] = request.get("code")
        ids = [w["worker_id"] for w in engine.workers() if w["name"] == request["name"]]
        for worker_id in ids:
            engine.drop(str(worker_id), code=code)
        return {"dropped": len(ids)}
    if op == "garbage":
        ids = [w["worker_id"] for w in engine.workers() if w["name"] == request["name"]]
        for worker_id in ids:
            engine.send_raw(str(worker_id), bytes.fromhex(request["hex"]))
        return {"sent": len(ids)}
    if op == "drop_all":
        return {"dropped": engine.drop_all(code=request.get("code")) if engine.running else 0}
    if op == "restart":
        await engine.restart()
        return {"generation": engine.generation}
    if op == "stop":
        await engine.stop()
        return {"running": engine.running}
    if op == "start":
        await engine.start()
        return {"running": engine.running}
    if op == "stats":
        if not engine.running:
            return {"running": False}
        return {"running": True, **engine.stats(), "queue": engine.queue_stats()}
    return {"error": f"unknown op {op!r}"}


async def _serve(port: int) -> None:
    # No transcript: a 250 s soak would only fill memory with frames nobody reads.
    async with serve_engine("127.0.0.1", port, transcript=False) as engine:
        print(engine.url, flush=True)
        while True:
            line = await anyio.to_thread.run_sync(sys.stdin.readline)
            if not line:
                return
            try:
                answer = await _command(engine, json.loads(line))
            except Exception as exc:  # the runner reports it; the engine keeps serving
                answer = {"error": f"{type(exc).__name__}: {exc}"}
            print(json.dumps(answer, default=str), flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m soak.engine")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--log-level", default="WARNING")
    args = parser.parse_args()
    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    anyio.run(_serve, args.port)
    return 0


if __name__ == "__main__":
    sys.exit(main())
