"""The adapter conformance suite: every scenario runs on every adapter.

``driver`` is parametrised over asyncio, trio (both ``AnyioTransport``),
trio-native (``TrioTransport``) and thread (``ThreadTransport``); each drives a
raw ``iii_protocol.Connection``.  The engine is the reference engine
(``iii_engine``) or, for faults it cannot produce, ``FakeEngine``.
"""

from __future__ import annotations

import os
import ssl
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import trustme

from iii.testing import EngineThread
from iii_protocol import ConnectionState, PayloadTooLarge, ReconnectPolicy
from iii_protocol import events as ev

from . import fake_engine as fe
from .conftest import make_config
from .drivers import Driver

MiB = 1024 * 1024
CONNECTING, RECONNECTING = ConnectionState.CONNECTING, ConnectionState.RECONNECTING


def echo(data: Any) -> Any:
    return data


def succeeded(outcome: ev.Event) -> Any:
    assert isinstance(outcome, ev.InvocationSucceeded), outcome
    return outcome.result


def attempts(driver: Driver) -> int:
    """Sockets the core asked for (each entry into CONNECTING)."""
    return sum(1 for e in driver.events_of(ev.StateChanged) if e.new is CONNECTING)


def serve_echo(driver: Driver, engine: EngineThread) -> ev.Connected:
    connected = driver.wait_connected()
    driver.register("echo", echo)
    engine.wait_for_function("echo")
    return connected


# -- connect ----------------------------------------------------------------------------


def test_connect_sends_handshake_headers(driver: Driver) -> None:
    with fe.FakeEngine([fe.engine]) as fake:
        driver.start(
            make_config(
                fake.url(),
                headers=(("Authorization", "Bearer s3cret"), ("X-Iii-Test", "yes")),
            )
        )
        connected = driver.wait_connected()
        assert connected.worker_id == "fake-0"
        assert driver.state is ConnectionState.CONNECTED
        peer = fake.peers[0]
        assert peer.request is not None
        assert peer.request.target == "/"
        assert peer.request.host == f"127.0.0.1:{fake.port}"
        assert peer.headers["authorization"] == "Bearer s3cret"
        assert peer.headers["x-iii-test"] == "yes"
        assert succeeded(driver.call("anything", {"n": 1})) == {"n": 1}
        driver.close()
        driver.wait_until(lambda: peer.ended_at is not None, 30.0)
        assert peer.close_code == 1000
        assert driver.finished


def test_connect_to_reference_engine(driver: Driver, iii_engine: EngineThread) -> None:
    name = f"adapter-{driver.name}"
    driver.start(make_config(iii_engine.url, announce={"name": name}))
    connected = serve_echo(driver, iii_engine)
    assert iii_engine.wait_for_worker(name)["worker_id"] == connected.worker_id
    assert succeeded(driver.call("echo", {"hello": "world"})) == {"hello": "world"}
    driver.close()
    assert driver.finished
    iii_engine.wait_for(lambda: not iii_engine.engine.core.workers)


def test_start_then_close_at_once(driver: Driver, iii_engine: EngineThread) -> None:
    driver.start(make_config(iii_engine.url))
    driver.close()
    assert driver.finished


# -- large messages ---------------------------------------------------------------------


def test_64_mib_each_way_and_over_the_limit(driver: Driver, iii_engine: EngineThread) -> None:
    driver.start(make_config(iii_engine.url, invocation_timeout=60.0))
    serve_echo(driver, iii_engine)
    # ~64 MiB up (the call), down (the engine invokes our echo), up (our
    # result) and down (the result of the call).
    blob = "x" * (64 * MiB - 4096)
    result = succeeded(driver.call("echo", {"blob": blob}, wait=60.0))
    assert isinstance(result, dict) and result["blob"] == blob
    del result
    with pytest.raises(PayloadTooLarge):
        driver.invoke("echo", {"blob": blob + "y" * 8192})
    assert driver.on_owner(lambda c: (c.pending_count, c.held_count)) == (0, 0)
    assert driver.state is ConnectionState.CONNECTED
    assert succeeded(driver.call("echo", {"after": 1})) == {"after": 1}


# -- engine faults ------------------------------------------------------------------------


