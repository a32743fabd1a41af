"""Test controls of a running engine: fault injection.

``Faults`` is a part of the ``Engine`` handle: drop connections, delay or
withhold results, write arbitrary bytes, text, frames or pings to a worker.  It
works through the server's connection table and the current run's router
(``Router.result_hook``), never inside the listener code.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Optional, Union

import anyio

from iii_protocol import Frame, UnknownFrame, encode_frame
from iii_protocol._json import JSON, dumps

from ._core import EngineCore
from ._records import ErrorDict, Pending
from ._router import Router
from ._server import Server

__all__ = ["Faults", "ResultRule"]


class ResultRule:
    """Fault injection: delay or withhold the results of matching invocations.

    Created by ``Engine.delay_results`` / ``Engine.withhold_results``.
    """

    def __init__(
        self, function_id: Optional[str], delay: Optional[float], count: Optional[int]
    ) -> None:
        self.function_id = function_id
        self.delay = delay
        self.remaining = count
        self.active = True
        self.matched = 0
        self.held: list[tuple[Router, Pending, JSON, Optional[ErrorDict]]] = []

    def matches(self, function_id: str) -> bool:
        """Whether this rule takes the next result of ``function_id``."""
        return self.active and (self.function_id is None or self.function_id == function_id)

    def take(self) -> None:
        """Count one result taken; a rule with a ``count`` ends when it is used up."""
        self.matched += 1
        if self.remaining is not None:
            self.remaining -= 1
            if self.remaining <= 0:
                self.active = False

    def cancel(self) -> None:
        """Stop matching new results (held ones stay held until ``release``)."""
        self.active = False

    def release(self) -> int:
        """Deliver every withheld result now; returns how many were delivered."""
        held, self.held = self.held, []
        for router, pending, result, error in held:
            router.complete(pending, result, error)
        return len(held)


class Faults:
    """Fault injection (a part of ``Engine``)."""

    _server: Server
    _rules: list[ResultRule]

    def _install_rules(self, core: EngineCore) -> None:
        """Make ``core``'s router consult the rules (rules survive restarts).  Without
        rules the router has no hook at all: results pass with one test."""
        router = core.router
        if not self._rules:
            router.result_hook = None
            return

        def hook(pending: Pending, result: JSON, error: Optional[ErrorDict]) -> bool:
            for rule in self._rules:
                if not rule.matches(pending.function_id):
                    continue
                rule.take()
                if rule.delay is None:
                    rule.held.append((router, pending, result, error))
                else:
                    core.spawn(_delayed_complete, core, rule.delay, pending, result, error)
                return True
            return False

        router.result_hook = hook

    def drop(self, worker_id: str, *, code: Optional[int] = None) -> None:
        """Drop one worker's connection: abruptly (no Close frame) or, with
        ``code``, with a Close frame carrying that code."""
        server = self._server
        conn = server.worker_conn(worker_id)
        worker = server.worker(worker_id)
        core = server.core
        if code is None:
            if worker is not None and core is not None:
                core.evict(worker)
            conn.abort()
        elif worker is not None and core is not None:
            core.close_worker(worker, code)
        else:
            conn.close(code)

    def drop_all(self, *, code: Optional[int] = None) -> int:
        """Drop every worker connection; returns how many."""
        ids = list(self._server.workers_by_conn)
        for worker_id in ids:
            self.drop(worker_id, code=code)
        return len(ids)

    def delay_results(
        self, seconds: float, function_id: Optional[str] = None, *, count: Optional[int] = None
    ) -> ResultRule:
        """Forward results of ``function_id`` (any, when None) ``seconds`` late.

        ``count`` limits how many results the rule applies to."""
        rule = ResultRule(function_id, seconds, count)
        self._add_rule(rule)
        return rule

    def withhold_results(
        self, function_id: Optional[str] = None, *, count: Optional[int] = None
    ) -> ResultRule:
        """Keep results of ``function_id`` from their callers until ``rule.release()``."""
        rule = ResultRule(function_id, None, count)
        self._add_rule(rule)
        return rule

    def _add_rule(self, rule: ResultRule) -> None:
        self._rules.append(rule)
        if self._server.core is not None:
            self._install_rules(self._server.core)

    def clear_faults(self) -> None:
        """Remove every result rule (withheld results stay undelivered)."""
        for rule in self._rules:
            rule.cancel()
        self._rules.clear()
        if self._server.core is not None:
            self._install_rules(self._server.core)

    def send_raw(self, worker_id: str, data: bytes) -> None:
        """Write ``data`` to the worker's TCP stream as is (no WebSocket framing)."""
        self._server.worker_conn(worker_id).send_raw(bytes(data))

    def send_text(self, worker_id: str, text: str) -> None:
        """Send one WebSocket text message with arbitrary content."""
        self._server.worker_conn(worker_id).send_message("text", text)

    def send_binary(self, worker_id: str, data: bytes) -> None:
        self._server.worker_conn(worker_id).send_message("binary", bytes(data))

    def send_frame(
        self, worker_id: str, frame: Union[Frame, UnknownFrame, Mapping[str, JSON]]
    ) -> None:
        """Send a protocol frame (an ``iii_protocol`` frame or a JSON object)."""
        text = dumps(dict(frame)) if isinstance(frame, Mapping) else encode_frame(frame)
        self._server.worker_conn(worker_id).send(text.encode(), False)

    def send_ping(self, worker_id: str, payload: bytes = b"") -> None:
        """Send a WebSocket Ping control frame."""
        self._server.worker_conn(worker_id).send_ping(payload)


async def _delayed_complete(
    core: EngineCore, delay: float, pending: Pending, result: JSON, error: Optional[ErrorDict]
) -> None:
    await anyio.sleep(delay)
    core.router.complete(pending, result, error)
    await core.relieve()
