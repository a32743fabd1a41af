"""The HTTP worker module (the engine's ``iii-http``, ``rest_api`` in its source):
the ``http`` trigger type, served by a real HTTP/1.1 server (h11) on its own port.

A binding's ``config``: ``api_path`` (required; ``/users/:id`` names a path
parameter), ``http_method`` (default ``GET``), ``condition_function_id``,
``middleware_function_ids``.  The same method and path bound twice: the later
binding serves it.  A request goes through the engine's steps, in its order:

1. route match: no route for the path is a ``404`` ``{"error": {"code":
   "NOT_FOUND", ...}}``; a path served for other methods only is a ``405`` with
   ``Allow`` (an ``OPTIONS`` request never gets there: the CORS layer answers it);
2. global middleware (option ``http_middleware``), by priority;
3. two channels: the request body (the function reads it, ``request_body``)
   and the response (the function may write it, ``response``);
4. the body: parsed into ``body`` when the ``content-type`` contains
   ``application/json`` (``null`` if it is not JSON), else streamed only;
5. the condition function (a ``false`` result: ``422`` with ``"skipped": true``);
6. the route's middleware, in order;
7. the function is called with ``{query_params, path_params, headers, path,
   method, body, trigger, request_body, response}`` and the binding's metadata.
   A non-null result is the response: ``{status_code, headers, body}`` (all
   optional: ``200``, none, ``{}``); otherwise the response channel is: text
   messages ``{"type": "set_status"}`` / ``{"type": "set_headers"}`` then binary
   chunks, streamed to the client (chunked) until the function closes it.  A
   failed function is a ``500`` whose body is ``{"error": {"code", "message",
   "error_id"}}``; past ``http_default_timeout`` (engine clock) a ``504``.

CORS headers follow ``http_cors_allowed_origins`` / ``http_cors_allowed_methods``
(unset: any origin, any method, as the engine without a ``cors`` config).
"""

from __future__ import annotations

import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Optional, Union

import anyio
import anyio.abc
import attrs
import h11

from iii_protocol._json import JSON, JSONObject

from .. import _jsonio as jsonio
from .._api import EngineWorker
from .._checks import integer, option_error, seconds, setting
from .._records import Binding, ErrorDict, error_body, json_too_deep
from .channels import Channel, ChannelRegistry, Channels
from .http_routes import (
    JSON_TYPE,
    METHODS,
    Node,
    Route,
    build_tree,
    clean_headers,
    envelope,
    extract_path_params,
    find_route,
    header_text,
    json_body,
    middleware_response,
    optional_header,
    response_from_result,
    route_key,
    router_path,
    shape,
)
from .http_server import ClientGone, HttpConnection, Request, Response

__all__ = [
    "CALL_REQUEST_SCHEMA",
    "CONFIGURATION_SCHEMA",
    "DEFAULT_HTTP_PORT",
    "HttpConfig",
    "Middleware",
    "RestApi",
]

#: The real engine's port for the HTTP worker (``python -m iii.testing`` uses it).
DEFAULT_HTTP_PORT = 3111

_CHANNEL_BUFFER = 64
_VARY = "origin, access-control-request-method, access-control-request-headers"

_SCHEMA = "http://json-schema.org/draft-07/schema#"

#: ``engine::triggers::info {"id": "http"}``: what a binding's config holds.
CONFIGURATION_SCHEMA: JSONObject = {
    "$schema": _SCHEMA,
    "title": "HttpTriggerConfig",
    "type": "object",
    "required": ["api_path"],
    "properties": {
        "api_path": {"description": "HTTP endpoint path (e.g. `/users/:id`)", "type": "string"},
        "http_method": {
            "description": "HTTP method (defaults to GET)",
            "default": "GET",
            "anyOf": [{"$ref": "#/definitions/HttpMethod"}, {"type": "null"}],
        },
        "condition_function_id": {
            "description": "Optional function ID to evaluate before invoking handler",
            "type": ["string", "null"],
        },
        "middleware_function_ids": {
            "description": "Per-route middleware function IDs, invoked in order before the handler",
            "type": ["array", "null"],
            "items": {"type": "string"},
        },
    },
    "definitions": {"HttpMethod": {"type": "string", "enum": list(METHODS)}},
}

