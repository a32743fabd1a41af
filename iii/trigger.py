"""Trigger types and handles (the names ``iii.triggers`` has, plus ``TriggerActionVoid``)."""

from __future__ import annotations

from ._client import TriggerHandler
from .iii_types import Trigger, TriggerActionVoid, TriggerConfig

__all__ = ["Trigger", "TriggerActionVoid", "TriggerConfig", "TriggerHandler"]
