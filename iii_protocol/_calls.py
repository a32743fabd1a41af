"""Invocations in flight, both ways.

Theory of operation
-------------------
``Outbound`` holds the calls this worker made that wait for a result: sent
ones, and held ones (made while not connected, sent after the next replay in
the order they were made, at most ``max_held_calls``).  Every call has a
deadline; a heap orders them, and entries of calls answered or cancelled
meanwhile are skipped lazily.  Each call ends exactly once: answered,
failed (connection lost, session failed or closed, malformed answer) or timed
out; a cancelled call ends silently.

``Inbound`` holds the invocations the engine asked this worker to run and
that still await ``send_result``.  When their socket is lost they become
orphans: the engine has already failed them, so their late answer is
dropped, and their id stays taken until then (a second invocation under it
could not be told apart).
"""

from __future__ import annotations

import heapq
from collections import deque
from typing import Optional

from . import _frames as f
from . import events as ev
from .errors import LocalProtocolError

__all__ = ["Outbound", "Inbound", "Pending"]


class Pending:
    """An outbound call waiting for its result."""

    __slots__ = ("deadline", "function_id", "sent", "timeout")

    def __init__(self, function_id: str, deadline: float, timeout: float, sent: bool) -> None:
        self.function_id = function_id
        self.deadline = deadline
        self.timeout = timeout
        self.sent = sent


class Outbound:
    """Calls waiting for their result; outcomes go to ``events``."""

    __slots__ = ("_deadlines", "_events", "_held", "pending")

    def __init__(self, events: deque[ev.Event]) -> None:
        self._events = events
        #: invocation id -> call, sent or held
        self.pending: dict[str, Pending] = {}
        self._deadlines: list[tuple[float, str]] = []
        # (invocation id or None for a void call, encoded frame), oldest first
        self._held: deque[tuple[Optional[str], str]] = deque()

    @property
    def held_count(self) -> int:
        return len(self._held)

    def add(
        self,
        invocation_id: Optional[str],
        function_id: str,
        text: str,
        *,
        deadline: float,
        timeout: float,
        sent: bool,
    ) -> None:
        """Track a call: sent (``sent``) or held with its frame ``text``.

        A void call (no ``invocation_id``) expects no result: it is only held.
        """
        if invocation_id is not None:
            self.pending[invocation_id] = Pending(function_id, deadline, timeout, sent)
            heapq.heappush(self._deadlines, (deadline, invocation_id))
        if not sent:
            self._held.append((invocation_id, text))

    def release_held(self) -> list[str]:
        """The held frames to send now, oldest first; their calls count as sent.
        A held call cancelled meanwhile is dropped."""
        held, self._held = self._held, deque()
        texts = []
        for invocation_id, text in held:
            if invocation_id is None:
                texts.append(text)
            else:
                pending = self.pending.get(invocation_id)
                if pending is not None:
                    pending.sent = True
                    texts.append(text)
        return texts

    def cancel(self, invocation_id: str) -> bool:
        return self.pending.pop(invocation_id, None) is not None

    def answered(self, invocation_id: str) -> Optional[Pending]:
        """Take the sent call an answer is for, or ``None`` when there is none
        (late, unknown, or not ours: the engine drops these too)."""
        pending = self.pending.get(invocation_id)
        if pending is None or not pending.sent:
            return None
        del self.pending[invocation_id]
        return pending

    def fail(self, invocation_id: str, pending: Pending, code: str, message: str) -> None:
        self._events.append(
            ev.InvocationFailed(
                invocation_id=invocation_id,
                function_id=pending.function_id,
                error=f.ErrorBody(code=code, message=message),
            )
        )

    def fail_all(self, code: str, message: str, *, held_too: bool) -> None:
        """Fail every sent call (``held_too``: and every held one, forgetting them)."""
        failed = [
            (invocation_id, pending)
            for invocation_id, pending in self.pending.items()
            if held_too or pending.sent
        ]
        for invocation_id, pending in failed:
            del self.pending[invocation_id]
            self.fail(invocation_id, pending, code, message)
        if held_too:
            self._held.clear()
        if not self.pending:
            self._deadlines.clear()

    def next_deadline(self) -> Optional[float]:
        deadlines = self._deadlines
        while deadlines and deadlines[0][1] not in self.pending:
            heapq.heappop(deadlines)
        return deadlines[0][0] if deadlines else None

    def expire(self, now: float) -> None:
        """Time out every call whose deadline is ``now`` or earlier."""
        deadlines = self._deadlines
        while deadlines and deadlines[0][0] <= now:
            _, invocation_id = heapq.heappop(deadlines)
            pending = self.pending.get(invocation_id)
            if pending is not None and pending.deadline <= now:
                del self.pending[invocation_id]
                if not pending.sent:
                    # Free its place in the bounded queue of held calls.
                    self._held = deque(h for h in self._held if h[0] != invocation_id)
                self.fail(
                    invocation_id,
                    pending,
                    "TIMEOUT",
                    f"invocation timed out after {round(pending.timeout * 1000)}ms",
                )


class Inbound:
    """Invocations this worker must still answer, and the orphans of lost sockets."""

    __slots__ = ("_orphans", "_running")

    def __init__(self) -> None:
        self._running: set[str] = set()
        self._orphans: set[str] = set()

    def start(self, invocation_id: str) -> bool:
        """Record a new invocation; False when its id is already running."""
        if invocation_id in self._running or invocation_id in self._orphans:
            return False
        self._running.add(invocation_id)
        return True

    def finish(self, invocation_id: str) -> bool:
        """The app answers: True to send it, False for an orphan (drop it).

        Raises:
            LocalProtocolError: no such invocation awaits an answer.
        """
        if invocation_id in self._orphans:
            self._orphans.discard(invocation_id)
            return False
        try:
            self._running.remove(invocation_id)
        except KeyError:
            raise LocalProtocolError(
                f"invocation {invocation_id!r} is not awaiting a result"
            ) from None
        return True

    def orphan_all(self) -> None:
        """The socket is lost: the engine failed these with invocation_stopped."""
        if self._running:
            self._orphans.update(self._running)
            self._running.clear()
