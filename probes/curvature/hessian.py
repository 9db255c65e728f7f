r"""Extreme eigenvalues of the Hessian (or the GGN, or the Fisher) of the mean loss.

:func:`eigenvalues` finds the top-k, bottom-k, both ends or the k largest in magnitude eigenpairs by
thick-restart Lanczos on the device (:func:`probes.curvature.lanczos.extreme`) over the curvature
operator of :mod:`probes.curvature.operators`, so it only needs matrix-vector products (each about a
gradient's worth of work). Each Ritz pair's residual ``r = ||H v - lambda v||`` comes from the
coefficients of the orthogonalisation, at no extra product, and the eigenvalue's error is bounded
by ``min(r, r^2 / gap)`` (the gap to the other Ritz values). It stops after the first product at
which every wanted pair's bound meets

.. math:: \mathrm{err} \le \mathrm{tol} \cdot \max(|\lambda|, \tau),
   \qquad \tau = 10\,\varepsilon \max_i |\lambda_i| / \mathrm{tol},

where epsilon is the unit roundoff of the model's dtype, so that eigenvalues that are zero up
to rounding are judged against the rounding level of the products rather than against zero.
``tol`` is thus the relative accuracy of the eigenvalues; the eigenvectors are accurate to
about ``r / gap`` in angle. When ``max_products`` runs out first, the result says which pairs
converged. The dense matrix (:mod:`probes.curvature.dense`) is used instead when nearly every
eigenvalue is wanted.

**Memory.** The thick-restart run keeps its basis, one vector of P numbers a product (up to
``basis`` of them), which is what gives the eigenvectors. One eigenvalue without its vector
needs no basis: then (``basis=None`` with k=1, ``which`` not ``"both"``, no ``vectors``, no
float64 check and ``tol >= sqrt(eps)``, or ``basis=0``) Lanczos runs on its three-term
recurrence alone (:func:`probes.curvature.three_term.three_term`), three vectors whatever the
number of products, with the same bounds while its vectors stay semi-orthogonal, which it checks
after every product; should a wanted pair converge to ``sqrt(eps)`` before they all meet ``tol``,
it starts over with a stored basis (both runs' products in ``cost``). On an HF GPT-2 of 3.7M
parameters at ``tol=1e-3``: 19-24 products either way, 400 MB of peak memory instead of 720 MB
(``benchmarks/hessian_vs_peers.py``).

**Precision.** Products of float16 and bfloat16 models are computed in float32 on a copy, the
basis is kept in at least float32, and ``certify``
(:data:`~probes.curvature.certify.CERTIFY`) makes the bounds hold for the exact matrix rather
than for its rounded products: see :mod:`probes.curvature.certify`.

Examples:
    >>> top = eigenvalues(model, nn.CrossEntropyLoss(), (X, y), k=5)
    >>> top.values, top.residuals, top.converged.all(), top.cost.hvp
    >>> again = eigenvalues(model, loss_fn, (X, y), k=5, v0=top.vectors)  # warm start

References:
    - B. A. Pearlmutter, "Fast exact multiplication by the Hessian", Neural Computation, 1994.
    - K. Wu, H. Simon, "Thick-restart Lanczos method for large symmetric eigenvalue problems",
      SIAM J. Matrix Anal. Appl., 2000.
    - B. N. Parlett, "The Symmetric Eigenvalue Problem", SIAM, 1998 (residual and gap bounds).
    - Z. Yao, A. Gholami, K. Keutzer, M. W. Mahoney, "PyHessian: Neural networks through the
      lens of the Hessian", 2020 (power iteration, the baseline Lanczos improves on).
    - L. Sagun, U. Evci, V. U. Guney, Y. Dauphin, L. Bottou, "Empirical analysis of the Hessian
      of over-parametrized neural networks", 2017.
    - N. N. Schraudolph, "Fast curvature matrix-vector products for second-order gradient
      descent", Neural Computation, 2002 (the generalised Gauss-Newton matrix).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterable
from typing import Any, overload

import numpy as np
import torch
from torch import Tensor, nn

from landscape.engine.checks import _check_choice, _check_int
from landscape.engine.params import ParamFilter
from probes.curvature.blocks import BlockEigenvalues, block_eigenvalues
from probes.curvature.certify import CERTIFY, ROUNDING, resolve, thresholds
from probes.curvature.dense import dense, matrix
from probes.curvature.density import density
from probes.curvature.lanczos import error_bounds, extreme, rayleigh, wanted_indices
from probes.curvature.operators import CURVATURES, CurvatureOperator, operator
from probes.curvature.results import Density, Eigenvalues, Matrix, Trace, curvature_cost
from probes.curvature.three_term import three_term
from probes.curvature.trace import trace

__all__ = [
    "CERTIFY",
    "ROUNDING",
    "WHICH",
    "BlockEigenvalues",
    "Density",
    "Eigenvalues",
    "Matrix",
    "Trace",
    "density",
    "eigenvalues",
    "matrix",
    "trace",
]

WHICH = ("largest", "smallest", "both", "magnitude")
"""Which eigenvalues :func:`eigenvalues` finds: the k algebraically largest, the k smallest,
k from each end, or the k largest in absolute value."""


# ---------------------------------------------------------------------------- helpers
def _signed(rows: np.ndarray) -> np.ndarray:
    """Rows flipped so that each one's largest-magnitude component is positive."""
    rows = np.atleast_2d(rows)
    idx = np.argmax(np.abs(rows), axis=1)
    signs = np.sign(rows[np.arange(len(rows)), idx])
    signs[signs == 0] = 1.0
    return rows * signs[:, None]


