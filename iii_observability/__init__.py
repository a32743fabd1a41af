"""Observability for iii workers: a structured ``Logger``, trace context, spans.

``Logger().info("charged", {"order": 42})`` logs through the standard
``logging`` module (logger ``iii.logger``, as the official SDK's) with the
data dict attached to the record (``record.data``, as the official SDK sets
it, and ``record.iii_data``, ``{}`` when there is none); when OpenTelemetry
is in use, the current trace and span ids are attached too
(``record.trace_id`` / ``record.span_id``), so log lines join their traces.

The trace helpers (``current_trace_id``, ``inject_traceparent``,
``with_span``, ``set_current_span_attribute``, ...) use OpenTelemetry when it
is installed and answer ``None`` (or do nothing) when it is not.  The SDK
never installs OpenTelemetry providers itself: configure the SDK and
exporters of your choice, and worker spans join them (the SDK propagates W3C
``traceparent`` / ``baggage`` on every invocation).

``redact`` / ``redact_and_truncate`` prepare payloads for logs and span
events: secrets-looking keys masked, long text cut at a byte budget.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, Optional

if TYPE_CHECKING:
    from iii.iii_types import OtelConfig, ReconnectionConfig

__all__ = [
    "DEFAULT_ALLOWLIST",
    "REDACTED_PLACEHOLDER",
    "BaggageSpanProcessor",
    "Logger",
    "OtelConfig",
    "ReconnectionConfig",
    "current_span_id",
    "current_span_is_recording",
    "current_trace_id",
    "extract_baggage",
    "extract_context",
    "extract_traceparent",
    "get_all_baggage",
    "get_baggage_entry",
    "inject_baggage",
    "inject_traceparent",
    "record_span_event",
    "redact",
    "redact_and_truncate",
    "remove_baggage_entry",
    "resolve_max_bytes_from_env",
    "set_baggage_entry",
    "set_current_span_attribute",
    "set_current_span_error",
    "with_span",
]


# -- OpenTelemetry, when installed ------------------------------------------------------


def _otel() -> Any:
    """The ``opentelemetry`` package, or ``None`` when it is not installed."""
    try:
        import opentelemetry.baggage
        import opentelemetry.context
        import opentelemetry.propagate
        import opentelemetry.trace
    except ImportError:
        return None
    return opentelemetry


def _trace_ids() -> dict[str, str]:
    # Only when the application already imported OpenTelemetry: a log call
    # never pays for importing it.
    trace = sys.modules.get("opentelemetry.trace")
    if trace is None:
        return {}
    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return {}
    return {"trace_id": f"{context.trace_id:032x}", "span_id": f"{context.span_id:016x}"}


def _span_context() -> Any:
    """The current span's context, or ``None`` outside any span (or without OpenTelemetry)."""
    otel = _otel()
    if otel is None:
        return None
    context = otel.trace.get_current_span().get_span_context()
    return context if context.is_valid else None


def current_trace_id() -> Optional[str]:
    """The current trace id (32 hex digits), or ``None`` outside any trace."""
    context = _span_context()
    return None if context is None else f"{context.trace_id:032x}"


def current_span_id() -> Optional[str]:
    """The current span id (16 hex digits), or ``None`` outside any span."""
    context = _span_context()
    return None if context is None else f"{context.span_id:016x}"


def _inject(key: str) -> Optional[str]:
    otel = _otel()
    if otel is None:
        return None
    carrier: dict[str, str] = {}
    otel.propagate.inject(carrier)
    return carrier.get(key)


def inject_traceparent() -> Optional[str]:
    """The W3C ``traceparent`` header of the current context, or ``None``."""
    return _inject("traceparent")


def inject_baggage() -> Optional[str]:
    """The W3C ``baggage`` header of the current context, or ``None``."""
    return _inject("baggage")


def extract_context(traceparent: Optional[str] = None, baggage: Optional[str] = None) -> Any:
    """An OpenTelemetry ``Context`` from W3C headers (``None`` without OpenTelemetry)."""
    otel = _otel()
    if otel is None:
        return None
    carrier: dict[str, str] = {}
    if traceparent:
        carrier["traceparent"] = traceparent
    if baggage:
        carrier["baggage"] = baggage
    return otel.propagate.extract(carrier)


def extract_traceparent(traceparent: str) -> Any:
    """An OpenTelemetry ``Context`` from a ``traceparent`` header."""
    return extract_context(traceparent=traceparent)


def extract_baggage(baggage: str) -> Any:
    """An OpenTelemetry ``Context`` from a ``baggage`` header."""
    return extract_context(baggage=baggage)


def get_baggage_entry(key: str) -> Optional[str]:
    """One baggage entry of the current context, or ``None``."""
    otel = _otel()
    if otel is None:
        return None
    value = otel.baggage.get_baggage(key)
    return None if value is None else str(value)


