r"""Parts the sharpness probes share, and the logit normalisation.

Shared by :mod:`probes.sharpness.worst`, :mod:`probes.sharpness.average` and
:mod:`probes.sharpness.flatness`: argument checks, the objective, the scale ``c``, the
generator, the batches of m-sharpness and the logit normalisation.

**Logit normalisation** (Andriushchenko et al. 2023, ``LogitNormalizationWrapper`` in
tml-epfl/sharpness-vs-generalization, ``models.py``): per example, the logits ``f(x)`` of a
classifier, shape ``(N, K)``, are centred over the classes and divided by their l2 norm,

    f~(x) = (f(x) - mean_k f_k(x)) / max(||f(x) - mean_k f_k(x)||_2, 1e-10),

and the loss is taken on ``f~`` at the clean and at every perturbed point. Scaling the logits
by ``a > 0`` (e.g. the last layer's weights and bias) leaves ``f~`` unchanged, so
cross-entropy sharpness no longer shrinks merely because the logits grew during training.

References:
    Andriushchenko, Croce, Mueller, Hein, Flammarion, "A modern look at the relationship
    between sharpness and generalization", ICML 2023 (tml-epfl/sharpness-vs-generalization).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils._pytree import tree_map

from landscape.engine import distributed as _dist
from landscape.engine.checks import _check_choice, _check_int
from landscape.engine.objective import MODES, Objective

__all__ = ["LOGIT_FLOOR", "NORMS", "LogitShapeError", "normalize_logits"]

NORMS = ("l2", "linf")
"""Norms of the worst-case ball (and the noise of the average case: Gaussian or uniform)."""

LOGIT_FLOOR = 1e-10
"""Floor of the centred logits' norm in :func:`normalize_logits` (as published)."""


class LogitShapeError(ValueError):
    """Logit normalisation was asked for outputs that are not classification logits (N, K)."""


def normalize_logits(outputs: Any, where: str = "normalize_logits") -> Tensor:
    """Centred, unit-norm logits (module docstring; Andriushchenko et al. 2023).

    ``(f - mean_k f_k) / max(||f - mean_k f_k||_2, 1e-10)`` for each row ``f`` of ``outputs``.

    Args:
        outputs: classification logits, a tensor of shape ``(N, K)``, ``K >= 2``.
        where: the caller, for the message.

    Returns:
        A tensor of the shape of ``outputs``: every row sums to 0 and has norm 1 (or is 0).

    Raises:
        LogitShapeError: ``outputs`` is not a floating-point tensor of shape ``(N, K)``,
            ``K >= 2`` (a ``ValueError``).

    Examples:
        >>> z = normalize_logits(torch.tensor([[1.0, 3.0], [2.0, 2.0]]))
        >>> z
        tensor([[-0.7071,  0.7071],
                [ 0.0000,  0.0000]])
    """
    if (
        not isinstance(outputs, Tensor)
        or outputs.ndim != 2
        or outputs.shape[1] < 2
        or not outputs.is_floating_point()
    ):
        got = (
            f"shape {tuple(outputs.shape)} {str(outputs.dtype).removeprefix('torch.')}"
            if isinstance(outputs, Tensor)
            else type(outputs).__name__
        )
        raise LogitShapeError(
            f"{where}: logit_normalize expects classification logits, a floating-point tensor "
            f"of shape (N, K) with K >= 2 classes, got {got}; use logit_normalize=False"
        )
    centred = outputs - outputs.mean(dim=-1, keepdim=True)
    return centred / centred.norm(dim=-1, keepdim=True).clamp_min(LOGIT_FLOOR)


