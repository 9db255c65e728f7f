r"""Ground truth for implicit-bias experiments: the solutions an optimizer is claimed to find.

**Max-margin directions** of separable data ``(x_i, y_i)``, ``y_i in {-1, +1}``:

    w*_p = argmin ||w||_p  s.t.  y_i (w . x_i + b) >= 1,     margin = 1 / ||w*_p||_p

(``b = 0`` unless ``bias=True``), for p in l2, l1 and linf. Gradient descent on the logistic
loss goes to the l2 direction (the hard-margin SVM), direction error ``O(1 / log t)``,
``||w|| ~ log t`` (Soudry et al. 2018). Steepest descent with respect to a norm goes to the
max-margin direction of *that* norm (Gunasekar et al. 2018): sign descent (steepest descent in
linf) to the linf one, ``argmin ||w||_inf``, whose margin is the largest l1 distance of the
points to the hyperplane; coordinate descent (steepest descent in l1, AdaBoost) to the l1 one,
``argmin ||w||_1``. :func:`max_margin` solves each exactly, :func:`alignment` compares a linear
classifier with them.

**Matrix factorisation**: GD on ``X = U U^T`` (or a deep product) from a small init approaches
the minimum nuclear-norm solution (Gunasekar et al. 2017). :func:`factorization` gives the
nuclear norm ``sum_k s_k``, the effective rank ``exp(-sum_k p_k log p_k)``, ``p_k = s_k /
sum_j s_j`` (Roy and Vetterli 2007), and the numerical rank.

**Diagonal linear networks** ``beta = u^D - v^D`` from init ``alpha`` go to the minimum l1
interpolator as ``alpha -> 0``, to the minimum l2 one as ``alpha -> inf`` (Woodworth et al.
2020): :func:`diagonal` reads ``beta``, :func:`min_norm_interpolator` gives both references.

Solvers run on the host in float64, whatever the inputs' device and dtype; results hold float64
numpy arrays. Data are rescaled by their largest row norm first; margins below about 1e-7 of
that scale count as not separable.

* l2, ``bias=False``: least-distance programming as non-negative least squares (Lawson and
  Hanson 1974, ch. 23; ``scipy.optimize.nnls``, a finite active-set method, exact up to
  rounding): ``E = [Z^T; 1^T]``, ``Z = diag(y) X``, ``u = nnls(E, e_{d+1})``,
  ``r = E u - e_{d+1}``; ``r = 0`` iff not separable, else ``w* = -r_{1:d} / r_{d+1}``.
* l2, ``bias=True``: SLSQP on the primal in ``(w, b)`` from the l1 solution, then the KKT
  equations solved on the active set (kept when feasible, which makes it the exact optimum).
* l1 and basis pursuit: linear programs in ``w = w+ - w-`` with ``linprog(method="highs")``.
  The l1 solution need not be unique; HiGHS returns a vertex.
* linf: the linear program ``min s`` over ``(w, s[, b])`` with ``-s <= w_j <= s`` (HiGHS);
  not unique either in general.
* minimum l2 interpolator: ``pinv(X) y``.

Examples:
    >>> mm = max_margin(X, y)                       # the hard-margin SVM, no intercept
    >>> a = alignment(model, X, y, reference=mm)    # a bias-free linear classifier
    >>> a.cosine, a.direction_error, a.margin / mm.margin
    >>> f = factorization(model)                    # anything with .matrix(), or a matrix
    >>> f.nuclear_norm, f.effective_rank
    >>> d = diagonal(net); ref = min_norm_interpolator(X, y, norm="l1"); d.beta - ref.beta

The probes of the ``(model, loss_fn, data)`` form that a sweep records with these solvers
(max-margin alignment, distances to the interpolators, matrix recovery) are in
:mod:`probes.implicit_bias.recovery`.

References:
    Lawson and Hanson (1974). Solving Least Squares Problems. Prentice-Hall.
    Roy and Vetterli (2007). The effective rank: a measure of effective dimensionality. EUSIPCO.
    Gunasekar et al. (2017). Implicit regularization in matrix factorization. NeurIPS.
    Soudry et al. (2018). The implicit bias of gradient descent on separable data. JMLR.
    Gunasekar et al. (2018). Characterizing implicit bias in terms of optimization geometry. ICML.
    Woodworth et al. (2020). Kernel and rich regimes in overparametrized models. COLT.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch
from scipy.optimize import linprog, minimize, nnls
from torch import Tensor, nn

from landscape.engine.checks import _check_choice, _check_positive
from landscape.engine.cost import Cost
from probes.implicit_bias.results import (
    Diagonal,
    DirectionAlignment,
    Factorization,
    Interpolator,
    MaxMargin,
)
from probes.implicit_bias.weight_spectra import effective_rank

__all__ = [
    "MARGIN_NORMS",
    "NORMS",
    "Diagonal",
    "DirectionAlignment",
    "Factorization",
    "Interpolator",
    "MaxMargin",
    "alignment",
    "diagonal",
    "factorization",
    "max_margin",
    "min_norm_interpolator",
]

NORMS = ("l2", "l1")
"""The norms of :func:`min_norm_interpolator` (and of :func:`max_margin`, which also has
``"linf"``: :data:`MARGIN_NORMS`)."""
MARGIN_NORMS = ("l2", "l1", "linf")
"""The norms of :func:`max_margin` and :func:`alignment`."""
_ORD = {"l2": 2, "l1": 1, "linf": np.inf}

_FEAS = 1e-7  # feasibility tolerance, relative to the data scale


def _host(fn: str, name: str, value: Any) -> np.ndarray:
    """A tensor (any device or dtype) or numpy array as a finite float64 numpy array."""
    if isinstance(value, Tensor):
        out = value.detach().to("cpu", torch.float64).numpy()
    elif isinstance(value, np.ndarray) and value.dtype.kind in "biuf":
        out = value.astype(np.float64)
    else:
        raise TypeError(
            f"{fn}: {name} must be a Tensor or a real numpy array, got {type(value).__name__}"
        )
    if out.size and not np.isfinite(out).all():
        raise ValueError(f"{fn}: {name} must be finite, got NaN or inf")
    return out


def _data(fn: str, x: Any, y: Any) -> tuple[np.ndarray, np.ndarray]:
    """``x`` (N, ...) flattened to (N, d) and ``y`` (N,) or (N, 1), float64."""
    x, y = _host(fn, "x", x), _host(fn, "y", y)
    if x.ndim < 2 or x.shape[0] == 0 or x[0].size == 0:
        raise ValueError(f"{fn}: x must have shape (N, d) with N, d >= 1, got {x.shape}")
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.shape != (x.shape[0],):
        raise ValueError(f"{fn}: y must have shape ({x.shape[0]},) to match x, got {y.shape}")
    return x.reshape(x.shape[0], -1), y


def _labels(fn: str, y: np.ndarray) -> np.ndarray:
    """Binary labels in {-1, +1} or {0, 1} as {-1, +1}."""
    values = set(np.unique(y).tolist())
    if not (values <= {-1.0, 1.0} or values <= {0.0, 1.0}):
        raise ValueError(
            f"{fn}: y must hold binary labels in {{-1, +1}} or {{0, 1}}, got "
            f"values {sorted(values)[:5]}"
        )
    return np.where(y > 0, 1.0, -1.0)


def _unit(w: np.ndarray) -> np.ndarray:
    return w / np.linalg.norm(w)


def _ldp(z: np.ndarray) -> tuple[np.ndarray, float] | None:
    """Min ||w||_2 s.t. z w >= 1 by Lawson and Hanson's LDP -> NNLS; None if infeasible."""
    n, d = z.shape
    e, f = np.vstack([z.T, np.ones((1, n))]), np.eye(d + 1)[-1]
    r = e @ nnls(e, f, maxiter=max(100 * n, 1000))[0] - f
    return None if -r[-1] <= 1e-14 else (-r[:d] / r[-1], 0.0)


