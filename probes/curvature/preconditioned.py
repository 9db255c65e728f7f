r"""The preconditioned sharpness of an adaptive optimizer: ``lambda_max(P^-1 H)`` (Adam).

Cohen et al. 2022 ("Adaptive gradient methods at the edge of stability") show that full-batch
Adam with step ``eta`` and first-moment coefficient ``beta1`` is, around a point, a
preconditioned heavy-ball method on the quadratic model ``H`` with the preconditioner

.. math:: P = \mathrm{diag}\big(\sqrt{\hat v} + \epsilon\big), \qquad
   \hat v = v / (1 - \beta_2^t),

(``v`` Adam's second-moment estimate after ``t`` steps, bias-corrected as Adam does), and that it
is stable only while the preconditioned sharpness stays below

.. math:: \lambda_{\max}(P^{-1} H) \le \frac{2 + 2\beta_1}{(1 - \beta_1)\,\eta}
   \quad (= 38/\eta \text{ for } \beta_1 = 0.9).

They find that it rises to this threshold and hovers there (the adaptive edge of stability).
``P^{-1} H`` is similar to the symmetric ``P^{-1/2} H P^{-1/2}``, whose top eigenvalues
:func:`preconditioned_sharpness` finds by thick-restart Lanczos
(:func:`probes.curvature.lanczos.extreme`) over Hessian-vector products, each product costing
one Hessian product and two elementwise scalings. The preconditioner is read from a
``torch.optim.Adam`` / ``AdamW`` state (``exp_avg_sq``, or ``max_exp_avg_sq`` with amsgrad, and
``step``), or given as a vector.

Examples:
    >>> r = preconditioned_sharpness(model, loss_fn, (X, y), optimizer)      # doctest: +SKIP
    >>> r.value, r.threshold, r.value / r.threshold, r.cost.hvp
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from landscape.engine.checks import _check_int
from landscape.engine.params import ParamFilter
from probes.curvature.certify import thresholds
from probes.curvature.lanczos import extreme
from probes.curvature.operators import operator
from probes.curvature.results import PreconditionedSharpness, curvature_cost

__all__ = [
    "PreconditionedSharpness",
    "adam_preconditioner",
    "adam_threshold",
    "preconditioned_sharpness",
]


def adam_threshold(lr: float, beta1: float) -> float:
    """Adam's stability threshold ``(2 + 2 beta1) / ((1 - beta1) lr)`` (Cohen et al. 2022).

    Args:
        lr: the step size eta (> 0).
        beta1: the first-moment coefficient, in [0, 1).

    Returns:
        The threshold (``38 / lr`` for ``beta1 = 0.9``).
    """
    if not (lr > 0 and 0 <= beta1 < 1):
        raise ValueError(f"adam_threshold: expected lr > 0 and 0 <= beta1 < 1, got {lr}, {beta1}")
    return (2 + 2 * beta1) / ((1 - beta1) * lr)


def _group(optimizer: torch.optim.Optimizer, param: Tensor) -> dict[str, Any]:
    for group in optimizer.param_groups:
        if any(p is param for p in group["params"]):
            return group
    raise ValueError("adam_preconditioner: a parameter of the model is not in the optimizer")


def adam_preconditioner(
    optimizer: torch.optim.Optimizer, params: Iterable[Tensor]
) -> tuple[Tensor, dict[str, float]]:
    """``sqrt(v_hat) + eps`` of an Adam (AdamW) optimizer over ``params``, flat, and its settings.

    Args:
        optimizer: a ``torch.optim.Adam`` or ``AdamW`` (or any optimizer with their state:
            ``exp_avg_sq`` and ``step`` per parameter, ``betas`` and ``eps`` per group).
        params: the parameters, in the order of the flat vector.

    Returns:
        ``(p, settings)``: the diagonal of ``P`` (float64, on the parameters' device) and
        ``{"lr", "beta1", "beta2", "eps", "step"}`` (NaN where the groups disagree).

    Raises:
        ValueError: a parameter without Adam state (before the first step, or another
            optimizer), or not in the optimizer.
    """
    parts, settings = [], []
    for param in params:
        group = _group(optimizer, param)
        state = optimizer.state.get(param, {})
        if "exp_avg_sq" not in state or "betas" not in group:
            raise ValueError(
                "adam_preconditioner: expected an Adam/AdamW state (exp_avg_sq, step) for every "
                f"parameter, got {type(optimizer).__name__} with state keys "
                f"{sorted(state) or 'none (no step taken yet)'}"
            )
        step = int(state["step"])
        beta1, beta2 = (float(b) for b in group["betas"])
        v = state["max_exp_avg_sq"] if group.get("amsgrad") else state["exp_avg_sq"]
        v_hat = v.detach().double().reshape(-1) / (1 - beta2**step)
        parts.append(v_hat.sqrt() + float(group["eps"]))
        settings.append((float(group["lr"]), beta1, beta2, float(group["eps"]), step))
    same = all(s == settings[0] for s in settings)
    keys = ("lr", "beta1", "beta2", "eps", "step")
    out = {k: (float(v) if same else math.nan) for k, v in zip(keys, settings[0], strict=True)}
    return torch.cat(parts), out


def preconditioned_sharpness(
    model: nn.Module,
    loss_fn: Callable[[Any, Tensor], Tensor],
    data: Any,
    optimizer: torch.optim.Optimizer | None = None,
    *,
    preconditioner: Tensor | np.ndarray | None = None,
    k: int = 1,
    tol: float = 1e-5,
    params: ParamFilter | Iterable[str] | None = None,
    mode: str = "eval",
    vectors: bool = False,
    v0: Tensor | np.ndarray | None = None,
    max_products: int | None = None,
    seed: int = 0,
    batch_size: int | None = None,
    check: bool = True,
) -> PreconditionedSharpness:
    """The top-k eigenvalues of ``P^-1 H`` (the module docstring), by Lanczos on the device.

    Args:
        model: the model (never modified).
        loss_fn: a mean loss ``loss_fn(outputs, targets)``.
        data: ``(inputs, targets)`` tensors, a Dataset or a DataLoader (full batch: the whole
            training set, as Cohen et al. measure it).
        optimizer: the Adam/AdamW optimizer of the run, after at least one step (its state gives
            ``P`` and its settings the threshold); or None with ``preconditioner``.
        preconditioner: the diagonal of ``P`` (P,) instead of an optimizer (positive).
        k: how many of the largest eigenvalues.
        tol: relative accuracy of the eigenvalues (the stop of
            :func:`probes.curvature.hessian.eigenvalues`).
        params: the parameters the matrix is over (None: all trainable ones).
        mode: ``"eval"`` or ``"train"`` (as for :class:`landscape.Objective`).
        vectors: also return the eigenvectors (for a warm start, ``v0``).
        v0: a start vector (P,) or rows (j, P) whose sum starts Lanczos (a previous result's
            vectors along training).
        max_products: budget of Hessian products (None: until converged).
        seed: seed of the random start vector (when no ``v0``).
        batch_size: passed to :class:`landscape.Objective`.
        check: passed to :class:`landscape.Objective`.

    Returns:
        :class:`PreconditionedSharpness`.

    Raises:
        ValueError: neither or both of ``optimizer`` and ``preconditioner``; an optimizer
            without Adam state; a preconditioner of the wrong size or not positive; a bad
            ``k``, ``tol`` or ``v0``.
    """
    fn = "preconditioned_sharpness"
    started = time.perf_counter()
    k = _check_int(fn, "k", k, 1)
    if not (isinstance(tol, (int, float)) and 0 < tol < 1):
        raise ValueError(f"{fn}: tol must be a number in (0, 1), got {tol!r}")
    if (optimizer is None) == (preconditioner is None):
        raise ValueError(f"{fn}: give the Adam optimizer or the preconditioner, exactly one")
    op = operator(
        model, loss_fn, data, curvature="hessian", params=params, mode=mode,
        batch_size=batch_size, check=check,
    )  # fmt: skip
    names = tuple(op.objective.layout.names)
    nan = math.nan
    settings = {"lr": nan, "beta1": nan, "beta2": nan, "eps": nan, "step": 0.0}
    if optimizer is not None:
        named = dict(model.named_parameters())
        diag, settings = adam_preconditioner(optimizer, [named[n] for n in names])
    else:
        diag = torch.as_tensor(np.asarray(preconditioner) if isinstance(preconditioner, np.ndarray)
                               else preconditioner).double().reshape(-1)  # fmt: skip
    if diag.numel() != op.size or not bool(torch.all(diag > 0)):
        raise ValueError(
            f"{fn}: the preconditioner must be {op.size} positive numbers (one per parameter), "
            f"got {diag.numel()}"
        )
    if k >= op.size:
        raise ValueError(f"{fn}: k must be below P={op.size}, got {k}")
    scale = diag.rsqrt().to(op.device, op.dtype)

    def matvec(v: Tensor) -> Tensor:
        return scale * op.matvec(scale * v)

    if v0 is None:
        gen = torch.Generator().manual_seed(seed)
        start = torch.randn(op.size, generator=gen, dtype=torch.float64)
    else:
        rows = torch.as_tensor(np.asarray(v0) if isinstance(v0, np.ndarray) else v0)
        rows = rows.detach().to("cpu", torch.float64).reshape(-1, op.size)
        start = rows.sum(0)
        if not bool(torch.isfinite(start).all()) or float(start.norm()) == 0:
            raise ValueError(f"{fn}: v0 must be finite rows of size {op.size} not summing to zero")
    ritz = extreme(
        matvec,
        start.to(op.device, op.dtype),
        k,
        "largest",
        lambda values: thresholds(values, tol, op.dtype),
        basis=max(k + 25, 2 * k + 10),
        max_products=max_products,
        seed=seed,
    )
    order = np.argsort(-ritz.values, kind="stable")
    lr, beta1 = settings["lr"], settings["beta1"]
    known = math.isfinite(lr) and math.isfinite(beta1) and lr > 0 and 0 <= beta1 < 1
    vecs = ritz.vectors.detach().to("cpu", torch.float64).numpy()[order] if vectors else None
    return PreconditionedSharpness(
        values=ritz.values[order].copy(),
        vectors=vecs,
        residuals=ritz.residuals[order].copy(),
        errors=ritz.errors[order].copy(),
        converged=ritz.converged[order].copy(),
        threshold=adam_threshold(lr, beta1) if known else nan,
        lr=lr,
        beta1=beta1,
        beta2=settings["beta2"],
        eps=settings["eps"],
        step=int(settings["step"]) if math.isfinite(settings["step"]) else -1,
        k=k,
        tol=float(tol),
        params=names,
        mode=mode,
        cost=curvature_cost("hessian", ritz.n_products, op.passes, time.perf_counter() - started),
    )
