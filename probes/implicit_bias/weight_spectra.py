r"""Spectra of the weight matrices (heavy-tailed self-regularisation).

Singular values, effective rank, stable rank and the power-law exponent of the eigenvalues of ``W^T
W``.

**Layers** are the selected parameters with ``ndim >= 2``, reshaped to
``W = p.reshape(p.shape[0], -1)`` (a convolution kernel (out, in, k...) becomes
(out, in * prod(k)); weightwatcher instead splits a kernel into one matrix per kernel
position, so its conv alphas differ). ``params=`` selects parameters as in the engine.

For each layer with singular values ``s_1 >= s_2 >= ... >= s_n`` (``n = min(out, rest)``):

- **effective rank** (Roy and Vetterli 2007): ``exp(H(p))`` with ``p_k = s_k / sum_j s_j``
  over the nonzero ``s_k`` and ``H(p) = -sum_k p_k log p_k``: ``n`` for an orthogonal matrix,
  1 for rank one; NaN for a zero matrix;
- **stable rank**: ``||W||_F^2 / ||W||_2^2 = sum_k s_k^2 / s_1^2`` (NaN for a zero matrix);
- **alpha**: the exponent of a power law ``p(x) ~ x^(-alpha)``, ``x >= x_min``, fitted to the
  tail of the eigenvalues ``lambda_k = s_k^2`` of ``W^T W`` (not normalised; alpha does not
  depend on the scale), as in weightwatcher (Martin and Mahoney 2021). Estimator
  (:func:`fit_power_law`): Clauset, Shalizi and Newman's (2009) continuous maximum-likelihood

  .. math:: \hat\alpha = 1 + m \Big/ \sum_{\lambda_k \ge x_{\min}} \ln(\lambda_k / x_{\min})

  over the ``m`` eigenvalues ``>= x_min``, with ``x_min`` the eigenvalue that minimises the
  Kolmogorov-Smirnov distance ``D = sup_x |S(x) - P(x)|`` between the tail's empirical CDF
  ``S`` and the fitted ``P(x) = 1 - (x / x_min)^(1 - alpha)``, among the candidates that leave
  at least ``min_tail`` eigenvalues in the tail (10 by default: tiny tails give spurious
  fits); standard error ``(alpha - 1) / sqrt(m)``. No upper cut-off (weightwatcher passes
  ``xmax = max(lambda)`` to ``powerlaw``, a truncated fit). Fitted only where the layer has at
  least ``min_eigenvalues`` (50) nonzero eigenvalues; otherwise alpha is None and
  ``alpha_reason`` says why. Readings (weightwatcher): alpha < 2 over-trained, 2-6 typical,
  > 6 under-trained, > 8 usually a failed fit.

Singular values are computed on the model's device (in at least float32); the fit runs in
NumPy float64.

References:
    Roy, O., Vetterli, M. (2007). The effective rank: a measure of effective dimensionality.
    EUSIPCO.
    Clauset, A., Shalizi, C. R., Newman, M. E. J. (2009). Power-law distributions in empirical
    data. SIAM Review 51(4).
    Martin, C. H., Mahoney, M. W. (2021). Implicit self-regularization in deep neural networks:
    evidence from random matrix theory and implications for learning. JMLR 22(165).

Examples:
    >>> ws = weight_spectra(model)
    >>> dict(zip(ws.layers, ws.alpha)), ws.alpha_reason, ws.effective_rank, ws.stable_rank
    >>> fit_power_law(np.random.pareto(1.5, 5000) + 1).alpha          # about 2.5
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

import numpy as np
import torch
from torch import nn

from landscape.engine.checks import _check_int
from landscape.engine.cost import Cost
from landscape.engine.params import ParamFilter
from probes.implicit_bias.layers import matrices, selected
from probes.implicit_bias.results import PowerLawFit, WeightSpectra

__all__ = [
    "MIN_EIGENVALUES",
    "MIN_TAIL",
    "PowerLawFit",
    "WeightSpectra",
    "effective_rank",
    "fit_power_law",
    "weight_spectra",
]

MIN_EIGENVALUES = 50
"""Nonzero eigenvalues a layer needs for a power-law fit (weightwatcher's rule of thumb)."""

MIN_TAIL = 10
"""Eigenvalues that the smallest tail of a fit must keep."""


def fit_power_law(values: Any, *, min_tail: int = MIN_TAIL) -> PowerLawFit:
    """Clauset-Shalizi-Newman fit of ``p(x) ~ x^(-alpha)`` for ``x >= xmin`` to positive ``values``.

    The continuous MLE of alpha for each candidate ``xmin`` (each distinct value leaving at least
    ``min_tail`` values in the tail), keeping the ``xmin`` of smallest Kolmogorov-Smirnov distance.

    Raises:
        ValueError: fewer than ``min_tail`` positive finite values, or no candidate with a
            tail that is not constant.
    """
    _check_int("fit_power_law", "min_tail", min_tail, 2)
    x = np.asarray(values, dtype=np.float64).reshape(-1)
    x = np.sort(x[np.isfinite(x) & (x > 0)])
    n = x.size
    if n < min_tail:
        raise ValueError(
            f"fit_power_law: expected at least {min_tail} positive finite values, got {n}"
        )
    logs = np.log(x)
    suffix = np.cumsum(logs[::-1])[::-1]  # sum_{j >= k} log x_j
    starts = np.flatnonzero(np.r_[True, x[1:] != x[:-1]])  # first index of each value
    best: PowerLawFit | None = None
    for k in starts[starts <= n - min_tail]:
        m = n - k
        total = suffix[k] - m * logs[k]  # sum log(x_j / xmin)
        if total <= 0:
            continue
        alpha = 1.0 + m / total
        cdf = -np.expm1((1.0 - alpha) * (logs[k:] - logs[k]))  # 1 - (x / xmin)^(1 - alpha)
        upper = np.arange(1, m + 1) / m
        d = float(max(np.max(np.abs(upper - cdf)), np.max(np.abs(upper - 1.0 / m - cdf))))
        if best is None or d < best.ks_distance:
            best = PowerLawFit(
                alpha=float(alpha),
                xmin=float(x[k]),
                ks_distance=d,
                n_tail=int(m),
                stderr=float((alpha - 1.0) / np.sqrt(m)),
            )
    if best is None:
        raise ValueError("fit_power_law: no tail to fit: the largest values are all equal")
    return best


def effective_rank(s: np.ndarray) -> float:
    """Roy and Vetterli's effective rank of singular values ``s`` (NaN if all are zero)."""
    s = s[s > 0]
    if s.size == 0:
        return float("nan")
    p = s / s.sum()
    return float(np.exp(-(p * np.log(p)).sum()))


def _nonzero(s: np.ndarray, shape: tuple[int, ...], dtype: torch.dtype) -> np.ndarray:
    """Singular values above rounding: ``s > s_max * max(shape) * eps(dtype)``."""
    if s.size == 0 or s[0] == 0:
        return s[:0]
    return s[s > s[0] * max(shape) * torch.finfo(dtype).eps]


def weight_spectra(
    model: nn.Module,
    *,
    params: ParamFilter | Iterable[str] | None = None,
    min_eigenvalues: int = MIN_EIGENVALUES,
    min_tail: int = MIN_TAIL,
) -> WeightSpectra:
    """Singular values, effective rank, stable rank and power-law alpha of each layer.

    Args:
        model: any ``nn.Module``; read, never written.
        params: which parameters count: None (all trainable), a filter
            ``f(name, param, module)`` or a list of names; layers are those with ndim >= 2.
        min_eigenvalues: the nonzero eigenvalues a layer needs for a fit (default 50).
        min_tail: the smallest tail a fit may keep (default 10, at most ``min_eigenvalues``).

    Returns:
        :class:`WeightSpectra`.

    Raises:
        TypeError: a model that is no ``nn.Module``.
        ValueError: no layer selected; bad options.
    """
    where = "weight_spectra"
    _check_int(where, "min_tail", min_tail, 2)
    _check_int(where, "min_eigenvalues", min_eigenvalues, int(min_tail))
    start = time.perf_counter()
    mats = matrices(where, selected(where, model, params))
    values, erank, srank, alphas, reasons, fits = [], [], [], [], [], []
    for w in mats.values():
        work = torch.promote_types(w.dtype, torch.float32)
        s = torch.linalg.svdvals(w.to(work)).to("cpu", torch.float64).numpy()
        values.append(s)
        nz = _nonzero(s, tuple(w.shape), work)
        erank.append(effective_rank(nz))
        srank.append(float((s**2).sum() / s[0] ** 2) if nz.size else float("nan"))
        fit, reason = None, None
        if s.size < min_eigenvalues:
            reason = (
                f"{s.size} eigenvalues (min of the matrix shape {tuple(w.shape)}); a fit "
                f"needs at least {min_eigenvalues}"
            )
        elif nz.size < min_eigenvalues:
            reason = (
                f"{nz.size} nonzero eigenvalues (rank-deficient); a fit needs at least "
                f"{min_eigenvalues}"
            )
        else:
            try:
                fit = fit_power_law(nz**2, min_tail=min_tail)
            except ValueError as exc:
                reason = str(exc).removeprefix("fit_power_law: ")
        alphas.append(None if fit is None else fit.alpha)
        reasons.append(reason)
        fits.append(fit)
    return WeightSpectra(
        layers=tuple(mats),
        shapes=tuple((w.shape[0], w.shape[1]) for w in mats.values()),  # (out, rest) each
        singular_values=tuple(values),
        effective_rank=np.array(erank),
        stable_rank=np.array(srank),
        alpha=tuple(alphas),
        alpha_reason=tuple(reasons),
        fits=tuple(fits),
        min_eigenvalues=int(min_eigenvalues),
        min_tail=int(min_tail),
        cost=Cost(seconds=time.perf_counter() - start),
    )
