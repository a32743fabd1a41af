"""Run every fuzz target for a bounded time (``make fuzz``), or briefly (``make test``).

    python fuzz/run.py                      # each target 60 s, new inputs kept in fuzz/.work/
    python fuzz/run.py --seconds 600 engine # one target, 10 minutes
    python fuzz/run.py --smoke              # 3 s each, in parallel; no atheris: replay the corpus

With atheris installed each target runs under libFuzzer (one after another, or
``--parallel``) and the summary shows executions, executions per second and
coverage.  A crash stops with a non-zero exit; its input is in
``fuzz/.work/<target>/crash-*`` (add it to ``fuzz/corpus/<target>/`` as
``regress-<what>`` with the fix).  Without atheris, ``--smoke`` replays the
seed corpus through each target in plain Python instead; the full run needs
atheris (``pip install -e '.[fuzz]'``).
"""

from __future__ import annotations

import argparse
import importlib
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

FUZZ = Path(__file__).resolve().parent
sys.path.insert(0, str(FUZZ))

from _harness import CORPUS_DIR, WORK_DIR, corpus_files  # noqa: E402

TARGETS = sorted(p.stem.removeprefix("fuzz_") for p in FUZZ.glob("fuzz_*.py"))
_STATUS = re.compile(rb"^#(\d+)\s+(?:DONE|pulse|NEW|REDUCE|INITED)\s+cov: (\d+) ft: (\d+).*", re.M)


def _has_atheris() -> bool:
    try:
        import atheris  # noqa: F401
    except ImportError:
        return False
    return True


def _replay(name: str) -> str:
    module = importlib.import_module(f"fuzz_{name}")
    start = time.perf_counter()
    seeds = corpus_files(name)
    for path in seeds:
        try:
            module.TestOneInput(path.read_bytes())
        except BaseException as exc:
            raise SystemExit(f"{name}: seed {path.name} fails: {exc!r}") from exc
    return f"{name}: replayed {len(seeds)} seeds in {time.perf_counter() - start:.2f}s (no atheris)"


def _command(name: str, seconds: int, work: Path) -> list[str]:
    work.mkdir(parents=True, exist_ok=True)
    return [
        sys.executable,
        str(FUZZ / f"fuzz_{name}.py"),
        f"-max_total_time={seconds}",
        "-print_final_stats=1",
        f"-artifact_prefix={work}/",
        str(work),
        str(CORPUS_DIR / name),
    ]


def _summary(name: str, seconds: float, log: bytes) -> str:
    status = _STATUS.findall(log)
    execs = re.search(rb"stat::number_of_executed_units:\s*(\d+)", log)
    rate = re.search(rb"stat::average_exec_per_sec:\s*(\d+)", log)
    peak = re.search(rb"stat::peak_rss_mb:\s*(\d+)", log)
    cov, ft = (status[-1][1].decode(), status[-1][2].decode()) if status else ("?", "?")
    return (
        f"{name}: {execs.group(1).decode() if execs else '?'} runs in {seconds:.0f}s, "
        f"{rate.group(1).decode() if rate else '?'} exec/s, cov {cov}, ft {ft}, "
        f"peak rss {peak.group(1).decode() if peak else '?'} MB"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("targets", nargs="*", help=f"some of {', '.join(TARGETS)} (default: all)")
    parser.add_argument("--seconds", type=int, default=60, help="per target (default 60)")
    parser.add_argument("--smoke", action="store_true", help="a brief run for CI")
    parser.add_argument("--parallel", action="store_true", help="all targets at once")
    args = parser.parse_args()
    targets = args.targets or TARGETS
    unknown = sorted(set(targets) - set(TARGETS))
    if unknown:
        parser.error(f"unknown targets: {', '.join(unknown)}")
    if not _has_atheris():
        if not args.smoke:
            print("atheris is not installed: pip install -e '.[fuzz]'", file=sys.stderr)
            return 2
        for name in targets:
            print(_replay(name))
        return 0
    seconds = min(args.seconds, 3) if args.smoke else args.seconds
    parallel = args.parallel or args.smoke
    # A smoke run starts from the seeds alone and keeps nothing but crashes.
    root = WORK_DIR / "smoke" if args.smoke else WORK_DIR
    if args.smoke:
        shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True, exist_ok=True)
    failed: list[str] = []
    jobs: list[tuple[str, float, subprocess.Popen[bytes], Path]] = []
    for name in targets:
        log = root / f"{name}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                _command(name, seconds, root / name), stdout=out, stderr=subprocess.STDOUT
            )
        jobs.append((name, time.monotonic(), proc, log))
        if not parallel:
            _finish(jobs[-1], failed)
    if parallel:
        for job in jobs:
            _finish(job, failed)
    if failed:
        print(f"crashes in: {', '.join(failed)} (logs and inputs in {root})", file=sys.stderr)
        return 1
    return 0


def _finish(job: tuple[str, float, subprocess.Popen[bytes], Path], failed: list[str]) -> None:
    name, started, proc, log = job
    code = proc.wait()
    text = log.read_bytes()
    print(_summary(name, time.monotonic() - started, text), flush=True)
    if code != 0:
        failed.append(name)
        print(text[-4000:].decode(errors="replace"), file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
