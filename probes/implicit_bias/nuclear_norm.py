r"""The minimum-nuclear-norm solution of a matrix-sensing problem (an SDP), and a model against it.

Gunasekar et al. 2017 ("Implicit regularization in matrix factorization") conjecture that
gradient flow on the factorised model ``X = U U^T`` for PSD matrix sensing, ``y_i = <A_i, X>``,
from ``U = alpha U_0`` with ``alpha -> 0``, converges to the minimum-nuclear-norm solution

.. math:: X_{\mathrm{nuc}} = \arg\min \{ \|X\|_* : \langle A_i, X\rangle = y_i,\ X \succeq 0 \}

(for PSD ``X`` the nuclear norm is the trace), proved it when the ``A_i`` commute, and gave
numerical evidence otherwise. With enough measurements (restricted isometry) ``X_nuc`` is the
low-rank truth ``X*`` and the question cannot be told apart from recovery; with fewer
measurements than exact recovery needs, ``X_nuc`` differs from ``X*`` (its nuclear norm is
smaller) and the comparison becomes a test of the conjecture. Li, Luo and Lyu (2021, "Towards
resolving the implicit bias of gradient descent for matrix factorization: greedy low-rank
learning") and Razin and Cohen (2020) argue that as ``alpha -> 0`` GD learns greedily by rank
instead, which need not minimise the nuclear norm.

:func:`min_nuclear_norm` solves the SDP with cvxpy (Clarabel, an interior-point solver, by
default; SCS if asked); cvxpy is an optional dependency (``pip install cvxpy``).
:func:`nuclear_norm_recovery` is a probe of a factorised model's matrix against both ``X*`` and
``X_nuc``.

Examples:
    >>> s = min_nuclear_norm(A, y)                                         # doctest: +SKIP
    >>> s.nuclear_norm, s.residual, s.status
    >>> r = nuclear_norm_recovery(model, None, (A, y), rank=2, seed=0)     # doctest: +SKIP
    >>> r.distance_nuclear, r.distance_truth
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from landscape.data.synthetic import matrix_sensing_truth
from landscape.engine.cost import Cost
from landscape.engine.records import RecordMixin
from probes.implicit_bias.ground_truth import _host, factorization

try:  # an optional dependency: only min_nuclear_norm needs it
    import cvxpy as cp
except ImportError:  # pragma: no cover - depends on the environment
    cp = None  # type: ignore[assignment]

__all__ = ["NuclearNorm", "NuclearNormRecovery", "min_nuclear_norm", "nuclear_norm_recovery"]

SOLVERS = ("CLARABEL", "SCS")
"""The cvxpy solvers :func:`min_nuclear_norm` accepts (both ship with cvxpy)."""


@dataclass(frozen=True, eq=False)
class NuclearNorm(RecordMixin):
    """The minimum-nuclear-norm matrix fitting ``<A_i, X> = y_i``, by :func:`min_nuclear_norm`.

    Attributes:
        matrix: ``X_nuc`` (d, d), float64 (symmetrised).
        nuclear_norm: ``||X_nuc||_*``.
        residual: ``max_i |<A_i, X_nuc> - y_i|``.
        min_eigenvalue: the smallest eigenvalue of ``X_nuc`` (>= 0 up to the solver's accuracy
            when ``psd``).
        psd: whether ``X`` was constrained to be PSD.
        solver, status: cvxpy's solver and its status (``"optimal"``).
        cost: wall time.
    """

    _probe = "min_nuclear_norm"

    matrix: np.ndarray
    nuclear_norm: float
    residual: float
    min_eigenvalue: float
    psd: bool
    solver: str
    status: str
    cost: Cost


@dataclass(frozen=True, eq=False)
class NuclearNormRecovery(RecordMixin):
    """A factorised model's matrix ``X`` against the truth ``X*`` and ``X_nuc``.

    Attributes:
        distance_truth: ``||X - X*||_F``. distance_nuclear: ``||X - X_nuc||_F``.
        nuclear_gap: ``||X_nuc - X*||_F`` (0 when the measurements determine ``X*``).
        nuclear_norm: ``||X||_*``; truth_nuclear_norm: ``||X*||_*``; min_nuclear_norm:
            ``||X_nuc||_*``.
        singular_values: of ``X``, descending.
        residual: RMS of ``<A_i, X> - y_i``.
        matrix, truth, nuclear: the three matrices.
        cost: wall time (the SDP included).
    """

    _probe = "nuclear_norm_recovery"

    distance_truth: float
    distance_nuclear: float
    nuclear_gap: float
    nuclear_norm: float
    truth_nuclear_norm: float
    min_nuclear_norm: float
    singular_values: np.ndarray
    residual: float
    matrix: np.ndarray
    truth: np.ndarray
    nuclear: np.ndarray
    cost: Cost


def min_nuclear_norm(
    a: Any, y: Any, *, psd: bool = True, solver: str = "CLARABEL", tol: float = 1e-7
) -> NuclearNorm:
    """The matrix of least nuclear norm with ``<A_i, X> = y_i`` (PSD by default), by an SDP.

    PSD: ``min trace(X)`` s.t. ``X >= 0`` and the measurements. Otherwise: ``min ||X||_*``
    over all ``d x d`` matrices (cvxpy's ``normNuc``, an SDP in its epigraph form).

    Args:
        a: the measurement matrices ``(m, d, d)`` (arrays or tensors).
        y: the measurements ``(m,)``.
        psd: constrain ``X`` to be PSD (the setting of ``X = U U^T``).
        solver: ``"CLARABEL"`` (interior point, accurate; default) or ``"SCS"`` (first order).
        tol: the solver's tolerance (Clarabel's gap and feasibility tolerances, SCS's eps_abs
            and eps_rel).

    Returns:
        :class:`NuclearNorm`.

    Raises:
        ImportError: cvxpy is not installed (one line: how to install it).
        ValueError: shapes that disagree, an unknown solver, a problem the solver could not
            solve (its status).
    """
    fn = "min_nuclear_norm"
    if cp is None:
        raise ImportError(f"{fn} needs cvxpy: pip install cvxpy")
    if solver not in SOLVERS:
        raise ValueError(f"{fn}: solver must be one of {', '.join(SOLVERS)}, got {solver!r}")
    start = time.perf_counter()
    a_np = _host(fn, "A", np.asarray(a, dtype=np.float64) if isinstance(a, (list, tuple)) else a)
    y_np = _host(fn, "y", np.asarray(y, dtype=np.float64) if isinstance(y, (list, tuple)) else y)
    y_np = y_np.reshape(-1)
    if a_np.ndim != 3 or a_np.shape[1] != a_np.shape[2] or len(a_np) != len(y_np):
        raise ValueError(
            f"{fn}: expected A (m, d, d) and y (m,), got {a_np.shape} and {y_np.shape}"
        )
    m, d = len(y_np), a_np.shape[1]
    x = cp.Variable((d, d), PSD=True) if psd else cp.Variable((d, d))
    measured = a_np.reshape(m, d * d) @ cp.vec(x, order="C")
    objective = cp.trace(x) if psd else cp.normNuc(x)
    problem = cp.Problem(cp.Minimize(objective), [measured == y_np])
    options = (
        {"tol_gap_abs": tol, "tol_gap_rel": tol, "tol_feas": tol}
        if solver == "CLARABEL"
        else {"eps_abs": tol, "eps_rel": tol, "max_iters": 100000}
    )
    problem.solve(solver=solver, **options)
    if x.value is None or problem.status not in ("optimal", "optimal_inaccurate"):
        raise ValueError(f"{fn}: the solver {solver} ended with status {problem.status!r}")
    value = np.asarray(x.value, dtype=np.float64)
    if psd:
        value = (value + value.T) / 2
    return NuclearNorm(
        matrix=value,
        nuclear_norm=float(np.linalg.svd(value, compute_uv=False).sum()),
        residual=float(np.abs(np.einsum("kij,ij->k", a_np, value) - y_np).max()),
        min_eigenvalue=float(np.linalg.eigvalsh((value + value.T) / 2)[0]),
        psd=psd,
        solver=solver,
        status=str(problem.status),
        cost=Cost(seconds=time.perf_counter() - start),
    )


def nuclear_norm_recovery(
    model: Any,
    loss_fn: Any,
    data: Any,
    *,
    truth: Any = None,
    rank: int | None = None,
    seed: int | None = None,
    solver: str = "CLARABEL",
) -> NuclearNormRecovery:
    """A probe: a factorised model's ``X`` against ``X*`` and the minimum-nuclear-norm ``X_nuc``.

    Args:
        model: anything with a ``matrix()`` method (``landscape.models.SymmetricFactorization``).
        loss_fn: unused (the probe signature of a sweep).
        data: the training measurements ``(A, y)``, ``A`` of shape ``(m, d, d)``.
        truth: ``X*`` (d, d); or None with ``rank`` and ``seed`` of
            ``landscape.data.synthetic.matrix_sensing``.
        rank: the rank of the problem, when ``truth`` is None.
        seed: the seed of the problem, when ``truth`` is None.
        solver: passed to :func:`min_nuclear_norm` (PSD).

    Returns:
        :class:`NuclearNormRecovery`.

    Raises:
        TypeError: data that is not an ``(A, y)`` pair.
        ValueError: neither ``truth`` nor ``rank`` and ``seed``; shapes that disagree.
    """
    fn = "nuclear_norm_recovery"
    start = time.perf_counter()
    if not (isinstance(data, (tuple, list)) and len(data) == 2):
        raise TypeError(f"{fn}: data must be an (A, y) pair, got {type(data).__name__}")
    f = factorization(model)
    d = f.matrix.shape[0]
    if truth is None:
        if rank is None or seed is None:
            raise ValueError(f"{fn}: give the truth X* as truth=, or the rank and seed")
        truth = matrix_sensing_truth(dim=d, rank=rank, seed=seed)
    t = np.asarray(_host(fn, "truth", truth), dtype=np.float64)
    a_np, y_np = _host(fn, "A", data[0]), _host(fn, "y", data[1]).reshape(-1)
    if t.shape != f.matrix.shape or a_np.shape[1:] != f.matrix.shape:
        raise ValueError(
            f"{fn}: shapes disagree: matrix {f.matrix.shape}, truth {t.shape}, A {a_np.shape}"
        )
    nuc = min_nuclear_norm(a_np, y_np, psd=True, solver=solver)
    res = np.einsum("kij,ij->k", a_np, f.matrix) - y_np
    return NuclearNormRecovery(
        distance_truth=float(np.linalg.norm(f.matrix - t)),
        distance_nuclear=float(np.linalg.norm(f.matrix - nuc.matrix)),
        nuclear_gap=float(np.linalg.norm(nuc.matrix - t)),
        nuclear_norm=f.nuclear_norm,
        truth_nuclear_norm=float(np.linalg.svd(t, compute_uv=False).sum()),
        min_nuclear_norm=nuc.nuclear_norm,
        singular_values=f.singular_values,
        residual=float(np.sqrt(np.mean(res**2))),
        matrix=f.matrix,
        truth=t,
        nuclear=nuc.matrix,
        cost=Cost(seconds=time.perf_counter() - start),
    )
