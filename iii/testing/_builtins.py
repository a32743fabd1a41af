"""The engine's own functions (docs/protocol.md#built-ins), all in namespace ``default``.

Inputs are validated like serde would: unknown keys are ignored, a missing
required key or a wrong type fails the call with ``deserialization_error``
(``Failed to deserialize input for <id>: <reason>``).
"""

from __future__ import annotations

import logging
import platform
import urllib.parse
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Optional, Union

import anyio

from iii_protocol import ANNOUNCE_FUNCTION_ID, CALLER_WORKER_ID_KEY
from iii_protocol._json import JSON, JSONObject

from ._engine import (
    DEFAULT,
    QUEUE_FUNCTION_ID,
    Binding,
    Builtin,
    BuiltinError,
    Call,
    FunctionEntry,
    TriggerTypeEntry,
    Worker,
    new_id,
)

if TYPE_CHECKING:
    from ._engine import EngineCore

__all__ = ["function_summaries", "install"]

worker_log = logging.getLogger("iii.testing.worker_log")

ENGINE_WORKER = "iii-engine"
QUEUE_WORKER = "iii-queue"
ENGINE_VERSION = "0.23.0-reference"
MAX_INFO_IDS = 32

# -- input validation --------------------------------------------------------------

STR, BOOL, INT, U32, STRS, OBJ, ANY = "str", "bool", "int", "u32", "strs", "obj", "any"
_EXPECTED = {
    STR: "a string",
    BOOL: "a boolean",
    INT: "i64",
    U32: "u32",
    STRS: "a sequence of strings",
    OBJ: "a map",
    ANY: "any value",
}

Fields = dict[str, tuple[str, bool]]


