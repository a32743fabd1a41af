"""Transports: thin adapters that move bytes between a socket and the sans-I/O core.

``iii_protocol.Connection`` decides everything (when to connect, reconnect,
ping, time out, what to send); a transport only opens the socket it asks for,
feeds it the bytes read with the current time, writes the bytes it queued and
hands its events to a callback.  Pick the adapter that matches how your
program runs:

* ``iii_transports.anyio.AnyioTransport``: on the caller's own asyncio or trio
  loop (``iii.register_worker_async`` uses it).
* ``iii_transports.trio.TrioTransport``: trio's own primitives, for code that
  drives the core on trio without anyio.  Needs ``pip install 'iii-sdk[trio]'``.
* ``iii_transports.blocking.ThreadTransport``: blocking sockets on daemon
  threads, no event loop (``iii.register_worker`` uses it).

Each module also has ``open_stream``, the one way that backend opens a TCP
(and TLS) stream, for the control connection and channel ends alike.
All of them behave the same way; ``tests/transports`` runs one conformance
suite against each.  Nothing is imported here, so ``import iii_transports``
costs nothing and never imports trio.
"""

from __future__ import annotations
