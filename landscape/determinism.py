"""The determinism check: is the objective a function of the parameters?

Two passes over the data at the same parameters must give the same loss and gradient up to
rounding. They do not when the data change between passes (a shuffling loader with
``drop_last=True``, a sampler with replacement, random augmentation) or when the model is
random (dropout or BatchNorm in train mode on changing batches). With size-weighted batches,
a shuffling loader *without* ``drop_last`` passes: the mean is the same up to rounding.

Tolerance: 100 units in the last place of the size-weighted mean of |loss_b| and ||grad_b||,
the scale that rounding errors of a reordered sum are relative to.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

import torch
from torch import Tensor
from torch.utils._pytree import tree_flatten

from .batches import Batch

if TYPE_CHECKING:
    from .objective import Objective

__all__ = ["DeterminismError", "check"]


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


def check(obj: Objective) -> None:
    """Raise :class:`DeterminismError` (naming the likely cause) unless two passes of
    ``obj`` at the model's parameters agree, the second reading the data source anew."""
    theta, sums = obj.theta, []
    l1, g1, (n1, ls, gs) = obj._loss_grad_pass(theta, _checksum(iter(obj.batches), sums), True)
    obj._finite(l1, "at the model's parameters")
    obj._finite(g1, "at the model's parameters", "the gradient")
    l2, g2, (n2, _, _) = obj._loss_grad_pass(theta, _checksum(obj.batches.fresh_pass(), sums))
    rtol = 100 * torch.finfo(obj.layout.dtype).eps
    if n1 != n2:
        problem = f"the number of examples changed between two passes ({n1} vs {n2})"
    elif abs(float(l1 - l2)) > rtol * ls + 1e-300 or float((g1 - g2).norm()) > rtol * gs:
        problem = (
            f"loss {float(l1):.10g} vs {float(l2):.10g}, gradient difference "
            f"{float((g1 - g2).norm()):.3g} (norm {float(g1.norm()):.3g})"
        )
    else:
        return
    data_changed = n1 != n2 or not math.isclose(sums[0], sums[1], rel_tol=1e-9, abs_tol=1e-9)
    causes = (
        "the data differ between passes: a shuffling loader with drop_last=True, a sampler "
        "that draws with replacement, or random augmentation in the dataset"
        if data_changed
        else "the model is random: dropout in train mode, BatchNorm in train mode on "
        "batches that change between passes (a shuffling loader), or another random layer"
        if obj.mode == "train"
        else "the model is random in eval mode (a layer that samples noise, or a forward "
        "that switches modules to train mode)"
    )
    raise DeterminismError(
        f"two evaluations at the same parameters disagree ({problem}); likely cause: "
        f"{causes}. Make the data and model deterministic (eval mode, no augmentation, "
        "drop_last=False), or pass check=False to accept a random objective."
    )
