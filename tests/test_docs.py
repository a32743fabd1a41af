"""The API reference: ``make docs`` builds it without a warning and every public
name of ``iii``, ``iii.testing``, ``iii_protocol``, ``iii_transports`` and
``iii_observability`` has a docstring (``docs/build.py --check``)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import textwrap
import types
from pathlib import Path

import pytest

pytest.importorskip("pdoc")

ROOT = Path(__file__).resolve().parents[1]


def _build_module() -> types.ModuleType:
    spec = importlib.util.spec_from_file_location("_docs_build", ROOT / "docs" / "build.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_reference_builds_without_warnings_and_every_public_name_is_documented(
    tmp_path: Path,
) -> None:
    # Its own interpreter: the build adjusts a few objects for pdoc.
    proc = subprocess.run(
        [sys.executable, str(ROOT / "docs" / "build.py"), "--check", "--output", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    pages = {p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.html")}
    for page in (
        "iii.html",
        "iii/testing.html",
        "iii_protocol.html",
        "iii_protocol/strategies.html",
        "iii_transports.html",
        "iii_transports/blocking.html",
        "iii_observability.html",
    ):
        assert page in pages
    assert not any("/_" in page or page.startswith("_") for page in pages), pages
    assert "register_worker" in (tmp_path / "iii.html").read_text()


def test_the_check_finds_missing_docstrings(tmp_path: Path) -> None:
    import pdoc.doc

    build = _build_module()
    source = textwrap.dedent(
        '''
        """A module."""

        __all__ = ["Documented", "Bare", "bare", "VALUE", "OTHER"]

        #: Documented with a comment, the way this project documents variables.
        VALUE = 1
        OTHER = 2


        class Documented:
            """Has a docstring."""

            def method(self):
                """So does this."""

            def undocumented_method(self):
                pass


        class Bare:
            pass


        def bare():
            pass
        '''
    )
    path = tmp_path / "docs_check_sample.py"
    path.write_text(source)
    sys.path.insert(0, str(tmp_path))
    try:
        module = importlib.import_module("docs_check_sample")
        comments = build._comment_docstrings(module)
        assert comments == {
            "VALUE": "Documented with a comment, the way this project documents variables."
        }
        doc = pdoc.doc.Module(module)
        value = doc.get("VALUE")
        assert value is not None
        value.docstring = comments["VALUE"]
        assert build.undocumented({"docs_check_sample": doc}) == {
            "docs_check_sample.Bare",
            "docs_check_sample.bare",
            "docs_check_sample.OTHER",
            "docs_check_sample.Documented.undocumented_method",
        }
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("docs_check_sample", None)
