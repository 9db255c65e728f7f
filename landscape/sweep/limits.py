"""How much a sweep spec may ask for: runs and paths, counted before anything is expanded.

A spec's ``[grid]`` multiplies: ten keys of ten values are 10^10 runs, which expanding alone
would fill the memory. :func:`check_count` refuses a count beyond its limit in one line that
names the limit's environment variable (:data:`LIMITS`); a surface's points and memory are
:func:`landscape.surfaces.grid.check_size`'s.
"""

from __future__ import annotations

import os

__all__ = ["LIMITS", "check_count", "limit"]

LIMITS = {"runs": ("LANDSCAPE_MAX_RUNS", 10_000), "paths": ("LANDSCAPE_MAX_PATHS", 100_000)}
"""What is counted -> (the environment variable that sets its limit, the default limit)."""


def limit(what: str) -> int:
    """The limit on ``what`` (a key of :data:`LIMITS`): its variable's value, or the default.

    Raises:
        ValueError: the variable is set to something other than a positive integer.
    """
    env, default = LIMITS[what]
    text = os.environ.get(env)
    if text is None:
        return default
    if not text.strip().isdigit() or int(text) < 1:
        raise ValueError(f"{env} must be a positive integer, got {text!r}")
    return int(text)


def check_count(what: str, count: int, key: str, how: str) -> None:
    """Refuse ``count`` of ``what`` beyond its limit.

    Args:
        what: ``"runs"`` or ``"paths"``.
        count: how many the spec asks for.
        key: the spec's key that makes them (``grid``, ``paths.between``).
        how: how they come about, e.g. ``"1 [[runs]] x 10 x 10"``.

    Raises:
        ValueError: ``sweep spec: <key>: ...``, naming the count, the limit and the variable.

    Examples:
        >>> check_count("runs", 12, "grid", "3 x 4")
    """
    most = limit(what)
    if count > most:
        env = LIMITS[what][0]
        raise ValueError(
            f"sweep spec: {key}: {how} make {count} {what}, more than the limit of {most}; "
            f"set {env}={count} to allow them"
        )
