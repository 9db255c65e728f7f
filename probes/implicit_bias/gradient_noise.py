r"""Gradient noise: the trace of the per-example gradient covariance and the simple noise scale.

With ``g_i = grad ell(f_theta(x_i), y_i)`` the gradient of example ``i``'s loss and
``g = (1/N) sum_i g_i`` the full-batch gradient, the covariance of the gradient of one example
drawn uniformly from the data is

.. math:: \Sigma = \frac 1N \sum_{i=1}^N (g_i - g)(g_i - g)^T, \qquad
          \operatorname{tr}\Sigma = \frac 1N \sum_{i=1}^N \|g_i - g\|^2,

(the population covariance over the dataset: the noise of SGD that samples examples with
replacement is ``Sigma / B`` for batches of ``B``; multiply by ``N / (N - 1)`` for the unbiased
sample estimate). The **simple noise scale** (McCandlish et al. 2018, Eq. 2.7) is

.. math:: B_{\text{simple}} = \operatorname{tr}\Sigma / \|g\|^2,

the batch size around which the gradient noise and the signal are of one size.

Per-example gradients come from :meth:`landscape.Objective.per_example_grads`
(``torch.func.vmap`` over ``grad``, each example's loss being ``loss_fn`` on a batch of one) in
blocks of ``chunk_size`` rows. They are streamed, never stored: each block's mean and sum of
squared deviations are merged into running ones (Chan, Golub and LeVeque's pairwise update),
which avoids the cancellation of ``mean ||g_i||^2 - ||g||^2`` when the noise is small. Memory:
one block (``chunk_size x P``) and two P-vectors. The trace is also reported per parameter
tensor (it is a sum over coordinates). ``params=`` selects the parameters as in the engine.

References:
    McCandlish, S., Kaplan, J., Amodei, D., OpenAI Dota Team (2018). An empirical model of
    large-batch training. arXiv:1812.06162.
    Chan, T. F., Golub, G. H., LeVeque, R. J. (1979). Updating formulae and a pairwise
    algorithm for computing sample variances.

Examples:
    >>> gn = gradient_noise(model, nn.CrossEntropyLoss(), (X, y))
    >>> gn.trace, gn.grad_norm_sq, gn.b_simple
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import Tensor, nn

from landscape.engine import distributed as _dist
from landscape.engine.checks import _check_int
from landscape.engine.objective import Objective
from landscape.engine.params import ParamFilter
from probes.implicit_bias.results import GradientNoise

__all__ = ["GradientNoise", "Stream", "gradient_noise", "noise_of", "stream"]


def gradient_noise(
    model: nn.Module,
    loss_fn: Callable[[Any, Tensor], Tensor],
    data: Any,
    *,
    params: ParamFilter | Iterable[str] | None = None,
    mode: str = "eval",
    batch_size: int | None = None,
    chunk_size: int = 256,
    check: bool = True,
) -> GradientNoise:
    """The trace of the per-example gradient covariance and ``B_simple = tr Sigma / ||g||^2``.

    Args:
        model: as for every probe.
        loss_fn: as for every probe; each example's loss is ``loss_fn`` on a batch of one (so
            that their mean is the full-batch loss).
        data: as for every probe.
        params: the parameters the gradients are over (a filter or names; None: all).
        mode: passed to :class:`landscape.Objective` (eval by default; in train mode BatchNorm
            has no per-example meaning).
        batch_size: passed to :class:`landscape.Objective`.
        check: passed to :class:`landscape.Objective`.
        chunk_size: per-example gradients computed at once (memory ``chunk_size * P``).

    Returns:
        :class:`GradientNoise`.

    Raises:
        ValueError: bad options, whatever :class:`landscape.Objective` refuses (a loss that
            is not a scalar, empty data, ...), non-finite gradients.
    """
    _check_int("gradient_noise", "chunk_size", chunk_size, 1)
    start = time.perf_counter()
    obj = Objective(
        model, loss_fn, data, params=params, mode=mode, batch_size=batch_size, check=check
    )
    return noise_of(obj, stream(obj, chunk_size, "gradient_noise"), start)


class Stream(NamedTuple):
    """What one pass over the per-example gradients ``g_i`` gives (:func:`stream`)."""

    mean: Tensor  # (P,) the mean gradient
    m2: Tensor  # (P,) sum_i (g_i - mean)^2, per coordinate
    n: int  # examples
    inner: Tensor  # (N,) <theta, g_i>, for the Fisher-Rao norm
    chunk_size: int


def stream(obj: Objective, chunk_size: int, where: str) -> Stream:
    """One pass over the per-example gradients at ``obj.theta``, ``chunk_size`` at a time.

    Never N x P: their mean and centred second moments merged block by block (Chan et al., no
    cancellation in ``mean ||g_i||^2 - ||g||^2``), and their inner products with theta. Shared by
    :func:`gradient_noise` and :func:`probes.implicit_bias.norms.fisher_rao`, and done once by
    :func:`probes.implicit_bias.measures` for both.
    """
    theta = obj.theta
    acc = torch.promote_types(theta.dtype, torch.float32)
    mean = torch.zeros(theta.shape, dtype=acc, device=theta.device)
    m2 = torch.zeros(theta.shape, dtype=acc, device=theta.device)
    inner, n = [], 0
    for block in obj.per_example_grads(theta, chunk_size=chunk_size):
        block = block.to(acc)
        if not bool(torch.isfinite(block).all()):
            raise ValueError(
                f"{where}: the per-example gradients are not finite; expected "
                "finite values: check the data and the parameters"
            )
        inner.append(block @ theta.to(acc))
        k = block.shape[0]
        block_mean = block.mean(0)
        block_m2 = (block - block_mean).square().sum(0)
        delta = block_mean - mean
        total = n + k
        m2 += block_m2 + delta.square() * (n * k / total)
        mean += delta * (k / total)
        n = total
    # over torch.distributed ranks: every shard's moments merged, inner products in data order
    mean, m2, n = _dist.merge_moments(mean, m2, n, group=obj.group)
    inner_all = _dist.gather_rows(torch.cat(inner), group=obj.group)
    return Stream(mean, m2, n, inner_all, int(chunk_size))


def noise_of(obj: Objective, s: Stream, start: float) -> GradientNoise:
    """The :class:`GradientNoise` of a :func:`stream` (``start``: when the probe began)."""
    mean, n = s.mean, s.n
    per_coord = s.m2 / n
    sizes = obj.layout.sizes
    per_param = np.array([float(part.sum()) for part in per_coord.split(sizes)])
    trace = float(per_param.sum())
    grad_sq = float(mean.to(torch.float64).square().sum())
    b_simple = trace / grad_sq if grad_sq > 0 else float("inf")
    return GradientNoise(
        trace=trace,
        grad_norm_sq=grad_sq,
        b_simple=b_simple,
        mean_sq_norm=trace + grad_sq,
        names=obj.layout.names,
        trace_per_param=per_param,
        n_examples=n,
        n_params=obj.layout.numel,
        mode=obj.mode,
        chunk_size=s.chunk_size,
        cost=obj.cost.with_seconds(time.perf_counter() - start),
    )
