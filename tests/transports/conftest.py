"""Fixtures for the adapter conformance suite: one driver per adapter."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from iii_protocol import Config, ReconnectPolicy

from .drivers import ADAPTERS, DRIVERS, Driver

FAST_RECONNECT = ReconnectPolicy(initial_delay=0.05, max_delay=0.2, multiplier=2.0, jitter=0.2)


def make_config(url: str, **overrides: Any) -> Config:
    """A ``Config`` with fast reconnects; keyword arguments override fields."""
    # The announce tells the reference engine our namespace at once, so it
    # need not hold registrations for its grace period.
    options: dict[str, Any] = {
        "url": url,
        "reconnect": FAST_RECONNECT,
        "announce": {"name": "transport-suite"},
    }
    options.update(overrides)
    return Config(**options)


@pytest.fixture(params=ADAPTERS)
def driver(request: pytest.FixtureRequest) -> Iterator[Driver]:
    """A not yet started driver for each adapter; closed at teardown."""
    drv = DRIVERS[request.param]()
    try:
        yield drv
    finally:
        drv.close()
