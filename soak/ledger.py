"""The soak's accounting: every call started, every outcome, every handler run.

A call is recorded by its caller before ``trigger`` is entered and its outcome
when ``trigger`` returns or raises.  Handlers record each run under the call's
id (it travels in the payload), so the check can match a caller's outcome with
what the handler did.  ``check()`` turns the records into violations of the
soak's properties (see ``soak/README.md``).
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import Counter
from typing import Any, Optional

#: error codes a call may end with under the soak's faults, each a typed outcome
EXPECTED_CODES = frozenset(
    {
        "invocation_failed",  # the *fail handlers
        "invocation_stopped",  # the handler's connection went away, or its worker shut down
        "function_not_found",  # the target worker was not (yet) registered
        "CONNECTION_LOST",  # the caller's socket dropped with the call in flight
        "TIMEOUT",
        "SHUTDOWN",  # the caller shut down with the call pending
        "QUEUE_FULL",  # disconnected with 1 000 calls already held
        "enqueue_error",
    }
)

#: outcome kinds
VALUE, ERROR, UNTYPED = "value", "error", "untyped"

#: handler run states
RUNNING, RETURNED, RAISED = "running", "returned", "raised"


class Call:
    """One call: who called what, how, and its outcome(s)."""

    __slots__ = ("action", "caller", "fn", "id", "outcomes", "started", "target", "via")

    def __init__(self, id: str, caller: str, via: str, target: str, fn: str, action: str) -> None:
        self.id = id
        self.caller = caller
        #: the API used: trigger (blocking, from a thread) or trigger_async
        self.via = via
        self.target = target
        self.fn = fn
        #: request, void or enqueue
        self.action = action
        self.started = time.monotonic()
        #: (kind, code or None, detail, time)
        self.outcomes: list[tuple[str, Optional[str], Any, float]] = []


class Run:
    """One handler run of a call."""

    __slots__ = ("ended", "fn", "id", "started", "state", "worker")

    def __init__(self, id: str, worker: str, fn: str) -> None:
        self.id = id
        self.worker = worker
        self.fn = fn
        self.state = RUNNING
        self.started = time.monotonic()
        self.ended = 0.0


class Ledger:
    """Thread-safe records of calls and handler runs."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.calls: dict[str, Call] = {}
        self.runs: dict[str, list[Run]] = {}
        self._seq = itertools.count(1)
        self.in_flight = 0
        self.max_in_flight = 0

    # -- callers -----------------------------------------------------------------------

    def begin(self, caller: str, via: str, target: str, fn: str, action: str) -> Call:
        call = Call(f"{caller}#{next(self._seq)}", caller, via, target, fn, action)
        with self._lock:
            self.calls[call.id] = call
            self.in_flight += 1
            if self.in_flight > self.max_in_flight:
                self.max_in_flight = self.in_flight
        return call

    def end(self, call: Call, kind: str, code: Optional[str] = None, detail: Any = None) -> None:
        with self._lock:
            if not call.outcomes:
                self.in_flight -= 1
            call.outcomes.append((kind, code, detail, time.monotonic()))

    # -- handlers ----------------------------------------------------------------------

    def run_started(self, id: str, worker: str, fn: str) -> Run:
        run = Run(id, worker, fn)
        with self._lock:
            self.runs.setdefault(id, []).append(run)
        return run

    def run_ended(self, run: Run, state: str) -> None:
        run.ended = time.monotonic()
        run.state = state

    # -- the check ---------------------------------------------------------------------

    def waiting(self) -> list[Call]:
        """Calls without an outcome (yet)."""
        with self._lock:
            return [c for c in self.calls.values() if not c.outcomes]

    def check(self) -> list[str]:
        """Every violation of the soak's properties, one line each."""
        problems: list[str] = []
        with self._lock:
            calls = list(self.calls.values())
            runs = {k: list(v) for k, v in self.runs.items()}
        for call in calls:
            problems.extend(_check_call(call, runs.get(call.id, [])))
        for id in runs.keys() - {c.id for c in calls}:
            problems.append(f"{id}: a handler ran for a call nobody made")
        return problems

    def summary(self) -> dict[str, Any]:
        with self._lock:
            calls = list(self.calls.values())
            runs = {k: list(v) for k, v in self.runs.items()}
        by_action: Counter[str] = Counter(c.action for c in calls)
        by_via: Counter[str] = Counter(c.via for c in calls)
        outcomes: Counter[str] = Counter()
        outcomes_by_action: dict[str, Counter[str]] = {}
        for c in calls:
            label = _label(c)
            outcomes[label] += 1
            outcomes_by_action.setdefault(c.action, Counter())[label] += 1
        enqueued = [c for c in calls if c.action == "enqueue" and _label(c) == "value"]
        enqueue_runs = [len(runs.get(c.id, [])) for c in enqueued]
        void_sent = [c for c in calls if c.action == "void" and _label(c) == "value"]
        # What callers got when the handler did return a value (lost in transit or not).
        answered: Counter[str] = Counter(
            _label(c)
            for c in calls
            if c.action == "request" and any(r.state == RETURNED for r in runs.get(c.id, []))
        )
        still_running = sum(1 for rs in runs.values() for r in rs if r.state == RUNNING)
        return {
            "calls": len(calls),
            "by_action": dict(by_action),
            "by_api": dict(by_via),
            "outcomes": dict(outcomes.most_common()),
            "outcomes_by_action": {k: dict(v.most_common()) for k, v in outcomes_by_action.items()},
            "max_in_flight": self.max_in_flight,
            "handler_runs": sum(len(rs) for rs in runs.values()),
            "handler_runs_still_running": still_running,
            "request_handler_returned_caller_got": dict(answered.most_common()),
            "void_accepted": len(void_sent),
            "void_ran": sum(1 for c in void_sent if runs.get(c.id)),
            "enqueue_receipts": len(enqueued),
            "enqueue_ran": sum(1 for n in enqueue_runs if n),
            "enqueue_ran_more_than_once": sum(1 for n in enqueue_runs if n > 1),
            "timeouts_after_handler_answered": sum(
                1
                for c in calls
                if _label(c) == "TIMEOUT" and any(r.state != RUNNING for r in runs.get(c.id, []))
            ),
        }


