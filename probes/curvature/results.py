"""Results of the curvature probes (NumPy only: reading them needs no torch).

:class:`Eigenvalues` (:func:`probes.curvature.hessian.eigenvalues`), :class:`BlockEigenvalues`
(the same per layer), :class:`Trace` (:func:`probes.curvature.trace.trace`), :class:`Density`
(:func:`probes.curvature.density.density`) and :class:`Matrix`
(:func:`probes.curvature.dense.matrix`), :class:`ClassMeanOverlap`
(:func:`probes.curvature.class_means.class_mean_overlap`) and :class:`PreconditionedSharpness`
(:func:`probes.curvature.preconditioned.preconditioned_sharpness`). Each carries its ``cost``
(:class:`~landscape.engine.cost.Cost`): curvature-vector products in ``cost.hvp`` for the
Hessian, in ``cost.ggn_vp`` for the GGN and the Fisher; ``cost.passes``, ``cost.seconds``.
Records go through :class:`~landscape.engine.records.RecordMixin`.

Examples:
    >>> top = Eigenvalues.from_record(store.record("sgd", "probes", "hessian_eigenvalues"))
    >>> top.values, top.cost.hvp, top.cost.seconds
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from landscape.engine.checks import _check_int
from landscape.engine.cost import Cost
from landscape.engine.records import RecordMixin

__all__ = [
    "BlockEigenvalues",
    "ClassMeanOverlap",
    "Density",
    "Eigenvalues",
    "Matrix",
    "PreconditionedSharpness",
    "Trace",
    "curvature_cost",
]


def curvature_cost(curvature: str, products: int, passes: float, seconds: float) -> Cost:
    """The :class:`Cost` of ``products`` products with a curvature matrix.

    Args:
        curvature: ``"hessian"`` (counted as ``hvp``), ``"ggn"`` or ``"fisher"`` (``ggn_vp``).
        products: matrix-vector products.
        passes: passes over the data.
        seconds: wall time.

    Returns:
        The :class:`Cost`.
    """
    which = "ggn_vp" if curvature in ("ggn", "fisher") else "hvp"
    return Cost(passes=float(passes), seconds=float(seconds), **{which: int(products)})


@dataclass(frozen=True, eq=False)
class Eigenvalues(RecordMixin):
    """Eigenpairs of the curvature matrix found by :func:`probes.curvature.hessian.eigenvalues`.

    Attributes:
        values: eigenvalues (Ritz values), ascending (k of them; 2k for ``which="both"``;
            fewer only when ``max_products`` is below that).
        vectors: unit eigenvectors, one a row, in the order of ``values`` (largest component
            positive), or None when not asked for.
        residuals: ``||H v - lambda v||`` of each pair, from float64 products when
            ``certified``, else from the products in ``dtype``.
        errors: bound on ``|lambda_true - value|``: ``min(r, r^2 / gap)`` from float64
            products (``certify="float64"``), else ``min(r + e, (r + 2e)^2 / gap + e)`` with
            ``e = 10 eps max|theta|`` the rounding level of the products in ``dtype``.
        converged: whether each pair's error meets ``tol``.
        which, k, tol, curvature, mode: the options. params: names of the parameters the
            matrix is over, in the order of the flat vector.
        cost: products (``hvp``, or ``ggn_vp`` for the GGN and the Fisher; the float64 check
            included), passes over the data, wall time of the whole probe. restarts: thick
            restarts of the Lanczos basis.
        dtype: the dtype of the Lanczos products (float32 for float16, bfloat16 and float32
            models; empty in records written before it was kept).
        certified: the errors bound the distance to eigenvalues of the exact matrix, not of
            its rounded products: from float64 products (``certify="float64"``, and by default
            at ``tol < 1000 eps``), or from bounds that allow for the products' rounding level
            (``certify="rounding"``, the default at ``tol >= 1000 eps``).
    """

    _probe = "hessian.eigenvalues"

    values: np.ndarray
    vectors: np.ndarray | None
    residuals: np.ndarray
    errors: np.ndarray
    converged: np.ndarray
    which: str
    k: int
    tol: float
    curvature: str
    params: tuple[str, ...]
    cost: Cost
    mode: str = "eval"
    restarts: int = 0
    dtype: str = ""
    certified: bool = False

    @property
    def all_converged(self) -> bool:
        """Every requested pair was found and meets ``tol``."""
        wanted = 2 * self.k if self.which == "both" else self.k
        return len(self.values) == wanted and bool(np.all(self.converged))


@dataclass(frozen=True, eq=False)
class BlockEigenvalues(RecordMixin):
    """One :class:`Eigenvalues` per block, by block name, with the total cost.

    A block's name is that of the module that owns it.
    """

    _probe = "hessian.eigenvalues.blocks"

    blocks: dict[str, Eigenvalues]
    cost: Cost

    @classmethod
    def _upgrade(
        cls, arrays: dict[str, Any], attrs: dict[str, Any]
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """Records written before the record protocol.

        Arrays ``<i>_<name>`` and a list of per-block attributes with the block's name as ``block``.
        """
        if not isinstance(attrs.get("blocks"), list):
            return arrays, attrs
        blocks = {b["block"]: {k: v for k, v in b.items() if k != "block"} for b in attrs["blocks"]}
        moved = {}
        for key, value in arrays.items():
            i, _, name = key.partition("_")
            moved[f"blocks.{i}.{name}" if i.isdigit() else key] = value
        return moved, {**attrs, "blocks": blocks}


@dataclass(frozen=True, eq=False)
class Matrix(RecordMixin):
    """The dense curvature matrix built by :func:`probes.curvature.dense.matrix`.

    Attributes:
        matrix: the P x P matrix as computed (float64; row i is the product with e_i).
        spectrum: eigenvalues of its symmetric part, ascending.
        asymmetry: ``||M - M^T||_F / ||M||_F`` (rounding only; larger means a wrong product).
        curvature, mode: the options. params: parameter names, in flat order.
        cost: P products, the passes, the wall time.
    """

    _probe = "hessian.matrix"

    matrix: np.ndarray
    spectrum: np.ndarray
    asymmetry: float
    curvature: str
    cost: Cost
    params: tuple[str, ...] = ()
    mode: str = "eval"


@dataclass(frozen=True, eq=False)
class Trace(RecordMixin):
    """A trace estimate (:func:`probes.curvature.trace.trace`).

    Attributes:
        value: the estimate of ``tr(H)``.
        stderr: its standard error (of the stochastic part; NaN with fewer than 2 probes).
        method: ``"hutchinson"`` or ``"hutch++"``.
        n_probes: Hutchinson probes in the stochastic part (``len(samples)``).
        sketch: columns of the Hutch++ sketch (0 for Hutchinson).
        cost: curvature-vector products spent, passes over the data, wall time.
        curvature: the curvature matrix (``"hessian"``, ``"ggn"``, ...). seed: the probes' seed.
        n_params: P, the size of the matrix.
        target_stderr: the requested standard error, or None.
        converged: False when ``target_stderr`` was not reached within the budget.
        samples: the per-probe estimates of the stochastic part: ``g^T H g`` (Hutchinson) or
            ``g^T (I-QQ^T) H (I-QQ^T) g`` (Hutch++, whose value adds ``tr(Q^T H Q)``).
        dtype: the dtype of the products (float32 for float16 and bfloat16 models; empty in
            records written before it was kept).
    """

    _probe = "hessian.trace"

    value: float
    stderr: float
    method: str
    n_probes: int
    sketch: int
    cost: Cost
    curvature: str
    seed: int
    n_params: int
    target_stderr: float | None
    converged: bool
    samples: np.ndarray
    dtype: str = ""


@dataclass(frozen=True, eq=False)
class Density(RecordMixin):
    """A spectral density estimate by stochastic Lanczos quadrature.

    See :func:`probes.curvature.density.density`.

    Attributes:
        grid: (G,) points. density: (G,) the broadened density on ``grid``.
        nodes: (n_vectors, m) Ritz values of each start vector; a vector whose Krylov space
            became invariant after ``j < m`` steps has NaN nodes (and 0 weights) after ``j``.
        weights: (n_vectors, m) squared first components of the Ritz vectors (each row sums
            to 1).
        width: the Gaussian broadening sigma. steps: Lanczos steps asked (at most P).
        n_vectors: start vectors. cost: products, passes, wall time. curvature, seed: options.
        n_params: P. dtype: the dtype of the products (float32 for float16 and bfloat16
            models; empty in records written before it was kept).
    """

    _probe = "hessian.density"

    grid: np.ndarray
    density: np.ndarray
    nodes: np.ndarray
    weights: np.ndarray
    width: float
    steps: int
    n_vectors: int
    cost: Cost
    curvature: str
    seed: int
    n_params: int
    dtype: str = ""

    def moment(self, k: int) -> float:
        """The k-th moment ``(1/n_vectors) sum_v sum_j w_vj theta_vj^k`` of the Ritz measure.

        An estimate of ``tr(H^k) / P`` (exact in expectation for ``k < 2 * steps``); ``moment(1) *
        n_params`` estimates the trace.
        """
        return float(self.moments(k).mean())

    def moments(self, k: int) -> np.ndarray:
        """The k-th moment of each start vector's quadrature, ``v^T H^k v`` (n_vectors,).

        Their spread gives the standard error of :meth:`moment`.
        """
        k = _check_int("Density.moment", "k", k, 0)
        nodes = np.nan_to_num(self.nodes, nan=0.0)
        return (self.weights * nodes**k).sum(axis=1)

    def broadened(self, grid: Any, width: float | None = None) -> np.ndarray:
        """The Ritz measure broadened by Gaussians of ``width`` at the points ``grid``.

        ``width`` defaults to this result's. The plain mixture, integrating to the mass inside
        ``grid``.

        Args:
            grid: 1-D points.
            width: the Gaussian sigma (> 0).

        Returns:
            The density at ``grid``, float64.
        """
        xs = np.asarray(grid, dtype=np.float64).reshape(-1)
        sigma = float(self.width if width is None else width)
        if not sigma > 0:
            raise ValueError(f"Density.broadened: width must be > 0, got {width!r}")
        return broaden(self.nodes, self.weights, xs, sigma)


def broaden(nodes: np.ndarray, weights: np.ndarray, xs: np.ndarray, sigma: float) -> np.ndarray:
    """The average over start vectors of Gaussian mixtures, at the points ``xs``.

    The mixtures have centres ``nodes`` and weights ``weights`` (each ``(n_vectors, m)``; NaN nodes
    have weight 0) and width ``sigma``.

    Args:
        nodes: the Ritz values of each start vector (NaN where there are none).
        weights: their quadrature weights.
        xs: 1-D points.
        sigma: the width.

    Returns:
        The density at ``xs`` (float64).
    """
    n_vectors = max(len(nodes), 1)
    flat_n = np.nan_to_num(np.asarray(nodes, dtype=np.float64), nan=0.0).reshape(-1)
    flat_w = np.asarray(weights, dtype=np.float64).reshape(-1) / n_vectors
    keep = flat_w > 0
    z = (xs[:, None] - flat_n[None, keep]) / sigma
    return (np.exp(-0.5 * z**2) / (sigma * np.sqrt(2 * np.pi))) @ flat_w[keep]


@dataclass(frozen=True, eq=False)
class ClassMeanOverlap(RecordMixin):
    """The top curvature eigenspace against the span of the class-mean gradients.

    Attributes:
        overlap: ``||Q^T V||_F^2 / k`` in [0, 1] (``Q`` an orthonormal basis of the span of
            the class means, ``V`` the top-k unit eigenvectors).
        angles: the principal angles between the two subspaces, radians, ascending
            (``min(k, rank)`` of them).
        shares: ``||Q^T v_j||^2`` of each eigenvector, in the order of ``values``.
        values: the top-k eigenvalues, descending.
        converged: whether each eigenvalue met ``tol``.
        classes: the class labels, in the order of the means. counts: examples per class.
        mean_norms: ``||delta_c||`` of each class mean.
        rank: the rank of the class means (numerical, as a matrix of k rows).
        chance: ``k / P``, the expected overlap of a random k-dimensional subspace.
        k, tol, curvature, params, mode: the options (``params``: the parameter names).
        cost: products with the curvature matrix (``ggn_vp`` or ``hvp``), passes (the
            per-example gradients and the products), wall time.
    """

    _probe = "class_mean_overlap"

    overlap: float
    angles: np.ndarray
    shares: np.ndarray
    values: np.ndarray
    converged: np.ndarray
    classes: np.ndarray
    counts: np.ndarray
    mean_norms: np.ndarray
    rank: int
    chance: float
    k: int
    tol: float
    curvature: str
    params: tuple[str, ...]
    mode: str
    cost: Cost


@dataclass(frozen=True, eq=False)
class PreconditionedSharpness(RecordMixin):
    """Top eigenvalues of ``P^-1 H`` by :func:`preconditioned_sharpness`.

    Attributes:
        values: the top-k eigenvalues, descending (``values[0]`` is the preconditioned
            sharpness).
        vectors: unit eigenvectors of ``P^-1/2 H P^-1/2`` (rows, in the order of ``values``),
            or None when not asked for.
        residuals: ``||M v - lambda v||`` of each pair (``M = P^-1/2 H P^-1/2``).
        errors: bounds on ``|lambda_true - value|``. converged: whether each meets ``tol``.
        threshold: ``(2 + 2 beta1) / ((1 - beta1) eta)``, Adam's stability threshold (NaN
            when the settings are not known or differ between parameter groups).
        lr, beta1, beta2, eps: Adam's settings (NaN when not known). step: Adam's step count.
        k, tol, params, mode: the options (``params``: the parameter names).
        cost: Hessian-vector products (``hvp``), passes, wall time.
    """

    _probe = "preconditioned_sharpness"

    values: np.ndarray
    vectors: np.ndarray | None
    residuals: np.ndarray
    errors: np.ndarray
    converged: np.ndarray
    threshold: float
    lr: float
    beta1: float
    beta2: float
    eps: float
    step: int
    k: int
    tol: float
    params: tuple[str, ...]
    mode: str
    cost: Cost

    @property
    def value(self) -> float:
        """The largest eigenvalue of ``P^-1 H``."""
        return float(self.values[0])
