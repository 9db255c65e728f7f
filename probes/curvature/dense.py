"""The dense curvature matrix of small models and its exact spectrum.

:func:`matrix` builds the P x P matrix (the Hessian of the mean loss, the GGN or the Fisher)
from products with blocks of the identity, one pass over the data a block, and its full
spectrum with :func:`numpy.linalg.eigvalsh`. It is the reference the iterative probes are
tested against, and what :func:`probes.curvature.hessian.eigenvalues` falls back to when nearly
every eigenvalue is wanted.

Examples:
    >>> H = matrix(model, nn.CrossEntropyLoss(), (X, y))
    >>> H.matrix, H.spectrum, H.asymmetry
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from landscape.engine.checks import _check_choice, _check_int
from landscape.engine.params import ParamFilter
from probes.curvature.operators import CURVATURES, CurvatureOperator, operator
from probes.curvature.results import Matrix, curvature_cost

__all__ = ["Matrix", "dense", "matrix"]


def dense(op: CurvatureOperator, block: int = 64) -> np.ndarray:
    """The P x P matrix, row i = M e_i, from products with blocks of the identity."""
    p = op.size
    out = np.empty((p, p), dtype=np.float64)
    for start in range(0, p, block):
        stop = min(p, start + block)
        eye = torch.zeros(stop - start, p, dtype=op.dtype, device=op.device)
        eye[torch.arange(stop - start), torch.arange(start, stop)] = 1
        out[start:stop] = op.matvec(eye).detach().to("cpu", torch.float64).numpy()
    return out


def matrix(
    model: nn.Module,
    loss_fn: Callable[[Any, Tensor], Tensor],
    data: Any,
    *,
    curvature: str = "hessian",
    params: ParamFilter | Iterable[str] | None = None,
    mode: str = "eval",
    max_params: int = 4000,
    batch_size: int | None = None,
    check: bool = True,
) -> Matrix:
    """The dense Hessian (or GGN) of the mean loss, for small models, and its spectrum.

    Built from P products with the columns of the identity, in blocks (one pass over the data
    a block). Its asymmetry is reported (rounding only, for exact products); the spectrum is
    that of its symmetric part.

    Args:
        model: as for :func:`eigenvalues`.
        loss_fn: as for :func:`eigenvalues`.
        data: as for :func:`eigenvalues`.
        curvature: as for :func:`eigenvalues`.
        params: as for :func:`eigenvalues`.
        mode: as for :func:`eigenvalues`.
        max_params: refuse above this many parameters (the matrix takes 8 P^2 bytes).
        batch_size: as for :func:`eigenvalues`.
        check: as for :func:`eigenvalues`.

    Returns:
        :class:`Matrix`: the matrix, its ascending spectrum, asymmetry and cost.

    Raises:
        ValueError: P above ``max_params``; an unknown ``curvature``; what the objective
            refuses.

    Examples:
        >>> m = matrix(model, nn.CrossEntropyLoss(), (X, y))
        >>> m.spectrum[-1], m.asymmetry
    """
    fn = "matrix"
    started = time.perf_counter()
    _check_choice(fn, "curvature", curvature, CURVATURES)
    max_params = _check_int(fn, "max_params", max_params, 1)
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
    p = op.size
    if p > max_params:
        raise ValueError(
            f"{fn}: P={p} parameters is above max_params={max_params}: the dense "
            f"matrix would take {8 * p * p / 1e9:.3g} GB; use eigenvalues/density, "
            "or raise max_params"
        )
    base = op.n_products
    full = dense(op)
    norm = float(np.linalg.norm(full))
    asym = float(np.linalg.norm(full - full.T) / norm) if norm > 0 else 0.0
    spectrum = np.linalg.eigvalsh((full + full.T) / 2)
    return Matrix(
        matrix=full,
        spectrum=spectrum,
        asymmetry=asym,
        curvature=curvature,
        cost=curvature_cost(
            curvature, op.n_products - base, op.passes, time.perf_counter() - started
        ),
        params=tuple(op.objective.layout.names),
        mode=mode,
    )
