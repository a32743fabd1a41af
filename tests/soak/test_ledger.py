"""The soak's checker: each way a call can go wrong is reported, and a clean run is not."""

from __future__ import annotations

from typing import Any, Optional

import pytest

from soak.faults import KINDS, schedule
from soak.ledger import ERROR, RAISED, RETURNED, UNTYPED, VALUE, Ledger, expected_value


def _call(
    ledger: Ledger,
    fn: str = "echo",
    action: str = "request",
    *,
    runs: tuple[str, ...] = (),
    outcome: Optional[tuple[str, Optional[str], Any]] = None,
) -> str:
    call = ledger.begin("caller.t0", "trigger", "soak-trio", fn, action)
    for state in runs:
        ledger.run_ended(ledger.run_started(call.id, "soak-trio", fn), state)
    if outcome is not None:
        kind, code, detail = outcome
        if detail == "expected":
            detail = expected_value(call)
        ledger.end(call, kind, code, detail)
    return call.id


def _clean(ledger: Ledger) -> None:
    """One of every consistent case."""
    _call(ledger, runs=(RETURNED,), outcome=(VALUE, None, "expected"))
    _call(ledger, "fail", runs=(RAISED,), outcome=(ERROR, "invocation_failed", "boom"))
    _call(ledger, runs=(), outcome=(ERROR, "function_not_found", "gone"))
    _call(ledger, runs=(RETURNED,), outcome=(ERROR, "CONNECTION_LOST", "dropped"))
    _call(ledger, "slow", runs=(RETURNED,), outcome=(ERROR, "invocation_stopped", "x"))
    _call(ledger, runs=(), outcome=(ERROR, "TIMEOUT", "late"))
    _call(ledger, runs=(), outcome=(ERROR, "SHUTDOWN", "bye"))
    _call(ledger, "sink", "void", runs=(RETURNED,), outcome=(VALUE, None, None))
    _call(ledger, "sink", "void", runs=(), outcome=(VALUE, None, None))
    receipt = {"messageReceiptId": "6f1c"}
    _call(ledger, "sink", "enqueue", runs=(RAISED, RETURNED), outcome=(VALUE, None, receipt))


def test_a_consistent_ledger_has_no_violation() -> None:
    ledger = Ledger()
    _clean(ledger)
    assert ledger.check() == []
    summary = ledger.summary()
    assert summary["calls"] == 10
    assert summary["outcomes"]["value"] == 4
    assert summary["enqueue_ran_more_than_once"] == 1
    assert summary["request_handler_returned_caller_got"] == {
        "value": 1,
        "CONNECTION_LOST": 1,
        "invocation_stopped": 1,
    }
    assert ledger.in_flight == 0


BROKEN: dict[str, dict[str, Any]] = {
    "no outcome": dict(runs=(RETURNED,), outcome=None),
    "2 outcomes": dict(runs=(RETURNED,), outcome=(VALUE, None, "expected"), again=True),
    "ran 2 times": dict(runs=(RETURNED, RETURNED), outcome=(VALUE, None, "expected")),
    "wrong value": dict(runs=(RETURNED,), outcome=(VALUE, None, {"id": "someone else's"})),
    "no run of the handler": dict(runs=(), outcome=(VALUE, None, "expected")),
    "non-IIIInvocationError": dict(runs=(), outcome=(UNTYPED, None, "AttributeError()")),
    "unexpected error code": dict(runs=(), outcome=(ERROR, "internal_oops", "?")),
    "yet the handler ran": dict(runs=(RETURNED,), outcome=(ERROR, "function_not_found", "")),
    "from a handler that returns": dict(runs=(RETURNED,), outcome=(ERROR, "invocation_failed", "")),
    "without the handler raising": dict(
        fn="fail", runs=(RETURNED,), outcome=(ERROR, "invocation_failed", "")
    ),
    "a void call returned": dict(fn="sink", action="void", outcome=(VALUE, None, {"x": 1})),
    "not a receipt": dict(fn="sink", action="enqueue", outcome=(VALUE, None, {"x": 1})),
}


@pytest.mark.parametrize("problem", sorted(BROKEN))
def test_each_violation_is_reported(problem: str) -> None:
    ledger = Ledger()
    _clean(ledger)
    case = dict(BROKEN[problem])
    again = case.pop("again", False)
    id = _call(ledger, **case)
    if again:
        ledger.end(ledger.calls[id], ERROR, "TIMEOUT", "and then a timeout too")
    found = ledger.check()
    assert len(found) == 1, found
    assert found[0].startswith(id) and problem in found[0]


def test_a_handler_run_for_an_unknown_call_is_reported() -> None:
    ledger = Ledger()
    _clean(ledger)
    ledger.run_started("nobody#1", "soak-thread", "echo")
    assert ledger.check() == ["nobody#1: a handler ran for a call nobody made"]


def test_the_fault_schedule_is_the_seed_s_and_uses_every_kind() -> None:
    workers = ["a", "b"]
    first = schedule(7, 64, 250, workers)
    assert first == schedule(7, 64, 250, workers)
    assert first != schedule(8, 64, 250, workers)
    assert len(first) == 64
    assert {f.kind for f in first} == set(KINDS)
    assert [f.at for f in first] == sorted(f.at for f in first)
    assert all(5 <= f.at <= 240 for f in first)
    assert all((f.target in workers) == f.kind.startswith(("drop-1", "abort")) for f in first)
    assert all((f.down > 0) == (f.kind in ("outage", "kill-9")) for f in first)
