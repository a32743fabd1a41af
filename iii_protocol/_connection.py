"""``Connection``: one worker session, sans I/O.

Theory of operation
-------------------
The transport feeds bytes in (``receive_data``), reports the socket opening
and closing (``transport_opened`` / ``transport_closed``), writes whatever
``data_to_send()`` returns, and sleeps until ``get_timer()`` to call
``handle_timer(now)``.  Everything the application must react to comes out of
``events()``.  Time is always passed in; this module never reads a clock.

A session outlives its sockets.  Per socket it owns a ``wsproto`` client, the
partial message being reassembled, the handshake and keep-alive clocks.  Per
session it keeps the registrations (replayed on every connection), the calls
waiting for a result (``_pending``), the calls held while disconnected
(``_held``), the invocations this worker must still answer (``_inbound``),
the engine's worker id and reattach token, and the retry counter.

On ``workerregistered`` the connection sends, in this order: ``reattach``
(when an earlier connection had an id), the ``engine::workers::register``
announce, trigger types, functions, triggers, then the held calls.  The
announce first means the engine knows the namespace before any registration
arrives, so nothing depends on its buffering.

When a socket is lost every sent call fails at once with ``CONNECTION_LOST``
(the engine forgot it; its outcome is unknown), held calls stay held with
their deadlines running, and a reconnect is scheduled per the policy.
"""

from __future__ import annotations

import heapq
import random as _random
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from typing import Optional, TypeVar, Union

from wsproto import ConnectionType, WSConnection
from wsproto import events as ws
from wsproto.connection import ConnectionState as WSState
from wsproto.utilities import RemoteProtocolError as WSRemoteProtocolError

from . import _frames as f
from . import events as ev
from ._codec import decode_frame, encode_frame
from ._json import JSON, loads
from ._state import ConnectionInput, ConnectionState, ConnectionStateMachine
from .config import Config
from .errors import (
    ConnectionFailed,
    HeldCallsFull,
    LocalProtocolError,
    PayloadError,
    PayloadTooLarge,
    RemoteProtocolError,
    UpgradeRefused,
)

__all__ = ["Connection", "ANNOUNCE_FUNCTION_ID", "CALLER_WORKER_ID_KEY"]

ANNOUNCE_FUNCTION_ID = "engine::workers::register"
CALLER_WORKER_ID_KEY = "_caller_worker_id"
FUNCTION_CONFLICT = "FUNCTION_NAMESPACE_CONFLICT"

_R = TypeVar("_R", f.RegisterFunction, f.RegisterTriggerType, f.RegisterTrigger)

_CHANNEL_KEY = '"channel_id"'

_CLOSE_NORMAL = 1000
_CLOSE_PROTOCOL_ERROR = 1002
_CLOSE_TOO_BIG = 1009


def _utf8_len(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode("utf-8"))


class _Pending:
    """An outbound call waiting for its result."""

    __slots__ = ("deadline", "function_id", "sent", "timeout")

    def __init__(self, function_id: str, deadline: float, timeout: float, sent: bool) -> None:
        self.function_id = function_id
        self.deadline = deadline
        self.timeout = timeout
        self.sent = sent


