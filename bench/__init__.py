"""Benchmarks: our SDK vs the official iii-sdk 0.25.0 vs a bare client (the floor).

``python -m bench`` (or ``make bench``) runs everything; see ``bench/README.md``.
Nothing here is imported by the SDK or by its tests.
"""

from __future__ import annotations
