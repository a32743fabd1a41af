"""The HTTP trigger's payload with its channels opened (used by ``iii.utils.http``)."""

from __future__ import annotations

from .types import InternalHttpRequest

__all__ = ["InternalHttpRequest"]
