r"""BatchNorm running statistics recomputed at a point of parameter space.

A BatchNorm layer in eval mode normalises with its running statistics, which were gathered
during training at the parameters training passed through. At any other point (a point on a
path between two solutions, a perturbed copy, a snapshot along the trajectory) those
statistics are stale, and a net evaluated with them can look far worse than it is (Garipov et
al. 2018; Jordan et al. 2023, "REPAIR"). :func:`recalibrate` recomputes them at ``theta`` from
the data of an :class:`~landscape.engine.objective.Objective`:

.. math:: \mu_c = \frac{1}{M}\sum_{i} x_{ic}, \qquad
          \sigma^2_c = \frac{1}{M-1}\sum_{i} (x_{ic} - \mu_c)^2,

over all ``M = N * spatial`` values of channel ``c`` that reach the layer in one pass over the
whole data: the exact population mean and the unbiased variance (the convention of
``running_var``), whatever the batch sizes, not a momentum average of per-batch values.
Batches are merged with the pairwise update of Chan, Golub & LeVeque (1979), which is exact
and stable for batches of any size.

One pass does it. During the pass every BatchNorm layer normalises with the statistics of the
current batch, as in training (a forward pre-hook computes them and hands them to the layer),
so the input each deeper layer sees is the one it would see in training. Other modules run in
the objective's mode (eval: dropout off). Nothing of the model changes: the hooks live for the
pass only, parameters and scratch buffers go in through ``torch.func.functional_call``, the
train/eval flags are restored.

Cost: one forward pass over the objective's data per point (not counted in
``objective.cost``).

Over the ranks of a ``torch.distributed`` group (the objective's): each batch normalises with
its own statistics, so the statistics depend on how the data are cut into batches. The shards
are gathered once per objective (rank 0's first, kept while the objective lives) and every rank
runs the pass over their union in the batches one process would use (the objective's batch
size), so every rank gets the statistics of one process on all the data; the pass is not
split over the ranks.

Examples:
    >>> obj = Objective(model, nn.CrossEntropyLoss(), (X, y))
    >>> stats = recalibrate(obj, theta)               # {"bn.running_mean": ..., ...}
    >>> obj.evaluate(theta, buffers=stats).loss

References:
    - T. Garipov, P. Izmailov, D. Podoprikhin, D. Vetrov, A. G. Wilson, "Loss surfaces, mode
      connectivity, and fast ensembling of DNNs", NeurIPS 2018.
    - K. Jordan, H. Sedghi, O. Saukh, R. Entezari, B. Neyshabur, "REPAIR: REnormalizing
      permuted activations for interpolation repair", ICLR 2023.
    - T. F. Chan, G. H. Golub, R. J. LeVeque, "Updating formulae and a pairwise algorithm for
      computing sample variances", 1979.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

from landscape.engine import distributed as _dist
from landscape.engine.batches import DEFAULT_BATCH_SIZE, Batches
from landscape.engine.context import evaluation

__all__ = ["batchnorm_layers", "has_batchnorm", "recalibrate"]


def batchnorm_layers(model: nn.Module) -> dict[str, _BatchNorm]:
    """The BatchNorm layers of ``model`` that keep running statistics, by module name.

    The model itself is named ``""``. Layers with ``track_running_stats=False`` always
    normalise with batch statistics and have nothing to recalibrate.

    Args:
        model: any module.

    Returns:
        ``{module name: layer}`` in registration order.

    Raises:
        TypeError: ``model`` is not a ``torch.nn.Module``.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"expected model to be a torch.nn.Module, got {type(model).__name__}")
    return {
        name: m
        for name, m in model.named_modules()
        if isinstance(m, _BatchNorm)
        and m.track_running_stats
        and m.running_mean is not None
        and m.running_var is not None
    }


def has_batchnorm(model: nn.Module) -> bool:
    """Whether ``model`` has BatchNorm layers with running statistics.

    Their eval-mode output depends on statistics that :func:`recalibrate` recomputes.

    Args:
        model: any module.

    Returns:
        True if :func:`batchnorm_layers` finds any.
    """
    return bool(batchnorm_layers(model))


def _running_stats(layer: _BatchNorm) -> tuple[Tensor, Tensor]:
    """The running mean and variance of a layer that :func:`batchnorm_layers` kept."""
    assert layer.running_mean is not None and layer.running_var is not None
    return layer.running_mean, layer.running_var


class _Moments:
    """Count, mean and sum of squared deviations per channel, merged batch by batch."""

    def __init__(self) -> None:
        self.count, self.calls = 0, 0
        self.mean: Tensor | None = None
        self.m2: Tensor | None = None

    def add(self, mean: Tensor, var: Tensor, count: int) -> None:
        m2 = var * count
        self.calls += 1
        if self.mean is None or self.m2 is None:
            self.count, self.mean, self.m2 = count, mean, m2
            return
        total = self.count + count
        delta = mean - self.mean
        self.mean = self.mean + delta * (count / total)
        self.m2 = self.m2 + m2 + delta.square() * (self.count * count / total)
        self.count = total


_UNIONS: weakref.WeakKeyDictionary[Any, Batches] = weakref.WeakKeyDictionary()
_DATASET_BATCH = 256  # a Dataset's default batch size in Batches


