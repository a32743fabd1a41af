"""Build the API reference (``make docs``) from the docstrings, with pdoc.

    python docs/build.py [--output DIR] [--check]

Writes HTML into ``docs/api/`` (git-ignored) for every public module of the
shipped packages: a module is public when no part of its dotted name starts
with ``_``.  Any warning pdoc raises (an annotation it cannot resolve, a name
in ``__all__`` that does not exist, ...) fails the build.

``--check`` also fails when a public name has no docstring: every name a public
module exports (its ``__all__``, else its names without a leading ``_``) and
every public method or property of an exported class.  Data attributes are
described in their class's ``Attributes:`` section and are not checked one by
one.

Two conventions of this project that pdoc does not know are taught to it here:
``#:`` comments above an assignment document that variable (the Sphinx
convention), and a re-exported alias (``iii.IIIInvocationError``) carries the
docstring of the assignment that defined it.
"""

from __future__ import annotations

import argparse
import ast
import importlib
import inspect
import pkgutil
import sys
import textwrap
import types
import typing
import warnings
from pathlib import Path
from typing import Any

import pdoc
import pdoc.doc
import pdoc.doc_ast
import pdoc.render

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("iii", "iii_protocol", "iii_transports", "iii_observability")

#: Public names allowed to lack a docstring (none: every public name has one).
#: The check fails on a stale entry.
KNOWN_GAPS: frozenset[str] = frozenset()


def public_modules() -> list[str]:
    """Every module of the shipped packages with no ``_``-prefixed part, in order."""
    names: list[str] = []
    for top in PACKAGES:
        package = importlib.import_module(top)
        names.append(top)
        for info in pkgutil.walk_packages(package.__path__, f"{top}."):
            if not any(part.startswith("_") for part in info.name.split(".")):
                names.append(info.name)
    return names


def all_modules() -> list[str]:
    """Every module of the shipped packages, private ones included."""
    names: list[str] = []
    for top in PACKAGES:
        package = importlib.import_module(top)
        names.append(top)
        names += [
            info.name
            for info in pkgutil.walk_packages(package.__path__, f"{top}.")
            if info.name.rpartition(".")[2] != "__main__"
        ]
    return names


# -- teaching pdoc this project's conventions ----------------------------------------


def _comment_docstrings(obj: types.ModuleType | type) -> dict[str, str]:
    """``#:`` comment blocks right above a (class or module level) assignment."""
    source = pdoc.doc_ast.get_source(obj)
    if not source:
        return {}
    source = textwrap.dedent(source)
    tree = ast.parse(source)
    body = tree.body
    if isinstance(obj, type) and body and isinstance(body[0], ast.ClassDef):
        body = body[0].body
    lines = source.splitlines()
    found: dict[str, str] = {}
    for node in body:
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            name = node.target.id
        elif (
            isinstance(node, ast.Assign)
            and len(node.targets) == 1
            and isinstance(node.targets[0], ast.Name)
        ):
            name = node.targets[0].id
        else:
            continue
        comment: list[str] = []
        i = node.lineno - 2
        while i >= 0 and lines[i].strip().startswith("#:"):
            comment.insert(0, lines[i].strip()[2:].strip())
            i -= 1
        if comment:
            found[name] = "\n".join(comment)
    return found


_walk_tree = pdoc.doc_ast.walk_tree


def _walk_tree_with_comments(obj: types.ModuleType | type) -> pdoc.doc_ast.AstInfo:
    info = _walk_tree(obj)
    comments = _comment_docstrings(obj)
    if not comments:
        return info
    merged = {**comments, **info.var_docstrings}  # a docstring string wins
    return pdoc.doc_ast.AstInfo(merged, info.func_docstrings, info.annotations)


#: Stands for the recursive ``JSON`` alias in annotations pdoc evaluates, so they
#: render as ``dict[str, JSON]`` instead of the alias unrolled.
_JSON_NAME = typing.NewType("JSON", object)


def _resolve_wrapped_annotations(module: types.ModuleType) -> None:
    """hypothesis's decorators give their wrappers hypothesis's own globals, so
    pdoc cannot resolve the annotations we wrote: resolve them in our module."""
    for value in vars(module).values():
        wrapped = getattr(value, "__wrapped__", None)
        if not inspect.isfunction(value) or wrapped is None or value.__module__ != module.__name__:
            continue
        if value.__globals__ is vars(module):
            continue
        signature = inspect.signature(value)
        namespace = {**vars(typing), **vars(module), "JSON": _JSON_NAME}

        def resolve(annotation: Any, namespace: dict[str, Any] = namespace) -> Any:
            if annotation is inspect.Parameter.empty:
                return annotation
            return typing._eval_type(  # type: ignore[attr-defined]
                typing.ForwardRef(annotation) if isinstance(annotation, str) else annotation,
                namespace,
                None,
            )

        resolved = signature.replace(
            parameters=[
                p.replace(annotation=resolve(p.annotation)) for p in signature.parameters.values()
            ],
            return_annotation=resolve(signature.return_annotation),
        )
        # pdoc documents the function ``__wrapped__`` points to, with our signature.
        value.__signature__ = wrapped.__signature__ = resolved  # type: ignore[attr-defined]


