"""The benchmark runner: ``python -m bench [--quick] [--repeats N] [--only KEY...]``.

Every measurement is a fresh stand-in process and a fresh candidate process.
Within a workload the candidates run interleaved (A B C, then C A B, ...) for
``--repeats`` rounds; each figure is the median over the rounds, and each
ratio is the median of per-round ratios (a candidate against the floor run
next to it), which is what survives a shared, noisy machine.

Writes ``bench/results/latest.json`` and ``bench/results/latest.md`` and
prints the markdown.  ``--readme`` also replaces the table in README.md
(between the ``bench:begin`` / ``bench:end`` markers).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Optional

from . import _proc
from ._proc import CANDIDATES, REPO, Run, RunError

RESULTS = REPO / "bench" / "results"


@dataclass(frozen=True)
class Workload:
    key: str
    title: str
    kind: str  # inbound | outbound | pending | cold
    mode: str  # the candidate's mode
    standin: tuple[str, ...]
    candidates: tuple[str, ...]
    floor: str = "floor"
    extra: tuple[str, ...] = ()
    labels: tuple[tuple[str, str], ...] = ()  # candidate labels specific to this workload

    def label(self, key: str) -> str:
        return dict(self.labels).get(key, CANDIDATES[key].label)


_OFFICIAL = ("official", "official-nootel")
# "ours-thread" is the documented path with no loop running (``register_worker``,
# ``async def`` handlers on the SDK's private loop); "ours-docs" is
# ``register_worker`` called inside the app's asyncio loop.
_IN_64 = ("floor", "floor-json", "ours", "ours-thread", "ours-docs", *_OFFICIAL)
_IN_1 = ("floor", "ours", "ours-thread", "ours-docs", *_OFFICIAL)


def _inbound(payload: str, inflight: int, cands: tuple[str, ...]) -> Workload:
    return Workload(
        key=f"in-{payload}-{inflight}",
        title=f"inbound {payload}, {inflight} in flight",
        kind="inbound",
        mode="inbound",
        standin=("--mode", "inbound", "--payload", payload, "--inflight", str(inflight)),
        candidates=cands,
    )


WORKLOADS: list[Workload] = [
    _inbound("tiny", 64, _IN_64),
    _inbound("1k", 64, _IN_64),
    _inbound("64k", 64, _IN_64),
    _inbound("tiny", 1, _IN_1),
    _inbound("1k", 1, _IN_1),
    _inbound("64k", 1, _IN_1),
    Workload(
        key="in-sync-64",
        title="inbound tiny, sync handlers, 64 in flight",
        kind="inbound",
        mode="inbound",
        standin=("--mode", "inbound", "--payload", "tiny", "--inflight", "64"),
        candidates=("floor", "ours-thread", "ours", *_OFFICIAL),
        extra=("--handler", "sync"),
        labels=(
            ("floor", "floor (reader thread + pool of 64 threads)"),
            ("ours", "ours (asyncio; sync handlers on worker threads)"),
        ),
    ),
    Workload(
        key="out-sync",
        title="outbound trigger (sync), 1 caller",
        kind="outbound",
        mode="outbound-sync",
        standin=("--mode", "outbound"),
        candidates=("floor", "ours-thread", *_OFFICIAL),
        labels=(("floor", "floor (blocking socket)"),),
    ),
    Workload(
        key="out-async",
        title="outbound trigger_async, 32 callers, asyncio",
        kind="outbound",
        mode="outbound-async",
        standin=("--mode", "outbound"),
        candidates=("floor", "ours", "ours-docs", *_OFFICIAL),
    ),
    Workload(
        key="out-async-trio",
        title="outbound trigger_async, 32 callers, trio",
        kind="outbound",
        mode="outbound-async",
        standin=("--mode", "outbound"),
        candidates=("floor-trio", "ours-trio"),
        floor="floor-trio",
    ),
    # The documented path (register_worker called inside the app's loop, then
    # trigger_async; async handlers) against the native one (register_worker_async):
    # here the "floor" column is the native path of the same library.
    Workload(
        key="docs-out-asyncio",
        title="documented vs native: trigger_async, 32 callers, asyncio",
        kind="outbound",
        mode="outbound-async",
        standin=("--mode", "outbound"),
        candidates=("ours", "ours-docs"),
        floor="ours",
    ),
    Workload(
        key="docs-out-trio",
        title="documented vs native: trigger_async, 32 callers, trio",
        kind="outbound",
        mode="outbound-async",
        standin=("--mode", "outbound"),
        candidates=("ours-trio", "ours-docs-trio"),
        floor="ours-trio",
    ),
    Workload(
        key="docs-in-asyncio",
        title="documented vs native: inbound tiny, 64 in flight, asyncio",
        kind="inbound",
        mode="inbound",
        standin=("--mode", "inbound", "--payload", "tiny", "--inflight", "64"),
        candidates=("ours", "ours-docs"),
        floor="ours",
    ),
    Workload(
        key="docs-in-trio",
        title="documented vs native: inbound tiny, 64 in flight, trio",
        kind="inbound",
        mode="inbound",
        standin=("--mode", "inbound", "--payload", "tiny", "--inflight", "64"),
        candidates=("ours-trio", "ours-docs-trio"),
        floor="ours-trio",
    ),
    Workload(
        key="mem",
        title="memory per pending call (10,000 pending trigger_async)",
        kind="pending",
        mode="pending",
        standin=("--mode", "pending"),
        candidates=("floor", "ours", *_OFFICIAL),
    ),
    Workload(
        key="cold",
        title="cold start: process start to the first answered invocation",
        kind="cold",
        mode="cold",
        standin=("--mode", "cold"),
        candidates=("floor", "ours-thread", "ours", *_OFFICIAL),
    ),
]


# -- measuring ---------------------------------------------------------------------


def _median(values: list[float]) -> Optional[float]:
    clean = [v for v in values if v is not None and v == v]
    return statistics.median(clean) if clean else None


def _metrics(w: Workload, out: dict[str, Any]) -> dict[str, Any]:
    si = out.get("standin", {})
    wk = out.get("worker", {})
    if w.kind == "inbound":
        return {
            "rate": si.get("rate"),
            "cpu_us": si.get("worker_cpu_per_op_us"),
            "p50_us": si.get("p50_us"),
            "p99_us": si.get("p99_us"),
            "worker_util": si.get("worker_cpu_util"),
            "standin_util": si.get("standin_cpu_util"),
            "standin_cpu_us": si.get("standin_cpu_per_op_us"),
        }
    if w.kind == "outbound":
        return {
            "rate": si.get("rate"),
            "cpu_us": si.get("worker_cpu_per_op_us"),
            "p50_us": wk.get("p50_us"),
            "p99_us": wk.get("p99_us"),
            "worker_util": si.get("worker_cpu_util"),
            "standin_util": si.get("standin_cpu_util"),
            "standin_cpu_us": si.get("standin_cpu_per_op_us"),
            "caller_rate": wk.get("caller_rate"),
        }
    if w.kind == "pending":
        return {
            "traced_per_call": wk.get("traced_per_call"),
            "rss_per_call": wk.get("rss_per_call"),
        }
    first = si.get("first_result_at")
    return {"cold_ms": (first - out["spawned_at"]) * 1000 if first else None}


def run_workload(
    w: Workload, cfg: argparse.Namespace, log: Callable[[str], None]
) -> dict[str, Any]:
    cands = [c for c in w.candidates if c in cfg.enabled]
    samples: dict[str, list[Optional[dict[str, Any]]]] = {c: [] for c in cands}
    errors: list[str] = []
    timing = ("--warmup", str(cfg.warmup), "--duration", str(cfg.duration))
    rounds = cfg.mem_repeats if w.kind == "pending" else cfg.repeats
    for rep in range(rounds):
        shift = rep % len(cands) if cands else 0
        order = cands[shift:] + cands[:shift]
        for key in order:
            run = Run(
                candidate=CANDIDATES[key],
                mode=w.mode,
                standin_args=[*w.standin, *timing],
                extra=(*w.extra, *(timing if w.kind == "outbound" else ())),
                kill_worker_after_standin=w.kind in ("inbound", "cold"),
                timeout=60.0 if w.kind == "pending" else 30.0,
            )
            try:
                metrics = _metrics(w, run.execute())
            except RunError as exc:
                errors.append(str(exc))
                log(f"  ! {exc}".splitlines()[0])
                samples[key].append(None)
                continue
            samples[key].append(metrics)
        log(f"  {w.key} round {rep + 1}/{rounds} done")
    return {"samples": samples, "errors": errors[:10]}


def summarise(w: Workload, raw: dict[str, Any]) -> dict[str, Any]:
    samples: dict[str, list[Optional[dict[str, Any]]]] = raw["samples"]
    floor = samples.get(w.floor, [])
    out: dict[str, Any] = {}
    for key, runs in samples.items():
        ok = [r for r in runs if r]
        if not ok:
            out[key] = {"runs": 0}
            continue
        summary: dict[str, Any] = {"runs": len(ok)}
        for metric in ok[0]:
            summary[metric] = _median([r.get(metric) for r in ok])

        def paired(
            metric: str,
            runs: list[Optional[dict[str, Any]]] = runs,
            op: Callable[[float, float], float] = lambda a, b: a / b,
        ) -> Optional[float]:
            ratios = []
            for mine, base in zip(runs, floor, strict=False):
                if mine and base and mine.get(metric) and base.get(metric):
                    ratios.append(op(mine[metric], base[metric]))
            return _median(ratios)

        if w.kind in ("inbound", "outbound"):
            summary["rate_x_floor"] = paired("rate")
            summary["cpu_x_floor"] = paired("cpu_us")
            summary["p50_x_floor"] = paired("p50_us")
            # The SDK's own cost per operation: its CPU per op minus the floor's
            # (same round), i.e. what the library adds to a bare client.
            summary["overhead_us"] = paired("cpu_us", op=lambda a, b: a - b)
        elif w.kind == "cold":
            summary["cold_x_floor"] = paired("cold_ms")
        out[key] = summary
    return out


def import_times(cfg: argparse.Namespace, log: Callable[[str], None]) -> dict[str, Any]:
    """``python -I -c "import iii"`` minus ``python -I -c pass``, per interpreter."""
    tmp = tempfile.mkdtemp(prefix="iii-bench-import-")
    env = dict(os.environ, HOME=tmp, PYTHONDONTWRITEBYTECODE="1")
    env.pop("PYTHONPATH", None)
    ours, official = _proc.PY, str(_proc.official_python())
    cmds: dict[str, list[str]] = {
        "ours": [ours, "-I", "-c", "import iii"],
        # ``import iii`` may defer its submodules; a worker needs these names.
        "ours-names": [ours, "-I", "-c", "from iii import register_worker, InitOptions"],
        "ours-pass": [ours, "-I", "-c", "pass"],
        "floor": [ours, "-I", "-c", "import asyncio, socket, uuid, orjson"],
    }
    if "official" in cfg.enabled:
        cmds["official"] = [official, "-I", "-c", "import iii"]
        cmds["official-names"] = [
            official,
            "-I",
            "-c",
            "from iii import register_worker, InitOptions",
        ]
        cmds["official-pass"] = [official, "-I", "-c", "pass"]
    times: dict[str, list[float]] = {k: [] for k in cmds}
    for cmd in cmds.values():  # warm the page cache
        subprocess.run(cmd, cwd=tmp, env=env, check=True)
    for _ in range(cfg.import_runs):
        for key, cmd in cmds.items():
            t0 = time.perf_counter()
            subprocess.run(cmd, cwd=tmp, env=env, check=True)
            times[key].append((time.perf_counter() - t0) * 1000)
    med = {k: statistics.median(v) for k, v in times.items()}
    result: dict[str, Any] = {"runs": cfg.import_runs, "median_ms": med}
    result["ours_ms"] = med["ours"] - med["ours-pass"]
    result["ours_names_ms"] = med["ours-names"] - med["ours-pass"]
    result["floor_ms"] = med["floor"] - med["ours-pass"]
    if "official" in med:
        result["official_ms"] = med["official"] - med["official-pass"]
        result["official_names_ms"] = med["official-names"] - med["official-pass"]
    # What ``import iii`` loads, by self time (one -X importtime run).
    proc = subprocess.run(
        [ours, "-I", "-X", "importtime", "-c", "from iii import register_worker, InitOptions"],
        cwd=tmp,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    rows = []
    top_level: dict[str, int] = {}
    for line in proc.stderr.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        self_us, cum_us, raw_name = line[len("import time:") :].split("|")
        name = raw_name.strip()
        rows.append((int(self_us), int(cum_us), name))
        if len(raw_name) - len(raw_name.lstrip()) == 1:  # imported by the -c code itself
            top_level[name] = int(cum_us)
    rows.sort(reverse=True)
    result["modules"] = len(rows)
    result["top_self_us"] = [
        {"module": n, "self_us": s, "cumulative_us": c} for s, c, n in rows[:12]
    ]
    result["top_level_cumulative_us"] = dict(sorted(top_level.items(), key=lambda kv: -kv[1])[:12])
    log(
        f"  import: ours {result['ours_ms']:.1f} ms (names {result['ours_names_ms']:.1f} ms), "
        f"official {result.get('official_ms', 0):.1f} ms"
    )
    return result


# -- reporting ---------------------------------------------------------------------


def _f(value: Optional[float], fmt: str = "{:,.0f}") -> str:
    return "n/a" if value is None else fmt.format(value)


def _x(value: Optional[float]) -> str:
    return "n/a" if value is None else f"{value:.2f}x"


# Issue 14's targets: (label, workload, candidate, metric, op, threshold).
TARGETS: list[tuple[str, str, str, str, str, float]] = [
    (
        "inbound tiny, 64 in flight, asyncio: CPU/op <= 15 us",
        "in-tiny-64",
        "ours",
        "cpu_us",
        "<=",
        15,
    ),
    (
        "inbound tiny, 64 in flight, asyncio >= 0.5x floor",
        "in-tiny-64",
        "ours",
        "rate_x_floor",
        ">=",
        0.5,
    ),
    (
        "inbound tiny, 64 in flight, sync handlers (threads): CPU/op <= 20 us",
        "in-sync-64",
        "ours-thread",
        "cpu_us",
        "<=",
        20,
    ),
    ("inbound 1 KB, 64 in flight: CPU/op <= 20 us", "in-1k-64", "ours", "cpu_us", "<=", 20),
    ("inbound 64 KB, 64 in flight >= 0.9x floor", "in-64k-64", "ours", "rate_x_floor", ">=", 0.9),
    ("inbound tiny, 1 in flight: p50 <= 1.5x floor", "in-tiny-1", "ours", "p50_x_floor", "<=", 1.5),
    (
        "documented path (register_worker, no loop), tiny, 64 in flight: CPU/op <= 20 us",
        "in-tiny-64",
        "ours-thread",
        "cpu_us",
        "<=",
        20,
    ),
    (
        "documented path (register_worker, no loop), tiny, 1 in flight: p50 <= 1.5x floor",
        "in-tiny-1",
        "ours-thread",
        "p50_x_floor",
        "<=",
        1.5,
    ),
    (
        "documented path (register_worker in the loop), tiny, 64 in flight: CPU/op <= 20 us",
        "in-tiny-64",
        "ours-docs",
        "cpu_us",
        "<=",
        20,
    ),
    (
        "trigger_async, 32 callers, asyncio >= 0.85x floor",
        "out-async",
        "ours",
        "rate_x_floor",
        ">=",
        0.85,
    ),
    (
        "documented trigger_async (register_worker in the loop) >= 0.85x floor",
        "out-async",
        "ours-docs",
        "rate_x_floor",
        ">=",
        0.85,
    ),
    ("trigger_async trio >= 0.8x floor", "out-async-trio", "ours-trio", "rate_x_floor", ">=", 0.8),
    ("sync trigger, 1 caller >= 0.8x floor", "out-sync", "ours-thread", "rate_x_floor", ">=", 0.8),
    (
        "documented path CPU/op <= 1.3x native, trigger_async asyncio",
        "docs-out-asyncio",
        "ours-docs",
        "cpu_x_floor",
        "<=",
        1.3,
    ),
    (
        "documented path CPU/op <= 1.3x native, trigger_async trio",
        "docs-out-trio",
        "ours-docs-trio",
        "cpu_x_floor",
        "<=",
        1.3,
    ),
    (
        "documented path CPU/op <= 1.3x native, inbound asyncio",
        "docs-in-asyncio",
        "ours-docs",
        "cpu_x_floor",
        "<=",
        1.3,
    ),
    (
        "documented path CPU/op <= 1.3x native, inbound trio",
        "docs-in-trio",
        "ours-docs-trio",
        "cpu_x_floor",
        "<=",
        1.3,
    ),
    (
        "memory per pending call <= 1,500 B (tracemalloc)",
        "mem",
        "ours",
        "traced_per_call",
        "<=",
        1500,
    ),
    ("cold start <= 1.4x floor (threads)", "cold", "ours-thread", "cold_x_floor", "<=", 1.4),
    ("cold start <= 1.4x floor (asyncio)", "cold", "ours", "cold_x_floor", "<=", 1.4),
]


def evaluate(summary: dict[str, Any], imports: Optional[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for label, wk, cand, metric, op, limit in TARGETS:
        if wk not in summary:
            continue
        mine = summary.get(wk, {}).get(cand, {})
        value = mine.get(metric)
        ok = None if value is None else (value >= limit if op == ">=" else value <= limit)
        cpu_x = mine.get("cpu_x_floor")
        rows.append(
            {
                "target": label,
                "value": value,
                "limit": limit,
                "op": op,
                "pass": ok,
                "metric": metric,
                # What the ratio would be if both were CPU-bound on a core of their own.
                "cpu_based": 1 / cpu_x if metric == "rate_x_floor" and cpu_x else None,
            }
        )
    if imports is not None:
        value = imports.get("ours_ms")
        rows.append(
            {
                "target": "import iii <= 50 ms",
                "value": value,
                "limit": 50.0,
                "op": "<=",
                "pass": None if value is None else value <= 50.0,
                "metric": "ms",
            }
        )
        value = imports.get("ours_names_ms")
        rows.append(
            {
                "target": "from iii import register_worker, InitOptions <= 60 ms",
                "value": value,
                "limit": 60.0,
                "op": "<=",
                "pass": None if value is None else value <= 60.0,
                "metric": "ms",
            }
        )
    return rows


def _fmt_target(row: dict[str, Any]) -> str:
    v = row["value"]
    if v is None:
        return "n/a"
    if row["metric"] in ("rate_x_floor", "cold_x_floor", "cpu_x_floor", "p50_x_floor"):
        return f"{v:.2f}x"
    if row["metric"] == "cpu_us":
        return f"{v:.1f} us"
    if row["metric"] == "traced_per_call":
        return f"{v:,.0f} B"
    return f"{v:.1f} ms"


def markdown(result: dict[str, Any]) -> str:
    meta = result["meta"]
    lines = [
        f"Run {meta['date']} on {meta['machine']}; Python {meta['python']}; commit "
        f"{meta['commit']}; {meta['repeats']} interleaved rounds, windows of "
        f"{meta['duration']} s after {meta['warmup']} s warm-up; load average "
        f"{meta['load_before']} before, {meta['load_after']} after.  "
        "Ratios are medians of per-round ratios against the floor run in the same round.",
        "",
    ]
    summary = result["summary"]
    by_key = {w.key: w for w in WORKLOADS}
    if any(by_key[k].kind in ("inbound", "outbound") for k in summary):
        lines += [
            "| workload | candidate | ops/s | x floor | CPU us/op | CPU x floor "
            "| SDK overhead us/op | p50 us | p50 x floor | p99 us | worker CPU | stand-in CPU |",
            "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
        ]
    for wk, per in summary.items():
        w = by_key[wk]
        if w.kind not in ("inbound", "outbound"):
            continue
        for key in w.candidates:
            s = per.get(key)
            if s is None:
                continue
            if not s.get("runs"):
                lines.append(f"| {w.title} | {w.label(key)} | failed | | | | | | | | | |")
                continue
            lines.append(
                f"| {w.title} | {w.label(key)} | {_f(s.get('rate'))} | "
                f"{_x(s.get('rate_x_floor'))} | {_f(s.get('cpu_us'), '{:,.1f}')} | "
                f"{_x(s.get('cpu_x_floor'))} | {_f(s.get('overhead_us'), '{:+,.1f}')} | "
                f"{_f(s.get('p50_us'))} | {_x(s.get('p50_x_floor'))} | {_f(s.get('p99_us'))} | "
                f"{_f((s.get('worker_util') or 0) * 100, '{:.0f}%')} | "
                f"{_f((s.get('standin_util') or 0) * 100, '{:.0f}%')} |"
            )
    if "mem" in summary:
        lines += [
            "",
            "| memory per pending call (10,000 pending; each a Task awaiting one call) "
            "| tracemalloc | over the floor | RSS |",
            "|---|--:|--:|--:|",
        ]
        base = (summary["mem"].get("floor") or {}).get("traced_per_call")
        for key in by_key["mem"].candidates:
            s = summary["mem"].get(key)
            if s and s.get("runs"):
                traced = s.get("traced_per_call")
                net = traced - base if traced is not None and base is not None else None
                lines.append(
                    f"| {by_key['mem'].label(key)} | {_f(traced)} B | {_f(net)} B | "
                    f"{_f(s.get('rss_per_call'))} B |"
                )
    if "cold" in summary:
        lines += [
            "",
            "| cold start (spawn to first answered invocation) | ms | x floor |",
            "|---|--:|--:|",
        ]
        for key in by_key["cold"].candidates:
            s = summary["cold"].get(key)
            if s and s.get("runs"):
                lines.append(
                    f"| {by_key['cold'].label(key)} | {_f(s.get('cold_ms'), '{:.0f}')} | "
                    f"{_x(s.get('cold_x_floor'))} |"
                )
    imports = result.get("imports")
    if imports:
        lines += [
            "",
            f"| import time (median of {imports['runs']}, minus `python -c pass`) | ms |",
            "|---|--:|",
            f"| `import iii` (ours) | {imports['ours_ms']:.1f} |",
            f"| `from iii import register_worker, InitOptions` (ours) | "
            f"{imports['ours_names_ms']:.1f} |",
        ]
        if "official_ms" in imports:
            lines.append(f"| `import iii` (official 0.25.0) | {imports['official_ms']:.1f} |")
            lines.append(
                f"| `from iii import register_worker, InitOptions` (official 0.25.0) | "
                f"{imports['official_names_ms']:.1f} |"
            )
        lines.append(
            f"| `import asyncio, socket, uuid, orjson` (floor) | {imports['floor_ms']:.1f} |"
        )
    lines += [
        "",
        "| target (ours) | measured | status | CPU-based ratio (floor CPU/op / ours) |",
        "|---|--:|---|--:|",
    ]
    for row in result["targets"]:
        status = {True: "pass", False: "**FAIL**", None: "n/a"}[row["pass"]]
        cpu = _x(row.get("cpu_based")) if row.get("cpu_based") else ""
        lines.append(f"| {row['target']} | {_fmt_target(row)} | {status} | {cpu} |")
    checks = result.get("standin_check")
    if checks:
        lines += [
            "",
            "Stand-in check (its own CPU per operation in the floor's runs; capacity = 1 / that):",
            "",
            "| workload | stand-in us/op | stand-in capacity ops/s | floor ops/s | "
            "fastest SDK ops/s |",
            "|---|--:|--:|--:|--:|",
        ]
        for c in checks:
            lines.append(
                f"| {c['title']} | {_f(c['standin_us'], '{:.1f}')} | {_f(c['capacity'])} | "
                f"{_f(c['floor_rate'])} | {_f(c['best_sdk_rate'])} |"
            )
    if result.get("errors"):
        lines += ["", f"{len(result['errors'])} run(s) failed; see latest.json."]
    return "\n".join(lines) + "\n"


def standin_check(summary: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for w in WORKLOADS:
        if w.kind not in ("inbound", "outbound") or w.key not in summary:
            continue
        floor = summary[w.key].get(w.floor) or {}
        us = floor.get("standin_cpu_us")
        sdk_rates = [
            s.get("rate")
            for k, s in summary[w.key].items()
            if not k.startswith("floor") and s.get("rate")
        ]
        rows.append(
            {
                "workload": w.key,
                "title": w.title,
                "standin_us": us,
                "capacity": 1e6 / us if us else None,
                "floor_rate": floor.get("rate"),
                "best_sdk_rate": max(sdk_rates) if sdk_rates else None,
            }
        )
    return rows


def _git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "iii", "iii_protocol", "iii_transports"],
            cwd=REPO,
            capture_output=True,
            text=True,
        ).stdout.strip()
        return out + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def update_readme(table: str) -> None:
    path = REPO / "README.md"
    text = path.read_text()
    begin, end = "<!-- bench:begin -->", "<!-- bench:end -->"
    if begin not in text or end not in text:
        raise SystemExit("README.md has no bench:begin / bench:end markers")
    head, _, rest = text.partition(begin)
    _, _, tail = rest.partition(end)
    path.write_text(f"{head}{begin}\n{table}{end}{tail}")


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--quick", action="store_true", help="1 round, short windows")
    p.add_argument("--repeats", type=int, default=None)
    p.add_argument("--warmup", type=float, default=None)
    p.add_argument("--duration", type=float, default=None)
    p.add_argument("--import-runs", type=int, default=None)
    p.add_argument(
        "--mem-repeats",
        type=int,
        default=None,
        help="rounds of the memory workload (default 3: tracemalloc is exact)",
    )
    p.add_argument(
        "--only", nargs="*", default=None, help="workload keys (prefixes), plus 'import'"
    )
    p.add_argument("--no-official", action="store_true")
    p.add_argument("--readme", action="store_true", help="update the README table")
    p.add_argument("--out", default=str(RESULTS / "latest"), help="output path without suffix")
    cfg = p.parse_args(argv)
    quick = cfg.quick
    cfg.repeats = cfg.repeats or (1 if quick else 5)
    cfg.warmup = cfg.warmup if cfg.warmup is not None else 0.2
    cfg.duration = cfg.duration if cfg.duration is not None else (0.4 if quick else 0.5)
    cfg.mem_repeats = cfg.mem_repeats or (1 if quick else min(3, cfg.repeats))
    cfg.import_runs = cfg.import_runs or (3 if quick else 11)

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    cfg.enabled = set(CANDIDATES)
    problem = (
        None if cfg.no_official else _proc.ensure_venv(_proc.OFFICIAL_VENV, _proc.OFFICIAL_SPEC)
    )
    if cfg.no_official or problem:
        if problem:
            log(f"official SDK unavailable, skipped: {problem}")
        cfg.enabled -= set(_OFFICIAL)

    def wanted(key: str) -> bool:
        return cfg.only is None or any(key.startswith(o) for o in cfg.only)

    started = time.monotonic()
    load_before = " ".join(f"{x:.2f}" for x in os.getloadavg())
    raw: dict[str, Any] = {}
    summary: dict[str, Any] = {}
    errors: list[str] = []
    for w in WORKLOADS:
        if not wanted(w.key):
            continue
        log(f"{w.key}: {w.title}")
        raw[w.key] = run_workload(w, cfg, log)
        errors += raw[w.key]["errors"]
        summary[w.key] = summarise(w, raw[w.key])
    imports = import_times(cfg, log) if wanted("import") else None
    result: dict[str, Any] = {
        "meta": {
            "date": _dt.datetime.now().isoformat(timespec="seconds"),
            "machine": f"{platform.machine()} {os.cpu_count()} CPUs",
            "python": platform.python_version(),
            "commit": _git_commit(),
            "repeats": cfg.repeats,
            "warmup": cfg.warmup,
            "duration": cfg.duration,
            "load_before": load_before,
            "load_after": " ".join(f"{x:.2f}" for x in os.getloadavg()),
            "seconds": round(time.monotonic() - started, 1),
            "official": _proc.OFFICIAL_SPEC if set(_OFFICIAL) <= cfg.enabled else None,
            "command": "make bench",
        },
        "summary": summary,
        "imports": imports,
        "targets": evaluate(summary, imports),
        "standin_check": standin_check(summary),
        "raw": {k: v["samples"] for k, v in raw.items()},
        "errors": errors,
        "candidates": {k: c.label for k, c in CANDIDATES.items()},
    }
    table = markdown(result)
    out = os.path.abspath(cfg.out)
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out + ".json", "w") as fh:
        json.dump(result, fh, indent=1)
    with open(out + ".md", "w") as fh:
        fh.write(table)
    if cfg.readme:
        update_readme(table)
    print(table)
    log(f"done in {result['meta']['seconds']} s; wrote {out}.json and {out}.md")
    return 0