#: What the bound function receives (besides the two channel refs).
CALL_REQUEST_SCHEMA: JSONObject = {
    "$schema": _SCHEMA,
    "title": "HttpCallRequest",
    "type": "object",
    "required": ["body", "headers", "method", "path", "path_params", "query_params"],
    "properties": {
        "query_params": {
            "description": "URL query parameters",
            "type": "object",
            "additionalProperties": {"type": "string"},
        },
        "path_params": {
            "description": "URL path parameters",
            "type": "object",
            "additionalProperties": {"type": "string"},
        },
        "headers": {
            "description": "HTTP request headers",
            "type": "object",
            "additionalProperties": {"type": "string"},
        },
        "path": {"description": "Request path", "type": "string"},
        "method": {"description": "HTTP method", "type": "string"},
        "body": {"description": "Request body"},
    },
}

# -- options -------------------------------------------------------------------------------


@attrs.frozen
class Middleware:
    """A global middleware function: ``function_id``, ``phase``, ``priority``."""

    function_id: str
    phase: str = "preHandler"
    priority: int = 0


def _string_list(name: str, value: Any) -> Optional[tuple[str, ...]]:
    """None, a list of strings, or one string of comma-separated items (the CLI's)."""
    if value is None:
        return None
    if isinstance(value, str):
        return tuple(item.strip() for item in value.split(",") if item.strip())
    if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise option_error(name, f"expected a list of strings, got {value!r}", TypeError)


def _middleware(name: str, value: Any) -> tuple[Middleware, ...]:
    """Function ids, or ``{function_id, phase?, priority?}`` objects (a JSON array or
    comma-separated ids on the CLI); sorted by priority, lowest first."""
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            try:
                value = jsonio.loads(text)
            except ValueError as exc:
                raise option_error(name, f"not a JSON array: {exc}") from None
        else:
            value = [item.strip() for item in text.split(",") if item.strip()]
    if not isinstance(value, (list, tuple)):
        raise option_error(name, f"expected a list of middleware, got {value!r}", TypeError)
    out: list[Middleware] = []
    for item in value:
        if isinstance(item, Middleware):
            out.append(item)
        elif isinstance(item, str) and item:
            out.append(Middleware(item))
        elif isinstance(item, dict):
            unknown = set(item) - {"function_id", "phase", "priority"}
            fid = item.get("function_id")
            phase = item.get("phase", "preHandler")
            priority = item.get("priority", 0)
            if (
                unknown
                or not isinstance(fid, str)
                or not isinstance(phase, str)
                or type(priority) is not int
            ):
                raise option_error(
                    name,
                    "a middleware is {function_id: str, phase?: str, priority?: int}, "
                    f"got {item!r}",
                )
            out.append(Middleware(fid, phase, priority))
        else:
            raise option_error(name, f"not a middleware: {item!r}", TypeError)
    return tuple(sorted(out, key=lambda m: m.priority))


@attrs.frozen
class HttpConfig:
    port: int = setting(
        0, integer(0, 65535), "port of the HTTP server of the http triggers (0 = any free port)"
    )
    default_timeout: float = setting(
        30.0, seconds(positive=True), "seconds a request may take before a 504 (engine clock)"
    )
    concurrency_request_limit: int = setting(
        1024, integer(1), "requests handled at once (the others wait)"
    )
    cors_allowed_origins: Optional[tuple[str, ...]] = setting(
        None, _string_list, "CORS origins allowed (comma-separated; unset or empty: any)"
    )
    cors_allowed_methods: Optional[tuple[str, ...]] = setting(
        None, _string_list, "CORS methods allowed (comma-separated; unset or empty: any)"
    )
    middleware: tuple[Middleware, ...] = setting(
        (),
        _middleware,
        "global middleware function ids (comma-separated, or a JSON array of "
        "{function_id, phase, priority})",
    )