@pytest.mark.parametrize("code", [1000, 1001, 1011, None], ids=["1000", "1001", "1011", "eof"])
def test_drop_with_calls_in_flight(
    driver: Driver, iii_engine: EngineThread, code: int | None
) -> None:
    driver.start(make_config(iii_engine.url, invocation_timeout=600.0))
    first = serve_echo(driver, iii_engine)
    iii_engine.withhold_results("echo", count=3)
    ids = [driver.invoke("echo", {"i": i}) for i in range(3)]
    # Our echo answered all three; the engine holds the answers back.
    iii_engine.wait_for_frame("invocationresult", direction="in", count=3)
    assert iii_engine.drop_all(code=code) == 1
    for invocation_id in ids:
        # Failed by the drop: the call timeout (10 min) is far beyond this wait.
        outcome = driver.outcome(invocation_id, timeout=60.0)
        assert isinstance(outcome, ev.InvocationFailed), outcome
        assert outcome.error.code == "CONNECTION_LOST"

    second = driver.wait_connected(count=2)
    assert second.worker_id != first.worker_id
    iii_engine.wait_for_frame(
        "reattach",
        worker_id=second.worker_id,
        direction="in",
        where=lambda f: f.get("previous_worker_id") == first.worker_id,
    )
    iii_engine.wait_for_frame(
        "registerfunction",
        worker_id=second.worker_id,
        direction="in",
        where=lambda f: f.get("id") == "echo",
    )
    assert succeeded(driver.call("echo", {"after": code})) == {"after": code}
    for invocation_id in ids:
        assert len(driver.outcomes_for(invocation_id)) == 1


def test_bytes_queued_for_a_dropped_socket_stay_off_the_next(
    driver: Driver, iii_engine: EngineThread
) -> None:
    driver.start(make_config(iii_engine.url))
    serve_echo(driver, iii_engine)
    # A command whose bytes are not flushed yet when the socket goes away
    # (the API layer flushes from a task it schedules).
    now = driver.now()
    invocation_id = driver.on_owner(lambda c: c.invoke("echo", "late", now=now, timeout=60.0))
    assert invocation_id is not None
    assert iii_engine.drop_all() == 1
    driver.wait_connected(count=2)
    assert attempts(driver) == 2  # the first reconnect's upgrade was clean
    outcome = driver.outcome(invocation_id)
    assert isinstance(outcome, ev.InvocationFailed) and outcome.error.code == "CONNECTION_LOST"


def test_engine_restart_reconnects_and_replays(driver: Driver, iii_engine: EngineThread) -> None:
    driver.start(make_config(iii_engine.url))
    serve_echo(driver, iii_engine)
    iii_engine.stop_engine()
    driver.wait_event(ev.StateChanged, lambda e: e.new is RECONNECTING)
    # The port is closed: refused attempts keep coming (1 initial + 2 retries).
    driver.wait_until(lambda: attempts(driver) >= 3, 30.0)
    assert not driver.finished
    iii_engine.start_engine()  # same port, fresh state
    driver.wait_connected(count=2)
    iii_engine.wait_for_function("echo")  # only the replay can have put it there
    assert succeeded(driver.call("echo", "again")) == "again"


# -- handshake faults ----------------------------------------------------------------------

BAD_HANDSHAKES = {
    "eof-at-accept": fe.eof_at_accept,
    "eof-after-request": fe.eof_after_request,
    "http-500": fe.http_500,
    "http-500-left-open": fe.http_500_keep_open,
    "upgrade-never-answered": fe.never_answer,
}


#: The server leaves closing these sockets to the client.
LEFT_OPEN = ("http-500-left-open", "upgrade-never-answered")


@pytest.fixture(params=[*BAD_HANDSHAKES, "nothing-listening"])
def bad_engine(request: pytest.FixtureRequest) -> Iterator[tuple[str, fe.FakeEngine | None]]:
    fault: str = request.param
    if fault == "nothing-listening":
        yield fault, None
        return
    with fe.FakeEngine([BAD_HANDSHAKES[fault]]) as fake:
        yield fault, fake


def _bad_url(fake: fe.FakeEngine | None) -> str:
    return fake.url() if fake is not None else f"ws://127.0.0.1:{fe.dead_port()}"


