"""The soak runner: connect cycles, then workers calling each other under engine faults.

``python -m soak --seconds 250 --faults 64`` (``--help`` for the rest).  The
exit status is 0 when every property held, 1 otherwise; the summary is printed
and written as JSON next to the engine's log.
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import re
import sys
import tempfile
import threading
import time
import traceback
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional

from . import probes
from ._engine import EngineError, EngineProcess, free_port
from .faults import EXTRA_KINDS, KINDS, Injector, schedule
from .leaks import Cycles
from .ledger import Ledger
from .reconnects import Reconnects
from .workers import RUNTIMES, Host

Say = Callable[[str], None]


@dataclass
class Config:
    """What a run does; the defaults are the release bar (``make soak``)."""

    seconds: float = 250.0
    faults: int = 64
    seed: Optional[int] = None
    cycles: int = 300
    warmup: int = 25
    #: drops of one worker per runtime (60: 300 reconnects in all)
    reconnects: int = 60
    #: timeout of every soak call
    timeout_ms: int = 20_000
    #: InitOptions.shutdown_grace_ms of the soak's workers (short: some handlers are cut off)
    grace_ms: int = 250
    #: mean pause of a caller between two calls (0: none)
    pace_ms: float = 0.0
    #: blocking callers of the thread worker; async callers of each async worker
    thread_callers: int = 12
    tasks: int = 24
    bound_tasks: int = 16
    #: plain threads calling each async worker's blocking trigger
    side_threads: int = 2
    kinds: tuple[str, ...] = KINDS
    runtimes: tuple[str, ...] = RUNTIMES
    out_dir: Optional[str] = None


@dataclass
class Report:
    config: dict[str, Any]
    violations: list[str] = field(default_factory=list)
    sections: dict[str, Any] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return not self.violations


class _Trouble(logging.Handler):
    """Collects the SDK's WARNING and ERROR records, and uncaught exceptions of threads."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.errors: list[str] = []
        self.warnings: Counter[str] = Counter()

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno >= logging.ERROR:
            text = f"{record.name}: {record.getMessage()}"
            if record.exc_info and record.exc_info[1] is not None:
                text += "\n" + "".join(traceback.format_exception(*record.exc_info)).rstrip()
            self.errors.append(text)
        else:
            # One key per kind of warning: the numbers (counts, ports, ids) vary.
            text = re.sub(r"\d+", "N", record.getMessage())[:120]
            self.warnings[f"{record.name}: {text}"] += 1

    def thread_hook(self, args: threading.ExceptHookArgs) -> None:
        tb = "".join(traceback.format_exception(args.exc_type, args.exc_value, args.exc_traceback))
        name = args.thread.name if args.thread is not None else "?"
        self.errors.append(f"uncaught in thread {name}:\n{tb.rstrip()}")

    def unraisable_hook(self, args: Any) -> None:
        self.errors.append(
            f"unraisable: {args.err_msg or ''} {args.exc_value!r} in {args.object!r}"
        )

    def install(self) -> Callable[[], None]:
        # The records go to this handler only (the root logger has none): the SDK's
        # warnings are expected under faults; they are counted, not printed.
        loggers = [logging.getLogger(n) for n in ("iii", "asyncio")]
        levels = [lg.level for lg in loggers]
        for lg in loggers:
            lg.addHandler(self)
            lg.setLevel(logging.WARNING)
        old_thread, old_unraisable = threading.excepthook, sys.unraisablehook
        threading.excepthook = self.thread_hook
        sys.unraisablehook = self.unraisable_hook

        def uninstall() -> None:
            for lg, level in zip(loggers, levels, strict=False):
                lg.removeHandler(self)
                lg.setLevel(level)
            threading.excepthook = old_thread
            sys.unraisablehook = old_unraisable

        return uninstall


