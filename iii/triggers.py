"""Trigger types: providing one (``TriggerHandler``), its bindings
(``TriggerConfig``), and the handles ``register_trigger`` /
``register_trigger_type`` return (``Trigger``, ``TriggerTypeRef``)."""

from __future__ import annotations

from ._client import TriggerHandler, TriggerTypeRef
from .iii_types import Trigger, TriggerConfig

__all__ = ["Trigger", "TriggerConfig", "TriggerHandler", "TriggerTypeRef"]
