"""The official SDK's public surface exists in ours, name for name.

For each official release (0.19.7 and 0.25.0, installed into ``.cache/peers``)
``peers/surface.py`` describes every public name of the modules users import,
once in the peer's venv and once here; every official name must exist in ours
and be usable the same way from the caller's side:

* a callable (a class: its constructor; a method) takes every official
  parameter under the same name, of a kind that accepts the same call
  (positional ones at the same position), optional where the official one is;
  any parameter ours adds is optional;
* a class has every official attribute and method (async where the official
  one is async); an exception has the official one's builtin bases, so the
  same ``except`` clauses catch it; an enum has every official member.

Anything else is a difference, and fails the test unless ``NOT_PROVIDED``
(mirrored by the README's "Coming from the official SDK" table) says why; an
entry that no longer matches any difference fails the test too.
"""

from __future__ import annotations

import ast
import builtins
import fnmatch
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Optional

import pytest

from ._harness import PEERS_DIR
from ._install import REPO, Peers

pytestmark = pytest.mark.conformance

SURFACE = PEERS_DIR / "surface.py"

#: The modules users import, per release (a package's internal modules, e.g.
#: the official transport's message builders, are not its surface).
MODULES: dict[str, tuple[str, ...]] = {
    "0.19.7": (
        "iii",
        "iii.iii",
        "iii.iii_constants",
        "iii.iii_types",
        "iii.types",
        "iii.triggers",
        "iii.helpers",
        "iii.errors",
        "iii.channels",
        "iii.stream",
        "iii.state",
        "iii.utils",
        "iii.format_utils",
        "iii_observability",
    ),
    "0.25.0": (
        "iii",
        "iii.iii",
        "iii.iii_constants",
        "iii.iii_types",
        "iii.types",
        "iii.triggers",
        "iii.trigger",
        "iii.helpers",
        "iii.errors",
        "iii.channel",
        "iii.channels",
        "iii.stream",
        "iii.state",
        "iii.runtime",
        "iii.protocol",
        "iii.engine",
        "iii.internal",
        "iii.utils",
        "iii.format_utils",
        "iii.filter",
        "iii_helpers.http",
        "iii_helpers.queue",
        "iii_helpers.stream",
        "iii_helpers.observability",
        "iii_helpers.worker_connection_manager",
    ),
}

#: Names re-exported by an official module that users import from it.
REEXPORTS: dict[str, tuple[str, ...]] = {
    "iii.iii_constants": ("OtelConfig", "ReconnectionConfig"),
}

#: ``iii_helpers`` (the 0.25 companion distribution) is not shipped: each of its
#: names is in one of these of ours (under another name where given).
RELOCATED: dict[str, tuple[str, dict[str, str]]] = {
    "iii_helpers.http": (
        "iii.iii_types",
        {
            "HttpRequest": "iii.types.ApiRequest",
            "HttpResponse": "iii.types.ApiResponse",
            "http": "iii.utils.http",
        },
    ),
    "iii_helpers.queue": ("iii.iii_types", {}),
    "iii_helpers.stream": ("iii.stream", {}),
    "iii_helpers.observability": ("iii_observability", {}),
    "iii_helpers.worker_connection_manager": ("iii.iii_types", {}),
}

_OBSERVE = (
    "observe (0.25): observers, filters, observe hooks, local dispatch and their wire "
    "messages need the engine's observe support, which the engines this SDK targets "
    "(0.19 and the reference engine) do not have. register_function(observe=...) and "
    "local_dispatch= are accepted and have no effect; ObserveRejection exists; "
    "FunctionRef.is_observed()/observers() answer False/[]"
)
_WIRE = (
    "the official transport's pydantic message models and the feature flags it announces "
    "to 0.25 engines: this SDK's frames are iii_protocol's typed frames (RegisterFunction, "
    "InvokeFunction, ...), which code that builds raw frames uses instead"
)
_INTERNAL = (
    "bookkeeping classes of the official client's own implementation, not part of "
    "any call a worker makes"
)
_EXPORT = (
    "telemetry export to the engine: the SDK installs no global OpenTelemetry providers "
    "and opens no second socket; configure OpenTelemetry's own SDK and exporters (the SDK "
    "propagates W3C traceparent/baggage on every invocation, and iii_observability's "
    "helpers work with any provider)"
)
_HTTPX = "an httpx request helper with tracing: an HTTP client library concern, not the SDK's"
_PYDANTIC = (
    "pydantic's BaseModel methods other than model_dump / model_validate (model_dump_json, "
    "model_copy, model_json_schema, ...), and all of them on the protocol core's values "
    "(TriggerActionEnqueue/Void, HttpAuth*, RegisterFunctionFormat): the SDK does not depend "
    "on pydantic; its models are attrs classes (attrs.evolve copies one, "
    "iii_protocol.to_json_value(value) writes a core value as its JSON object)"
)
_CONNECT = (
    "connect_async(): a worker connects when it is made (register_worker / "
    "register_worker_async wait for the engine; III(...) constructed directly connects "
    "in the background): there is no separate connect step"
)
_TAG = (
    "the tag of a tagged value (TriggerActionEnqueue, HttpAuthBearer, ...) is its class: "
    "value.type reads it, the constructor takes no type= argument"
)
_HANDLE = (
    "constructed by the SDK only (register_trigger_type returns it); its methods are the "
    "official ones"
)
_INIT_ORDER = (
    "InitOptions takes its fields by position in the 0.25 order (namespace third); "
    "0.19.7 code passing fields after the second by position must name them"
)

