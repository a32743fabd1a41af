"""A small HTTP/1.1 server connection on h11 (the HTTP worker's transport).

``HttpConnection(stream).serve(handler)`` reads requests one after the other
(keep-alive) and calls ``handler(request, respond)`` for each; the handler
answers with ``await respond(Response(...))`` exactly once.  The request body is
read on demand (``request.chunks()``, ``request.read()``), concurrently with the
response if the handler wants (a streamed echo), and ``Expect: 100-continue`` is
answered when the body is first read.  A response body is bytes (sent with a
``content-length``) or an async iterator of bytes (chunked).  A connection
whose request body was not read to its end is closed after the response.
"""

from __future__ import annotations

import email.utils
import http
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Optional, Union

import anyio
import anyio.abc
import attrs
import h11

__all__ = ["ClientGone", "HttpConnection", "Request", "Response"]

_READ = 65536
#: Statuses whose response has no body (RFC 9110).
_NO_BODY = frozenset({204, 304})


class ClientGone(Exception):
    """The HTTP client closed or broke the connection."""


@attrs.define
class Response:
    """A response: ``body`` is bytes, or an async iterator of chunks (streamed)."""

    status: int
    headers: list[tuple[str, str]] = attrs.Factory(list)
    body: Union[bytes, AsyncIterator[bytes]] = b""

    def header(self, name: str) -> Optional[str]:
        """The first value of header ``name`` (case-insensitive)."""
        wanted = name.lower()
        return next((v for k, v in self.headers if k.lower() == wanted), None)


class Request:
    """One request: method, target, headers (lowercase names), and its body on demand."""

    def __init__(self, conn: HttpConnection, event: h11.Request) -> None:
        self._conn = conn
        self.method = event.method.decode("ascii", "replace")
        self.target = event.target.decode("ascii", "replace")
        path, _, query = self.target.partition("?")
        if "://" in path:  # absolute-form: keep the path part
            path = "/" + path.split("://", 1)[1].partition("/")[2]
        self.path = path
        self.query = query
        #: (lowercase name, raw value) in arrival order
        self.headers: list[tuple[str, bytes]] = [
            (name.decode("ascii", "replace"), bytes(value)) for name, value in event.headers
        ]
        self.body_done = False

    def header(self, name: str) -> Optional[bytes]:
        """The first value of header ``name`` (lowercase), raw."""
        return next((value for key, value in self.headers if key == name), None)

    async def chunks(self) -> AsyncIterator[bytes]:
        """The body, chunk by chunk, as it arrives (once)."""
        while not self.body_done:
            event = await self._conn.next_event(body=True)
            if isinstance(event, h11.Data):
                if event.data:
                    yield bytes(event.data)
            elif isinstance(event, h11.EndOfMessage):
                self.body_done = True
            else:  # ConnectionClosed mid-body
                raise ClientGone("the client closed the connection during the request body")

    async def read(self) -> bytes:
        """The whole body."""
        parts = [chunk async for chunk in self.chunks()]
        return b"".join(parts)


Handler = Callable[[Request, Callable[[Response], Awaitable[None]]], Awaitable[None]]


class HttpConnection:
    """Serves the requests of one TCP connection."""

    def __init__(self, stream: anyio.abc.ByteStream, *, now: Callable[[], float]) -> None:
        self._stream = stream
        self._now = now
        self._conn = h11.Connection(h11.SERVER)
        self._method = b"GET"
        self._responded = False

    async def next_event(self, *, body: bool = False) -> object:
        """The next h11 event, reading from the socket as needed."""
        while True:
            event = self._conn.next_event()
            if event is not h11.NEED_DATA:
                return event
            if body and self._conn.they_are_waiting_for_100_continue:
                await self._send(
                    self._conn.send(h11.InformationalResponse(status_code=100, headers=[]))
                )
            try:
                data = await self._stream.receive(_READ)
            except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError):
                data = b""
            except OSError:
                data = b""
            self._conn.receive_data(data)

    async def _send(self, data: Optional[bytes]) -> None:
        if not data:
            return
        try:
            await self._stream.send(data)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError) as exc:
            raise ClientGone(str(exc) or type(exc).__name__) from None

    async def serve(self, handler: Handler) -> None:
        """Serve requests until the client leaves or the connection must close."""
        while True:
            try:
                event = await self.next_event()
            except h11.RemoteProtocolError as exc:
                await self._refuse(exc.error_status_hint)
                return
            if not isinstance(event, h11.Request):
                return  # ConnectionClosed (or PAUSED after a refused request)
            self._method = event.method
            self._responded = False
            request = Request(self, event)
            try:
                await handler(request, self.respond)
            except ClientGone:
                return
            except h11.RemoteProtocolError as exc:
                if not self._responded:
                    await self._refuse(exc.error_status_hint)
                return
            if not self._responded:  # a handler that forgot to answer
                try:
                    await self.respond(
                        Response(500, [("content-type", "text/plain")], b"no response")
                    )
                except ClientGone:
                    return
            conn = self._conn
            if conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
                return  # closing, or the request body was not read to its end
            conn.start_next_cycle()

    async def _refuse(self, status: int) -> None:
        """Answer a request h11 could not parse, then the connection closes."""
        if self._conn.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
            return
        body = http.HTTPStatus(status).phrase.encode() + b"\n"
        head = h11.Response(
            status_code=status,
            headers=[
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        )
        try:
            await self._send(self._conn.send(head))
            await self._send(self._conn.send(h11.Data(data=body)))
            await self._send(self._conn.send(h11.EndOfMessage()))
        except (ClientGone, h11.LocalProtocolError):
            return

    async def respond(self, response: Response) -> None:
        """Send ``response`` (all of it: a streamed body is read to its end)."""
        if self._responded:
            raise RuntimeError("this request was already answered")
        self._responded = True
        body = response.body
        try:
            status = response.status
            no_body = self._method == b"HEAD" or status in _NO_BODY
            headers = [(k.lower().encode("ascii"), v.encode()) for k, v in response.headers]
            headers.append((b"date", email.utils.formatdate(self._now(), usegmt=True).encode()))
            if isinstance(body, bytes) and status not in _NO_BODY:
                headers.append((b"content-length", str(len(body)).encode()))
            try:
                reason = http.HTTPStatus(status).phrase.encode()
            except ValueError:
                reason = b""
            await self._send(
                self._conn.send(h11.Response(status_code=status, headers=headers, reason=reason))
            )
            if isinstance(body, bytes):
                if body and not no_body:
                    await self._send(self._conn.send(h11.Data(data=body)))
            elif not no_body:
                async for chunk in body:
                    if chunk:
                        await self._send(self._conn.send(h11.Data(data=chunk)))
            await self._send(self._conn.send(h11.EndOfMessage()))
        finally:
            if not isinstance(body, bytes):
                aclose = getattr(body, "aclose", None)
                if aclose is not None:
                    with anyio.CancelScope(shield=True):
                        await aclose()
