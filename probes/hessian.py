"""Eigenvalues and the dense matrix of the Hessian (or the GGN) of the mean loss.

:func:`eigenvalues` finds the top-k, bottom-k, both ends or the k largest in magnitude
eigenpairs by implicitly restarted Lanczos (ARPACK through :func:`scipy.sparse.linalg.eigsh`)
on the curvature operator of :mod:`probes.curvature`, so it only needs matrix-vector products
(each costs a small multiple of a gradient). Every returned pair is checked afterwards with one
block product: the residual ``||H v - lambda v||`` is reported as computed, and a pair counts
as converged only when

.. math:: \\|H v - \\lambda v\\| \\le \\mathrm{tol} \\cdot \\max(|\\lambda|, \\tau),
   \\qquad \\tau = 10\\,\\varepsilon \\max_i |\\lambda_i| / \\mathrm{tol},

where epsilon is the unit roundoff of the model's dtype, so that eigenvalues that are zero up
to rounding are judged against the rounding level of the products rather than against zero.
Pairs that miss the target are refined (ARPACK again, with a tighter tolerance and a warm start
from the best vectors) while ``max_products`` allows; the result says which pairs converged.

:func:`matrix` builds the dense P x P matrix for small models, column blocks at a time, and its
full spectrum with :func:`numpy.linalg.eigvalsh`.

Examples:
    >>> top = eigenvalues(model, nn.CrossEntropyLoss(), (X, y), k=5)
    >>> top.values, top.residuals, top.converged.all(), top.n_hvp
    >>> again = eigenvalues(model, loss_fn, (X, y), k=5, v0=top.vectors)  # warm start
    >>> H = matrix(model, loss_fn, (X, y)).matrix

References:
    - B. A. Pearlmutter, "Fast exact multiplication by the Hessian", Neural Computation, 1994.
    - R. B. Lehoucq, D. C. Sorensen, C. Yang, "ARPACK Users' Guide", SIAM, 1998 (implicitly
      restarted Lanczos; ``eigsh``).
    - Z. Yao, A. Gholami, K. Keutzer, M. W. Mahoney, "PyHessian: Neural networks through the
      lens of the Hessian", 2020 (power iteration, the baseline Lanczos improves on).
    - L. Sagun, U. Evci, V. U. Guney, Y. Dauphin, L. Bottou, "Empirical analysis of the Hessian
      of over-parametrized neural networks", 2017.
    - N. N. Schraudolph, "Fast curvature matrix-vector products for second-order gradient
      descent", Neural Computation, 2002 (the generalised Gauss-Newton matrix).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from scipy.sparse.linalg import ArpackError, ArpackNoConvergence, LinearOperator, eigsh
from torch import Tensor, nn

from landscape._checks import _check_choice, _check_int
from landscape.params import ParamFilter

from .curvature import CURVATURES, CurvatureOperator, check_record, operator
from .spectral import Density, Trace, density, trace

__all__ = ["WHICH", "Density", "Eigenvalues", "Matrix", "Trace", "density", "eigenvalues",
           "matrix", "trace"]

WHICH = ("largest", "smallest", "both", "magnitude")
"""Which eigenvalues :func:`eigenvalues` finds: the k algebraically largest, the k smallest,
k from each end, or the k largest in absolute value."""

_ARPACK = {"largest": "LA", "smallest": "SA", "both": "BE", "magnitude": "LM"}
_REFINEMENTS = 3  # ARPACK reruns after the first, at most


# ---------------------------------------------------------------------------- results
@dataclass(frozen=True, eq=False)
class Eigenvalues:
    """Eigenpairs of the curvature matrix found by :func:`eigenvalues`.

    Attributes:
        values: eigenvalues, ascending (k of them; 2k for ``which="both"``; fewer only when
            the product budget ran out before ARPACK had that many).
        vectors: unit eigenvectors, one a row, in the order of ``values`` (largest component
            positive), or None when not asked for.
        residuals: ``||H v - lambda v||`` of each pair, computed after the fact.
        converged: whether each pair meets ``tol`` (see the module docstring).
        which, k, tol, curvature, mode: the options. params: names of the parameters the
            matrix is over, in the order of the flat vector.
        n_hvp: matrix-vector products, the residual check included. passes: passes over the
            data. seconds: wall time of the whole probe.
    """

    values: np.ndarray
    vectors: np.ndarray | None
    residuals: np.ndarray
    converged: np.ndarray
    which: str
    k: int
    tol: float
    curvature: str
    n_hvp: int
    passes: float
    seconds: float
    params: tuple[str, ...]
    mode: str = "eval"

    @property
    def all_converged(self) -> bool:
        """Every requested pair was found and meets ``tol``."""
        wanted = 2 * self.k if self.which == "both" else self.k
        return len(self.values) == wanted and bool(np.all(self.converged))

    def to_record(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """Arrays and attributes for :meth:`landscape.store.Store.write_record`."""
        arrays = {"values": self.values, "residuals": self.residuals,
                  "converged": self.converged.astype(bool)}
        if self.vectors is not None:
            arrays["vectors"] = self.vectors
        attrs = {"probe": "hessian.eigenvalues", "which": self.which, "k": self.k,
                 "tol": self.tol, "curvature": self.curvature, "mode": self.mode,
                 "n_hvp": self.n_hvp, "passes": float(self.passes),
                 "seconds": float(self.seconds), "params": list(self.params)}
        return arrays, attrs

    @classmethod
    def from_record(cls, record: Any) -> Eigenvalues:
        """The result written by :meth:`to_record`, from a :class:`landscape.store.Record`."""
        a, at = check_record(record, "hessian.eigenvalues", "Eigenvalues.from_record")
        return cls(values=np.asarray(a["values"]),
                   vectors=np.asarray(a["vectors"]) if "vectors" in a else None,
                   residuals=np.asarray(a["residuals"]),
                   converged=np.asarray(a["converged"], dtype=bool),
                   which=at["which"], k=int(at["k"]), tol=float(at["tol"]),
                   curvature=at["curvature"], n_hvp=int(at["n_hvp"]),
                   passes=float(at["passes"]), seconds=float(at["seconds"]),
                   params=tuple(at["params"]), mode=at.get("mode", "eval"))


@dataclass(frozen=True, eq=False)
class Matrix:
    """The dense curvature matrix built by :func:`matrix`.

    Attributes:
        matrix: the P x P matrix as computed (float64; row i is the product with e_i).
        spectrum: eigenvalues of its symmetric part, ascending.
        asymmetry: ``||M - M^T||_F / ||M||_F`` (rounding only; larger means a wrong product).
        curvature, mode: the options. params: parameter names, in flat order.
        n_hvp, passes, seconds: the cost.
    """

    matrix: np.ndarray
    spectrum: np.ndarray
    asymmetry: float
    curvature: str
    n_hvp: int
    passes: float
    seconds: float
    params: tuple[str, ...] = ()
    mode: str = "eval"

    def to_record(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """Arrays and attributes for :meth:`landscape.store.Store.write_record`."""
        arrays = {"matrix": self.matrix, "spectrum": self.spectrum}
        attrs = {"probe": "hessian.matrix", "asymmetry": float(self.asymmetry),
                 "curvature": self.curvature, "mode": self.mode, "n_hvp": self.n_hvp,
                 "passes": float(self.passes), "seconds": float(self.seconds),
                 "params": list(self.params)}
        return arrays, attrs

    @classmethod
    def from_record(cls, record: Any) -> Matrix:
        """The result written by :meth:`to_record`, from a :class:`landscape.store.Record`."""
        a, at = check_record(record, "hessian.matrix", "Matrix.from_record")
        return cls(matrix=np.asarray(a["matrix"]), spectrum=np.asarray(a["spectrum"]),
                   asymmetry=float(at["asymmetry"]), curvature=at["curvature"],
                   n_hvp=int(at["n_hvp"]), passes=float(at["passes"]),
                   seconds=float(at["seconds"]), params=tuple(at["params"]),
                   mode=at.get("mode", "eval"))


# ---------------------------------------------------------------------------- helpers
def _signed(rows: np.ndarray) -> np.ndarray:
    """Rows flipped so that each one's largest-magnitude component is positive."""
    rows = np.atleast_2d(rows)
    idx = np.argmax(np.abs(rows), axis=1)
    signs = np.sign(rows[np.arange(len(rows)), idx])
    signs[signs == 0] = 1.0
    return rows * signs[:, None]


