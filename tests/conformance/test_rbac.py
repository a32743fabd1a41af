"""RBAC: an official caller on the engine's RBAC listener gets FORBIDDEN for what
its session may not call (docs/protocol.md#rbac), and the auth function itself is an
official worker's handler on the trusted listener."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from iii.testing import EngineThread

from ._harness import SDK_IDS, PeerAgent

pytestmark = pytest.mark.conformance

RBAC = {
    "auth_function_id": "auth::check",
    "expose_functions": ["match('pub::*')", {"metadata": {"public": True}}],
}
AUTH_RESULT = {"allowed_functions": ["priv::granted"], "forbidden_functions": ["pub::banned"]}


@pytest.mark.parametrize("sdk_id", SDK_IDS)
def test_rbac_forbidden_to_an_official_caller(
    iii_engine_factory: Callable[..., EngineThread],
    spawn: Callable[..., PeerAgent],
    sdk_id: str,
) -> None:
    engine = iii_engine_factory(rbac=RBAC)
    assert engine.rbac_url is not None
    owner = spawn(sdk_id, engine.url, "rbac-owner", engine=engine)
    owner.ok("register_function", function_id="auth::check", behavior="auth", result=AUTH_RESULT)
    for fid in ("pub::hello", "pub::banned", "priv::secret", "priv::granted"):
        owner.ok("register_function", function_id=fid, behavior="const", result=fid)
    owner.ok(
        "register_function",
        function_id="meta::open",
        behavior="const",
        result="meta::open",
        metadata={"public": True},
    )
    for fid in ("auth::check", "meta::open", "priv::granted"):
        engine.wait_for_function(fid)

    caller = spawn(
        sdk_id, engine.rbac_url, "rbac-caller", engine=engine, headers={"x-team": "blue"}
    )
    # The engine called the owner's auth function with the caller's handshake.
    auth = owner.wait_event("auth")
    assert auth["data"]["headers"]["x-team"] == "blue"
    assert auth["data"]["ip_address"] == "127.0.0.1"
    assert caller.info["listener"] == "rbac"

    for allowed in ("pub::hello", "priv::granted", "meta::open"):
        assert caller.ok("trigger", function_id=allowed, payload={})["result"] == allowed
    for denied, why in (
        ("priv::secret", "add to rbac.expose_functions"),
        ("pub::banned", "remove from rbac.forbidden_functions"),
    ):
        out = caller.call("trigger", function_id=denied, payload={})
        assert not out["ok"], out
        assert out["error"]["code"] == "FORBIDDEN"
        message = f"function '{denied}' not allowed ({why})"
        expected = f"FORBIDDEN: {message}" if sdk_id.startswith("node") else message
        assert out["error"]["message"] == expected
    # The trusted listener is not gated.
    assert owner.ok("trigger", function_id="priv::secret", payload={})["result"] == "priv::secret"
