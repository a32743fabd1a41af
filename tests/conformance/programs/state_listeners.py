"""Connection-state listeners as the official SDK documents them: called at
once with the current state, then on each change (a program may wait for
``connected`` that way); a listener that raises is logged, not fatal; the
unsubscribe function is idempotent.

    python state_listeners.py <engine url> <worker name>
"""

from __future__ import annotations

import sys
import threading

from iii import InitOptions, register_worker

url, name = sys.argv[1], sys.argv[2]
worker = register_worker(url, InitOptions(worker_name=name))
states: list[str] = []
unsubscribe = worker.add_connection_state_listener(states.append)
print("called at once:", states)

connected = threading.Event()
worker.add_connection_state_listener(
    lambda state: connected.set() if state == "connected" else None
)
print("a program waiting for connected goes on:", connected.wait(30))


def boom(state: str) -> None:
    raise RuntimeError("this listener fails")


unsubscribe_boom = worker.add_connection_state_listener(boom)
print("after a failing listener:", worker.get_connection_state())
unsubscribe_boom()
unsubscribe_boom()

unsubscribe()
unsubscribe()
worker.shutdown()
print("nothing after unsubscribing:", states)
print("done")