def _label(call: Call) -> str:
    if not call.outcomes:
        return "(no outcome)"
    kind, code, _, _ = call.outcomes[0]
    return code if kind == ERROR and code else kind


def expected_value(call: Call) -> dict[str, str]:
    """What a request handler returns for ``call``."""
    return {"id": call.id, "by": call.target, "fn": call.fn}


def _check_call(call: Call, runs: list[Run]) -> list[str]:
    out: list[str] = []
    where = f"{call.id} ({call.action} {call.target}::{call.fn} via {call.via})"
    if not call.outcomes:
        return [f"{where}: no outcome (lost, or still waiting)"]
    if len(call.outcomes) > 1:
        out.append(f"{where}: {len(call.outcomes)} outcomes {call.outcomes!r}")
    kind, code, detail, _ = call.outcomes[0]
    if call.action != "enqueue" and len(runs) > 1:
        out.append(f"{where}: the handler ran {len(runs)} times")
    if kind == UNTYPED:
        return [*out, f"{where}: ended with a non-IIIInvocationError: {detail}"]
    if kind == ERROR:
        if code not in EXPECTED_CODES:
            out.append(f"{where}: unexpected error code {code!r}: {detail}")
        if code == "function_not_found" and runs:
            out.append(f"{where}: function_not_found, yet the handler ran")
        if code == "invocation_failed" and call.action == "request":
            failing = call.fn.endswith("fail")
            raised = any(r.state == RAISED for r in runs)
            if failing and not raised:
                out.append(f"{where}: invocation_failed without the handler raising: {detail}")
            if not failing:
                out.append(f"{where}: invocation_failed from a handler that returns: {detail}")
        return out
    # a value
    if call.action == "request":
        if detail != expected_value(call):
            out.append(f"{where}: wrong value {detail!r}")
        if not any(r.state == RETURNED for r in runs):
            out.append(f"{where}: a value, but no run of the handler returned one")
    elif call.action == "void":
        if detail is not None:
            out.append(f"{where}: a void call returned {detail!r}")
    elif not (isinstance(detail, dict) and isinstance(detail.get("messageReceiptId"), str)):
        out.append(f"{where}: an enqueue returned {detail!r}, not a receipt")
    return out