def _load(names: list[str]) -> dict[str, pdoc.doc.Module]:
    for name in names:
        module = importlib.import_module(name)
        # Names loaded lazily (``iii.__getattr__``) must be there for pdoc to see.
        for attr in getattr(module, "__all__", ()):
            getattr(module, attr)
        # The recursive ``JSON`` alias refers to itself by name: make that name
        # resolvable wherever the alias is used in an annotation.
        if "JSONObject" in vars(module) and "JSON" not in vars(module):
            module.JSON = _JSON_NAME  # type: ignore[attr-defined]
        _resolve_wrapped_annotations(module)
    return {name: pdoc.doc.Module.from_name(name) for name in names}


def _inherit_alias_docstrings(
    documented: dict[str, pdoc.doc.Module], everything: dict[str, pdoc.doc.Module]
) -> None:
    """A re-exported variable without a docstring takes the one of its definition."""
    known: dict[tuple[str, int], str] = {}
    for module in everything.values():
        for var in module.variables:
            if var.docstring:
                value = getattr(module.obj, var.name, None)
                known.setdefault((var.name, id(value)), var.docstring)
    for module in documented.values():
        for var in module.variables:
            if not var.docstring:
                value = getattr(module.obj, var.name, None)
                var.docstring = known.get((var.name, id(value)), "")


# -- the build and the check ------------------------------------------------------------


def _exported(module: pdoc.doc.Module) -> list[pdoc.doc.Doc[Any]]:
    names = getattr(module.obj, "__all__", None)
    return [
        member
        for name, member in module.members.items()
        if not isinstance(member, pdoc.doc.Module)
        and (name in names if names is not None else not name.startswith("_"))
    ]


def undocumented(modules: dict[str, pdoc.doc.Module]) -> set[str]:
    """Full names of public names without a docstring."""
    missing: set[str] = set()
    for module in modules.values():
        for member in _exported(module):
            if not member.docstring.strip():
                missing.add(member.fullname)
            if isinstance(member, pdoc.doc.Class):
                for sub in member.own_members:
                    if sub.name.startswith("_") or isinstance(sub, pdoc.doc.Variable):
                        continue
                    if not sub.docstring.strip():
                        missing.add(sub.fullname)
    return missing


def build(output: Path, *, check: bool = False) -> list[str]:
    """Write the reference into ``output``; the problems found (empty: success)."""
    sys.path.insert(0, str(ROOT))
    pdoc.doc_ast.walk_tree = _walk_tree_with_comments  # type: ignore[assignment]
    pdoc.render.configure(docformat="google", footer_text="iii-sdk")
    problems: list[str] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        # pdoc's own call into typing on Python 3.13 (not about our sources).
        warnings.filterwarnings(
            "ignore", category=DeprecationWarning, message=".*'type_params' parameter"
        )
        documented = _load(public_modules())
        everything = {**_load(all_modules()), **documented}
        _inherit_alias_docstrings(documented, everything)
        for module in documented.values():
            html = pdoc.render.html_module(module, documented)
            path = output / f"{module.fullname.replace('.', '/')}.html"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(html)
        (output / "index.html").write_text(pdoc.render.html_index(documented))
        (output / "search.js").write_text(pdoc.render.search_index(documented))
    problems += [f"pdoc warning: {w.message}" for w in caught]
    if check:
        missing = undocumented(documented)
        # A name re-exported elsewhere is reported once, where users meet it first.
        problems += [f"no docstring: {name}" for name in sorted(missing - KNOWN_GAPS)]
        fixed = {gap for gap in KNOWN_GAPS if gap not in missing}
        problems += [
            f"KNOWN_GAPS entry now documented, remove it: {name}" for name in sorted(fixed)
        ]
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.partition("\n")[0])
    parser.add_argument("--output", type=Path, default=ROOT / "docs" / "api")
    parser.add_argument("--check", action="store_true", help="fail on undocumented names")
    args = parser.parse_args(argv)
    problems = build(args.output, check=args.check)
    for problem in problems:
        print(problem, file=sys.stderr)
    if problems:
        print(f"docs: {len(problems)} problem(s)", file=sys.stderr)
        return 1
    print(f"docs: API reference written to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