class _LogitNormalized:
    """``loss_fn`` taken on :func:`normalize_logits` of the outputs.

    A plain function of the outputs, so it goes through ``torch.func`` like any loss.

    Args:
        loss_fn: the loss of the normalised logits and the targets.
        where: the probe, for the message.
    """

    def __init__(self, loss_fn: Callable[[Any, Tensor], Tensor], where: str) -> None:
        self.loss_fn, self.where = loss_fn, where
        self.terms = getattr(loss_fn, "terms", None)  # the loss's term count, if it has one

    def __call__(self, outputs: Any, targets: Any) -> Tensor:
        return self.loss_fn(normalize_logits(outputs, self.where), targets)

    def __repr__(self) -> str:
        return f"logit_normalized({self.loss_fn!r})"


def _check_flag(where: str, name: str, value: Any) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{where}: {name} must be True or False, got {value!r}")
    return bool(value)


def _check_common(where: str, *, seed: Any, mode: Any, batch_size: Any, check: Any) -> None:
    """Checks every sharpness probe shares (before any work is done)."""
    _check_int(where, "seed", seed, 0)
    _check_choice(where, "mode", mode, MODES)
    if batch_size is not None:
        _check_int(where, "batch_size", batch_size, 1)
    _check_flag(where, "check", check)


def _objective(
    model: nn.Module,
    loss_fn: Callable,
    data: Any,
    *,
    params: Any,
    mode: str,
    batch_size: int | None,
    check: bool,
    terms: Any = None,
    group: Any = None,
) -> Objective:
    try:
        return Objective(
            model,
            loss_fn,
            data,
            params=params,
            mode=mode,
            batch_size=batch_size,
            check=check,
            terms=terms,
            group=group,
        )
    except ValueError as exc:  # the Objective's check wraps it: say it alone
        if isinstance(exc.__cause__, LogitShapeError):
            raise LogitShapeError(str(exc.__cause__)) from None
        raise


def _loss(loss_fn: Callable, logit_normalize: bool, where: str) -> Callable:
    """``loss_fn``, or ``loss_fn`` on normalised logits."""
    return _LogitNormalized(loss_fn, where) if logit_normalize else loss_fn


def _scale(theta: Tensor, adaptive: bool) -> Tensor:
    """``c``: ``|w|`` when adaptive, else ones (model dtype and device)."""
    return theta.abs() if adaptive else torch.ones_like(theta)


def _generator(theta: Tensor, seed: int) -> torch.Generator:
    return torch.Generator(device=theta.device).manual_seed(int(seed))


def _weighted(weights: np.ndarray, xs: list[float | None]) -> float | None:
    """``sum_b weights_b xs_b``, or None where any ``xs_b`` is None (no accuracy)."""
    known = [x for x in xs if x is not None]
    return float(np.dot(weights, known)) if len(known) == len(xs) else None


def _parts(
    obj: Objective,
    m: int | None,
    seed: int,
    *,
    params: Any,
    batch_size: int | None,
) -> list[tuple[Objective, int]]:
    """The objectives of m-sharpness and their seeds.

    ``[(obj, seed)]`` without ``m``; with ``m``, one objective for each run of ``m``
    consecutive examples of ``obj``'s data (the last may be smaller), batch ``i`` seeded with
    ``seed + i``, with ``obj``'s model, loss and mode.

    Args:
        obj: the objective over all the data.
        m: the batch size of m-sharpness, or None.
        seed: the probe's seed.
        params: the parameter selection (as given to the probe).
        batch_size: the probe's batch size.

    Returns:
        ``(objective, seed)`` pairs, in the order of the data.
    """
    if m is None:
        return [(obj, seed)]
    # over ranks, the union of the shards in rank order on every rank: each rank fits every
    # batch of m, as one process does (the batches of m cross the shards)
    inputs, targets = _dist.union(obj.batches, group=obj.group)
    parts = []
    for i, lo in enumerate(range(0, obj.n_examples, m)):
        chunk = (tree_map(lambda t, lo=lo: t[lo : lo + m], inputs), targets[lo : lo + m])
        part = _objective(
            obj.model,
            obj.loss_fn,
            chunk,
            params=params,
            mode=obj.mode,
            batch_size=batch_size,
            check=False,
            terms=obj.terms,
            group=False,
        )
        parts.append((part, seed + i))
    return parts
