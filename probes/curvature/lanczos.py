r"""Lanczos on the device: extreme eigenpairs with a residual stop, and tridiagonals for SLQ.

:func:`extreme` finds the wanted eigenpairs of a symmetric operator given only by its products
(``matvec(v)`` on a torch vector) by thick-restart Lanczos (Wu and Simon) with full
reorthogonalisation: each product loses its components along the two newest basis vectors
(the three-term recurrence), then along every vector in one classical Gram-Schmidt pass, and
in a second pass only when the first removed much of what was left (the DGKS criterion): two
reads of the basis a product, which is what a step costs when P is large (its memory traffic;
on an HF GPT-2 of 3.7M parameters 1.1 s of a 24-product run, against 2.5 s for two full
passes). The basis and the products stay on the
operator's device, in its dtype but at least float32 (a float16 or bfloat16 basis loses its
orthogonality at the level of its rounding, 0.4% for bfloat16, and with it the eigenvalues);
only the small projected matrix crosses to the host. The
products are not kept (a basis of ``j`` vectors takes ``j`` vectors, not ``2j``): every product
``H q_i`` is, to rounding, ``Q h_i + beta_i q_{i+1}`` with the coefficients that the
orthogonalisation computed, so the residual ``||H y - theta y||`` of a Ritz pair ``y = Q s`` is
``||T s - theta s||`` with the whole (not symmetrised) ``(j + 1) x j`` matrix ``T`` of those
coefficients, at no extra product; it sees what the products' asymmetry does, as one from
stored products would. A thick restart keeps the relation whole: the part of ``T S`` outside
the kept Ritz vectors ``S`` is kept as vectors (at most ``basis`` of them, only once it
restarts); a fresh direction after an invariant space drops a ``beta`` at rounding level,
added to the residuals. It stops as soon as every wanted pair's
error bound

.. math:: \mathrm{err}_i = \min\left(r_i, \frac{r_i^2}{\delta_i}\right), \qquad
   \delta_i = \min_{j \ne i} |\theta_i - \theta_j| - r_i,

meets its threshold (``r_i`` the residual, ``delta_i`` the distance to the other Ritz values:
the Kato-Temple / Parlett bound for symmetric matrices), checking after every product, so it
spends no product beyond the one that reaches the target.

What the bounds can and cannot say: an interval of half-width ``r_i`` around ``theta_i``
always holds an eigenvalue; the sharper ``r_i^2 / delta_i`` assumes that no eigenvalue the
Krylov space has not yet seen lies closer than ``delta_i``. Like every Krylov method, Lanczos
can miss an eigenvalue whose eigenvector the start vector barely touches, most often one of a
close pair, and then report the next one in its place. On random spectra with close pairs at
the top (``tests/test_lanczos.py``) this happened for none of 40 at ``tol=1e-6``, one at
``1e-4`` and several at ``1e-3`` and looser: keep ``tol`` at 1e-4 or below when the order of
close eigenvalues matters.

:func:`rayleigh` checks finished pairs with one block product of another operator (the float64
products of :func:`probes.curvature.hessian.eigenvalues`): Rayleigh quotients, residuals and
bounds from those products alone.

:func:`tridiagonals` runs plain Lanczos (full reorthogonalisation, float64) from several start
vectors together and returns each one's tridiagonal, for stochastic Lanczos quadrature.

References:
    - K. Wu, H. Simon, "Thick-restart Lanczos method for large symmetric eigenvalue problems",
      SIAM J. Matrix Anal. Appl., 2000.
    - B. N. Parlett, "The Symmetric Eigenvalue Problem", SIAM, 1998 (sections 11-13: residual
      and gap bounds).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from probes.curvature.operators import check_finite

__all__ = ["Ritz", "error_bounds", "extreme", "rayleigh", "tridiagonals", "wanted_indices"]


@dataclass(frozen=True, eq=False)
class Ritz:
    """Wanted Ritz pairs of :func:`extreme`, ascending.

    values: Ritz values (float64). vectors: unit Ritz vectors, one a row, on the device.
    residuals: ``||H y - theta y||`` from the stored products. errors: the bound on
    ``|lambda - theta|``. converged: whether each error meets its threshold.
    n_products: products spent. restarts: thick restarts done.
    spectrum: all Ritz values of the last projected matrix, ascending (the gaps of the bounds).
    wanted: the positions of ``values`` in ``spectrum``.
    """

    values: np.ndarray
    vectors: Tensor
    residuals: np.ndarray
    errors: np.ndarray
    converged: np.ndarray
    n_products: int
    restarts: int
    spectrum: np.ndarray
    wanted: np.ndarray


def wanted_indices(values: np.ndarray, which: str, count: int) -> np.ndarray:
    """Indices of the ``count`` wanted values of ascending ``values`` (ascending order).

    The largest, the smallest, ``count // 2`` (rounded up) from each end, or the largest in
    magnitude.
    """
    n = len(values)
    count = min(count, n)
    if which == "largest":
        return np.arange(n - count, n)
    if which == "smallest":
        return np.arange(count)
    if which == "both":
        top = (count + 1) // 2
        return np.unique(np.concatenate([np.arange(count - top), np.arange(n - top, n)]))
    idx = np.argsort(-np.abs(values), kind="stable")[:count]
    return np.sort(idx)


def error_bounds(
    values: np.ndarray, wanted: np.ndarray, residuals: np.ndarray, rounding: float = 0.0
) -> np.ndarray:
    """``min(r, r^2 / gap)`` for the wanted Ritz values (``residuals`` theirs).

    The gap is that to the other Ritz values less the residual; just ``r`` where no other Ritz value
    separates it. With ``rounding`` (``e``, a bound on the error of the products the values and
    residuals came from), for the exact operator: ``min(r + e, (r + 2e)^2 / gap + e)`` (the value
    is off the exact Rayleigh quotient by up to ``e``, its residual by up to ``2e``).
    """
    if rounding > 0:
        quadratic = error_bounds(values, wanted, np.asarray(residuals) + 2 * rounding) + rounding
        return np.minimum(np.asarray(residuals, dtype=np.float64) + rounding, quadratic)
    out = np.asarray(residuals, dtype=np.float64).copy()
    for n, i in enumerate(wanted):
        others = np.delete(values, i)
        if len(others) == 0:
            continue
        gap = float(np.min(np.abs(others - values[i]))) - out[n]
        if gap > out[n]:
            out[n] = out[n] ** 2 / gap
    return out


def rayleigh(
    matvec: Callable[[Tensor], Tensor],
    rows: np.ndarray,
    spectrum: np.ndarray,
    wanted: np.ndarray,
    device: torch.device,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rayleigh quotients, residuals and error bounds of vectors from one block product in float64.

    Args:
        matvec: the operator on a (k, P) float64 block (e.g. a float64 curvature operator).
        rows: the vectors, one a row (normalised here).
        spectrum: the Ritz values the vectors came with; the gaps of the bounds are to these,
            with the vectors' own values (at ``wanted``) replaced by their quotients.
        wanted: the positions of the vectors' values in ``spectrum``.
        device: where the products are computed.

    Returns:
        ``y^T M y``, ``||M y - (y^T M y) y||`` and ``min(r, r^2 / gap)`` for each unit ``y``.
    """
    y = torch.from_numpy(np.ascontiguousarray(rows, dtype=np.float64)).to(device)
    y = y / y.norm(dim=1, keepdim=True)
    my = matvec(y).detach().to(torch.float64)
    check_finite(my, "eigenvalues")
    rho = (y * my).sum(1)
    res = (my - rho[:, None] * y).norm(dim=1).cpu().numpy()
    values = rho.cpu().numpy()
    others = np.array(spectrum, dtype=np.float64)
    others[wanted] = values
    return values, res, error_bounds(others, wanted, res)


