"""How close a trained model is to the ground truth of an implicit-bias experiment.

Probes of the usual ``(model, loss_fn, data)`` form, built on the solvers of
:mod:`probes.implicit_bias.ground_truth`, that a sweep records at the end of a run.

- :func:`margin_alignment`: a linear classifier against the l2, l1 and linf max-margin
  directions of its training data (GD goes to the l2 one, sign descent to the linf one);
- :func:`interpolator_distances`: a regression model's effective weights against the minimum
  l1 and l2 interpolators (diagonal linear networks: small init -> l1, large init -> l2);
- :func:`matrix_recovery`: a factorised model's matrix against the truth of a matrix-sensing
  problem (nuclear norm, effective rank, distance).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from landscape.data.synthetic import matrix_sensing_truth
from landscape.engine.cost import Cost
from probes.implicit_bias.ground_truth import (
    MARGIN_NORMS,
    MaxMargin,
    _data,
    _host,
    alignment,
    diagonal,
    factorization,
    min_norm_interpolator,
)
from probes.implicit_bias.results import InterpolatorDistances, MarginAlignment, MatrixRecovery

__all__ = [
    "InterpolatorDistances",
    "MarginAlignment",
    "MatrixRecovery",
    "interpolator_distances",
    "margin_alignment",
    "matrix_recovery",
]


def _pair(fn: str, data: Any) -> tuple[Any, Any]:
    if not (isinstance(data, (tuple, list)) and len(data) == 2):
        raise TypeError(f"{fn}: data must be an (x, y) pair, got {type(data).__name__}")
    return data[0], data[1]


def margin_alignment(
    model: Any, loss_fn: Any, data: Any, *, references: dict[str, MaxMargin] | None = None
) -> MarginAlignment:
    """A probe: the bias-free linear classifier ``model`` against the max-margin directions.

    Those of ``data``: :func:`alignment` in ``"l2"``, ``"l1"`` and ``"linf"``.

    Args:
        model: the weights or a module with one weight vector, as for :func:`alignment`.
        loss_fn: unused (the probe signature of a sweep).
        data: an ``(x, y)`` pair, binary labels, linearly separable through the origin.
        references: ``{norm: max_margin(x, y, norm=norm)}`` to reuse (along training); the
            norms it lacks are solved.

    Returns :class:`MarginAlignment`. Raises ValueError for data that are not separable.

    Examples:
        >>> a = margin_alignment(model, None, (X, y)); a.direction_error_l2, a.cosine_l1
    """
    fn = "margin_alignment"
    start = time.perf_counter()
    x, y = _pair(fn, data)
    refs = dict(references or {})
    out: dict[str, float] = {}
    for norm in MARGIN_NORMS:
        a = alignment(model, x, y, norm=norm, reference=refs.get(norm))
        out.update(
            {
                f"cosine_{norm}": a.cosine,
                f"direction_error_{norm}": a.direction_error,
                f"margin_{norm}": a.margin,
                f"max_margin_{norm}": a.max_margin,
            }
        )
        out["weight_norm"] = a.weight_norm
    return MarginAlignment(**out, cost=Cost(seconds=time.perf_counter() - start))


def interpolator_distances(model: Any, loss_fn: Any, data: Any) -> InterpolatorDistances:
    """A probe: a diagonal network's ``beta`` against the minimum-norm interpolators of ``data``.

    ``beta`` as :func:`diagonal` gives it, against the minimum-l1 and minimum-l2 interpolators
    (:func:`min_norm_interpolator`), the references of Woodworth et al. 2020 (small init -> l1,
    large init -> l2).

    Args:
        model: anything with a ``beta()`` method (``landscape.models.DiagonalLinearNetwork``).
        loss_fn: unused (the probe signature of a sweep).
        data: an ``(x, y)`` pair of an underdetermined regression with an exact interpolator.

    Returns :class:`InterpolatorDistances`.

    Examples:
        >>> r = interpolator_distances(net, None, (X, y)); r.distance_l1, r.distance_l2
    """
    fn = "interpolator_distances"
    start = time.perf_counter()
    x, y = _pair(fn, data)
    d = diagonal(model)
    xs, ys = _data(fn, x, y)
    if d.beta.shape != (xs.shape[1],):
        raise ValueError(f"{fn}: beta has {d.beta.size} entries but x has {xs.shape[1]} features")
    l1, l2 = (min_norm_interpolator(xs, ys, norm=n) for n in ("l1", "l2"))
    return InterpolatorDistances(
        beta=d.beta,
        beta_l1=l1.beta,
        beta_l2=l2.beta,
        distance_l1=float(np.linalg.norm(d.beta - l1.beta)),
        distance_l2=float(np.linalg.norm(d.beta - l2.beta)),
        l1_norm=d.l1_norm,
        l2_norm=d.l2_norm,
        min_l1_norm=l1.l1_norm,
        min_l2_norm=l2.l2_norm,
        residual=float(np.abs(xs @ d.beta - ys).max()),
        depth=d.depth,
        cost=Cost(seconds=time.perf_counter() - start),
    )


def matrix_recovery(
    model: Any,
    loss_fn: Any,
    data: Any,
    *,
    truth: Any = None,
    rank: int | None = None,
    seed: int | None = None,
) -> MatrixRecovery:
    """A probe: the matrix of a factorised model against the truth of a matrix-sensing problem.

    The matrix as :func:`factorization` gives it; the problem is ``y_i = <A_i, X*>`` (Gunasekar et
    al. 2017).

    The reference for the minimum nuclear norm among matrices that fit the measurements is
    ``||X*||_*``: ``X*`` fits them, so the minimum is at most ``||X*||_*``, and it equals it
    when the measurement operator satisfies the restricted isometry property for low-rank
    matrices (Recht, Fazel and Parrilo 2010; Gaussian measurements, ``m`` a few times ``d r``),
    which is then also the unique minimiser. No SDP solver is used; a learned ``X`` that fits
    the measurements with ``nuclear_norm < truth_nuclear_norm`` would show the assumption
    failing.

    Args:
        model: anything with a ``matrix()`` method
            (``landscape.models.SymmetricFactorization``, ``DeepMatrixFactorization``).
        loss_fn: unused (the probe signature of a sweep).
        data: an ``(A, y)`` pair, ``A`` of shape ``(N, d, d)``, for the residual.
        truth: ``X*`` as a ``(d, d)`` matrix; or None with ``rank`` and ``seed``: the truth of
            ``landscape.data.synthetic.matrix_sensing(dim=d, rank=rank, seed=seed)``
            (:func:`landscape.data.synthetic.matrix_sensing_truth`, ``d`` from the model's
            matrix).
        rank: the rank of the matrix-sensing problem, when ``truth`` is None.
        seed: the seed of the matrix-sensing problem, when ``truth`` is None.

    Returns :class:`MatrixRecovery`.

    Raises:
        TypeError: data that is not an ``(A, y)`` pair, a model without ``matrix()``.
        ValueError: neither ``truth`` nor ``rank`` and ``seed``, or shapes that disagree.

    Examples:
        >>> r = matrix_recovery(model, None, split.train, rank=2, seed=0)
        >>> r.nuclear_norm / r.truth_nuclear_norm, r.relative_distance
    """
    fn = "matrix_recovery"
    start = time.perf_counter()
    a, y = _pair(fn, data)
    f = factorization(model)
    d = f.matrix.shape[0]
    if truth is None:
        if rank is None or seed is None:
            raise ValueError(
                f"{fn}: give the truth X* as truth=, or the rank and seed of "
                "landscape.data.synthetic.matrix_sensing"
            )

        truth = matrix_sensing_truth(dim=d, rank=rank, seed=seed)
    t = _host(
        fn,
        "truth",
        np.asarray(truth, dtype=np.float64) if isinstance(truth, (list, tuple)) else truth,
    )
    a_np, y_np = _host(fn, "A", a), _host(fn, "y", y).reshape(-1)
    if t.shape != f.matrix.shape or a_np.shape[1:] != f.matrix.shape or len(a_np) != len(y_np):
        raise ValueError(
            f"{fn}: shapes disagree: matrix {f.matrix.shape}, truth {t.shape}, "
            f"A {a_np.shape}, y {y_np.shape}"
        )
    res = np.einsum("kij,ij->k", a_np, f.matrix) - y_np
    dist = float(np.linalg.norm(f.matrix - t))
    return MatrixRecovery(
        matrix=f.matrix,
        truth=t,
        singular_values=f.singular_values,
        nuclear_norm=f.nuclear_norm,
        truth_nuclear_norm=float(np.linalg.svd(t, compute_uv=False).sum()),
        effective_rank=f.effective_rank,
        numerical_rank=f.numerical_rank,
        distance=dist,
        relative_distance=dist / float(np.linalg.norm(t)),
        residual=float(np.sqrt(np.mean(res**2))),
        cost=Cost(seconds=time.perf_counter() - start),
    )
