"""The engine worker module: the engine's own functions (``engine::*``, docs/protocol.md#built-ins)
and its two trigger types, ``engine::workers-available`` and
``engine::functions-available``.

Inputs are validated like serde would: unknown keys are ignored, a missing
required key or a wrong type fails the call with ``deserialization_error``
(``Failed to deserialize input for <id>: <reason>``).
"""

from __future__ import annotations

import functools
import logging
import platform
import urllib.parse
from collections.abc import Callable, Iterable
from typing import Any, Optional, Union

import anyio
import attrs

from iii_protocol import ANNOUNCE_FUNCTION_ID, CALLER_WORKER_ID_KEY
from iii_protocol._json import JSON, JSONObject, dumps

from .._api import EngineHost, EngineWorker
from .._checks import seconds, setting
from .._records import (
    DEFAULT,
    Binding,
    Builtin,
    BuiltinError,
    Call,
    FunctionEntry,
    TriggerTypeEntry,
    Worker,
    new_id,
)
from .inputs import ANY, BOOL, OBJ, STR, STRS, U32, Fields, opt_bool, opt_str, parse_input

__all__ = [
    "FUNCTIONS_AVAILABLE",
    "WORKERS_AVAILABLE",
    "EngineFunctions",
    "EngineFunctionsConfig",
    "function_summaries",
]

worker_log = logging.getLogger("iii.testing.worker_log")

ENGINE_WORKER = "iii-engine"
WORKERS_AVAILABLE = "engine::workers-available"
FUNCTIONS_AVAILABLE = "engine::functions-available"
ENGINE_VERSION = "0.23.0-reference"
MAX_INFO_IDS = 32

# -- shapes ------------------------------------------------------------------------


def _fallback_name(function_id: str) -> str:
    return function_id.split("::", 1)[0]


def _owner_name(worker: Optional[Worker], function_id: str) -> str:
    if worker is not None and worker.name:
        return worker.name
    return _fallback_name(function_id)


def _put(out: JSONObject, key: str, value: JSON) -> None:
    if value is not None:
        out[key] = value


def _function_summary(entry: Union[FunctionEntry, Builtin]) -> JSONObject:
    if isinstance(entry, Builtin):
        out: JSONObject = {
            "function_id": entry.id,
            "namespace": DEFAULT,
            "worker_name": entry.worker_name,
        }
        _put(out, "description", entry.description)
        _put(out, "metadata", entry.metadata)
        return out
    out = {
        "function_id": entry.id,
        "namespace": entry.namespace,
        "worker_name": _owner_name(entry.owner, entry.id),
    }
    _put(out, "description", entry.description)
    _put(out, "metadata", entry.metadata)
    return out


def _bindings_for(host: EngineHost, ns: str, function_id: str) -> list[JSON]:
    return [
        {"id": b.id, "trigger_type": b.trigger_type, "config": b.config}
        for b in sorted(host.bindings.values(), key=lambda b: b.id)
        if b.namespace == ns and b.function_id == function_id
    ]


def _function_detail(host: EngineHost, entry: Union[FunctionEntry, Builtin]) -> JSONObject:
    out = _function_summary(entry)
    if isinstance(entry, Builtin):
        _put(out, "request_schema", entry.request_format)
        ns = DEFAULT
    else:
        _put(out, "request_schema", entry.request_format)
        _put(out, "response_schema", entry.response_format)
        ns = entry.namespace
    out["registered_triggers"] = _bindings_for(host, ns, out["function_id"])  # type: ignore[arg-type]
    return out


def _is_internal(function_id: str, metadata: JSON) -> bool:
    if function_id.startswith("engine::") and not function_id.startswith("engine::queue::"):
        return True
    return isinstance(metadata, dict) and metadata.get("internal") is True


def _all_functions(host: EngineHost) -> list[Union[FunctionEntry, Builtin]]:
    entries: list[Union[FunctionEntry, Builtin]] = list(host.functions.values())
    entries.extend(b for fid, b in host.builtins.items() if (DEFAULT, fid) not in host.functions)
    return entries


