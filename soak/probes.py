"""Resource figures of this process: threads, file descriptors, memory."""

from __future__ import annotations

import gc
import os
import threading
import time
import tracemalloc
from collections.abc import Callable


def threads() -> int:
    return threading.active_count()


def fds() -> int:
    """Open file descriptors (-1 where ``/proc/self/fd`` does not exist)."""
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return -1


def rss_kib() -> int:
    """Resident memory in KiB (-1 where ``/proc/self/statm`` does not exist)."""
    try:
        with open("/proc/self/statm") as fh:
            pages = int(fh.read().split()[1])
    except OSError:
        return -1
    return pages * os.sysconf("SC_PAGE_SIZE") // 1024


def traced_kib() -> int:
    """Memory allocated by Python and still alive, after a collection (tracemalloc)."""
    gc.collect()
    if not tracemalloc.is_tracing():
        return -1
    return tracemalloc.get_traced_memory()[0] // 1024


def settle(measure: Callable[[], int], at_most: int, patience: float = 30.0) -> int:
    """``measure()`` once it is ``<= at_most``, or its value after ``patience`` seconds.

    Threads and sockets of a worker that was just shut down go away a moment
    later (daemon threads finishing their last step): wait for that instead of
    reading the figure at an arbitrary instant.  The caller checks the value;
    the patience only bounds the wait.
    """
    deadline = time.monotonic() + patience
    while True:
        value = measure()
        if value <= at_most or time.monotonic() > deadline:
            return value
        time.sleep(0.05)


def quiet(measure: Callable[[], int], seconds: float = 1.0) -> int:
    """The lowest value of ``measure()`` sampled over ``seconds`` (a baseline)."""
    deadline = time.monotonic() + seconds
    low = measure()
    while time.monotonic() < deadline:
        time.sleep(0.05)
        low = min(low, measure())
    return low
