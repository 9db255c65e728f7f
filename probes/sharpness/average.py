r"""Average-case sharpness around ``w``, a part of :mod:`probes.sharpness`.

    S_avg = E_z L(w + rho c z) - L(w),  z ~ N(0, I) (norm "l2") or z ~ U[-1, 1]^P ("linf"),

``c = |w|`` elementwise when adaptive (every selected parameter, biases included), else 1; the
mean over ``n_samples`` draws with its standard error. This is ``eval_average_sharpness`` of
Andriushchenko et al. (2023) (tml-epfl/sharpness-vs-generalization, ``sharpness.py``, noise
from ``random_init_lw``: Gaussian times ``rho c`` for l2, uniform in ``[-rho c, rho c]`` for
linf). Adaptive S_avg is invariant under a rescaling of ReLU units (in-weights and biases
times a, out-weights over a): ``c z`` scales with the weights.

**m-sharpness** (``m`` set): the data (in order) are cut into consecutive batches of ``m``
examples (the last may be smaller); batch ``b`` gets its own ``n_samples`` draws (seeded with
``seed + b``) and its own value ``mean_i L_b(w + rho c z_bi) - L_b(w)``, where ``L_b`` is the
batch's mean loss; the result is the mean of the batch values weighted by ``n_b / N`` (the
plain mean when ``m`` divides N, as published, whose code asserts it and uses m = 128). Since
the batch's clean loss is subtracted inside each batch and the draws differ between batches,
this equals the plain ``S_avg`` only in expectation over the draws (and not at all for the
worst case, :mod:`probes.sharpness.worst`).

**Logit normalisation** (``logit_normalize=True``): ``loss_fn`` is taken on the centred,
unit-norm logits (:func:`probes.sharpness.perturb.normalize_logits`) at ``w`` and at every
perturbed point, as their ``LogitNormalizationWrapper`` does.

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

from landscape.engine.checks import _check_choice, _check_int, _check_positive
from landscape.engine.cost import Cost
from landscape.engine.params import ParamFilter
from probes.sharpness.perturb import (
    NORMS,
    _check_common,
    _check_flag,
    _generator,
    _loss,
    _objective,
    _parts,
    _scale,
    _weighted,
)
from probes.sharpness.results import AverageCase

__all__ = ["AverageCase", "average_case"]


def _noise(theta: Tensor, norm: str, gen: torch.Generator) -> Tensor:
    """One draw of ``z``: standard Gaussian (l2) or uniform in ``[-1, 1]`` (linf)."""
    if norm == "l2":
        return torch.randn(theta.shape, generator=gen, dtype=theta.dtype, device=theta.device)
    u = torch.rand(theta.shape, generator=gen, dtype=theta.dtype, device=theta.device)
    return 2 * u - 1


def average_case(
    model: nn.Module,
    loss_fn: Callable[[Any, Tensor], Tensor],
    data: Any,
    *,
    rho: float,
    norm: str = "l2",
    adaptive: bool = False,
    n_samples: int = 100,
    m: int | None = None,
    logit_normalize: bool = False,
    seed: int = 0,
    params: ParamFilter | Iterable[str] | None = None,
    mode: str = "eval",
    batch_size: int | None = None,
    check: bool = True,
) -> AverageCase:
    """Average-case sharpness ``E_z L(w + rho c z) - L(w)`` by Monte Carlo (module docstring).

    Each draw ``z_i`` (a ``torch.Generator`` seeded with ``seed`` on the model's device) costs
    one pass over the data (over one batch with ``m``). The l2 noise ``rho c z`` has
    ``||delta / c||_2 ~ rho sqrt(P)``: to compare with the worst case in the l2 ball of radius
    r use ``rho = r / sqrt(P)``. With the same seed, rescaling-invariant perturbations
    (``adaptive=True``) see the same ``z``, so the value is invariant up to rounding.

    Args:
        model: the model (never modified).
        loss_fn: a loss returning the batch mean, e.g. ``nn.CrossEntropyLoss()``.
        data: the data (tensors, a Dataset or a DataLoader).
        rho: the noise scale (> 0).
        norm: ``"l2"``: ``z ~ N(0, I)``; ``"linf"``: ``z ~ U[-1, 1]^P`` (as published).
        adaptive: ``c = |w|`` (else 1).
        n_samples: draws (>= 1), for each batch with ``m``.
        m: with m, the size-weighted mean over consecutive batches of m examples of each
            batch's average-case sharpness (m-sharpness); batch ``b`` draws from
            ``seed + b``. None (default): one average over all the data.
        logit_normalize: take ``loss_fn`` on the centred, unit-norm logits at the clean and
            the perturbed points; for classification outputs ``(N, K)``.
        seed: the draws' seed.
        params: which parameters are perturbed (see :func:`worst_case`).
        mode: ``"eval"`` (default) or ``"train"`` (see :class:`landscape.Objective`).
        batch_size: passed to :class:`landscape.Objective`.
        check: the Objective's determinism check.

    Returns:
        :class:`AverageCase`: ``value``, ``stderr``, per-draw ``samples``, mean perturbed loss
        and accuracy, per-batch values with ``m``, the options and the cost. With ``m``, the
        i-th sample is the size-weighted mean over batches of their i-th draws (independent
        across batches), so ``value`` is still the mean of ``samples`` and ``stderr`` their
        standard error.

    Raises:
        ValueError: rho not > 0, an unknown norm, n_samples < 1, m < 1, a bad seed, mode or
            batch size; with ``logit_normalize``, outputs that are not ``(N, K)`` logits
            (:class:`~probes.sharpness.perturb.LogitShapeError`).
        TypeError: adaptive, logit_normalize or check not a bool.

    Examples:
        >>> a = average_case(model, nn.CrossEntropyLoss(), (X, y), rho=0.01, adaptive=True)
        >>> print(f"{a.value:.3g} +- {a.stderr:.2g}")
        >>> b = average_case(model, loss_fn, (X[:1024], y[:1024]), rho=0.1, adaptive=True,
        ...                  m=128, logit_normalize=True)     # as Andriushchenko et al. (2023)
    """
    where = "average_case"
    rho = _check_positive(where, "rho", rho)
    _check_choice(where, "norm", norm, NORMS)
    adaptive = _check_flag(where, "adaptive", adaptive)
    n_samples = _check_int(where, "n_samples", n_samples, 1)
    if m is not None:
        m = _check_int(where, "m", m, 1)
    logit_normalize = _check_flag(where, "logit_normalize", logit_normalize)
    _check_common(where, seed=seed, mode=mode, batch_size=batch_size, check=check)
    start = time.perf_counter()
    obj = _objective(
        model,
        _loss(loss_fn, logit_normalize, where),
        data,
        params=params,
        mode=mode,
        batch_size=batch_size,
        check=check,
    )
    theta = obj.theta
    scale = rho * _scale(theta, adaptive)
    n_total = obj.n_terms  # the weights of the parts: their share of the loss terms
    parts = _parts(obj, m, seed, params=params, batch_size=batch_size)
    sizes: list[int] = []
    clean_loss: list[float] = []
    clean_acc: list[float | None] = []
    mean_acc: list[float | None] = []
    losses = np.empty((len(parts), n_samples), dtype=np.float64)
    spent = Cost()
    for b, (part, part_seed) in enumerate(parts):
        before = part.cost
        gen = _generator(theta, part_seed)
        clean = part.evaluate(theta)
        accs: list[float] = []
        for i in range(n_samples):
            out = part.evaluate(theta + scale * _noise(theta, norm, gen))
            losses[b, i] = out.loss
            if out.accuracy is not None:
                accs.append(out.accuracy)
        used = part.cost - before
        spent += Cost(
            passes=used.passes * part.n_examples / obj.n_examples,
            loss_evals=used.loss_evals,
            grad_evals=used.grad_evals,
        )
        sizes.append(part.n_terms)
        clean_loss.append(clean.loss)
        clean_acc.append(clean.accuracy)
        mean_acc.append(None if clean.accuracy is None else float(np.mean(accs)))
    weights = np.asarray(sizes, dtype=np.float64) / n_total
    per_draw = losses - np.asarray(clean_loss, dtype=np.float64)[:, None]
    samples = weights @ per_draw  # draw i: the weighted mean over batches of their i-th draws
    batch_values = per_draw.mean(axis=1)
    stderr = float(samples.std(ddof=1) / math.sqrt(n_samples)) if n_samples > 1 else math.nan

    return AverageCase(
        value=float(samples.mean()),
        stderr=stderr,
        clean_loss=float(np.dot(weights, clean_loss)),
        mean_loss=float(np.dot(weights, losses.mean(axis=1))),
        clean_accuracy=_weighted(weights, clean_acc),
        mean_accuracy=_weighted(weights, mean_acc),
        rho=rho,
        adaptive=adaptive,
        n_samples=n_samples,
        seed=int(seed),
        mode=mode,
        n_params=int(theta.numel()),
        cost=spent.with_seconds(time.perf_counter() - start),
        samples=samples,
        norm=norm,
        m=m,
        n_batches=len(parts),
        logit_normalize=logit_normalize,
        batch_values=None if m is None else batch_values,
        batch_sizes=None if m is None else np.asarray(sizes, dtype=np.int64),
    )