def test_bad_handshake_keeps_retrying(
    driver: Driver, bad_engine: tuple[str, fe.FakeEngine | None]
) -> None:
    fault, fake = bad_engine
    policy = ReconnectPolicy(initial_delay=0.02, max_delay=0.05)
    driver.start(make_config(_bad_url(fake), connect_timeout=0.2, reconnect=policy))
    driver.wait_until(lambda: attempts(driver) >= 4, 30.0)
    assert not driver.events_of(ev.Connected)
    assert driver.state in (CONNECTING, RECONNECTING)
    assert not driver.finished
    if fake is not None:
        # (The fake's accept loop may lag behind the kernel on a loaded machine.)
        driver.wait_until(lambda: fake.accepted >= 3, 30.0)
    if fake is not None and fault in LEFT_OPEN:
        # The client closed every socket it gave up on.
        driver.wait_until(lambda: all(p.ended_at is not None for p in fake.peers[:3]), 30.0)


def test_bad_handshake_fails_after_max_retries(
    driver: Driver, bad_engine: tuple[str, fe.FakeEngine | None]
) -> None:
    _, fake = bad_engine
    policy = ReconnectPolicy(initial_delay=0.02, max_delay=0.02, jitter=0.0, max_retries=3)
    driver.start(make_config(_bad_url(fake), connect_timeout=0.2, reconnect=policy))
    failed = driver.wait_event(ev.ConnectionFailedEvent, timeout=30.0)
    assert failed.code == "RETRIES_EXHAUSTED"
    assert driver.state is ConnectionState.FAILED
    driver.wait_until(lambda: driver.finished, 30.0)
    assert attempts(driver) == 4  # the first try and three retries
    assert not driver.events_of(ev.Connected)
    if fake is not None:
        # Nothing after FAILED: connect once more ourselves; the listener
        # accepts in arrival order, so once ours is accepted every socket the
        # client opened has been counted.
        with fe.connect_to(fake) as sentinel:
            driver.wait_until(lambda: sentinel in fake.addresses, 30.0)
        assert fake.addresses.index(sentinel) == 4
        assert fake.accepted == 5


def test_connect_timeout_bounds_an_unanswered_upgrade(driver: Driver) -> None:
    with fe.FakeEngine([fe.never_answer]) as fake:
        started = time.monotonic()
        driver.start(make_config(fake.url(), connect_timeout=0.3))
        driver.wait_until(lambda: fake.accepted >= 3, 30.0)
        # Each retry came from the connect timer ...
        lost = [e for e in driver.events_of(ev.StateChanged) if e.new is RECONNECTING]
        assert len(lost) >= 2
        assert all(e.reason == "timed out opening the connection" for e in lost), lost
        # ... after waiting it out: the third socket needed two full timeouts
        # (retries that did not wait would come ~0.05 s apart).  A lower bound
        # from before the start: a loaded machine only makes it longer.
        assert time.monotonic() - started >= 0.5
        # The timed-out socket was closed by the client.
        driver.wait_until(lambda: fake.peers[0].ended_at is not None, 30.0)


def test_half_open_socket_detected_by_keepalive(driver: Driver) -> None:
    with fe.FakeEngine([fe.go_silent, fe.engine]) as fake:
        driver.start(make_config(fake.url(), ping_interval=0.1, idle_timeout=0.5))
        driver.wait_connected()
        invocation_id = driver.invoke("anything", {}, timeout=600.0)
        outcome = driver.outcome(invocation_id, timeout=60.0)
        # Lost to the keep-alive, not to the call's (10 min) timeout.
        assert isinstance(outcome, ev.InvocationFailed), outcome
        assert outcome.error.code == "CONNECTION_LOST"
        assert "no data from the engine" in outcome.error.message  # the keep-alive
        assert fake.peers[0].pings >= 2  # it did ping before giving up
        driver.wait_until(lambda: fake.peers[0].ended_at is not None, 30.0)
        driver.wait_connected(count=2)
        # The answering engine is served again.  (Its pongs come from a thread a
        # loaded machine may starve past the 0.5 s idle timeout: such a drop is
        # the keep-alive working, and the call is made again.)
        for _ in range(20):
            outcome = driver.call("anything", "ok")
            if not isinstance(outcome, ev.InvocationFailed):
                break
            assert outcome.error.code == "CONNECTION_LOST", outcome
            assert "no data from the engine" in outcome.error.message
        assert succeeded(outcome) == "ok"