def _dense(op: CurvatureOperator, block: int = 64) -> np.ndarray:
    """The P x P matrix, row i = M e_i, from products with blocks of the identity."""
    p = op.size
    out = np.empty((p, p), dtype=np.float64)
    for start in range(0, p, block):
        stop = min(p, start + block)
        eye = torch.zeros(stop - start, p, dtype=op.dtype, device=op.device)
        eye[torch.arange(stop - start), torch.arange(start, stop)] = 1
        out[start:stop] = op.matvec(eye).detach().to("cpu", torch.float64).numpy()
    return out


def _residuals(op: CurvatureOperator, values: np.ndarray, vectors: np.ndarray) -> np.ndarray:
    """||M v - lambda v|| of each pair, from one block product."""
    if len(values) == 0:
        return np.zeros(0)
    v = torch.from_numpy(np.ascontiguousarray(vectors)).to(op.device, op.dtype)
    mv = op.matvec(v).detach().to("cpu", torch.float64).numpy()
    # the vectors as the device saw them (rounded to the model's dtype)
    seen = v.detach().to("cpu", torch.float64).numpy()
    return np.linalg.norm(mv - values[:, None] * seen, axis=1)


def _thresholds(values: np.ndarray, tol: float, dtype: torch.dtype) -> np.ndarray:
    eps = torch.finfo(dtype).eps if dtype.is_floating_point else np.finfo(np.float64).eps
    scale = float(np.max(np.abs(values))) if len(values) else 0.0
    tiny = max(10 * eps * scale / tol, np.finfo(np.float64).tiny)
    return tol * np.maximum(np.abs(values), tiny)