def _project_out(basis: Tensor, w: Tensor) -> Tensor:
    """One classical Gram-Schmidt pass, in place: ``w -= basis^T (basis w)``; the coefficients."""
    h = basis @ w
    w.addmv_(basis.T, h, alpha=-1)
    return h


def _orthogonalize(basis: Tensor, w: Tensor) -> tuple[Tensor, Tensor]:
    """``w`` less its projection on the rows of ``basis`` (Gram-Schmidt twice).

    Returns the remainder (a new vector; ``w`` is left as it is) and the coefficients.
    """
    w = w.clone()
    return w, _project_out(basis, w) + _project_out(basis, w)


def _orthogonalize_product(basis: Tensor, w: Tensor) -> tuple[Tensor, Tensor]:
    """A product ``w = H q_j`` (``q_j`` the last row of ``basis``) less its projection on it.

    Lanczos' three-term recurrence first: the two newest rows, the only ones ``w`` has more
    than rounding along in exact arithmetic (the kept Ritz vectors too, just after a thick
    restart); then one classical Gram-Schmidt pass over every row, and a second only when
    that pass took away more than ``1 - 1/sqrt(2)`` of what was left (the criterion of
    Daniel, Gragg, Kaufman and Stewart: "twice is enough"). Two passes over the basis a
    product instead of the four of :func:`_orthogonalize`, which is what the step costs when
    the basis is large (its memory traffic). Returns the remainder (a new vector; ``w`` is
    left as it is) and every coefficient, the two newest included (the whole column of ``T``).
    """
    newest = max(0, basis.shape[0] - 2)
    w = w.clone()
    h_new = _project_out(basis[newest:], w)
    before = float(w.norm())
    h = _project_out(basis, w)
    h[newest:] += h_new
    if float(w.norm()) < before / np.sqrt(2.0):
        h += _project_out(basis, w)
    return w, h


