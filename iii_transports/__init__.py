"""iii_transports: thin adapters moving bytes between sockets and the sans-I/O core.

One module per backend (``anyio`` for asyncio and trio, ``trio`` for trio
itself, ``blocking`` for plain threads), each with its transport for the
control connection and ``open_stream``, the one way that backend opens a
TCP (and TLS) stream, for the control connection and channel ends alike.
"""

from __future__ import annotations
