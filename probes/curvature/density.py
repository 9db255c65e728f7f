r"""The spectral density of a curvature matrix by stochastic Lanczos quadrature.

Stochastic Lanczos quadrature (Golub & Meurant; Ubaru, Chen & Saad 2017; Ghorbani, Krishnan &
Xiao 2019; Papyan 2020) needs only products ``H v`` with the curvature matrix
(:class:`probes.curvature.operators.CurvatureOperator`). The spectral measure ``mu = (1/P) sum_i
delta(lambda_i)`` satisfies ``int f dmu = (1/P) tr f(H) = E[v^T f(H) v]`` for ``v`` uniform on
the unit sphere (a normalised Gaussian). ``m`` Lanczos steps from ``v`` give a tridiagonal
``T_m = U diag(theta) U^T``; the Gauss quadrature ``v^T f(H) v ~ sum_j U_{1j}^2 f(theta_j)`` is
exact for polynomials of degree ``< 2m``. Each start vector thus gives Ritz values ``theta``
(nodes) and weights ``U_{1j}^2`` (summing to 1); their average over the start vectors, broadened
by Gaussians of width ``sigma``, is the density. Its k-th moment estimates ``tr(H^k) / P``
without bias for ``k < 2m``, in particular ``mean = tr(H) / P`` and second moment
``= ||H||_F^2 / P``.

**Precision.** Products of float16 and bfloat16 models are computed in float32 on a copy of the
model (:mod:`probes.curvature.operators`), the Lanczos recurrences in float64. The nodes then
carry the rounding of float32 products, about ``eps_fp32 ||H||``, far below any broadening
width: measured against a dense float64 Hessian at the same weights, with ``steps = P`` every
node of bfloat16 and float16 models lies within ``6e-8 ||H||`` of an eigenvalue
(tests/test_low_precision.py).

References:
    Ubaru, S., Chen, J., Saad, Y. (2017). Fast estimation of tr(f(A)) via stochastic Lanczos
    quadrature. SIAM J. Matrix Anal. Appl.
    Ghorbani, B., Krishnan, S., Xiao, Y. (2019). An investigation into neural net optimization
    via Hessian eigenvalue density. ICML.
    Papyan, V. (2020). Traces of class/cross-class structure pervade deep learning spectra.
    JMLR.

Examples:
    >>> esd = density(model, loss_fn, loader, n_vectors=5, steps=80)
    >>> esd.grid, esd.density, esd.moment(1) * esd.n_params           # ~ the trace
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import torch
from scipy.linalg import eigh_tridiagonal
from torch import Tensor, nn

from landscape.engine.checks import _check_choice, _check_int, _check_positive
from landscape.engine.params import ParamFilter
from probes.curvature.lanczos import tridiagonals
from probes.curvature.operators import CURVATURES, CurvatureOperator, operator
from probes.curvature.results import Density, broaden, curvature_cost

__all__ = ["DEFAULT_WIDTH_FRACTION", "Density", "density", "estimate_density"]

DEFAULT_WIDTH_FRACTION = 0.01
"""Default broadening width of :func:`density`: this fraction of the span of the Ritz values."""


def _validate_density(n_vectors, steps, width, grid, n_grid, seed) -> np.ndarray | None:
    where = "density"
    _check_int(where, "n_vectors", n_vectors, 1)
    _check_int(where, "steps", steps, 1)
    if width is not None:
        _check_positive(where, "width", width)
    _check_int(where, "n_grid", n_grid, 2)
    _check_int(where, "seed", seed, 0)
    if grid is None:
        return None
    g = (
        np.asarray(grid, dtype=np.float64)
        if not isinstance(grid, Tensor)
        else grid.detach().cpu().double().numpy()
    )
    if g.ndim != 1 or g.size < 2 or not np.isfinite(g).all() or not (np.diff(g) > 0).all():
        raise ValueError(
            f"{where}: grid must be a 1-D, finite, strictly increasing array of at "
            f"least 2 points, got shape {g.shape}"
        )
    return g


def estimate_density(
    op: CurvatureOperator | Any,
    *,
    n_vectors: int = 5,
    steps: int = 80,
    width: float | None = None,
    grid: Any = None,
    n_grid: int = 1000,
    seed: int = 0,
    curvature: str = "hessian",
) -> Density:
    """:func:`density` on a ready operator (see :func:`estimate_trace`).

    Arguments as for :func:`density`.
    """
    user_grid = _validate_density(n_vectors, steps, width, grid, n_grid, seed)
    start = time.perf_counter()
    hvp0, passes0 = op.n_products, op.passes
    p = int(op.size)
    steps_run = min(int(steps), p)
    gen = torch.Generator(device=op.device).manual_seed(int(seed))
    alphas, betas = tridiagonals(op, int(n_vectors), steps_run, gen)

    nodes = np.full((n_vectors, steps_run), np.nan)
    weights = np.zeros((n_vectors, steps_run))
    for i, (a, b) in enumerate(zip(alphas, betas, strict=True)):
        theta, u = eigh_tridiagonal(a, b)
        nodes[i, : a.size] = theta
        weights[i, : a.size] = u[0] ** 2

    lo, hi = float(np.nanmin(nodes)), float(np.nanmax(nodes))
    if width is None:
        span = hi - lo
        width = DEFAULT_WIDTH_FRACTION * (span if span > 0 else max(abs(hi), 1.0))
    sigma = float(width)
    if user_grid is None:
        xs = np.linspace(lo - 3 * sigma, hi + 3 * sigma, int(n_grid))
    else:
        xs = user_grid
    dens = broaden(nodes, weights, xs, sigma)
    if user_grid is None:
        dens = dens / np.trapezoid(dens, xs)
    cost = curvature_cost(
        curvature, op.n_products - hvp0, op.passes - passes0, time.perf_counter() - start
    )
    return Density(
        grid=xs,
        density=dens,
        nodes=nodes,
        weights=weights,
        width=sigma,
        steps=steps_run,
        n_vectors=int(n_vectors),
        cost=cost,
        curvature=curvature,
        seed=int(seed),
        n_params=p,
        dtype=str(op.dtype).removeprefix("torch."),
    )


def density(
    model: nn.Module,
    loss_fn: Callable[[Any, Tensor], Tensor],
    data: Any,
    *,
    n_vectors: int = 5,
    steps: int = 80,
    width: float | None = None,
    grid: Any = None,
    n_grid: int = 1000,
    seed: int = 0,
    curvature: str = "hessian",
    params: ParamFilter | Iterable[str] | None = None,
    mode: str = "eval",
    batch_size: int | None = None,
    check: bool = True,
) -> Density:
    """The spectral density of the Hessian (or GGN) by stochastic Lanczos quadrature.

    From each of ``n_vectors`` random unit vectors (normalised Gaussians, from a generator
    seeded by ``seed`` on the operator's device), ``steps`` Lanczos steps with full
    reorthogonalisation in float64 (stopping early for a vector whose Krylov space becomes
    invariant); the recurrences run together, one ``(n_vectors, P)`` product per step. The
    tridiagonal's eigen-decomposition gives nodes (Ritz values) and weights (squared first
    components), averaged over the vectors and broadened by Gaussians of width ``sigma``.
    Memory: the Lanczos bases, ``n_vectors * steps * P`` float64 numbers on the device.

    Args:
        model: as for :func:`trace`.
        loss_fn: as for :func:`trace`.
        data: as for :func:`trace`.
        n_vectors: random start vectors (more: less variance).
        steps: Lanczos steps per vector (more: finer resolution; at most P are run).
        width: the broadening sigma; default :data:`DEFAULT_WIDTH_FRACTION` (1%) of the span of
            the nodes (1% of ``max(|node|, 1)`` when they all coincide).
        grid: points to evaluate the density at (1-D, increasing); the density is then the
            plain Gaussian mixture (it integrates to the mass inside ``grid``). By default
            ``n_grid`` points spanning ``[min node - 3 sigma, max node + 3 sigma]``, and the
            density is normalised to integrate to 1 by the trapezoid rule over them.
        n_grid: points of the default grid.
        seed: as for :func:`trace`.
        curvature: as for :func:`trace`.
        params: as for :func:`trace`.
        mode: as for :func:`trace`.
        batch_size: as for :func:`trace`.
        check: as for :func:`trace`.

    Returns:
        :class:`Density`: ``grid``, ``density``, ``nodes``, ``weights``, ``moment(k)``, cost.

    Raises:
        ValueError: an argument out of range (the message names it), an unknown curvature.

    Examples:
        >>> esd = density(model, nn.CrossEntropyLoss(), (X, y), n_vectors=5, steps=80)
        >>> plt.semilogy(esd.grid, esd.density)
    """
    _check_choice("density", "curvature", curvature, CURVATURES)
    _validate_density(n_vectors, steps, width, grid, n_grid, seed)
    start = time.perf_counter()
    op = operator(
        model,
        loss_fn,
        data,
        curvature=curvature,
        params=params,
        mode=mode,
        batch_size=batch_size,
        check=check,
    )
    out = estimate_density(
        op,
        n_vectors=n_vectors,
        steps=steps,
        width=width,
        grid=grid,
        n_grid=n_grid,
        seed=seed,
        curvature=curvature,
    )
    cost = dataclasses.replace(
        out.cost, passes=float(op.passes), seconds=time.perf_counter() - start
    )
    return dataclasses.replace(out, cost=cost)
