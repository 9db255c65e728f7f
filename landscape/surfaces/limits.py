"""How large a surface may be: its points and the memory of its grids, checked before anything.

A surface's grids are held in memory whole (:data:`~landscape.surfaces.result.METRICS` in
float64 and the ``done`` mask), so :func:`check_size` refuses a grid too large before any point
is computed, in one line naming the size, the limit and the environment variable that raises
it: :data:`MAX_POINTS` points (``LANDSCAPE_MAX_POINTS``), half the machine's memory
(``LANDSCAPE_MAX_SURFACE_BYTES``). :func:`landscape.surfaces.grid.surface`, the CLI and the
sweeps call it.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from landscape.surfaces.result import METRICS

__all__ = ["MAX_BYTES_ENV", "MAX_POINTS", "MAX_POINTS_ENV", "check_size"]

MAX_POINTS = 1_000_000
"""The most points a surface may have unless ``LANDSCAPE_MAX_POINTS`` says otherwise."""
MAX_POINTS_ENV = "LANDSCAPE_MAX_POINTS"
"""The environment variable that overrides :data:`MAX_POINTS`."""
MAX_BYTES_ENV = "LANDSCAPE_MAX_SURFACE_BYTES"
"""The most bytes a surface's grids may take in memory (default: half the machine's memory)."""


def _limit(env: str, default: float | None) -> float | None:
    text = os.environ.get(env)
    if text is None:
        return default
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{env} must be a number, got {text!r}") from None
    if not value > 0:
        raise ValueError(f"{env} must be a number > 0, got {text!r}")
    return value


def _bytes(n: float) -> str:
    return f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n / 2**20:.1f} MiB"


def _memory() -> int | None:
    try:
        return int(os.sysconf("SC_PHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):  # not on this system
        return None


def check_size(shape: Sequence[int], what: str = "surface") -> int:
    """Refuse a grid too large to hold, before anything is computed; its number of points.

    The limits: :data:`MAX_POINTS` points (``LANDSCAPE_MAX_POINTS`` raises it), and grids
    (``METRICS`` in float64 and the ``done`` mask) within half the machine's memory
    (``LANDSCAPE_MAX_SURFACE_BYTES`` sets another number of bytes).

    Args:
        shape: the grid's shape, ``(nx,)`` or ``(nx, ny)``.
        what: who asks, for the message.

    Raises:
        ValueError: one line naming the size, the limit and the variable that raises it.

    Examples:
        >>> check_size((21, 21))
        441
    """
    points = 1
    for n in shape:
        points *= int(n)
    dims = " x ".join(str(int(n)) for n in shape)
    most = _limit(MAX_POINTS_ENV, MAX_POINTS)
    if most is not None and points > most:
        raise ValueError(
            f"{what}: a {dims} grid has {points} points, more than the limit of {most:.0f}; "
            f"set {MAX_POINTS_ENV}={points} to allow it"
        )
    memory = _memory()
    need = points * (8 * len(METRICS) + 1)
    most = _limit(MAX_BYTES_ENV, memory / 2 if memory else None)
    if most is not None and need > most:
        raise ValueError(
            f"{what}: the grids of a {dims} surface need {_bytes(need)} of memory, "
            f"more than the limit of {_bytes(most)}"
            + (" (half this machine's)" if MAX_BYTES_ENV not in os.environ else "")
            + f"; set {MAX_BYTES_ENV}={need} to allow it"
        )
    return points