def _describe(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"boolean `{str(value).lower()}`"
    if isinstance(value, int):
        return f"integer `{value}`"
    if isinstance(value, float):
        return f"floating point `{value}`"
    if isinstance(value, str):
        return f'string "{value}"'
    if isinstance(value, list):
        return "sequence"
    return "map"


def _ok(kind: str, value: object) -> bool:
    if kind == ANY:
        return True
    if kind == STR:
        return isinstance(value, str)
    if kind == BOOL:
        return isinstance(value, bool)
    if kind == INT:
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == U32:
        return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**32
    if kind == STRS:
        return isinstance(value, list) and all(isinstance(v, str) for v in value)
    return isinstance(value, dict)


def _bad_input(function_id: str, reason: str) -> BuiltinError:
    return BuiltinError(
        "deserialization_error", f"Failed to deserialize input for {function_id}: {reason}"
    )


def parse_input(call: Call, fields: Fields, struct: str) -> JSONObject:
    data = call.data
    if data is None and not any(required for _, required in fields.values()):
        data = {}
    if not isinstance(data, dict):
        raise _bad_input(
            call.function_id, f"invalid type: {_describe(data)}, expected struct {struct}"
        )
    out: JSONObject = {}
    for name, (kind, required) in fields.items():
        value = data.get(name)
        if value is None:
            if required:
                if name in data and kind != ANY:
                    raise _bad_input(
                        call.function_id, f"invalid type: null, expected {_EXPECTED[kind]}"
                    )
                if name not in data:
                    raise _bad_input(call.function_id, f"missing field `{name}`")
            continue
        if not _ok(kind, value):
            raise _bad_input(
                call.function_id, f"invalid type: {_describe(value)}, expected {_EXPECTED[kind]}"
            )
        out[name] = value
    return out


def _opt_str(inp: JSONObject, key: str) -> Optional[str]:
    value = inp.get(key)
    return value if isinstance(value, str) else None


def _opt_bool(inp: JSONObject, key: str) -> bool:
    return inp.get(key) is True


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


def _bindings_for(core: EngineCore, ns: str, function_id: str) -> list[JSON]:
    return [
        {"id": b.id, "trigger_type": b.trigger_type, "config": b.config}
        for b in sorted(core.bindings.values(), key=lambda b: b.id)
        if b.namespace == ns and b.function_id == function_id
    ]


def _function_detail(core: EngineCore, entry: Union[FunctionEntry, Builtin]) -> JSONObject:
    out = _function_summary(entry)
    if isinstance(entry, Builtin):
        _put(out, "request_schema", entry.request_format)
        ns = DEFAULT
    else:
        _put(out, "request_schema", entry.request_format)
        _put(out, "response_schema", entry.response_format)
        ns = entry.namespace
    out["registered_triggers"] = _bindings_for(core, ns, out["function_id"])  # type: ignore[arg-type]
    return out


def _is_internal(function_id: str, metadata: JSON) -> bool:
    if function_id.startswith("engine::") and not function_id.startswith("engine::queue::"):
        return True
    return isinstance(metadata, dict) and metadata.get("internal") is True


def _all_functions(core: EngineCore) -> list[Union[FunctionEntry, Builtin]]:
    entries: list[Union[FunctionEntry, Builtin]] = list(core.functions.values())
    entries.extend(b for fid, b in core.builtins.items() if (DEFAULT, fid) not in core.functions)
    return entries


def _rank(search: str, primary: str, *others: Optional[str]) -> Optional[int]:
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
    core: EngineCore,
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
    for entry in _all_functions(core):
        ns = DEFAULT if isinstance(entry, Builtin) else entry.namespace
        if not include_internal and _is_internal(entry.id, entry.metadata):
            continue
        if prefix is not None and not entry.id.startswith(prefix):
            continue
        if wanted is not None and _entry_worker(entry) not in wanted:
            continue
        if session is not None and session.denial(ns, entry.id, entry.metadata) is not None:
            continue
        rank = 0
        if search:
            found = _rank(search, entry.id, entry.description)
            if found is None:
                continue
            rank = found
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


def _type_detail(core: EngineCore, entry: TriggerTypeEntry) -> JSONObject:
    out = _type_summary(entry)
    _put(out, "configuration_schema", entry.trigger_request_format)
    _put(out, "request_schema", entry.call_request_format)
    out["instance_count"] = sum(1 for b in core.bindings.values() if b.provider is entry)
    return out


def _binding_worker_name(b: Binding) -> str:
    if b.owner is None:
        return ENGINE_WORKER
    return _owner_name(b.owner, b.function_id)


def _config_summary(config: JSON) -> str:
    from iii_protocol._json import dumps

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


def _engine_workers(core: EngineCore) -> list[JSONObject]:
    os_name = f"{platform.system()} {platform.release()} ({platform.machine()})"
    started = getattr(core, "started_at_ms", 0)
    out: list[JSONObject] = []
    groups: dict[str, int] = {}
    for fid, b in core.builtins.items():
        if (DEFAULT, fid) not in core.functions:
            groups[b.worker_name] = groups.get(b.worker_name, 0) + 1
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


def _workers_register(call: Call) -> JSON:
    inp = parse_input(call, _REGISTER_WORKER, "RegisterWorkerInput")
    telemetry = inp.get("telemetry")
    if telemetry is not None:
        parse_input(
            Call(call.core, call.function_id, None, telemetry, None, None, None),
            _TELEMETRY,
            "WorkerTelemetryMeta",
        )
    caller_id = inp[CALLER_WORKER_ID_KEY]
    worker = call.core.workers.get(caller_id) if isinstance(caller_id, str) else None
    if worker is None:
        raise BuiltinError("NOT_FOUND", f"worker {caller_id} is not connected")
    return call.core.announce(worker, inp)


def _channels_create(call: Call) -> JSON:
    inp = parse_input(call, {"buffer_size": (INT, False)}, "CreateChannelInput")
    size = inp.get("buffer_size")
    buffer_size = 64 if not isinstance(size, int) else max(1, min(1024, size))
    channel = call.core.channels.create(buffer_size)
    return {
        "writer": {"channel_id": channel.id, "access_key": channel.key, "direction": "write"},
        "reader": {"channel_id": channel.id, "access_key": channel.key, "direction": "read"},
    }


def _functions_list(call: Call) -> JSON:
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
    worker = _opt_str(inp, "worker")
    many = inp.get("workers")
    if worker is not None or isinstance(many, list):
        workers = [worker] if worker is not None else []
        if isinstance(many, list):
            workers.extend(w for w in many if isinstance(w, str))
    return {
        "functions": function_summaries(
            call.core,
            include_internal=_opt_bool(inp, "include_internal"),
            search=_opt_str(inp, "search"),
            prefix=_opt_str(inp, "prefix"),
            workers=workers,
            caller=call.caller,
        )
    }


def _find_function(
    core: EngineCore, ns: str, function_id: str
) -> Optional[Union[FunctionEntry, Builtin]]:
    entry = core.functions.get((ns, function_id))
    if entry is not None:
        return entry
    if ns == DEFAULT:
        return core.builtins.get(function_id)
    return None


def _visible(call: Call, ns: str, entry: Union[FunctionEntry, Builtin]) -> bool:
    session = call.caller.session if call.caller is not None else None
    return session is None or session.denial(ns, entry.id, entry.metadata) is None


def _functions_info(call: Call) -> JSON:
    inp = parse_input(
        call,
        {"function_id": (STR, False), "function_ids": (STRS, False), "namespace": (STR, False)},
        "FunctionInfoInput",
    )
    ns = _opt_str(inp, "namespace") or DEFAULT
    single = _opt_str(inp, "function_id")
    many = inp.get("function_ids")
    if (single is None) == (many is None):
        raise BuiltinError(
            "INVALID_ARGUMENTS", "exactly one of `function_id` or `function_ids` is required"
        )
    if single is not None:
        entry = _find_function(call.core, ns, single)
        if entry is None:
            raise BuiltinError("NOT_FOUND", f"Function '{single}' not found in namespace '{ns}'")
        if not _visible(call, ns, entry):
            raise BuiltinError("FORBIDDEN", f"Function '{single}' is not visible to this session.")
        return _function_detail(call.core, entry)
    assert isinstance(many, list)
    if len(many) > MAX_INFO_IDS:
        raise BuiltinError(
            "INVALID_ARGUMENTS", f"at most {MAX_INFO_IDS} function_ids per call (got {len(many)})"
        )
    out: list[JSON] = []
    for fid in many:
        assert isinstance(fid, str)
        entry = _find_function(call.core, ns, fid)
        if entry is None:
            out.append({"function_id": fid, "error": "not_found"})
        elif not _visible(call, ns, entry):
            out.append({"function_id": fid, "error": "forbidden"})
        else:
            out.append(_function_detail(call.core, entry))
    return {"functions": out}


def _triggers_list(call: Call) -> JSON:
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
    search = _opt_str(inp, "search")
    prefix = _opt_str(inp, "prefix")
    worker = _opt_str(inp, "worker")
    include_internal = _opt_bool(inp, "include_internal")
    ranked: list[tuple[int, str, str, JSONObject]] = []
    for entry in call.core.trigger_types.values():
        if not include_internal and entry.id.startswith("engine::"):
            continue
        if prefix is not None and not entry.id.startswith(prefix):
            continue
        if worker is not None and _type_worker_name(entry) != worker:
            continue
        rank = 0
        if search:
            found = _rank(search, entry.id, entry.description)
            if found is None:
                continue
            rank = found
        ranked.append((rank, entry.id, entry.namespace, _type_summary(entry)))
    ranked.sort(key=lambda r: (r[0], r[1], r[2]))
    return {"triggers": [r[3] for r in ranked]}


def _triggers_info(call: Call) -> JSON:
    inp = parse_input(call, {"id": (STR, True), "namespace": (STR, False)}, "TriggerInfoInput")
    type_id = inp["id"]
    assert isinstance(type_id, str)
    ns = _opt_str(inp, "namespace") or DEFAULT
    entry = call.core.trigger_types.get((ns, type_id))
    if entry is None:
        raise BuiltinError("NOT_FOUND", f"Trigger type '{type_id}' not found in namespace '{ns}'")
    return _type_detail(call.core, entry)


def _registered_list(call: Call) -> JSON:
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
    search = _opt_str(inp, "search")
    trigger_type = _opt_str(inp, "trigger_type")
    function_id = _opt_str(inp, "function_id")
    worker = _opt_str(inp, "worker")
    include_internal = _opt_bool(inp, "include_internal")
    ranked: list[tuple[int, str, JSONObject]] = []
    for b in call.core.bindings.values():
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
        rank = 0
        if search:
            found = _rank(search, b.id, b.trigger_type, b.function_id)
            if found is None:
                continue
            rank = found
        ranked.append((rank, b.id, _binding_summary(b)))
    ranked.sort(key=lambda r: (r[0], r[1]))
    return {"registered_triggers": [r[2] for r in ranked]}


def _registered_info(call: Call) -> JSON:
    inp = parse_input(call, {"id": (STR, True)}, "RegisteredTriggerInfoInput")
    binding_id = inp["id"]
    assert isinstance(binding_id, str)
    b = call.core.bindings.get(binding_id)
    if b is None:
        raise BuiltinError("NOT_FOUND", f"Registered trigger '{binding_id}' not found")
    out = _binding_summary(b)
    del out["config_summary"]
    _put(out, "metadata", b.metadata)
    entry = b.provider or call.core.trigger_types.get((DEFAULT, b.trigger_type))
    out["trigger"] = _type_detail(call.core, entry) if entry is not None else None
    fn = _find_function(call.core, b.namespace, b.function_id)
    out["function"] = _function_detail(call.core, fn) if fn is not None else None
    return out


def _workers_list(call: Call) -> JSON:
    inp = parse_input(
        call,
        {"search": (STR, False), "runtime": (STR, False), "status": (STR, False)},
        "ListWorkersInput",
    )
    search = _opt_str(inp, "search")
    runtime = _opt_str(inp, "runtime")
    status = _opt_str(inp, "status")
    active = call.core.active_invocations()
    rows: list[JSONObject] = [
        _worker_summary(w, active) for w in call.core.iter_workers() if w.pid is not None
    ]
    rows.extend(_engine_workers(call.core))
    out: list[JSONObject] = []
    for row in rows:
        if runtime is not None and row["runtime"] != runtime:
            continue
        if status is not None and row["status"] != status:
            continue
        if search:
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


def _workers_info(call: Call) -> JSON:
    inp = parse_input(call, {"name": (STR, True), "namespace": (STR, False)}, "WorkerInfoInput")
    name = inp["name"]
    assert isinstance(name, str)
    if not name.strip():
        raise BuiltinError("INVALID_ARGUMENTS", "`name` must not be blank")
    ns = _opt_str(inp, "namespace")
    core = call.core
    active = core.active_invocations()
    candidates = [
        w
        for w in core.iter_workers()
        if (w.name == name or w.worker_id == name)
        and (ns is None or (w.namespace or DEFAULT) == ns)
    ]
    candidates.sort(key=lambda w: (w.namespace != DEFAULT, w.connected_at_ms))
    if candidates:
        w = candidates[0]
        detail = _worker_summary(w, active)
        _put(detail, "pid", w.pid)
        detail["internal"] = False
        functions = [_function_summary(e) for e in core.functions.values() if e.owner is w]
        types = [_type_summary(e) for e in core.trigger_types.values() if e.provider is w]
        bindings = [_binding_summary(b) for b in core.bindings.values() if b.owner is w]
    else:
        engine_rows = [r for r in _engine_workers(core) if r["name"] == name]
        if not engine_rows or (ns is not None and ns != DEFAULT):
            raise BuiltinError("NOT_FOUND", f"Worker '{name}' not found")
        detail = engine_rows[0]
        detail["internal"] = True
        functions = [
            _function_summary(b)
            for fid, b in core.builtins.items()
            if b.worker_name == name and (DEFAULT, fid) not in core.functions
        ]
        types = [
            _type_summary(e)
            for e in core.trigger_types.values()
            if e.provider is None and (e.worker_name or ENGINE_WORKER) == name
        ]
        bindings = [_binding_summary(b) for b in core.bindings.values() if b.owner is None]
    functions.sort(key=lambda f: str(f["function_id"]))
    return {
        "worker": detail,
        "functions": list(functions),
        "trigger_types": list(types),
        "registered_triggers": list(bindings),
    }


async def _register_trigger(call: Call) -> JSON:
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
    trigger_ns = _opt_str(inp, "trigger_namespace")
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
    core = call.core
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
    core.add_binding(binding)
    core.notify()
    if binding.provider is None or binding.acked:
        return {"id": binding.id}
    done = anyio.Event()
    outcome: list[Optional[dict[str, JSON]]] = []

    def on_ack(error: Optional[dict[str, JSON]]) -> None:
        outcome.append(error)
        done.set()

    binding.waiter = on_ack
    await core.relieve()
    with anyio.move_on_after(core.options.trigger_ack_timeout):
        await done.wait()
    if not outcome:
        binding.waiter = None
        return {"id": binding.id}
    error = outcome[0]
    if error is not None:
        core.remove_binding(binding.id)
        raise BuiltinError(
            str(error.get("code", "trigger_registration_failed")), str(error.get("message"))
        )
    return {"id": binding.id}


def _unregister_trigger(call: Call) -> JSON:
    inp = parse_input(
        call, {"id": (STR, True), "trigger_type": (STR, False)}, "UnregisterTriggerInput"
    )
    binding_id = inp["id"]
    assert isinstance(binding_id, str)
    binding = call.core.bindings.get(binding_id)
    trigger_type = _opt_str(inp, "trigger_type")
    if binding is None or (trigger_type is not None and binding.trigger_type != trigger_type):
        return {"removed": False}
    return {"removed": call.core.remove_binding(binding_id)}


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


def _queue_enqueue(call: Call) -> JSON:
    inp = parse_input(
        call,
        {
            "queue": (STR, True),
            "function_id": (STR, True),
            "data": (ANY, False),
            "messageReceiptId": (STR, False),
            "namespace": (STR, False),
            "traceparent": (STR, False),
            "baggage": (STR, False),
        },
        "EnqueueInput",
    )
    queue = call.core.queue
    if queue is None:  # pragma: no cover - the builtin exists only with a queue
        raise BuiltinError("enqueue_error", "no queue")
    data = call.data
    job: JSONObject = dict(inp)
    job["data"] = data.get("data") if isinstance(data, dict) else None
    job.pop(CALLER_WORKER_ID_KEY, None)
    receipt = _opt_str(inp, "messageReceiptId") or new_id()
    job["messageReceiptId"] = receipt
    queue.push(job)
    return {"messageReceiptId": receipt}


def install(core: EngineCore) -> None:
    """Register every builtin on ``core``."""
    specs: list[Builtin] = [
        Builtin(ANNOUNCE_FUNCTION_ID, _workers_register, "Register worker metadata"),
        Builtin("engine::channels::create", _channels_create, "Create a data channel"),
        Builtin("engine::functions::list", _functions_list, "List registered functions"),
        Builtin("engine::functions::info", _functions_info, "Describe functions"),
        Builtin("engine::triggers::list", _triggers_list, "List trigger types"),
        Builtin("engine::triggers::info", _triggers_info, "Describe a trigger type"),
        Builtin("engine::registered-triggers::list", _registered_list, "List registered triggers"),
        Builtin(
            "engine::registered-triggers::info", _registered_info, "Describe a registered trigger"
        ),
        Builtin("engine::workers::list", _workers_list, "List connected workers"),
        Builtin("engine::workers::info", _workers_info, "Describe a worker"),
        Builtin("engine::register_trigger", _register_trigger, "Register a durable trigger"),
        Builtin("engine::unregister_trigger", _unregister_trigger, "Remove a trigger"),
        Builtin("engine::baggage::get", _baggage_get, "Read a baggage entry"),
        Builtin("engine::baggage::set", _baggage_set, "Set a baggage entry"),
        Builtin("engine::baggage::get_all", _baggage_get_all, "Read all baggage entries"),
    ]
    for name, level in (
        ("trace", 5),
        ("debug", logging.DEBUG),
        ("info", logging.INFO),
        ("warn", logging.WARNING),
        ("error", logging.ERROR),
    ):
        specs.append(Builtin(f"engine::log::{name}", _logger(level), f"Log at {name} level"))
    if core.queue is not None:
        specs.append(
            Builtin(
                QUEUE_FUNCTION_ID,
                _queue_enqueue,
                "Enqueue a call (in-memory queue)",
                worker_name=QUEUE_WORKER,
            )
        )
    for spec in specs:
        core.builtins[spec.id] = spec
