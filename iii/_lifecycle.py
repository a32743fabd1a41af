"""A worker program keeps serving after its last line.

A script that registers functions (or provides trigger types) on a
``register_worker`` worker and ends without ``shutdown()`` is a worker
program: the process stays up and serves them until ``shutdown()`` is called
(from a handler, another thread or a signal handler) or Ctrl-C, which shuts
the worker down gracefully.  This is what programs written for the official
SDK (and its docs) expect.  A script that only made calls exits at its last
line, as does one that ended with an uncaught exception.

Workers bound to an app's event loop (``register_worker`` inside
``asyncio.run``/``trio.run``) and ``register_worker_async`` workers never
hold the process: the app's ``main`` decides.  Under pytest the plugin turns
holding off (``release_all``), so a worker a test forgot cannot hang the run.

The wait runs in the main thread from ``threading``'s exit hook, before any
other thread is joined, so Ctrl-C reaches it as ``KeyboardInterrupt``.  A
process that inherited SIGINT ignored (started in the background by a
script) keeps ignoring it, as Python does: only ``shutdown()`` or a signal
the program handles stops it then.
"""

from __future__ import annotations

import atexit
import logging
import sys
import threading
from typing import Protocol

__all__ = ["Held", "hold", "release", "release_all"]

log = logging.getLogger("iii")


class Held(Protocol):
    """What a worker offers to be held open at exit."""

    def serves(self) -> bool:
        """Whether it has something registered that others may call."""

    def wait_closed(self) -> None:
        """Block until the worker has shut down."""

    def stop(self) -> None:
        """Shut the worker down gracefully."""

    def describe(self) -> str:
        """A short description for the log line."""


_lock = threading.Lock()
_held: dict[int, Held] = {}
_hooked = False
_enabled = True
_hold_ended = False


def hold(worker: Held) -> None:
    """Keep the process up for ``worker`` at exit while it serves (until ``release``)."""
    global _hooked
    with _lock:
        if not _enabled:
            return
        _held[id(worker)] = worker
        if not _hooked:
            try:
                threading._register_atexit(_at_exit)  # type: ignore[attr-defined]
            except RuntimeError:  # the interpreter is already exiting
                return
            atexit.register(_after_exit)
            _hooked = True


def release(worker: Held) -> None:
    """``worker`` shut down: nothing to hold for it any more."""
    with _lock:
        _held.pop(id(worker), None)


def release_all() -> None:
    """Never hold the process again (the pytest plugin calls this)."""
    global _enabled
    with _lock:
        _enabled = False
        _held.clear()


def _crashed() -> bool:
    # Set when the main module ended with an uncaught exception.
    return (
        getattr(sys, "last_exc", None) is not None or getattr(sys, "last_value", None) is not None
    )


def _at_exit() -> None:
    global _hold_ended
    # Ctrl-C may land anywhere in here, not only in the wait: each is a stop.
    try:
        _serve_until_closed()
    except KeyboardInterrupt:
        _stop_all("interrupted")
    _hold_ended = True


def _after_exit() -> None:
    # A Ctrl-C that lands as Python enters the hold (its first instruction)
    # escapes it; Python reports it and goes on to here: still a graceful stop.
    if not _hold_ended:
        _stop_all("interrupted before the hold")


def _stop_all(why: str) -> None:
    with _lock:
        held = list(_held.values())
    if held:
        log.info("iii: %s; shutting %d worker(s) down", why, len(held))
    for worker in held:
        worker.stop()


def _serve_until_closed() -> None:
    if _crashed():
        return
    while True:
        with _lock:
            serving = [w for w in _held.values() if w.serves()]
        if not serving:
            return
        worker = serving[0]
        log.info("iii: %s keeps serving; stop it with %s", worker.describe(), _how_to_stop())
        worker.wait_closed()
        release(worker)


def _how_to_stop() -> str:
    import signal  # only at exit: not worth its import time up front

    # A process started in the background by a script inherits SIGINT ignored.
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        return "shutdown() (SIGINT is ignored in this process)"
    return "shutdown() or Ctrl-C"