#: Every deliberate difference from the official surface: (patterns, reason).
#: A pattern matches difference keys: ``module.Name``, ``module.Name.member``,
#: ``module.Name(param)``, ``module.Name.method(param)``.
NOT_PROVIDED: tuple[tuple[tuple[str, ...], str], ...] = (
    (
        (
            "iii.Caller",
            "iii.Capture",
            "iii.Filter",
            "iii.Observed",
            "iii.ObserveHooks",
            "iii.ObserveSource",
            "iii.Observer",
            "iii.ObserverHandle",
            "iii.ObserverOptions",
            "iii.ObserverState",
            "iii.Target",
            "iii.filter",
            "iii.IIIClient.observe",
            "iii.types.IIIClient.observe",
            "iii.iii.III.observe",
            "iii.*.MessageType.*OBSERVE*",
            "iii.*.MessageType.FUNCTION_REGISTERED",
            "iii.*.MessageType.INVOCATIONS_OBSERVED",
            "iii.*.MessageType.LOCAL_INVOCATION_STATS",
            "iii.iii_types.DEFAULT_CAPTURE",
        ),
        _OBSERVE,
    ),
    (
        (
            "iii.*Message",
            "iii.*.*Message",
            "iii.*.*Wire",
            "iii.iii_types.IIIMessage",
            "iii.iii_types.ErrorBody",
            "iii.iii_types.CallerParent",
            "iii.iii_types.ObserveDescriptor",
            "iii.iii_types.DroppedReportCount",
            "iii.iii_types.LocalInvocationCount",
            "iii.*FEATURE_*",
            "iii.protocol.SDK_FEATURES",
            "iii.iii_types.SDK_FEATURES",
        ),
        _WIRE,
    ),
    (
        (
            "iii.types.Invocation",
            "iii.types.RemoteFunctionData",
            "iii.types.RemoteServiceFunctionData",
            "iii.types.RemoteTriggerTypeData",
        ),
        _INTERNAL,
    ),
    (
        (
            "iii_observability.init_otel",
            "iii_observability.flush_otel",
            "iii_observability.shutdown_otel",
            "iii_helpers.observability.init_otel",
            "iii_helpers.observability.flush_otel",
            "iii_helpers.observability.shutdown_otel",
        ),
        _EXPORT,
    ),
    (
        (
            "iii_observability.execute_traced_request",
            "iii_helpers.observability.execute_traced_request",
        ),
        _HTTPX,
    ),
    (("iii.iii.III.connect_async",), _CONNECT),
    (
        (
            "*.model_dump_json",
            "*.model_validate_json",
            "*.model_copy",
            "*.model_json_schema",
            "*.TriggerAction*.model_*",
            "*.HttpAuth*.model_*",
            "*.RegisterFunctionFormat.model_*",
        ),
        _PYDANTIC,
    ),
    (("*.TriggerActionEnqueue(type)", "*.TriggerActionVoid(type)", "*.HttpAuth*(type)"), _TAG),
    (
        (
            "iii.TriggerTypeRef(*)",
            "iii.runtime.TriggerTypeRef(*)",
            "iii.triggers.TriggerTypeRef(*)",
        ),
        _HANDLE,
    ),
    (("iii.InitOptions(@*)", "iii.iii_constants.InitOptions(@*)"), _INIT_ORDER),
)


# -- describing both sides ----------------------------------------------------------------


def _describe(python: Path, modules: list[str], cwd: Path) -> dict[str, Any]:
    proc = subprocess.run(
        [str(python), str(SURFACE), *modules],
        capture_output=True,
        text=True,
        cwd=str(cwd),
        timeout=120,
        check=False,
    )
    if proc.returncode != 0:
        raise AssertionError(f"{python} {SURFACE} failed:\n{proc.stderr[-3000:]}")
    out: dict[str, Any] = json.loads(proc.stdout)
    return out


