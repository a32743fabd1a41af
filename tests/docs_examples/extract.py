"""Copy the Python examples of the official docs into ``snippets/``, or check the copies.

The docs live in the ``iii-hq/iii`` repository (``docs/0-19-0/``, the release this SDK
targets). This script is run by hand, never by the tests (which must not need that
repository)::

    python tests/docs_examples/extract.py /path/to/iii-hq/iii[.git] [--commit REV] [--check]

Each ```` ```python ```` block of the pages below becomes ``snippets/<page>_<n>.py``
(``n`` counts the page's Python blocks from 1): a header comment naming the page, the block
and the commit, then the block's code as published. The only change is that the
indentation the page's ``<Tab>`` markup adds to every line of a block is removed
(``textwrap.dedent``). ``--check`` writes nothing and fails if a copy differs.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import textwrap
from pathlib import Path

HERE = Path(__file__).resolve().parent
SNIPPETS = HERE / "snippets"
RELEASE = "docs/0-19-0"
PAGES = (
    "quickstart",
    "creating-workers/channels",
    "creating-workers/functions",
    "creating-workers/triggers",
    "creating-workers/workers",
    "using-iii/functions",
    "using-iii/triggers",
)
#: The line after which a snippet file holds the docs' code, unchanged.
MARKER = "# --- the docs' code, unchanged, from the next line on ---"

_FENCE = re.compile(
    r"^(?P<indent>[ \t]*)```python[ \t]*\n(?P<body>.*?)^(?P=indent)```[ \t]*$", re.S | re.M
)
_HEADING = re.compile(r"^#{2,4} (?P<title>.+)$", re.M)


def snippet_name(page: str, n: int) -> str:
    return f"{page.replace('-', '_').replace('/', '_')}_{n}"


def blocks(text: str) -> list[tuple[str, str]]:
    """The page's Python blocks, dedented, each with the heading it sits under."""
    found = []
    for match in _FENCE.finditer(text):
        headings = _HEADING.findall(text, 0, match.start())
        found.append((headings[-1] if headings else "", textwrap.dedent(match["body"])))
    return found


def render(page: str, n: int, total: int, heading: str, commit: str, code: str) -> str:
    header = (
        f"# From the official iii docs: {RELEASE}/{page}.mdx, Python block {n} of {total}\n"
        f'# (under "{heading}"), iii-hq/iii at commit {commit[:12]}.\n'
        "# How it runs: tests/docs_examples/manifest.py. Regenerate or check with\n"
        "# tests/docs_examples/extract.py.\n"
    )
    return f"{header}{MARKER}\n{code}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("repo", help="a clone (or bare git directory) of iii-hq/iii")
    parser.add_argument("--commit", default="HEAD")
    parser.add_argument("--check", action="store_true", help="compare, write nothing")
    args = parser.parse_args(argv)

    def git(*cmd: str) -> str:
        return subprocess.run(
            ["git", "-C", args.repo, *cmd], check=True, capture_output=True, text=True
        ).stdout

    commit = git("rev-parse", args.commit).strip()
    expected: dict[str, str] = {}
    for page in PAGES:
        found = blocks(git("show", f"{commit}:{RELEASE}/{page}.mdx"))
        for n, (heading, code) in enumerate(found, 1):
            expected[snippet_name(page, n)] = render(page, n, len(found), heading, commit, code)
    present = {p.stem: p.read_text(encoding="utf-8") for p in SNIPPETS.glob("*.py")}
    if args.check:
        problems = sorted(
            [
                f"{name}: differs from the docs"
                for name, text in expected.items()
                if name in present and present[name] != text
            ]
            + [f"{name}: missing" for name in expected.keys() - present.keys()]
            + [f"{name}: not in the docs" for name in present.keys() - expected.keys()]
        )
        print("\n".join(problems) or f"{len(expected)} snippets match {commit[:12]}")
        return 1 if problems else 0
    SNIPPETS.mkdir(exist_ok=True)
    for name, text in expected.items():
        (SNIPPETS / f"{name}.py").write_text(text, encoding="utf-8")
    print(f"wrote {len(expected)} snippets from {commit[:12]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
