"""A quadratic Bezier curve between two minima, its bend trained for low loss along it.

``phi(t) = (1-t)^2 a + 2t(1-t) c + t^2 b`` between ``a`` and ``b``, the bend ``c`` trained
(Garipov et al. 2018), then evaluated as :func:`probes.paths.interpolation.linear` evaluates a
line (the barrier and the buffers policy are described in :mod:`probes.paths.interpolation`,
which re-exports :func:`bezier`).

Examples:
    >>> c = bezier(model_a, model_b, nn.CrossEntropyLoss(), (X, y), steps=2000)
    >>> c.barrier, c.bend, c.train_loss

Over ``torch.distributed`` ranks (tensor data): the minibatches are drawn from the union of
the shards in rank order, gathered on every rank, so every rank fits the same bend as one
process on all the data (each rank runs every step; the evaluation along the curve is split
over the ranks).

References:
    Garipov, Izmailov, Podoprikhin, Vetrov, Wilson, "Loss surfaces, mode connectivity, and
    fast ensembling of DNNs", NeurIPS 2018. Draxler, Veschgini, Salmhofer, Hamprecht,
    "Essentially no barriers in neural network energy landscape", ICML 2018.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any, cast

import numpy as np
import torch
from torch import Tensor, nn
from torch.func import grad_and_value
from torch.utils._pytree import tree_map
from torch.utils.data import DataLoader

from landscape.engine import distributed as _dist
from landscape.engine.batches import Batches
from landscape.engine.batchnorm import batchnorm_layers, has_batchnorm
from landscape.engine.checks import _check_choice, _check_int, _check_positive
from landscape.engine.context import evaluation
from landscape.engine.objective import Objective
from landscape.engine.params import ParamFilter, to_numpy
from probes.paths.results import OPTIMIZERS, Curve
from probes.paths.walk import _check_path, _ends, _walk

__all__ = ["bezier"]


def _minibatches(data: Any, size: int, obj: Objective, gen: torch.Generator) -> Iterator:
    """Minibatches of ``size`` for the bend.

    Random without replacement for tensors (a new permutation when fewer than ``size`` are left),
    the loader's own order otherwise.
    """
    layout = obj.layout
    if not (isinstance(data, (tuple, list)) and len(data) == 2):
        source = (
            obj.batches
            if isinstance(data, DataLoader)
            else Batches(data, device=layout.device, dtype=layout.dtype, batch_size=size)
        )
        while True:
            yield from ((b.inputs, b.targets) for b in source)
    full = Batches(
        data, device=layout.device, dtype=layout.dtype, batch_size=obj.n_examples
    ).first()
    # over ranks: the union of the shards, in rank order, on every rank (the same draws)
    inputs, targets = _dist.union([full], group=obj.group)
    count = obj.n_examples
    while True:
        perm = torch.randperm(count, generator=gen, device=layout.device)
        for i in range(0, count - size + 1, size):
            idx = perm[i : i + size]
            yield tree_map(lambda x, idx=idx: x[idx], inputs), targets[idx]


def _bezier(a: Tensor, c: Tensor, b: Tensor, t: Any) -> Tensor:
    """The quadratic Bezier curve with ends a, b and bend c at t in [0, 1]."""
    u = 1 - t
    return u * u * a + 2 * t * u * c + t * t * b


def bezier(
    model_a: nn.Module | Tensor,
    model_b: nn.Module | Tensor,
    loss_fn: Callable[[Any, Tensor], Tensor],
    data: Any,
    *,
    steps: int = 1000,
    lr: float = 1e-3,
    batch_size: int = 128,
    seed: int = 0,
    n: int = 25,
    test: Any = None,
    recalibrate: bool | None = None,
    optimizer: str = "adam",
    mode: str = "eval",
    params: ParamFilter | Iterable[str] | None = None,
    eval_batch_size: int | None = None,
    model: nn.Module | None = None,
    check: bool = True,
) -> Curve:
    """A quadratic Bezier curve between two minima, its bend trained for low loss along it.

    ``phi(t) = (1-t)^2 a + 2t(1-t) c + t^2 b`` between ``a`` and ``b`` (fixed), the bend ``c``
    trained (Garipov et al. 2018).

    ``c`` starts at ``(a + b) / 2``. Each step draws one ``t ~ U(0, 1)`` and one minibatch,
    takes the gradient of the minibatch loss at ``phi(t)`` with respect to ``c`` (torch.func
    through ``functional_call``: any model) and updates ``c`` alone. The curve is then evaluated
    at ``n`` evenly spaced ``t`` as in :func:`linear`. BatchNorm layers normalise with batch
    statistics during training (as when the ends were trained; other modules run in ``mode``),
    and their statistics are recomputed at each evaluated point (``recalibrate=None`` does so
    when the model has BatchNorm; ``False`` interpolates the ends' statistics in ``t``).

    Args:
        model_a: as for :func:`linear`.
        model_b: as for :func:`linear`.
        loss_fn: as for :func:`linear`.
        data: as for :func:`linear`.
        steps: updates of the bend.
        lr: learning rate.
        batch_size: examples a step (tensor data: random, without replacement; a DataLoader:
            its own batches).
        seed: seeds the ``torch.Generator`` of ``t`` and the minibatches.
        n: as for :func:`linear`.
        test: as for :func:`linear`.
        recalibrate: recompute the BatchNorm statistics at each evaluated point (True), or
            interpolate the ends' statistics (False); None: True when the model has BatchNorm
            (and ``mode="eval"``).
        optimizer: ``"adam"`` or ``"sgd"`` (momentum 0.9).
        mode: as for :func:`linear`.
        params: as for :func:`linear`.
        eval_batch_size: batch size of the evaluations.
        model: as for :func:`linear`.
        check: as for :func:`linear`.

    Returns:
        :class:`Curve`: the profile and ``barrier``, the ``bend``, the loss history.

    Raises:
        ValueError: bad options, or as :func:`linear`; a training loss that is not finite.

    Examples:
        >>> c = bezier(model_a, model_b, nn.CrossEntropyLoss(), (X, y), steps=2000)
        >>> c.barrier, linear(model_a, model_b, nn.CrossEntropyLoss(), (X, y)).barrier
    """
    start = time.perf_counter()
    steps, size = (
        _check_int("bezier", "steps", steps, 1),
        _check_int("bezier", "batch_size", batch_size, 1),
    )
    lr, seed = _check_positive("bezier", "lr", lr), _check_int("bezier", "seed", seed)
    _check_choice("bezier", "optimizer", optimizer, OPTIMIZERS)
    n, _ = _check_path("bezier", n, recalibrate is not None and recalibrate, mode)
    ends = _ends(
        "bezier", model_a, model_b, loss_fn, data, test, model, params, mode, eval_batch_size, check
    )
    if ends.obj.group is not None and not (isinstance(data, (tuple, list)) and len(data) == 2):
        raise ValueError(
            "bezier: fitting a curve over torch.distributed ranks needs (inputs, targets) "
            f"tensors (minibatches drawn from the union of the shards), got "
            f"{type(data).__name__}: pass tensors, or run it in one process"
        )
    net, layout = ends.obj.model, ends.obj.layout
    recal = has_batchnorm(net) and mode == "eval" if recalibrate is None else recalibrate
    a, b, size = ends.theta_a, ends.theta_b, min(size, ends.obj.n_examples)
    layers = batchnorm_layers(net)
    own = dict(net.named_buffers())
    scratch = [
        f"{name}.{k}" if name else k
        for name, layer in layers.items()
        for k, _ in layer.named_buffers(recurse=False)
    ]

    def loss_at(c: Tensor, t: Tensor, inputs: Any, targets: Tensor) -> Tensor:
        buffers = {k: own[k].clone() for k in scratch}  # BatchNorm writes its statistics
        return loss_fn(ends.obj.outputs(_bezier(a, c, b, t), inputs, buffers), targets)

    step = grad_and_value(loss_at)
    c = torch.lerp(a, b, 0.5).clone()
    opt = (
        torch.optim.Adam([c], lr=lr)
        if optimizer == "adam"
        else torch.optim.SGD([c], lr=lr, momentum=0.9)
    )
    gen = torch.Generator(device=layout.device).manual_seed(seed)
    acc = torch.promote_types(layout.dtype, torch.float32)
    history, ts = torch.empty((2, steps), dtype=acc, device=layout.device)
    batches = _minibatches(data, size, ends.obj, gen)
    with evaluation(net, mode == "train"):
        for m in layers.values():
            m.training = True  # restored by evaluation()
        for i in range(steps):
            inputs, targets = next(batches)
            t = torch.rand((), generator=gen, device=layout.device, dtype=layout.dtype)
            g, value = step(c, t, inputs, targets)
            c.grad = g
            opt.step()
            history[i], ts[i] = value.detach(), t
    if not bool(torch.isfinite(history).all()) or not bool(torch.isfinite(c).all()):
        first = int((~torch.isfinite(history)).int().argmax())
        raise ValueError(
            f"bezier: the training loss of the bend is not finite (from step "
            f"{first}); expected finite values: lower lr (got {lr})"
        )
    c = c.detach()
    alphas = np.linspace(0.0, 1.0, n)
    points = (_bezier(a, c, b, t) for t in alphas.tolist())
    # _walk makes a Curve for kind "bezier", which its Path return type cannot say
    return cast(
        Curve,
        _walk(
            "bezier",
            ends,
            alphas,
            points,
            recal,
            start,
            extra_passes=steps * size / ends.obj.n_examples,
            bend=to_numpy(c),
            train_loss=history.to("cpu", torch.float64).numpy(),
            train_t=ts.to("cpu", torch.float64).numpy(),
            steps=steps,
            lr=lr,
            batch_size=size,
            seed=seed,
            optimizer=optimizer,
        ),
    )
