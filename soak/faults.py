"""Engine faults: a seeded schedule and the thread that applies it.

Kinds (each about equally often, in a shuffled order):

* ``drop-1000``, ``drop-1001``, ``drop-1011``: the engine closes one worker's
  connection with a Close frame carrying that code;
* ``abort``: one worker's TCP stream is cut without a Close frame;
* ``drop-all-1011``, ``drop-all-abort``: every worker at once;
* ``restart``: the engine stops and starts again on the same port (state lost);
* ``outage``: the same, with the port closed for ``down`` seconds in between;
* ``kill-9``: SIGKILL of the engine process, a new one on the same port after
  ``down`` seconds.

Not in the default mix (``--kinds`` adds it): ``garbage``, bytes that are no
WebSocket frame written to one worker's stream (it must drop that connection
and reconnect).
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from dataclasses import dataclass
from typing import Optional

from ._engine import EngineError, EngineProcess

KINDS = (
    "drop-1000",
    "drop-1001",
    "drop-1011",
    "abort",
    "drop-all-1011",
    "drop-all-abort",
    "restart",
    "outage",
    "kill-9",
)

#: kinds ``--kinds`` may add to the default ones
EXTRA_KINDS = ("garbage",)


@dataclass
class Fault:
    #: seconds after the soak's start
    at: float
    kind: str
    #: the worker dropped (per-worker kinds)
    target: Optional[str] = None
    #: seconds the engine stays down (outage, kill-9)
    down: float = 0.0


def schedule(
    seed: int, count: int, seconds: float, workers: list[str], kinds: tuple[str, ...] = KINDS
) -> list[Fault]:
    """``count`` faults at random times of a ``seconds`` long run, the same for a seed.

    None in the first and last 10 % (at most 5 s / 10 s): the workers connect
    first, and the run ends with the workers connected.
    """
    rng = random.Random(f"{seed}/faults")
    first, last = min(5.0, seconds * 0.1), seconds - min(10.0, seconds * 0.1)
    times = sorted(rng.uniform(first, last) for _ in range(count))
    order: list[str] = []
    while len(order) < count:
        batch = list(kinds)
        rng.shuffle(batch)
        order.extend(batch)
    faults = []
    for at, kind in zip(times, order, strict=False):
        target = rng.choice(workers) if kind.startswith(("drop-1", "abort", "garbage")) else None
        down = round(rng.uniform(0.2, 3.0), 2) if kind in ("outage", "kill-9") else 0.0
        faults.append(Fault(round(at, 2), kind, target, down))
    return faults


class Injector:
    """Applies a schedule to an ``EngineProcess`` on its own thread."""

    def __init__(self, engine: EngineProcess, faults: list[Fault], log: list[str]) -> None:
        self.engine = engine
        self.faults = faults
        self.log = log
        self.applied: Counter[str] = Counter()
        #: per-worker drops that found the worker disconnected already
        self.no_effect: Counter[str] = Counter()
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="soak-faults", daemon=True)
        self._t0 = 0.0

    def start(self, t0: float) -> None:
        self._t0 = t0
        self._thread.start()

    def stop(self) -> None:
        """Stop before the next fault (one in progress completes) and join."""
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        for fault in self.faults:
            if self._stop.wait(max(0.0, self._t0 + fault.at - time.monotonic())):
                return
            try:
                self._apply(fault)
            except EngineError as exc:
                self.failures.append(f"{fault}: {exc}")
                self._revive()

    def _apply(self, fault: Fault) -> None:
        engine, kind = self.engine, fault.kind
        started = time.monotonic()
        note = ""
        if kind.startswith("drop-all"):
            code = None if kind.endswith("abort") else int(kind.rsplit("-", 1)[1])
            note = f"{engine.command('drop_all', code=code)['dropped']} workers"
        elif kind.startswith("drop-") or kind == "abort":
            code = None if kind == "abort" else int(kind.split("-")[1])
            dropped = engine.command("drop", name=fault.target, code=code)["dropped"]
            if not dropped:
                self.no_effect[kind] += 1
            note = f"{fault.target} ({'dropped' if dropped else 'was not connected'})"
        elif kind == "garbage":
            # A reserved opcode (0x3) with the FIN bit, then junk: a protocol error.
            sent = engine.command("garbage", name=fault.target, hex="8305ffffffffff")["sent"]
            if not sent:
                self.no_effect[kind] += 1
            note = f"{fault.target} ({'sent' if sent else 'was not connected'})"
        elif kind == "restart":
            engine.command("restart")
        elif kind == "outage":
            engine.command("stop")
            time.sleep(fault.down)
            engine.command("start")
            note = f"down {fault.down}s"
        elif kind == "kill-9":
            pid = engine.pid
            engine.kill9()
            time.sleep(fault.down)
            engine.start()
            note = f"pid {pid} killed, down {fault.down}s, new pid {engine.pid}"
        else:
            raise ValueError(f"unknown fault kind {kind!r}")
        self.applied[kind] += 1
        at = started - self._t0
        self.log.append(f"{at:7.2f}s {kind:<15} {note}".rstrip())

    def _revive(self) -> None:
        """After a failed command: make sure an engine is listening again."""
        try:
            if not self.engine.alive:
                self.engine.start()
            elif not self.engine.command("stats").get("running", False):
                self.engine.command("start")
        except EngineError as exc:
            self.failures.append(f"revive: {exc}")
