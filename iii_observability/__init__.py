"""Structured logging for iii workers, on the standard ``logging`` module.

``Logger().info("charged", {"order": 42})`` logs through ``logging`` with the
data dict attached to the record (``record.iii_data``).  When OpenTelemetry
is in use, the current trace and span ids are attached too
(``record.trace_id`` / ``record.span_id``), so log lines join their traces.
"""

from __future__ import annotations

import logging
import sys
from typing import Any, Optional

__all__ = ["Logger"]


def _trace_ids() -> dict[str, str]:
    # Only when the application already imported OpenTelemetry: never pay for
    # importing it here.
    trace = sys.modules.get("opentelemetry.trace")
    if trace is None:
        return {}
    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return {}
    return {"trace_id": f"{context.trace_id:032x}", "span_id": f"{context.span_id:016x}"}


class Logger:
    """``info`` / ``warn`` / ``error`` / ``debug``, each ``(message, data=None)``.

    Args:
        name: the stdlib logger name (default ``"iii"``).
    """

    def __init__(self, name: str = "iii") -> None:
        self._logger = logging.getLogger(name)

    def _log(self, level: int, message: str, data: Optional[dict[str, Any]]) -> None:
        if not self._logger.isEnabledFor(level):
            return
        extra: dict[str, Any] = {"iii_data": data or {}}
        extra.update(_trace_ids())
        suffix = f" {data}" if data else ""
        self._logger.log(level, "%s%s", message, suffix, extra=extra, stacklevel=3)

    def debug(self, message: str, data: Optional[dict[str, Any]] = None) -> None:
        """Log ``message`` at DEBUG, with ``data`` attached to the record."""
        self._log(logging.DEBUG, message, data)

    def info(self, message: str, data: Optional[dict[str, Any]] = None) -> None:
        """Log ``message`` at INFO, with ``data`` attached to the record."""
        self._log(logging.INFO, message, data)

    def warn(self, message: str, data: Optional[dict[str, Any]] = None) -> None:
        """Log ``message`` at WARNING, with ``data`` attached to the record (alias ``warning``)."""
        self._log(logging.WARNING, message, data)

    warning = warn

    def error(self, message: str, data: Optional[dict[str, Any]] = None) -> None:
        """Log ``message`` at ERROR, with ``data`` attached to the record."""
        self._log(logging.ERROR, message, data)