class Connection:
    """The protocol state of one worker session. See the module docstring.

    Args:
        config: what to connect to and how; see ``Config``.
        random: a source of floats in [0, 1) for the backoff jitter.
        new_id: makes invocation ids (default: UUID v4 strings).

    Exactly one thread or task may use a ``Connection`` at a time.
    """

    def __init__(
        self,
        config: Optional[Config] = None,
        *,
        random: Optional[Callable[[], float]] = None,
        new_id: Optional[Callable[[], str]] = None,
    ) -> None:
        self.config = config if config is not None else Config()
        self._address = self.config.address
        self._random = random if random is not None else _random.Random().random
        self._new_id = new_id if new_id is not None else (lambda: str(uuid.uuid4()))
        self._sm = ConnectionStateMachine()
        self._events: deque[ev.Event] = deque()
        self._out = bytearray()

        # per socket
        self._ws: Optional[WSConnection] = None
        self._transport_active = False
        self._requested = False  # the upgrade request was queued on this socket
        self._handshake_done = False
        self._message: list[str] = []
        self._message_size = 0
        self._message_binary = False
        self._connect_deadline: Optional[float] = None
        self._last_received = 0.0
        self._next_ping: Optional[float] = None
        self._syncs: deque[int] = deque()  # tokens of the pings the engine owes a pong

        # per session
        self.worker_id: Optional[str] = None
        self.reattach_token: Optional[str] = None
        self.features: tuple[str, ...] = ()
        self._retries = 0
        self._sync_count = 0
        self._backoff_deadline: Optional[float] = None
        self._failure: Optional[ConnectionFailed] = None
        self._announce_id: Optional[str] = None
        self._pending: dict[str, _Pending] = {}
        self._deadlines: list[tuple[float, str]] = []
        self._held: deque[tuple[Optional[str], str]] = deque()
        self._inbound: dict[str, str] = {}
        self._orphans: set[str] = set()
        self._functions: dict[str, f.RegisterFunction] = {}
        self._trigger_types: dict[str, f.RegisterTriggerType] = {}
        self._triggers: dict[str, f.RegisterTrigger] = {}

    # -- read-only views -------------------------------------------------------

    @property
    def state(self) -> ConnectionState:
        return self._sm.state

    @property
    def failure(self) -> Optional[ConnectionFailed]:
        """Why the connection is ``FAILED``, else ``None``."""
        return self._failure

    @property
    def pending_count(self) -> int:
        return len(self._pending)

    @property
    def held_count(self) -> int:
        return len(self._held)

    @property
    def functions(self) -> dict[str, f.RegisterFunction]:
        return dict(self._functions)

    @property
    def trigger_types(self) -> dict[str, f.RegisterTriggerType]:
        return dict(self._trigger_types)

    @property
    def triggers(self) -> dict[str, f.RegisterTrigger]:
        return dict(self._triggers)

    # -- output ----------------------------------------------------------------

    def data_to_send(self) -> bytes:
        """Everything queued for the socket since the last call."""
        out = bytes(self._out)
        self._out.clear()
        return out

    def events(self) -> Iterator[ev.Event]:
        """Drain the events produced so far."""
        while self._events:
            yield self._events.popleft()

    def _emit(self, event: ev.Event) -> None:
        self._events.append(event)

    def _transition(
        self,
        event: ConnectionInput,
        reason: Optional[str] = None,
        cause: Optional[BaseException] = None,
    ) -> None:
        old = self._sm.process(event)
        if old is not self._sm.state:
            self._emit(ev.StateChanged(old=old, new=self._sm.state, reason=reason, cause=cause))

    # -- lifecycle -------------------------------------------------------------

    def connect(self, now: float) -> None:
        """Start the session: emits ``OpenTransport``.

        Raises:
            LocalProtocolError: not ``DISCONNECTED``.
        """
        self._transition(ConnectionInput.CONNECT)
        self._open(now)

    def _open(self, now: float) -> None:
        self._ws = WSConnection(ConnectionType.CLIENT)
        self._transport_active = True
        self._requested = False
        self._handshake_done = False
        self._message.clear()
        self._message_size = 0
        self._connect_deadline = now + self.config.connect_timeout
        self._next_ping = None
        self._emit(
            ev.OpenTransport(
                host=self._address.host,
                port=self._address.port,
                secure=self._address.secure,
                timeout=self.config.connect_timeout,
            )
        )

    def transport_opened(self, now: float) -> None:
        """The socket is open: queue the WebSocket upgrade request.

        Raises:
            LocalProtocolError: no transport was asked for, or it opened already.
        """
        ws_conn = self._ws
        if (
            not self._transport_active
            or ws_conn is None
            or ws_conn.state is not WSState.CONNECTING
            or self._requested
        ):
            raise LocalProtocolError("no transport is being opened")
        self._requested = True
        self._last_received = now
        self._out += ws_conn.send(
            ws.Request(
                host=self._address.host_header,
                target=self._address.target,
                extra_headers=[(k.encode(), v.encode()) for k, v in self.config.headers],
            )
        )

    def transport_closed(
        self,
        now: float,
        reason: str = "connection closed",
        *,
        cause: Optional[BaseException] = None,
    ) -> None:
        """The socket closed or failed. Ignored when the core already dropped it.

        ``cause``: the exception the transport saw (refused, DNS, TLS, ...);
        it is passed on in the ``StateChanged`` that follows.
        """
        if self._transport_active:
            self._lose(now, reason, close=False, cause=cause)

    def close(self) -> None:
        """Close the session: WebSocket close 1000, pending and held calls fail
        with ``SHUTDOWN``. Registrations are kept for a later ``connect()``.
        Idempotent; a ``FAILED`` connection stays ``FAILED``.
        """
        if self._sm.state is ConnectionState.FAILED:
            return
        self._drop_transport("closed by the worker", _CLOSE_NORMAL)
        self._transition(ConnectionInput.CLOSE)
        self._backoff_deadline = None
        self._retries = 0
        self.worker_id = self.reattach_token = None
        self._fail_calls("SHUTDOWN", "iii is shutting down", held_too=True)

    # -- input -----------------------------------------------------------------

    def receive_data(self, data: bytes, now: float) -> None:
        """Feed bytes read from the socket. Data for a dropped transport is ignored.

        Never raises for anything the peer sends: protocol violations become
        ``FrameRejected`` events or drop the transport (and reconnect).
        """
        ws_conn = self._ws
        if not self._transport_active or ws_conn is None or not data:
            return  # (empty data is no news: EOF is ``transport_closed``)
        self._last_received = now
        try:
            ws_conn.receive_data(data)
            for event in ws_conn.events():
                self._on_ws_event(event, now)
                if not self._transport_active:
                    return
        except (WSRemoteProtocolError, UnicodeError) as exc:
            # wsproto lets a non-ASCII byte in a handshake header escape as UnicodeError.
            self._lose(now, f"WebSocket handshake failed: {exc}", close=True)

    def _on_ws_event(self, event: ws.Event, now: float) -> None:
        if isinstance(event, ws.TextMessage):
            self._on_message_part(event.data, event.message_finished, False, now)
        elif isinstance(event, ws.BytesMessage):
            self._on_message_part(event.data, event.message_finished, True, now)
        elif isinstance(event, ws.Ping):
            self._send_ws(event.response())
        elif isinstance(event, ws.AcceptConnection):
            self._handshake_done = True
            self._next_ping = now + self.config.ping_interval
        elif isinstance(event, ws.CloseConnection):
            ws_conn = self._ws
            if ws_conn is not None and ws_conn.state is WSState.REMOTE_CLOSING:
                self._out += ws_conn.send(event.response())
                self._lose(
                    now,
                    f"engine closed the connection ({event.code} {event.reason}".rstrip() + ")",
                    close=True,
                )
            else:
                # wsproto could not parse the engine's bytes: close with its code
                # (1002, or 1007 for invalid UTF-8).
                self._lose(
                    now,
                    f"bad WebSocket data from the engine: {event.reason}",
                    close=True,
                    code=event.code,
                )
        elif isinstance(event, ws.RejectConnection):
            refused = UpgradeRefused(event.status_code)
            self._lose(now, str(refused), close=True, cause=refused)
        # A WebSocket Pong needs nothing: any bytes already count as liveness.  RejectData
        # cannot arrive: the transport is dropped on RejectConnection.

    def _on_message_part(
        self, data: Union[str, bytes, bytearray], finished: bool, binary: bool, now: float
    ) -> None:
        if not self._message and self._message_size == 0:
            self._message_binary = binary
        if isinstance(data, str):
            self._message_size += _utf8_len(data)
            self._message.append(data)
        else:
            self._message_size += len(data)
        if self._message_size > self.config.max_message_size:
            self._lose(
                now,
                f"engine message over the {self.config.max_message_size}-byte limit",
                close=True,
                code=_CLOSE_TOO_BIG,
            )
            return
        if not finished:
            return
        text = "".join(self._message)
        self._message.clear()
        self._message_size = 0
        if self._message_binary:
            self._emit(
                ev.FrameRejected(
                    error=RemoteProtocolError(
                        "binary message on the control socket (the engine sends text only)"
                    )
                )
            )
            return
        if not text.strip():
            return
        try:
            frame = decode_frame(text)
        except RemoteProtocolError as exc:
            self._on_bad_frame(text, exc)
            return
        self._on_frame(frame, text)

    def _on_bad_frame(self, text: str, exc: RemoteProtocolError) -> None:
        self._emit(ev.FrameRejected(error=exc))
        if exc.frame_type != f.InvocationResult.TYPE:
            return
        # A malformed answer to one of our calls fails that call now rather
        # than leaving it to time out.
        obj = loads(text)
        invocation_id = obj.get("invocation_id") if isinstance(obj, dict) else None
        if isinstance(invocation_id, str):
            pending = self._pending.get(invocation_id)
            if pending is not None and pending.sent:
                del self._pending[invocation_id]
                self._emit(
                    ev.InvocationFailed(
                        invocation_id=invocation_id,
                        function_id=pending.function_id,
                        error=f.ErrorBody(code="UNKNOWN", message=f"malformed result: {exc}"),
                    )
                )

    def _on_frame(self, frame: Union[f.Frame, f.UnknownFrame], text: str) -> None:
        if isinstance(frame, f.InvocationResult):
            self._on_result(frame)
        elif isinstance(frame, f.InvokeFunction):
            self._on_invoke(frame, text)
        elif isinstance(frame, f.WorkerRegistered):
            self._on_worker_registered(frame)
        elif isinstance(frame, f.RegisterTrigger):
            if frame.trigger_type in self._trigger_types:
                self._emit(ev.TriggerRegistrationRequested(binding=frame))
            else:
                self.send_trigger_registration_result(
                    frame.id,
                    frame.trigger_type,
                    frame.function_id,
                    error=f.ErrorBody(
                        code="trigger_type_not_found",
                        message=f"trigger type {frame.trigger_type!r} is not provided here",
                    ),
                )
        elif isinstance(frame, f.UnregisterTrigger):
            self._emit(
                ev.TriggerUnregistrationRequested(id=frame.id, trigger_type=frame.trigger_type)
            )
        elif isinstance(frame, f.TriggerRegistrationResult):
            if frame.error is not None:
                self._emit(
                    ev.TriggerRegistrationFailed(
                        id=frame.id,
                        trigger_type=frame.trigger_type,
                        function_id=frame.function_id,
                        error=frame.error,
                    )
                )
        elif isinstance(frame, f.RegistrationRejected):
            if frame.code == FUNCTION_CONFLICT:
                self._emit(ev.FunctionRejected(rejection=frame))
            else:
                what = frame.worker_name or frame.function_id or "this worker"
                self._fail_session(
                    frame.code,
                    f"engine refused {what!r} in namespace {frame.namespace!r} "
                    f"(owner {frame.owner_worker_id or 'reserved'})",
                    frame,
                )
        elif isinstance(frame, f.Ping):
            self._send_frame(f.Pong())
            self._emit(ev.PingReceived())
        elif isinstance(frame, f.ErrorFrame):
            self._emit(ev.EngineErrorReceived(error=frame.error))
        elif isinstance(frame, f.UnknownFrame):
            self._emit(ev.UnknownFrameReceived(frame=frame))
        elif isinstance(frame, f.Pong):
            if self._syncs:
                self._emit(ev.Synced(token=self._syncs.popleft()))
        else:
            self._emit(
                ev.FrameRejected(
                    error=RemoteProtocolError(
                        f"{frame.TYPE} is not sent by the engine", frame_type=frame.TYPE
                    )
                )
            )

    def _on_worker_registered(self, frame: f.WorkerRegistered) -> None:
        if self._sm.state is not ConnectionState.CONNECTING:
            self._emit(
                ev.FrameRejected(
                    error=RemoteProtocolError(
                        "workerregistered on a connection that already has one",
                        frame_type=frame.TYPE,
                    )
                )
            )
            return
        previous_id, previous_token = self.worker_id, self.reattach_token
        self.worker_id = frame.worker_id
        self.reattach_token = frame.reattach_token
        self.features = tuple(frame.features or ())
        self._connect_deadline = None
        self._retries = 0
        if previous_id is not None:
            self._send_frame(
                f.Reattach(previous_worker_id=previous_id, reattach_token=previous_token)
            )
        announce = self.config.announce
        if announce is not None:
            announce_id = self._new_id() if self.config.confirm_announce else None
            self._announce_id = announce_id
            self._send_frame(
                f.InvokeFunction(
                    function_id=ANNOUNCE_FUNCTION_ID,
                    data=dict(announce),
                    invocation_id=announce_id,
                    action=None if announce_id is not None else f.TriggerActionVoid(),
                )
            )
        for registrations in (self._trigger_types, self._functions, self._triggers):
            for registration in registrations.values():
                self._send_frame(registration)
        held, self._held = self._held, deque()
        for invocation_id, text in held:
            if invocation_id is None:
                self._send_text(text)
            else:
                pending = self._pending.get(invocation_id)
                if pending is not None:  # else its caller gave up (cancel)
                    pending.sent = True
                    self._send_text(text)
        self._transition(ConnectionInput.WORKER_REGISTERED)
        self._emit(
            ev.Connected(
                worker_id=frame.worker_id,
                reattach_token=frame.reattach_token,
                features=self.features,
            )
        )

    def _on_result(self, frame: f.InvocationResult) -> None:
        if frame.invocation_id == self._announce_id:
            self._announce_id = None
            self._emit(ev.Announced(result=frame.result, error=frame.error))
            return
        pending = self._pending.get(frame.invocation_id)
        if pending is None or not pending.sent:
            return  # late, unknown, or not ours: the engine drops these too
        del self._pending[frame.invocation_id]
        if frame.error is not None:
            self._emit(
                ev.InvocationFailed(
                    invocation_id=frame.invocation_id,
                    function_id=pending.function_id,
                    error=frame.error,
                )
            )
        else:
            self._emit(
                ev.InvocationSucceeded(
                    invocation_id=frame.invocation_id,
                    function_id=pending.function_id,
                    result=frame.result,
                )
            )

    def _on_invoke(self, frame: f.InvokeFunction, text: str) -> None:
        invocation_id = frame.invocation_id
        function = self._functions.get(frame.function_id)
        if function is None or function.invocation is not None:
            if invocation_id is not None:
                code, message = (
                    ("function_not_found", f"Function '{frame.function_id}' not found")
                    if function is None
                    else (
                        "function_not_invokable",
                        f"Function '{frame.function_id}' is invoked over HTTP by the engine",
                    )
                )
                self._send_frame(
                    f.InvocationResult(
                        invocation_id=invocation_id,
                        function_id=frame.function_id,
                        error=f.ErrorBody(code=code, message=message),
                    )
                )
            return
        if invocation_id is not None:
            # An orphan (from a lost socket) is still running in the app: a
            # second invocation under its id could not be told apart from it.
            if invocation_id in self._inbound or invocation_id in self._orphans:
                self._emit(
                    ev.FrameRejected(
                        error=RemoteProtocolError(
                            f"invocation {invocation_id} is already running", frame_type=frame.TYPE
                        )
                    )
                )
                return
            self._inbound[invocation_id] = frame.function_id
        data = frame.data
        caller: Optional[str] = None
        if isinstance(data, dict) and CALLER_WORKER_ID_KEY in data:
            raw_caller = data.pop(CALLER_WORKER_ID_KEY)
            caller = raw_caller if isinstance(raw_caller, str) else None
        self._emit(
            ev.InvocationRequested(
                invocation_id=invocation_id,
                function_id=frame.function_id,
                data=data,
                metadata=frame.metadata,
                traceparent=frame.traceparent,
                baggage=frame.baggage,
                caller_worker_id=caller,
                # A substring search of the text is far cheaper than walking
                # the decoded payload of every invocation for refs.
                may_hold_channel_refs=_CHANNEL_KEY in text,
            )
        )

    # -- timers ----------------------------------------------------------------

    def get_timer(self) -> Optional[float]:
        """The next time ``handle_timer`` has work to do, or ``None``."""
        deadlines = self._deadlines
        while deadlines and deadlines[0][1] not in self._pending:
            heapq.heappop(deadlines)
        candidates = [
            t
            for t in (
                deadlines[0][0] if deadlines else None,
                self._backoff_deadline,
                self._connect_deadline,
                self._next_ping,
                self._last_received + self.config.idle_timeout if self._handshake_done else None,
            )
            if t is not None
        ]
        return min(candidates) if candidates else None

    def handle_timer(self, now: float) -> None:
        """Run everything due at ``now``: timeouts, reconnects, keep-alive."""
        deadlines = self._deadlines
        while deadlines and deadlines[0][0] <= now:
            _, invocation_id = heapq.heappop(deadlines)
            pending = self._pending.get(invocation_id)
            if pending is not None and pending.deadline <= now:
                del self._pending[invocation_id]
                if not pending.sent:
                    # Free its place in the bounded queue of held calls.
                    self._held = deque(h for h in self._held if h[0] != invocation_id)
                self._emit(
                    ev.InvocationFailed(
                        invocation_id=invocation_id,
                        function_id=pending.function_id,
                        error=f.ErrorBody(
                            code="TIMEOUT",
                            message=f"invocation timed out after {round(pending.timeout * 1000)}ms",
                        ),
                    )
                )
        if self._backoff_deadline is not None and now >= self._backoff_deadline:
            self._backoff_deadline = None
            self._transition(ConnectionInput.BACKOFF_ELAPSED)
            self._open(now)
        if not self._transport_active:
            return
        if self._connect_deadline is not None and now >= self._connect_deadline:
            self._lose(now, "timed out opening the connection", close=True)
        elif self._handshake_done:
            if now - self._last_received >= self.config.idle_timeout:
                self._lose(
                    now, f"no data from the engine for {self.config.idle_timeout:g}s", close=True
                )
            elif self._next_ping is not None and now >= self._next_ping:
                self._send_ws(ws.Ping(payload=b"iii"))
                self._next_ping = now + self.config.ping_interval

    # -- transport loss and failure --------------------------------------------

    def _drop_transport(self, reason: str, code: Optional[int]) -> None:
        """Forget the socket; ``code`` set: queue a Close and ask the transport to close it."""
        if not self._transport_active:
            return
        ws_conn = self._ws
        if code is not None:
            if ws_conn is not None and ws_conn.state is WSState.OPEN:
                self._out += ws_conn.send(ws.CloseConnection(code=code))
            self._emit(ev.CloseTransport(reason=reason))
        else:
            # The socket is already gone: what was queued for it can go nowhere.
            self._out.clear()
        self._transport_active = False
        self._ws = None
        self._announce_id = None
        self._handshake_done = False
        self._message.clear()
        self._message_size = 0
        self._connect_deadline = None
        self._next_ping = None
        self._syncs.clear()
        if self._inbound:
            # Their results can no longer be delivered: the engine has already
            # failed them with invocation_stopped.
            self._orphans.update(self._inbound)
            self._inbound.clear()

    def _lose(
        self,
        now: float,
        reason: str,
        *,
        close: bool,
        code: int = _CLOSE_PROTOCOL_ERROR,
        cause: Optional[BaseException] = None,
    ) -> None:
        # A transport that closed itself needs no CloseTransport.
        self._drop_transport(reason, code if close else None)
        self._fail_calls(
            "CONNECTION_LOST", f"connection lost ({reason}); outcome unknown", held_too=False
        )
        policy = self.config.reconnect
        if policy.gives_up_after(self._retries):
            self._fail_session(
                "RETRIES_EXHAUSTED",
                f"gave up after {self._retries} reconnect attempts ({reason})",
                None,
                cause,
            )
            return
        self._backoff_deadline = now + policy.delay(self._retries, self._random() * 2.0 - 1.0)
        self._retries += 1
        self._transition(ConnectionInput.TRANSPORT_LOST, reason, cause)

    def _fail_session(
        self,
        code: str,
        message: str,
        rejection: Optional[f.RegistrationRejected],
        cause: Optional[BaseException] = None,
    ) -> None:
        self._drop_transport(message, _CLOSE_NORMAL)
        self._transition(
            ConnectionInput.RETRIES_EXHAUSTED
            if rejection is None
            else ConnectionInput.FATAL_REJECTION,
            message,
            cause,
        )
        self._failure = ConnectionFailed(code, message)
        self._backoff_deadline = None
        self._fail_calls(code, message, held_too=True)
        self._emit(ev.ConnectionFailedEvent(code=code, message=message, rejection=rejection))

    def _fail_calls(self, code: str, message: str, *, held_too: bool) -> None:
        failed = [
            (invocation_id, pending)
            for invocation_id, pending in self._pending.items()
            if held_too or pending.sent
        ]
        for invocation_id, pending in failed:
            del self._pending[invocation_id]
            self._emit(
                ev.InvocationFailed(
                    invocation_id=invocation_id,
                    function_id=pending.function_id,
                    error=f.ErrorBody(code=code, message=message),
                )
            )
        if held_too:
            self._held.clear()
        if not self._pending:
            self._deadlines.clear()

    # -- sending ---------------------------------------------------------------

    @property
    def _connected(self) -> bool:
        return self._sm.state is ConnectionState.CONNECTED

    def _send_ws(self, event: ws.Event) -> None:
        ws_conn = self._ws
        # Callers only run on an open socket (a Close drops it at once).
        if ws_conn is not None and ws_conn.state is WSState.OPEN:  # pragma: no branch
            self._out += ws_conn.send(event)

    def _send_frame(self, frame: f.Frame) -> None:
        self._send_text(encode_frame(frame))

    def _send_text(self, text: str) -> None:
        ws_conn = self._ws
        if ws_conn is None or ws_conn.state is not WSState.OPEN:
            return  # pragma: no cover - callers check the state first
        threshold = self.config.fragment_threshold
        if len(text) <= threshold // 4 or _utf8_len(text) <= threshold:
            self._out += ws_conn.send(ws.Message(data=text))
            return
        # Large messages go out as continuation frames of whole characters, so
        # every fragment is valid UTF-8 on its own.
        step = self.config.fragment_size
        for start in range(0, len(text), step):
            end = start + step
            self._out += ws_conn.send(
                ws.Message(data=text[start:end], message_finished=end >= len(text))
            )

    def _encode_checked(self, frame: f.Frame, function_id: Optional[str]) -> str:
        text = encode_frame(frame)
        limit = self.config.max_message_size
        if len(text) * 4 > limit:
            size = _utf8_len(text)
            if size > limit:
                raise PayloadTooLarge(size, limit, function_id=function_id)
        return text

    def _check_usable(self) -> None:
        if self._failure is not None:
            raise self._failure

    # -- commands: calls -------------------------------------------------------

    def invoke(
        self,
        function_id: str,
        data: JSON,
        *,
        now: float,
        action: Optional[f.TriggerAction] = None,
        timeout: Optional[float] = None,
        metadata: JSON = None,
        namespace: Optional[str] = None,
        traceparent: Optional[str] = None,
        baggage: Optional[str] = None,
    ) -> Optional[str]:
        """Call a function. Returns the invocation id, or ``None`` for void calls.

        The outcome arrives as ``InvocationSucceeded`` or ``InvocationFailed``
        with that id (exactly one of them).  While not connected the call is
        held and sent after the next replay; its timeout runs meanwhile.

        Raises:
            PayloadError: ``data`` or ``metadata`` has no strict JSON form.
            PayloadTooLarge: the encoded call is over ``max_message_size``.
            HeldCallsFull: not connected and ``max_held_calls`` are waiting.
            ConnectionFailed: the session failed for good.
            Nothing is sent or recorded when it raises.
        """
        self._check_usable()
        void = isinstance(action, f.TriggerActionVoid)
        invocation_id = None if void else self._new_id()
        frame = f.InvokeFunction(
            function_id=function_id,
            data=data,
            invocation_id=invocation_id,
            traceparent=traceparent,
            baggage=baggage,
            action=action,
            metadata=metadata,
            namespace=namespace,
        )
        text = self._encode_checked(frame, function_id)
        connected = self._connected
        if not connected and len(self._held) >= self.config.max_held_calls:
            raise HeldCallsFull(self.config.max_held_calls, function_id=function_id)
        if invocation_id is not None:
            if timeout is None:
                timeout = self.config.invocation_timeout
            deadline = now + timeout
            self._pending[invocation_id] = _Pending(function_id, deadline, timeout, connected)
            heapq.heappush(self._deadlines, (deadline, invocation_id))
        if connected:
            self._send_text(text)
        else:
            self._held.append((invocation_id, text))
        return invocation_id

    def cancel(self, invocation_id: str) -> bool:
        """Forget a pending call (its caller gave up); a late result is ignored.

        Returns whether it was pending.  No event is emitted for it.
        """
        return self._pending.pop(invocation_id, None) is not None

    def send_result(
        self,
        invocation_id: str,
        function_id: str,
        result: JSON = None,
        *,
        error: Optional[f.ErrorBody] = None,
        traceparent: Optional[str] = None,
    ) -> bool:
        """Answer an ``InvocationRequested`` exactly once.

        A result that cannot be sent (no JSON form, too large) is replaced by
        an error result (``serialization_error`` / ``payload_too_large``), so
        the caller always gets an answer.

        Returns:
            True if sent; False if the connection it came on is gone (the
            engine already told the caller ``invocation_stopped``).

        Raises:
            LocalProtocolError: no such invocation is waiting for an answer
                (never received, or answered already).
        """
        if invocation_id in self._orphans:
            self._orphans.discard(invocation_id)
            return False
        if self._inbound.pop(invocation_id, None) is None:
            raise LocalProtocolError(f"invocation {invocation_id!r} is not awaiting a result")
        frame = f.InvocationResult(
            invocation_id=invocation_id,
            function_id=function_id,
            result=None if error is not None else result,
            error=error,
            traceparent=traceparent,
        )
        try:
            text = self._encode_checked(frame, function_id)
        except (PayloadError, PayloadTooLarge) as exc:
            text = encode_frame(
                f.InvocationResult(
                    invocation_id=invocation_id,
                    function_id=function_id,
                    error=f.ErrorBody(code=exc.code, message=f"result not sent: {exc.message}"),
                )
            )
        self._send_text(text)
        return True

    def sync(self) -> Optional[int]:
        """Ask the engine to confirm it has handled everything sent so far.

        Sends a protocol ``ping``; the engine handles a connection's frames in
        order, so its ``pong`` comes after its answer to any earlier frame
        (a ``registrationrejected``, for one).  The pong is reported as
        ``Synced(token)``.  Returns the token, or ``None`` when not connected
        (nothing is sent).  A lost connection forgets the syncs it owed.
        """
        if not self._connected:
            return None
        self._sync_count += 1
        self._syncs.append(self._sync_count)
        self._send_frame(f.Ping())
        return self._sync_count

    # -- commands: triggers ----------------------------------------------------

    def send_trigger_registration_result(
        self,
        binding_id: str,
        trigger_type: str,
        function_id: str,
        *,
        error: Optional[f.ErrorBody] = None,
    ) -> bool:
        """Ack (``error=None``) or refuse a delivered binding.

        Returns False when not connected: the engine re-delivers bindings
        when the trigger type is replayed on the next connection.
        """
        if not self._connected:
            return False
        self._send_frame(
            f.TriggerRegistrationResult(
                id=binding_id, trigger_type=trigger_type, function_id=function_id, error=error
            )
        )
        return True

    # -- commands: registrations -----------------------------------------------

    def _register(self, frame: f.Frame) -> None:
        self._check_usable()
        text = encode_frame(frame)  # refuse a non-JSON registration before recording it
        if self._connected:
            self._send_text(text)

    def register_function(self, frame: f.RegisterFunction) -> None:
        """Record a function (replayed on every connection) and send it if connected.

        Re-registering an id replaces it.

        Raises:
            PayloadError: a format or the metadata has no JSON form.
            ConnectionFailed: the session failed for good.
        """
        self._register(frame)
        self._functions[frame.id] = frame

    def register_trigger_type(self, frame: f.RegisterTriggerType) -> None:
        """As ``register_function``, for a trigger type this worker provides."""
        self._register(frame)
        self._trigger_types[frame.id] = frame

    def register_trigger(self, frame: f.RegisterTrigger) -> None:
        """As ``register_function``, for a binding (its ``id`` is kept across reconnects)."""
        self._register(frame)
        self._triggers[frame.id] = frame

    def _unregister(self, registry: dict[str, _R], key: str, frame: f.Frame) -> None:
        self._check_usable()
        if key not in registry:
            raise LocalProtocolError(f"{key!r} is not registered")
        del registry[key]
        if self._connected:
            self._send_frame(frame)

    def unregister_function(self, function_id: str) -> None:
        """Forget a function and tell the engine.

        Raises:
            LocalProtocolError: it is not registered.
        """
        self._unregister(
            self._functions,
            function_id,
            f.UnregisterFunction(id=function_id),
        )

    def unregister_trigger_type(self, trigger_type_id: str) -> None:
        """Forget a trigger type (engines up to 0.23 ignore the frame)."""
        registered = self._trigger_types.get(trigger_type_id)
        namespace = registered.namespace if registered is not None else None
        self._unregister(
            self._trigger_types,
            trigger_type_id,
            f.UnregisterTriggerType(id=trigger_type_id, namespace=namespace),
        )

    def unregister_trigger(self, binding_id: str) -> None:
        """Remove a binding this worker registered."""
        registered = self._triggers.get(binding_id)
        trigger_type = registered.trigger_type if registered is not None else None
        self._unregister(
            self._triggers,
            binding_id,
            f.UnregisterTrigger(id=binding_id, trigger_type=trigger_type),
        )
