"""Profiles of our SDK's hot paths: ``python -m bench.profile`` (``make bench-profile``).

* cProfile (single-threaded runtimes, so every call is seen): inbound tiny (64
  and 1 in flight) and 64 KB at 64 in flight on asyncio, and ``trigger_async``
  with 32 callers on asyncio.
* py-spy (``--gil``: samples of whichever thread holds the GIL, so the
  shares are of the Python work, not of waiting): inbound tiny on the thread runtime, and the
  sync ``trigger`` loop, where the work is split over the I/O thread, the
  handler threads and the caller.
* tracemalloc: where the bytes of a pending ``trigger_async`` call go.
* ``-X importtime``: where ``from iii import register_worker, InitOptions`` spends
  its time, by package and by module (median self time of several runs).

Writes ``bench/results/profile.md`` (and the raw ``.prof`` / py-spy files
next to it) and prints it.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import pstats
import re
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path
from typing import Any, Optional

from . import _proc
from ._proc import CANDIDATES, REPO, Run

OUT = REPO / "bench" / "results"


def _short(path: str) -> str:
    m = re.search(r"/lib/python3\.\d+/(?:site-packages/)?(.*)$", path)
    if m:
        return m.group(1)
    try:
        return str(Path(path).resolve().relative_to(REPO))
    except ValueError:
        return path


def _package(filename: str, name: str) -> str:
    if filename == "~":  # a builtin: group the syscalls and the JSON library
        if "epoll" in name or "select" in name:
            return "(waiting in epoll)"
        if "socket" in name:
            return "(socket syscalls)"
        if "orjson" in name:
            return "orjson"
        return "(builtins)"
    short = _short(filename)
    if short.startswith("asyncio/") or short.startswith("selectors"):
        return "asyncio (stdlib)"
    head = short.split("/", 1)[0]
    if head.endswith(".py"):
        return f"stdlib {head}"
    return head


def _fn_name(func: tuple[str, int, str]) -> str:
    filename, line, name = func
    if filename == "~":
        return name
    return f"{_short(filename)}:{line}({name})"


def cprofile_table(path: Path, per: str, top: int) -> tuple[str, int]:
    stats = pstats.Stats(str(path), stream=io.StringIO())
    raw: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    ops = 0
    for (filename, _line, name), (_cc, nc, _tt, _ct, _callers) in raw.items():
        if name == per and filename.endswith(("_common.py", "ours.py")):
            ops = max(ops, nc)
    ops = ops or 1
    total = sum(tt for (_cc, _nc, tt, _ct, _callers) in raw.values())
    by_package: Counter[str] = Counter()
    for (filename, _line, name), (_cc, _nc, tt, _ct, _callers) in raw.items():
        by_package[_package(filename, name)] += tt
    lines = [
        "Self time by package (what the time is spent in, us per operation):",
        "",
        "| package | us/op | share |",
        "|---|--:|--:|",
    ]
    for package, tt in by_package.most_common(12):
        lines.append(f"| {package} | {tt / ops * 1e6:.1f} | {tt / total * 100:.0f}% |")
    lines.append("")
    for title, index in (("self time (tottime)", 2), ("cumulative time (cumtime)", 3)):
        rows = sorted(raw.items(), key=lambda kv: kv[1][index], reverse=True)
        lines += [
            f"Top {top} by {title}; us per operation over {ops:,} operations "
            f"(profiled total {total / ops * 1e6:,.1f} us/op):",
            "",
            "| calls/op | self us/op | cum us/op | function |",
            "|--:|--:|--:|---|",
        ]
        for func, (_cc, nc, tt, ct, _callers) in rows[:top]:
            lines.append(
                f"| {nc / ops:.2f} | {tt / ops * 1e6:.1f} | {ct / ops * 1e6:.1f} "
                f"| `{_fn_name(func)}` |"
            )
        lines.append("")
    return "\n".join(lines), ops


def pyspy_table(path: Path, top: int) -> str:
    """Self and inclusive sample shares per function from py-spy's raw output."""
    self_c: Counter[str] = Counter()
    incl: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count_s = line.rpartition(" ")
        if not stack:
            continue
        count = int(count_s)
        frames = stack.split(";")
        total += count
        self_c[frames[-1]] += count
        for f in set(frames):
            incl[f] += count
    if not total:
        return "(no samples)\n"

    def clean(frame: str) -> str:
        # "func (path/to/file.py:123)"
        name, _, rest = frame.partition(" (")
        return f"{name} ({_short(rest.rstrip(')'))})" if rest else frame

    lines = [f"{total:,} samples.", "", "| self % | inclusive % | function |", "|--:|--:|---|"]
    for frame, n in self_c.most_common(top):
        lines.append(
            f"| {n / total * 100:.1f} | {incl[frame] / total * 100:.1f} | `{clean(frame)}` |"
        )
    lines += [
        "",
        f"Top {top} inclusive (SDK and its libraries only):",
        "",
        "| inclusive % | function |",
        "|--:|---|",
    ]
    ours = ("iii/", "iii_protocol/", "iii_transports/", "wsproto/", "anyio/", "concurrent/")
    mine = [(f, n) for f, n in incl.most_common() if any(f"({o}" in clean(f) for o in ours)]
    for frame, n in mine[:top]:
        lines.append(f"| {n / total * 100:.1f} | `{clean(frame)}` |")
    return "\n".join(lines) + "\n"