def _l1_lp(z: np.ndarray, y: np.ndarray, bias: bool) -> tuple[np.ndarray, float] | None:
    """Min ||w||_1 s.t. z w + y b >= 1 as an LP in (w+, w-, b); None if infeasible."""
    n, d = z.shape
    a = np.hstack([z, -z] + ([y[:, None]] if bias else []))
    c = np.r_[np.ones(2 * d), np.zeros(int(bias))]
    bounds = [(0, None)] * (2 * d) + [(None, None)] * int(bias)
    res = linprog(c, A_ub=-a, b_ub=-np.ones(n), bounds=bounds, method="highs")
    if res.status != 0:
        return None
    return res.x[:d] - res.x[d : 2 * d], float(res.x[2 * d]) if bias else 0.0


def _linf_lp(z: np.ndarray, y: np.ndarray, bias: bool) -> tuple[np.ndarray, float] | None:
    """Min ||w||_inf s.t. z w + y b >= 1 as an LP in (w, s, b); None if infeasible."""
    n, d = z.shape
    eye, ones = np.eye(d), np.ones((d, 1))
    b_col, zero = ([-y[:, None]], [np.zeros((d, 1))]) if bias else ([], [])
    a = np.vstack(
        [
            np.hstack([-z, np.zeros((n, 1)), *b_col]),
            np.hstack([eye, -ones, *zero]),
            np.hstack([-eye, -ones, *zero]),
        ]
    )
    c = np.r_[np.zeros(d), 1.0, np.zeros(int(bias))]
    bounds = [(None, None)] * d + [(0, None)] + [(None, None)] * int(bias)
    res = linprog(
        c, A_ub=a, b_ub=np.r_[-np.ones(n), np.zeros(2 * d)], bounds=bounds, method="highs"
    )
    if res.status != 0:
        return None
    return res.x[:d], float(res.x[d + 1]) if bias else 0.0