# -- the module ------------------------------------------------------------------------------


class _Stop(Exception):
    """The request is answered before the function is called."""

    def __init__(self, response: Response) -> None:
        self.response = response


class RestApi(EngineWorker):
    """The ``http`` trigger type and the HTTP server that serves its routes."""

    name = "rest_api"
    switch = "rest_api"
    worker_name = "iii-http"
    option_prefix = "http_"
    config_class = HttpConfig
    config: HttpConfig

    def install(self) -> None:
        #: routes by the engine's key (``METHOD:path``)
        self.routes: dict[str, Route] = {}
        self._tree: Optional[Node] = None
        self._methods: dict[str, dict[str, str]] = {}
        self._limit = anyio.Semaphore(self.config.concurrency_request_limit)
        self.trigger_type(
            "http",
            "HTTP API trigger",
            on_register=self._register,
            on_unregister=self._unregister,
            configuration_schema=CONFIGURATION_SCHEMA,
            request_schema=CALL_REQUEST_SCHEMA,
        )

    # -- bindings ------------------------------------------------------------------------

    def _register(self, binding: Binding) -> Optional[ErrorDict]:
        config = binding.config if isinstance(binding.config, dict) else {}
        api_path = config.get("api_path")
        if not isinstance(api_path, str):
            return error_body(
                "trigger_registration_failed", "api_path is required for http triggers"
            )
        method = config.get("http_method")
        method = method.upper() if isinstance(method, str) else "GET"
        condition = config.get("condition_function_id")
        middleware = config.get("middleware_function_ids")
        key = route_key(method, api_path)
        path = router_path(api_path)
        form = shape(path)
        for other in self.routes.values():
            if other.key == key:
                continue
            other_path = router_path(other.http_path)
            if other_path != path and shape(other_path) == form:
                return error_body(
                    "trigger_registration_failed",
                    f"Route '{method} {api_path}' conflicts with already-registered route "
                    f"'{other.method} {other.http_path}': routes with identical structure but "
                    "different path-parameter names are not supported",
                )
        self.routes[key] = Route(
            key,
            binding.id,
            api_path,
            method,
            binding.function_id,
            condition if isinstance(condition, str) else None,
            tuple(m for m in middleware if isinstance(m, str))
            if isinstance(middleware, list)
            else (),
            binding.metadata,
            binding.namespace,
        )
        self._tree = None
        if method not in METHODS:
            self.log.warning("unsupported HTTP method %s: route %s is never served", method, key)
        self.log.info("endpoint %s %s -> %s", method, api_path, binding.function_id)
        return None

    def _unregister(self, binding: Binding) -> None:
        config = binding.config if isinstance(binding.config, dict) else {}
        api_path = config.get("api_path")
        method = config.get("http_method")
        key = route_key(
            method if isinstance(method, str) else "GET",
            api_path if isinstance(api_path, str) else "",
        )
        route = self.routes.get(key)
        if route is not None and route.binding_id == binding.id:
            del self.routes[key]
            self._tree = None

    def _router(self) -> tuple[Node, dict[str, dict[str, str]]]:
        if self._tree is None:
            methods: dict[str, dict[str, str]] = {}
            for route in self.routes.values():
                if route.method in METHODS:
                    methods.setdefault(router_path(route.http_path), {})[route.method] = route.key
            self._methods = methods
            self._tree = build_tree(list(methods))
        return self._tree, self._methods

    # -- the server ----------------------------------------------------------------------

    async def start(self) -> None:
        listener = await self.host.open_listener("http", scheme="http", port=self.config.port)
        self.host.spawn(listener.serve, self._connection)

    async def _connection(self, stream: anyio.abc.SocketStream) -> None:
        async with stream:
            try:
                await HttpConnection(stream, now=self.host.clock.time).serve(self._handle)
            except Exception as exc:  # one connection's failure never stops the server
                if _only(exc, (ClientGone, h11.RemoteProtocolError)):
                    self.log.debug("HTTP connection ended: %s", exc)
                else:
                    self.log.exception("HTTP connection failed")

    async def _handle(
        self, request: Request, respond: Callable[[Response], Awaitable[None]]
    ) -> None:
        async with self._limit:
            if request.method == "OPTIONS":
                await respond(self._preflight(request))
                return
            async with anyio.create_task_group() as tg:
                response = await self._within_timeout(request, tg)
                try:
                    await respond(response)
                finally:
                    tg.cancel_scope.cancel()

    async def _within_timeout(self, request: Request, tg: anyio.abc.TaskGroup) -> Response:
        timeout = self.config.default_timeout
        clock = self.host.clock
        with anyio.CancelScope() as scope:

            async def watchdog(done: anyio.CancelScope) -> None:
                with done:
                    await clock.sleep(timeout)
                    scope.cancel()

            done = anyio.CancelScope()
            tg.start_soon(watchdog, done)
            try:
                response = await self._dispatch(request, tg)
            finally:
                done.cancel()
            self._cors(request, response)
            return response
        self.log.error("%s %s timed out after %gs", request.method, request.path, timeout)
        # The engine's timeout layer (outside its CORS layer) answers an empty 504;
        # the envelope says why.
        return envelope(504, "TIMEOUT", f"request timed out after {timeout:g}s")

    # -- one request -----------------------------------------------------------------------

    async def _dispatch(self, request: Request, tg: anyio.abc.TaskGroup) -> Response:
        tree, methods = self._router()
        matched = find_route(tree, request.path.split("/"), 0)
        if matched is None:
            return envelope(404, "NOT_FOUND", "Not Found")
        by_method = methods[matched]
        key = by_method.get(request.method)
        if key is None and request.method == "HEAD":
            key = by_method.get("GET")
        if key is None:
            allow: list[str] = []
            for m in by_method:
                allow.append(m)
                if m == "GET" and "HEAD" not in by_method:
                    allow.append("HEAD")
            return Response(405, [("allow", ",".join(allow))], b"")
        registered = self.routes[key].http_path
        # The engine looks the route up again by the request's own method: a HEAD
        # served through a GET route finds nothing.
        route = self.routes.get(route_key(request.method, registered))
        if route is None:
            return envelope(404, "NOT_FOUND", "Not Found")
        try:
            return await self._run(request, route, tg)
        except _Stop as stop:
            return stop.response

    async def _run(self, request: Request, route: Route, tg: anyio.abc.TaskGroup) -> Response:
        path_params = extract_path_params(route.http_path, request.path)
        query_params = dict(
            urllib.parse.parse_qsl(request.query, keep_blank_values=True, errors="replace")
        )
        headers = {name: header_text(value) for name, value in request.headers}
        for mw in self.config.middleware:
            if mw.phase == "preHandler":
                await self._middleware(
                    route, mw.function_id, path_params, query_params, headers, request
                )
        channels = self.host.module("channels")
        assert isinstance(channels, Channels)
        registry = channels.registry
        body_channel = registry.create(_CHANNEL_BUFFER)
        body_channel.writer_taken = True  # the engine writes the request body
        reply_channel = registry.create(_CHANNEL_BUFFER)
        reply_channel.reader_taken = True  # the engine reads the response
        streaming = False
        try:
            body: JSON = None
            if JSON_TYPE in header_text(request.header("content-type") or b""):
                raw = await request.read()
                if raw:
                    await _put(body_channel, ("binary", raw))
                _end_writer(registry, body_channel)
                body = _parse_json(raw)
            else:
                tg.start_soon(_pump, request, registry, body_channel)
            data: JSONObject = {
                "query_params": dict(query_params),
                "path_params": dict(path_params),
                "headers": dict(headers),
                "path": route.http_path,
                "method": request.method,
                "body": body,
                "trigger": {"type": "http", "path": route.http_path, "method": request.method},
                "request_body": _ref(body_channel, "read"),
                "response": _ref(reply_channel, "write"),
            }
            if route.condition_function_id is not None:
                condition_input = {
                    k: v for k, v in data.items() if k not in ("request_body", "response")
                }
                verdict, error = await self.host.call(
                    route.namespace, route.condition_function_id, condition_input
                )
                if error is not None:
                    self._failed(route.condition_function_id, error)
                    return _failure(error)
                if verdict is False:
                    skipped: JSONObject = {
                        "error": {
                            "code": "CONDITION_NOT_MET",
                            "message": "Request condition not met",
                        },
                        "skipped": True,
                    }
                    return Response(422, [("content-type", JSON_TYPE)], json_body(skipped))
            for fid in route.middleware_function_ids:
                await self._middleware(route, fid, path_params, query_params, headers, request)
            response, streaming = await self._call(request, route, data, reply_channel, registry)
            return response
        finally:
            _unlist(registry, body_channel)
            _unlist(registry, reply_channel)
            # An end nobody took can no longer be taken: close it.
            if not body_channel.reader_taken:
                body_channel.receive.close()
            if not reply_channel.writer_taken:
                reply_channel.send.close()
            if not streaming:
                _end_reader(registry, reply_channel)

    async def _middleware(
        self,
        route: Route,
        function_id: str,
        path_params: dict[str, str],
        query_params: dict[str, str],
        headers: dict[str, str],
        request: Request,
    ) -> None:
        """Run one middleware; ``_Stop`` when it answers the request itself."""
        data: JSONObject = {
            "phase": "preHandler",
            "request": {
                "path_params": dict(path_params),
                "query_params": dict(query_params),
                "headers": dict(headers),
                "method": request.method,
            },
            "context": {},
        }
        result, error = await self._call_within(route.namespace, function_id, data)
        if result is _TIMED_OUT:  # (the request's own timeout, started first, comes before)
            self.log.error("middleware %s timed out", function_id)
            raise _Stop(envelope(504, "MIDDLEWARE_TIMEOUT", "Middleware timeout"))
        if error is not None:
            self._failed(function_id, error)
            raise _Stop(_failure(error))
        if isinstance(result, dict):
            action = result.get("action")
            if action == "continue":
                return
            if action == "respond":
                raise _Stop(middleware_response(result.get("response")))
            self.log.warning("middleware %s returned action %r; continuing", function_id, action)
        elif result is None:
            self.log.warning("middleware %s returned no result", function_id)
        else:
            self.log.warning("middleware %s returned no action; continuing", function_id)

    async def _call_within(
        self, namespace: str, function_id: str, data: JSON
    ) -> tuple[Any, Optional[ErrorDict]]:
        """``host.call`` bounded by ``default_timeout`` on the engine clock
        (``_TIMED_OUT`` as the result when it ran out)."""
        done = anyio.Event()
        outcome: list[tuple[JSON, Optional[ErrorDict]]] = []

        def on_done(result: JSON, error: Optional[ErrorDict]) -> None:
            outcome.append((result, error))
            done.set()

        self.host.invoke(namespace, function_id, data, on_done=on_done)
        await self.host.relieve()
        async with anyio.create_task_group() as tg:

            async def timer() -> None:
                await self.host.clock.sleep(self.config.default_timeout)
                tg.cancel_scope.cancel()

            async def wait() -> None:
                await done.wait()
                tg.cancel_scope.cancel()

            tg.start_soon(timer)
            tg.start_soon(wait)
        if not outcome:
            return _TIMED_OUT, None
        return outcome[0]

    async def _call(
        self,
        request: Request,
        route: Route,
        data: JSONObject,
        reply: Channel,
        registry: ChannelRegistry,
    ) -> tuple[Response, bool]:
        """Call the function; its result, or what it writes to the response channel,
        is the response.  Returns (response, streaming)."""
        done = anyio.Event()
        outcome: list[tuple[JSON, Optional[ErrorDict]]] = []

        def on_done(result: JSON, error: Optional[ErrorDict]) -> None:
            outcome.append((result, error))
            done.set()

        self.host.invoke(
            route.namespace,
            route.function_id,
            data,
            metadata=route.metadata,
            traceparent=optional_header(request, "traceparent"),
            baggage=optional_header(request, "baggage"),
            on_done=on_done,
        )
        await self.host.relieve()
        status = 200
        headers: dict[str, str] = {}
        first: Optional[bytes] = None
        closed = False
        # Until the first body chunk or the end of the channel, whichever comes
        # first with the result; the channel wins a tie, as in the engine.
        while first is None and not closed:
            got = await _next_item(reply, done)
            if got is None:  # the call finished, nothing waiting in the channel
                result, error = outcome[0]
                if error is not None:
                    self._failed(route.function_id, error)
                    return _failure(error), False
                if result is not None:
                    return response_from_result(result), False
                # No result: the response is what the function wrote (or writes).
                while first is None and not closed:
                    item = await _receive(reply)
                    if item is None:
                        closed = True
                    elif item[0] == "text":
                        status, headers = _control(item[1], status, headers)
                    else:
                        first = _as_bytes(item[1])
                break
            if got == ():
                closed = True
            elif got[0] == "text":
                status, headers = _control(got[1], status, headers)
            else:
                first = _as_bytes(got[1])
        return Response(
            status, clean_headers(list(headers.items())), _stream(first, reply, registry)
        ), True

    def _failed(self, function_id: str, error: ErrorDict) -> None:
        self.log.error("%s failed: %s: %s", function_id, error.get("code"), error.get("message"))

    # -- CORS ---------------------------------------------------------------------------

    def _cors_origin(self, request: Request) -> Optional[str]:
        origins = self.config.cors_allowed_origins
        if not origins or "*" in origins:
            return "*"
        origin = request.header("origin")
        if origin is not None and header_text(origin) in origins:
            return header_text(origin)
        return None

    def _permissive(self) -> bool:
        return self.config.cors_allowed_origins is None and self.config.cors_allowed_methods is None

    def _preflight(self, request: Request) -> Response:
        """The CORS layer answers every ``OPTIONS`` request itself (200, no body)."""
        headers = [("vary", _VARY)]
        origin = self._cors_origin(request)
        if origin is not None:
            headers.append(("access-control-allow-origin", origin))
        methods = self.config.cors_allowed_methods
        headers.append(("access-control-allow-methods", ",".join(methods) if methods else "*"))
        headers.append(("access-control-allow-headers", "*"))
        return Response(200, headers, b"")

    def _cors(self, request: Request, response: Response) -> None:
        extra: list[tuple[str, str]] = []
        origin = self._cors_origin(request)
        if origin is not None:
            extra.append(("access-control-allow-origin", origin))
        if self._permissive():
            extra.append(("access-control-expose-headers", "*"))
        names = {k for k, _ in extra}
        kept = [(k, v) for k, v in response.headers if k.lower() not in names]
        response.headers = [*kept, ("vary", _VARY), *extra]


