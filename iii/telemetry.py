"""Trace context of the current code (OpenTelemetry, when installed).

The same functions as ``iii_observability``: ids of the current span,
W3C ``traceparent`` / ``baggage`` headers in and out, and baggage entries.
Each answers ``None`` (or does nothing) when OpenTelemetry is not installed.
"""

from __future__ import annotations

from iii_observability import (
    current_span_id,
    current_trace_id,
    extract_baggage,
    extract_context,
    extract_traceparent,
    get_all_baggage,
    get_baggage_entry,
    inject_baggage,
    inject_traceparent,
    remove_baggage_entry,
    set_baggage_entry,
    with_span,
)

__all__ = [
    "current_span_id",
    "current_trace_id",
    "extract_baggage",
    "extract_context",
    "extract_traceparent",
    "get_all_baggage",
    "get_baggage_entry",
    "inject_baggage",
    "inject_traceparent",
    "remove_baggage_entry",
    "set_baggage_entry",
    "with_span",
]
