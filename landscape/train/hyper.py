"""Checks of hyperparameter values, with one message format for the optimizers and schedules.

``"<owner>: <name> must be <what>, got <value>"``: TypeError for a wrong type, ValueError for a
wrong value. ``_CHECKS`` holds the check of every hyperparameter by name; :mod:`~.optim`,
:mod:`~.schedules` and :mod:`~.sign_descent` use them.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

__all__: list[str] = []


def _fail(
    owner: str, name: str, what: str, value: Any, exc: type[Exception] = ValueError
) -> NoReturn:
    raise exc(f"{owner}: {name} must be {what}, got {value!r}")


def _real(what: str, ok: Callable[[float], bool]) -> Callable[[str, str, Any], float]:
    def check(owner: str, name: str, value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            _fail(owner, name, what, value, TypeError)
        if not (math.isfinite(value) and ok(float(value))):
            _fail(owner, name, what, value)
        return float(value)

    return check


def _int(owner: str, name: str, value: Any, low: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        _fail(owner, name, f"an int >= {low}", value, TypeError)
    if value < low:
        _fail(owner, name, f"an int >= {low}", value)
    return int(value)


def _bool(owner: str, name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        _fail(owner, name, "a bool", value, TypeError)
    return value


def _betas(owner: str, name: str, value: Any) -> list[float]:
    what = "two numbers in [0, 1)"
    if isinstance(value, str) or not isinstance(value, Sequence) or len(value) != 2:
        _fail(owner, name, what, value, TypeError)
    return [
        _real(what, lambda v: 0 <= v < 1)(owner, f"{name}[{i}]", v) for i, v in enumerate(value)
    ]


def _milestones(owner: str, name: str, value: Any) -> list[int]:
    what = "a non-empty increasing list of ints >= 1"
    if isinstance(value, str) or not isinstance(value, Sequence) or not value:
        _fail(owner, name, what, value, TypeError)
    out = [_int(owner, f"{name}[{i}]", v, 1) for i, v in enumerate(value)]
    if any(a >= b for a, b in zip(out[:-1], out[1:], strict=True)):
        _fail(owner, name, what, value)
    return out


_CHECKS: dict[str, Callable[[str, str, Any], Any]] = {
    "lr": _real("a number > 0", lambda v: v > 0),
    "momentum": _real("a number in [0, 1)", lambda v: 0 <= v < 1),
    "dampening": _real("a number in [0, 1]", lambda v: 0 <= v <= 1),
    "weight_decay": _real("a number >= 0", lambda v: v >= 0),
    "eps": _real("a number > 0", lambda v: v > 0),
    "rho": _real("a number > 0", lambda v: v > 0),
    "eta": _real("a number >= 0", lambda v: v >= 0),
    "noise": _real("a number >= 0", lambda v: v >= 0),
    "gamma": _real("a number > 0", lambda v: v > 0),
    "min_factor": _real("a number in [0, 1]", lambda v: 0 <= v <= 1),
    "nesterov": _bool,
    "amsgrad": _bool,
    "adaptive": _bool,
    "betas": _betas,
    "warmup": _int,
    "step_size": lambda o, n, v: _int(o, n, v, 1),
    "milestones": _milestones,
}
