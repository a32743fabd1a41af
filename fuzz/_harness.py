"""Shared plumbing for the atheris targets in this directory.

Each ``fuzz_<name>.py`` defines ``TestOneInput(data: bytes)`` (pure Python, no
atheris needed: the tests replay the corpus through it) and, when run as a
script, calls ``main`` here, which instruments the packages under test for
coverage and hands over to libFuzzer.  libFuzzer flags pass straight through::

    python fuzz/fuzz_decode.py -max_total_time=60
    python fuzz/fuzz_decode.py -runs=0 fuzz/corpus/decode/crash-...   # replay one input

With no corpus directory on the command line, the target's seed corpus
``fuzz/corpus/<name>/`` is used, and new inputs go to ``fuzz/.work/<name>/``
(not committed: keep only the ones that found a bug, as regression seeds).
``fuzz/<name>.dict``, when present, is passed as the libFuzzer dictionary.
"""

from __future__ import annotations

import gc
import sys
from collections.abc import Callable
from pathlib import Path

FUZZ_DIR = Path(__file__).resolve().parent
CORPUS_DIR = FUZZ_DIR / "corpus"
WORK_DIR = FUZZ_DIR / ".work"

#: Code that attrs and cattrs generate at run time (structure/unstructure hooks).
_GENERATED = ("<cattrs generated", "<attrs generated")


def corpus_files(name: str) -> list[Path]:
    """The committed seed inputs of one target, in a stable order."""
    folder = CORPUS_DIR / name
    return sorted(p for p in folder.iterdir() if p.is_file()) if folder.is_dir() else []


def _instrument(packages: tuple[str, ...]) -> int:
    import atheris

    count = 0
    seen: set[int] = set()
    for obj in gc.get_objects():
        code = getattr(obj, "__code__", None)
        module = getattr(obj, "__module__", None)
        generated = code is not None and str(code.co_filename).startswith(_GENERATED)
        if not generated and not (isinstance(module, str) and module.startswith(packages)):
            continue
        if code is None or id(code) in seen or hasattr(obj, "__self__"):
            continue
        if not callable(obj) or type(obj).__name__ != "function":
            continue
        seen.add(id(code))
        try:
            atheris.instrument_func(obj)
        except Exception as exc:  # pragma: no cover - reported, not fatal
            print(f"INFO: not instrumented: {obj!r}: {exc}", file=sys.stderr)
        else:
            count += 1
    return count


def main(name: str, test_one_input: Callable[[bytes], None], packages: tuple[str, ...]) -> None:
    """Run one target under libFuzzer with ``sys.argv`` as its flags."""
    try:
        import atheris
    except ImportError:
        sys.exit("atheris is not installed: pip install -e '.[fuzz]' (or make fuzz)")
    # Replay the seeds first: cattrs generates its hooks on first use, and only
    # code that exists can be instrumented.
    for path in corpus_files(name):
        try:
            test_one_input(path.read_bytes())
        except Exception as exc:
            sys.exit(f"seed {path} fails: {exc!r}")
    count = _instrument(packages)
    print(f"INFO: instrumented {count} functions in {', '.join(packages)}", file=sys.stderr)
    argv = list(sys.argv)
    if not any(not a.startswith("-") for a in argv[1:]):
        work = WORK_DIR / name
        work.mkdir(parents=True, exist_ok=True)
        argv += [str(work), str(CORPUS_DIR / name)]
    if not any(a.startswith("-artifact_prefix=") for a in argv):
        # Crashes land next to the work corpus, not in the current directory.
        (WORK_DIR / name).mkdir(parents=True, exist_ok=True)
        argv.append(f"-artifact_prefix={WORK_DIR / name}/")
    if not any(a.startswith("-max_len=") for a in argv):
        argv.append("-max_len=8192")  # big enough for every limit the targets configure
    if not any(a.startswith("-timeout=") for a in argv):
        argv.append("-timeout=30")  # one input running 30 s is a hang
    dictionary = FUZZ_DIR / f"{name}.dict"
    if dictionary.is_file() and not any(a.startswith("-dict=") for a in argv):
        argv.append(f"-dict={dictionary}")
    atheris.Setup(argv, test_one_input)
    atheris.Fuzz()
