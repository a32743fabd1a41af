"""``python -m iii.testing``: run the reference engine until interrupted.

Prints the engine URL (one line) as soon as it listens; with ``--rbac`` a second
line gives the RBAC listener's URL, then one ``name: url`` line per listener a
worker module opened (``http: http://127.0.0.1:3111``, the HTTP worker's routes;
``--http-port`` moves it).  SIGINT or SIGTERM stops it.  Worker modules are turned
off with ``--no-<module>`` and configured with their options' flags (see
``--help``).  A bad flag or
value is reported by argparse, naming the flag (exit status 2).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Optional

import anyio

from ._handle import serve_engine
from ._options import check_option, check_options, module_options
from ._server import DEFAULT_PORT
from ._transcript import DEFAULT_TRANSCRIPT_LIMIT
from ._workers import STANDARD_WORKERS
from ._workers.rest_api import DEFAULT_HTTP_PORT


def _typed(option: str, convert: Callable[[str], Any]) -> Callable[[str], Any]:
    """An argparse ``type``: convert the text, then check it as the engine option
    ``option``; argparse reports a failure with the flag's name."""

    def parse(text: str) -> Any:
        try:
            return check_option(option, convert(text))
        except (TypeError, ValueError) as exc:
            raise argparse.ArgumentTypeError(_problem(exc)) from None

    return parse


def _problem(exc: Exception) -> str:
    """The message of an option error without the option's name (argparse names the flag)."""
    head, sep, rest = str(exc).partition(": ")
    return rest if sep and head.startswith("reference engine option") else str(exc)


def _limit(text: str) -> Optional[int]:
    return None if text.strip().lower() == "none" else int(text)


def _grace_ms(text: str) -> float:
    ms = int(text)
    if ms < 0:
        raise ValueError(f"expected 0 or more milliseconds, got {ms}")
    return ms / 1000


def _json_or_file(value: str) -> Any:
    """A JSON value given inline or as the path of a JSON file."""
    text = value
    if not value.lstrip().startswith(("{", "[")) and os.path.exists(value):
        with open(value, encoding="utf-8") as fh:
            text = fh.read()
    try:
        return json.loads(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"neither JSON nor a JSON file: {exc}") from None


def _rbac(value: str) -> Any:
    text = value
    if not value.lstrip().startswith("{") and os.path.exists(value):
        with open(value, encoding="utf-8") as fh:
            text = fh.read()
    try:
        loaded = json.loads(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"neither JSON nor a JSON file: {exc}") from None
    rbac = loaded.get("rbac", loaded) if isinstance(loaded, dict) else loaded
    if not isinstance(rbac, dict):
        raise argparse.ArgumentTypeError("must be a JSON object")
    try:
        return check_options({"rbac": rbac})["rbac"]
    except (TypeError, ValueError) as exc:
        raise argparse.ArgumentTypeError(_problem(exc)) from None


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m iii.testing",
        description="Run the iii reference engine (for tests and local development).",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument(
        "--port",
        type=_typed("port", int),
        default=DEFAULT_PORT,
        help=f"port (default {DEFAULT_PORT}; 0 = any)",
    )
    p.add_argument(
        "--rbac",
        metavar="JSON_OR_FILE",
        type=_rbac,
        help="RBAC listener config, inline JSON or a JSON file: "
        '{"auth_function_id": ..., "expose_functions": [...], "middleware_function_id": ...}',
    )
    p.add_argument(
        "--rbac-port",
        type=_typed("rbac_port", int),
        default=0,
        help="port of the RBAC listener (0 = any)",
    )
    p.add_argument(
        "--namespace-grace-ms",
        metavar="MS",
        dest="namespace_grace",
        type=_typed("namespace_grace", _grace_ms),
        default=None,
        help="registration grace period (default $III_NAMESPACE_GRACE_MS or 5000)",
    )
    p.add_argument(
        "--lenient-frames",
        action="store_true",
        help="read a missing invokefunction.data / registertrigger.config as null (the "
        "official SDKs omit them; by default such a frame is dropped, like the real engine)",
    )
    p.add_argument("--transcript", metavar="FILE", help="write the frame transcript here at exit")
    p.add_argument(
        "--transcript-limit",
        metavar="N",
        type=_typed("transcript_limit", _limit),
        default=DEFAULT_TRANSCRIPT_LIMIT,
        help=f"transcript entries kept (default {DEFAULT_TRANSCRIPT_LIMIT}; 'none': all)",
    )
    p.add_argument("--log-level", default="INFO", help="logging level (default INFO)")
    _module_flags(p)
    return p


