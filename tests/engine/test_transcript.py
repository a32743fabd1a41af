"""The transcript is a bounded ring by default (``transcript_limit``)."""

from __future__ import annotations

import pytest

from iii.testing import DEFAULT_TRANSCRIPT_LIMIT, EngineThread

from .conftest import own_engine
from .wsclient import Peer, settle

pytestmark = pytest.mark.anyio


async def _pings(peer: Peer, n: int) -> None:
    """``n`` protocol pings, each answered: two transcript entries apiece."""
    for _ in range(n):
        await peer.send({"type": "ping"})
    for _ in range(n):
        assert (await peer.recv())["type"] == "pong"


async def test_the_transcript_keeps_the_last_entries():
    async with own_engine(namespace_grace=0.3, transcript_limit=50) as engine:
        peer = await Peer.join(engine.url, "chatty")
        await _pings(peer, 200)
        await settle(peer)
        entries = engine.transcript()
        assert len(entries) == 50
        stats = engine.stats()
        assert stats["transcript_entries"] == 50
        discarded = stats["transcript_discarded"]
        assert isinstance(discarded, int) and discarded >= 400 - 50
        # The newest entries survive: the settle ping's pong is the last one.
        assert entries[-1]["frame"] == {"type": "pong"}
        assert all(e["conn"] == peer.worker_id for e in entries)
        # Waiting for a frame still works on what the ring holds.
        frame = await engine.wait_for_frame("ping", direction="in", worker_id=peer.worker_id)
        assert frame == {"type": "ping"}


async def test_the_default_limit_bounds_a_long_run():
    async with own_engine(namespace_grace=0.3) as engine:
        assert engine.transcript_limit == DEFAULT_TRANSCRIPT_LIMIT == 10_000
        peer = await Peer.join(engine.url, "long-run")
        await _pings(peer, DEFAULT_TRANSCRIPT_LIMIT // 2 + 100)
        await settle(peer)
        stats = engine.stats()
        assert stats["transcript_entries"] == DEFAULT_TRANSCRIPT_LIMIT
        discarded = stats["transcript_discarded"]
        assert isinstance(discarded, int) and discarded > 200
        assert len(engine.transcript()) == DEFAULT_TRANSCRIPT_LIMIT


async def test_an_unbounded_transcript_on_request():
    async with own_engine(namespace_grace=0.3, transcript_limit=None) as engine:
        assert engine.transcript_limit is None
        peer = await Peer.join(engine.url, "kept")
        await _pings(peer, 300)
        await settle(peer)
        stats = engine.stats()
        assert stats["transcript_discarded"] == 0
        assert stats["transcript_entries"] == len(engine.transcript()) >= 600


def test_engine_thread_and_fixture_default_to_the_bounded_ring(iii_engine):
    assert iii_engine.transcript_limit == DEFAULT_TRANSCRIPT_LIMIT
    with EngineThread(transcript_limit=5) as small:
        assert small.transcript_limit == 5