def _residuals(op: CurvatureOperator, values: np.ndarray, vectors: np.ndarray) -> np.ndarray:
    """||M v - lambda v|| of each pair, from one block product."""
    if len(values) == 0:
        return np.zeros(0)
    v = torch.from_numpy(np.ascontiguousarray(vectors)).to(op.device, op.dtype)
    mv = op.matvec(v).detach().to("cpu", torch.float64).numpy()
    # the vectors as the device saw them (rounded to the model's dtype)
    seen = v.detach().to("cpu", torch.float64).numpy()
    return np.linalg.norm(mv - values[:, None] * seen, axis=1)


def _start(v0: Any, p: int, seed: int) -> np.ndarray:
    if v0 is None:
        gen = torch.Generator().manual_seed(seed)
        return torch.randn(p, generator=gen, dtype=torch.float64).numpy()
    if isinstance(v0, np.ndarray):
        v0 = torch.from_numpy(v0)
    if not isinstance(v0, Tensor) or v0.ndim not in (1, 2) or v0.shape[-1] != p:
        shape = tuple(v0.shape) if hasattr(v0, "shape") else type(v0).__name__
        raise ValueError(
            f"eigenvalues: v0 must be a tensor (P,) or (j, P) with P={p} "
            f"(e.g. a previous result's vectors), got {shape}"
        )
    rows = v0.detach().to("cpu", torch.float64).reshape(-1, p).numpy()
    start = _signed(rows).sum(axis=0)
    norm = np.linalg.norm(start)
    if not np.isfinite(norm) or norm == 0:
        raise ValueError("eigenvalues: v0 must be finite and not sum to zero")
    return start / norm


# ---------------------------------------------------------------------------- probes
@overload
def eigenvalues(
    model: nn.Module,
    loss_fn: Callable[[Any, Tensor], Tensor],
    data: Any,
    *,
    k: int = 1,
    which: str = "largest",
    tol: float = 1e-6,
    curvature: str = "hessian",
    params: ParamFilter | Iterable[str] | None = None,
    mode: str = "eval",
    vectors: bool = False,
    v0: Tensor | np.ndarray | None = None,
    max_products: int | None = None,
    seed: int = 0,
    batch_size: int | None = None,
    check: bool = True,
    blocks: None = None,
    basis: int | None = None,
    certify: str = "auto",
) -> Eigenvalues: ...