def _module_flags(p: argparse.ArgumentParser) -> None:
    """Flags of the worker modules, from their options: ``--no-<switch>`` turns a
    module off, ``--<option>`` sets one of its options (``--queue-max-attempts 5``)."""
    group = p.add_argument_group("worker modules")
    for name, option in sorted(module_options(STANDARD_WORKERS).items()):
        flag = "--" + name.replace("_", "-")
        if option.field is None:
            group.add_argument(
                f"--no-{name.replace('_', '-')}",
                dest=_MODULE + name,
                action="store_false",
                default=None,
                help=f"turn off {option.help}",
            )
            continue
        default = option.default
        if isinstance(default, bool):
            group.add_argument(
                flag, dest=_MODULE + name, action=argparse.BooleanOptionalAction, help=option.help
            )
            continue
        default = _CLI_DEFAULTS.get(name, default)
        convert: Callable[[str], Any]
        if isinstance(default, (int, float)):
            convert = int if isinstance(default, int) else float
            metavar = type(default).__name__.upper()
        elif isinstance(default, Mapping):  # inline JSON or a JSON file; the check reads it
            convert, metavar = _json_or_file, "JSON_OR_FILE"
        else:  # text (lists and the like too), as the option's own check takes it
            convert, metavar = str, "TEXT"
        shown = f" (default {json.dumps(default)})" if default not in (None, ()) else ""
        group.add_argument(
            flag,
            dest=_MODULE + name,
            metavar=metavar,
            type=_typed(name, convert),
            help=f"{option.help}{shown}",
        )


#: argparse destination prefix of the worker modules' options
_MODULE = "module:"

#: Options whose default differs in the CLI: the real engine's fixed ports, so the
#: official docs' URLs (``http://localhost:3111/...``) work as written.
_CLI_DEFAULTS: dict[str, Any] = {"http_port": DEFAULT_HTTP_PORT}


def _module_settings(args: argparse.Namespace) -> dict[str, Any]:
    return {
        key[len(_MODULE) :]: value
        for key, value in vars(args).items()
        if key.startswith(_MODULE) and value is not None
    }


async def _serve(args: argparse.Namespace) -> None:
    async with serve_engine(
        args.host,
        args.port,
        rbac=args.rbac,
        rbac_port=args.rbac_port,
        transcript=args.transcript is not None,
        transcript_limit=args.transcript_limit,
        namespace_grace=args.namespace_grace,
        lenient_frames=args.lenient_frames,
        **{**_CLI_DEFAULTS, **_module_settings(args)},
    ) as engine:
        with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            print(engine.url, flush=True)
            if engine.rbac_url is not None:
                print(engine.rbac_url, flush=True)
            for name, url in engine.urls.items():
                if name not in ("main", "rbac"):
                    print(f"{name}: {url}", flush=True)
            async for signum in signals:
                logging.getLogger("iii.testing").info(
                    "received %s, stopping", signal.Signals(signum).name
                )
                break
        if args.transcript:
            engine.dump_transcript(args.transcript)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    level = logging.getLevelName(args.log_level.upper())
    if not isinstance(level, int):
        parser.error(f"argument --log-level: unknown level {args.log_level!r}")
    logging.basicConfig(
        level=level,
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
