"""A test peer: one worker of the OFFICIAL Python SDK (iii-sdk 0.19.7 or 0.25.0).

Run with the python of a peer venv (``.cache/peers/py-<version>``), never with
the project's own::

    python py_agent.py <engine url> <worker name> [--fast-reconnect] [--otel]
                       [--header=name=value ...] [--namespace=ns]

It connects with ``register_worker``, prints ``@@ {"event": "ready", ...}``
and then executes JSON commands read from stdin, one per line, each
concurrently on its own thread: ``{"id": 1, "op": "trigger", ...}``.  Every
command is answered by one ``@@ {"id": 1, "ok": true, ...}`` line; handlers and
trigger providers report what they saw as ``@@ {"event": ...}`` lines.  Only
lines starting with ``@@ `` belong to this protocol (the SDK may print too).
The ``shutdown`` command (or the end of stdin) shuts the worker down and exits.

Only the SDK's public API is used; differences between 0.19.7 and 0.25.0 are
branched on ``SDK_VERSION``.
"""

from __future__ import annotations

import asyncio
import json
import sys
import threading
import traceback
import warnings
from importlib.metadata import version
from typing import Any

# 0.25 deprecates register_trigger/register_trigger_type (still on the wire).
warnings.simplefilter("ignore", DeprecationWarning)

import iii  # noqa: E402  (the official SDK of this venv)
from iii.iii_constants import ReconnectionConfig  # noqa: E402

SDK_VERSION = version("iii-sdk")
LEGACY = SDK_VERSION.startswith("0.19.")

if LEGACY:
    from iii import TriggerHandler
else:
    from iii.trigger import TriggerHandler

from iii.helpers import create_channel  # noqa: E402

_out_lock = threading.Lock()


def emit(obj: dict[str, Any]) -> None:
    line = "@@ " + json.dumps(obj, default=repr)
    with _out_lock:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


def error_info(exc: BaseException) -> dict[str, Any]:
    return {
        "type": type(exc).__name__,
        "code": getattr(exc, "code", None),
        "message": getattr(exc, "message", None) or str(exc),
        "stacktrace": getattr(exc, "stacktrace", None),
    }


def plain(value: Any) -> Any:
    """A JSON-able copy of an SDK result (pydantic models, channel objects)."""
    if hasattr(value, "model_dump"):
        return value.model_dump()
    return json.loads(json.dumps(value, default=repr))


