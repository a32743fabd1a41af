"""The benchmark candidates: our SDK, the official SDK, the floor client."""

from __future__ import annotations
