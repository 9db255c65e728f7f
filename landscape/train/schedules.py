"""Learning-rate schedules of an optimizer spec: the factor at each step, and its ``LambdaLR``.

The schedule and warm-up of an :class:`~landscape.train.optim.OptimizerSpec` (named in
:data:`~landscape.train.optim.SCHEDULES`) as a function of the optimizer step
(:func:`lr_factor`) and as a scheduler for the training loop (:func:`make_scheduler`), which
steps it once per optimizer step.

Examples:
    >>> spec = optimizer_spec("sgd", lr=0.05, momentum=0.9, schedule="cosine", warmup=10)
    >>> scheduler = make_scheduler(spec, make_optimizer(spec, params), total_steps=1000)

References: Goyal et al. 2017 (linear warm-up); Loshchilov and Hutter 2017 (cosine, SGDR).
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable
from typing import Any

import torch

from landscape.train.hyper import _fail, _int
from landscape.train.optim import OptimizerSpec

__all__ = ["lr_factor", "make_scheduler"]


def lr_factor(spec: OptimizerSpec, total_steps: int | None) -> Callable[[int], float]:
    """The multiplier of the peak learning rate at optimizer step t (t = 0 for the first step).

    With W = ``warmup`` steps and the schedule run on s = t - W over S = total_steps - W steps:

    - t < W: (t + 1) / W (linear warm-up, the schedule is at its start, 1);
    - t >= W: ``constant``: 1; ``step``: gamma ** (s // step_size); ``multistep``:
      gamma ** (number of milestones <= s); ``cosine``: m + (1 - m) (1 + cos(pi min(s, S) / S)) / 2
      with m = min_factor: 1 at s = 0, (1 + m) / 2 at s = S / 2, m from s = S on.

    Step sizes and milestones count steps after the warm-up.

    Args:
        spec: the optimizer spec (its ``schedule`` and ``warmup``).
        total_steps: the number of optimizer steps of the run; None if unknown (not for cosine).

    Returns:
        ``factor(t) -> float``.

    Examples:
        >>> f = lr_factor(optimizer_spec("sgd", schedule="cosine", warmup=10), 110)
        >>> f(0), f(9), f(10), f(60), f(110)
        (0.1, 1.0, 1.0, 0.5, 0.0)

    References: Goyal et al. 2017 (warm-up); Loshchilov and Hutter 2017 (cosine, SGDR).
    """
    return _lr_factor(spec, total_steps, "lr_factor")


def _lr_factor(spec: Any, total_steps: Any, fn: str) -> Callable[[int], float]:
    if not isinstance(spec, OptimizerSpec):
        _fail(fn, "spec", "an OptimizerSpec", spec, TypeError)
    if total_steps is not None:
        total_steps = _int(fn, "total_steps", total_steps, 1)
    sched, warmup = spec.hyper["schedule"], spec.hyper["warmup"]
    name = sched["name"]
    horizon = 0
    if name == "cosine":
        if total_steps is None:
            raise ValueError(
                f"{fn}: cosine schedule needs the number of steps: give max_steps or epochs"
            )
        horizon = total_steps - warmup
        if horizon < 1:
            raise ValueError(
                f"{fn}: cosine schedule needs more steps than warm-up, got "
                f"total_steps={total_steps}, warmup={warmup}"
            )

    def after(s: int) -> float:
        if name == "step":
            return sched["gamma"] ** (s // sched["step_size"])
        if name == "multistep":
            return sched["gamma"] ** bisect.bisect_right(sched["milestones"], s)
        if name == "cosine":
            m = sched["min_factor"]
            return m + (1 - m) * (1 + math.cos(math.pi * min(s, horizon) / horizon)) / 2
        return 1.0

    def factor(t: int) -> float:
        return (t + 1) / warmup if t < warmup else float(after(t - warmup))

    return factor


def make_scheduler(
    spec: OptimizerSpec, optimizer: torch.optim.Optimizer, total_steps: int | None
) -> torch.optim.lr_scheduler.LambdaLR:
    """A ``LambdaLR`` with :func:`lr_factor`; call its ``step()`` once after each optimizer step.

    The lr of each param group at step t is its lr when the scheduler was made times
    ``lr_factor(spec, total_steps)(t)``; for :class:`SAM` that is the base optimizer's lr.

    Examples:
        >>> scheduler = make_scheduler(spec, optimizer, total_steps=1000)
    """
    if not isinstance(optimizer, torch.optim.Optimizer):
        _fail("make_scheduler", "optimizer", "a torch.optim.Optimizer", optimizer, TypeError)
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, _lr_factor(spec, total_steps, "make_scheduler")
    )