def _svm_bias(z: np.ndarray, y: np.ndarray, start: np.ndarray) -> tuple[np.ndarray, float]:
    """Min ||w||_2 s.t. z w + y b >= 1: SLSQP from a feasible ``start``, then a KKT polish."""
    n, d = z.shape
    a = np.hstack([z, y[:, None]])
    res = minimize(
        lambda v: 0.5 * v[:d] @ v[:d],
        start,
        method="SLSQP",
        jac=lambda v: np.r_[v[:d], 0.0],
        constraints=[{"type": "ineq", "fun": lambda v: a @ v - 1, "jac": lambda v: a}],
        options={"ftol": 1e-14, "maxiter": 1000},
    )
    w, b = res.x[:d], float(res.x[d])
    active = np.flatnonzero(a @ res.x - 1 <= 1e-6)
    if active.size:  # w = Z_S^T alpha, y_S^T alpha = 0, Z_S w + y_S b = 1
        zs, ys = z[active], y[active]
        kkt = np.block([[zs @ zs.T, ys[:, None]], [ys[None, :], np.zeros((1, 1))]])
        sol = np.linalg.lstsq(kkt, np.r_[np.ones(active.size), 0.0], rcond=None)[0]
        wp, bp = zs.T @ sol[:-1], float(sol[-1])
        if (a @ np.r_[wp, bp]).min() >= 1 - _FEAS:  # feasible and min-norm on S: optimal
            w, b = wp, bp
    return w, b


def max_margin(x: Any, y: Any, *, norm: str = "l2", bias: bool = False) -> MaxMargin:
    """The hard-margin max-margin classifier ``argmin ||w||_p s.t. y_i (w.x_i + b) >= 1``.

    Args:
        x: inputs (N, d) or (N, ...) (flattened); a Tensor on any device or a numpy array.
        y: labels (N,) or (N, 1) in {-1, +1} or {0, 1} (0 read as -1).
        norm: ``"l2"`` (the hard-margin SVM, GD's limit), ``"l1"`` (``min ||w||_1``, the
            limit of steepest descent in l1) or ``"linf"`` (``min ||w||_inf``, the limit of
            sign descent, steepest descent in linf; Gunasekar et al. 2018).
        bias: fit an unpenalised intercept ``b`` (needs both classes).

    Returns :class:`MaxMargin` (solvers in the module docstring). Raises ValueError for a bad
    option, non-binary labels, one class with ``bias=True``, or data not linearly separable.

    Examples:
        >>> mm = max_margin(X, y, norm="l1"); mm.direction, mm.margin, mm.support
    """
    fn = "max_margin"
    _check_choice(fn, "norm", norm, MARGIN_NORMS)
    if not isinstance(bias, bool):
        raise ValueError(f"{fn}: bias must be a bool, got {bias!r}")
    x, y = _data(fn, x, y)
    y = _labels(fn, y)
    if bias and np.unique(y).size < 2:
        raise ValueError(f"{fn}: y must contain both classes when bias=True, got only {y[0]:+g}")
    start = time.perf_counter()
    scale = float(np.linalg.norm(x, axis=1).max()) or 1.0
    z = y[:, None] * x / scale
    separable = f"{fn}: the data are not linearly separable{'' if bias else ' through the origin'}"
    sol, solver = (
        (_ldp(z), "nnls-ldp")
        if norm == "l2" and not bias
        else (_linf_lp(z, y, bias), "highs")
        if norm == "linf"
        else (_l1_lp(z, y, bias), "highs")
    )
    if sol is None:
        raise ValueError(separable)
    w, b = sol
    if norm == "l2" and bias:
        (w, b), solver = _svm_bias(z, y, np.r_[w, b]), "slsqp"
    functional = z @ w + y * b
    if functional.min() < 1 - _FEAS:
        raise ValueError(f"{separable} (best functional margin {functional.min():.3g} < 1)")
    support = np.flatnonzero(functional <= functional.min() + 1e-6).astype(np.int64)
    w = w / scale
    size = float(np.linalg.norm(w, ord=_ORD[norm]))
    return MaxMargin(
        direction=_unit(w),
        weights=w,
        intercept=b,
        margin=1.0 / size,
        support=support,
        norm=norm,
        bias=bias,
        solver=solver,
        cost=Cost(seconds=time.perf_counter() - start),
    )