# -- TLS --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def tls_engine(ca: trustme.CA) -> Iterator[fe.FakeEngine]:
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost", "127.0.0.1").configure_cert(server)
    with fe.FakeEngine([fe.engine], ssl_context=server) as fake:
        yield fake


def test_tls_with_the_test_ca(driver: Driver, ca: trustme.CA, tls_engine: fe.FakeEngine) -> None:
    client = ssl.create_default_context()
    ca.configure_trust(client)
    driver.start(make_config(tls_engine.url()), ssl_context=client)
    driver.wait_connected()
    blob = "t" * (2 * MiB)
    assert succeeded(driver.call("anything", {"blob": blob})) == {"blob": blob}
    peer = tls_engine.peers[0]
    assert isinstance(peer.sock, ssl.SSLSocket)
    driver.close()
    driver.wait_until(lambda: peer.ended_at is not None, 30.0)
    assert peer.close_code == 1000


def test_tls_concurrent_traffic(driver: Driver, ca: trustme.CA, tls_engine: fe.FakeEngine) -> None:
    """Writers and the reader on one TLS connection at once (OpenSSL forbids
    using one SSL object from two threads concurrently)."""
    client = ssl.create_default_context()
    ca.configure_trust(client)
    driver.start(make_config(tls_engine.url(), ping_interval=0.05), ssl_context=client)
    driver.wait_connected()
    outcomes: list[ev.Event] = []

    def work(n: int) -> None:
        ids = [driver.invoke("anything", {"n": n, "blob": "c" * 65536}) for _ in range(25)]
        outcomes.extend(driver.outcome(i, timeout=60.0) for i in ids)

    threads = [threading.Thread(target=work, args=(n,), daemon=True) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120.0)
    assert len(outcomes) == 100
    for outcome in outcomes:
        assert len(succeeded(outcome)["blob"]) == 65536
    assert len(driver.events_of(ev.Connected)) == 1  # no reconnect on the way


def test_tls_connect_timeout_bounds_an_unanswered_upgrade(driver: Driver, ca: trustme.CA) -> None:
    """TLS up (the server's session tickets make the socket readable), then no
    answer to the upgrade: connect_timeout still fires."""
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server)
    client = ssl.create_default_context()
    ca.configure_trust(client)
    with fe.FakeEngine([fe.never_answer], ssl_context=server) as fake:
        driver.start(make_config(fake.url(), connect_timeout=0.3), ssl_context=client)
        driver.wait_until(lambda: fake.accepted >= 3, 30.0)
        assert fake.tls_failures == 0
        driver.wait_until(lambda: fake.peers[0].ended_at is not None, 30.0)


def test_tls_untrusted_certificate_keeps_retrying(
    driver: Driver, tls_engine: fe.FakeEngine
) -> None:
    driver.start(make_config(tls_engine.url()))  # the default context: CA unknown
    driver.wait_until(lambda: tls_engine.tls_failures >= 3, 30.0)
    assert not driver.events_of(ev.Connected)
    assert driver.state in (CONNECTING, RECONNECTING)


# -- backpressure ---------------------------------------------------------------------------


class Writer(threading.Thread):
    """Issues ``total`` 1 MiB calls one after the other; counts those handed over."""

    def __init__(self, driver: Driver, total: int) -> None:
        super().__init__(daemon=True)
        self.driver = driver
        self.total = total
        self.ids: list[str] = []
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            for i in range(self.total):
                self.ids.append(self.driver.invoke("anything", {"i": i, "blob": "b" * MiB}))
        except BaseException as exc:
            self.error = exc

    def wait_stuck(self, quiet: float = 0.5, timeout: float = 10.0) -> int:
        """Wait until no call was handed over for ``quiet`` seconds; the count."""
        deadline = time.monotonic() + timeout
        seen, since = -1, time.monotonic()
        while time.monotonic() < deadline and self.is_alive():
            if len(self.ids) != seen:
                seen, since = len(self.ids), time.monotonic()
            elif time.monotonic() - since >= quiet:
                break
            time.sleep(0.02)
        return len(self.ids)