def set_baggage_entry(key: str, value: str) -> Any:
    """A new context with the entry set (attach it to make it current)."""
    otel = _otel()
    return None if otel is None else otel.baggage.set_baggage(key, value)


def remove_baggage_entry(key: str) -> Any:
    """A new context without the entry (attach it to make it current)."""
    otel = _otel()
    return None if otel is None else otel.baggage.remove_baggage(key)


def get_all_baggage() -> dict[str, str]:
    """Every baggage entry of the current context."""
    otel = _otel()
    if otel is None:
        return {}
    return {k: str(v) for k, v in otel.baggage.get_all().items()}


def _recording_span() -> Any:
    otel = _otel()
    if otel is None:
        return None
    span = otel.trace.get_current_span()
    return span if span.is_recording() else None


def current_span_is_recording() -> bool:
    """Whether the current span records (``False`` with no span or no OpenTelemetry)."""
    return _recording_span() is not None


def set_current_span_attribute(key: str, value: Any) -> None:
    """Set an attribute on the current span, when it records."""
    span = _recording_span()
    if span is not None:
        span.set_attribute(key, value)


def set_current_span_error(message: str) -> None:
    """Mark the current span as failed with ``message``, when it records."""
    span = _recording_span()
    if span is not None:
        from opentelemetry.trace import Status, StatusCode

        span.set_status(Status(StatusCode.ERROR, message))


def record_span_event(name: str, attrs: Optional[dict[str, Any]] = None) -> None:
    """Add an event to the current span, when it records."""
    span = _recording_span()
    if span is not None:
        span.add_event(name, attributes=attrs or {})


class _NoSpan:
    """The span ``with_span`` passes when OpenTelemetry is not installed."""

    def set_attribute(self, *args: Any, **kwargs: Any) -> None:
        pass

    def set_attributes(self, *args: Any, **kwargs: Any) -> None:
        pass

    def add_event(self, *args: Any, **kwargs: Any) -> None:
        pass

    def set_status(self, *args: Any, **kwargs: Any) -> None:
        pass

    def record_exception(self, *args: Any, **kwargs: Any) -> None:
        pass

    def end(self) -> None:
        pass

    def is_recording(self) -> bool:
        return False

    def get_span_context(self) -> None:
        return None


async def with_span(
    name: str,
    fn: Callable[[Any], Awaitable[Any]],
    *,
    kind: Any = None,
    traceparent: Optional[str] = None,
) -> Any:
    """``await fn(span)`` inside a new span named ``name`` (child of
    ``traceparent`` when given, else of the current span); the span records the
    outcome.  Without OpenTelemetry ``fn`` gets a span that ignores everything.
    """
    otel = _otel()
    if otel is None:
        return await fn(_NoSpan())
    from opentelemetry.trace import SpanKind, StatusCode

    tracer = otel.trace.get_tracer("iii")
    context = extract_context(traceparent=traceparent) if traceparent else None
    with tracer.start_as_current_span(
        name, kind=kind if kind is not None else SpanKind.INTERNAL, context=context
    ) as span:
        try:
            result = await fn(span)
        except Exception as exc:
            span.set_status(StatusCode.ERROR, str(exc))
            span.record_exception(exc)
            raise
        span.set_status(StatusCode.OK)
        return result


#: Baggage keys ``BaggageSpanProcessor`` copies onto spans by default.
DEFAULT_ALLOWLIST: tuple[str, ...] = ("iii.session.id", "iii.message.id", "iii.function.id")


def _baggage_span_processor() -> type:
    try:
        from opentelemetry import baggage
        from opentelemetry.sdk.trace import SpanProcessor
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "BaggageSpanProcessor needs the OpenTelemetry SDK (pip install opentelemetry-sdk)"
        ) from exc

    class BaggageSpanProcessor(SpanProcessor):
        """Copies the allow-listed baggage entries onto every span as it starts."""

        def __init__(self, allowlist: Sequence[str] = DEFAULT_ALLOWLIST) -> None:
            self._allowlist = tuple(allowlist)

        def on_start(self, span: Any, parent_context: Any = None) -> None:
            if not span.is_recording():
                return
            for key in self._allowlist:
                value = baggage.get_baggage(key, parent_context)
                if value is not None:
                    span.set_attribute(key, str(value))

        def on_end(self, span: Any) -> None:
            pass

        def shutdown(self) -> None:
            pass

        def force_flush(self, timeout_millis: int = 30000) -> bool:
            return True

    BaggageSpanProcessor.__module__ = __name__
    return BaggageSpanProcessor


# -- payload redaction -------------------------------------------------------------------

#: What ``redact`` puts in place of a secret-looking value.
REDACTED_PLACEHOLDER = "[REDACTED]"
_CUT_MARK = '..."[TRUNCATED]"'
_SECRET_PARTS = (
    "password",
    "passwd",
    "secret",
    "api_key",
    "apikey",
    "api-key",
    "credential",
    "authorization",
    "private_key",
    "access_token",
    "refresh_token",
    "auth_token",
    "bearer",
)


