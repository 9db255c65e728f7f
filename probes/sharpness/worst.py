r"""Worst-case sharpness in a (possibly adaptive) ball.

The part of :mod:`probes.sharpness` that maximises the loss over a norm-bounded ``delta`` (the
average case around the same point is :mod:`probes.sharpness.average`).

With ``w`` the selected parameters, ``L`` the mean loss and ``c`` the scale (``c = |w|``
elementwise when adaptive, ``c = 1`` otherwise):

    worst case:    S_max = max_{||delta / c||_p <= rho} L(w + delta) - L(w),  p in {2, inf}
    average case:  S_avg = E_z L(w + rho c z) - L(w),  z ~ N(0, I) (l2) or U[-1, 1]^P (linf)

**Coordinates.** Both are computed in ``u = delta / c`` (``delta = c u``), where the ball is the
plain ball ``||u||_p <= rho`` and the objective is ``f(u) = L(w + c u)`` with gradient
``c g`` (``g = grad L(w + c u)``). Steepest ascent in the scaled norm is the plain one in ``u``:
for p = 2, ``u += step c g / ||c g||``, i.e. ``delta += step c^2 g / ||c g||``, a step of scaled
length exactly ``step`` (the published code writes ``delta += step c g / ||g||``, which is
neither of scaled length ``step`` nor invariant under rescaling); for p = inf,
``u += step sign(g)``, i.e. ``delta += step c sign(g)`` (as published). Projection is the
Euclidean projection in ``u`` (radial scaling for p = 2, clipping for p = inf), i.e. onto the
scaled ball in its own metric. A rescaling ``w -> T w`` (positive diagonal ``T``) that leaves
the function unchanged, such as that of a ReLU unit's weights and bias in (times a) and out
(over a), maps ``c -> T c`` and ``g -> T^{-1} g``, so ``f`` and the whole ascent are
unchanged: adaptive sharpness is invariant when every parameter, biases included, is scaled
(``c_i = 0`` freezes coordinate i).

**Ascent schedule** (Andriushchenko et al. 2023, after APGD of Croce & Hein 2020), ``steps``
iterations from ``u = 0`` (and from ``restarts`` random points inside the ball): the step
starts at ``2 rho``; each iterate is ``u_{k+1} = 0.75 z_{k+1} + 0.25 u_k`` with
``z_{k+1} = P(u_k + step d(u_k))`` (a convex combination of two points of the ball, so it
stays inside; the published code mixes with ``u_{k-1}`` through its bookkeeping, this follows
the schedule as the paper states it); at checkpoints ``ceil(p_j steps)``, ``p_0 = 0``,
``p_1 = 0.22``, ``p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06)``, if fewer than 75% of the
steps since the previous checkpoint raised the best loss, the step is halved and the ascent
restarts from the best point. Checkpoints that round to the same step count once (the
published loop instead stops at the first repeat, which only matters below ~17 steps).

**m-sharpness**: with ``m`` set, the data (in order) are cut into consecutive batches of ``m``
examples (the last may be smaller), each batch gets its own worst case, and the values are
averaged with weights ``n_b / N`` (the plain mean when ``m`` divides N), as
``eval_APGD_sharpness`` does (which asserts that ``m`` divides N); their code uses m = 128.

**Logit normalisation** (``logit_normalize=True``, for classifiers whose outputs are logits
``(N, K)``): the loss is taken on the centred, unit-norm logits
(:func:`probes.sharpness.perturb.normalize_logits`, their ``LogitNormalizationWrapper``) at the
clean and at every perturbed point, so that the value no longer shrinks as the logits grow;
the accuracies are unchanged by it (the argmax is the same).

References:
    Foret, Kleiner, Mobahi, Neyshabur, "Sharpness-aware minimization for efficiently improving
    generalization", ICLR 2021. Kwon, Kim, Park, Choi, "ASAM: Adaptive sharpness-aware
    minimization for scale-invariant learning of deep neural networks", ICML 2021.
    Andriushchenko, Croce, Mueller, Hein, Flammarion, "A modern look at the relationship
    between sharpness and generalization", ICML 2023 (tml-epfl/sharpness-vs-generalization).
    Croce, Hein, "Reliable evaluation of adversarial robustness with an ensemble of diverse
    parameter-free attacks", ICML 2020.

Examples:
    >>> s = worst_case(model, nn.CrossEntropyLoss(), (X, y), rho=0.05, adaptive=True)
    >>> s.value, s.worst_accuracy, s.delta_norm
    >>> a = average_case(model, nn.CrossEntropyLoss(), loader, rho=0.05, adaptive=True)
    >>> a.value, a.stderr
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from landscape.engine.checks import _check_choice, _check_int, _check_positive
from landscape.engine.cost import Cost
from landscape.engine.objective import Objective
from landscape.engine.params import ParamFilter
from probes.sharpness.perturb import (
    NORMS,
    _check_common,
    _check_flag,
    _generator,
    _loss,
    _objective,
    _parts,
    _scale,
    _weighted,
)
from probes.sharpness.results import WorstCase

__all__ = ["NORMS", "WorstCase", "checkpoints", "worst_case"]

MIX = 0.75
"""Weight of the new projected point in each iterate (the previous point gets 0.25)."""

MIN_UPDATE_RATIO = 0.75
"""At a checkpoint, the step is halved unless this fraction of the steps since the last one
raised the best loss."""


def checkpoints(steps: int) -> tuple[int, ...]:
    """The step counts (1-based, at most ``steps``) after which the step size may be halved.

    ``ceil(p_j steps)`` for ``p_1 = 0.22``, ``p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03,
    0.06)``, duplicates removed.

    Args:
        steps: the ascent's iterations.

    Returns:
        The checkpoints, increasing.

    Examples:
        >>> checkpoints(20)
        (5, 9, 12, 14, 16, 18, 19, 20)
    """
    p = [0.0, 0.22]
    while p[-1] < 1:
        p.append(p[-1] + max(p[-1] - p[-2] - 0.03, 0.06))
    ks = {math.ceil(round(q * steps, 9)) for q in p[1:]}
    return tuple(sorted(k for k in ks if 1 <= k <= steps))


def _norm(u: Tensor, norm: str) -> float:
    return float(u.norm() if norm == "l2" else u.abs().max())


# ----------------------------------------------------------------------------- worst case
def _random_start(
    theta: Tensor, live: Tensor, rho: float, norm: str, gen: torch.Generator
) -> Tensor:
    """A uniform random point of the ball ``||u||_p <= rho`` (zero where ``c = 0``)."""
    if norm == "linf":
        u = (
            2 * torch.rand(theta.shape, generator=gen, dtype=theta.dtype, device=theta.device) - 1
        ) * rho
        return u * live
    u = torch.randn(theta.shape, generator=gen, dtype=theta.dtype, device=theta.device) * live
    n = max(int(live.sum()), 1)
    radius = rho * float(
        torch.rand((), generator=gen, dtype=torch.float64, device=theta.device)
    ) ** (1.0 / n)
    return u * (radius / max(float(u.norm()), 1e-300))


def _ascend(
    obj: Objective,
    theta: Tensor,
    c: Tensor,
    *,
    rho: float,
    norm: str,
    steps: int,
    restarts: int,
    gen: torch.Generator,
) -> tuple[float, Tensor]:
    """The best loss found and its ``u`` (the ascent of the module docstring)."""
    checks = set(checkpoints(steps))
    live = (c != 0).to(theta.dtype)
    best_loss, best_u = -math.inf, torch.zeros_like(theta)
    for start in range(restarts + 1):
        u = torch.zeros_like(theta) if start == 0 else _random_start(theta, live, rho, norm, gen)
        loss, g = obj.loss_and_grad(theta + c * u)
        top, top_u, top_g = float(loss), u, g
        step, last, improved = 2.0 * rho, 0, 0
        for k in range(1, steps + 1):
            d = c * g
            if norm == "l2":  # norms in float64: a float32 norm of a huge step overflows
                dn = float(d.double().norm())
                z = u + (step / dn) * d if dn > 0 else u
                zn = float(z.double().norm())
                if zn > rho:
                    z = z * (rho / zn)
            else:
                z = (u + step * torch.sign(d)).clamp(-rho, rho)
            u = MIX * z + (1 - MIX) * u
            if k < steps:
                loss, g = obj.loss_and_grad(theta + c * u)
            else:  # the last point needs no gradient
                loss = obj.loss(theta + c * u)
            if float(loss) > top:
                top, top_u, top_g = float(loss), u, g
                improved += 1
            if k in checks and k < steps:
                if improved < MIN_UPDATE_RATIO * (k - last):
                    step /= 2
                    u, g = top_u, top_g
                last, improved = k, 0
        if top > best_loss:
            best_loss, best_u = top, top_u
    return best_loss, best_u


def worst_case(
    model: nn.Module,
    loss_fn: Callable[[Any, Tensor], Tensor],
    data: Any,
    *,
    rho: float,
    norm: str = "l2",
    adaptive: bool = False,
    params: ParamFilter | Iterable[str] | None = None,
    steps: int = 20,
    restarts: int = 0,
    m: int | None = None,
    logit_normalize: bool = False,
    seed: int = 0,
    mode: str = "eval",
    batch_size: int | None = None,
    check: bool = True,
) -> WorstCase:
    """Worst-case sharpness ``max_{||delta / c||_p <= rho} L(w + delta) - L(w)``.

    Projected gradient ascent with the APGD-style schedule of Andriushchenko et al. (2023)
    (module docstring): a lower bound of the true maximum (it reaches the closed form of a
    single logistic example, whose maximiser is ``-rho y x / ||x||``).

    Args:
        model: the model (never modified).
        loss_fn: a loss returning the batch mean, e.g. ``nn.CrossEntropyLoss()``.
        data: the data (tensors, a Dataset or a DataLoader).
        rho: the radius (> 0).
        norm: ``"l2"`` or ``"linf"``.
        adaptive: ``c = |w|`` elementwise over all selected parameters, biases included
            (Kwon et al. 2021); otherwise ``c = 1``.
        params: which parameters are perturbed (a filter or names, see
            :class:`landscape.Objective`); the others stay fixed.
        steps: ascent iterations (20 as published).
        restarts: extra starts from uniform random points of the ball (the first start is
            ``delta = 0``); the best is kept.
        m: with m, the mean of the per-batch worst cases over consecutive batches of m
            examples (m-sharpness; 128 in Andriushchenko et al.'s code); batch ``i`` draws its
            restarts from ``seed + i``. None (default): one worst case over all the data.
        logit_normalize: take ``loss_fn`` on the centred, unit-norm logits (module docstring)
            at the clean and the perturbed points; for classification outputs ``(N, K)``.
        seed: seeds the random starts (a ``torch.Generator`` on the model's device).
        mode: ``"eval"`` (default: BatchNorm uses running statistics, dropout off) or
            ``"train"`` (see :class:`landscape.Objective`).
        batch_size: passed to :class:`landscape.Objective`.
        check: the Objective's determinism check.

    Returns:
        :class:`WorstCase`: ``value``, losses and accuracies at ``w`` and at the worst point,
        the worst ``delta`` and its constraint norm, per-batch values with ``m``, the cost.

    Raises:
        ValueError: rho not a finite number > 0, an unknown norm or mode, steps < 1,
            restarts < 0, m < 1, a bad seed or batch size (and the Objective's own checks);
            with ``logit_normalize``, outputs that are not ``(N, K)`` logits
            (:class:`~probes.sharpness.perturb.LogitShapeError`).
        TypeError: adaptive, logit_normalize or check not a bool.

    Examples:
        >>> s = worst_case(model, nn.CrossEntropyLoss(), (X, y), rho=0.05, adaptive=True)
        >>> s1 = worst_case(model, loss_fn, (X[:1024], y[:1024]), rho=5e-4, norm="linf",
        ...                 adaptive=True, m=128, logit_normalize=True)  # Andriushchenko et al.
    """
    where = "worst_case"
    rho = _check_positive(where, "rho", rho)
    _check_choice(where, "norm", norm, NORMS)
    adaptive = _check_flag(where, "adaptive", adaptive)
    logit_normalize = _check_flag(where, "logit_normalize", logit_normalize)
    steps = _check_int(where, "steps", steps, 1)
    restarts = _check_int(where, "restarts", restarts, 0)
    if m is not None:
        m = _check_int(where, "m", m, 1)
    _check_common(where, seed=seed, mode=mode, batch_size=batch_size, check=check)
    start = time.perf_counter()
    obj = _objective(
        model,
        _loss(loss_fn, logit_normalize, where),
        data,
        params=params,
        mode=mode,
        batch_size=batch_size,
        check=check,
    )
    theta = obj.theta
    c = _scale(theta, adaptive)
    n_total = obj.n_terms  # the weights of the parts: their share of the loss terms
    parts = _parts(obj, m, seed, params=params, batch_size=batch_size)
    values: list[float] = []
    clean: list[float] = []
    worst: list[float] = []
    clean_acc: list[float | None] = []
    worst_acc: list[float | None] = []
    norms: list[float] = []
    sizes: list[int] = []
    spent = Cost()
    delta = None
    for part, part_seed in parts:
        before = part.cost
        c0 = part.evaluate(theta)
        try:
            _, u = _ascend(
                part,
                theta,
                c,
                rho=rho,
                norm=norm,
                steps=steps,
                restarts=restarts,
                gen=_generator(theta, part_seed),
            )
            w1 = part.evaluate(theta + c * u)
        except ValueError as err:  # a loss that overflowed: never a stored 0 or inf
            if "is not finite" not in str(err):
                raise
            raise ValueError(
                f"{where}: the loss overflowed (it is not finite) at a perturbation within "
                f"rho={rho:g} of the parameters: no finite worst case; use a smaller rho"
            ) from None
        if not (math.isfinite(w1.loss) and math.isfinite(c0.loss)):
            raise ValueError(
                f"{where}: the loss is {w1.loss} at the worst point found within rho={rho:g}: "
                "no finite worst case; use a smaller rho"
            )
        used = part.cost - before
        spent += Cost(
            passes=used.passes * part.n_examples / obj.n_examples,
            loss_evals=used.loss_evals,
            grad_evals=used.grad_evals,
        )
        sizes.append(part.n_terms)
        clean.append(c0.loss)
        worst.append(w1.loss)
        values.append(w1.loss - c0.loss)
        clean_acc.append(c0.accuracy)
        worst_acc.append(w1.accuracy)
        norms.append(_norm(u * (c != 0), norm))
        if m is None:
            delta = (c * u).to("cpu", torch.float64).numpy()
    weights = np.asarray(sizes, dtype=np.float64) / n_total

    def mean(xs: list[float]) -> float:
        return float(np.dot(weights, xs))

    return WorstCase(
        value=mean(values),
        clean_loss=mean(clean),
        worst_loss=mean(worst),
        clean_accuracy=_weighted(weights, clean_acc),
        worst_accuracy=_weighted(weights, worst_acc),
        delta_norm=max(norms),
        rho=rho,
        norm=norm,
        adaptive=adaptive,
        steps=steps,
        restarts=restarts,
        m=m,
        seed=int(seed),
        mode=mode,
        n_params=int(theta.numel()),
        n_batches=len(parts),
        cost=spent.with_seconds(time.perf_counter() - start),
        delta=delta,
        batch_values=None if m is None else np.asarray(values, dtype=np.float64),
        batch_sizes=None if m is None else np.asarray(sizes, dtype=np.int64),
        logit_normalize=logit_normalize,
    )