def _cprofile_run(
    name: str, cand: str, mode: str, standin: list[str], seconds: float, extra: tuple[str, ...]
) -> Path:
    prof = OUT / f"profile-{name}.prof"
    prof.unlink(missing_ok=True)
    lifetime = seconds + 1.0
    run = Run(
        candidate=CANDIDATES[cand],
        mode=mode,
        standin_args=[*standin, "--warmup", "0.5", "--duration", str(seconds)],
        extra=(*extra, "--profile", str(prof), "--lifetime", str(lifetime)),
        kill_worker_after_standin=False,
        timeout=seconds + 30,
    )
    if mode == "inbound":
        # The stand-in reports first; the worker exits after --lifetime and
        # writes its profile on the way out.
        run.kill_worker_after_standin = True
    run.wait_worker = lifetime + 10
    run.execute()
    return prof


def _pyspy_run(
    name: str, cand: str, mode: str, standin: list[str], seconds: float, extra: tuple[str, ...]
) -> Optional[Path]:
    exe = _proc.py_spy()
    if exe is None:
        return None
    out = OUT / f"profile-{name}.pyspy.txt"
    out.unlink(missing_ok=True)
    spy: list[subprocess.Popen[bytes]] = []

    def hook(pid: int) -> None:
        def start() -> None:
            threading.Event().wait(0.8)  # past import and connect
            spy.append(
                subprocess.Popen(
                    [
                        str(exe),
                        "record",
                        "--pid",
                        str(pid),
                        "-d",
                        str(int(seconds)),
                        "-r",
                        "250",
                        "-f",
                        "raw",
                        "-o",
                        str(out),
                        "--nonblocking",
                        "--gil",
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )

        threading.Thread(target=start, daemon=True).start()

    run = Run(
        candidate=CANDIDATES[cand],
        mode=mode,
        standin_args=[*standin, "--warmup", "0.5", "--duration", str(seconds + 0.8)],
        extra=(
            *extra,
            *(
                ("--warmup", "0.5", "--duration", str(seconds + 0.8))
                if mode.startswith("outbound")
                else ()
            ),
        ),
        kill_worker_after_standin=mode == "inbound",
        timeout=seconds + 30,
        profile_hook=hook,
    )
    run.execute()
    for p in spy:
        try:
            p.wait(15)
        except subprocess.TimeoutExpired:
            p.kill()
    return out if out.exists() else None


def allocation_sites() -> list[dict[str, Any]]:
    env_key = "BENCH_ALLOC_SITES"
    os.environ[env_key] = "1"
    try:
        run = Run(
            candidate=CANDIDATES["ours"],
            mode="pending",
            standin_args=["--mode", "pending"],
            kill_worker_after_standin=False,
            timeout=90,
        )
        out = run.execute()
    finally:
        os.environ.pop(env_key, None)
    return list(out["worker"].get("sites", []))


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__)
    p.add_argument("--seconds", type=float, default=3.0)
    p.add_argument("--top", type=int, default=15)
    cfg = p.parse_args(argv)
    OUT.mkdir(parents=True, exist_ok=True)
    sections: list[str] = [
        "# Profiles of our SDK",
        "",
        f"Commit {_git()}; {cfg.seconds:g} s of load each.  cProfile adds its own "
        "overhead and times wall clock (a syscall's time includes being preempted on a "
        "busy machine): compare shares, not absolute us.  py-spy runs with --gil (only "
        "the thread holding the GIL is sampled: the shares are of the Python work).",
        "",
    ]

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    cprofiles = [
        (
            "inbound-tiny-asyncio",
            "inbound tiny, 64 in flight, asyncio (async handler)",
            "ours",
            "inbound",
            ["--mode", "inbound", "--payload", "tiny", "--inflight", "64"],
            (),
            "aecho",
        ),
        (
            "inbound-tiny-1-asyncio",
            "inbound tiny, 1 in flight, asyncio (async handler)",
            "ours",
            "inbound",
            ["--mode", "inbound", "--payload", "tiny", "--inflight", "1"],
            (),
            "aecho",
        ),
        (
            "inbound-64k-asyncio",
            "inbound 64 KB, 64 in flight, asyncio",
            "ours",
            "inbound",
            ["--mode", "inbound", "--payload", "64k", "--inflight", "64"],
            (),
            "aecho",
        ),
        (
            "trigger-async-asyncio",
            "trigger_async, 32 callers, asyncio",
            "ours",
            "outbound-async",
            ["--mode", "outbound"],
            ("--warmup", "0.5", "--duration", str(cfg.seconds)),
            "call",
        ),
    ]
    for name, title, cand, mode, standin, extra, per in cprofiles:
        log(f"cProfile: {title}")
        prof = _cprofile_run(name, cand, mode, standin, cfg.seconds, extra)
        sections.append(f"## cProfile: {title}\n")
        if prof.exists():
            table, _ = cprofile_table(prof, per, cfg.top)
            sections.append(table)
        else:
            sections.append("(no profile written)\n")
    spies = [
        (
            "inbound-tiny-threads",
            "inbound tiny, 64 in flight, threads (async handler)",
            "ours-thread",
            "inbound",
            ["--mode", "inbound", "--payload", "tiny", "--inflight", "64"],
            (),
        ),
        (
            "inbound-sync-threads",
            "inbound tiny, 64 in flight, threads (sync handler)",
            "ours-thread",
            "inbound",
            ["--mode", "inbound", "--payload", "tiny", "--inflight", "64"],
            ("--handler", "sync"),
        ),
        (
            "trigger-sync-threads",
            "sync trigger, 1 caller, threads",
            "ours-thread",
            "outbound-sync",
            ["--mode", "outbound"],
            (),
        ),
    ]
    for name, title, cand, mode, standin, extra in spies:
        log(f"py-spy: {title}")
        out = _pyspy_run(name, cand, mode, standin, cfg.seconds, extra)
        sections.append(f"## py-spy: {title}\n")
        sections.append(pyspy_table(out, cfg.top) if out else "(py-spy unavailable)\n")
    log("tracemalloc: pending trigger_async")
    sites = allocation_sites()
    sections += [
        "## tracemalloc: one pending `trigger_async` (asyncio), by allocation site",
        "",
        "| bytes/call | blocks/call | site |",
        "|--:|--:|---|",
    ]
    for s in sites[: cfg.top]:
        sections.append(
            f"| {s['bytes_per_call']:.0f} | {s['blocks_per_call']:.2f} | `{_short(s['site'])}` |"
        )
    log("importtime: from iii import register_worker, InitOptions")
    sections += import_time_tables(cfg.top)
    text = "\n".join(sections) + "\n"
    (OUT / "profile.md").write_text(text)
    (OUT / "profile-sites.json").write_text(json.dumps(sites, indent=1))
    print(text)
    return 0


IMPORT_STATEMENT = "from iii import register_worker, InitOptions"


def import_time_tables(top: int, runs: int = 7) -> list[str]:
    """``python -X importtime`` of the documented import: median self time per
    module over ``runs`` fresh processes, summed by top-level package."""
    samples: dict[str, list[int]] = {}
    for _ in range(runs):
        proc = subprocess.run(
            [sys.executable, "-X", "importtime", "-c", IMPORT_STATEMENT],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=True,
        )
        for line in proc.stderr.splitlines():
            m = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|(\s*)(\S+)", line)
            if m:
                samples.setdefault(m.group(4), []).append(int(m.group(1)))
    median = {name: sorted(v)[len(v) // 2] for name, v in samples.items()}
    total = sum(median.values())
    by_package: Counter[str] = Counter()
    for name, us in median.items():
        by_package[name.split(".")[0]] += us
    out = [
        f"## importtime: `{IMPORT_STATEMENT}`",
        "",
        f"Median self time over {runs} processes, {total / 1000:.1f} ms in all"
        " (interpreter start-up not included).",
        "",
        "| package | ms | share |",
        "|---|--:|--:|",
    ]
    for package, us in by_package.most_common(top):
        out.append(f"| {package} | {us / 1000:.1f} | {us / total:.0%} |")
    out += ["", "| module | self ms |", "|---|--:|"]
    for name, us in sorted(median.items(), key=lambda kv: -kv[1])[:top]:
        out.append(f"| `{name}` | {us / 1000:.1f} |")
    return [*out, ""]


def _git() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


if __name__ == "__main__":
    sys.exit(main())