def _select(values: np.ndarray, vectors: np.ndarray, which: str, k: int
            ) -> tuple[np.ndarray, np.ndarray]:
    """The wanted pairs of a full (ascending) eigendecomposition; vectors as columns."""
    p = len(values)
    if which == "largest":
        idx = np.arange(p - k, p)
    elif which == "smallest":
        idx = np.arange(k)
    elif which == "both":
        idx = np.unique(np.concatenate([np.arange(k), np.arange(p - k, p)]))
    else:
        idx = np.sort(np.argsort(-np.abs(values), kind="stable")[:k])
        idx = idx[np.argsort(values[idx], kind="stable")]
    return values[idx], vectors[:, idx]


def _start(v0: Any, p: int, seed: int) -> np.ndarray:
    if v0 is None:
        gen = torch.Generator().manual_seed(seed)
        return torch.randn(p, generator=gen, dtype=torch.float64).numpy()
    if isinstance(v0, np.ndarray):
        v0 = torch.from_numpy(v0)
    if not isinstance(v0, Tensor) or v0.ndim not in (1, 2) or v0.shape[-1] != p:
        shape = tuple(v0.shape) if hasattr(v0, "shape") else type(v0).__name__
        raise ValueError(f"eigenvalues: v0 must be a tensor (P,) or (j, P) with P={p} "
                         f"(e.g. a previous result's vectors), got {shape}")
    rows = v0.detach().to("cpu", torch.float64).reshape(-1, p).numpy()
    start = _signed(rows).sum(axis=0)
    norm = np.linalg.norm(start)
    if not np.isfinite(norm) or norm == 0:
        raise ValueError("eigenvalues: v0 must be finite and not sum to zero")
    return start / norm


