"""Argument checks shared by the data modules: one message format, ``fn: name must be ...``.

Private to the data modules and the probes.
"""

from __future__ import annotations

from typing import Any, TypeVar

import numpy as np

__all__: list[str] = []

_Choice = TypeVar("_Choice")


def _check_int(fn: str, name: str, value: Any, low: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise ValueError(f"{fn}: {name} must be an int >= {low}, got {value!r}")
    return int(value)


def _check_number(fn: str, name: str, value: Any, low: float = 0, strict: bool = False) -> float:
    ok = isinstance(value, (int, float, np.number)) and not isinstance(value, bool)
    if not ok or not (value > low if strict else value >= low):
        raise ValueError(
            f"{fn}: {name} must be a number {'>' if strict else '>='} {low}, got {value!r}"
        )
    return float(value)


def _check_fraction(fn: str, name: str, value: Any, closed: bool = True) -> float:
    ok = isinstance(value, (int, float, np.floating)) and not isinstance(value, bool)
    ok = ok and (0 <= value <= 1 if closed else 0 < value < 1)
    if not ok:
        interval = "[0, 1]" if closed else "(0, 1)"
        raise ValueError(f"{fn}: {name} must be in {interval}, got {value!r}")
    return float(value)


def _check_choice(fn: str, name: str, value: Any, choices: tuple[_Choice, ...]) -> _Choice:
    if value not in choices:
        raise ValueError(
            f"{fn}: {name} must be one of {', '.join(map(repr, choices))}, got {value!r}"
        )
    return value


def _check_positive(fn: str, name: str, value: Any) -> float:
    ok = isinstance(value, (int, float, np.number)) and not isinstance(value, bool)
    if not ok or not np.isfinite(value) or value <= 0:
        raise ValueError(f"{fn}: {name} must be a finite number > 0, got {value!r}")
    return float(value)
