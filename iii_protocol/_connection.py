"""``Connection``: one worker session, sans I/O.

Theory of operation
-------------------
The transport feeds bytes in (``receive_data``), reports the socket opening
and closing (``transport_opened`` / ``transport_closed``), writes whatever
``data_to_send()`` returns, and sleeps until ``get_timer()`` to call
``handle_timer(now)``.  Everything the application must react to comes out of
``events()``.  Time is always passed in; this module never reads a clock.

A session outlives its sockets.  ``Connection`` is the facade over its parts:

* ``_state``: the table of every phase (session state and socket phase);
  every change of either goes through it, and ``Connection`` performs the
  side effects of each input;
* ``_framing``: the WebSocket of the current socket (upgrade, reassembly,
  fragmentation, pings) and the bytes queued for the transport;
* ``_calls``: calls waiting for a result (sent or held while disconnected)
  and invocations this worker must still answer;
* ``_registry``: functions, trigger types and bindings, replayed on every
  connection;
* ``_timers``: handshake deadline, keep-alive and reconnect backoff.

Here remain the session itself (the engine's worker id and reattach token,
the retry counter, why it failed) and what each frame from the engine means.

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

import os
import random as _random
from collections import deque
from collections.abc import Callable, Iterator
from typing import Optional, Union

from . import _frames as f
from . import events as ev
from ._calls import Inbound, Outbound
from ._codec import (
    encode_frame,
    encode_object,
    invocation_result,
    invoke_function,
    plain_invocation,
    plain_result,
    read_object,
    structure_object,
)
from ._framing import CLOSE_NORMAL, CLOSE_PROTOCOL_ERROR, Accepted, Framing, Lost, utf8_len
from ._json import JSON, loads
from ._registry import Registry
from ._state import ConnectionInput, ConnectionState, ConnectionStateMachine, SocketPhase
from ._timers import Timers
from .config import Config
from .errors import (
    ConnectionFailed,
    HeldCallsFull,
    LocalProtocolError,
    PayloadError,
    PayloadTooLarge,
    RemoteProtocolError,
)

__all__ = ["Connection", "RandomIds", "ANNOUNCE_FUNCTION_ID", "CALLER_WORKER_ID_KEY"]

ANNOUNCE_FUNCTION_ID = "engine::workers::register"
CALLER_WORKER_ID_KEY = "_caller_worker_id"
FUNCTION_CONFLICT = "FUNCTION_NAMESPACE_CONFLICT"

_CHANNEL_KEY = '"channel_id"'
_INVOKE = f.InvokeFunction.TYPE
_RESULT = f.InvocationResult.TYPE

_I = ConnectionInput
_NO_SOCKET = SocketPhase.NONE


class RandomIds:
    """UUID v4 strings, as ``str(uuid.uuid4())`` makes them (16 bytes of
    ``os.urandom`` each) at a quarter of the cost: the bytes are drawn 256 ids
    at a time and the text is made without a ``UUID`` object."""

    __slots__ = ("_at", "_pool")

    def __init__(self) -> None:
        self._pool = b""
        self._at = 0

    def __call__(self) -> str:
        at = self._at
        if at >= len(self._pool):
            self._pool = os.urandom(16 * 256)
            at = 0
        self._at = at + 16
        h = self._pool[at : at + 16].hex()
        # Version 4 in the 13th digit, the RFC 4122 variant (8, 9, a or b) in the 17th.
        return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{_VARIANT[h[16]]}{h[17:20]}-{h[20:]}"


_VARIANT = {digit: "89ab"[int(digit, 16) & 3] for digit in "0123456789abcdef"}


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
        self._new_id = new_id if new_id is not None else RandomIds()
        self._sm = ConnectionStateMachine()
        self._events: deque[ev.Event] = deque()
        self._framing = Framing(self.config)
        # The bytes queued for the transport (one buffer, owned by the framing;
        # tests/transports reads its size).
        self._out = self._framing.out
        self._timers = Timers(self.config)
        self._calls = Outbound(self._events)
        self._inbound = Inbound()
        self._registry = Registry()

        # the session
        self.worker_id: Optional[str] = None
        self.reattach_token: Optional[str] = None
        self.features: tuple[str, ...] = ()
        self._retries = 0
        self._failure: Optional[ConnectionFailed] = None
        self._announce_id: Optional[str] = None
        self._sync_count = 0
        # per socket: tokens of the syncs the engine still owes a pong
        self._syncs: deque[int] = deque()

    # -- read-only views -------------------------------------------------------

    @property
    def state(self) -> ConnectionState:
        return self._sm.state

    @property
    def socket_phase(self) -> SocketPhase:
        """Where the socket of the current attempt is (``NONE`` without one)."""
        return self._sm.socket

    @property
    def failure(self) -> Optional[ConnectionFailed]:
        """Why the connection is ``FAILED``, else ``None``."""
        return self._failure

    @property
    def pending_count(self) -> int:
        return len(self._calls.pending)

    @property
    def held_count(self) -> int:
        return self._calls.held_count

    @property
    def functions(self) -> dict[str, f.RegisterFunction]:
        return dict(self._registry.functions)

    @property
    def trigger_types(self) -> dict[str, f.RegisterTriggerType]:
        return dict(self._registry.trigger_types)

    @property
    def triggers(self) -> dict[str, f.RegisterTrigger]:
        return dict(self._registry.triggers)

    # -- output ----------------------------------------------------------------

    def data_to_send(self) -> bytes:
        """Everything queued for the socket since the last call."""
        out = self._out
        data = bytes(out)
        out.clear()
        return data

    def events(self) -> Iterator[ev.Event]:
        """Drain the events produced so far."""
        while self._events:
            yield self._events.popleft()

    def _emit(self, event: ev.Event) -> None:
        self._events.append(event)

    def _state_changed(
        self,
        old: Optional[ConnectionState],
        reason: Optional[str] = None,
        cause: Optional[BaseException] = None,
    ) -> None:
        new = self._sm.state
        if old is not None and old is not new:
            self._emit(ev.StateChanged(old=old, new=new, reason=reason, cause=cause))

    # -- lifecycle -------------------------------------------------------------

    def connect(self, now: float) -> None:
        """Start the session: emits ``OpenTransport``.

        Raises:
            LocalProtocolError: not ``DISCONNECTED``.
        """
        self._state_changed(self._sm.process(_I.CONNECT))
        self._open(now)

    def _open(self, now: float) -> None:
        self._framing.start()
        self._timers.socket_opening(now)
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
        self._sm.process(_I.TRANSPORT_OPENED)
        self._timers.last_received = now
        self._framing.request(self._address.host_header, self._address.target, self.config.headers)

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
        # A transport that closed itself needs no CloseTransport.
        self._lose(now, reason, close_code=None, cause=cause)

    def close(self) -> None:
        """Close the session: WebSocket close 1000, pending and held calls fail
        with ``SHUTDOWN``. Registrations are kept for a later ``connect()``.
        Idempotent; a ``FAILED`` connection stays ``FAILED``.
        """
        socket = self._sm.socket
        old = self._sm.process(_I.CLOSE)
        if old is None:
            return  # failed for good: nothing to close
        if socket is not _NO_SOCKET:
            self._drop_socket("closed by the worker", CLOSE_NORMAL)
        self._state_changed(old)
        self._timers.backoff = None
        self._retries = 0
        self.worker_id = self.reattach_token = None
        self._calls.fail_all("SHUTDOWN", "iii is shutting down", held_too=True)

    # -- transport loss and failure --------------------------------------------

    def _drop_socket(self, reason: str, close_code: Optional[int]) -> None:
        """Forget the socket; ``close_code`` set: queue a Close and ask the
        transport to close it (``None``: it closed itself)."""
        if close_code is not None:
            self._emit(ev.CloseTransport(reason=reason))
        self._framing.stop(close_code)
        self._timers.socket_dropped()
        self._announce_id = None
        self._syncs.clear()
        # Their results can no longer be delivered: the engine has already
        # failed them with invocation_stopped.
        self._inbound.orphan_all()

    def _lose(
        self,
        now: float,
        reason: str,
        *,
        close_code: Optional[int],
        cause: Optional[BaseException] = None,
    ) -> None:
        """The socket is lost (``close_code``: we drop it): reconnect, or fail
        when the policy allows no more retries.  Ignored without a socket."""
        policy = self.config.reconnect
        gives_up = policy.gives_up_after(self._retries)
        old = self._sm.process(_I.RETRIES_EXHAUSTED if gives_up else _I.TRANSPORT_LOST)
        if old is None:
            return  # the core dropped this socket already
        self._drop_socket(reason, close_code)
        self._calls.fail_all(
            "CONNECTION_LOST", f"connection lost ({reason}); outcome unknown", held_too=False
        )
        if gives_up:
            self._failed(
                old,
                "RETRIES_EXHAUSTED",
                f"gave up after {self._retries} reconnect attempts ({reason})",
                None,
                cause,
            )
            return
        self._timers.backoff = now + policy.delay(self._retries, self._random() * 2.0 - 1.0)
        self._retries += 1
        self._state_changed(old, reason, cause)

    def _reject(self, rejection: f.RegistrationRejected) -> None:
        """The engine refused this worker: the session fails for good."""
        what = rejection.worker_name or rejection.function_id or "this worker"
        message = (
            f"engine refused {what!r} in namespace {rejection.namespace!r} "
            f"(owner {rejection.owner_worker_id or 'reserved'})"
        )
        old = self._sm.process(_I.FATAL_REJECTION)
        self._drop_socket(message, CLOSE_NORMAL)
        self._failed(old, rejection.code, message, rejection)

    def _failed(
        self,
        old: Optional[ConnectionState],
        code: str,
        message: str,
        rejection: Optional[f.RegistrationRejected],
        cause: Optional[BaseException] = None,
    ) -> None:
        self._state_changed(old, message, cause)
        self._failure = ConnectionFailed(code, message)
        self._timers.backoff = None
        self._calls.fail_all(code, message, held_too=True)
        self._emit(ev.ConnectionFailedEvent(code=code, message=message, rejection=rejection))

    # -- input -----------------------------------------------------------------

    def receive_data(self, data: bytes, now: float) -> None:
        """Feed bytes read from the socket. Data for a dropped transport is ignored.

        Never raises for anything the peer sends: protocol violations become
        ``FrameRejected`` events or drop the transport (and reconnect).
        """
        sm = self._sm
        if sm.socket is _NO_SOCKET or not data:
            return  # (empty data is no news: EOF is ``transport_closed``)
        self._timers.last_received = now
        for item in self._framing.receive(data):
            if type(item) is str:
                self._on_message(item)
            elif type(item) is Lost:
                self._lose(now, item.reason, close_code=item.code, cause=item.cause)
            elif type(item) is Accepted:
                sm.process(_I.HANDSHAKE_ACCEPTED)
                self._timers.socket_open(now)
            else:  # BinaryMessage
                self._emit(
                    ev.FrameRejected(
                        error=RemoteProtocolError(
                            "binary message on the control socket (the engine sends text only)"
                        )
                    )
                )
            if sm.socket is _NO_SOCKET:
                return  # dropped: the rest is for nobody

    def _on_message(self, text: str) -> None:
        if not text.strip():
            return
        try:
            tag, obj = read_object(text)
            # The two frames of nearly every message, when they carry nothing
            # but the common fields, are acted on without a frame object.
            if tag == _INVOKE:
                plain = plain_invocation(obj)
                if plain is not None:
                    self._on_invoke(*plain, None, None, None, text)
                    return
            elif tag == _RESULT:
                answer = plain_result(obj)
                if answer is not None:
                    self._on_result(answer[0], answer[2], None)
                    return
            frame = structure_object(tag, obj)
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
            pending = self._calls.answered(invocation_id)
            if pending is not None:
                self._calls.fail(invocation_id, pending, "UNKNOWN", f"malformed result: {exc}")

    def _on_frame(self, frame: Union[f.Frame, f.UnknownFrame], text: str) -> None:
        if isinstance(frame, f.InvocationResult):
            self._on_result(frame.invocation_id, frame.result, frame.error)
        elif isinstance(frame, f.InvokeFunction):
            self._on_invoke(
                frame.function_id,
                frame.invocation_id,
                frame.data,
                frame.metadata,
                frame.traceparent,
                frame.baggage,
                text,
            )
        elif isinstance(frame, f.WorkerRegistered):
            self._on_worker_registered(frame)
        elif isinstance(frame, f.RegisterTrigger):
            if self._registry.provides(frame.trigger_type):
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
                self._reject(frame)
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
        try:
            old = self._sm.process(_I.WORKER_REGISTERED)
        except LocalProtocolError:
            self._emit(
                ev.FrameRejected(
                    error=RemoteProtocolError(
                        "workerregistered on a connection that already has one",
                        frame_type=frame.TYPE,
                    )
                )
            )
            return
        self._state_changed(old)
        previous_id, previous_token = self.worker_id, self.reattach_token
        self.worker_id = frame.worker_id
        self.reattach_token = frame.reattach_token
        self.features = tuple(frame.features or ())
        self._timers.connect = None
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
        for registration in self._registry.replay():
            self._send_frame(registration)
        for text in self._calls.release_held():
            self._framing.send_text(text)
        self._emit(
            ev.Connected(
                worker_id=frame.worker_id,
                reattach_token=frame.reattach_token,
                features=self.features,
            )
        )

    def _on_result(self, invocation_id: str, result: JSON, error: Optional[f.ErrorBody]) -> None:
        if invocation_id == self._announce_id:
            self._announce_id = None
            self._emit(ev.Announced(result=result, error=error))
            return
        pending = self._calls.answered(invocation_id)
        if pending is None:
            return
        if error is not None:
            self._emit(
                ev.InvocationFailed(
                    invocation_id=invocation_id,
                    function_id=pending.function_id,
                    error=error,
                )
            )
        else:
            self._emit(
                ev.InvocationSucceeded(
                    invocation_id=invocation_id,
                    function_id=pending.function_id,
                    result=result,
                )
            )

    def _on_invoke(
        self,
        function_id: str,
        invocation_id: Optional[str],
        data: JSON,
        metadata: JSON,
        traceparent: Optional[str],
        baggage: Optional[str],
        text: str,
    ) -> None:
        function = self._registry.functions.get(function_id)
        if function is None or function.invocation is not None:
            if invocation_id is not None:
                code, message = (
                    ("function_not_found", f"Function '{function_id}' not found")
                    if function is None
                    else (
                        "function_not_invokable",
                        f"Function '{function_id}' is invoked over HTTP by the engine",
                    )
                )
                self._send_frame(
                    f.InvocationResult(
                        invocation_id=invocation_id,
                        function_id=function_id,
                        error=f.ErrorBody(code=code, message=message),
                    )
                )
            return
        # An orphan (from a lost socket) is still running in the app: a
        # second invocation under its id could not be told apart from it.
        if invocation_id is not None and not self._inbound.start(invocation_id):
            self._emit(
                ev.FrameRejected(
                    error=RemoteProtocolError(
                        f"invocation {invocation_id} is already running", frame_type=_INVOKE
                    )
                )
            )
            return
        caller: Optional[str] = None
        if isinstance(data, dict) and CALLER_WORKER_ID_KEY in data:
            raw_caller = data.pop(CALLER_WORKER_ID_KEY)
            caller = raw_caller if isinstance(raw_caller, str) else None
        self._events.append(
            ev.InvocationRequested(
                invocation_id=invocation_id,
                function_id=function_id,
                data=data,
                metadata=metadata,
                traceparent=traceparent,
                baggage=baggage,
                caller_worker_id=caller,
                # A substring search of the text is far cheaper than walking
                # the decoded payload of every invocation for refs.
                may_hold_channel_refs=_CHANNEL_KEY in text,
            )
        )

    # -- timers ----------------------------------------------------------------

    def get_timer(self) -> Optional[float]:
        """The next time ``handle_timer`` has work to do, or ``None``."""
        return self._timers.next_deadline(self._calls.next_deadline())

    def handle_timer(self, now: float) -> None:
        """Run everything due at ``now``: timeouts, reconnects, keep-alive."""
        self._calls.expire(now)
        timers = self._timers
        if timers.backoff_due(now):
            self._state_changed(self._sm.process(_I.BACKOFF_ELAPSED))
            self._open(now)
        if self._sm.socket is _NO_SOCKET:
            return
        if timers.connect_due(now):
            self._lose(now, "timed out opening the connection", close_code=CLOSE_PROTOCOL_ERROR)
        elif timers.idle_due(now):
            self._lose(
                now,
                f"no data from the engine for {self.config.idle_timeout:g}s",
                close_code=CLOSE_PROTOCOL_ERROR,
            )
        elif timers.ping_due(now):
            self._framing.ping()

    # -- sending ---------------------------------------------------------------

    @property
    def _connected(self) -> bool:
        return self._sm.state is ConnectionState.CONNECTED

    def _send_frame(self, frame: f.Frame) -> None:
        self._framing.send_text(encode_frame(frame))

    def _size_checked(self, text: str, function_id: Optional[str]) -> str:
        limit = self.config.max_message_size
        if len(text) * 4 > limit:
            size = utf8_len(text)
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
        obj = invoke_function(
            function_id, data, invocation_id, traceparent, baggage, action, metadata, namespace
        )
        if obj is None:  # (an action of another class: the converter decides)
            text = encode_frame(
                f.InvokeFunction(
                    function_id=function_id,
                    data=data,
                    invocation_id=invocation_id,
                    traceparent=traceparent,
                    baggage=baggage,
                    action=action,
                    metadata=metadata,
                    namespace=namespace,
                )
            )
        else:
            text = encode_object(obj, f.InvokeFunction.TYPE, function_id)
        text = self._size_checked(text, function_id)
        connected = self._connected
        if not connected and self._calls.held_count >= self.config.max_held_calls:
            raise HeldCallsFull(self.config.max_held_calls, function_id=function_id)
        if timeout is None:
            timeout = self.config.invocation_timeout
        self._calls.add(
            invocation_id,
            function_id,
            text,
            deadline=now + timeout,
            timeout=timeout,
            sent=connected,
        )
        if connected:
            self._framing.send_text(text)
        return invocation_id

    def cancel(self, invocation_id: str) -> bool:
        """Forget a pending call (its caller gave up); a late result is ignored.

        Returns whether it was pending.  No event is emitted for it.
        """
        return self._calls.cancel(invocation_id)

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
        if not self._inbound.finish(invocation_id):
            return False
        if error is not None:
            result = None
        try:
            obj = invocation_result(invocation_id, function_id, result, error, traceparent, None)
            if obj is None:  # (an error of another class: the converter decides)
                text = encode_frame(
                    f.InvocationResult(
                        invocation_id=invocation_id,
                        function_id=function_id,
                        result=result,
                        error=error,
                        traceparent=traceparent,
                    )
                )
            else:
                text = encode_object(obj, f.InvocationResult.TYPE, function_id)
            text = self._size_checked(text, function_id)
        except (PayloadError, PayloadTooLarge) as exc:
            text = encode_frame(
                f.InvocationResult(
                    invocation_id=invocation_id,
                    function_id=function_id,
                    error=f.ErrorBody(code=exc.code, message=f"result not sent: {exc.message}"),
                )
            )
        self._framing.send_text(text)
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

    def _register(
        self, frame: Union[f.RegisterFunction, f.RegisterTriggerType, f.RegisterTrigger]
    ) -> None:
        self._check_usable()
        text = encode_frame(frame)  # refuse a non-JSON registration before recording it
        if self._connected:
            self._framing.send_text(text)
        self._registry.add(frame)

    def register_function(self, frame: f.RegisterFunction) -> None:
        """Record a function (replayed on every connection) and send it if connected.

        Re-registering an id replaces it.

        Raises:
            PayloadError: a format or the metadata has no JSON form.
            ConnectionFailed: the session failed for good.
        """
        self._register(frame)

    def register_trigger_type(self, frame: f.RegisterTriggerType) -> None:
        """As ``register_function``, for a trigger type this worker provides."""
        self._register(frame)

    def register_trigger(self, frame: f.RegisterTrigger) -> None:
        """As ``register_function``, for a binding (its ``id`` is kept across reconnects)."""
        self._register(frame)

    def _unregistered(self, frame: f.Frame) -> None:
        if self._connected:
            self._send_frame(frame)

    def unregister_function(self, function_id: str) -> None:
        """Forget a function and tell the engine.

        Raises:
            LocalProtocolError: it is not registered.
        """
        self._check_usable()
        self._unregistered(self._registry.remove_function(function_id))

    def unregister_trigger_type(self, trigger_type_id: str) -> None:
        """Forget a trigger type (engines up to 0.23 ignore the frame)."""
        self._check_usable()
        self._unregistered(self._registry.remove_trigger_type(trigger_type_id))

    def unregister_trigger(self, binding_id: str) -> None:
        """Remove a binding this worker registered."""
        self._check_usable()
        self._unregistered(self._registry.remove_trigger(binding_id))
