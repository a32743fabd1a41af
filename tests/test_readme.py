"""The README's example of testing a worker with state and an HTTP route runs, as written.

The block is read from README.md (so the two cannot drift apart), written to a file of its own
and run by pytest in a child process, with the ``iii`` pytest plugin as a user has it.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HEADING = "### Testing a worker that uses state and HTTP"


def readme_block(heading: str) -> str:
    """The first ```python block under ``heading`` in README.md."""
    section = (ROOT / "README.md").read_text(encoding="utf-8").partition(f"\n{heading}\n")[2]
    assert section, f"README.md has no {heading!r}"
    match = re.search(r"^```python\n(.*?)^```$", section, re.S | re.M)
    assert match, f"no python block under {heading!r}"
    return match[1]


def test_the_state_and_http_example_passes(tmp_path: Path) -> None:
    source = readme_block(HEADING)
    assert "iii_engine.http_url" in source and "state::" in source
    (tmp_path / "test_from_readme.py").write_text(source, encoding="utf-8")
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_from_readme.py"],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed" in result.stdout
