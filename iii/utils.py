"""Helpers for handlers: ``http`` (a streaming HTTP handler) and small utilities."""

from __future__ import annotations

import inspect
import json
from collections.abc import Awaitable, Callable
from typing import Any, Optional, Union

from .format_utils import extract_request_format, extract_response_format, python_type_to_format
from .types import (
    ApiResponse,
    HttpRequest,
    HttpResponse,
    InternalHttpRequest,
    is_channel_ref,
)

__all__ = [
    "extract_request_format",
    "extract_response_format",
    "http",
    "is_channel_ref",
    "python_type_to_format",
    "safe_stringify",
]

HttpCallback = Callable[
    [HttpRequest, HttpResponse], Union[Awaitable[Optional[ApiResponse[Any]]], Any]
]


def http(callback: HttpCallback) -> Callable[[Any], Awaitable[Any]]:
    """Make ``callback(req, res)`` a function handler for the engine's HTTP trigger.

    The handler gets the trigger's payload (its ``response`` and
    ``request_body`` refs already opened as channel ends) and calls
    ``callback`` with an ``HttpRequest`` (body stream in ``request_body``) and
    an ``HttpResponse`` (status, headers, body stream).  What the callback
    returns (an ``ApiResponse``, a dict, ``None``) is the function's result.

    Example::

        async def hello(req, res):
            await res.status(200)
            await res.writer.write(b"hello")
            await res.writer.close_async()

        worker.register_function("api::hello", http(hello))
    """

    async def handler(data: Any) -> Any:
        if isinstance(data, InternalHttpRequest):
            internal = data
        elif isinstance(data, dict):
            try:
                response, request_body = data["response"], data["request_body"]
            except KeyError as exc:
                raise TypeError(
                    f"http(): the payload has no {exc.args[0]!r} channel "
                    "(is this function bound to an HTTP trigger?)"
                ) from None
            internal = InternalHttpRequest(
                path_params=data.get("path_params") or {},
                query_params=data.get("query_params") or {},
                body=data.get("body"),
                headers=data.get("headers") or {},
                method=data.get("method") or "GET",
                response=response,
                request_body=request_body,
            )
        else:
            raise TypeError(f"http(): unexpected payload {type(data).__name__}")
        request = HttpRequest(
            path_params=internal.path_params,
            query_params=internal.query_params,
            body=internal.body,
            headers=internal.headers,
            method=internal.method,
            request_body=internal.request_body,
        )
        result = callback(request, HttpResponse(internal.response))
        if inspect.isawaitable(result):
            result = await result
        return result

    return handler


def safe_stringify(value: Any) -> str:
    """``value`` as JSON text for logs: unknown objects as ``str()``, never raises."""
    try:
        return json.dumps(value, default=str)
    except (TypeError, ValueError, RecursionError):
        return "[unserializable]"
