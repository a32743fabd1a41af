"""Every example runs, against the reference engine, and prints what it promises."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

EXPECTED = {
    "script_worker": ["example::add -> {'c': 5}", "bad input -> INVALID_ARGUMENTS"],
    "asyncio_worker": ["hello, ada", "hello, grace", "hello, barbara"],
    "bound_worker": ["example::add_up is accepted", "total: 10"],
    "trio_worker": ["squares: [0, 1, 4, 9, 16]"],
    "selectors_worker": ["example::upper -> SHOUT"],
}


def run_example(name: str, url: str | None = None) -> str:
    env = {**os.environ}
    if url is not None:
        env["III_URL"] = url
    result = subprocess.run(
        [sys.executable, "-m", f"examples.{name}"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_example(iii_engine, name):
    out = run_example(name, iii_engine.url)
    for line in EXPECTED[name]:
        assert line in out


def test_demo():
    out = run_example("demo")
    assert "shop::place -> {'item': 'tea', 'total': 6}" in out
    assert "missing quantity -> INVALID_ARGUMENTS" in out
    assert "unknown function -> function_not_found" in out
    assert "enqueued -> EnqueueResult(message_receipt_id=" in out
    assert "trigger fired -> True" in out
    assert "functions of shop: shop::on_tick, shop::place" in out
    # the HTTP route, served to real HTTP requests, counting in state
    assert "POST /orders tea -> 201 {'item': 'tea', 'orders': 1}" in out
    assert "POST /orders tea -> 201 {'item': 'tea', 'orders': 2}" in out
    assert "POST /orders cake -> 201 {'item': 'cake', 'orders': 1}" in out
    assert "state::get orders/tea -> {'count': 2}" in out
    assert out.rstrip().endswith("done")
