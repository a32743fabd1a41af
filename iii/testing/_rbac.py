"""RBAC listener configuration and per-connection sessions (docs/protocol.md#rbac).

The engine side (authentication, the invoke gate, the middleware) is the RBAC
worker module, ``iii.testing._workers.rbac``.

A listener with an ``rbac`` block authenticates every connection (through the
auth function, when one is configured) and checks every call against the
session's grants.  A trusted listener has no session at all: the engine's hot
path only tests ``worker.session is None``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from fnmatch import fnmatchcase
from typing import Optional, Union

import attrs

from iii_protocol._json import JSON

__all__ = [
    "AuthResultError",
    "ExposeRule",
    "RbacConfig",
    "Session",
    "parse_auth_result",
]

#: Ids every RBAC session may call (infrastructure the SDKs need).
_INFRASTRUCTURE = frozenset({"engine::channels::create", "engine::workers::register"})
_INFRASTRUCTURE_PREFIXES = ("engine::log::", "engine::baggage::")

_MATCH_CALL = re.compile(r"""^\s*match\(\s*(["'])(.*)\1\s*\)\s*$""")


def _glob(pattern: str, value: str) -> bool:
    return pattern == value or (("*" in pattern or "?" in pattern) and fnmatchcase(value, pattern))


def _match_pattern(value: object) -> Optional[str]:
    """``match("glob")`` (or ``{"match": "glob"}``) -> the glob, else None."""
    if isinstance(value, str):
        m = _MATCH_CALL.match(value)
        return m.group(2) if m else None
    if isinstance(value, Mapping) and set(value) == {"match"} and isinstance(value["match"], str):
        return value["match"]
    return None


@attrs.frozen
class ExposeRule:
    """One ``rbac.expose_functions`` entry: an id glob or a metadata filter.

    ``namespace`` scopes the rule (``default`` when the rule names none).
    """

    id_glob: Optional[str] = None
    metadata: Optional[Mapping[str, JSON]] = None
    namespace: str = "default"

    @classmethod
    def parse(cls, raw: object) -> ExposeRule:
        """A rule from its configuration form: a glob string, or ``{match|metadata, namespace}``."""
        if isinstance(raw, str):
            pattern = _match_pattern(raw)
            return cls(id_glob=pattern if pattern is not None else raw)
        if isinstance(raw, Mapping):
            namespace = raw.get("namespace", "default")
            if not isinstance(namespace, str) or not namespace.strip():
                raise ValueError(f"expose_functions rule has a bad namespace: {raw!r}")
            if "match" in raw:
                pattern = raw["match"]
                if not isinstance(pattern, str):
                    raise ValueError(f"expose_functions 'match' must be a string: {raw!r}")
                inner = _match_pattern(pattern)
                return cls(id_glob=inner if inner is not None else pattern, namespace=namespace)
            if "metadata" in raw:
                meta = raw["metadata"]
                if not isinstance(meta, Mapping) or not meta:
                    raise ValueError(f"expose_functions 'metadata' must be an object: {raw!r}")
                return cls(metadata=dict(meta), namespace=namespace)
        raise ValueError(f"unsupported expose_functions rule: {raw!r}")

    def matches(self, namespace: str, function_id: str, metadata: JSON) -> bool:
        """Whether a function (its namespace, id and metadata) is exposed by this rule."""
        if namespace != self.namespace:
            return False
        if self.id_glob is not None:
            return _glob(self.id_glob, function_id)
        if self.metadata is None or not isinstance(metadata, dict):
            return False
        for key, expected in self.metadata.items():
            if key not in metadata:
                return False
            actual = metadata[key]
            pattern = _match_pattern(expected)
            if pattern is not None:
                if not isinstance(actual, str) or not _glob(pattern, actual):
                    return False
            elif actual != expected:
                return False
        return True


def _rules(value: object) -> tuple[ExposeRule, ...]:
    if value is None:
        return ()
    if isinstance(value, (str, Mapping)) or not isinstance(value, Sequence):
        raise ValueError("expose_functions must be a list")
    return tuple(r if isinstance(r, ExposeRule) else ExposeRule.parse(r) for r in value)


def _opt_str(value: object, name: str) -> Optional[str]:
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{name} must be a non-empty string")
    return value


@attrs.frozen
class RbacConfig:
    """The ``rbac`` block of an RBAC-gated listener.

    Attributes:
        auth_function_id: called (in ``default``) on every upgrade with
            ``{headers, query_params, ip_address}``; its result is the session's
            ``AuthResult``.  Without one every session has the default grants
            and may register anything.
        expose_functions: rules that make functions callable by every session.
        middleware_function_id: when set, every non-builtin call is handed to
            this function, whose result becomes the call's result.
    """

    auth_function_id: Optional[str] = None
    expose_functions: tuple[ExposeRule, ...] = attrs.field(default=(), converter=_rules)
    middleware_function_id: Optional[str] = None

    @classmethod
    def from_mapping(cls, raw: Mapping[str, object]) -> RbacConfig:
        """Build from the JSON/YAML shape (``{"auth_function_id": ..., ...}``).

        Unknown keys are a configuration error, like the engine's.
        """
        known = {"auth_function_id", "expose_functions", "middleware_function_id"}
        unknown = set(raw) - known
        if unknown:
            raise ValueError(f"unknown rbac keys: {sorted(unknown)}")
        return cls(
            auth_function_id=_opt_str(raw.get("auth_function_id"), "auth_function_id"),
            expose_functions=raw.get("expose_functions"),
            middleware_function_id=_opt_str(
                raw.get("middleware_function_id"), "middleware_function_id"
            ),
        )


RbacLike = Union[RbacConfig, Mapping[str, object]]


def as_rbac(value: Optional[RbacLike]) -> Optional[RbacConfig]:
    if value is None or isinstance(value, RbacConfig):
        return value
    if not isinstance(value, Mapping):
        raise TypeError(f"expected an RbacConfig or a mapping, got {value!r}")
    return RbacConfig.from_mapping(value)


class AuthResultError(ValueError):
    """The auth function's result is not an ``AuthResult``."""


def _str_list(raw: Mapping[str, JSON], key: str) -> list[str]:
    value = raw.get(key)
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise AuthResultError(f"`{key}` must be a list of strings")
    return [v for v in value if isinstance(v, str)]


def _bool(raw: Mapping[str, JSON], key: str, default: bool) -> bool:
    value = raw.get(key)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise AuthResultError(f"`{key}` must be a boolean")
    return value


@attrs.define(slots=True)
class Session:
    """What one connection on an RBAC listener may do."""

    rbac: RbacConfig
    namespaces: dict[str, list[str]] = attrs.Factory(dict)
    allowed_functions: list[str] = attrs.Factory(list)
    forbidden_functions: list[str] = attrs.Factory(list)
    allowed_trigger_types: Optional[list[str]] = None
    allow_trigger_type_registration: bool = False
    allow_function_registration: bool = True
    context: JSON = attrs.Factory(dict)
    function_registration_prefix: Optional[str] = None

    @property
    def middleware_function_id(self) -> Optional[str]:
        return self.rbac.middleware_function_id

    @classmethod
    def unauthenticated(cls, rbac: RbacConfig) -> Session:
        """The session of a listener without an auth function: may register anything."""
        return cls(rbac=rbac, allow_trigger_type_registration=True)

    def prefixed(self, function_id: str) -> str:
        if self.function_registration_prefix:
            return f"{self.function_registration_prefix}::{function_id}"
        return function_id

    def denial(self, namespace: str, function_id: str, metadata: JSON) -> Optional[str]:
        """Why this session may not call ``(namespace, function_id)``; None if it may."""
        if function_id in self.forbidden_functions:
            return f"function '{function_id}' not allowed (remove from rbac.forbidden_functions)"
        if function_id in _INFRASTRUCTURE or function_id.startswith(_INFRASTRUCTURE_PREFIXES):
            return None
        grants = self.namespaces.get(namespace)
        if grants is not None and any(_glob(g, function_id) for g in grants):
            return None
        if namespace == "default" and function_id in self.allowed_functions:
            return None
        for rule in self.rbac.expose_functions:
            if rule.matches(namespace, function_id, metadata):
                return None
        if self.namespaces and namespace != "default" and namespace not in self.namespaces:
            permitted = ", ".join(sorted(self.namespaces))
            return f"namespace '{namespace}' not allowed for this session (permitted: {permitted})"
        return f"function '{function_id}' not allowed (add to rbac.expose_functions)"

    def namespace_denial(self, namespace: str) -> Optional[str]:
        """Why this session may not declare ``namespace`` in its announce."""
        if not self.namespaces or namespace in self.namespaces:
            return None
        permitted = ", ".join(sorted(self.namespaces))
        return f"namespace '{namespace}' not allowed for this session (permitted: {permitted})"


def parse_auth_result(rbac: RbacConfig, raw: JSON) -> Session:
    """Turn an auth function's result into a session; raises ``AuthResultError``."""
    if raw is None:
        raise AuthResultError("auth function returned no result")
    if not isinstance(raw, dict):
        raise AuthResultError(f"auth result must be an object, got {type(raw).__name__}")
    namespaces: dict[str, list[str]] = {}
    ns_raw = raw.get("namespaces")
    if ns_raw is not None:
        if not isinstance(ns_raw, dict):
            raise AuthResultError("`namespaces` must be an object")
        for ns, grants in ns_raw.items():
            if not isinstance(grants, list) or not all(isinstance(g, str) for g in grants):
                raise AuthResultError(f"`namespaces.{ns}` must be a list of strings")
            namespaces[ns] = [g for g in grants if isinstance(g, str)]
    allowed_types_raw = raw.get("allowed_trigger_types")
    allowed_types = None if allowed_types_raw is None else _str_list(raw, "allowed_trigger_types")
    prefix = raw.get("function_registration_prefix")
    if prefix is not None and not isinstance(prefix, str):
        raise AuthResultError("`function_registration_prefix` must be a string")
    context = raw.get("context")
    return Session(
        rbac=rbac,
        namespaces=namespaces,
        allowed_functions=_str_list(raw, "allowed_functions"),
        forbidden_functions=_str_list(raw, "forbidden_functions"),
        allowed_trigger_types=allowed_types,
        allow_trigger_type_registration=_bool(raw, "allow_trigger_type_registration", False),
        allow_function_registration=_bool(raw, "allow_function_registration", True),
        context={} if context is None else context,
        function_registration_prefix=prefix or None,
    )
