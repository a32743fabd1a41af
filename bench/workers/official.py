"""Candidate: the official iii-sdk 0.25.0 from PyPI, in its own venv.

    .cache/bench/official-0.25.0/bin/python -E -s bench/workers/official.py MODE URL [...]

Run by path (so ``_common`` is importable and this repository's ``iii`` is
not), with ``HOME`` set to a scratch directory (0.25 writes ~/.iii/run
markers).  Its default settings; ``OTEL_ENABLED=false`` in the environment
gives the second configuration.  Modes as in ``ours.py``.
"""

from __future__ import annotations

import asyncio
import os
import threading
from typing import Any

import _common as c  # type: ignore[import-not-found]

import iii

MODES = ["inbound", "cold", "outbound-sync", "outbound-async", "pending"]


def main() -> None:
    args = c.parser(MODES).parse_args()
    url = c.url_with_pid(args.url)
    worker = iii.register_worker(url, iii.InitOptions(worker_name=f"bench-off-{os.getpid()}"))
    if args.mode in ("inbound", "cold"):
        worker.register_function("bench::echo", c.aecho if args.handler == "async" else c.echo)
        threading.Event().wait(args.lifetime or None)
    elif args.mode == "outbound-sync":
        request = {"function_id": "bench::echo", "payload": c.TINY_CALL}
        c.emit(c.sync_callers(lambda: worker.trigger(request), args.warmup, args.duration))
    elif args.mode == "outbound-async":
        request = {"function_id": "bench::echo", "payload": c.TINY_CALL}

        def call() -> Any:
            return worker.trigger_async(request)

        c.emit(asyncio.run(c.asyncio_callers(call, args.callers, args.warmup, args.duration)))
    elif args.mode == "pending":

        def pcall(fid: str, payload: Any) -> Any:
            return worker.trigger_async({"function_id": fid, "payload": payload})

        c.emit(asyncio.run(c.pending_memory(pcall, args.pending)))
    worker.shutdown()


if __name__ == "__main__":
    main()