# ---------------------------------------------------------------------------- probes
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
) -> Eigenvalues:
    """Extreme eigenvalues of the Hessian (or GGN) of the mean loss, by Lanczos.

    With ``blocks="layer"``: the same for each layer's diagonal block (the parameters of one
    module, the others fixed), returned as a :class:`~probes.blocks.BlockEigenvalues`.

    Implicitly restarted Lanczos (``scipy.sparse.linalg.eigsh``, ARPACK) on the curvature
    operator: no matrix is formed; the cost is products with vectors, each about one
    gradient's worth of work. When k (2k for ``"both"``) is within one of P, the dense matrix
    is built instead (P products).

    Args:
        model, loss_fn, data: the model (never modified), a mean loss ``loss_fn(outputs,
            targets)``, and ``(inputs, targets)`` tensors, a Dataset or a DataLoader.
        k: how many eigenvalues (from each end for ``"both"``).
        which: ``"largest"`` or ``"smallest"`` (algebraic), ``"both"`` (k from each end),
            ``"magnitude"`` (largest ``|lambda|``).
        tol: relative residual target: ``||H v - lambda v|| <= tol * max(|lambda|, tau)``.
        curvature: ``"hessian"`` or ``"ggn"`` (generalised Gauss-Newton, PSD).
        params: the parameters the matrix is over (a filter, names; None: all trainable).
        mode: ``"eval"`` (default; BatchNorm running statistics, no dropout) or ``"train"``.
        vectors: also return the eigenvectors.
        v0: warm start: a (P,) or (j, P) tensor, e.g. the vectors of a result at a nearby
            point; ARPACK starts from the sum of its rows (each signed deterministically).
        max_products: budget of products (None: ARPACK's own limit and at most
            3 refinements). When spent, the pairs found so far are returned with
            ``converged`` saying which meet ``tol``.
        seed: seed of the random start vector (when no ``v0``).
        batch_size, check: passed to :class:`landscape.Objective`.
        blocks: None, or ``"layer"`` for one result per layer's diagonal block.

    Returns:
        :class:`Eigenvalues`: ascending values, residuals, converged flags, options, cost
        (:class:`~probes.blocks.BlockEigenvalues` with ``blocks="layer"``).

    Raises:
        ValueError: k < 1, k larger than P (2k for ``"both"``), an unknown ``which`` or
            ``curvature``, a bad ``tol``, ``v0`` or ``max_products``; whatever the objective
            refuses (a loss that is not a scalar, empty data, ...).

    Examples:
        >>> top = eigenvalues(model, nn.CrossEntropyLoss(), (X, y), k=5, vectors=True)
        >>> top.values[-1], top.converged.all(), top.n_hvp
    """
    if blocks is not None:
        from .blocks import block_eigenvalues

        return block_eigenvalues(eigenvalues, model, loss_fn, data, blocks=blocks, check=check,
                                 k=k, which=which, tol=tol, curvature=curvature, params=params,
                                 mode=mode, vectors=vectors, v0=v0, max_products=max_products,
                                 seed=seed, batch_size=batch_size)
    fn = "eigenvalues"
    started = time.perf_counter()
    k = _check_int(fn, "k", k, 1)
    _check_choice(fn, "which", which, WHICH)
    _check_choice(fn, "curvature", curvature, CURVATURES)
    if (isinstance(tol, bool) or not isinstance(tol, (int, float, np.floating))
            or not 0 < tol < 1):
        raise ValueError(f"{fn}: tol must be a number in (0, 1), got {tol!r}")
    tol = float(tol)
    if max_products is not None:
        max_products = _check_int(fn, "max_products", max_products, 1)
    seed = _check_int(fn, "seed", seed, 0)

    op = operator(model, loss_fn, data, curvature=curvature, params=params, mode=mode,
                  batch_size=batch_size, check=check)
    p = op.size
    nev = 2 * k if which == "both" else k
    if nev > p:
        what = "2k" if which == "both" else "k"
        raise ValueError(f"{fn}: {what} must be at most P={p} (the number of parameters), got "
                         f"k={k}")
    start_vec = _start(v0, p, seed)
    base = op.n_products

    if nev >= p - 1 or p <= 3:
        full = _dense(op)
        vals, vecs = np.linalg.eigh((full + full.T) / 2)
        vals, vecs = _select(vals, vecs, which, k)
        best = (vals, _signed(vecs.T))
        res = _residuals(op, *best)
    else:
        best, res = _lanczos(op, which, nev, tol, start_vec, max_products, base,
                             warm=v0 is not None)

    vals, vecs = best
    order = np.argsort(vals, kind="stable")
    vals, vecs, res = vals[order], vecs[order], res[order]
    converged = res <= _thresholds(vals, tol, op.dtype)
    names = tuple(op.objective.layout.names)
    return Eigenvalues(values=vals, vectors=vecs if vectors else None, residuals=res,
                       converged=converged, which=which, k=k, tol=tol, curvature=curvature,
                       n_hvp=op.n_products - base, passes=float(op.passes),
                       seconds=time.perf_counter() - started, params=names, mode=mode)


class _BudgetSpent(Exception):
    """Raised inside ARPACK's reverse communication when the next product would overrun."""


def _guarded(op: CurvatureOperator, limit: int | None) -> LinearOperator:
    lin = op.scipy()
    if limit is None:
        return lin

    def mv(x: np.ndarray) -> np.ndarray:
        if op.n_products + 1 > limit:
            raise _BudgetSpent
        return lin.matvec(x)

    def mm(x: np.ndarray) -> np.ndarray:
        if op.n_products + x.shape[1] > limit:
            raise _BudgetSpent
        return lin.matmat(x)

    return LinearOperator(lin.shape, matvec=mv, rmatvec=mv, matmat=mm, dtype=np.float64)


