"""Delivery of one change event to the bindings it matched (the ``state`` and
``stream`` trigger types), as the real engine does it: in the background, one
binding after the other (each call answered before the next starts), each
first gated by its ``condition_function_id`` when it has one.

A condition that answers ``false`` skips its binding; any other answer (``null``
included) lets it run; a failed condition skips it and is logged.  A failed
handler is logged and changes nothing else: the write it reports is done.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Optional

from iii_protocol._json import JSON

from .._api import Binding, EngineHost

__all__ = ["Target", "deliver_in_turn"]

#: A matched binding and its condition function (if any).
Target = tuple[Binding, Optional[str]]


async def deliver_in_turn(
    host: EngineHost, log: logging.Logger, targets: Sequence[Target], payload: JSON
) -> None:
    for binding, condition in targets:
        if condition is not None:
            # The condition resolves in the namespace of the binding's target.
            verdict, error = await host.call(binding.namespace, condition, payload)
            if error is not None:
                log.error(
                    "condition %s of trigger %s failed: %s",
                    condition,
                    binding.id,
                    error.get("message"),
                )
                continue
            if verdict is False:
                continue
        _result, error = await host.call(
            binding.namespace, binding.function_id, payload, metadata=binding.metadata
        )
        if error is not None:
            log.error(
                "trigger %s: handler %s failed: %s",
                binding.id,
                binding.function_id,
                error.get("message"),
            )