def _weight(fn: str, w: Any) -> np.ndarray:
    """The weight vector of a tensor/array or of a module with one parameter of ndim >= 1."""
    if isinstance(w, nn.Module):
        found = [(k, p) for k, p in w.named_parameters() if p.dim() >= 1]
        if len(found) != 1:
            names = ", ".join(f"{k} {tuple(p.shape)}" for k, p in found) or "none"
            raise ValueError(
                f"{fn}: the model must have exactly one parameter with ndim >= 1 "
                f"(a bias-free linear map to one output), got {names}"
            )
        name, w = found[0]
        if w.dim() == 2 and 1 not in w.shape:
            raise ValueError(
                f"{fn}: the parameter {name} must map to a single output, got "
                f"shape {tuple(w.shape)}"
            )
    w = _host(fn, "w", w)
    if w.ndim == 2 and 1 in w.shape:
        w = w.reshape(-1)
    if w.ndim != 1:
        raise ValueError(f"{fn}: w must be a vector (d,), (1, d) or (d, 1), got {w.shape}")
    if not np.any(w):
        raise ValueError(f"{fn}: w must not be zero (it has no direction)")
    return w


def alignment(
    w_or_model: Any, x: Any, y: Any, *, norm: str = "l2", reference: MaxMargin | None = None
) -> DirectionAlignment:
    """How close a bias-free linear classifier is to the max-margin direction of ``(x, y)``.

    Args:
        w_or_model: the weights (d,), (1, d) or (d, 1) as a Tensor or array, or a module whose
            only parameter of ndim >= 1 is that map (a bias-free ``nn.Linear(d, 1)``, a
            ``landscape.models.Linear(d, 1, bias=False)``).
        x: the inputs, as for :func:`max_margin`.
        y: the labels, as for :func:`max_margin`.
        norm: the max-margin problem to compare with, ``"l2"`` (GD), ``"l1"`` or ``"linf"``
            (sign descent).
        reference: a bias-free :class:`MaxMargin` of ``(x, y)`` in ``norm`` to reuse (e.g.
            along a trajectory); None solves it.

    Returns :class:`DirectionAlignment`: cosine, direction error, normalised margin,
    ``||w||_2``.

    Examples:
        >>> mm = max_margin(X, y)
        >>> errors = [alignment(w, X, y, reference=mm).direction_error for w in trajectory]
    """
    fn = "alignment"
    _check_choice(fn, "norm", norm, MARGIN_NORMS)
    w = _weight(fn, w_or_model)
    x, y = _data(fn, x, y)
    y = _labels(fn, y)
    if w.shape[0] != x.shape[1]:
        raise ValueError(f"{fn}: w has {w.shape[0]} entries but x has {x.shape[1]} features")
    if reference is None:
        reference = max_margin(x, y, norm=norm)
    elif (
        not isinstance(reference, MaxMargin)
        or reference.norm != norm
        or reference.bias
        or reference.direction.shape != w.shape
    ):
        raise ValueError(
            f"{fn}: reference must be a bias-free MaxMargin in norm {norm!r} with "
            f"{w.shape[0]} features, got {reference!r:.80}"
        )
    u, ref = _unit(w), reference.direction
    cosine = float(np.clip(u @ ref, -1.0, 1.0))
    size = float(np.linalg.norm(w, ord=_ORD[norm]))
    return DirectionAlignment(
        cosine=cosine,
        direction_error=float(np.linalg.norm(u - ref)),
        margin=float((y * (x @ w)).min() / size),
        max_margin=reference.margin,
        weight_norm=float(np.linalg.norm(w)),
        norm=norm,
        direction=u,
        reference=ref,
    )


