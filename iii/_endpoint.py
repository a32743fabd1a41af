"""How this SDK reaches the engine: what the control connection and channel sockets share."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Optional

import attrs

if TYPE_CHECKING:
    import ssl

__all__ = ["Endpoint", "handshake_headers"]


def handshake_headers(headers: Optional[Mapping[str, str]]) -> tuple[tuple[str, str], ...]:
    """The headers of a WebSocket upgrade to the engine: ``headers``, plus
    ``Authorization: Bearer $III_TOKEN`` when ``III_TOKEN`` is set and
    ``headers`` holds no Authorization (any case) of its own."""
    out = dict(headers or {})
    token = os.environ.get("III_TOKEN")
    if token and not any(k.lower() == "authorization" for k in out):
        out["Authorization"] = f"Bearer {token}"
    return tuple(out.items())


@attrs.frozen
class Endpoint:
    """Where a worker's engine is and how to open a socket to it.

    Attributes:
        url: the engine URL (``ws://`` or ``wss://``, query kept).
        headers: the upgrade headers (``III_TOKEN`` already applied).
        ssl_context: the TLS settings for ``wss://`` (``None``: verify
            against the system's CAs).
    """

    url: str
    headers: tuple[tuple[str, str], ...]
    ssl_context: Optional[ssl.SSLContext] = None