_TIMED_OUT: Any = object()


def _only(exc: BaseException, kinds: tuple[type[BaseException], ...]) -> bool:
    """Whether ``exc`` (or every exception of a group) is one of ``kinds``."""
    inner = getattr(exc, "exceptions", None)
    if isinstance(inner, tuple) and inner:
        return all(_only(e, kinds) for e in inner)
    return isinstance(exc, kinds)


# -- channels -------------------------------------------------------------------------------


def _ref(channel: Channel, direction: str) -> JSONObject:
    return {"channel_id": channel.id, "access_key": channel.key, "direction": direction}


def _unlist(registry: ChannelRegistry, channel: Channel) -> None:
    """Forget the channel (a late socket for it gets a 404); its streams live on."""
    if registry.channels.get(channel.id) is channel:
        del registry.channels[channel.id]


def _end_writer(registry: ChannelRegistry, channel: Channel) -> None:
    channel.send.close()
    channel.writer_done = True
    registry.finished(channel)


def _end_reader(registry: ChannelRegistry, channel: Channel) -> None:
    channel.receive.close()
    channel.reader_done = True
    registry.finished(channel)


async def _put(channel: Channel, item: tuple[str, Union[str, bytes]]) -> None:
    try:
        await channel.send.send(item)
        channel.items_written += 1
    except (anyio.BrokenResourceError, anyio.ClosedResourceError):
        pass  # nobody reads it any more