def _rank(search: Optional[str], primary: str, *others: Optional[str]) -> Optional[int]:
    """How well an entry matches ``search`` (0 best), from its ``primary`` text
    and then any of ``others``; ``None``: no match.  No search: all match, 0."""
    if not search:
        return 0
    needle = search.lower()
    hay = primary.lower()
    if hay == needle:
        return 0
    if hay.startswith(needle):
        return 1
    if needle in hay:
        return 2
    for other in others:
        if other and needle in other.lower():
            return 3
    return None


def _entry_worker(entry: Union[FunctionEntry, Builtin]) -> str:
    if isinstance(entry, Builtin):
        return entry.worker_name
    return _owner_name(entry.owner, entry.id)


def function_summaries(
    host: EngineHost,
    *,
    include_internal: bool = False,
    search: Optional[str] = None,
    prefix: Optional[str] = None,
    workers: Optional[Iterable[str]] = None,
    caller: Optional[Worker] = None,
) -> list[JSON]:
    wanted = set(workers) if workers is not None else None
    session = caller.session if caller is not None else None
    ranked: list[tuple[int, str, str, JSONObject]] = []
    for entry in _all_functions(host):
        ns = DEFAULT if isinstance(entry, Builtin) else entry.namespace
        if not include_internal and _is_internal(entry.id, entry.metadata):
            continue
        if prefix is not None and not entry.id.startswith(prefix):
            continue
        if wanted is not None and _entry_worker(entry) not in wanted:
            continue
        if session is not None and session.denial(ns, entry.id, entry.metadata) is not None:
            continue
        rank = _rank(search, entry.id, entry.description)
        if rank is None:
            continue
        ranked.append((rank, entry.id, ns, _function_summary(entry)))
    ranked.sort(key=lambda r: (r[0], r[1], r[2]))
    return [r[3] for r in ranked]


def _type_worker_name(entry: TriggerTypeEntry) -> str:
    if entry.provider is None:
        return entry.worker_name or ENGINE_WORKER
    return _owner_name(entry.provider, entry.id)


def _type_summary(entry: TriggerTypeEntry) -> JSONObject:
    return {
        "id": entry.id,
        "namespace": entry.namespace,
        "worker_name": _type_worker_name(entry),
        "description": entry.description,
    }


def _type_detail(host: EngineHost, entry: TriggerTypeEntry) -> JSONObject:
    out = _type_summary(entry)
    _put(out, "configuration_schema", entry.trigger_request_format)
    _put(out, "request_schema", entry.call_request_format)
    out["instance_count"] = sum(1 for b in host.bindings.values() if b.provider is entry)
    return out


def _binding_worker_name(b: Binding) -> str:
    if b.owner is None:
        return ENGINE_WORKER
    return _owner_name(b.owner, b.function_id)


def _config_summary(config: JSON) -> str:
    text = dumps(config)
    return text if len(text) <= 120 else text[:117] + "..."


def _binding_summary(b: Binding) -> JSONObject:
    return {
        "id": b.id,
        "trigger_type": b.trigger_type,
        "function_id": b.function_id,
        "worker_name": _binding_worker_name(b),
        "config": b.config,
        "config_summary": _config_summary(b.config),
    }


def _engine_workers(host: EngineHost) -> list[JSONObject]:
    os_name = f"{platform.system()} {platform.release()} ({platform.machine()})"
    started = host.started_at_ms
    out: list[JSONObject] = []
    groups: dict[str, int] = {}
    for fid, b in host.builtins.items():
        if (DEFAULT, fid) not in host.functions:
            groups[b.worker_name] = groups.get(b.worker_name, 0) + 1
    # Modules that only provide trigger types (iii-cron, iii-http) are workers too.
    for entry in host.trigger_types.values():
        if entry.provider is None and entry.worker_name:
            groups.setdefault(entry.worker_name, 0)
    for name, count in sorted(groups.items()):
        out.append(
            {
                "name": name,
                "description": "in-process engine worker",
                "version": ENGINE_VERSION,
                "id": name,
                "namespace": DEFAULT,
                "runtime": "engine",
                "os": os_name,
                "status": "available",
                "function_count": count,
                "connected_at_ms": started,
                "active_invocations": 0,
                "isolation": None,
                "ip_address": None,
            }
        )
    return out


