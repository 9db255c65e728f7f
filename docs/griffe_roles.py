"""A griffe extension: the Sphinx roles of the docstrings as mkdocstrings cross-references.

The docstrings write references as Sphinx roles (``:class:`Objective```,
``:func:`~landscape.surfaces.directions.random```). Each becomes an autorefs reference to the
canonical path of its target: required (a target that the site does not document fails the
strict build) when the name resolves to an object of ``landscape`` or ``probes``, optional
(plain code, no link) for everything else (torch, NumPy, SciPy, the standard library).
``:math:`x``` becomes inline code and a ``.. math::`` block a ``tex`` code block (the site
loads no maths renderer: it is built and read offline).
"""

from __future__ import annotations

import html
import re
from typing import Any

import griffe

ROLE = re.compile(r":(?:py:)?(class|func|mod|meth|data|attr|exc|obj|math):`([^`]+)`")
MATH = re.compile(
    r"^(?P<indent>[ \t]*)\.\. math::[ \t]*(?P<first>.*)\n(?P<rest>(?:(?P=indent)[ \t]+\S.*\n?)*)",
    flags=re.M,
)
OURS = ("landscape", "probes")


def _walk(obj: griffe.Object) -> Any:
    yield obj
    for member in obj.members.values():
        if not member.is_alias and member.parent is obj:
            yield from _walk(member)


class SphinxRoles(griffe.Extension):
    """Rewrite the roles of every docstring once both packages are loaded."""

    def __init__(self) -> None:
        self._done: set[str] = set()

    def on_package(self, *, pkg: griffe.Module, loader: griffe.GriffeLoader, **_: Any) -> None:
        """Load the other package too (references cross), then rewrite both."""
        for name in OURS:
            if name not in loader.modules_collection:
                loader.load(name)
        for name in OURS:
            if name in self._done or name not in loader.modules_collection:
                continue
            self._done.add(name)
            root = loader.modules_collection[name]
            for obj in _walk(root):
                if obj.docstring is not None:
                    obj.docstring.value = self._rewrite(obj, obj.docstring.value, loader)

    def _canonical(self, path: str, loader: griffe.GriffeLoader) -> str | None:
        try:
            target = loader.modules_collection.get_member(path)
        except (KeyError, ValueError, AttributeError):
            return self._inherited(path, loader)
        try:
            return target.final_target.path if target.is_alias else target.path
        except griffe.AliasResolutionError:
            return None

    def _inherited(self, path: str, loader: griffe.GriffeLoader) -> str | None:
        """A member that a class inherits, documented under that class (``inherited_members``).

        For the classes made of parts (e.g. ``Store``), whose pages render inherited members.
        """
        owner, _, name = path.rpartition(".")
        cls = self._canonical(owner, loader) if owner else None
        try:
            obj = loader.modules_collection.get_member(cls) if cls else None
        except (KeyError, ValueError, AttributeError):
            return None
        if obj is None or not obj.is_class or name not in obj.inherited_members:
            return None
        return f"{cls}.{name}"

    def _resolve(self, obj: griffe.Object, name: str, loader: griffe.GriffeLoader) -> str | None:
        if name.split(".")[0] in OURS:
            return self._canonical(name, loader)
        if name.startswith("."):
            module = obj.module
            base = module.path if module.is_init_module else module.parent.path
            return self._canonical(f"{base}{name}", loader)
        head, _, rest = name.partition(".")
        scope: griffe.Object | None = obj
        while scope is not None:
            if head in scope.members or head in scope.imports:
                try:
                    path = scope.resolve(head)
                except griffe.NameResolutionError:
                    return None
                full = f"{path}.{rest}" if rest else path
                return self._canonical(full, loader) if full.split(".")[0] in OURS else full
            scope = scope.parent
        return None

    def _rewrite(self, obj: griffe.Object, text: str, loader: griffe.GriffeLoader) -> str:
        def sub(match: re.Match) -> str:
            role, target = match[1], match[2].strip()
            if role == "math":
                return f"`{target}`"
            short = target.startswith("~")
            name = target.lstrip("~!")
            title = name.rsplit(".", 1)[-1] if short else name
            if role in ("func", "meth") and not title.endswith(")"):
                title += "()"
            code = f"<code>{html.escape(title)}</code>"
            path = self._resolve(obj, name, loader)
            if path is not None and path.split(".")[0] in OURS:
                return f'<autoref identifier="{path}">{code}</autoref>'
            return f'<autoref identifier="{html.escape(path or name)}" optional>{code}</autoref>'

        def block(match: re.Match) -> str:
            indent = match["indent"]
            lines = [match["first"], *match["rest"].splitlines()]
            body = "".join(f"{indent}{line.strip()}\n" for line in lines if line.strip())
            return f"\n{indent}```tex\n{body}{indent}```\n\n"

        return ROLE.sub(sub, MATH.sub(block, text))
