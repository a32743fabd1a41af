"""A venv with the ``motia`` framework (PyPI) on top of OUR SDK, once.

motia depends on ``iii-sdk``; it is installed with ``--no-deps``, next to its
other dependencies and this repository installed editable in place of the
official SDK.  The venv lives in ``.cache/peers/motia-<version>-<checkout>``
(one per checkout: the editable install points at it) with an ``.installed``
marker written only after the install succeeded, under the peers' lock.

Run ``python -m tests.conformance._motia`` to install (or check) by hand.
"""

from __future__ import annotations

import hashlib
import shutil
import sys
import time
from pathlib import Path

from ._install import CACHE, REPO, PeerInstallError, _locked, _marker_ok, _run, _write_marker

MOTIA_VERSION = "1.0.4rc1"
#: motia's own dependencies, without iii-sdk (ours replaces it).
MOTIA_DEPS = ("pydantic>=2.0", "python-dotenv>=1.0", "tomli>=2.0; python_version < '3.11'")


def motia_dir(root: Path = CACHE) -> Path:
    checkout = hashlib.sha1(str(REPO.resolve()).encode()).hexdigest()[:10]
    return root / f"motia-{MOTIA_VERSION}-{checkout}"


def _spec() -> str:
    return (
        f"motia=={MOTIA_VERSION} +ours({REPO.resolve()}) "
        f"python{sys.version_info[0]}.{sys.version_info[1]}"
    )


def ensure_motia(root: Path = CACHE) -> Path:
    """Install whatever is missing and return the venv's python.

    Raises:
        PeerInstallError: PyPI could not be reached (or pip failed).
    """
    directory = motia_dir(root)
    python = directory / "bin" / "python"
    spec = _spec()
    if _marker_ok(directory, spec):
        return python
    with _locked(root / ".lock"):
        if _marker_ok(directory, spec):
            return python
        started = time.monotonic()
        shutil.rmtree(directory, ignore_errors=True)
        _run([sys.executable, "-m", "venv", str(directory)], "creating the motia venv")
        pip = [str(python), "-m", "pip", "install", "--quiet", "--no-input", "--timeout", "60"]
        _run([*pip, "--no-deps", f"motia=={MOTIA_VERSION}"], f"pip install motia=={MOTIA_VERSION}")
        _run([*pip, *MOTIA_DEPS], "pip install motia's dependencies")
        _run([*pip, "-e", str(REPO)], "pip install -e (this SDK)")
        _write_marker(directory, spec, started)
    return python


if __name__ == "__main__":
    t0 = time.monotonic()
    try:
        print(f"motia venv ready in {time.monotonic() - t0:.1f}s: {ensure_motia()}")
    except PeerInstallError as exc:
        print(exc)
        raise SystemExit(1) from None
