"""W3C trace context on invocations, when OpenTelemetry is installed.

Nothing here imports OpenTelemetry at ``import iii`` time: the first
invocation looks for it once.  ``OTEL_ENABLED=false`` turns it off.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any, Optional

__all__ = ["outbound_context", "handler_context"]

_api: Any = None
_checked = False


def _load() -> Any:
    global _api, _checked
    if not _checked:
        _checked = True
        if os.environ.get("OTEL_ENABLED", "").lower() not in ("false", "0", "no"):
            try:
                from opentelemetry import context, propagate

                _api = (context, propagate)
            except ImportError:
                _api = None
    return _api


def outbound_context() -> tuple[Optional[str], Optional[str]]:
    """``(traceparent, baggage)`` of the current context, or ``(None, None)``."""
    api = _load()
    if api is None:
        return None, None
    carrier: dict[str, str] = {}
    api[1].inject(carrier)
    return carrier.get("traceparent"), carrier.get("baggage")


@contextlib.contextmanager
def handler_context(traceparent: Optional[str], baggage: Optional[str]) -> Iterator[None]:
    """Run a handler inside the caller's trace context, when there is one."""
    api = _load() if traceparent else None
    if api is None:
        yield
        return
    carrier = {"traceparent": traceparent}
    if baggage:
        carrier["baggage"] = baggage
    token = api[0].attach(api[1].extract(carrier))
    try:
        yield
    finally:
        api[0].detach(token)