class Agent:
    def __init__(
        self,
        url: str,
        name: str,
        fast: bool,
        otel: bool,
        headers: dict[str, str],
        namespace: str | None,
    ) -> None:
        options: dict[str, Any] = {"worker_name": name}
        if headers:
            options["headers"] = headers
        if namespace:  # 0.25 only (0.19.7 has no namespaces)
            options["namespace"] = namespace
        if not otel:
            options["otel"] = {"enabled": False}
        if fast:
            options["reconnection_config"] = ReconnectionConfig(
                initial_delay_ms=100, max_delay_ms=500, jitter_factor=0.1
            )
        self.name = name
        self.worker = iii.register_worker(url, iii.InitOptions(**options))
        self.functions: dict[str, Any] = {}
        self.triggers: dict[str, Any] = {}
        self.bindings: dict[str, Any] = {}  # provider side: binding id -> TriggerConfig
        self.calls: dict[str, int] = {}  # "flaky" handlers: calls so far, by function id

    # -- handlers ----------------------------------------------------------------

    def make_handler(self, function_id: str, behavior: str, args: dict[str, Any]) -> Any:
        name = self.name

        async def handler(data: Any, metadata: Any = None) -> Any:
            if behavior == "echo":
                return {"echo": data, "by": name}
            if behavior == "record":
                emit(
                    {
                        "event": "invoked",
                        "function_id": function_id,
                        "data": data,
                        "metadata": metadata,
                    }
                )
                return {"recorded": function_id}
            if behavior == "fail":
                raise RuntimeError(args.get("message", "handler failed"))
            # -- queue/pubsub tests: report each call, fail the first `fail_times` --
            if behavior == "flaky":
                calls = self.calls[function_id] = self.calls.get(function_id, 0) + 1
                emit(
                    {"event": "invoked", "function_id": function_id, "data": data, "attempt": calls}
                )
                if calls <= args.get("fail_times", 1 << 30):
                    raise RuntimeError(f"attempt {calls} failed")
                return {"attempt": calls}
            if behavior == "none":
                return None
            if behavior == "sleep":
                emit({"event": "sleeping", "function_id": function_id})
                await asyncio.sleep(args.get("seconds", 1.0))
                return {"slept": args.get("seconds", 1.0)}
            if behavior == "size":  # the size of a (large) payload
                return {"size": len(data["blob"]), "by": name}
            if behavior == "blob":  # a large result
                return {"blob": "y" * args["size"]}
            if behavior == "const":
                return args.get("result")
            if behavior == "auth":  # an RBAC auth function: record the input, grant
                emit({"event": "auth", "function_id": function_id, "data": data})
                return args.get("result")
            if behavior == "sink":
                reader = data["reader"]
                messages: list[str] = []
                reader.on_message(messages.append)
                body = await reader.read_all()
                return {
                    "reader_type": type(reader).__name__,
                    "bytes": len(body),
                    "text": body.decode(),
                    "messages": messages,
                }
            if behavior == "source":
                writer = data["writer"]
                await writer.send_message_async(json.dumps({"from": name}))
                await writer.write(b"hello ")
                await writer.write(b"from " + name.encode())
                await writer.close_async()
                return {"writer_type": type(writer).__name__}
            # -- the HTTP worker's routes (whttp) ------------------------------------
            if behavior == "http_record":  # report the request, answer args["result"]
                emit(
                    {
                        "event": "http_request",
                        "function_id": function_id,
                        "request": {
                            k: v for k, v in data.items() if k not in ("request_body", "response")
                        },
                        "request_body_type": type(data.get("request_body")).__name__,
                        "response_type": type(data.get("response")).__name__,
                        "metadata": metadata,
                    }
                )
                return args.get("result")
            if behavior == "http_stream":  # stream status, headers and an echo of the body
                body = await data["request_body"].read_all()
                writer = data["response"]
                status = {"type": "set_status", "status_code": args.get("status", 200)}
                await writer.send_message_async(json.dumps(status))
                headers = {"type": "set_headers", "headers": args.get("headers", {})}
                await writer.send_message_async(json.dumps(headers))
                await writer.write(b"echo: " + body)
                await writer.close_async()
                return None
            raise ValueError(f"unknown behavior {behavior}")

        return handler

    # -- commands ----------------------------------------------------------------

    def op_register_function(self, cmd: dict[str, Any]) -> dict[str, Any]:
        fid = cmd["function_id"]
        handler = self.make_handler(fid, cmd.get("behavior", "echo"), cmd)
        kwargs: dict[str, Any] = {}
        if cmd.get("description"):
            kwargs["description"] = cmd["description"]
        if cmd.get("metadata") is not None:
            kwargs["metadata"] = cmd["metadata"]
        self.functions[fid] = self.worker.register_function(fid, handler, **kwargs)
        return {}

    def op_register_http_function(self, cmd: dict[str, Any]) -> dict[str, Any]:
        if LEGACY:
            from iii import HttpInvocationConfig
        else:
            # mypy checks this agent against our iii; 0.25's helper package is not ours.
            from iii_helpers.http import HttpInvocationConfig  # type: ignore[import-not-found,no-redef]
        config = HttpInvocationConfig(
            url=cmd["url"],
            method=cmd.get("method", "POST"),
            headers=cmd.get("headers"),
            auth=cmd.get("auth"),
        )
        fid = cmd["function_id"]
        self.functions[fid] = self.worker.register_function(fid, config)
        return {}

    def op_unregister_function(self, cmd: dict[str, Any]) -> dict[str, Any]:
        self.functions.pop(cmd["function_id"]).unregister()
        return {}

    def op_trigger(self, cmd: dict[str, Any]) -> dict[str, Any]:
        request: dict[str, Any] = {"function_id": cmd["function_id"]}
        if "payload" in cmd:
            request["payload"] = cmd["payload"]
        if cmd.get("blob_size"):
            request["payload"] = {"blob": "x" * cmd["blob_size"]}
        action = cmd.get("action")
        if action == "void":
            request["action"] = iii.TriggerAction.Void()
        elif isinstance(action, dict) and "enqueue" in action:
            request["action"] = iii.TriggerAction.Enqueue(queue=action["enqueue"])
        if cmd.get("metadata") is not None:
            request["metadata"] = cmd["metadata"]
        if cmd.get("timeout_ms"):
            request["timeout_ms"] = cmd["timeout_ms"]
        if cmd.get("namespace"):
            request["namespace"] = cmd["namespace"]
        result = self.worker.trigger(request)
        if cmd.get("summarize"):
            return {"result": {"blob_len": len(result["blob"])}}
        return {"result": plain(result)}

    def op_register_trigger_type(self, cmd: dict[str, Any]) -> dict[str, Any]:
        agent = self
        type_id = cmd["trigger_type"]

        class Provider(TriggerHandler[Any]):
            async def register_trigger(self, config: Any) -> None:
                agent.bindings[config.id] = config
                emit(
                    {
                        "event": "register_trigger",
                        "trigger_type": type_id,
                        "config": config.model_dump(),
                    }
                )
                if isinstance(config.config, dict) and config.config.get("refuse"):
                    raise ValueError(config.config["refuse"])

            async def unregister_trigger(self, config: Any) -> None:
                agent.bindings.pop(config.id, None)
                emit(
                    {
                        "event": "unregister_trigger",
                        "trigger_type": type_id,
                        "config": config.model_dump(),
                    }
                )

        self.worker.register_trigger_type(
            {"id": type_id, "description": cmd.get("description", "conformance trigger type")},
            Provider(),
        )
        return {}

    def op_unregister_trigger_type(self, cmd: dict[str, Any]) -> dict[str, Any]:
        self.worker.unregister_trigger_type({"id": cmd["trigger_type"]})
        return {}

    def op_register_trigger(self, cmd: dict[str, Any]) -> dict[str, Any]:
        trigger: dict[str, Any] = {"type": cmd["trigger_type"], "function_id": cmd["function_id"]}
        if "config" in cmd:
            trigger["config"] = cmd["config"]
        if cmd.get("metadata") is not None:
            trigger["metadata"] = cmd["metadata"]
        self.triggers[cmd["key"]] = self.worker.register_trigger(trigger)
        return {}

    def op_unregister_trigger(self, cmd: dict[str, Any]) -> dict[str, Any]:
        self.triggers.pop(cmd["key"]).unregister()
        return {}

    def op_fire(self, cmd: dict[str, Any]) -> dict[str, Any]:
        """Fire a binding this provider holds, as a provider does (docs/protocol.md#providers)."""
        config = self.bindings[cmd["binding_id"]]
        request: dict[str, Any] = {"function_id": config.function_id, "payload": cmd.get("payload")}
        if not LEGACY:  # 0.19.7 has no per-invocation metadata
            request["metadata"] = config.metadata
        return {"result": plain(self.worker.trigger(request))}

    def op_channel_send(self, cmd: dict[str, Any]) -> dict[str, Any]:
        """Create a channel, hand its reader to a function, write into it."""
        channel = create_channel(self.worker)
        box: dict[str, Any] = {}

        def call() -> None:
            try:
                box["result"] = plain(
                    self.worker.trigger(
                        {
                            "function_id": cmd["function_id"],
                            "payload": {"reader": channel.reader_ref.model_dump()},
                        }
                    )
                )
            except Exception as exc:
                box["error"] = exc

        caller = threading.Thread(target=call)
        caller.start()

        async def write() -> None:
            writer = channel.writer
            await writer.send_message_async(json.dumps({"kind": "meta", "n": 2}))
            await writer.write(b"hello ")
            await writer.write(b"world")
            await writer.close_async()

        asyncio.run(write())
        caller.join(30)
        if "error" in box:
            raise box["error"]
        return {"result": box.get("result"), "ref": channel.reader_ref.model_dump()}

    def op_channel_receive(self, cmd: dict[str, Any]) -> dict[str, Any]:
        """Create a channel, hand its writer to a function, read what it writes."""
        channel = create_channel(self.worker)
        box: dict[str, Any] = {}

        def call() -> None:
            try:
                box["result"] = plain(
                    self.worker.trigger(
                        {
                            "function_id": cmd["function_id"],
                            "payload": {"writer": channel.writer_ref.model_dump()},
                        }
                    )
                )
            except Exception as exc:
                box["error"] = exc

        caller = threading.Thread(target=call)
        caller.start()

        async def read() -> dict[str, Any]:
            messages: list[str] = []
            channel.reader.on_message(messages.append)
            body = await channel.reader.read_all()
            return {"text": body.decode(), "messages": messages}

        got = asyncio.run(read())
        caller.join(30)
        if "error" in box:
            raise box["error"]
        return {"result": box.get("result"), **got}

    # -- state/stream workers (tests/conformance/test_state_stream.py) ---------------

    def op_validate_model(self, cmd: dict[str, Any]) -> dict[str, Any]:
        """Read ``data`` with the SDK's own pydantic model ``model``, from the first
        of ``modules`` that has it; answer its JSON dump."""
        import importlib

        for name in cmd["modules"]:
            try:
                cls = getattr(importlib.import_module(name), cmd["model"])
            except (ImportError, AttributeError):
                continue
            return {"model": cls.model_validate(cmd["data"]).model_dump(mode="json")}
        raise LookupError(f"no model {cmd['model']} in {cmd['modules']}")

    def op_create_stream(self, cmd: dict[str, Any]) -> dict[str, Any]:
        """Serve stream ``stream_name`` from memory with the SDK's ``create_stream``."""
        from iii.helpers import create_stream
        from iii.stream import IStream, StreamDeleteResult, StreamSetResult

        items: dict[tuple[str, str], Any] = {}
        stream_name = cmd["stream_name"]

        def note(op: str, data: Any) -> None:
            emit({"event": "stream_op", "stream": stream_name, "op": op, "data": plain(data)})

        class MemoryStream(IStream[Any]):
            async def get(self, input: Any) -> Any:
                note("get", input)
                return items.get((input.group_id, input.item_id))

            async def set(self, input: Any) -> Any:
                note("set", input)
                old = items.get((input.group_id, input.item_id))
                items[(input.group_id, input.item_id)] = input.data
                return StreamSetResult(old_value=old, new_value=input.data)

            async def delete(self, input: Any) -> Any:
                note("delete", input)
                return StreamDeleteResult(
                    old_value=items.pop((input.group_id, input.item_id), None)
                )

            async def list(self, input: Any) -> Any:
                note("list", input)
                return [v for (g, _), v in items.items() if g == input.group_id]

            async def list_groups(self, input: Any) -> Any:
                note("list_groups", input)
                return sorted({g for g, _ in items})

            async def update(self, input: Any) -> Any:
                raise NotImplementedError

        create_stream(self.worker, stream_name, MemoryStream())
        return {}

    def op_state(self, cmd: dict[str, Any]) -> dict[str, Any]:
        return {"worker_id": self.worker.worker_id, "state": self.worker.get_connection_state()}

    def op_sleep(self, cmd: dict[str, Any]) -> dict[str, Any]:
        threading.Event().wait(cmd.get("seconds", 0.1))
        return {}

    def run(self, cmd: dict[str, Any]) -> None:
        try:
            out = getattr(self, "op_" + cmd["op"])(cmd)
            emit({"id": cmd.get("id"), "ok": True, **out})
        except Exception as exc:
            emit(
                {
                    "id": cmd.get("id"),
                    "ok": False,
                    "error": error_info(exc),
                    "traceback": traceback.format_exc(),
                }
            )


def main() -> int:
    url, name = sys.argv[1], sys.argv[2]
    flags = set(sys.argv[3:])
    headers = dict(f[len("--header=") :].split("=", 1) for f in flags if f.startswith("--header="))
    namespace = next((f.split("=", 1)[1] for f in flags if f.startswith("--namespace=")), None)
    agent = Agent(url, name, "--fast-reconnect" in flags, "--otel" in flags, headers, namespace)
    emit(
        {
            "event": "ready",
            "sdk": "python",
            "version": SDK_VERSION,
            "module": iii.__file__,
            "worker_id": agent.worker.worker_id,
            "state": agent.worker.get_connection_state(),
        }
    )
    for line in sys.stdin:
        if not line.strip():
            continue
        cmd = json.loads(line)
        if cmd.get("op") == "shutdown":
            break
        threading.Thread(target=agent.run, args=(cmd,), daemon=True).start()
    agent.worker.shutdown()
    emit({"event": "bye"})
    return 0


if __name__ == "__main__":
    sys.exit(main())
