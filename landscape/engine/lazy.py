"""Packages whose names are imported on first use.

A package that re-exports names from submodules of different weights (result types that need
NumPy only beside algorithms that need torch) attaches them lazily, so that importing the light
ones does not import the heavy ones: reading a file needs no torch.

Examples:
    >>> __getattr__, __dir__ = attach(__name__, ["objective"], {"Objective": "objective"})
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable, Mapping
from typing import Any

__all__ = ["attach"]


def attach(
    package: str, submodules: Iterable[str] = (), names: Mapping[str, str] | None = None
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for ``package`` that import on first use.

    Args:
        package: the package's ``__name__``.
        submodules: submodules exposed as attributes (``package.sub``), relative names or
            ``"attribute:dotted.module"`` for a module kept elsewhere.
        names: attribute -> the submodule (relative, or dotted from the root) that defines it.

    Returns:
        The module-level ``__getattr__`` and ``__dir__`` of ``package``.
    """
    modules: dict[str, str] = {}
    for entry in submodules:
        attr, _, where = entry.partition(":")
        modules[attr] = where or f".{attr}"
    defined = {
        k: (v if v.startswith("landscape") or v.startswith("probes") else f".{v}")
        for k, v in (names or {}).items()
    }
    public = sorted({*modules, *defined})

    def __getattr__(name: str) -> Any:
        if name in modules:
            return importlib.import_module(modules[name], package)
        if name in defined:
            return getattr(importlib.import_module(defined[name], package), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__() -> list[str]:
        return public

    return __getattr__, __dir__