def test_a_slow_engine_makes_writers_wait(driver: Driver) -> None:
    with fe.FakeEngine([fe.stop_reading], rcvbuf=64 * 1024) as fake:
        driver.start(make_config(fake.url()))
        driver.wait_connected()
        writer = Writer(driver, 48)
        writer.start()
        handed_over = writer.wait_stuck(quiet=0.3)
        assert writer.error is None
        # The engine reads nothing: the socket's buffers fill up and the
        # writer waits, rather than the process queueing 48 MiB.
        assert writer.is_alive() and handed_over < 16, handed_over
        queued = driver.on_owner(lambda c: len(c._out))
        assert queued <= 2 * MiB, queued
        fake.release.set()  # the engine reads again: everything goes through
        writer.join(30.0)
        assert not writer.is_alive() and writer.error is None
        for invocation_id in writer.ids:
            result = succeeded(driver.outcome(invocation_id, timeout=30.0))
            assert isinstance(result, dict) and len(result["blob"]) == MiB
        assert driver.state is ConnectionState.CONNECTED


def test_keepalive_breaks_a_writer_stuck_on_a_dead_engine(driver: Driver) -> None:
    with fe.FakeEngine([fe.stop_reading, fe.engine], rcvbuf=64 * 1024) as fake:
        driver.start(make_config(fake.url(), ping_interval=0.2, idle_timeout=1.0))
        driver.wait_connected()
        writer = Writer(driver, 24)
        writer.start()
        assert writer.wait_stuck(quiet=0.3) < 16
        # The engine neither reads nor writes: idle_timeout must fire although
        # a writer is blocked in a send, and the adapter must reconnect.
        driver.wait_connected(count=2, timeout=30.0)
        dropped = [e for e in driver.events_of(ev.StateChanged) if e.new is RECONNECTING]
        assert dropped[0].reason == "no data from the engine for 1s", dropped[0].reason
        writer.join(30.0)
        assert not writer.is_alive() and writer.error is None
        outcomes = [driver.outcome(i, timeout=30.0) for i in writer.ids]
        lost = [o for o in outcomes if isinstance(o, ev.InvocationFailed)]
        assert lost and all(o.error.code == "CONNECTION_LOST" for o in lost)
        driver.close()
        driver.wait_until(lambda: driver.finished, 30.0)  # nothing left blocked in a send


def test_concurrent_large_calls_through_the_engine(
    driver: Driver, iii_engine: EngineThread
) -> None:
    """Big calls to our own function: the engine's backpressure must not
    deadlock us (a reader waiting for a writer waiting for the engine waiting
    for the reader)."""
    driver.start(make_config(iii_engine.url, invocation_timeout=60.0))
    serve_echo(driver, iii_engine)
    results: list[Any] = []
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            ids = [driver.invoke("echo", {"n": n, "i": i, "blob": "z" * MiB}) for i in range(8)]
            results.extend(driver.outcome(i, timeout=60.0) for i in ids)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,), daemon=True) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(90.0)
    assert not errors and len(results) == 32
    for outcome in results:
        assert len(succeeded(outcome)["blob"]) == MiB


# -- reconnect cycles ---------------------------------------------------------------------------


def _resources(driver: Driver) -> tuple[int, int, int]:
    return threading.active_count(), len(os.listdir("/proc/self/fd")), driver.task_count()


def test_100_reconnect_cycles_leak_nothing(driver: Driver, iii_engine: EngineThread) -> None:
    policy = ReconnectPolicy(initial_delay=0.005, max_delay=0.01, jitter=0.0)
    driver.start(make_config(iii_engine.url, reconnect=policy))
    serve_echo(driver, iii_engine)
    connections = 1

    def cycle(i: int) -> None:
        nonlocal connections
        assert iii_engine.drop_all(code=(1000, 1001, 1011, None)[i % 4]) >= 1
        connections += 1
        driver.wait_connected(count=connections)

    for i in range(4):  # warm up (thread pools, lazy imports)
        cycle(i)
    assert succeeded(driver.call("echo", 1)) == 1
    baseline = _resources(driver)
    for i in range(100):
        cycle(i)
    assert succeeded(driver.call("echo", 2)) == 2
    deadline = time.monotonic() + 30.0  # only a failing run waits it out
    while True:
        now = _resources(driver)
        if all(a <= b for a, b in zip(now, baseline, strict=True)) or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    threads, fds, tasks = now
    assert threads <= baseline[0], (now, baseline)
    assert fds <= baseline[1] + 2, (now, baseline)
    assert tasks <= baseline[2], (now, baseline)