def _lanczos(op: CurvatureOperator, which: str, nev: int, tol: float, v0: np.ndarray,
             max_products: int | None, base: int, warm: bool):
    """ARPACK, then honest residuals; reruns with a tighter tolerance while pairs miss.

    ARPACK spends ``ncv`` products on its first Lanczos factorisation and ``ncv - nev`` on
    each restart; a warm start (a start vector close to the wanted invariant subspace) needs
    few, so it gets a smaller ``ncv``. With a budget, ``ncv`` and ``maxiter`` are sized to fit
    it, and a guard stops ARPACK before the products would overrun it (keeping room for the
    residual check)."""
    p = op.size
    limit = None if max_products is None else base + max_products - nev
    lin = _guarded(op, limit)
    ncv0 = min(p, max(2 * nev + 1, nev + 8) if warm else max(2 * nev + 1, 20))
    best, best_res, best_score = None, None, None
    arpack_tol = tol
    for _ in range(1 + _REFINEMENTS):
        ncv, kw = ncv0, {}
        if limit is not None:
            left = limit - op.n_products
            if 2 * ncv - nev > left:
                ncv = min(p, (left + nev) // 2)
            if ncv < min(p, nev + 2):
                break
            kw["maxiter"] = max(1, (left - ncv) // max(1, ncv - nev))
        try:
            vals, vecs = eigsh(lin, k=nev, which=_ARPACK[which], tol=arpack_tol, v0=v0,
                               ncv=ncv, **kw)
        except ArpackNoConvergence as err:
            vals, vecs = err.eigenvalues, err.eigenvectors
        except _BudgetSpent:
            break
        except ArpackError as err:  # e.g. a breakdown; keep what we have
            if best is not None:
                break
            raise RuntimeError(f"eigenvalues: ARPACK failed ({err})") from None
        if vecs is None or len(vals) == 0:
            vals, vecs = np.zeros(0), np.zeros((p, 0))
        vals = np.asarray(vals, dtype=np.float64)
        rows = _signed(np.asarray(vecs, dtype=np.float64).T) if len(vals) else \
            np.zeros((0, p))
        res = _residuals(op, vals, rows)
        thresholds = _thresholds(vals, tol, op.dtype)
        ok = res <= thresholds
        ratio = float(np.max(res / thresholds)) if len(vals) else np.inf
        score = (len(vals), int(ok.sum()), -ratio)
        if best_score is None or score > best_score:
            best, best_res, best_score = (vals, rows), res, score
        if len(vals) == nev and ok.all():
            break
        arpack_tol /= 10
        if len(vals):  # restart from the pairs found, the unconverged ones weighted up
            weights = np.where(ok, 1.0, 2.0)
            v0 = (weights[:, None] * rows).sum(axis=0)
            v0 = v0 / np.linalg.norm(v0)
            ncv0 = min(p, max(2 * nev + 1, 20))
    if best is None:
        best, best_res = (np.zeros(0), np.zeros((0, p))), np.zeros(0)
    return best, best_res


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
        model, loss_fn, data, curvature, params, mode, batch_size, check: as for
            :func:`eigenvalues`.
        max_params: refuse above this many parameters (the matrix takes 8 P^2 bytes).

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
    op = operator(model, loss_fn, data, curvature=curvature, params=params, mode=mode,
                  batch_size=batch_size, check=check)
    p = op.size
    if p > max_params:
        raise ValueError(f"{fn}: P={p} parameters is above max_params={max_params}: the dense "
                         f"matrix would take {8 * p * p / 1e9:.3g} GB; use eigenvalues/density, "
                         "or raise max_params")
    base = op.n_products
    full = _dense(op)
    norm = float(np.linalg.norm(full))
    asym = float(np.linalg.norm(full - full.T) / norm) if norm > 0 else 0.0
    spectrum = np.linalg.eigvalsh((full + full.T) / 2)
    return Matrix(matrix=full, spectrum=spectrum, asymmetry=asym, curvature=curvature,
                  n_hvp=op.n_products - base, passes=float(op.passes),
                  seconds=time.perf_counter() - started,
                  params=tuple(op.objective.layout.names), mode=mode)