def _worker_summary(w: Worker, active: dict[str, int]) -> JSONObject:
    return {
        "name": w.name,
        "description": w.description,
        "version": w.version,
        "id": w.worker_id,
        "namespace": w.namespace or DEFAULT,
        "runtime": w.runtime,
        "os": w.os,
        "status": "connected",
        "function_count": len(w.functions),
        "connected_at_ms": w.connected_at_ms,
        "active_invocations": active.get(w.worker_id, 0),
        "isolation": w.isolation,
        "ip_address": w.remote_ip,
    }


# -- the builtins ------------------------------------------------------------------

_REGISTER_WORKER: Fields = {
    CALLER_WORKER_ID_KEY: (STR, True),
    "runtime": (STR, False),
    "version": (STR, False),
    "name": (STR, False),
    "description": (STR, False),
    "os": (STR, False),
    "telemetry": (OBJ, False),
    "pid": (U32, False),
    "isolation": (STR, False),
    "namespace": (STR, False),
    "features": (STRS, False),
}
_TELEMETRY: Fields = {
    "language": (STR, False),
    "project_name": (STR, False),
    "framework": (STR, False),
}


def _workers_register(host: EngineHost, call: Call) -> JSON:
    inp = parse_input(call, _REGISTER_WORKER, "RegisterWorkerInput")
    telemetry = inp.get("telemetry")
    if telemetry is not None:
        parse_input(
            Call(call.function_id, None, telemetry),
            _TELEMETRY,
            "WorkerTelemetryMeta",
        )
    caller_id = inp[CALLER_WORKER_ID_KEY]
    worker = host.workers.get(caller_id) if isinstance(caller_id, str) else None
    if worker is None:
        raise BuiltinError("NOT_FOUND", f"worker {caller_id} is not connected")
    return host.announce(worker, inp)


def _functions_list(host: EngineHost, call: Call) -> JSON:
    inp = parse_input(
        call,
        {
            "search": (STR, False),
            "prefix": (STR, False),
            "worker": (STR, False),
            "workers": (STRS, False),
            "include_internal": (BOOL, False),
        },
        "ListFunctionsInput",
    )
    workers: Optional[list[str]] = None
    worker = opt_str(inp, "worker")
    many = inp.get("workers")
    if worker is not None or isinstance(many, list):
        workers = [worker] if worker is not None else []
        if isinstance(many, list):
            workers.extend(w for w in many if isinstance(w, str))
    return {
        "functions": function_summaries(
            host,
            include_internal=opt_bool(inp, "include_internal"),
            search=opt_str(inp, "search"),
            prefix=opt_str(inp, "prefix"),
            workers=workers,
            caller=call.caller,
        )
    }


def _find_function(
    host: EngineHost, ns: str, function_id: str
) -> Optional[Union[FunctionEntry, Builtin]]:
    entry = host.functions.get((ns, function_id))
    if entry is not None:
        return entry
    if ns == DEFAULT:
        return host.builtins.get(function_id)
    return None


def _visible(call: Call, ns: str, entry: Union[FunctionEntry, Builtin]) -> bool:
    session = call.caller.session if call.caller is not None else None
    return session is None or session.denial(ns, entry.id, entry.metadata) is None


