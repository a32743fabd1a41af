"""Validated, immutable configuration of a worker connection."""

from __future__ import annotations

from typing import Optional
from urllib.parse import urlsplit

import attrs

from ._json import JSONObject

__all__ = ["Config", "ReconnectPolicy", "EngineAddress", "parse_engine_url", "DEFAULT_ENGINE_URL"]

#: Where a worker connects when neither an address nor ``III_URL`` is given.
DEFAULT_ENGINE_URL = "ws://127.0.0.1:49134"
MiB = 1024 * 1024


def _positive(_: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not value > 0:
        raise ValueError(f"{attribute.name} must be > 0, got {value!r}")


@attrs.frozen(kw_only=True)
class ReconnectPolicy:
    """Exponential backoff with jitter (docs/protocol.md#reconnect).

    The delay before retry ``n`` (0-based) is ``c + c * jitter * u`` with
    ``c = min(initial_delay * multiplier**n, max_delay)`` and ``u`` drawn
    uniformly from [-1, 1].  ``max_retries = -1`` retries forever.
    """

    initial_delay: float = attrs.field(default=1.0, validator=_positive)
    max_delay: float = attrs.field(default=30.0, validator=_positive)
    multiplier: float = attrs.field(default=2.0, validator=attrs.validators.ge(1.0))
    jitter: float = attrs.field(
        default=0.3, validator=[attrs.validators.ge(0.0), attrs.validators.le(1.0)]
    )
    max_retries: int = attrs.field(default=-1, validator=attrs.validators.ge(-1))

    def delay(self, retry: int, u: float) -> float:
        """Seconds to wait before retry number ``retry``, ``u`` in [-1, 1]."""
        # Cap the exponent: 2.0**2000 overflows a float long after the cap applies.
        base = min(self.initial_delay * self.multiplier ** min(retry, 64), self.max_delay)
        return max(0.0, base + base * self.jitter * u)

    def gives_up_after(self, retries: int) -> bool:
        """True when ``retries`` retries have been made and no more are allowed."""
        return self.max_retries >= 0 and retries >= self.max_retries


@attrs.frozen
class EngineAddress:
    """Where to connect: parsed from a ``ws://`` or ``wss://`` URL."""

    host: str
    port: int
    secure: bool
    target: str

    @property
    def host_header(self) -> str:
        default = 443 if self.secure else 80
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == default else f"{host}:{self.port}"


def parse_engine_url(url: str) -> EngineAddress:
    """Parse an engine URL; raises ``ValueError`` for anything but ws/wss with a host."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"invalid engine URL {url!r}: {exc}") from None
    if parts.scheme not in ("ws", "wss"):
        raise ValueError(f"engine URL must start with ws:// or wss://, got {url!r}")
    if not parts.hostname:
        raise ValueError(f"engine URL has no host: {url!r}")
    secure = parts.scheme == "wss"
    target = parts.path or "/"
    if parts.query:
        target += "?" + parts.query
    return EngineAddress(
        host=parts.hostname,
        port=port if port is not None else (443 if secure else 80),
        secure=secure,
        target=target,
    )


def _check_url(_: object, __: object, value: str) -> None:
    parse_engine_url(value)


@attrs.frozen(kw_only=True)
class Config:
    """Everything a ``Connection`` needs to know up front.

    Times are seconds.  Defaults follow the engine and the official SDKs:
    30 s invocation timeout, 10 s to connect, a WebSocket ping every 20 s,
    60 s of silence means the connection is dead, 64 MiB messages, frames
    over 16 MiB sent as 1 MiB fragments, 1 000 calls held while disconnected.

    Attributes:
        announce: the ``data`` of the ``engine::workers::register`` call sent
            on every connection (name, runtime, version, pid, ...); ``None``
            sends no announce.
        confirm_announce: send the announce with an ``invocation_id`` and
            report the engine's answer as ``Announced``: the engine claims the
            worker name while handling it, so only its answer says the worker
            was accepted.  ``False`` sends it fire-and-forget (void), as the
            official SDKs do.
    """

    url: str = attrs.field(default=DEFAULT_ENGINE_URL, validator=_check_url)
    headers: tuple[tuple[str, str], ...] = ()
    reconnect: ReconnectPolicy = ReconnectPolicy()
    invocation_timeout: float = attrs.field(default=30.0, validator=_positive)
    connect_timeout: float = attrs.field(default=10.0, validator=_positive)
    ping_interval: float = attrs.field(default=20.0, validator=_positive)
    idle_timeout: float = attrs.field(default=60.0, validator=_positive)
    max_message_size: int = attrs.field(default=64 * MiB, validator=attrs.validators.gt(0))
    fragment_threshold: int = attrs.field(default=16 * MiB, validator=attrs.validators.gt(0))
    fragment_size: int = attrs.field(default=1 * MiB, validator=attrs.validators.gt(0))
    max_held_calls: int = attrs.field(default=1000, validator=attrs.validators.ge(0))
    announce: Optional[JSONObject] = None
    confirm_announce: bool = True

    @property
    def address(self) -> EngineAddress:
        return parse_engine_url(self.url)
