"""The clocks of a connection, apart from call deadlines (see ``_calls``).

Theory of operation
-------------------
Per socket: a deadline to be greeted by (opening, upgrade and
``workerregistered`` within ``connect_timeout``) and, once the WebSocket is
open, the keep-alive: a ping every ``ping_interval`` and a deadline of
``idle_timeout`` after the last byte received.  Per session: when the next
reconnect attempt is due.  Nothing here reads a clock: every time is passed
in, and ``Connection`` decides what each expired deadline means.
"""

from __future__ import annotations

from typing import Optional

from .config import Config

__all__ = ["Timers"]


class Timers:
    """Deadlines of the connection. See the module docstring."""

    __slots__ = (
        "_connect_timeout",
        "_idle_timeout",
        "_ping_interval",
        "backoff",
        "connect",
        "last_received",
        "next_ping",
    )

    def __init__(self, config: Config) -> None:
        self._connect_timeout = config.connect_timeout
        self._ping_interval = config.ping_interval
        self._idle_timeout = config.idle_timeout
        #: when the socket must have been greeted by
        self.connect: Optional[float] = None
        #: when the next reconnect attempt is due
        self.backoff: Optional[float] = None
        #: when the last byte arrived on this socket
        self.last_received = 0.0
        #: the next keep-alive ping; set while the WebSocket is open
        self.next_ping: Optional[float] = None

    def socket_opening(self, now: float) -> None:
        self.connect = now + self._connect_timeout
        self.next_ping = None

    def socket_open(self, now: float) -> None:
        """The WebSocket is open: start the keep-alive."""
        self.next_ping = now + self._ping_interval

    def socket_dropped(self) -> None:
        self.connect = None
        self.next_ping = None

    def idle_deadline(self) -> Optional[float]:
        next_ping = self.next_ping
        return None if next_ping is None else self.last_received + self._idle_timeout

    def next_deadline(self, calls: Optional[float]) -> Optional[float]:
        """The earliest of these deadlines and ``calls`` (the next call deadline)."""
        candidates = [
            t
            for t in (calls, self.backoff, self.connect, self.next_ping, self.idle_deadline())
            if t is not None
        ]
        return min(candidates) if candidates else None

    def backoff_due(self, now: float) -> bool:
        """Whether the reconnect is due (it is then disarmed)."""
        if self.backoff is not None and now >= self.backoff:
            self.backoff = None
            return True
        return False

    def connect_due(self, now: float) -> bool:
        return self.connect is not None and now >= self.connect

    def idle_due(self, now: float) -> bool:
        return self.next_ping is not None and now - self.last_received >= self._idle_timeout

    def ping_due(self, now: float) -> bool:
        """Whether a keep-alive ping is due (the next one is then scheduled)."""
        if self.next_ping is not None and now >= self.next_ping:
            self.next_ping = now + self._ping_interval
            return True
        return False