def _functions_info(host: EngineHost, call: Call) -> JSON:
    inp = parse_input(
        call,
        {"function_id": (STR, False), "function_ids": (STRS, False), "namespace": (STR, False)},
        "FunctionInfoInput",
    )
    ns = opt_str(inp, "namespace") or DEFAULT
    single = opt_str(inp, "function_id")
    many = inp.get("function_ids")
    if (single is None) == (many is None):
        raise BuiltinError(
            "INVALID_ARGUMENTS", "exactly one of `function_id` or `function_ids` is required"
        )
    if single is not None:
        entry = _find_function(host, ns, single)
        if entry is None:
            raise BuiltinError("NOT_FOUND", f"Function '{single}' not found in namespace '{ns}'")
        if not _visible(call, ns, entry):
            raise BuiltinError("FORBIDDEN", f"Function '{single}' is not visible to this session.")
        return _function_detail(host, entry)
    assert isinstance(many, list)
    if len(many) > MAX_INFO_IDS:
        raise BuiltinError(
            "INVALID_ARGUMENTS", f"at most {MAX_INFO_IDS} function_ids per call (got {len(many)})"
        )
    out: list[JSON] = []
    for fid in many:
        assert isinstance(fid, str)
        entry = _find_function(host, ns, fid)
        if entry is None:
            out.append({"function_id": fid, "error": "not_found"})
        elif not _visible(call, ns, entry):
            out.append({"function_id": fid, "error": "forbidden"})
        else:
            out.append(_function_detail(host, entry))
    return {"functions": out}


def _triggers_list(host: EngineHost, call: Call) -> JSON:
    inp = parse_input(
        call,
        {
            "search": (STR, False),
            "prefix": (STR, False),
            "worker": (STR, False),
            "include_internal": (BOOL, False),
        },
        "ListTriggersInput",
    )
    search = opt_str(inp, "search")
    prefix = opt_str(inp, "prefix")
    worker = opt_str(inp, "worker")
    include_internal = opt_bool(inp, "include_internal")
    ranked: list[tuple[int, str, str, JSONObject]] = []
    for entry in host.trigger_types.values():
        if not include_internal and entry.id.startswith("engine::"):
            continue
        if prefix is not None and not entry.id.startswith(prefix):
            continue
        if worker is not None and _type_worker_name(entry) != worker:
            continue
        rank = _rank(search, entry.id, entry.description)
        if rank is None:
            continue
        ranked.append((rank, entry.id, entry.namespace, _type_summary(entry)))
    ranked.sort(key=lambda r: (r[0], r[1], r[2]))
    return {"triggers": [r[3] for r in ranked]}


def _triggers_info(host: EngineHost, call: Call) -> JSON:
    inp = parse_input(call, {"id": (STR, True), "namespace": (STR, False)}, "TriggerInfoInput")
    type_id = inp["id"]
    assert isinstance(type_id, str)
    ns = opt_str(inp, "namespace") or DEFAULT
    entry = host.trigger_types.get((ns, type_id))
    if entry is None:
        raise BuiltinError("NOT_FOUND", f"Trigger type '{type_id}' not found in namespace '{ns}'")
    return _type_detail(host, entry)


def _registered_list(host: EngineHost, call: Call) -> JSON:
    inp = parse_input(
        call,
        {
            "search": (STR, False),
            "trigger_type": (STR, False),
            "function_id": (STR, False),
            "worker": (STR, False),
            "include_internal": (BOOL, False),
        },
        "ListRegisteredTriggersInput",
    )
    search = opt_str(inp, "search")
    trigger_type = opt_str(inp, "trigger_type")
    function_id = opt_str(inp, "function_id")
    worker = opt_str(inp, "worker")
    include_internal = opt_bool(inp, "include_internal")
    ranked: list[tuple[int, str, JSONObject]] = []
    for b in host.bindings.values():
        if not include_internal and (
            b.trigger_type.startswith("engine::") or _is_internal(b.function_id, None)
        ):
            continue
        if trigger_type is not None and b.trigger_type != trigger_type:
            continue
        if function_id is not None and b.function_id != function_id:
            continue
        if worker is not None and _binding_worker_name(b) != worker:
            continue
        rank = _rank(search, b.id, b.trigger_type, b.function_id)
        if rank is None:
            continue
        ranked.append((rank, b.id, _binding_summary(b)))
    ranked.sort(key=lambda r: (r[0], r[1]))
    return {"registered_triggers": [r[2] for r in ranked]}


