"""The determinism check: is the objective a function of the parameters?

Two passes over the data at the same parameters must give the same outputs and loss up to
rounding (forward passes only: the gradient is a deterministic function of the forward
computation, so it agrees whenever they do). Two sums that do not depend on the order of the
batches are compared: the size-weighted loss and the sum of squares of all outputs. They
differ when the data change between passes (a shuffling loader with ``drop_last=True``, a
sampler with replacement, random augmentation) or when the model is random (dropout or
BatchNorm in train mode on changing batches). With size-weighted batches,
a shuffling loader *without* ``drop_last`` passes: the mean is the same up to rounding.

Tolerance: 100 units in the last place of the size-weighted mean of |loss_b| and of the sum
of squares itself, the scale that rounding errors of a reordered sum are relative to.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor
from torch.utils._pytree import tree_flatten

from landscape.engine.batches import Batch
from landscape.engine.metrics import logits_of

if TYPE_CHECKING:
    from landscape.engine.objective import Objective

__all__ = ["DeterminismError", "check", "check_source"]


class DeterminismError(ValueError):
    """Two evaluations at the same point disagreed: the objective is not a function."""


def _checksum(batches: Iterable[Batch], sums: list[float]) -> Iterator[Batch]:
    """Pass the batches through, appending the sum of all their entries to ``sums``."""
    total = 0.0
    for batch in batches:
        leaves, _ = tree_flatten((batch.inputs, batch.targets))
        total += sum(
            float(t.sum(dtype=torch.float64 if t.device.type != "mps" else None))
            for t in leaves
            if isinstance(t, Tensor)
        )
        yield batch
    sums.append(total)


def _squares(outputs: Any) -> float:
    """The sum of squares of every floating-point tensor in the outputs (of any structure)."""
    if isinstance(outputs, Tensor):
        return float(outputs.detach().double().square().sum())
    leaves, _ = tree_flatten(outputs)
    if len(leaves) == 1 and not isinstance(leaves[0], Tensor):  # an object pytree cannot open
        logits = logits_of(outputs)
        leaves = [] if logits is None else [logits]
    return sum(
        float(t.detach().double().square().sum())
        for t in leaves
        if isinstance(t, Tensor) and t.is_floating_point()
    )


def _forward_pass(obj: Objective, batches: Iterable[Batch]) -> tuple[float, float, float, int]:
    """Loss sum, its scale, sum of squared outputs and example count of one forward pass.

    The term-weighted mean loss, its scale (mean of t_b |loss_b|), the sum of squared outputs and
    the number of examples of one pass at the model's parameters, forward only.
    """
    theta = obj.theta
    loss = scale = squares = 0.0
    n = terms = 0
    with torch.no_grad(), obj.context():
        for batch in batches:
            out = obj.outputs(theta, batch.inputs)
            value = obj.loss_fn(out, batch.targets)
            obj.require_finite(value, "at the model's parameters")
            loss += batch.weight * float(value)
            scale += batch.weight * abs(float(value))
            squares += _squares(out)
            n += batch.n
            terms += batch.weight
    obj.add_cost(passes=1, loss_evals=1)
    return loss / max(terms, 1), scale / max(terms, 1), squares, n


_DATA_CAUSE = (
    "the data differ between passes: a shuffling loader with drop_last=True, a "
    "sampler that draws with replacement, or random augmentation in the dataset"
)


def _fail(problem: str, cause: str) -> DeterminismError:
    return DeterminismError(
        f"two evaluations at the same parameters disagree ({problem}); likely cause: "
        f"{cause}. Make the data and model deterministic (eval mode, no augmentation, "
        "drop_last=False), or pass check=False to accept a random objective."
    )


def check(obj: Objective) -> None:
    """Raise :class:`DeterminismError` unless two forward passes of ``obj`` agree.

    Both passes are at the model's parameters, the second reading the data source anew; the error
    names the likely cause.
    """
    sums: list[float] = []
    l1, ls, q1, n1 = _forward_pass(obj, _checksum(iter(obj.batches), sums))
    l2, _, q2, n2 = _forward_pass(obj, _checksum(obj.batches.fresh_pass(), sums))
    rtol = 100 * torch.finfo(obj.layout.dtype).eps
    if n1 != n2:
        problem = f"the number of examples changed between two passes ({n1} vs {n2})"
    elif abs(l1 - l2) > rtol * ls + 1e-300 or abs(q1 - q2) > rtol * abs(q1) + 1e-300:
        problem = f"loss {l1:.10g} vs {l2:.10g}, sum of squared outputs {q1:.10g} vs {q2:.10g}"
    else:
        return
    data_changed = n1 != n2 or not math.isclose(sums[0], sums[1], rel_tol=1e-9, abs_tol=1e-9)
    raise _fail(
        problem,
        _DATA_CAUSE
        if data_changed
        else "the model is random: dropout in train mode, BatchNorm in train mode on "
        "batches that change between passes (a shuffling loader), or another random "
        "layer"
        if obj.mode == "train"
        else "the model is random in eval mode (a layer that samples noise, or a forward "
        "that switches modules to train mode)",
    )


def check_source(obj: Objective) -> None:
    """The data half of :func:`check`, without the model.

    Raise :class:`DeterminismError` unless reading ``obj``'s data source anew gives the examples it
    holds (the same number and sum of entries). For an objective evaluated on a cached copy of a
    loader's data, whose model is checked on that copy.
    """
    sums: list[float] = []
    n1 = sum(b.n for b in _checksum(iter(obj.batches), sums))
    n2 = sum(b.n for b in _checksum(obj.batches.fresh_pass(), sums))
    if n1 != n2:
        raise _fail(
            f"the number of examples changed between two passes ({n1} vs {n2})", _DATA_CAUSE
        )
    if not math.isclose(sums[0], sums[1], rel_tol=1e-9, abs_tol=1e-9):
        raise _fail(f"the sum of the data was {sums[0]:.10g}, then {sums[1]:.10g}", _DATA_CAUSE)