@overload
def eigenvalues(
    model: nn.Module,
    loss_fn: Callable[[Any, Tensor], Tensor],
    data: Any,
    *,
    k: int = 1,
    which: str = "largest",
    tol: float = 1e-6,
    curvature: str = "hessian",
    params: ParamFilter | Iterable[str] | None = None,
    mode: str = "eval",
    vectors: bool = False,
    v0: Tensor | np.ndarray | None = None,
    max_products: int | None = None,
    seed: int = 0,
    batch_size: int | None = None,
    check: bool = True,
    blocks: str,
    basis: int | None = None,
    certify: str = "auto",
) -> BlockEigenvalues: ...


def eigenvalues(
    model: nn.Module,
    loss_fn: Callable[[Any, Tensor], Tensor],
    data: Any,
    *,
    k: int = 1,
    which: str = "largest",
    tol: float = 1e-6,
    curvature: str = "hessian",
    params: ParamFilter | Iterable[str] | None = None,
    mode: str = "eval",
    vectors: bool = False,
    v0: Tensor | np.ndarray | None = None,
    max_products: int | None = None,
    seed: int = 0,
    batch_size: int | None = None,
    check: bool = True,
    blocks: str | None = None,
    basis: int | None = None,
    certify: str = "auto",
) -> Eigenvalues | BlockEigenvalues:
    """Extreme eigenvalues of the Hessian (or GGN) of the mean loss, by Lanczos.

    With ``blocks="layer"``: the same for each layer's diagonal block (the parameters of one
    module, the others fixed), returned as a :class:`~probes.curvature.blocks.BlockEigenvalues`.

    Thick-restart Lanczos on the device (see the module docstring): no matrix is formed; the
    cost is products with vectors, each about one gradient's worth of work, and it stops at the
    first product where every wanted pair's error bound meets ``tol``. When k (2k for
    ``"both"``) is within one of P, the dense matrix is built instead (P products). Unless the
    model is float64, the bounds are made to hold for the exact matrix (``certify``, see the
    module docstring): widened by the products' rounding level when ``tol >= 1000 eps``, else
    by one block product in float64 on a float64 copy of the model (values are then the float64
    Rayleigh quotients). Memory: the basis (not its products), up to ``basis * P`` numbers of
    the products' dtype (float32 for float16, bfloat16 and float32 models; on a host only the
    rows used take memory), or three vectors without a basis (see the module docstring), a
    float32 copy of a float16 or bfloat16 model, and with the float64 check the float64 copy.

    Args:
        model: the model (never modified).
        loss_fn: a mean loss ``loss_fn(outputs, targets)``.
        data: ``(inputs, targets)`` tensors, a Dataset or a DataLoader.
        k: how many eigenvalues (from each end for ``"both"``).
        which: ``"largest"`` or ``"smallest"`` (algebraic), ``"both"`` (k from each end),
            ``"magnitude"`` (largest ``|lambda|``).
        tol: relative accuracy of the eigenvalues: stop when every bound
            ``min(r, r^2 / gap) <= tol * max(|lambda|, tau)``.
        curvature: ``"hessian"``, ``"ggn"`` (generalised Gauss-Newton, PSD) or ``"fisher"``.
        params: the parameters the matrix is over (a filter, names; None: all trainable).
        mode: ``"eval"`` (default; BatchNorm running statistics, no dropout) or ``"train"``.
        vectors: also return the eigenvectors.
        v0: warm start: a (P,) or (j, P) tensor, e.g. the vectors of a result at a nearby
            point; Lanczos starts from the sum of its rows (each signed deterministically).
        max_products: budget of products (None: until converged), the float64 check's
            included (Lanczos gets ``max_products - n`` for n wanted pairs). When spent, the
            best pairs so far are returned with ``converged`` saying which meet ``tol``.
        seed: seed of the random start vector (when no ``v0``).
        batch_size: passed to :class:`landscape.Objective`.
        check: passed to :class:`landscape.Objective`.
        blocks: None, or ``"layer"`` for one result per layer's diagonal block.
        basis: the Lanczos basis size before a thick restart (at least n + 2 for n wanted
            pairs), or 0: no basis, the three-term recurrence (no ``vectors``, no float64
            check). Default: no basis where that is safe (see the module docstring), else
            ``max(n + 25, 2n + 10)``.
        certify: how results of float32 products are certified
            (:data:`~probes.curvature.certify.CERTIFY`):
            ``"float64"`` (one block product on a float64 copy of the model), ``"rounding"``
            (bounds for products off by ``10 eps max|theta|``, no extra product nor copy) or
            ``"auto"`` (``"rounding"`` when ``tol >= 1000 eps``, else ``"float64"``).

    Returns:
        :class:`Eigenvalues`: ascending values, residuals, error bounds, converged flags,
        options, cost
        (:class:`~probes.curvature.blocks.BlockEigenvalues` with ``blocks="layer"``).

    Raises:
        ValueError: k < 1, k larger than P (2k for ``"both"``), an unknown ``which`` or
            ``curvature``, a bad ``tol``, ``v0`` or ``max_products``; whatever the objective
            refuses (a loss that is not a scalar, empty data, ...).

    Examples:
        >>> top = eigenvalues(model, nn.CrossEntropyLoss(), (X, y), k=5, vectors=True)
        >>> top.values[-1], top.converged.all(), top.cost.hvp
    """
    if blocks is not None:
        return block_eigenvalues(
            eigenvalues,
            model,
            loss_fn,
            data,
            blocks=blocks,
            check=check,
            k=k,
            which=which,
            tol=tol,
            curvature=curvature,
            params=params,
            mode=mode,
            vectors=vectors,
            v0=v0,
            max_products=max_products,
            seed=seed,
            batch_size=batch_size,
            basis=basis,
            certify=certify,
        )
    fn = "eigenvalues"
    started = time.perf_counter()
    k = _check_int(fn, "k", k, 1)
    _check_choice(fn, "which", which, WHICH)
    _check_choice(fn, "curvature", curvature, CURVATURES)
    if isinstance(tol, bool) or not isinstance(tol, (int, float, np.floating)) or not 0 < tol < 1:
        raise ValueError(f"{fn}: tol must be a number in (0, 1), got {tol!r}")
    tol = float(tol)
    if max_products is not None:
        max_products = _check_int(fn, "max_products", max_products, 1)
    seed = _check_int(fn, "seed", seed, 0)
    if basis is not None and not (basis == 0 and not isinstance(basis, bool)):
        basis = _check_int(fn, "basis", basis, (2 * k if which == "both" else k) + 2)
    _check_choice(fn, "certify", certify, CERTIFY)

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
    nev = 2 * k if which == "both" else k
    if nev > p:
        what = "2k" if which == "both" else "k"
        raise ValueError(
            f"{fn}: {what} must be at most P={p} (the number of parameters), got k={k}"
        )
    base = op.n_products
    eps = float(torch.finfo(op.dtype).eps)
    if certify == "auto":
        certify = resolve(tol, op.dtype)
    exact = op.dtype == torch.float64  # float64 products need no float64 check
    check64 = not exact and certify == "float64"
    if basis == 0 and (vectors or check64):
        need = "vectors=True" if vectors else "the float64 check (certify='float64' or a tight tol)"
        raise ValueError(
            f"{fn}: basis=0 keeps no Lanczos basis and so no eigenvectors, which {need} needs: "
            "pass basis=None or a size"
        )
    widen = not exact and not check64  # bounds widened by the products' rounding level
    budget = max(1, max_products - nev) if check64 and max_products is not None else max_products
    if nev >= p - 1 or p <= 3:  # nearly the whole spectrum: the dense matrix is cheaper
        ritz = None
        full = dense(op)
        spectrum, vecs = np.linalg.eigh((full + full.T) / 2)
        wanted = wanted_indices(spectrum, which, nev)
        rows = _signed(vecs[:, wanted].T)
        vals, restarts = spectrum[wanted], 0
        res = _residuals(op, vals, rows)
        errors = error_bounds(spectrum, wanted, res)
        converged = errors <= thresholds(vals, tol, op.dtype)
    else:
        v0_t = torch.from_numpy(_start(v0, p, seed)).to(op.device, op.dtype)
        # no stored basis where nothing needs the Ritz vectors and a wanted pair cannot turn
        # good (residual sqrt(eps) max|theta|) before it meets tol
        lean = basis == 0 or (
            basis is None and nev == 1 and not vectors and not check64 and tol >= np.sqrt(eps)
        )
        stop = functools.partial(thresholds, tol=tol, dtype=op.dtype, widened=widen)
        level = ROUNDING * eps if widen else 0.0
        ritz = None
        if lean:
            ritz = three_term(
                op.matvec, v0_t, nev, which, stop, max_products=budget, rounding=level
            )
        if ritz is None:  # a basis is needed, or three-term handed over
            used = op.n_products - base
            ritz = extreme(
                op.matvec,
                v0_t,
                nev,
                which,
                stop,
                basis=basis or max(nev + 25, 2 * nev + 10),
                max_products=None if budget is None else max(1, budget - used),
                seed=seed,
                rounding=level,
            )
        vals, res, errors, converged = ritz.values, ritz.residuals, ritz.errors, ritz.converged
        rows = _signed(ritz.vectors.detach().to("cpu", torch.float64).numpy())
        spectrum, wanted, restarts = ritz.spectrum, ritz.wanted, ritz.restarts
    names = tuple(op.objective.layout.names)
    products, passes, certified = op.n_products - base, op.passes, exact
    if widen and len(vals):
        # the products are off by up to their rounding level, and so are the residuals: the
        # Lanczos bounds are widened by it already, the dense ones here
        if ritz is None:
            rounding = ROUNDING * eps * float(np.max(np.abs(spectrum)))
            errors = error_bounds(spectrum, wanted, res, rounding)
            converged = errors <= thresholds(vals, tol, op.dtype, widen)
        certified = True
    elif not exact and len(vals):
        op.objective.clear_cache()
        try:
            op64 = operator(
                model,
                loss_fn,
                data,
                curvature=curvature,
                params=list(names),
                mode=mode,
                batch_size=batch_size,
                check=False,
                dtype=torch.float64,
            )
            vals, res, errors = rayleigh(op64.matvec, rows, spectrum, wanted, op64.device)
            products, passes, certified = products + op64.n_products, passes + op64.passes, True
            converged = errors <= thresholds(vals, tol, op.dtype)
        except (RuntimeError, ValueError, TypeError, NotImplementedError):
            # the model does not run in float64: the rounding level of the products instead
            errors = errors + ROUNDING * eps * float(np.max(np.abs(spectrum)))
        order = np.argsort(vals, kind="stable")
        vals, res, errors, rows = vals[order], res[order], errors[order], rows[order]
        converged = converged[order]
    cost = curvature_cost(curvature, products, passes, time.perf_counter() - started)
    return Eigenvalues(
        values=vals,
        vectors=rows if vectors else None,
        residuals=res,
        errors=errors,
        converged=converged,
        which=which,
        k=k,
        tol=tol,
        curvature=curvature,
        params=names,
        cost=cost,
        mode=mode,
        restarts=restarts,
        dtype=str(op.dtype).removeprefix("torch."),
        certified=certified,
    )
