"""The stream worker module (``iii-stream``): items addressed by stream, group
and item id, ``stream::get/set/update/delete/list/list_groups/list_all/send``,
the ``stream``, ``stream:join`` and ``stream:leave`` trigger types, and the
client WebSocket on a listener of its own (``Engine.urls["stream"]``).

Like the real engine with its ``kv`` adapter in memory: items live as long as
the engine run, ``stream::list`` answers a group's items in insertion order,
``stream::list_groups`` every group ever written (a group stays listed after
its last item is deleted).  A worker can serve one stream itself by registering
``stream::get(<stream>)``, ``stream::set(<stream>)``, ``stream::delete(...)``,
``stream::list(...)``, ``stream::list_groups(...)`` or ``stream::update(...)``
(``iii.helpers.create_stream``): the engine then calls that function instead of
its store, and still reports the change.

A change (``set``, ``update``, ``delete`` of an existing item, ``send``) is
described by ``{"type": "stream", "timestamp", "streamName", "groupId", "id",
"event": {"type": "create" | "update" | "delete", "data"}}`` (``send``:
``"event": {"type": "event", "event": {"type", "data"}}``).  It goes to the
``stream`` bindings of that stream whose ``group_id`` / ``item_id`` (when not
empty) match, in the background (see ``fanout``), and to every client
subscription to that group (and item) on the WebSocket.

The WebSocket (path ``/``): a client sends ``{"type": "join", "data":
{"subscriptionId", "streamName", "groupId", "id"?}}`` and gets the current item
(or the group's items) as ``{"event": {"type": "sync", "data"}}``, then every
change; ``{"type": "leave", ...}`` ends a subscription.  Each join and leave
runs the ``stream:join`` / ``stream:leave`` bindings, one after the other, with
``{"subscription_id", "stream_name", "group_id", "id", "context"}``; a join
binding answering ``{"unauthorized": true}`` refuses the subscription
(``{"event": {"type": "unauthorized"}}``).  The ``auth_function`` option names a
function called once per connection with ``{"headers", "path",
"query_params", "addr"}``; the ``context`` it answers goes into every join and
leave event of that connection.  When the connection ends, its remaining
subscriptions leave.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Optional, Union

import attrs

from iii_protocol._json import JSON, JSONObject, dumps, loads

from .._api import (
    DEFAULT,
    Binding,
    BuiltinError,
    Call,
    EngineWorker,
    ErrorDict,
    RouteSocket,
    error_body,
    integer,
    new_id,
    optional,
    setting,
    text,
)
from .fanout import Target, deliver_in_turn
from .kv import (
    ANY,
    MISSING,
    OPS,
    OPT_ANY,
    OPT_STR,
    STR,
    Field,
    KvStore,
    Op,
    SerdeError,
    canonical,
    ops_json,
    parse_struct,
    read_struct,
    stored,
)

__all__ = [
    "JOIN_TRIGGER_TYPE",
    "LEAVE_TRIGGER_TYPE",
    "STREAM_TRIGGER_TYPE",
    "StreamConfig",
    "StreamWorker",
]

JOIN_TRIGGER_TYPE = "stream:join"
LEAVE_TRIGGER_TYPE = "stream:leave"
STREAM_TRIGGER_TYPE = "stream"

_ITEM: list[Field] = [("stream_name", STR, None), ("group_id", STR, None), ("item_id", STR, None)]


def _item_of(inp: dict[str, object]) -> tuple[str, str, str]:
    """``(stream_name, group_id, item_id)`` of an input checked against ``_ITEM``."""
    return str(inp["stream_name"]), str(inp["group_id"]), str(inp["item_id"])


_TRIGGER_CONFIG: list[Field] = [
    ("stream_name", OPT_STR, None),
    ("group_id", OPT_STR, None),
    ("item_id", OPT_STR, None),
    ("condition_function_id", OPT_STR, None),
]
_SUBSCRIPTION: list[Field] = [
    ("subscriptionId", STR, None),
    ("streamName", STR, None),
    ("groupId", STR, None),
    ("id", OPT_STR, None),
]


@attrs.frozen
class StreamConfig:
    port: int = setting(
        0, integer(0, 65535), "port of the client stream WebSocket (0 = any; the real engine: 3112)"
    )
    auth_function: Optional[str] = setting(
        None, optional(text), "function that authenticates client stream WebSocket connections"
    )


def _rust_str(value: str) -> str:
    escaped = (
        value.replace("\\", "\\\\")
        .replace('"', '\\"')
        .replace("\n", "\\n")
        .replace("\r", "\\r")
        .replace("\t", "\\t")
    )
    return f'"{escaped}"'


def _error_debug(error: ErrorDict) -> str:
    """An error as the real engine's messages quote it (Rust's ``{:?}``)."""
    stacktrace = error.get("stacktrace")
    trace = "None" if not isinstance(stacktrace, str) else f"Some({_rust_str(stacktrace)})"
    code, message = error.get("code"), error.get("message")
    return (
        f"ErrorBody {{ code: {_rust_str(str(code))}, message: {_rust_str(str(message))}, "
        f"stacktrace: {trace} }}"
    )


class _Client:
    """One connection on the client WebSocket and its subscriptions."""

    __slots__ = ("context", "id", "socket", "subscriptions")

    def __init__(self, socket: RouteSocket, context: JSON) -> None:
        self.id = new_id()
        self.socket = socket
        self.context = context
        #: subscription id -> (stream name, group id, item id or None)
        self.subscriptions: dict[str, tuple[str, str, Optional[str]]] = {}


class StreamWorker(EngineWorker):
    """``stream::*`` over an in-memory store, its trigger types and client WebSocket."""

    name = "stream"
    switch = "stream"
    worker_name = "iii-stream"
    option_prefix = "stream_"
    config_class = StreamConfig
    config: StreamConfig

    def install(self) -> None:
        self.store = KvStore()
        #: binding id -> (stream name, group id, item id, condition) of each ``stream`` binding
        self.filters: dict[str, tuple[str, str, str, Optional[str]]] = {}
        self.clients: dict[str, _Client] = {}
        for function_id, handler, description in (
            ("stream::set", self._set, "Set a value in a stream"),
            ("stream::get", self._get, "Get a value from a stream"),
            ("stream::delete", self._delete, "Delete a value from a stream"),
            ("stream::list", self._list, "List all items in a stream group"),
            ("stream::list_groups", self._list_groups, "List all groups in a stream"),
            ("stream::list_all", self._list_all, "List all available stream with metadata"),
            ("stream::send", self._send, "Send a custom event to stream subscribers"),
            (
                "stream::update",
                self._update,
                "Atomically update a stream value with multiple operations",
            ),
        ):
            self.function(function_id, handler, description)
        self.trigger_type(JOIN_TRIGGER_TYPE, "Stream join trigger")
        self.trigger_type(LEAVE_TRIGGER_TYPE, "Stream leave trigger")
        self.trigger_type(
            STREAM_TRIGGER_TYPE,
            "Stream trigger",
            on_register=self._bind,
            on_unregister=lambda b: self.filters.pop(b.id, None),
        )

    async def run(self) -> None:
        await self.host.open_ws_listener("stream", self._route, port=self.config.port)

    # -- the ``stream`` trigger type -------------------------------------------------------

    def _bind(self, binding: Binding) -> Optional[ErrorDict]:
        failed = "Failed to deserialize stream trigger"
        try:
            config = read_struct(binding.config, _TRIGGER_CONFIG, "StreamTriggerConfig")
        except SerdeError as exc:
            return error_body("trigger_registration_failed", f"{failed}: {exc}")
        stream_name = config["stream_name"]
        if not isinstance(stream_name, str):
            # The real engine requires it too (it cannot index the binding without it).
            return error_body("trigger_registration_failed", f"{failed}: missing `stream_name`")
        group, item, condition = (
            config["group_id"],
            config["item_id"],
            config["condition_function_id"],
        )
        self.filters[binding.id] = (
            stream_name,
            group if isinstance(group, str) else "",
            item if isinstance(item, str) else "",
            condition if isinstance(condition, str) else None,
        )
        return None

    def _message(
        self, stream_name: str, group_id: str, item_id: Optional[str], event: JSONObject
    ) -> JSONObject:
        """A change as clients get it (the fields in the real engine's order)."""
        return {
            "type": "stream",
            "timestamp": int(self.host.clock.time() * 1000),
            "streamName": stream_name,
            "groupId": group_id,
            "id": item_id,
            "event": event,
        }

    def _changed(self, message: JSONObject) -> None:
        """Report a change to the matching ``stream`` bindings, then to subscribers."""
        stream_name, group_id, item_id = message["streamName"], message["groupId"], message["id"]
        targets: list[Target] = []
        for b in self.host.bindings_of(STREAM_TRIGGER_TYPE):
            f = self.filters.get(b.id)
            if f is None or f[0] != stream_name:
                continue
            if (f[1] and f[1] != group_id) or (f[2] and f[2] != (item_id or "")):
                continue
            targets.append((b, f[3]))
        if targets:
            self.host.spawn(deliver_in_turn, self.host, self.log, targets, canonical(message))
        self._broadcast(message)

    def _broadcast(self, message: JSONObject) -> None:
        text_out: Optional[str] = None
        for client in list(self.clients.values()):
            for stream_name, group_id, item_id in list(client.subscriptions.values()):
                if stream_name != message["streamName"] or group_id != message["groupId"]:
                    continue
                if item_id is not None and item_id != message["id"]:
                    continue
                if text_out is None:
                    text_out = dumps(message)
                # One copy per matching subscription, as the real engine sends them.
                client.socket.send_message("text", text_out)

    # -- a stream served by a worker ---------------------------------------------------------

    def _custom(self, op: str, stream_name: str) -> Optional[str]:
        function_id = f"stream::{op}({stream_name})"
        return function_id if (DEFAULT, function_id) in self.host.functions else None

    async def _call_custom(
        self, function_id: str, data: JSONObject
    ) -> tuple[JSON, Optional[ErrorDict]]:
        return await self.host.call(DEFAULT, function_id, canonical(data))

    async def _write_result(
        self,
        function_id: str,
        data: JSONObject,
        code: str,
        verb: str,
        fields: list[Field],
        struct: str,
    ) -> dict[str, object]:
        """Call a worker's write function and read its answer as ``struct``."""
        result, error = await self._call_custom(function_id, data)
        if error is not None:
            raise BuiltinError(
                code, f"Failed to {verb} value: Failed to invoke function: {_error_debug(error)}"
            )
        if result is None:
            raise BuiltinError(code, f"Failed to {verb} value: Function returned no result")
        try:
            return read_struct(result, fields, struct)
        except SerdeError as exc:
            raise BuiltinError("JSON_ERROR", f"Failed to convert result to value: {exc}") from None

    async def _read(self, function_id: str, data: JSONObject) -> JSON:
        result, error = await self._call_custom(function_id, data)
        if error is not None:
            raise BuiltinError(str(error.get("code")), str(error.get("message")))
        return result

    # -- functions -----------------------------------------------------------------------------

    @staticmethod
    def _key(stream_name: str, group_id: str) -> str:
        return f"stream:{stream_name}:{group_id}"

    async def _set(self, call: Call) -> JSON:
        inp = parse_struct(call, [*_ITEM, ("data", ANY, None)], "StreamSetInput")
        stream_name, group_id, item_id = _item_of(inp)
        data = canonical(inp["data"])  # type: ignore[arg-type]
        custom = self._custom("set", stream_name)
        existed: bool
        old: JSON
        new: JSON
        if custom is not None:
            out = await self._write_result(
                custom,
                {
                    "stream_name": stream_name,
                    "group_id": group_id,
                    "item_id": item_id,
                    "data": data,
                },
                "STREAM_SET_ERROR",
                "set",
                [("old_value", OPT_ANY, None), ("new_value", ANY, None)],
                "StreamSetResult",
            )
            old, new = canonical(out["old_value"]), canonical(out["new_value"])  # type: ignore[arg-type]
            existed = old is not None
        else:
            previous = self.store.set(self._key(stream_name, group_id), item_id, data)
            existed, old, new = previous is not MISSING, stored(previous), data
        event = {"type": "update" if existed else "create", "data": new}
        self._changed(self._message(stream_name, group_id, item_id, event))
        return {"new_value": new, "old_value": old}

    async def _get(self, call: Call) -> JSON:
        inp = parse_struct(call, _ITEM, "StreamGetInput")
        return await self._get_item(*_item_of(inp))

    async def _get_item(self, stream_name: str, group_id: str, item_id: str) -> JSON:
        custom = self._custom("get", stream_name)
        if custom is not None:
            return await self._read(
                custom, {"stream_name": stream_name, "group_id": group_id, "item_id": item_id}
            )
        return stored(self.store.get(self._key(stream_name, group_id), item_id))

    async def _delete(self, call: Call) -> JSON:
        inp = parse_struct(call, _ITEM, "StreamDeleteInput")
        stream_name, group_id, item_id = _item_of(inp)
        custom = self._custom("delete", stream_name)
        existed: bool
        old: JSON
        if custom is not None:
            out = await self._write_result(
                custom,
                {"stream_name": stream_name, "group_id": group_id, "item_id": item_id},
                "STREAM_DELETE_ERROR",
                "delete",
                [("old_value", OPT_ANY, None)],
                "StreamDeleteResult",
            )
            old = canonical(out["old_value"])  # type: ignore[arg-type]
            existed = old is not None
        else:
            previous = self.store.delete(self._key(stream_name, group_id), item_id)
            existed, old = previous is not MISSING, stored(previous)
        if existed:
            event = {"type": "delete", "data": old}
            self._changed(self._message(stream_name, group_id, item_id, event))
        return {"old_value": old}

    async def _list(self, call: Call) -> JSON:
        inp = parse_struct(call, _ITEM[:2], "StreamListInput")
        return await self._list_group(str(inp["stream_name"]), str(inp["group_id"]))

    async def _list_group(self, stream_name: str, group_id: str) -> JSON:
        custom = self._custom("list", stream_name)
        if custom is not None:
            return await self._read(custom, {"stream_name": stream_name, "group_id": group_id})
        return self.store.values(self._key(stream_name, group_id))

    async def _list_groups(self, call: Call) -> JSON:
        inp = parse_struct(call, _ITEM[:1], "StreamListGroupsInput")
        stream_name = str(inp["stream_name"])
        custom = self._custom("list_groups", stream_name)
        if custom is not None:
            return await self._read(custom, {"stream_name": stream_name})
        prefix = self._key(stream_name, "")
        return [key[len(prefix) :] for key in self.store.indexes() if key.startswith(prefix)]

    def _list_all(self, call: Call) -> JSON:
        parse_struct(call, [], "StreamListAllInput")
        streams: dict[str, set[str]] = {}
        for key in self.store.indexes():
            # The real store parses its keys back ("stream:<name>:<group>"), colons and all.
            parts = key.split(":")
            if len(parts) >= 3 and parts[0] == "stream":
                streams.setdefault(parts[1], set()).add(parts[2])
        rows: list[JSON] = [
            {"groups": [*sorted(groups)], "id": name} for name, groups in sorted(streams.items())
        ]
        return {"count": len(rows), "stream": rows}

    def _send(self, call: Call) -> JSON:
        inp = parse_struct(
            call,
            [
                ("stream_name", STR, None),
                ("group_id", STR, None),
                ("id", OPT_STR, None),
                ("type", STR, None),
                ("data", ANY, None),
            ],
            "StreamSendInput",
        )
        item_id = inp["id"]
        event: JSONObject = {
            "type": "event",
            "event": {"type": str(inp["type"]), "data": canonical(inp["data"])},  # type: ignore[arg-type]
        }
        self._changed(
            self._message(
                str(inp["stream_name"]),
                str(inp["group_id"]),
                item_id if isinstance(item_id, str) else None,
                event,
            )
        )
        return None

    async def _update(self, call: Call) -> JSON:
        inp = parse_struct(call, [*_ITEM, ("ops", OPS, None)], "StreamUpdateInput")
        stream_name, group_id, item_id = _item_of(inp)
        ops = inp["ops"]
        assert isinstance(ops, list) and all(isinstance(op, Op) for op in ops)
        custom = self._custom("update", stream_name)
        existed: bool
        old: JSON
        new: JSON
        errors: JSON = None
        if custom is not None:
            out = await self._write_result(
                custom,
                {
                    "stream_name": stream_name,
                    "group_id": group_id,
                    "item_id": item_id,
                    "ops": ops_json(ops),
                },
                "STREAM_UPDATE_ERROR",
                "update",
                [("old_value", OPT_ANY, None), ("new_value", ANY, None), ("errors", OPT_ANY, None)],
                "StreamUpdateResult",
            )
            old, new = canonical(out["old_value"]), canonical(out["new_value"])  # type: ignore[arg-type]
            errors = canonical(out["errors"]) if out["errors"] else None  # type: ignore[arg-type]
            existed = old is not None
        else:
            previous, new, op_errors = self.store.update(
                self._key(stream_name, group_id), item_id, ops
            )
            existed, old = previous is not MISSING, stored(previous)
            errors = [canonical(e) for e in op_errors] if op_errors else None
        event = {"type": "update" if existed else "create", "data": new}
        self._changed(self._message(stream_name, group_id, item_id, event))
        result: JSONObject = {}
        if errors:
            result["errors"] = errors
        result["new_value"] = new
        result["old_value"] = old
        return result

    # -- the client WebSocket ---------------------------------------------------------------

    def _route(
        self, path: str, query: Mapping[str, list[str]]
    ) -> Union[tuple[int, bytes], tuple[str, Callable[[RouteSocket], Awaitable[None]]]]:
        # The real server routes "/" only.
        if path != "/":
            return 404, b"Not Found\n"

        async def serve(socket: RouteSocket) -> None:
            await self._serve(socket, path, query)

        return f"stream:{new_id()[:8]}", serve

    async def _serve(self, socket: RouteSocket, path: str, query: Mapping[str, list[str]]) -> None:
        context = await self._authenticate(socket, path, query)
        client = _Client(socket, context)
        self.clients[client.id] = client
        try:
            await socket.read_loop(lambda kind, payload: self._on_message(client, payload))
        finally:
            self.clients.pop(client.id, None)
        # The connection is gone: its subscriptions leave.
        for subscription_id, (stream_name, group_id, item_id) in list(client.subscriptions.items()):
            await self._join_leave(
                LEAVE_TRIGGER_TYPE, client, subscription_id, stream_name, group_id, item_id
            )

    async def _authenticate(
        self, socket: RouteSocket, path: str, query: Mapping[str, list[str]]
    ) -> JSON:
        auth_function = self.config.auth_function
        if auth_function is None:
            return None
        request: JSONObject = {
            "addr": socket.remote_addr,
            "headers": dict(socket.headers),
            "path": path,
            "query_params": {k: [*v] for k, v in query.items()},
        }
        result, error = await self.host.call(DEFAULT, auth_function, canonical(request))
        if error is not None:
            self.log.error(
                "stream auth function %s failed: %s", auth_function, error.get("message")
            )
            return None
        if result is None:
            return None
        try:
            return read_struct(result, [("context", OPT_ANY, None)], "StreamAuthContext")["context"]  # type: ignore[return-value]
        except SerdeError as exc:
            self.log.error("stream auth function %s answered no context: %s", auth_function, exc)
            return None

    async def _on_message(self, client: _Client, payload: Union[str, bytes]) -> None:
        if isinstance(payload, str) and not payload.strip():
            return
        try:
            message = loads(payload)
            if not isinstance(message, dict) or message.get("type") not in ("join", "leave"):
                raise SerdeError("expected a join or leave message")
            data = read_struct(message.get("data"), _SUBSCRIPTION, "StreamIncomingMessageData")
        except (ValueError, SerdeError) as exc:
            self.log.warning("stream socket: ignoring a message: %s", exc)
            return
        subscription_id, stream_name, group_id = (
            str(data["subscriptionId"]),
            str(data["streamName"]),
            str(data["groupId"]),
        )
        item_id = data["id"] if isinstance(data["id"], str) else None
        if message["type"] == "leave":
            await self._join_leave(
                LEAVE_TRIGGER_TYPE, client, subscription_id, stream_name, group_id, item_id
            )
            client.subscriptions.pop(subscription_id, None)
            return
        authorized = await self._join_leave(
            JOIN_TRIGGER_TYPE, client, subscription_id, stream_name, group_id, item_id
        )
        if not authorized:
            client.socket.send_message(
                "text",
                dumps(self._message(stream_name, group_id, item_id, {"type": "unauthorized"})),
            )
            return
        client.subscriptions[subscription_id] = (stream_name, group_id, item_id)
        try:
            if item_id is not None:
                current = await self._get_item(stream_name, group_id, item_id)
            else:
                current = await self._list_group(stream_name, group_id)
        except BuiltinError as exc:
            self.log.error("stream socket: cannot sync %s/%s: %s", stream_name, group_id, exc)
            return
        sync = self._message(stream_name, group_id, item_id, {"type": "sync", "data": current})
        client.socket.send_message("text", dumps(sync))

    async def _join_leave(
        self,
        type_id: str,
        client: _Client,
        subscription_id: str,
        stream_name: str,
        group_id: str,
        item_id: Optional[str],
    ) -> bool:
        """Run the join or leave bindings in turn; False when a join one refused."""
        event: JSONObject = {
            "context": client.context,
            "group_id": group_id,
            "id": item_id,
            "stream_name": stream_name,
            "subscription_id": subscription_id,
        }
        authorized = True
        for b in self.host.bindings_of(type_id):
            result, error = await self.host.call(
                b.namespace, b.function_id, event, metadata=b.metadata
            )
            if type_id != JOIN_TRIGGER_TYPE:
                continue
            if error is not None:
                self.log.error(
                    "stream:join handler %s failed: %s", b.function_id, error.get("message")
                )
            elif result is not None:
                verdict = result.get("unauthorized") if isinstance(result, dict) else None
                if isinstance(verdict, bool):
                    authorized = authorized and not verdict
                else:
                    self.log.debug(
                        "stream:join handler %s: no boolean `unauthorized`", b.function_id
                    )
        return authorized