def _registered_info(host: EngineHost, call: Call) -> JSON:
    inp = parse_input(call, {"id": (STR, True)}, "RegisteredTriggerInfoInput")
    binding_id = inp["id"]
    assert isinstance(binding_id, str)
    b = host.bindings.get(binding_id)
    if b is None:
        raise BuiltinError("NOT_FOUND", f"Registered trigger '{binding_id}' not found")
    out = _binding_summary(b)
    del out["config_summary"]
    _put(out, "metadata", b.metadata)
    entry = b.provider or host.trigger_types.get((DEFAULT, b.trigger_type))
    out["trigger"] = _type_detail(host, entry) if entry is not None else None
    fn = _find_function(host, b.namespace, b.function_id)
    out["function"] = _function_detail(host, fn) if fn is not None else None
    return out


def _workers_list(host: EngineHost, call: Call) -> JSON:
    inp = parse_input(
        call,
        {"search": (STR, False), "runtime": (STR, False), "status": (STR, False)},
        "ListWorkersInput",
    )
    search = opt_str(inp, "search")
    runtime = opt_str(inp, "runtime")
    status = opt_str(inp, "status")
    active = host.active_invocations()
    rows: list[JSONObject] = [
        _worker_summary(w, active) for w in list(host.workers.values()) if w.pid is not None
    ]
    rows.extend(_engine_workers(host))
    out: list[JSONObject] = []
    for row in rows:
        if runtime is not None and row["runtime"] != runtime:
            continue
        if status is not None and row["status"] != status:
            continue
        name = row["name"]
        desc = row["description"]
        if (
            _rank(
                search,
                name if isinstance(name, str) else "",
                desc if isinstance(desc, str) else None,
                str(row["id"]),
            )
            is None
        ):
            continue
        out.append(row)
    out.sort(key=lambda r: (str(r["name"] or ""), str(r["id"])))
    return {"workers": list[JSON](out)}


def _workers_info(host: EngineHost, call: Call) -> JSON:
    inp = parse_input(call, {"name": (STR, True), "namespace": (STR, False)}, "WorkerInfoInput")
    name = inp["name"]
    assert isinstance(name, str)
    if not name.strip():
        raise BuiltinError("INVALID_ARGUMENTS", "`name` must not be blank")
    ns = opt_str(inp, "namespace")
    active = host.active_invocations()
    candidates = [
        w
        for w in list(host.workers.values())
        if (w.name == name or w.worker_id == name)
        and (ns is None or (w.namespace or DEFAULT) == ns)
    ]
    candidates.sort(key=lambda w: (w.namespace != DEFAULT, w.connected_at_ms))
    if candidates:
        w = candidates[0]
        detail = _worker_summary(w, active)
        _put(detail, "pid", w.pid)
        detail["internal"] = False
        functions = [_function_summary(e) for e in host.functions.values() if e.owner is w]
        types = [_type_summary(e) for e in host.trigger_types.values() if e.provider is w]
        bindings = [_binding_summary(b) for b in host.bindings.values() if b.owner is w]
    else:
        engine_rows = [r for r in _engine_workers(host) if r["name"] == name]
        if not engine_rows or (ns is not None and ns != DEFAULT):
            raise BuiltinError("NOT_FOUND", f"Worker '{name}' not found")
        detail = engine_rows[0]
        detail["internal"] = True
        functions = [
            _function_summary(b)
            for fid, b in host.builtins.items()
            if b.worker_name == name and (DEFAULT, fid) not in host.functions
        ]
        types = [
            _type_summary(e)
            for e in host.trigger_types.values()
            if e.provider is None and (e.worker_name or ENGINE_WORKER) == name
        ]
        bindings = [_binding_summary(b) for b in host.bindings.values() if b.owner is None]
    functions.sort(key=lambda f: str(f["function_id"]))
    return {
        "worker": detail,
        "functions": list(functions),
        "trigger_types": list(types),
        "registered_triggers": list(bindings),
    }