def _batches(objective: Any) -> Iterable[Any]:
    """The batches of the pass: the objective's, or over ranks those of one process on all."""
    group = getattr(objective, "group", None)
    if group is None:
        return objective.batches
    union = _UNIONS.get(objective)
    if union is None:
        inputs, targets = _dist.union(objective.batches, group=group)
        size = objective.batch_size or (
            DEFAULT_BATCH_SIZE if objective.batches.kind in ("tuple", "list") else _DATASET_BATCH
        )
        union = Batches(
            (inputs, targets),
            device=objective.layout.device,
            dtype=objective.layout.dtype,
            batch_size=size,
            cache=True,
            terms=objective.terms,
        )
        _UNIONS[objective] = union
    return union


def _hook(moments: _Moments):
    def pre_hook(module: _BatchNorm, args: tuple[Any, ...]) -> None:
        x = args[0]
        if not isinstance(x, Tensor) or x.ndim < 2:
            raise ValueError(
                f"recalibrate: a BatchNorm layer got input of shape "
                f"{tuple(getattr(x, 'shape', ()))}; expected (N, C, ...)"
            )
        dims = [0, *range(2, x.ndim)]
        count = x.numel() // x.shape[1]
        if count == 0:
            return
        acc = x.detach().to(torch.promote_types(x.dtype, torch.float32))
        var, mean = torch.var_mean(acc, dim=dims, correction=0)
        moments.add(mean, var, count)
        # the layer runs in eval mode on these scratch buffers (swapped in by
        # functional_call): it normalises with this batch's statistics, as in training
        running_mean, running_var = _running_stats(module)
        running_mean.copy_(mean)
        running_var.copy_(var)

    return pre_hook


def recalibrate(objective: Any, theta: Tensor | None = None) -> dict[str, Tensor]:
    """The running statistics of every BatchNorm layer recomputed at ``theta``.

    One forward pass over the objective's data at ``theta`` in which each BatchNorm layer
    normalises with the current batch's statistics (as in training) while the exact population
    mean and unbiased variance of its input over the whole data are accumulated (see the
    module docstring). Other modules run in the objective's mode.

    Args:
        objective: a :class:`~landscape.engine.objective.Objective` (the model, the data, the
            parameters that ``theta`` holds).
        theta: the point, a flat vector of the objective's layout (default: the model's).

    Returns:
        ``{buffer name: tensor}`` for every BatchNorm layer the forward pass reached:
        ``running_mean``, ``running_var`` (the buffers' dtype and device) and
        ``num_batches_tracked`` (the batches that went through the layer). Empty for a model
        without BatchNorm. Pass it as ``buffers=`` to
        :meth:`~landscape.engine.objective.Objective.evaluate` or ``outputs``.

    Raises:
        TypeError: ``objective`` is not an Objective, or ``theta`` of the wrong dtype.
        ValueError: ``theta`` of the wrong shape or device, or a layer that saw a single value
            per channel over the whole data (no variance).

    Examples:
        >>> stats = recalibrate(obj, theta)
        >>> obj.evaluate(theta, buffers=stats)
    """
    for attr in ("model", "layout", "batches", "outputs", "mode"):
        if not hasattr(objective, attr):
            raise TypeError(
                f"recalibrate: expected a landscape.Objective, got "
                f"{type(objective).__name__}; build one with "
                "Objective(model, loss_fn, data)"
            )
    theta = objective.theta if theta is None else theta
    objective.layout.check(theta, "theta")
    model = objective.model
    layers = batchnorm_layers(model)
    if not layers:
        return {}
    prefix = {name: f"{name}." if name else "" for name in layers}
    scratch = {}
    for name, m in layers.items():
        running_mean, running_var = _running_stats(m)
        scratch[prefix[name] + "running_mean"] = running_mean.detach().clone()
        scratch[prefix[name] + "running_var"] = running_var.detach().clone()
    moments = {name: _Moments() for name in layers}
    handles = [m.register_forward_pre_hook(_hook(moments[name])) for name, m in layers.items()]
    try:
        with torch.no_grad(), evaluation(model, objective.mode == "train"):
            for m in layers.values():
                m.training = False  # restored by evaluation()
            for batch in _batches(objective):
                objective.outputs(theta.detach(), batch.inputs, scratch)
    finally:
        for handle in handles:
            handle.remove()
    out: dict[str, Tensor] = {}
    for name, m in layers.items():
        mom = moments[name]
        if mom.mean is None or mom.m2 is None:
            continue  # not reached by the forward pass: its statistics do not matter
        if mom.count < 2:
            raise ValueError(
                f"recalibrate: BatchNorm layer {name or type(m).__name__!r} saw "
                f"{mom.count} value per channel over the whole data; the variance "
                "needs at least 2"
            )
        running_mean, running_var = _running_stats(m)
        out[prefix[name] + "running_mean"] = mom.mean.to(running_mean.dtype)
        out[prefix[name] + "running_var"] = (mom.m2 / (mom.count - 1)).to(running_var.dtype)
        if m.num_batches_tracked is not None:
            out[prefix[name] + "num_batches_tracked"] = torch.tensor(
                mom.calls, dtype=m.num_batches_tracked.dtype, device=m.num_batches_tracked.device
            )
    return out
