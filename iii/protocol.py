"""Frame types and the inputs of registrations and calls.

The frames themselves (``RegisterFunction``, ``InvokeFunction``...) are
``iii_protocol``'s; this module names the inputs a worker builds.
"""

from __future__ import annotations

from iii_protocol import RegisterFunctionFormat

from .iii_types import (
    MessageType,
    RegisterFunctionInput,
    RegisterTriggerInput,
    RegisterTriggerTypeInput,
    TriggerRequest,
)

__all__ = [
    "MessageType",
    "RegisterFunctionFormat",
    "RegisterFunctionInput",
    "RegisterTriggerInput",
    "RegisterTriggerTypeInput",
    "TriggerRequest",
]