def _our_location(module: str, name: str) -> tuple[str, str]:
    if module in RELOCATED:
        default, renames = RELOCATED[module]
        target = renames.get(name)
        if target is not None:
            our_module, _, our_name = target.rpartition(".")
            return our_module, our_name
        return default, name
    return module, name


@pytest.fixture(scope="module")
def surfaces(peers: Peers, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """``{version: (official, ours)}``, each ``{module: {name: entry}}``."""
    out: dict[str, Any] = {}
    for version, modules in MODULES.items():
        args = [f"{m}+{','.join(REEXPORTS[m])}" if m in REEXPORTS else m for m in modules]
        official = _describe(peers.python[version], args, tmp_path_factory.mktemp("official"))
        ours_modules = sorted({_our_location(m, "")[0] for m in modules})
        ours = _describe(Path(sys.executable), ours_modules, REPO)
        out[version] = (official, ours)
    return out


# -- comparing ----------------------------------------------------------------------------

_POSITIONAL = ("POSITIONAL_ONLY", "POSITIONAL_OR_KEYWORD")

#: What callers use of a pydantic model's own API (the official models are pydantic's).
PYDANTIC_API = (
    "model_dump",
    "model_validate",
    "model_dump_json",
    "model_validate_json",
    "model_copy",
    "model_json_schema",
)


def _param_problems(where: str, official: Any, ours: Any) -> Iterator[tuple[str, str]]:
    """(key, message) for each way a call written for ``official`` fails on ``ours``."""
    if official is None or ours is None:
        return
    off = [p for p in official if not p[0].startswith("_")]
    kinds = {p[1] for p in off}
    if kinds <= {"VAR_POSITIONAL", "VAR_KEYWORD"}:
        return  # an unresolved signature (a Protocol, a forward reference): nothing to check
    mine = {p[0]: p for p in ours}
    my_positional = [p[0] for p in ours if p[1] in _POSITIONAL]
    off_positional = [p[0] for p in off if p[1] in _POSITIONAL]
    var_kw = any(p[1] == "VAR_KEYWORD" for p in ours)
    var_pos = any(p[1] == "VAR_POSITIONAL" for p in ours)
    for name, kind, has_default in off:
        if kind in ("VAR_POSITIONAL", "VAR_KEYWORD"):
            if not (var_pos if kind == "VAR_POSITIONAL" else var_kw):
                yield f"{where}({name})", f"takes no *{name} / **{name}"
            continue
        mine_p = mine.get(name)
        if mine_p is None:
            if not (kind == "KEYWORD_ONLY" and var_kw):
                yield f"{where}({name})", f"has no parameter {name!r}"
            continue
        _, my_kind, my_default = mine_p
        if kind in _POSITIONAL:
            if my_kind not in _POSITIONAL:
                yield f"{where}({name})", f"{name!r} is {my_kind}, official {kind}"
            elif off_positional.index(name) != my_positional.index(name):
                at = off_positional.index(name)
                yield f"{where}(@{name})", f"{name!r} is not at position {at}"
        elif my_kind not in ("KEYWORD_ONLY", "POSITIONAL_OR_KEYWORD"):
            yield f"{where}({name})", f"{name!r} is {my_kind}, official {kind}"
        if has_default and not my_default:
            yield f"{where}({name})", f"{name!r} is required, official optional"
    official_names = {p[0] for p in official}
    for name, kind, has_default in ours:
        extra = name not in official_names and kind not in ("VAR_POSITIONAL", "VAR_KEYWORD")
        if extra and not has_default:
            yield f"{where}({name})", f"extra required parameter {name!r}"


def _entry_problems(
    key: str, off: dict[str, Any], mine: dict[str, Any]
) -> Iterator[tuple[str, str]]:
    kind = off["kind"]
    if mine.get("kind") == "missing":
        yield key, "missing"
        return
    if kind in ("value", "module"):
        return  # aliases and constants: that the name exists is the contract
    if kind == "enum":
        if mine.get("kind") != "enum":
            yield key, f"is {mine.get('kind')}, official enum"
            return
        for member in set(off["members"]) - set(mine["members"]):
            yield f"{key}.{member}", "enum member missing"
        return
    if kind == "exception":
        if mine.get("kind") != "exception":
            yield key, f"is {mine.get('kind')}, official exception"
            return
        builtin = {b for b in off["bases"] if hasattr(builtins, b)}
        for base in sorted(builtin - set(mine["bases"])):
            yield key, f"does not derive from {base}"
        yield from _param_problems(key, off["params"], mine["params"])
        return
    if kind in ("function", "coroutine"):
        if mine.get("kind") not in ("function", "coroutine", "class"):
            yield key, f"is {mine.get('kind')}, official {kind}"
            return
        if (kind == "coroutine") != (mine.get("kind") == "coroutine"):
            yield key, f"official is {'' if kind == 'coroutine' else 'not '}async"
        yield from _param_problems(key, off["params"], mine.get("params"))
        return
    # a class
    if mine.get("kind") not in ("class", "exception"):
        yield key, f"is {mine.get('kind')}, official class"
        return
    yield from _param_problems(key, off["params"], mine["params"])
    if off.get("pydantic") and not mine.get("pydantic"):
        for method in PYDANTIC_API:
            if method not in mine["members"]:
                yield f"{key}.{method}", "pydantic BaseModel method missing"
    present = set(mine.get("attributes", ())) | set(mine.get("members", ()))
    present |= set(mine.get("methods", {}))
    for attribute in off.get("attributes", ()):
        if attribute not in present:
            yield f"{key}.{attribute}", "attribute missing"
    for method, spec in off.get("methods", {}).items():
        if (
            method.startswith("__")
            and method not in mine.get("methods", {})
            and method in ("__eq__",)
        ):
            continue  # equality: every object has one
        if method not in present and method not in mine.get("methods", {}):
            yield f"{key}.{method}", "method missing"
            continue
        my_spec = mine.get("methods", {}).get(method)
        if my_spec is None:
            continue  # provided some other way (a field holding a callable, a builtin)
        # ``async def __aiter__`` (an async generator) and ``def __aiter__``
        # returning an async iterator serve ``async for`` alike.
        if spec["async"] != my_spec["async"] and method != "__aiter__":
            yield f"{key}.{method}", f"official is {'' if spec['async'] else 'not '}async"
        yield from _param_problems(f"{key}.{method}", spec["params"], my_spec["params"])


def differences(official: dict[str, Any], ours: dict[str, Any]) -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    for module, described in sorted(official.items()):
        if "error" in described:
            continue  # not in this release
        for name, entry in sorted(described["names"].items()):
            our_module, our_name = _our_location(module, name)
            key = f"{module}.{name}"
            mine_module = ours.get(our_module, {})
            if "error" in mine_module or "names" not in mine_module:
                found.append((module, f"module {our_module} missing: {mine_module.get('error')}"))
                break
            mine = mine_module["names"].get(our_name)
            if mine is None:
                found.append((key, f"not in {our_module}"))
                continue
            found.extend(_entry_problems(key, entry, mine))
    return found


def _excused(key: str) -> Optional[str]:
    for patterns, reason in NOT_PROVIDED:
        if any(fnmatch.fnmatchcase(key, pattern) for pattern in patterns):
            return reason
    return None


@pytest.mark.parametrize("version", sorted(MODULES))
def test_every_official_name_exists_and_takes_the_same_calls(
    surfaces: dict[str, Any], version: str
) -> None:
    official, ours = surfaces[version]
    unexplained = [(k, m) for k, m in differences(official, ours) if _excused(k) is None]
    assert not unexplained, f"{len(unexplained)} differences from {version}:\n" + "\n".join(
        f"  {k}: {m}" for k, m in unexplained
    )


def test_every_not_provided_entry_is_still_needed(surfaces: dict[str, Any]) -> None:
    keys = [k for official, ours in surfaces.values() for k, _ in differences(official, ours)]
    stale = [
        pattern
        for patterns, _ in NOT_PROVIDED
        for pattern in patterns
        if not any(fnmatch.fnmatchcase(k, pattern) for k in keys)
    ]
    assert not stale, f"NOT_PROVIDED entries that match no difference any more: {stale}"


def test_dir_of_the_package_shows_the_api_only() -> None:
    code = "import iii; print(sorted(n for n in dir(iii) if not n.startswith('__')))"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO
    ).stdout
    shown = set(ast.literal_eval(out))
    assert not shown & {"Any", "TYPE_CHECKING", "importlib", "typing", "annotations"}
    import iii

    assert shown == set(iii.__all__) - {"__version__"}


def test_the_readme_lists_every_reason() -> None:
    readme = (REPO / "README.md").read_text()
    section = readme.partition("## Coming from the official SDK")[2].partition("\n## ")[0]
    assert section, "README has no 'Coming from the official SDK' section"
    for patterns, _ in NOT_PROVIDED:
        shown = [p for p in patterns if p.split("(")[0].rsplit(".", 1)[-1].strip("*@") in section]
        assert shown, f"README section names none of {patterns}"
