"""The thread adapter's sends: a send that makes no progress is cut after
``idle_timeout`` even while the engine keeps writing (so the keep-alive,
which counts bytes received, never fires)."""

from __future__ import annotations

import time

from wsproto import events as wse

from iii_protocol import events as ev

from . import fake_engine as fe
from .conftest import make_config
from .drivers import ThreadDriver
from .test_conformance import Writer


def stop_reading_keep_talking(peer: fe.Peer) -> None:
    """Handshake, greet, then read nothing and send a ping every 50 ms."""
    peer.register()
    while not peer.server.stopping.is_set():
        peer.send(peer.ws.send(wse.Ping(b"alive")))
        peer.pings += 1
        time.sleep(0.05)


def test_a_send_stuck_on_an_engine_that_only_writes_is_cut() -> None:
    driver = ThreadDriver()
    with fe.FakeEngine([stop_reading_keep_talking, fe.engine], rcvbuf=64 * 1024) as fake:
        try:
            driver.start(make_config(fake.url(), ping_interval=0.2, idle_timeout=1.0))
            driver.wait_connected()
            writer = Writer(driver, 24)
            writer.start()
            assert writer.wait_stuck(quiet=0.3) < 16
            pings = fake.peers[0].pings
            # Bytes keep arriving, so only the stalled send can end this socket.
            driver.wait_connected(count=2, timeout=30.0)
            assert fake.peers[0].pings > pings
            reasons = [e.reason for e in driver.events_of(ev.StateChanged) if e.reason]
            assert reasons and not any("no data from the engine" in r for r in reasons), reasons
            writer.join(30.0)
            assert not writer.is_alive() and writer.error is None
            outcomes = [driver.outcome(i, timeout=30.0) for i in writer.ids]
            lost = [o for o in outcomes if isinstance(o, ev.InvocationFailed)]
            assert lost and all(o.error.code == "CONNECTION_LOST" for o in lost)
        finally:
            driver.close()
