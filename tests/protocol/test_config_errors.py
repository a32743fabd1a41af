"""``Config``, ``ReconnectPolicy``, engine URLs, and the exception tree."""

from __future__ import annotations

import copy
import pickle

import pytest

from iii_protocol import (
    DEFAULT_ENGINE_URL,
    Config,
    ConnectError,
    ConnectionClosed,
    ConnectionFailed,
    EngineAddress,
    HeldCallsFull,
    IIIError,
    InvocationError,
    LocalProtocolError,
    PayloadError,
    PayloadTooLarge,
    ProtocolError,
    ReconnectPolicy,
    RemoteProtocolError,
    TransportError,
    parse_engine_url,
)

# -- engine URLs --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "address", "host_header"),
    [
        (DEFAULT_ENGINE_URL, EngineAddress("127.0.0.1", 49134, False, "/"), "127.0.0.1:49134"),
        ("ws://h", EngineAddress("h", 80, False, "/"), "h"),
        ("ws://h:80/x", EngineAddress("h", 80, False, "/x"), "h"),
        ("wss://h", EngineAddress("h", 443, True, "/"), "h"),
        ("wss://h:443", EngineAddress("h", 443, True, "/"), "h"),
        ("wss://h:80", EngineAddress("h", 80, True, "/"), "h:80"),
        ("ws://h:443", EngineAddress("h", 443, False, "/"), "h:443"),
        ("ws://h/?token=abc", EngineAddress("h", 80, False, "/?token=abc"), "h"),
        ("ws://h?token=abc", EngineAddress("h", 80, False, "/?token=abc"), "h"),
        (
            "ws://Engine.Example:1/a/b?x=1&y=2",
            EngineAddress("engine.example", 1, False, "/a/b?x=1&y=2"),
            "engine.example:1",
        ),
        ("ws://[::1]:49134/", EngineAddress("::1", 49134, False, "/"), "[::1]:49134"),
        ("wss://[2001:db8::1]", EngineAddress("2001:db8::1", 443, True, "/"), "[2001:db8::1]"),
    ],
)
def test_parse_engine_url(url: str, address: EngineAddress, host_header: str) -> None:
    assert parse_engine_url(url) == address
    assert address.host_header == host_header
    assert Config(url=url).address == address


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://h", "must start with ws:// or wss://"),
        ("h:49134", "must start with ws:// or wss://"),
        ("", "must start with ws:// or wss://"),
        ("ws://", "has no host"),
        ("ws:///path", "has no host"),
        ("ws://h:notaport", "invalid engine URL"),
        ("ws://h:99999", "invalid engine URL"),
        ("ws://[::1", "invalid engine URL"),
    ],
)
def test_bad_engine_url(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_engine_url(url)
    with pytest.raises(ValueError, match=message):
        Config(url=url)


# -- config ----------------------------------------------------------------------------


def test_config_defaults_follow_the_engine_and_sdks() -> None:
    config = Config()
    assert config.url == "ws://127.0.0.1:49134"
    assert config.headers == ()
    assert config.reconnect == ReconnectPolicy()
    assert (config.invocation_timeout, config.connect_timeout) == (30.0, 10.0)
    assert (config.ping_interval, config.idle_timeout) == (20.0, 60.0)
    assert config.max_message_size == 64 * 1024 * 1024
    assert config.fragment_threshold == 16 * 1024 * 1024
    assert config.fragment_size == 1024 * 1024
    assert config.max_held_calls == 1000
    assert config.announce is None


@pytest.mark.parametrize(
    "kwargs",
    [
        {"invocation_timeout": 0},
        {"invocation_timeout": -1.0},
        {"connect_timeout": 0.0},
        {"ping_interval": -5},
        {"idle_timeout": 0},
        {"max_message_size": 0},
        {"fragment_threshold": 0},
        {"fragment_size": -1},
        {"max_held_calls": -1},
    ],
)
def test_config_refuses_bad_values(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        Config(**kwargs)  # type: ignore[arg-type]


def test_config_names_the_bad_field() -> None:
    with pytest.raises(ValueError, match="invocation_timeout must be > 0, got 0"):
        Config(invocation_timeout=0)


def test_config_is_immutable() -> None:
    config = Config()
    with pytest.raises(AttributeError):
        config.url = "ws://other"  # type: ignore[misc]


# -- reconnect policy ---------------------------------------------------------------------------


def test_reconnect_policy_defaults() -> None:
    policy = ReconnectPolicy()
    assert (policy.initial_delay, policy.max_delay, policy.multiplier) == (1.0, 30.0, 2.0)
    assert (policy.jitter, policy.max_retries) == (0.3, -1)
    # c = min(1 * 2**n, 30); no jitter at u = 0
    assert [policy.delay(n, 0.0) for n in range(7)] == [1, 2, 4, 8, 16, 30, 30]
    assert policy.delay(0, -1.0) == pytest.approx(0.7)
    assert policy.delay(0, 1.0) == pytest.approx(1.3)
    assert policy.delay(5, 1.0) == pytest.approx(39.0)


def test_reconnect_delay_never_overflows_or_goes_negative() -> None:
    policy = ReconnectPolicy(initial_delay=0.5, max_delay=10.0, multiplier=1000.0, jitter=1.0)
    assert policy.delay(10**9, 0.0) == 10.0
    assert policy.delay(10**9, -1.0) == 0.0
    assert policy.delay(10**9, 1.0) == 20.0
    constant = ReconnectPolicy(initial_delay=2.0, multiplier=1.0, jitter=0.0)
    assert {constant.delay(n, u) for n in range(50) for u in (-1.0, 0.0, 1.0)} == {2.0}


@pytest.mark.parametrize(
    ("max_retries", "gives_up"),
    [
        (-1, [False, False, False, False]),
        (0, [True, True, True, True]),
        (2, [False, False, True, True]),
    ],
)
def test_gives_up_after(max_retries: int, gives_up: list[bool]) -> None:
    policy = ReconnectPolicy(max_retries=max_retries)
    assert [policy.gives_up_after(n) for n in range(4)] == gives_up
    if max_retries == -1:
        assert policy.gives_up_after(10**9) is False


@pytest.mark.parametrize(
    "kwargs",
    [
        {"initial_delay": 0},
        {"max_delay": -1.0},
        {"multiplier": 0.5},
        {"jitter": -0.1},
        {"jitter": 1.5},
        {"max_retries": -2},
    ],
)
def test_reconnect_policy_refuses_bad_values(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        ReconnectPolicy(**kwargs)  # type: ignore[arg-type]


# -- errors ----------------------------------------------------------------------------


def test_error_tree() -> None:
    for cls in (
        ProtocolError,
        InvocationError,
        TransportError,
        ConnectionClosed,
        ConnectionFailed,
    ):
        assert issubclass(cls, IIIError)
    assert issubclass(LocalProtocolError, ProtocolError)
    assert issubclass(RemoteProtocolError, ProtocolError)
    for local in (PayloadError, PayloadTooLarge, HeldCallsFull):
        assert issubclass(local, InvocationError)
        assert issubclass(local, LocalProtocolError)
    assert issubclass(ConnectError, TransportError)


def test_protocol_error_is_abstract() -> None:
    with pytest.raises(TypeError, match="raise LocalProtocolError or RemoteProtocolError"):
        ProtocolError("nope")
    assert str(LocalProtocolError("local")) == "local"


def test_error_attributes_and_messages() -> None:
    err = InvocationError("FORBIDDEN", "no", function_id="f", stacktrace="tb", invocation_id="i")
    assert str(err) == "FORBIDDEN: no"
    assert (err.code, err.message, err.function_id, err.stacktrace, err.invocation_id) == (
        "FORBIDDEN",
        "no",
        "f",
        "tb",
        "i",
    )
    payload = PayloadError("bad", function_id="f")
    assert (payload.code, payload.message, payload.function_id) == (
        "serialization_error",
        "bad",
        "f",
    )
    big = PayloadTooLarge(10, 5, function_id="f")
    assert (big.code, big.size, big.limit) == ("payload_too_large", 10, 5)
    assert str(big) == "payload_too_large: message of 10 bytes exceeds the 5-byte limit"
    full = HeldCallsFull(3)
    assert (full.code, full.limit, full.function_id) == ("QUEUE_FULL", 3, None)
    remote = RemoteProtocolError("bad frame", frame_type="ping", close_code=1002)
    assert (str(remote), remote.frame_type, remote.close_code) == ("bad frame", "ping", 1002)
    assert RemoteProtocolError("x").frame_type is None
    failed = ConnectionFailed("RETRIES_EXHAUSTED", "gave up")
    assert str(failed) == "RETRIES_EXHAUSTED: gave up"
    assert (failed.code, failed.message) == ("RETRIES_EXHAUSTED", "gave up")


ERRORS = [
    InvocationError("FORBIDDEN", "no", function_id="f", stacktrace="tb", invocation_id="i"),
    PayloadError("bad", function_id="f"),
    PayloadTooLarge(10, 5, function_id="f"),
    HeldCallsFull(3, function_id="g"),
    RemoteProtocolError("bad frame", frame_type="ping", close_code=1002),
    LocalProtocolError("local"),
    ConnectionFailed("WORKER_NAMESPACE_CONFLICT", "refused"),
    ConnectionClosed("closed"),
    ConnectError("refused"),
]


@pytest.mark.parametrize("err", ERRORS, ids=lambda e: type(e).__name__)
def test_errors_pickle_and_copy_with_every_attribute(err: Exception) -> None:
    for clone in (pickle.loads(pickle.dumps(err)), copy.copy(err), copy.deepcopy(err)):
        assert type(clone) is type(err)
        assert str(clone) == str(err)
        assert clone.args == err.args
        assert vars(clone) == vars(err)