def _secret_key(key: object) -> bool:
    if not isinstance(key, str):
        return False
    lower = key.lower()
    if any(part in lower for part in _SECRET_PARTS):
        return True
    # "token" alone is too common inside words: only as the whole key or a suffix.
    return lower == "token" or lower.endswith(("_token", "-token"))


def redact(value: Any) -> Any:
    """A copy of ``value`` with the values of secret-looking keys replaced."""
    if isinstance(value, dict):
        return {k: REDACTED_PLACEHOLDER if _secret_key(k) else redact(v) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v) for v in value]
    if isinstance(value, tuple):
        return tuple(redact(v) for v in value)
    return value


def resolve_max_bytes_from_env() -> Optional[int]:
    """``III_TRACE_PAYLOAD_MAX_BYTES`` as a positive int; ``None`` when unset,
    ``unlimited``, not a number or not positive."""
    raw = os.environ.get("III_TRACE_PAYLOAD_MAX_BYTES", "").strip()
    if not raw or raw.lower() == "unlimited":
        return None
    try:
        value = int(raw)
    except ValueError:
        return None
    return value if value > 0 else None


def redact_and_truncate(value: Any, max_bytes: Optional[int] = None) -> tuple[str, bool]:
    """``value`` redacted, as JSON text of at most ``max_bytes`` UTF-8 bytes.

    Returns ``(text, truncated)``; a cut text ends with a ``[TRUNCATED]`` mark
    and never splits a character.
    """
    try:
        text = json.dumps(redact(value), default=str, ensure_ascii=False)
    except (TypeError, ValueError, RecursionError):
        text = "null"
    if max_bytes is None or max_bytes <= 0:
        return text, False
    data = text.encode("utf-8", "surrogatepass")
    if len(data) <= max_bytes:
        return text, False
    mark = _CUT_MARK.encode()
    if max_bytes <= len(mark):
        return _CUT_MARK[:max_bytes], True
    keep = data[: max_bytes - len(mark)].decode("utf-8", "ignore")
    return keep + _CUT_MARK, True


# -- the logger ---------------------------------------------------------------------------


class Logger:
    """``info`` / ``warn`` / ``error`` / ``debug``, each ``(message, data=None)``.

    Args:
        trace_id: attach this trace id instead of the current one.
        service_name: attached to every record (``record.service_name``).
        span_id: attach this span id instead of the current one.
        name: the stdlib logger name (default ``"iii.logger"``, the official
            SDK's: configuring ``iii.logger`` or its parent ``iii`` both apply).
    """

    def __init__(
        self,
        trace_id: Optional[str] = None,
        service_name: Optional[str] = None,
        span_id: Optional[str] = None,
        *,
        name: str = "iii.logger",
    ) -> None:
        self._logger = logging.getLogger(name)
        self._trace_id = trace_id
        self._span_id = span_id
        self._service_name = service_name

    def _log(self, level: int, message: str, data: Any) -> None:
        if not self._logger.isEnabledFor(level):
            return
        # ``data`` is the official SDK's record field (formatters use %(data)s).
        extra: dict[str, Any] = {"data": data, "iii_data": data if data is not None else {}}
        extra.update(_trace_ids())
        if self._trace_id is not None:
            extra["trace_id"] = self._trace_id
        if self._span_id is not None:
            extra["span_id"] = self._span_id
        if self._service_name is not None:
            extra["service_name"] = self._service_name
        suffix = f" {data}" if data else ""
        self._logger.log(level, "%s%s", message, suffix, extra=extra, stacklevel=3)

    def debug(self, message: str, data: Any = None) -> None:
        """Log ``message`` at DEBUG, with ``data`` attached to the record."""
        self._log(logging.DEBUG, message, data)

    def info(self, message: str, data: Any = None) -> None:
        """Log ``message`` at INFO, with ``data`` attached to the record."""
        self._log(logging.INFO, message, data)

    def warn(self, message: str, data: Any = None) -> None:
        """Log ``message`` at WARNING, with ``data`` attached to the record (alias ``warning``)."""
        self._log(logging.WARNING, message, data)

    warning = warn

    def error(self, message: str, data: Any = None) -> None:
        """Log ``message`` at ERROR, with ``data`` attached to the record."""
        self._log(logging.ERROR, message, data)


def __getattr__(name: str) -> Any:
    # Loaded on first use: the option types live with the SDK's other values,
    # and the span processor needs the OpenTelemetry SDK.
    if name in ("OtelConfig", "ReconnectionConfig"):
        from iii import iii_types

        value = getattr(iii_types, name)
    elif name == "BaggageSpanProcessor":
        value = _baggage_span_processor()
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value
