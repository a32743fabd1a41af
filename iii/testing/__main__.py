"""``python -m iii.testing``: run the reference engine until interrupted.

Prints the engine URL (one line) as soon as it listens; with ``--rbac`` a second
line gives the RBAC listener's URL.  SIGINT or SIGTERM stops it.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
from collections.abc import Sequence
from typing import Any, Optional

import anyio

from ._server import DEFAULT_PORT, serve_engine


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m iii.testing",
        description="Run the iii reference engine (for tests and local development).",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT}; 0 = any)"
    )
    p.add_argument(
        "--rbac",
        metavar="JSON_OR_FILE",
        help="RBAC listener config, inline JSON or a JSON file: "
        '{"auth_function_id": ..., "expose_functions": [...], "middleware_function_id": ...}',
    )
    p.add_argument("--rbac-port", type=int, default=0, help="port of the RBAC listener (0 = any)")
    p.add_argument(
        "--namespace-grace-ms",
        type=int,
        default=None,
        help="registration grace period (default $III_NAMESPACE_GRACE_MS or 5000)",
    )
    p.add_argument("--no-queue", action="store_true", help="no built-in in-memory queue")
    p.add_argument(
        "--lenient-frames",
        action="store_true",
        help="read a missing invokefunction.data / registertrigger.config as null "
        "(the official SDKs omit them; by default such a frame is dropped, like the real engine)",
    )
    p.add_argument("--transcript", metavar="FILE", help="write the frame transcript here at exit")
    p.add_argument("--log-level", default="INFO", help="logging level (default INFO)")
    return p


def _load_rbac(value: Optional[str]) -> Optional[dict[str, Any]]:
    if value is None:
        return None
    text = value
    if not value.lstrip().startswith("{") and os.path.exists(value):
        with open(value, encoding="utf-8") as fh:
            text = fh.read()
    loaded = json.loads(text)
    if not isinstance(loaded, dict):
        raise SystemExit("--rbac must be a JSON object")
    rbac = loaded.get("rbac", loaded)
    if not isinstance(rbac, dict):
        raise SystemExit("--rbac must be a JSON object")
    return rbac


async def _serve(args: argparse.Namespace) -> None:
    grace = args.namespace_grace_ms / 1000 if args.namespace_grace_ms is not None else None
    async with serve_engine(
        args.host,
        args.port,
        rbac=_load_rbac(args.rbac),
        rbac_port=args.rbac_port,
        transcript=args.transcript is not None,
        namespace_grace=grace,
        queue=not args.no_queue,
        lenient_frames=args.lenient_frames,
    ) as engine:
        with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            print(engine.url, flush=True)
            if engine.rbac_url is not None:
                print(engine.rbac_url, flush=True)
            async for signum in signals:
                logging.getLogger("iii.testing").info(
                    "received %s, stopping", signal.Signals(signum).name
                )
                break
        if args.transcript:
            engine.dump_transcript(args.transcript)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        anyio.run(_serve, args)
    except OSError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