async def _register_trigger(host: EngineHost, call: Call) -> JSON:
    inp = parse_input(
        call,
        {
            "trigger_type": (STR, True),
            "function_id": (STR, True),
            "config": (ANY, False),
            "metadata": (ANY, False),
            "trigger_namespace": (STR, False),
        },
        "RegisterTriggerInput",
    )
    trigger_type = inp["trigger_type"]
    function_id = inp["function_id"]
    assert isinstance(trigger_type, str) and isinstance(function_id, str)
    trigger_ns = opt_str(inp, "trigger_namespace")
    if trigger_ns is not None and not trigger_ns.strip():
        raise BuiltinError("INVALID_NAMESPACE", "trigger_namespace must not be blank")
    caller = call.caller
    session = caller.session if caller is not None else None
    if session is not None:
        allowed = session.allowed_trigger_types
        if allowed is not None and trigger_type not in allowed:
            raise BuiltinError(
                "FORBIDDEN", f"Trigger type '{trigger_type}' is not allowed for this session."
            )
    binding = Binding(
        new_id(),
        trigger_type,
        function_id,
        inp.get("config"),
        inp.get("metadata"),
        namespace=DEFAULT,
        trigger_namespace=trigger_ns,
        home_namespace=(caller.namespace or DEFAULT) if caller is not None else DEFAULT,
        owner=None,
    )
    host.add_binding(binding)
    host.notify()
    refusal = binding.refusal
    if refusal is not None:  # an engine-provided type refused it on the spot
        host.remove_binding(binding.id)
        raise BuiltinError(
            str(refusal.get("code", "trigger_registration_failed")), str(refusal.get("message"))
        )
    if binding.provider is None or binding.acked:
        return {"id": binding.id}
    done = anyio.Event()
    outcome: list[Optional[dict[str, JSON]]] = []

    def on_ack(error: Optional[dict[str, JSON]]) -> None:
        outcome.append(error)
        done.set()

    binding.waiter = on_ack
    await host.relieve()
    with anyio.move_on_after(host.trigger_ack_timeout):
        await done.wait()
    if not outcome:
        binding.waiter = None
        return {"id": binding.id}
    error = outcome[0]
    if error is not None:
        host.remove_binding(binding.id)
        raise BuiltinError(
            str(error.get("code", "trigger_registration_failed")), str(error.get("message"))
        )
    return {"id": binding.id}


def _unregister_trigger(host: EngineHost, call: Call) -> JSON:
    inp = parse_input(
        call, {"id": (STR, True), "trigger_type": (STR, False)}, "UnregisterTriggerInput"
    )
    binding_id = inp["id"]
    assert isinstance(binding_id, str)
    binding = host.bindings.get(binding_id)
    trigger_type = opt_str(inp, "trigger_type")
    if binding is None or (trigger_type is not None and binding.trigger_type != trigger_type):
        return {"removed": False}
    return {"removed": host.remove_binding(binding_id)}


def _logger(level: int) -> Any:
    def log_fn(call: Call) -> JSON:
        data = call.data
        message: object = data
        if isinstance(data, dict):
            message = data.get("message", data.get("body", data))
        worker = call.caller.name or call.caller.worker_id if call.caller is not None else "engine"
        worker_log.log(level, "[%s] %s", worker, message)
        return None

    return log_fn


