r"""Lanczos without a stored basis: extreme eigenvalues in the memory of three vectors.

:func:`three_term` runs Lanczos' three-term recurrence ``beta_{j+1} q_{j+1} = H q_j - alpha_j q_j
- beta_j q_{j-1}`` and keeps only ``q_{j-1}``, ``q_j`` and the product: memory of three vectors
whatever the number of steps, where :func:`probes.curvature.lanczos.extreme` keeps one vector a
step (its basis, for the full reorthogonalisation that also gives the Ritz vectors). Eigenvalues
need no basis: the Ritz values are those of the tridiagonal ``T_j`` of the alphas and betas, and
a Ritz pair's residual ``||H y - theta y||`` is ``beta_{j+1} |s_j|`` (``s_j`` the last component
of its eigenvector of ``T_j``), so the bounds ``min(r, r^2 / gap)`` of
:func:`probes.curvature.lanczos.error_bounds` come from scalars. The vectors themselves are
not returned.

In floating point the recurrence loses orthogonality, but only along Ritz vectors that have
converged (Paige): ``|y_i^T q_{j+1}| ~ gamma / (beta_{j+1} |s_{ji}|)``, with ``gamma`` the
rounding error of a step, about ``eps max|theta|``. While no Ritz pair's residual is below
``sqrt(eps) max|theta|`` (no "good" Ritz vector in the sense of Parlett and Scott) the vectors
are semi-orthogonal, ``|q_i^T q_k| <= sqrt(eps)``, and then ``T_j`` is the projection of ``H``
on an orthonormal basis of the Krylov space up to ``O(eps ||H||)`` (Simon): its Ritz values and
residuals are those of a Rayleigh-Ritz step to rounding, and the bounds hold as with full
reorthogonalisation. A pair the run does not want may turn good (on an HF GPT-2 at its
initialisation the bottom eigenvalue converges before the top one): from then on the vectors
lose their orthogonality along it, and a second copy of its value appears among the Ritz values
(as in Lanczos without reorthogonalisation, Cullum and Willoughby), while the other Ritz values
go on converging; a copy only shrinks the gaps of the bounds. A wanted pair that turns good
before every wanted pair meets its threshold would get its own copy, so the run returns
``None`` then (the caller runs :func:`~probes.curvature.lanczos.extreme` with a stored basis),
and also when the Krylov space turns out invariant (going on needs a fresh direction orthogonal
to a basis it does not have). ``tests/test_three_term.py`` checks, against exact spectra, the
semi-orthogonality on the vectors the products saw, and that the bounds hold in float32 after
an unwanted pair converged and the vectors lost their orthogonality along it.

References:
    - C. C. Paige, "Accuracy and effectiveness of the Lanczos algorithm for the symmetric
      eigenproblem", Linear Algebra Appl., 1980.
    - B. N. Parlett, D. S. Scott, "The Lanczos algorithm with selective orthogonalization",
      Math. Comp., 1979.
    - H. D. Simon, "The Lanczos algorithm with partial reorthogonalization", Math. Comp., 1984.
    - J. K. Cullum, R. A. Willoughby, "Lanczos Algorithms for Large Symmetric Eigenvalue
      Computations", Birkhauser, 1985.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from scipy.linalg import eigh_tridiagonal
from torch import Tensor

from probes.curvature.lanczos import Ritz, error_bounds, wanted_indices

__all__ = ["three_term"]


def three_term(
    matvec: Callable[[Tensor], Tensor],
    v0: Tensor,
    nev: int,
    which: str,
    thresholds: Callable[[np.ndarray], np.ndarray],
    *,
    max_products: int | None = None,
    rounding: float = 0.0,
) -> Ritz | None:
    """Lanczos by its three-term recurrence alone, for the ``nev`` wanted eigenvalues.

    Args:
        matvec: the symmetric operator: a (P,) tensor to a (P,) tensor.
        v0: start vector (P,) on the operator's device and in its dtype (the vectors are kept
            in that dtype, at least float32).
        nev: wanted pairs.
        which: ``"largest"``, ``"smallest"``, ``"both"`` or ``"magnitude"``.
        thresholds: maps the wanted Ritz values to the error each must reach.
        max_products: stop after this many products with the best values so far (default
            1000, a guard against a target below the products' rounding level).
        rounding: the products' error relative to ``max|theta|``: the bounds allow for it
            (:func:`~probes.curvature.lanczos.error_bounds`).

    Returns:
        The wanted Ritz values with their residuals, bounds and flags (``vectors`` empty,
        ``restarts`` 0), or None when a wanted pair turns good (or the Krylov space is
        invariant) before they all meet their thresholds: run a stored basis instead.
    """
    p = v0.numel()
    dtype = torch.promote_types(v0.dtype, torch.float32)
    eps = float(torch.finfo(dtype).eps)
    limit = 1000 if max_products is None else max_products
    q = v0.to(dtype)
    q = q / q.norm()
    prev: Tensor | None = None
    alphas: list[float] = []
    betas: list[float] = []
    n = 0
    while True:
        w = matvec(q).to(dtype)
        n += 1
        if prev is not None:
            w.sub_(prev, alpha=betas[-1])
        alpha = float(torch.dot(q, w))
        w.sub_(q, alpha=alpha)
        extra = float(torch.dot(q, w))  # local orthogonality, once more (a dot and an axpy)
        w.sub_(q, alpha=extra)
        alphas.append(alpha + extra)
        beta = float(w.norm())
        j = len(alphas)
        theta, s = eigh_tridiagonal(np.array(alphas), np.array(betas), lapack_driver="stev")
        scale = max(float(np.abs(theta).max()), np.finfo(np.float64).tiny)
        residuals = beta * np.abs(s[-1])
        full, spent = j == p, n >= limit
        wanted = wanted_indices(theta, which, nev)
        if j >= min(nev, p) or spent:
            errors = error_bounds(theta, wanted, residuals[wanted], rounding * scale)
            converged = errors <= thresholds(theta[wanted])
            invariant = beta <= 10 * eps * scale * np.sqrt(j)
            if (converged.all() and not invariant) or full or spent:
                return Ritz(
                    values=theta[wanted],
                    vectors=torch.empty(0, p, dtype=dtype, device=v0.device),
                    residuals=residuals[wanted],
                    errors=errors,
                    converged=converged,
                    n_products=n,
                    restarts=0,
                    spectrum=theta,
                    wanted=wanted,
                )
        # q_{j+1} would lose orthogonality beyond sqrt(eps) along a wanted Ritz vector that
        # has converged (and grow a second copy of its value) before they all meet tol
        if np.any(residuals[wanted] <= np.sqrt(eps) * scale):
            return None
        # (a zero beta is a good Ritz vector too: every residual is zero, caught above)
        betas.append(beta)
        if prev is None:
            prev = q
            q = w.div_(beta)
        else:  # reuse q_{j-1}'s memory for q_{j+1}
            nxt = torch.div(w, beta, out=prev)
            del w
            prev, q = q, nxt
