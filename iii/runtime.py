"""The handles a worker returns, and its connection states."""

from __future__ import annotations

from ._client import TriggerTypeRef
from .iii_constants import IIIConnectionState
from .iii_types import FunctionRef

__all__ = ["FunctionRef", "IIIConnectionState", "TriggerTypeRef"]