def _parse_baggage(header: Optional[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    if not header:
        return out
    for member in header.split(","):
        kv = member.split(";", 1)[0].strip()
        if "=" in kv:
            key, value = kv.split("=", 1)
            out[urllib.parse.unquote(key.strip())] = urllib.parse.unquote(value.strip())
    return out


def _baggage_get(call: Call) -> JSON:
    inp = parse_input(call, {"key": (STR, True)}, "BaggageGetInput")
    key = inp["key"]
    assert isinstance(key, str)
    return {"key": key, "value": _parse_baggage(call.baggage).get(key)}


def _baggage_set(call: Call) -> JSON:
    inp = parse_input(call, {"key": (STR, True), "value": (STR, True)}, "BaggageSetInput")
    entries = _parse_baggage(call.baggage)
    key, value = inp["key"], inp["value"]
    assert isinstance(key, str) and isinstance(value, str)
    entries[key] = value
    header = ",".join(
        f"{urllib.parse.quote(k, safe='')}={urllib.parse.quote(v, safe='')}"
        for k, v in entries.items()
    )
    return {"baggage": header}


def _baggage_get_all(call: Call) -> JSON:
    parse_input(call, {}, "BaggageGetAllInput")
    return {"baggage": dict(_parse_baggage(call.baggage))}


Handler = Callable[[EngineHost, Call], Any]

#: (id, handler, description) of every ``engine::*`` function but the loggers.
_FUNCTIONS: tuple[tuple[str, Handler, str], ...] = (
    (ANNOUNCE_FUNCTION_ID, _workers_register, "Register worker metadata"),
    ("engine::functions::list", _functions_list, "List registered functions"),
    ("engine::functions::info", _functions_info, "Describe functions"),
    ("engine::triggers::list", _triggers_list, "List trigger types"),
    ("engine::triggers::info", _triggers_info, "Describe a trigger type"),
    ("engine::registered-triggers::list", _registered_list, "List registered triggers"),
    ("engine::registered-triggers::info", _registered_info, "Describe a registered trigger"),
    ("engine::workers::list", _workers_list, "List connected workers"),
    ("engine::workers::info", _workers_info, "Describe a worker"),
    ("engine::register_trigger", _register_trigger, "Register a durable trigger"),
    ("engine::unregister_trigger", _unregister_trigger, "Remove a trigger"),
)
_LEVELS = (
    ("trace", 5),
    ("debug", logging.DEBUG),
    ("info", logging.INFO),
    ("warn", logging.WARNING),
    ("error", logging.ERROR),
)


@attrs.frozen
class EngineFunctionsConfig:
    functions_poll_interval: float = setting(
        5.0,
        seconds(positive=True),
        "seconds between checks for engine::functions-available (engine clock)",
    )


class EngineFunctions(EngineWorker):
    """``engine::*``: introspection, announce, durable bindings, logging, baggage."""

    name = "engine"
    worker_name = ENGINE_WORKER
    config_class = EngineFunctionsConfig
    config: EngineFunctionsConfig

    def install(self) -> None:
        host = self.host
        self.trigger_type(
            WORKERS_AVAILABLE, "Fires when workers connect, disconnect or update their metadata"
        )
        self.trigger_type(FUNCTIONS_AVAILABLE, "Fires when the set of registered functions changes")
        for function_id, handler, description in _FUNCTIONS:
            self.function(function_id, functools.partial(handler, host), description)
        self.function("engine::baggage::get", _baggage_get, "Read a baggage entry")
        self.function("engine::baggage::set", _baggage_set, "Set a baggage entry")
        self.function("engine::baggage::get_all", _baggage_get_all, "Read all baggage entries")
        for level_name, level in _LEVELS:
            self.function(
                f"engine::log::{level_name}", _logger(level), f"Log at {level_name} level"
            )
        self._functions_dirty = False

    def worker_connected(self, worker: Worker) -> None:
        self._workers_event("worker_connected", worker)

    def worker_updated(self, worker: Worker) -> None:
        self._workers_event("worker_metadata_updated", worker)

    def worker_disconnected(self, worker: Worker) -> None:
        self._workers_event("worker_disconnected", worker)

    def _workers_event(self, event: str, worker: Worker) -> None:
        self.host.fire_all(WORKERS_AVAILABLE, {"event": event, "worker_id": worker.worker_id})

    def functions_changed(self) -> None:
        self._functions_dirty = True

    async def run(self) -> None:
        """Fire ``engine::functions-available`` at most once per poll interval."""
        host = self.host
        while True:
            await host.clock.sleep(self.config.functions_poll_interval)
            if not self._functions_dirty:
                continue
            self._functions_dirty = False
            if not host.bindings_of(FUNCTIONS_AVAILABLE):
                continue
            summaries = function_summaries(host)
            host.fire_all(
                FUNCTIONS_AVAILABLE, {"event": "functions_changed", "functions": summaries}
            )
            await host.relieve()
