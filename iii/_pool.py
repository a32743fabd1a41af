"""The bounded pool of daemon threads that runs sync handlers.

Not ``concurrent.futures.ThreadPoolExecutor``: its threads are joined at
interpreter exit, so one handler stuck forever keeps the process alive after
``shutdown()``.  These are daemon threads, started on demand up to ``limit``
and kept for the worker's life; no future per job.
"""

from __future__ import annotations

import logging
import threading
from collections import deque

from ._loops import Job

__all__ = ["HandlerPool"]

log = logging.getLogger("iii")


class HandlerPool:
    """Run ``job.run()`` on at most ``limit`` daemon threads; the rest wait in order."""

    def __init__(self, limit: int, name: str = "iii-handler") -> None:
        self._limit = max(1, limit)
        self._name = name
        self._ready = threading.Condition(threading.Lock())
        self._queue: deque[Job] = deque()
        self._threads = 0
        self._idle = 0
        self._closed = False

    def submit(self, job: Job) -> bool:
        """Queue ``job``; False once the pool is closed (the job did not run).

        Raises:
            RuntimeError: no thread could be started and none runs (the job did
                not run either).
        """
        with self._ready:
            if self._closed:
                return False
            self._queue.append(job)
            if len(self._queue) > self._idle and self._threads < self._limit:
                self._threads += 1
                try:
                    threading.Thread(
                        target=self._work, name=f"{self._name}-{self._threads}", daemon=True
                    ).start()
                except RuntimeError:
                    # CPython 3.12.0-3.12.1 refuse new threads once the main thread
                    # has ended: the threads there take the job, or nobody can.
                    self._threads -= 1
                    if not self._threads:
                        self._queue.pop()
                        raise
            else:
                self._ready.notify()
        return True

    def close(self) -> list[Job]:
        """Stop taking jobs; idle threads end, busy ones end after their job.

        Returns the jobs that had not started (the caller answers them).
        Never waits: a stuck handler keeps only its own daemon thread.
        """
        with self._ready:
            self._closed = True
            queued = list(self._queue)
            self._queue.clear()
            self._ready.notify_all()
        return queued

    def _work(self) -> None:
        while True:
            with self._ready:
                while not self._queue and not self._closed:
                    self._idle += 1
                    self._ready.wait()
                    self._idle -= 1
                if not self._queue:
                    self._threads -= 1
                    return
                job = self._queue.popleft()
            try:
                job.run()
            except BaseException:  # jobs catch everything themselves; this is a bug
                log.exception("iii: internal error in a handler thread")
