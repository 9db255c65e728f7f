r"""The trace of a curvature matrix from its products: Hutchinson and Hutch++.

The curvature ``H`` (the Hessian of the mean loss, or the generalised Gauss-Newton matrix) is
a symmetric P x P matrix available only through products ``H v``
(:class:`probes.curvature.operators.CurvatureOperator`). The estimators ask for products in blocks
``(k, P)``, one pass over the data per block, which costs much less per product than one
vector at a time.

**Trace.** Hutchinson (1989): for random ``g`` with ``E[g g^T] = I`` (Rademacher entries),
``E[g^T H g] = tr(H)``. With ``n`` probes the estimate is the mean of ``g_i^T H g_i`` and its
standard error the sample standard deviation over ``sqrt(n)``; the error falls as
``O(1/sqrt(n))``. Hutch++ (Meyer, Musco, Musco & Woodruff 2021) spends a third of the budget on
a sketch ``S`` (P x k, Rademacher), takes an orthonormal basis ``Q = qr(H S)`` of the dominant
range, computes ``tr(Q^T H Q)`` exactly (k more products), and runs Hutchinson on the deflated
remainder ``(I - QQ^T) H (I - QQ^T)`` with the last third:

    tr(H) = tr(Q^T H Q) + tr((I - QQ^T) H (I - QQ^T)).

Large outlying eigenvalues, typical of trained networks, land in ``Q`` and leave the stochastic
part with a small variance; on PSD matrices Hutch++ needs ``O(1/eps)`` products for relative
error ``eps`` instead of ``O(1/eps^2)``. Its standard error is that of the Hutchinson part (the
exact part adds none); a sketch that spans all P dimensions leaves no stochastic part.

**Precision.** Products of float16 and bfloat16 models are computed in float32 on a copy of the
model (:mod:`probes.curvature.operators`); probes, sketch and sums are float64. The rounding of
float32 products adds at most about ``P eps_fp32 ||H||`` to the value, far below the standard
error of any estimate that is not exact; measured against a dense float64 Hessian at the same
weights, an exact Hutch++ run (sketch of P columns) of bfloat16 and float16 models is within
``6e-8 ||H||`` of the trace, and stochastic runs within 2 standard errors of it
(tests/test_low_precision.py).

References:
    Hutchinson, M. F. (1989). A stochastic estimator of the trace of the influence matrix for
    Laplacian smoothing splines.
    Meyer, R. A., Musco, C., Musco, C., Woodruff, D. P. (2021). Hutch++: Optimal stochastic
    trace estimation. SOSA.

Examples:
    >>> tr = trace(model, nn.CrossEntropyLoss(), (X, y))                # Hutch++, 100 products
    >>> tr.value, tr.stderr
    >>> tr = trace(model, loss_fn, loader, method="hutchinson", target_stderr=0.1)
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor, nn

from landscape.engine.checks import _check_choice, _check_int, _check_positive
from landscape.engine.params import ParamFilter
from probes.curvature.operators import CURVATURES, CurvatureOperator, check_finite, operator
from probes.curvature.results import Trace, curvature_cost

__all__ = [
    "DEFAULT_PRODUCTS",
    "MAX_PRODUCTS",
    "METHODS",
    "MIN_PROBES",
    "Trace",
    "estimate_trace",
    "trace",
]

METHODS = ("hutchinson", "hutch++")
"""Trace estimators."""

DEFAULT_PRODUCTS = 100
"""Products a trace estimate spends when neither ``n_products`` nor ``target_stderr`` is given."""

MAX_PRODUCTS = 10_000
"""The most products a ``target_stderr`` run spends when ``n_products`` does not cap it."""

MIN_PROBES = 10
"""Hutchinson probes a ``target_stderr`` run draws before it may stop."""


def _rademacher(k: int, p: int, gen: torch.Generator, op: Any) -> Tensor:
    bits = torch.randint(0, 2, (k, p), generator=gen, device=op.device)
    return (2 * bits - 1).to(op.dtype)


def _products(op: Any, v: Tensor, block: int) -> Tensor:
    """``H v`` for the rows of ``v`` in blocks of at most ``block`` rows, in float64."""
    parts = [op.matvec(v[i : i + block]).to(torch.float64) for i in range(0, v.shape[0], block)]
    out = torch.cat(parts) if parts else v.new_zeros((0, v.shape[1]), dtype=torch.float64)
    check_finite(out, "trace")
    return out


def _stderr(samples: list[Tensor]) -> float:
    s = torch.cat(samples) if samples else torch.zeros(0, dtype=torch.float64)
    return float(s.std() / math.sqrt(s.numel())) if s.numel() >= 2 else math.nan


def estimate_trace(
    op: CurvatureOperator | Any,
    *,
    method: str = "hutch++",
    n_products: int | None = None,
    target_stderr: float | None = None,
    seed: int = 0,
    block_size: int = 16,
    curvature: str = "hessian",
) -> Trace:
    """:func:`trace` on a ready operator.

    The operator is anything with ``matvec`` for (k, P) blocks, ``size``, ``device``, ``dtype``,
    ``n_products`` and ``passes``, e.g. a :class:`~probes.curvature.operators.CurvatureOperator`.
    Arguments as for :func:`trace`.
    """
    _validate_trace(method, n_products, target_stderr, seed, block_size)
    n_products = None if n_products is None else int(n_products)
    target_stderr = None if target_stderr is None else float(target_stderr)
    seed, block = int(seed), int(block_size)

    start = time.perf_counter()
    hvp0, passes0 = op.n_products, op.passes
    p = int(op.size)
    gen = torch.Generator(device=op.device).manual_seed(seed)
    budget = (
        n_products
        if n_products is not None
        else MAX_PRODUCTS
        if target_stderr is not None
        else DEFAULT_PRODUCTS
    )

    exact, sketch, q = 0.0, 0, None
    if method == "hutch++":
        # A third of the budget for S, a third for Q^T H Q, the rest for the deflated part. With
        # target_stderr and no n_products the sketch is that of the default budget.
        third = (n_products if n_products is not None else DEFAULT_PRODUCTS) // 3
        sketch = min(third, p)
        hs = _products(op, _rademacher(sketch, p, gen, op), block)  # (k, P)
        q = torch.linalg.qr(hs.T, mode="reduced")[0].T.contiguous()  # (k, P), float64
        hq = _products(op, q.to(op.dtype), block)
        exact = float((q * hq).sum())
        budget -= 2 * sketch

    def draw(k: int) -> Tensor:
        g = _rademacher(k, p, gen, op).to(torch.float64)
        if q is not None:
            g = g - (g @ q.T) @ q  # (I - QQ^T) g
        hg = _products(op, g.to(op.dtype), block)
        return (g * hg).sum(1)

    samples: list[Tensor] = []
    n = 0
    converged = True
    if target_stderr is None:
        if budget > 0:
            samples.append(draw(budget))
            n = budget
    else:
        converged = False
        while n < budget:
            k = min(max(block, MIN_PROBES - n), budget - n)
            samples.append(draw(k))
            n += k
            err = _stderr(samples)
            if n >= MIN_PROBES and err <= target_stderr:
                converged = True
                break
    if sketch >= p:  # Q spans everything: the deflated part is zero, the value exact
        converged = True
    s = torch.cat(samples) if samples else torch.zeros(0, dtype=torch.float64)
    value = exact + (float(s.mean()) if n else 0.0)
    stderr = _stderr(samples) if n else (0.0 if sketch >= p else math.nan)
    cost = curvature_cost(
        curvature, op.n_products - hvp0, op.passes - passes0, time.perf_counter() - start
    )
    return Trace(
        value=value,
        stderr=stderr,
        method=method,
        n_probes=n,
        sketch=sketch,
        cost=cost,
        curvature=curvature,
        seed=seed,
        n_params=p,
        target_stderr=target_stderr,
        converged=converged,
        samples=s.cpu().numpy(),
        dtype=str(op.dtype).removeprefix("torch."),
    )


def trace(
    model: nn.Module,
    loss_fn: Callable[[Any, Tensor], Tensor],
    data: Any,
    *,
    method: str = "hutch++",
    n_products: int | None = None,
    target_stderr: float | None = None,
    seed: int = 0,
    curvature: str = "hessian",
    params: ParamFilter | Iterable[str] | None = None,
    mode: str = "eval",
    batch_size: int | None = None,
    check: bool = True,
    block_size: int = 16,
) -> Trace:
    """The trace of the Hessian (or GGN) of the mean loss, by Hutchinson or Hutch++.

    ``tr(H) = E[g^T H g]`` for Rademacher ``g``; Hutch++ first removes the dominant range
    ``Q = qr(H S)`` and computes its part ``tr(Q^T H Q)`` exactly (see the module docstring).

    Budget:
        * ``n_products`` alone (default :data:`DEFAULT_PRODUCTS` = 100): exactly that many
          products. Hutch++ spends ``k = n_products // 3`` on the sketch (at most P), ``k`` on
          ``Q^T H Q`` and the rest on Hutchinson probes of the deflated matrix.
        * ``target_stderr`` (absolute): probes are added in blocks until the standard error is
          at most ``target_stderr`` (after at least :data:`MIN_PROBES` probes), spending at most
          ``n_products`` if given, else :data:`MAX_PRODUCTS` products; ``converged`` says
          whether the target was met. For Hutch++ the sketch is fixed first (``k = n_products
          // 3``, or 33 = 100 // 3 when ``n_products`` is not given) and only the deflated
          Hutchinson part adapts.

    Args:
        model: the model.
        loss_fn: a loss returning the batch mean; the loss is the mean over all of ``data``.
        data: the data (tensors, a Dataset or a DataLoader).
        method: ``"hutch++"`` (default) or ``"hutchinson"``.
        n_products: the budget of products, above.
        target_stderr: the budget as a standard error, above.
        seed: seeds the ``torch.Generator`` (on the operator's device) of every random probe.
        curvature: one of :data:`probes.curvature.operators.CURVATURES` (``"hessian"``,
            ``"ggn"``, ...).
        params: the parameters the matrix is over; passed to
            :func:`probes.curvature.operators.operator`.
        mode: ``"eval"`` by default; passed to :func:`probes.curvature.operators.operator`.
        batch_size: passed to :func:`probes.curvature.operators.operator`.
        check: passed to :func:`probes.curvature.operators.operator`.
        block_size: probes per matrix product (one pass over the data each).

    Returns:
        :class:`Trace`: ``value``, ``stderr``, the per-probe ``samples`` and the cost.

    Raises:
        ValueError: an unknown method or curvature, a budget that is not a positive integer
            (at least 2 for Hutchinson, 4 for Hutch++), a target that is not > 0, a bad seed.

    Examples:
        >>> tr = trace(model, nn.CrossEntropyLoss(), (X, y), n_products=300)
        >>> print(f"{tr.value:.3g} +- {tr.stderr:.2g} ({tr.cost.hvp} products)")
    """
    _check_choice("trace", "curvature", curvature, CURVATURES)
    _validate_trace(method, n_products, target_stderr, seed, block_size)  # before the operator
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
    out = estimate_trace(
        op,
        method=method,
        n_products=n_products,
        target_stderr=target_stderr,
        seed=seed,
        block_size=block_size,
        curvature=curvature,
    )
    cost = dataclasses.replace(
        out.cost, passes=float(op.passes), seconds=time.perf_counter() - start
    )
    return dataclasses.replace(out, cost=cost)


def _validate_trace(method, n_products, target_stderr, seed, block_size) -> None:
    where = "trace"
    if method not in METHODS:
        raise ValueError(
            f"{where}: method must be one of {', '.join(map(repr, METHODS))}, got {method!r}"
        )
    if n_products is not None:
        _check_int(where, "n_products", n_products, 2 if method == "hutchinson" else 4)
    if target_stderr is not None:
        _check_positive(where, "target_stderr", target_stderr)
    _check_int(where, "seed", seed, 0)
    _check_int(where, "block_size", block_size, 1)