async def _pump(request: Request, registry: ChannelRegistry, channel: Channel) -> None:
    """Stream the request body into its channel, chunk by chunk."""
    try:
        async for chunk in request.chunks():
            await _put(channel, ("binary", chunk))
    except (ClientGone, h11.RemoteProtocolError):
        pass  # the body ends here
    finally:
        _end_writer(registry, channel)


async def _receive(channel: Channel) -> Optional[tuple[str, Union[str, bytes]]]:
    try:
        return await channel.receive.receive()
    except (anyio.EndOfStream, anyio.ClosedResourceError):
        return None


async def _next_item(channel: Channel, done: anyio.Event) -> Any:
    """The next channel item, ``()`` at its end, or None once ``done`` is set with
    nothing to read (an item already there is returned first)."""
    try:
        return channel.receive.receive_nowait()
    except anyio.WouldBlock:
        pass
    except (anyio.EndOfStream, anyio.ClosedResourceError):
        return ()
    if done.is_set():
        return None
    got: list[Any] = []
    async with anyio.create_task_group() as tg:

        async def read() -> None:
            item = await _receive(channel)
            got.append(() if item is None else item)
            tg.cancel_scope.cancel()

        async def finished() -> None:
            await done.wait()
            tg.cancel_scope.cancel()

        tg.start_soon(read)
        tg.start_soon(finished)
    return got[0] if got else None


