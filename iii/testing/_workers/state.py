"""The state worker module (``iii-state``): a key-value store addressed by scope
and key, ``state::get/set/update/delete/list/list_groups``, and the ``state``
trigger type that reports every write.

Like the real engine with its ``kv`` adapter in memory: values live as long as
the engine run (a restart empties the store), ``state::list`` answers a scope's
values in insertion order, ``state::list_groups`` every scope ever written
(sorted; a scope stays listed after its last key is deleted).

Each ``state::set`` / ``state::update`` / ``state::delete`` reports
``{"type": "state", "event_type": "state:created" | "state:updated" |
"state:deleted", "scope", "key", "old_value", "new_value"}`` to the ``state``
bindings whose ``scope`` / ``key`` (when set) match, after the write and in
the background (see ``fanout``); a delete reports even a key that did not
exist.  Reads report nothing.
"""

from __future__ import annotations

from typing import Optional

import attrs

from iii_protocol._json import JSON, JSONObject, dumps

from .._api import Binding, BuiltinError, Call, EngineWorker, ErrorDict, error_body
from .._checks import boolean, integer, setting
from .fanout import Target, deliver_in_turn
from .kv import (
    ANY,
    MISSING,
    OPS,
    OPT_STR,
    STR,
    KvStore,
    Op,
    SerdeError,
    canonical,
    parse_struct,
    read_struct,
    stored,
)

__all__ = ["STATE_TRIGGER_TYPE", "StateConfig", "StateWorker"]

STATE_TRIGGER_TYPE = "state"

_SCOPE_KEY = [("scope", STR, None), ("key", STR, None)]
_TRIGGER_CONFIG = [
    ("scope", OPT_STR, None),
    ("key", OPT_STR, None),
    ("condition_function_id", OPT_STR, None),
]


@attrs.frozen
class StateConfig:
    triggers_enabled: bool = setting(True, boolean, "run state triggers on writes")
    max_value_bytes: int = setting(
        0, integer(0), "largest value state::set stores, in bytes of JSON (0: no limit)"
    )


class StateWorker(EngineWorker):
    """``state::*`` over an in-memory store, and the ``state`` trigger type."""

    name = "state"
    switch = "state"
    worker_name = "iii-state"
    option_prefix = "state_"
    config_class = StateConfig
    config: StateConfig

    def install(self) -> None:
        self.store = KvStore()
        #: binding id -> (scope, key, condition_function_id) of each ``state`` binding
        self.filters: dict[str, tuple[Optional[str], Optional[str], Optional[str]]] = {}
        self.function("state::set", self._set, "Set a value in state")
        self.function("state::get", self._get, "Get a value from state")
        self.function("state::delete", self._delete, "Delete a value from state")
        self.function("state::update", self._update, "Update a value in state")
        self.function("state::list", self._list, "Get a group from state")
        self.function("state::list_groups", self._list_groups, "List all state groups")
        self.trigger_type(
            STATE_TRIGGER_TYPE,
            "State trigger",
            on_register=self._bind,
            on_unregister=lambda b: self.filters.pop(b.id, None),
        )

    # -- the trigger type ------------------------------------------------------------

    def _bind(self, binding: Binding) -> Optional[ErrorDict]:
        try:
            config = read_struct(binding.config, _TRIGGER_CONFIG, "StateTriggerConfig")
        except SerdeError as exc:
            return error_body(
                "trigger_registration_failed", f"Failed to parse trigger config: {exc}"
            )
        scope, key, condition = (
            config["scope"],
            config["key"],
            config["condition_function_id"],
        )
        self.filters[binding.id] = (
            scope if isinstance(scope, str) else None,
            key if isinstance(key, str) else None,
            condition if isinstance(condition, str) else None,
        )
        return None

    def _report(
        self, event_type: str, scope: str, key: str, old_value: JSON, new_value: JSON
    ) -> None:
        if not self.config.triggers_enabled:
            return
        targets: list[Target] = []
        for b in self.host.bindings_of(STATE_TRIGGER_TYPE):
            f = self.filters.get(b.id)
            if f is None:
                continue
            want_scope, want_key, condition = f
            if want_scope is not None and want_scope != scope:
                continue
            if want_key is not None and want_key != key:
                continue
            targets.append((b, condition))
        if not targets:
            return
        payload: JSONObject = {  # keys in serde_json's (sorted) order
            "event_type": event_type,
            "key": key,
            "new_value": new_value,
            "old_value": old_value,
            "scope": scope,
            "type": "state",
        }
        self.host.spawn(deliver_in_turn, self.host, self.log, targets, payload)

    # -- functions ---------------------------------------------------------------------

    def _set(self, call: Call) -> JSON:
        inp = parse_struct(call, [*_SCOPE_KEY, ("value", ANY, "data")], "StateSetInput")
        scope, key = str(inp["scope"]), str(inp["key"])
        value = canonical(inp["value"])  # type: ignore[arg-type]
        limit = self.config.max_value_bytes
        if limit:
            size = len(dumps(value).encode())
            if size > limit:
                raise BuiltinError(
                    "VALUE_TOO_LARGE",
                    f"value of {size} bytes exceeds the configured max_value_bytes limit"
                    f" of {limit}",
                )
        old = self.store.set(scope, key, value)
        created = old is MISSING
        self._report(
            "state:created" if created else "state:updated", scope, key, stored(old), value
        )
        return {"new_value": value, "old_value": stored(old)}

    def _get(self, call: Call) -> JSON:
        inp = parse_struct(call, _SCOPE_KEY, "StateGetInput")
        return stored(self.store.get(str(inp["scope"]), str(inp["key"])))

    def _delete(self, call: Call) -> JSON:
        inp = parse_struct(call, _SCOPE_KEY, "StateDeleteInput")
        scope, key = str(inp["scope"]), str(inp["key"])
        old = stored(self.store.delete(scope, key))
        self._report("state:deleted", scope, key, old, None)
        return old

    def _update(self, call: Call) -> JSON:
        inp = parse_struct(call, [*_SCOPE_KEY, ("ops", OPS, None)], "StateUpdateInput")
        scope, key = str(inp["scope"]), str(inp["key"])
        ops = inp["ops"]
        assert isinstance(ops, list) and all(isinstance(op, Op) for op in ops)
        old, new, errors = self.store.update(scope, key, ops)
        self._report(
            "state:created" if old is MISSING else "state:updated", scope, key, stored(old), new
        )
        out: JSONObject = {}
        if errors:
            out["errors"] = [canonical(e) for e in errors]
        out["new_value"] = new
        out["old_value"] = stored(old)
        return out

    def _list(self, call: Call) -> JSON:
        inp = parse_struct(call, [("scope", STR, None)], "StateGetGroupInput")
        return self.store.values(str(inp["scope"]))

    def _list_groups(self, call: Call) -> JSON:
        parse_struct(call, [], "StateListGroupsInput")
        groups: list[JSON] = [*sorted(set(self.store.indexes()))]
        return {"groups": groups}