def factorization(model_or_matrix: Any, *, tol: float | None = None) -> Factorization:
    """The end-to-end matrix of ``model_or_matrix``, its nuclear norm, effective and numerical rank.

    ``model_or_matrix`` is anything with a ``matrix()`` method, such as
    ``landscape.models.DeepMatrixFactorization`` or ``SymmetricFactorization``, or a 2-D Tensor or
    array. Singular values above ``tol`` count toward the latter; None for ``max(m, n) * eps *
    s_max``, ``eps`` that of the input's dtype (float64 for other numpy dtypes), as
    ``numpy.linalg.matrix_rank``.
    """
    fn = "factorization"
    if tol is not None:
        _check_positive(fn, "tol", tol)
    m = model_or_matrix
    if callable(getattr(m, "matrix", None)):
        with torch.no_grad():
            m = m.matrix()
    elif isinstance(m, nn.Module):
        raise TypeError(
            f"{fn}: the model must have a matrix() method returning its product, "
            f"got {type(m).__name__} without one"
        )
    a = _host(fn, "matrix", m)
    if a.ndim != 2 or a.size == 0:
        raise ValueError(f"{fn}: the matrix must be 2-D and non-empty, got shape {a.shape}")
    s = np.linalg.svd(a, compute_uv=False)
    if tol is None:
        eps = (
            torch.finfo(m.dtype if m.is_floating_point() else torch.float64).eps
            if isinstance(m, Tensor)
            else np.finfo(m.dtype if m.dtype.kind == "f" else float).eps
        )
        tol = max(a.shape) * float(eps) * float(s[0])
    return Factorization(
        matrix=a,
        singular_values=s,
        nuclear_norm=float(s.sum()),
        spectral_norm=float(s[0]),
        effective_rank=effective_rank(s[s > tol]),
        numerical_rank=int((s > tol).sum()),
        tol=float(tol),
    )


def diagonal(model_or_tensors: Any, *, depth: int = 2) -> Diagonal:
    """The effective weights of a diagonal linear network and their l1 and l2 norms.

    From anything with a ``beta()`` method (``landscape.models.DiagonalLinearNetwork``: ``beta = u^D
    - v^D``, its ``depth`` recorded), or a ``(u, v)`` pair read as ``u^depth - v^depth``.
    """
    fn = "diagonal"
    m = model_or_tensors
    if callable(getattr(m, "beta", None)):
        with torch.no_grad():
            beta = _host(fn, "beta", m.beta()).reshape(-1)
        d = getattr(m, "depth", None)
        depth_out = int(d) if isinstance(d, int) else None
    elif isinstance(m, (tuple, list)) and len(m) == 2:
        if isinstance(depth, bool) or not isinstance(depth, int) or depth < 1:
            raise ValueError(f"{fn}: depth must be an int >= 1, got {depth!r}")
        u, v = _host(fn, "u", m[0]), _host(fn, "v", m[1])
        if u.shape != v.shape:
            raise ValueError(f"{fn}: u and v must have the same shape, got {u.shape}, {v.shape}")
        beta, depth_out = (u**depth - v**depth).reshape(-1), depth
    else:
        raise TypeError(
            f"{fn}: expected a model with a beta() method (e.g. landscape.models."
            f"DiagonalLinearNetwork) or a (u, v) pair, got {type(m).__name__}"
        )
    return Diagonal(
        beta=beta,
        l1_norm=float(np.abs(beta).sum()),
        l2_norm=float(np.linalg.norm(beta)),
        depth=depth_out,
    )


def min_norm_interpolator(x: Any, y: Any, *, norm: str = "l2") -> Interpolator:
    """``argmin ||beta||_p s.t. X beta = y`` for an underdetermined regression.

    l2: ``pinv(X) y``; l1: basis pursuit, ``min 1^T (p + q) s.t. X (p - q) = y, p, q >= 0``
    with HiGHS. Raises ValueError when no exact interpolator exists (residual above a
    relative 1e-7 for l2, an infeasible LP for l1).
    """
    fn = "min_norm_interpolator"
    _check_choice(fn, "norm", norm, NORMS)
    x, y = _data(fn, x, y)
    start = time.perf_counter()
    if norm == "l2":
        beta, solver = np.linalg.pinv(x) @ y, "pinv"
    else:
        d = x.shape[1]
        res = linprog(
            np.ones(2 * d), A_eq=np.hstack([x, -x]), b_eq=y, bounds=(0, None), method="highs"
        )
        if res.status != 0:
            raise ValueError(f"{fn}: no interpolator: X beta = y has no solution ({res.message})")
        beta, solver = res.x[:d] - res.x[d:], "highs"
    residual = float(np.abs(x @ beta - y).max())
    if residual > _FEAS * max(1.0, float(np.abs(y).max()), float(np.abs(x).max())):
        raise ValueError(
            f"{fn}: no interpolator: X beta = y has no exact solution (the "
            f"least-squares residual is {residual:.3g})"
        )
    return Interpolator(
        beta=beta,
        norm=norm,
        l1_norm=float(np.abs(beta).sum()),
        l2_norm=float(np.linalg.norm(beta)),
        residual=residual,
        solver=solver,
        cost=Cost(seconds=time.perf_counter() - start),
    )
