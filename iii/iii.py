"""The worker: ``III``, ``register_worker`` and the ``TriggerAction`` factory."""

from __future__ import annotations

import os
from typing import Optional

from iii_protocol import DEFAULT_ENGINE_URL

from ._client import III, register_worker, register_worker_async
from .iii_types import TriggerAction
from .types import RemoteFunctionHandler

__all__ = [
    "III",
    "RemoteFunctionHandler",
    "TriggerAction",
    "register_worker",
    "register_worker_async",
    "resolve_engine_url",
]


def resolve_engine_url(address: Optional[str] = None) -> str:
    """The engine URL a worker uses: ``address``, else ``$III_URL``, else
    ``DEFAULT_ENGINE_URL``."""
    return address or os.environ.get("III_URL") or DEFAULT_ENGINE_URL
