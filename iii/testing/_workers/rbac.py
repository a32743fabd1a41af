"""The RBAC worker module (docs/protocol.md#rbac): the engine side of RBAC listeners.

A connection on an RBAC listener is authenticated (``authenticate``: the auth
function's result becomes its ``Session``), and every call it makes passes this
module's invoke gate: refused when the session may not call the function
(``FORBIDDEN``), handed to the middleware function when one is configured.
Registrations are checked by the registry against the same session.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Optional

from iii_protocol import ANNOUNCE_FUNCTION_ID, InvokeFunction, TriggerActionVoid
from iii_protocol._json import JSON, JSONObject

from .._api import EngineHost, EngineWorker
from .._rbac import AuthResultError, RbacConfig, Session, parse_auth_result
from .._records import DEFAULT, ErrorDict, Worker, error_body, new_id

__all__ = ["AuthFailure", "RbacGate", "authenticate"]


class AuthFailure(Exception):
    """A connection on an RBAC listener could not be authenticated."""


async def authenticate(
    host: EngineHost,
    rbac: RbacConfig,
    headers: Mapping[str, str],
    query: Mapping[str, list[str]],
    remote_ip: str,
) -> Session:
    """The session of a new connection (the auth function decides; without one,
    the listener's default grants)."""
    if rbac.auth_function_id is None:
        return Session.unauthenticated(rbac)
    payload: JSONObject = {
        "headers": dict(headers),
        "query_params": {k: list(v) for k, v in query.items()},
        "ip_address": remote_ip,
    }
    result, error = await host.call(DEFAULT, rbac.auth_function_id, payload)
    if error is not None:
        raise AuthFailure(f"auth function failed: {error.get('code')}: {error.get('message')}")
    try:
        return parse_auth_result(rbac, result)
    except AuthResultError as exc:
        raise AuthFailure(str(exc)) from None


class RbacGate(EngineWorker):
    """Checks the calls of connections that have a session."""

    name = "rbac"

    def install(self) -> None:
        self.host.set_invoke_gate(self.gate)

    def gate(
        self,
        w: Worker,
        f: InvokeFunction,
        ns: str,
        inv_id: Optional[str],
        raw: JSONObject,
    ) -> bool:
        session = w.session
        if session is None:
            return False
        host = self.host
        fid = f.function_id
        entry = host.functions.get((ns, fid))
        denial = session.denial(ns, fid, entry.metadata if entry is not None else None)
        data = f.data
        if denial is None and fid == ANNOUNCE_FUNCTION_ID and isinstance(data, dict):
            declared = data.get("namespace")
            if isinstance(declared, str) and declared.strip():
                denial = session.namespace_denial(declared)
        if denial is not None:
            void = type(f.action) is TriggerActionVoid
            rid = inv_id if inv_id is not None and not void else new_id()
            host.reply(w, rid, fid, None, error_body("FORBIDDEN", denial))
            return True
        middleware = session.middleware_function_id
        if middleware is None or self._is_builtin_target(ns, fid):
            return False
        self._through_middleware(w, session.context, middleware, f, ns, inv_id, raw)
        return True

    def _is_builtin_target(self, ns: str, function_id: str) -> bool:
        host = self.host
        return (
            ns == DEFAULT
            and function_id in host.builtins
            and (ns, function_id) not in host.functions
        )

    def _through_middleware(
        self,
        w: Worker,
        context: JSON,
        middleware: str,
        f: InvokeFunction,
        ns: str,
        inv_id: Optional[str],
        raw: JSONObject,
    ) -> None:
        """Section 5.2 step 4: the middleware's outcome is the call's outcome."""
        void = type(f.action) is TriggerActionVoid
        rid = inv_id if inv_id is not None and not void else new_id()
        payload: JSONObject = {
            "function_id": f.function_id,
            "payload": f.data,
            "action": raw.get("action"),
            "context": context,
            "namespace": ns,
        }
        host = self.host

        def done(result: JSON, error: Optional[ErrorDict]) -> None:
            if not w.cleaned:
                host.reply(w, rid, f.function_id, result, error)

        host.invoke(DEFAULT, middleware, payload, on_done=done)
