"""Names a package imports on first use (its module ``__getattr__``, PEP 562)."""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

__all__ = ["load"]


def load(namespace: dict[str, Any], where: Mapping[str, str], name: str) -> Any:
    """Import ``name`` from its module in ``where`` (relative to the package whose
    globals are ``namespace``), keep it in ``namespace`` and return it.

    Raises:
        AttributeError: ``where`` does not know ``name``.
    """
    package = namespace["__name__"]
    module = where.get(name)
    if module is None:
        raise AttributeError(f"module {package!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, package), name)
    namespace[name] = value
    return value