def extreme(
    matvec: Callable[[Tensor], Tensor],
    v0: Tensor,
    nev: int,
    which: str,
    thresholds: Callable[[np.ndarray], np.ndarray],
    *,
    basis: int,
    max_products: int | None = None,
    seed: int = 0,
    rounding: float = 0.0,
) -> Ritz:
    """Thick-restart Lanczos for the ``nev`` wanted eigenpairs (see the module docstring).

    Args:
        matvec: the symmetric operator: a (P,) tensor to a (P,) tensor.
        v0: start vector (P,) on the operator's device and in its dtype (the basis is kept
            in that dtype, at least float32; ``matvec`` gets and returns vectors in it).
        nev: wanted pairs.
        which: ``"largest"``, ``"smallest"``, ``"both"`` (half from each end) or
            ``"magnitude"``.
        thresholds: maps the wanted Ritz values to the error each must reach.
        basis: the largest basis before a thick restart (at least ``nev + 2``, at most P).
        max_products: stop after this many products (the best pairs so far come back;
            default ``20 * max(basis, 50)``, a guard against a target below the rounding level
            of the products).
        seed: for the random vector that continues after an invariant subspace.
        rounding: the products' error relative to ``max|theta|`` (e.g. ``10 eps``): every
            bound allows for products off by ``rounding * max|theta|`` (:func:`error_bounds`;
            the stop included), so they hold for the exact operator, not only for its rounded
            products.
    """
    p = v0.numel()
    dev, dtype = v0.device, torch.promote_types(v0.dtype, torch.float32)
    m = min(p, basis)
    keep = min(m - 1, nev + max(1, (m - nev) // 2))
    # rows are written before they are read: empty, so unused rows take no memory on a host
    q = torch.empty(m + 1, p, device=dev, dtype=dtype)
    t = np.zeros((m + 1, m + 1))
    q[0] = v0.to(dtype) / v0.to(dtype).norm()
    j, n, restarts, gen, hold = 0, 0, 0, None, 0
    # H Q = Q T + [extra, 0] (to rounding): extra, (k, P), for the first k vectors, from restarts
    extra: Tensor | None = None
    lost = 0.0  # what fresh directions dropped of that relation (added to the residuals)
    limit = 20 * max(m, 50) if max_products is None else max_products
    eps = float(torch.finfo(dtype).eps)
    while True:
        w = matvec(q[j]).to(dtype)
        n += 1
        w, h = _orthogonalize_product(q[: j + 1], w)
        t[: j + 1, j] = h.double().cpu().numpy()
        beta = float(w.norm())
        t[j + 1, j] = beta
        j += 1
        sym = (t[:j, :j] + t[:j, :j].T) / 2
        theta, s = np.linalg.eigh(sym)
        scale = max(float(np.abs(theta).max()), np.finfo(np.float64).tiny)
        # an invariant Krylov space holds exact eigenpairs, but not necessarily the wanted
        # ones: never stop there (unless it is the whole space); go on from a fresh direction
        # and give its Krylov space nev + 10 steps to bring out what the first one lacked
        invariant = beta <= 10 * eps * scale * np.sqrt(j)
        full = j == p
        spent = n >= limit
        if j >= min(nev, p) or spent:
            wanted = wanted_indices(theta, which, nev)
            widen = rounding * scale
            cheap = beta * np.abs(s[-1, wanted])
            ok = error_bounds(theta, wanted, cheap, widen) <= thresholds(theta[wanted])
            if (ok.all() and not invariant and n >= hold) or full or spent:
                tbar = t[: j + 1, :j]
                relation = (tbar, extra, lost)
                found = _ritz(theta, s, wanted, q[:j], relation, thresholds, n, restarts, widen)
                if (found.converged.all() and len(found.values) == nev) or spent or full:
                    return found
        coupling = beta
        if invariant:  # the Krylov space is invariant: continue from a fresh direction
            gen = gen or torch.Generator(device=dev).manual_seed(seed + 1)
            w = torch.randn(p, generator=gen, device=dev, dtype=dtype)
            w, _ = _orthogonalize(q[:j], w)
            lost += beta  # the dropped beta q_j of the last product (rounding level)
            beta, coupling = float(w.norm()), 0.0
            t[j, :j] = 0.0
            hold = n + nev + 10
        if j == m:  # thick restart from the `keep` best Ritz vectors
            kept = wanted_indices(theta, which, keep)
            sk = torch.from_numpy(s[:, kept].T.copy()).to(dev, dtype)
            # H (Q S) = (Q S) S^T T S + Q (T S - S S^T T S) + coupling: the middle term (the
            # asymmetry of T, at rounding level) is kept as vectors
            ts = t[:j, :j] @ s[:, kept]
            inner = s[:, kept].T @ ts
            out = torch.from_numpy((ts - s[:, kept] @ inner).T.copy()).to(dev, dtype) @ q[:j]
            if extra is not None:
                out += sk[:, : len(extra)] @ extra
            extra = out
            q[: len(kept)] = sk @ q[:j]
            t[:] = 0.0
            t[: len(kept), : len(kept)] = inner
            t[len(kept), : len(kept)] = coupling * s[-1, kept]
            j = len(kept)
            restarts += 1
        torch.div(w, beta, out=q[j])


def _ritz(
    theta: np.ndarray,
    s: np.ndarray,
    wanted: np.ndarray,
    q: Tensor,
    relation: tuple[np.ndarray, Tensor | None, float],
    thresholds: Callable[[np.ndarray], np.ndarray],
    n: int,
    restarts: int,
    widen: float = 0.0,
) -> Ritz:
    """The wanted pairs, with residuals ``||H y - theta y||`` from ``H Q = Q T + [extra, 0]``.

    ``relation``: the whole ``(j + 1) x j`` matrix ``T``, ``extra`` (or None before a restart)
    and ``lost`` (added to the residuals); ``widen`` goes into the bounds.
    """
    sw = torch.from_numpy(s[:, wanted].T.copy()).to(q.device, q.dtype)
    y = sw @ q
    vals = theta[wanted]
    sv, (tbar, extra, lost) = s[:, wanted], relation
    r = tbar @ sv
    r[:-1] -= vals[None, :] * sv
    if extra is None:  # Q orthonormal: the residual's norm is that of its coefficients
        res = np.linalg.norm(r, axis=0) + lost
    else:  # q_{j+1} (coefficient r[-1]) is orthogonal to the rest
        rows = torch.from_numpy(r[:-1].T.copy()).to(q.device, q.dtype) @ q
        rows += sw[:, : len(extra)] @ extra
        inside = rows.double().norm(dim=1).cpu().numpy()
        res = np.sqrt(inside**2 + r[-1] ** 2) + lost
    errors = error_bounds(theta, wanted, res, widen)
    return Ritz(
        values=vals,
        vectors=y / y.norm(dim=1, keepdim=True),
        residuals=res,
        errors=errors,
        converged=errors <= thresholds(vals),
        n_products=n,
        restarts=restarts,
        spectrum=theta,
        wanted=wanted,
    )


def tridiagonals(
    op: Any, n_vectors: int, steps: int, gen: torch.Generator
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """``steps`` Lanczos steps from each of ``n_vectors`` random unit vectors, run together.

    One (active, P) product a step for all the recurrences, with full reorthogonalisation in
    float64. Returns each vector's tridiagonal (alphas, betas).
    """
    p = int(op.size)
    f64 = torch.float64
    v = torch.randn(n_vectors, p, generator=gen, device=op.device, dtype=f64)
    v = v / v.norm(dim=1, keepdim=True)
    basis = torch.zeros(n_vectors, steps, p, device=op.device, dtype=f64)
    alphas = torch.zeros(n_vectors, steps, dtype=f64)
    betas = torch.zeros(n_vectors, steps, dtype=f64)
    length = torch.full((n_vectors,), steps, dtype=torch.long)
    active = torch.arange(n_vectors, device=op.device)
    prev = torch.zeros_like(v)
    beta_prev = torch.zeros(n_vectors, device=op.device, dtype=f64)
    scale = torch.zeros(n_vectors, device=op.device, dtype=f64)
    tol = float(torch.finfo(op.dtype).eps) ** 0.75
    for j in range(steps):
        idx = active
        cur = v[idx]
        basis[idx, j] = cur
        w = op.matvec(cur.to(op.dtype)).to(f64)
        check_finite(w, "density")
        a = (w * cur).sum(1)
        w = w - a[:, None] * cur - beta_prev[idx, None] * prev[idx]
        b_basis = basis[idx, : j + 1]  # (a, j+1, P)
        for _ in range(2):  # full reorthogonalisation
            w = w - torch.einsum("ajp,aj->ap", b_basis, torch.einsum("ajp,ap->aj", b_basis, w))
        b = w.norm(dim=1)
        alphas[idx.cpu(), j] = a.cpu()
        betas[idx.cpu(), j] = b.cpu()
        scale[idx] = torch.maximum(scale[idx], torch.maximum(a.abs(), b))
        if j == steps - 1:
            break
        done = b <= tol * scale[idx].clamp_min(torch.finfo(f64).tiny)
        for i in idx[done].tolist():
            length[i] = j + 1
        keep = ~done
        prev[idx] = cur
        beta_prev[idx] = b
        nxt = torch.zeros_like(w)
        nxt[keep] = w[keep] / b[keep, None]
        v[idx] = nxt
        active = idx[keep]
        if active.numel() == 0:
            break
    out_a, out_b = [], []
    for i in range(n_vectors):
        m = int(length[i])
        out_a.append(alphas[i, :m].numpy())
        out_b.append(betas[i, : m - 1].numpy())
    return out_a, out_b