def run(cfg: Config, say: Say = print) -> Report:
    if cfg.seed is None:
        cfg.seed = random.SystemRandom().randrange(1, 2**31)
    out = Path(cfg.out_dir or tempfile.mkdtemp(prefix=f"soak-{cfg.seed}-"))
    out.mkdir(parents=True, exist_ok=True)
    report = Report(config={k: v for k, v in asdict(cfg).items()})
    say(
        f"soak: seed {cfg.seed} (replay: --seed {cfg.seed}), {cfg.seconds:g}s, "
        f"{cfg.faults} faults, {cfg.cycles} connect cycles, {cfg.reconnects} drops per "
        f"runtime; output in {out}"
    )
    trouble = _Trouble()
    uninstall = trouble.install()
    with open(out / "engine.log", "ab") as log:
        engine = EngineProcess(free_port(), log)
        engine.start()
        say(f"engine: {engine.url} (pid {engine.pid}, log {out / 'engine.log'})")
        try:
            if cfg.cycles:
                _cycles(cfg, engine, report, say)
            if cfg.reconnects:
                _reconnects(cfg, engine, report, say)
            if cfg.seconds > 0:
                _soak(cfg, engine, report, say)
        finally:
            engine.stop()
            uninstall()
    if trouble.errors:
        report.violations.extend(f"logged: {e}" for e in trouble.errors)
    report.sections["warnings_logged"] = dict(trouble.warnings.most_common())
    (out / "report.json").write_text(
        json.dumps(
            {
                "passed": report.passed,
                "violations": report.violations,
                **report.sections,
                "config": report.config,
            },
            indent=2,
            default=str,
        )
    )
    _print_summary(report, say)
    say(f"report: {out / 'report.json'}")
    return report


# -- connect cycles --------------------------------------------------------------------


def _cycles(cfg: Config, engine: EngineProcess, report: Report, say: Say) -> None:
    say(f"connect cycles: {cfg.cycles} (warm-up {cfg.warmup}), round the runtimes {RUNTIMES}")
    started = time.monotonic()
    figures = Cycles(engine.url).run(cfg.cycles, min(cfg.warmup, cfg.cycles), say)
    figures["seconds"] = round(time.monotonic() - started, 1)
    report.sections["cycles"] = figures
    for key, grew in figures["over_bound"].items():
        report.violations.append(
            f"cycles: {key} grew by {grew} over {cfg.cycles - cfg.warmup} cycles "
            f"(bound {figures['bounds'][key]})"
        )
    report.violations.extend(f"cycles: {w}" for w in figures["wrong_values"])


