"""Fixtures for the reference-engine tests: a live engine on 127.0.0.1 per test."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from iii.testing import Engine, serve_engine

from .wsclient import OPEN_CLIENTS


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def engine(anyio_backend: str) -> AsyncIterator[Engine]:
    """A fresh engine on the test's own event loop (short grace period)."""
    async with serve_engine(namespace_grace=0.3) as eng:
        try:
            yield eng
        finally:
            await close_clients()


async def close_clients() -> None:
    while OPEN_CLIENTS:
        await OPEN_CLIENTS.pop().stream.aclose()


@asynccontextmanager
async def own_engine(**options: Any) -> AsyncIterator[Engine]:
    """``serve_engine`` with custom options; closes the test's clients at the end."""
    async with serve_engine(**options) as eng:
        try:
            yield eng
        finally:
            await close_clients()