def _control(
    text: Union[str, bytes], status: int, headers: dict[str, str]
) -> tuple[int, dict[str, str]]:
    """Apply a text message of the response channel (``set_status``/``set_headers``)."""
    try:
        message = jsonio.loads(text)
    except ValueError:
        return status, headers
    if not isinstance(message, dict):
        return status, headers
    kind = message.get("type")
    if kind == "set_status":
        code = message.get("status_code")
        if type(code) is int and 100 <= code <= 599:
            status = 200 if code < 200 else code
    elif kind == "set_headers":
        values = message.get("headers")
        if isinstance(values, dict):
            headers = dict(headers)
            headers.update((k, v) for k, v in values.items() if isinstance(v, str))
    return status, headers


async def _stream(
    first: Optional[bytes], channel: Channel, registry: ChannelRegistry
) -> AsyncIterator[bytes]:
    """The response body: the first chunk, then every binary item to the end."""
    try:
        if first is not None:
            yield first
            while True:
                item = await _receive(channel)
                if item is None:
                    break
                if item[0] == "binary":
                    yield _as_bytes(item[1])
    finally:
        _end_reader(registry, channel)


def _as_bytes(payload: Union[str, bytes]) -> bytes:
    return payload if isinstance(payload, bytes) else payload.encode()


def _parse_json(raw: bytes) -> JSON:
    """The body as JSON, or None (not JSON, or nested deeper than the engine reads)."""
    if not raw:
        return None
    try:
        value = jsonio.loads(raw)
    except ValueError:
        return None
    return None if json_too_deep(value) else value


def _failure(error: ErrorDict) -> Response:
    return envelope(500, str(error.get("code", "")), str(error.get("message", "")), error_id=True)
