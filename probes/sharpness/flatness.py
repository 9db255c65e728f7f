r"""Keskar's epsilon-sharpness and magnitude-aware PAC-Bayes flatness.

The parts of :mod:`probes.sharpness` defined by a box and by Gaussian noise.

**Epsilon-sharpness** (Keskar et al. 2017). With ``w`` the selected parameters (P of them),
``L`` the mean loss and ``A`` a P x p matrix,

    C_eps = {y in R^p : |y_i| <= eps (|(A^+ w)_i| + 1)},
    phi(eps, A) = 100 (max_{y in C_eps} L(w + A y) - L(w)) / (1 + L(w)),

``A^+`` the Moore-Penrose pseudo-inverse. The full space is ``A = I`` (``subspace=None``): the
box ``|delta_i| <= eps (|w_i| + 1)``. ``subspace=p`` takes ``A`` with independent standard
normal entries (:func:`random_subspace`, seeded; Keskar et al. only say "randomly generated"
columns), so ``delta = A y``. The maximum is sought with SciPy's L-BFGS-B on ``-L`` with the
box as bounds and the exact gradient (``A^T grad L``), starting at ``y = 0``, for at most
``max_iter`` iterations (10 by default, a small budget as in the paper): the value is a lower
bound, reported with the iterations (``n_iter``) and evaluations (``cost.grad_evals``) it
used. SciPy works in float64 on the host; the loss and gradient are computed in the model's
dtype on its device and only the vectors of the optimiser cross over.

**PAC-Bayes flatness** (Jiang et al. 2020). The largest ``sigma`` such that Gaussian noise
lowers the training accuracy by ``target`` (0.1): noise of standard deviation ``sigma``
(plain) or ``sqrt(sigma^2 w_i^2 + eps^2)`` (magnitude-aware, ``eps = 1e-3``), found by
bisection on ``[0, sigma_max]`` (``sigma_max = 2``, depth 15), each accuracy the mean over
``n_samples`` (10) draws; the search stops early once ``|acc(sigma) - acc(0)|`` is within
``tolerance`` (0.01) of the target. The measure is ``1 / sigma^2``. The port in
nitarshan/robust-generalization-measures passes the variance ``sigma^2 w^2 + eps^2`` where
``torch.normal`` expects a standard deviation; here the noise has the standard deviation of the
definition. Every bisection step reuses the same draws ``z_1..z_n`` (common random numbers,
re-seeded from ``seed``), so the estimated accuracy is a deterministic function of sigma.

References:
    Keskar, Mudigere, Nocedal, Smelyanskiy, Tang, "On large-batch training for deep learning:
    generalization gap and sharp minima", ICLR 2017. Jiang, Neyshabur, Mobahi, Krishnan,
    Bengio, "Fantastic generalization measures and where to find them", ICLR 2020. Dziugaite,
    Drouin, Neal, Rajkumar, Caballero, Wang, Mitliagkas, Roy, "In search of robust measures of
    generalization", NeurIPS 2020 (nitarshan/robust-generalization-measures).

Examples:
    >>> e = epsilon(model, nn.CrossEntropyLoss(), (X, y), eps=5e-4)
    >>> e.value, e.n_iter
    >>> f = pac_bayes(model, nn.CrossEntropyLoss(), (X, y))
    >>> f.sigma, f.flatness
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import torch
from scipy.optimize import Bounds, minimize
from torch import Tensor, nn

from landscape.engine.checks import _check_int, _check_positive
from landscape.engine.params import ParamFilter
from probes.sharpness.perturb import _check_common, _check_flag, _generator, _objective
from probes.sharpness.results import Epsilon, PacBayes

__all__ = ["Epsilon", "PacBayes", "epsilon", "pac_bayes", "random_subspace"]


def random_subspace(
    n_params: int,
    dim: int,
    *,
    seed: int = 0,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str = "cpu",
) -> Tensor:
    """The ``(n_params, dim)`` matrix ``A`` of :func:`epsilon`'s random subspace.

    Independent standard normal entries from a ``torch.Generator`` on ``device`` seeded with
    ``seed``.

    Args:
        n_params: P, the rows.
        dim: p, the columns.
        seed: the generator's seed.
        dtype: the matrix's dtype.
        device: where it is drawn.

    Returns:
        The ``(n_params, dim)`` matrix.
    """
    gen = torch.Generator(device=device).manual_seed(int(seed))
    return torch.randn((n_params, dim), generator=gen, dtype=dtype, device=device)


# ----------------------------------------------------------------------------- epsilon
def _host(t: Tensor) -> np.ndarray:
    return t.detach().to("cpu", torch.float64).numpy()


def epsilon(
    model: nn.Module,
    loss_fn: Callable[[Any, Tensor], Tensor],
    data: Any,
    *,
    eps: float = 1e-3,
    subspace: int | None = None,
    max_iter: int = 10,
    seed: int = 0,
    params: ParamFilter | Iterable[str] | None = None,
    mode: str = "eval",
    batch_size: int | None = None,
    check: bool = True,
) -> Epsilon:
    """Keskar et al.'s epsilon-sharpness, maximised by L-BFGS-B.

    ``100 (max_{y in C_eps} L(w + A y) - L(w)) / (1 + L(w))`` (module docstring).

    Args:
        model: the model (never modified).
        loss_fn: a loss returning the batch mean, e.g. ``nn.CrossEntropyLoss()``.
        data: the data (tensors, a Dataset or a DataLoader).
        eps: the box's relative size (> 0; 1e-3 and 5e-4 in the paper).
        subspace: None for the full space, or the dimension p (1 <= p <= P) of a random
            subspace ``delta = A y`` (``A`` P x p: P p numbers on the device).
        max_iter: L-BFGS-B's iteration budget (>= 1).
        seed: seeds ``A`` (:func:`random_subspace`).
        params: which parameters are perturbed (a filter or names, see
            :class:`landscape.Objective`); the others stay fixed.
        mode: ``"eval"`` (default) or ``"train"`` (see :class:`landscape.Objective`).
        batch_size: passed to :class:`landscape.Objective`.
        check: the Objective's determinism check.

    Returns:
        :class:`Epsilon`: ``value``, the clean and largest loss, the maximiser (``delta``,
        ``y``) and the box (``bound``), the iterations used, the cost (its ``grad_evals``: the
        evaluations).

    Raises:
        ValueError: eps not > 0, max_iter < 1, subspace not in [1, P], a bad seed, mode or
            batch size.

    Examples:
        >>> e = epsilon(model, nn.CrossEntropyLoss(), (X, y), eps=1e-3)
        >>> e.value, e.n_iter, e.max_iter
        >>> e = epsilon(model, loss_fn, loader, eps=5e-4, subspace=100)
    """
    where = "epsilon"
    eps = _check_positive(where, "eps", eps)
    if subspace is not None:
        subspace = _check_int(where, "subspace", subspace, 1)
    max_iter = _check_int(where, "max_iter", max_iter, 1)
    _check_common(where, seed=seed, mode=mode, batch_size=batch_size, check=check)
    start = time.perf_counter()
    obj = _objective(
        model, loss_fn, data, params=params, mode=mode, batch_size=batch_size, check=check
    )
    before = obj.cost
    theta = obj.theta
    n_params = theta.numel()
    if subspace is None:
        a = None
        anchor = theta
    else:
        if subspace > n_params:
            raise ValueError(
                f"{where}: subspace must be an int in [1, {n_params}] (the number "
                f"of parameters), got {subspace}"
            )
        a = random_subspace(n_params, subspace, seed=seed, dtype=theta.dtype, device=theta.device)
        wide = torch.promote_types(theta.dtype, torch.float64)
        anchor = torch.linalg.pinv(a.to(wide)) @ theta.to(wide)
    bound = eps * (_host(anchor.abs()) + 1.0)
    clean = float(obj.loss(theta))
    best_loss, best_y = [clean], [np.zeros_like(bound)]  # the best point seen, set in fun

    def fun(y: np.ndarray) -> tuple[float, np.ndarray]:
        v = torch.as_tensor(y, device=theta.device).to(theta.dtype)
        loss, g = obj.loss_and_grad(theta + (v if a is None else a @ v))
        value = float(loss)
        if value > best_loss[0]:
            best_loss[0], best_y[0] = value, np.array(y, dtype=np.float64)
        return -value, -_host(g if a is None else a.T @ g)

    res = minimize(
        fun,
        np.zeros_like(bound),
        jac=True,
        method="L-BFGS-B",
        bounds=Bounds(-bound, bound),
        options={"maxiter": max_iter},
    )
    y = np.clip(best_y[0], -bound, bound)
    yt = torch.as_tensor(y, device=theta.device).to(theta.dtype)
    delta = _host(yt if a is None else a @ yt)
    spent = obj.cost - before
    return Epsilon(
        value=100.0 * (best_loss[0] - clean) / (1.0 + clean),
        clean_loss=clean,
        max_loss=best_loss[0],
        eps=eps,
        subspace=subspace,
        max_iter=max_iter,
        seed=int(seed),
        mode=mode,
        n_iter=int(res.nit),
        message=str(res.message),
        n_params=int(n_params),
        cost=spent.with_seconds(time.perf_counter() - start),
        delta=delta,
        y=y,
        bound=bound,
    )


# ----------------------------------------------------------------------------- PAC-Bayes
def pac_bayes(
    model: nn.Module,
    loss_fn: Callable[[Any, Tensor], Tensor],
    data: Any,
    *,
    target: float = 0.1,
    magnitude_aware: bool = True,
    eps: float = 1e-3,
    n_samples: int = 10,
    depth: int = 15,
    sigma_max: float = 2.0,
    tolerance: float = 0.01,
    seed: int = 0,
    params: ParamFilter | Iterable[str] | None = None,
    mode: str = "eval",
    batch_size: int | None = None,
    check: bool = True,
) -> PacBayes:
    """The largest noise level ``sigma`` that lowers the training accuracy by ``target``.

    Found by bisection (module docstring); the flatness is ``1 / sigma^2``.

    Args:
        model: the model (never modified).
        loss_fn: a loss returning the batch mean.
        data: as for :func:`epsilon`; the data must define an accuracy (classes, one-hot or
            binary labels).
        target: the accuracy drop sought (in (0, 1]).
        magnitude_aware: noise std ``sqrt(sigma^2 w_i^2 + eps^2)`` (Jiang et al.'s
            magnitude-aware measure); else ``sigma``.
        eps: the magnitude-aware noise's floor (> 0).
        n_samples: draws per accuracy estimate (>= 1).
        depth: bisection steps (>= 1).
        sigma_max: the upper end of the search (> 0).
        tolerance: stop when the drop is within this of the target (> 0).
        seed: the draws' seed.
        params: which parameters are perturbed (see :func:`epsilon`).
        mode: ``"eval"`` (default) or ``"train"`` (see :class:`landscape.Objective`).
        batch_size: passed to :class:`landscape.Objective`.
        check: the Objective's determinism check.

    Returns:
        :class:`PacBayes`: ``sigma``, ``flatness``, the bisection trace, the cost.

    Raises:
        ValueError: the data have no accuracy (regression); a target not in (0, 1]; eps,
            sigma_max or tolerance not > 0; n_samples or depth < 1; a bad seed, mode or batch
            size.
        TypeError: magnitude_aware or check not a bool.

    Examples:
        >>> f = pac_bayes(model, nn.CrossEntropyLoss(), (X, y))
        >>> f.sigma, f.flatness, f.converged
    """
    where = "pac_bayes"
    target = _check_positive(where, "target", target)
    if target > 1:
        raise ValueError(f"{where}: target must be an accuracy drop in (0, 1], got {target!r}")
    magnitude_aware = _check_flag(where, "magnitude_aware", magnitude_aware)
    eps = _check_positive(where, "eps", eps)
    n_samples = _check_int(where, "n_samples", n_samples, 1)
    depth = _check_int(where, "depth", depth, 1)
    sigma_max = _check_positive(where, "sigma_max", sigma_max)
    tolerance = _check_positive(where, "tolerance", tolerance)
    _check_common(where, seed=seed, mode=mode, batch_size=batch_size, check=check)
    start = time.perf_counter()
    obj = _objective(
        model, loss_fn, data, params=params, mode=mode, batch_size=batch_size, check=check
    )
    no_accuracy = ValueError(
        f"{where}: needs data with an accuracy (class indices, one-hot or "
        "binary labels); these targets have none (regression?)"
    )
    if not obj.has_accuracy:
        raise no_accuracy

    def measured(point: Tensor) -> float:
        acc = obj.evaluate(point).accuracy
        if acc is None:
            raise no_accuracy
        return acc

    before = obj.cost
    theta = obj.theta
    clean = measured(theta)

    def accuracy(sigma: float) -> float:
        std = (
            torch.sqrt(sigma**2 * theta**2 + eps**2)
            if magnitude_aware
            else torch.full_like(theta, sigma)
        )
        gen = _generator(theta, seed)
        total = 0.0
        for _ in range(n_samples):
            z = torch.randn(theta.shape, generator=gen, dtype=theta.dtype, device=theta.device)
            total += measured(theta + std * z)
        return total / n_samples

    lo, hi = 0.0, sigma_max
    sigmas, accs = [], []
    converged = False
    for _ in range(depth):
        sigma = (lo + hi) / 2
        acc = accuracy(sigma)
        sigmas.append(sigma)
        accs.append(acc)
        drop = abs(acc - clean)
        if abs(drop - target) < tolerance:
            converged = True
            break
        if drop > target:
            hi = sigma
        else:
            lo = sigma
    spent = obj.cost - before
    return PacBayes(
        sigma=sigma,
        flatness=1.0 / sigma**2 if sigma > 0 else math.inf,
        clean_accuracy=float(clean),
        accuracy=acc,
        converged=converged,
        target=target,
        tolerance=tolerance,
        magnitude_aware=magnitude_aware,
        eps=eps,
        n_samples=n_samples,
        depth=depth,
        sigma_max=sigma_max,
        seed=int(seed),
        mode=mode,
        n_params=int(theta.numel()),
        cost=spent.with_seconds(time.perf_counter() - start),
        sigmas=np.asarray(sigmas, dtype=np.float64),
        accuracies=np.asarray(accs, dtype=np.float64),
    )
