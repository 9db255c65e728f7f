r"""Average-case sharpness in a (possibly adaptive) ball, a part of :mod:`probes.sharpness`:

    S_avg = E_{z ~ N(0, I)} L(w + rho c z) - L(w),

``c = |w|`` elementwise when adaptive (every selected parameter, biases included), else 1; the
mean over ``n_samples`` draws with its standard error. Adaptive S_avg is invariant under a
rescaling of ReLU units (in-weights and biases times a, out-weights over a): ``c z`` scales with
the weights.

References:
    Andriushchenko, Croce, Mueller, Hein, Flammarion, "A modern look at the relationship
    between sharpness and generalization", ICML 2023. Jiang, Neyshabur, Mobahi, Krishnan,
    Bengio, "Fantastic generalization measures and where to find them", ICLR 2020.

Examples:
    >>> a = average_case(model, nn.CrossEntropyLoss(), loader, rho=0.05, adaptive=True)
    >>> a.value, a.stderr
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from landscape.engine.checks import _check_int, _check_positive
from landscape.engine.params import ParamFilter
from probes.sharpness.perturb import _check_common, _check_flag, _generator, _objective, _scale
from probes.sharpness.results import AverageCase

__all__ = ["AverageCase", "average_case"]


def average_case(
    model: nn.Module,
    loss_fn: Callable[[Any, Tensor], Tensor],
    data: Any,
    *,
    rho: float,
    adaptive: bool = False,
    n_samples: int = 100,
    seed: int = 0,
    params: ParamFilter | Iterable[str] | None = None,
    mode: str = "eval",
    batch_size: int | None = None,
    check: bool = True,
) -> AverageCase:
    """Average-case sharpness ``E_z L(w + rho c z) - L(w)``, ``z ~ N(0, I)``, by Monte Carlo.

    Each draw ``z_i`` (a ``torch.Generator`` seeded with ``seed`` on the model's device) costs
    one pass over the data. The noise ``rho c z`` has ``||delta / c||_2 ~ rho sqrt(P)``: to
    compare with the worst case in the l2 ball of radius r use ``rho = r / sqrt(P)``. With the
    same seed, rescaling-invariant perturbations (``adaptive=True``) see the same ``z``, so
    the value is invariant up to rounding.

    Args:
        model, loss_fn, data: as for :func:`worst_case`.
        rho: the noise scale (> 0). adaptive: ``c = |w|`` (else 1).
        n_samples: draws (>= 1). seed: the draws' seed.
        params, mode, batch_size, check: as for :func:`worst_case`.

    Returns:
        :class:`AverageCase`: ``value``, ``stderr``, per-draw ``samples``, mean perturbed loss
        and accuracy, the cost.

    Raises:
        ValueError: rho not > 0, n_samples < 1, a bad seed, mode or batch size.
        TypeError: adaptive or check not a bool.

    Examples:
        >>> a = average_case(model, nn.CrossEntropyLoss(), (X, y), rho=0.01, adaptive=True)
        >>> print(f"{a.value:.3g} +- {a.stderr:.2g}")
    """
    where = "average_case"
    rho = _check_positive(where, "rho", rho)
    adaptive = _check_flag(where, "adaptive", adaptive)
    n_samples = _check_int(where, "n_samples", n_samples, 1)
    _check_common(where, seed=seed, mode=mode, batch_size=batch_size, check=check)
    start = time.perf_counter()
    obj = _objective(
        model, loss_fn, data, params=params, mode=mode, batch_size=batch_size, check=check
    )
    before = obj.cost
    theta = obj.theta
    scale = rho * _scale(theta, adaptive)
    gen = _generator(theta, seed)
    clean = obj.evaluate(theta)
    losses, accs = [], []
    for _ in range(n_samples):
        z = torch.randn(theta.shape, generator=gen, dtype=theta.dtype, device=theta.device)
        out = obj.evaluate(theta + scale * z)
        losses.append(out.loss)
        accs.append(out.accuracy)
    samples = np.asarray(losses, dtype=np.float64) - clean.loss
    stderr = float(samples.std(ddof=1) / math.sqrt(n_samples)) if n_samples > 1 else math.nan
    spent = obj.cost - before
    return AverageCase(
        value=float(samples.mean()),
        stderr=stderr,
        clean_loss=clean.loss,
        mean_loss=float(np.mean(losses)),
        clean_accuracy=clean.accuracy,
        mean_accuracy=None if clean.accuracy is None else float(np.mean(accs)),
        rho=rho,
        adaptive=adaptive,
        n_samples=n_samples,
        seed=int(seed),
        mode=mode,
        n_params=int(theta.numel()),
        cost=spent.with_seconds(time.perf_counter() - start),
        samples=samples,
    )
