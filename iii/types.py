"""Types for handlers and the values they exchange.

* ``IIIClient``: the worker type (``III``), for annotations and ``isinstance``;
* ``RemoteFunctionHandler``: what ``register_function`` takes;
* HTTP: ``ApiRequest`` / ``ApiResponse`` (a buffered request and the response
  a handler returns) and, for handlers that stream, ``HttpRequest`` /
  ``HttpResponse`` (also named ``StreamRequest`` / ``StreamResponse``), made
  from the engine's payload by ``iii.utils.http``;
* channel refs inside payloads: ``is_channel_ref``, ``extract_channel_refs``.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any, Generic, Literal, Optional, TypedDict, TypeGuard, TypeVar, Union

import attrs

from iii_protocol import StreamChannelRef

from ._client import III
from ._models import Model
from .channel import WritableStream
from .channels import Channel, ChannelReader, ChannelWriter

__all__ = [
    "ApiRequest",
    "ApiResponse",
    "Channel",
    "HttpRequest",
    "HttpResponse",
    "IIIClient",
    "InternalHttpRequest",
    "RemoteFunctionHandler",
    "StreamChannelRef",
    "StreamChannelRefDict",
    "StreamRequest",
    "StreamResponse",
    "extract_channel_refs",
    "is_channel_ref",
]

TInput = TypeVar("TInput")
TOutput = TypeVar("TOutput")

#: The worker type: what ``register_worker`` returns.
IIIClient = III

#: A function handler: ``handler(data)`` or ``handler(data, metadata)``, sync or async.
RemoteFunctionHandler = Callable[[Any], Union[Awaitable[Any], Any]]


@attrs.frozen(kw_only=True)
class ApiRequest(Model, Generic[TInput]):
    """A buffered HTTP request, as the engine's HTTP trigger delivers it."""

    path_params: dict[str, str] = attrs.Factory(dict)
    query_params: dict[str, Union[str, list[str]]] = attrs.Factory(dict)
    body: Any = None
    headers: dict[str, Union[str, list[str]]] = attrs.Factory(dict)
    method: str = "GET"


@attrs.frozen(init=False)
class ApiResponse(Model, Generic[TOutput]):
    """The response an HTTP handler returns: ``ApiResponse(status_code=201, body=...)``.

    ``statusCode=`` is accepted for ``status_code``.  Written as
    ``{"status_code", "body", "headers"}``, the keys the engine reads.
    """

    status_code: int
    body: Any = None
    headers: dict[str, str] = attrs.Factory(dict)

    def __init__(
        self,
        *,
        statusCode: Optional[int] = None,
        body: Any = None,
        headers: Optional[dict[str, str]] = None,
        status_code: Optional[int] = None,
    ) -> None:
        if statusCode is not None and status_code is not None and statusCode != status_code:
            raise TypeError("ApiResponse got both statusCode and status_code")
        code = status_code if status_code is not None else statusCode
        if code is None:
            raise TypeError("ApiResponse needs status_code")
        self.__attrs_init__(code, body, {} if headers is None else headers)

    @property
    def statusCode(self) -> int:
        return self.status_code


@attrs.frozen
class InternalHttpRequest:
    """The HTTP trigger's payload with its channel ends resolved."""

    path_params: dict[str, str]
    query_params: dict[str, Union[str, list[str]]]
    body: Any
    headers: dict[str, Union[str, list[str]]]
    method: str
    response: ChannelWriter
    request_body: ChannelReader


@attrs.frozen
class HttpRequest:
    """An HTTP request whose body arrives as a stream (``request_body``)."""

    path_params: dict[str, str]
    query_params: dict[str, Union[str, list[str]]]
    body: Any
    headers: dict[str, Union[str, list[str]]]
    method: str
    request_body: ChannelReader


class HttpResponse:
    """An HTTP response written as it goes: status, headers, then the body.

    ``await res.status(200)``, ``await res.headers({...})``, then write the
    body through ``res.writer`` (``await res.writer.write(b"...")``) or
    ``res.stream`` (``res.stream.write(b"...")``), and ``close()``.
    """

    def __init__(self, writer: ChannelWriter) -> None:
        self._writer = writer

    async def status(self, status_code: int) -> None:
        """Send the response status (before the body)."""
        await self._writer.send_message_async(
            json.dumps({"type": "set_status", "status_code": status_code})
        )

    async def headers(self, headers: dict[str, str]) -> None:
        """Send the response headers (before the body)."""
        await self._writer.send_message_async(
            json.dumps({"type": "set_headers", "headers": headers})
        )

    @property
    def stream(self) -> WritableStream:
        """The body as a ``WritableStream`` (writes do not wait): ``writer.stream``,
        so its writes keep their order with the writer's own operations."""
        return self._writer.stream

    @property
    def writer(self) -> ChannelWriter:
        """The channel writer the body goes through."""
        return self._writer

    def close(self) -> None:
        """End the body (after the writes made through ``stream``)."""
        self.stream.end()


#: The name ``HttpRequest`` has in the 0.25 releases.
StreamRequest = HttpRequest
#: The name ``HttpResponse`` has in the 0.25 releases.
StreamResponse = HttpResponse


class StreamChannelRefDict(TypedDict):
    """A channel ref as it appears in a payload."""

    channel_id: str
    access_key: str
    direction: Literal["read", "write"]


def is_channel_ref(value: Any) -> TypeGuard[StreamChannelRefDict]:
    """True when ``value`` is a channel ref's JSON object."""
    return (
        isinstance(value, dict)
        and isinstance(value.get("channel_id"), str)
        and isinstance(value.get("access_key"), str)
        and value.get("direction") in ("read", "write")
    )


def extract_channel_refs(data: Any) -> list[tuple[str, StreamChannelRef]]:
    """Every channel ref inside ``data``, with its path (``items[0].writer``)."""
    found: list[tuple[str, StreamChannelRef]] = []
    stack: list[tuple[str, Any]] = [("", data)]
    while stack:
        path, value = stack.pop()
        if isinstance(value, StreamChannelRef):
            found.append((path, value))
        elif is_channel_ref(value):
            found.append(
                (
                    path,
                    StreamChannelRef(
                        channel_id=value["channel_id"],
                        access_key=value["access_key"],
                        direction=value["direction"],
                    ),
                )
            )
        elif isinstance(value, dict):
            stack.extend(
                (f"{path}.{key}" if path else str(key), item)
                for key, item in reversed(list(value.items()))
            )
        elif isinstance(value, (list, tuple)):
            stack.extend(
                (f"{path}[{index}]", item) for index, item in reversed(list(enumerate(value)))
            )
    return found
