"""Fail on a public name of ``landscape`` or ``probes`` that has no docstring.

Ruff's ``D`` rules hold every public function, class and method to a docstring, and
mkdocstrings renders what it finds, but neither fails on an exported *constant* (``MODELS``,
``FORMAT_VERSION``, ...) without one, nor follows the names a package re-exports lazily. This
walks every ``__all__`` from the two packages down through the subpackages and modules they
export, finds where each name is defined (with griffe, which also reads the docstrings of
attributes: a string right after the assignment) and lists the names without a docstring.

Run it: ``python docs/check_docstrings.py`` (exit status 1 and one line per name when any is
missing); ``tests/test_docs.py`` and ``make docs`` run it.
"""

from __future__ import annotations

import importlib
import inspect
import sys
from pathlib import Path
from typing import Any

import griffe

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("landscape", "probes")
sys.path.insert(0, str(ROOT))  # the checkout's packages, also when run as a script


def _load(packages: tuple[str, ...], root: Path) -> griffe.GriffeLoader:
    loader = griffe.GriffeLoader(search_paths=[str(root)], docstring_parser=None)
    for name in packages:
        loader.load(name)
    loader.resolve_aliases(implicit=False, external=False)
    return loader


def _defined(
    collection: Any, module_path: str, name: str, value: Any, packages: tuple[str, ...]
) -> Any:
    """The griffe object that defines ``module_path.name`` (None: not found)."""
    module = collection.get_member(module_path)
    member = module.members.get(name)
    if member is not None:
        try:
            return member.final_target if member.is_alias else member
        except (griffe.AliasResolutionError, griffe.CyclicAliasError):
            pass
    if inspect.ismodule(value):
        return collection.get_member(value.__name__)
    where, qualname = getattr(value, "__module__", None), getattr(value, "__qualname__", None)
    if isinstance(where, str) and isinstance(qualname, str) and where.split(".")[0] in packages:
        try:
            return collection.get_member(f"{where}.{qualname}")
        except KeyError:
            pass
    for sub in module.modules.values():  # a constant re-exported lazily from a submodule
        found = sub.members.get(name)
        if found is not None and not found.is_alias:
            return found
    return None


def missing(packages: tuple[str, ...] = PACKAGES, root: Path = ROOT) -> list[str]:
    """Every exported name without a docstring, as ``module.name: why``.

    Args:
        packages: the importable packages to walk from (their ``__all__`` down).
        root: the folder that holds them (griffe reads the sources there).
    """
    collection = _load(packages, root).modules_collection
    problems: list[str] = []
    seen: set[str] = set()
    queue = list(packages)
    while queue:
        path = queue.pop(0)
        if path in seen:
            continue
        seen.add(path)
        module = importlib.import_module(path)
        if not (module.__doc__ or "").strip():
            problems.append(f"{path}: module without a docstring")
        for name in getattr(module, "__all__", ()):
            if name.startswith("__"):
                continue
            value = getattr(module, name)
            if inspect.ismodule(value):
                if value.__name__.split(".")[0] in packages:
                    queue.append(value.__name__)
                continue
            obj = _defined(collection, path, name, value, packages)
            if obj is None:
                problems.append(f"{path}.{name}: not found in the source")
            elif not (obj.docstring and obj.docstring.value.strip()):
                problems.append(f"{path}.{name}: no docstring (defined at {obj.path})")
    return sorted(set(problems))


def main() -> int:
    """Print the names without a docstring; exit status 1 when there is any."""
    problems = missing()
    for line in problems:
        print(line, file=sys.stderr)
    if problems:
        print(f"{len(problems)} public name(s) without a docstring", file=sys.stderr)
        return 1
    print("every public name has a docstring")
    return 0


if __name__ == "__main__":
    sys.exit(main())
