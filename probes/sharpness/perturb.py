"""Parts the sharpness probes share (:mod:`probes.sharpness.worst`, :mod:`probes.sharpness.average`,
:mod:`probes.sharpness.flatness`): argument checks, the objective, the scale ``c`` and the generator.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from landscape.engine.checks import _check_choice, _check_int
from landscape.engine.objective import MODES, Objective

__all__: list[str] = []


def _check_flag(where: str, name: str, value: Any) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{where}: {name} must be True or False, got {value!r}")
    return bool(value)


def _check_common(where: str, *, seed: Any, mode: Any, batch_size: Any, check: Any) -> None:
    """Checks every sharpness probe shares (before any work is done)."""
    _check_int(where, "seed", seed, 0)
    _check_choice(where, "mode", mode, MODES)
    if batch_size is not None:
        _check_int(where, "batch_size", batch_size, 1)
    _check_flag(where, "check", check)


def _objective(
    model: nn.Module,
    loss_fn: Callable,
    data: Any,
    *,
    params: Any,
    mode: str,
    batch_size: int | None,
    check: bool,
) -> Objective:
    return Objective(
        model, loss_fn, data, params=params, mode=mode, batch_size=batch_size, check=check
    )


def _scale(theta: Tensor, adaptive: bool) -> Tensor:
    """``c``: ``|w|`` when adaptive, else ones (model dtype and device)."""
    return theta.abs() if adaptive else torch.ones_like(theta)


def _generator(theta: Tensor, seed: int) -> torch.Generator:
    return torch.Generator(device=theta.device).manual_seed(int(seed))
