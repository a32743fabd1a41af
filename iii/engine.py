"""Ids of the engine's built-in functions and trigger types."""

from __future__ import annotations

from .iii_constants import EngineFunctions, EngineTriggers
from .types import RemoteFunctionHandler

__all__ = ["EngineFunctions", "EngineTriggers", "RemoteFunctionHandler"]