def _reconnects(cfg: Config, engine: EngineProcess, report: Report, say: Say) -> None:
    warmup = min(max(1, cfg.reconnects // 10), cfg.reconnects)
    say(f"reconnect rounds: {cfg.reconnects} drops of one worker per runtime (warm-up {warmup})")
    figures = Reconnects(engine).run(cfg.reconnects, warmup, say)
    report.sections["reconnects"] = figures
    for key, grew in figures["over_bound"].items():
        report.violations.append(
            f"reconnects: {key} grew by {grew} over {cfg.reconnects - warmup} drops"
        )
    report.violations.extend(f"reconnects: {w}" for w in figures["wrong_values"])


# -- the soak --------------------------------------------------------------------------


def _soak(cfg: Config, engine: EngineProcess, report: Report, say: Say) -> None:
    assert cfg.seed is not None
    ledger = Ledger()
    go = threading.Event()
    names = [f"soak-{r}" for r in cfg.runtimes]
    base = {**_figures(), "threads": probes.quiet(probes.threads)}
    hosts = [
        Host(
            name,
            runtime,
            engine.url,
            ledger,
            targets=names,
            seed=str(cfg.seed),
            tasks=0
            if runtime == "thread"
            else (cfg.bound_tasks if runtime.startswith("bound-") else cfg.tasks),
            threads=cfg.thread_callers if runtime == "thread" else cfg.side_threads,
            timeout_ms=cfg.timeout_ms,
            grace_ms=cfg.grace_ms,
            pace=cfg.pace_ms / 1000,
            go=go,
        )
        for name, runtime in zip(names, cfg.runtimes, strict=False)
    ]
    for host in hosts:
        host.start()
    for host in hosts:
        host.ready.wait(180)
        if host.error is not None or not host.ready.is_set():
            for h in hosts:
                h.stop.set()
            go.set()
            raise RuntimeError(f"worker {host.name} did not start: {host.error!r}")
    connected = _figures()
    faults = schedule(cfg.seed, cfg.faults, cfg.seconds, names, cfg.kinds)
    fault_log: list[str] = []
    injector = Injector(engine, faults, fault_log)
    say(
        f"soak: {len(hosts)} workers ({', '.join(cfg.runtimes)}), "
        f"{sum(h.tasks + h.threads for h in hosts)} callers; faults: "
        + ", ".join(f"{k} {n}" for k, n in sorted(Counter(f.kind for f in faults).items()))
    )
    t0 = time.monotonic()
    go.set()
    injector.start(t0)
    shown = 0
    next_tick = t0 + 10
    while time.monotonic() < t0 + cfg.seconds:
        time.sleep(max(0.0, min(next_tick, t0 + cfg.seconds) - time.monotonic()))
        for line in fault_log[shown:]:
            say(f"  fault {line}")
        shown = len(fault_log)
        if time.monotonic() >= next_tick:
            next_tick += 10
            _progress(ledger, hosts, t0, say)
    injector.stop()
    for line in fault_log[shown:]:
        say(f"  fault {line}")
    # The run ends with the engine up and every worker back: the reconnect figures.
    _ensure_engine(engine, injector)
    back = _wait_connected(hosts, 120)
    after_faults = _figures()
    calls_before_stop = len(ledger.calls)
    elapsed = time.monotonic() - t0

    # Two endings, each for a part of the workers chosen by the seed: shut down with
    # calls in flight while connected, then (engine stopped) with calls held while
    # reconnecting.  The engine must have forgotten the first part in between.
    order = list(hosts)
    random.Random(f"{cfg.seed}/ending").shuffle(order)
    while_up, while_down = order[: (len(order) + 1) // 2], order[(len(order) + 1) // 2 :]
    patience = cfg.timeout_ms / 1000 + 120
    say(f"soak: shutting down {_names(while_up)} with calls in flight, engine up")
    in_flight = {"engine_up": ledger.in_flight, "engine_down": 0}
    _shut_down(while_up, patience)
    engine_after = _engine_after(engine, {h.name for h in while_down})
    if engine_after.get("workers") != sorted(h.name for h in while_down):
        report.violations.append(
            f"engine: workers {engine_after.get('workers')} after {_names(while_up)} left"
        )
    if while_down:
        say(f"soak: engine stopped; shutting down {_names(while_down)} with calls held")
        try:
            engine.command("stop")
            time.sleep(1.0)  # lets the callers make calls that are held, then shut down
        except EngineError as exc:
            report.violations.append(f"engine stop before the last shutdowns: {exc}")
        in_flight["engine_down"] = ledger.in_flight
        _shut_down(while_down, patience)
    stuck_hosts = [h.name for h in hosts if h.thread.is_alive()]
    for name in stuck_hosts:
        report.violations.append(f"worker {name}: its host thread did not finish")
    if stuck_hosts:
        report.sections["stacks"] = _stacks()
    for host in hosts:
        if host.error is not None:
            report.violations.append(f"worker {host.name} failed: {host.error!r}")
        for t in host.stuck_callers:
            report.violations.append(f"worker {host.name}: caller {t} still inside a call")
        for r in host.rejections:
            report.violations.append(f"worker {host.name}: registration refused: {r}")
    if back is not True:
        report.violations.append(f"not connected again after the faults: {back}")

    final = {
        "threads": probes.settle(probes.threads, base["threads"]),
        "fds": probes.settle(probes.fds, base["fds"]),
        "rss_kib": probes.rss_kib(),
    }
    for problem in ledger.check():
        report.violations.append(problem)
    for key in ("threads", "fds"):
        if final[key] > base[key]:
            report.violations.append(
                f"soak: {key} {final[key]} after every worker shut down, {base[key]} before"
            )
    if after_faults["fds"] - connected["fds"] > 2 * len(hosts):
        report.violations.append(
            f"soak: {after_faults['fds']} fds after the faults, {connected['fds']} before"
        )
    summary = ledger.summary()
    report.sections["soak"] = {
        "seed": cfg.seed,
        "seconds": round(elapsed, 1),
        "calls_per_second": round(calls_before_stop / elapsed, 1),
        **summary,
        "faults_scheduled": len(faults),
        "faults_applied": dict(sorted(injector.applied.items())),
        "faults_without_effect": dict(injector.no_effect),
        "fault_failures": injector.failures,
        "engine_processes": engine.processes,
        "fault_log": fault_log,
        "workers": {
            h.name: {
                "runtime": h.runtime,
                "reconnects": h.reconnects,
                "states": dict(h.states),
                "shutdown_seconds": round(h.shutdown_seconds, 3),
            }
            for h in hosts
        },
        "resources": {
            "before_workers": base,
            "workers_connected": connected,
            "after_faults": after_faults,
            "after_shutdown": final,
        },
        "engine_after_first_shutdowns": engine_after,
        "ending": {
            "engine_up": _names(while_up),
            "engine_down": _names(while_down),
            "calls_in_flight": in_flight,
        },
    }
    for failure in injector.failures:
        report.violations.append(f"fault injection failed: {failure}")


def _figures() -> dict[str, int]:
    return {"threads": probes.threads(), "fds": probes.fds(), "rss_kib": probes.rss_kib()}


def _progress(ledger: Ledger, hosts: list[Host], t0: float, say: Say) -> None:
    elapsed = time.monotonic() - t0
    calls = len(ledger.calls)
    say(
        f"  {elapsed:5.0f}s calls {calls:,} ({calls / elapsed:,.0f}/s), in flight "
        f"{ledger.in_flight}, reconnects {sum(h.reconnects for h in hosts)}"
    )


def _ensure_engine(engine: EngineProcess, injector: Injector) -> None:
    try:
        if not engine.alive:
            engine.start()
        elif not engine.command("stats").get("running", False):
            engine.command("start")
    except EngineError as exc:
        injector.failures.append(f"engine after the faults: {exc}")


def _wait_connected(hosts: list[Host], patience: float) -> Any:
    deadline = time.monotonic() + patience
    while True:
        states = {
            h.name: h.worker.get_connection_state() if h.worker is not None else "none"
            for h in hosts
        }
        if all(s == "connected" for s in states.values()):
            return True
        if time.monotonic() > deadline:
            return states
        time.sleep(0.1)


def _shut_down(hosts: list[Host], patience: float) -> None:
    for host in hosts:
        host.stop.set()
    for host in hosts:
        host.thread.join(patience)


def _names(hosts: list[Host]) -> list[str]:
    return [h.name for h in hosts]


def _engine_after(engine: EngineProcess, remaining: set[str]) -> dict[str, Any]:
    """The engine's workers and counts once some workers left (waiting for it to see
    them go: at most 30 s)."""
    deadline = time.monotonic() + 30
    while True:
        try:
            names = sorted(w["name"] for w in engine.command("workers")["workers"])
            stats = engine.command("stats")
        except EngineError as exc:
            return {"error": str(exc)}
        if set(names) == remaining or time.monotonic() > deadline:
            return {**stats, "workers": names}
        time.sleep(0.1)


def _stacks() -> dict[str, str]:
    frames = sys._current_frames()
    return {
        t.name: "".join(traceback.format_stack(frames[t.ident])) if t.ident in frames else ""
        for t in threading.enumerate()
    }


# -- output ----------------------------------------------------------------------------


def _print_summary(report: Report, say: Say) -> None:
    say("")
    say("=" * 72)
    cycles = report.sections.get("cycles")
    if cycles:
        say(
            f"connect cycles: {cycles['cycles']} in {cycles['seconds']}s; growth after the "
            f"{cycles['warmup']}-cycle warm-up: "
            + ", ".join(f"{k} {v:+d}" for k, v in cycles["growth"].items())
        )
        say(f"  before {cycles['before']}")
        say(f"  after  {cycles['after']}")
    rounds = report.sections.get("reconnects")
    if rounds:
        say(
            f"reconnect rounds: {rounds['rounds']} drops per runtime in {rounds['seconds']}s, "
            "growth after the warm-up:"
        )
        for runtime, figures in rounds["runtimes"].items():
            say(
                f"  {runtime}: "
                + ", ".join(f"{k} {v:+d}" for k, v in figures["growth"].items())
                + f" ({figures['reconnects']} reconnects; after: {figures['after']})"
            )
    soak = report.sections.get("soak")
    if soak:
        say(
            f"soak: seed {soak['seed']}, {soak['seconds']}s, {soak['calls']:,} calls "
            f"({soak['calls_per_second']:,}/s), at most {soak['max_in_flight']} in flight"
        )
        say(f"  by action: {soak['by_action']}; by API: {soak['by_api']}")
        say("  outcomes: " + ", ".join(f"{k} {v:,}" for k, v in soak["outcomes"].items()))
        for action, outcomes in soak["outcomes_by_action"].items():
            say(f"    {action}: " + ", ".join(f"{k} {v:,}" for k, v in outcomes.items()))
        say(
            f"  handler runs {soak['handler_runs']:,} (still running at the end "
            f"{soak['handler_runs_still_running']}); void accepted {soak['void_accepted']:,}, "
            f"ran {soak['void_ran']:,}; enqueue receipts {soak['enqueue_receipts']:,}, ran "
            f"{soak['enqueue_ran']:,} ({soak['enqueue_ran_more_than_once']} more than once); "
            f"TIMEOUT after the handler answered: {soak['timeouts_after_handler_answered']}"
        )
        say(
            "  request handler returned, its caller got: "
            + ", ".join(
                f"{k} {v:,}" for k, v in soak["request_handler_returned_caller_got"].items()
            )
        )
        say(
            f"  faults applied {sum(soak['faults_applied'].values())}/"
            f"{soak['faults_scheduled']}: "
            + ", ".join(f"{k} {v}" for k, v in soak["faults_applied"].items())
            + f"; engine processes {soak['engine_processes']}"
        )
        if soak["faults_without_effect"]:
            say(f"  drops of a worker already disconnected: {soak['faults_without_effect']}")
        say(
            "  reconnects: "
            + ", ".join(f"{k} {v['reconnects']}" for k, v in soak["workers"].items())
        )
        res = soak["resources"]
        say(
            "  threads/fds/RSS MiB: "
            + "; ".join(
                f"{k} {v['threads']}/{v['fds']}/{v['rss_kib'] // 1024}" for k, v in res.items()
            )
        )
        ending = soak["ending"]
        say(
            f"  shut down with the engine up: {', '.join(ending['engine_up'])} "
            f"({ending['calls_in_flight']['engine_up']} calls in flight); with the engine "
            f"down: {', '.join(ending['engine_down'])} "
            f"({ending['calls_in_flight']['engine_down']} calls in flight)"
        )
        after = soak["engine_after_first_shutdowns"]
        say(
            f"  engine after the first shutdowns: workers {after.get('workers')}, pending "
            f"invocations {after.get('pending_invocations')}"
        )
    say(f"warnings logged: {sum(report.sections.get('warnings_logged', {}).values())}")
    if report.violations:
        say(f"FAILED: {len(report.violations)} violations")
        for v in report.violations[:50]:
            say(f"  - {v}")
        if len(report.violations) > 50:
            say(f"  ... {len(report.violations) - 50} more in the report")
    else:
        say("PASSED: every call had exactly one outcome, consistent with its handler; no leak")


# -- CLI -------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    d = Config()
    p = argparse.ArgumentParser(
        prog="python -m soak",
        description="Soak the SDK: workers on every runtime calling each other under engine "
        "faults, and connect/shutdown cycles; checks every call has exactly one outcome and "
        "nothing leaks.",
    )
    p.add_argument("--seconds", type=float, default=d.seconds, help="soak length (0: none)")
    p.add_argument("--faults", type=int, default=d.faults, help="engine faults in the soak")
    p.add_argument("--seed", type=int, default=None, help="replay a run's schedule and choices")
    p.add_argument("--cycles", type=int, default=d.cycles, help="connect cycles (0: none)")
    p.add_argument("--warmup", type=int, default=d.warmup, help="cycles before the baseline")
    p.add_argument(
        "--reconnects", type=int, default=d.reconnects, help="drops per runtime (0: none)"
    )
    p.add_argument("--timeout-ms", type=int, default=d.timeout_ms, help="timeout of each call")
    p.add_argument("--pace-ms", type=float, default=d.pace_ms, help="mean pause between calls")
    p.add_argument("--tasks", type=int, default=d.tasks, help="async callers per native worker")
    p.add_argument("--bound-tasks", type=int, default=d.bound_tasks)
    p.add_argument("--thread-callers", type=int, default=d.thread_callers)
    p.add_argument(
        "--kinds",
        default=",".join(d.kinds),
        help=f"fault kinds, comma-separated (default: {','.join(KINDS)}; also: "
        f"{','.join(EXTRA_KINDS)})",
    )
    p.add_argument("--out", default=None, help="directory for engine.log and report.json")
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = _parser().parse_args(argv)
    kinds = tuple(k for k in args.kinds.split(",") if k)
    unknown = set(kinds) - set(KINDS + EXTRA_KINDS)
    if unknown:
        _parser().error(f"unknown fault kinds {sorted(unknown)}; known: {KINDS + EXTRA_KINDS}")
    cfg = Config(
        seconds=args.seconds,
        faults=args.faults,
        seed=args.seed,
        cycles=args.cycles,
        warmup=args.warmup,
        reconnects=args.reconnects,
        timeout_ms=args.timeout_ms,
        pace_ms=args.pace_ms,
        tasks=args.tasks,
        bound_tasks=args.bound_tasks,
        thread_callers=args.thread_callers,
        kinds=kinds,
        out_dir=args.out,
    )
    report = run(cfg)
    return 0 if report.passed else 1
