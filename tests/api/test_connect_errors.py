"""A worker that cannot connect says why: the ConnectError names the cause (and
chains it), each failed attempt is logged, and calls failing meanwhile say
the worker was not connected."""

from __future__ import annotations

import contextlib
import logging
import socket
import ssl
import threading
from collections.abc import Iterator
from typing import Any

import anyio
import attrs
import pytest

import iii
from iii_protocol import UpgradeRefused

FAST_FAIL = iii.InitOptions(
    register_timeout_ms=300,
    reconnection_config=iii.ReconnectionConfig(initial_delay_ms=20, max_delay_ms=50),
)
RUNTIMES = ["thread", "asyncio", "trio"]


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port: int = s.getsockname()[1]
    s.close()
    return port


@contextlib.contextmanager
def plain_http_server() -> Iterator[int]:
    """Answers anything with HTTP 400 and hangs up, as an HTTP server does to a TLS hello."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                return
            with conn, contextlib.suppress(OSError):
                conn.recv(4096)
                conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1]
    finally:
        stop.set()
        with contextlib.suppress(OSError):
            server.shutdown(socket.SHUT_RDWR)  # wakes accept()
        server.close()
        thread.join(5)


def register(url: str, runtime: str, caplog: pytest.LogCaptureFixture) -> BaseException:
    """The error of registering a worker at ``url`` with ``runtime``.

    The register timeout is short to keep the suite fast; a machine too busy to
    finish one attempt within it gets an error with no cause yet ("no answer
    yet", itself correct), so the timeout grows until an attempt has finished.
    """
    for timeout_ms in (300, 1_000, 3_000, 10_000, 30_000):
        caplog.clear()
        error = _register(url, runtime, attrs.evolve(FAST_FAIL, register_timeout_ms=timeout_ms))
        if "no answer yet" not in str(error):
            break
    return error


def _register(url: str, runtime: str, options: iii.InitOptions) -> BaseException:
    if runtime == "thread":
        with pytest.raises(iii.ConnectError) as info:
            iii.register_worker(url, options)
        return info.value

    async def main() -> BaseException:
        with pytest.raises(iii.ConnectError) as info:
            async with iii.register_worker_async(url, options):
                pytest.fail("should not enter")
        return info.value

    error: BaseException = anyio.run(main, backend=runtime)
    return error


def check(error: BaseException, cause_type: Any, caplog: pytest.LogCaptureFixture, url: str):
    assert "could not register" in str(error)
    cause = error.__cause__
    assert isinstance(cause, cause_type), repr(cause)
    assert str(cause) in str(error)  # the message carries it too
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING and url in r.getMessage()]
    # Every failed attempt is logged; repeats of the same trouble within a
    # few seconds at DEBUG only, so a worker retrying fast does not flood.
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    assert str(cause) in warnings[0].getMessage()
    return cause


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_refused(runtime, caplog):
    url = f"ws://127.0.0.1:{free_port()}"
    with caplog.at_level(logging.DEBUG, logger="iii"):
        error = register(url, runtime, caplog)
    check(error, ConnectionRefusedError, caplog, url)
    assert "refused" in str(error).lower()


def test_connect_failures_are_connection_errors(caplog):
    # The official SDK's register_worker raises ConnectionError when it cannot
    # connect (retries exhausted): code catching that catches ours too.
    url = f"ws://127.0.0.1:{free_port()}"
    with caplog.at_level(logging.DEBUG, logger="iii"):
        error = register(url, "thread", caplog)
    assert isinstance(error, ConnectionError)
    few = iii.ReconnectionConfig(initial_delay_ms=10, max_delay_ms=20, max_retries=1)
    with pytest.raises(ConnectionError) as info:
        iii.register_worker(url, iii.InitOptions(reconnection_config=few))
    assert isinstance(info.value, iii.ConnectionFailed)
    assert info.value.code == "RETRIES_EXHAUSTED"
    rejected = iii.RegistrationRejectedError("WORKER_NAMESPACE_CONFLICT", "ns", "w", "id")
    assert isinstance(rejected, ConnectionError)


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_unknown_host(runtime, caplog):
    url = "ws://no-such-host.invalid:49134"
    with caplog.at_level(logging.DEBUG, logger="iii"):
        error = register(url, runtime, caplog)
    check(error, OSError, caplog, url)


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_wrong_path_is_an_http_status(iii_engine, runtime, caplog):
    url = iii_engine.url.rstrip("/") + "/not-the-engine"
    with caplog.at_level(logging.DEBUG, logger="iii"):
        error = register(url, runtime, caplog)
    cause = check(error, UpgradeRefused, caplog, url)
    assert cause.status_code == 404
    assert "HTTP 404" in str(error)


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_tls_to_a_plain_port(runtime, caplog):
    with plain_http_server() as port:
        url = f"wss://127.0.0.1:{port}"
        with caplog.at_level(logging.DEBUG, logger="iii"):
            error = register(url, runtime, caplog)
    check(error, ssl.SSLError, caplog, url)


def test_calls_made_while_disconnected_say_so():
    url = f"ws://127.0.0.1:{free_port()}"
    worker = iii.III(url, FAST_FAIL)  # connects in the background, holds calls
    retrying = threading.Event()  # a first attempt was refused
    worker.add_connection_state_listener(
        lambda state: retrying.set() if state == "reconnecting" else None
    )
    try:
        assert retrying.wait(30)
        with pytest.raises(iii.IIIInvocationError) as info:
            worker.trigger({"function_id": "any::f", "payload": None, "timeout_ms": 200})
        assert info.value.code == "TIMEOUT"
        message = info.value.message
        assert "connecting" in message  # state connecting or reconnecting
        assert "refused" in message.lower()
    finally:
        worker.shutdown()
