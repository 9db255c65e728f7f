"""The gradient of each example's loss, over the whole dataset of an objective.

The part of :class:`~landscape.engine.objective.Objective` (see :mod:`landscape.engine.parts`)
that gives :meth:`~landscape.engine.objective.Objective.per_example_grads`: the examples'
gradients in blocks, under ``torch.func.vmap``, or one example after the other for a model that
``vmap`` cannot batch.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from torch import Tensor
from torch.func import grad, vmap
from torch.utils._pytree import tree_map

from landscape.engine.parts import _Part

__all__: list[str] = []


class _PerExample(_Part):
    """The per-example gradients of :class:`~landscape.engine.objective.Objective` (a part)."""

    def per_example_grads(
        self, theta: Tensor | None = None, *, chunk_size: int = 256
    ) -> Iterator[Tensor]:
        """Yield the gradients of each example's loss in blocks of at most ``chunk_size`` rows.

        The blocks are (m, P) each, in data order.

        Each example's loss is ``loss_fn`` on a batch of one, so their mean is
        :meth:`~landscape.engine.objective.Objective.grad` when every example is one term (with
        ``terms`` counting tokens, the gradient is their mean weighted by each example's
        terms). In train mode BatchNorm has no per-example meaning; use ``mode="eval"``. Under
        ``vmap``, or one example after the other for a model that ``vmap`` cannot batch
        (data-dependent control flow, as in ``transformers``' attention masks).

        Under ``torch.distributed``, the examples of this rank's shard only: a statistic of
        them is summed over the ranks by the caller.
        """
        theta = self.check_theta(theta)
        if not isinstance(chunk_size, int) or chunk_size < 1:
            raise ValueError(f"chunk_size must be a positive int, got {chunk_size!r}")

        def single(t: Tensor, inputs: Any, target: Any) -> Tensor:
            inputs = tree_map(lambda x: x.unsqueeze(0), inputs)
            target = tree_map(lambda x: x.unsqueeze(0), target)
            return self.loss_fn(self.outputs(t, inputs), target)

        per_example = vmap(grad(single), in_dims=(None, 0, 0))

        def looped(t: Tensor, inputs: Any, targets: Any, m: int) -> Tensor:
            return torch.stack(
                [
                    grad(single)(t, *tree_map(lambda x, j=j: x[j], (inputs, targets)))
                    for j in range(m)
                ]
            )

        loop = False
        for batch in self.batches:
            for i in range(0, batch.n, chunk_size):
                inputs = tree_map(lambda x, i=i: x[i : i + chunk_size], batch.inputs)
                with self.context():
                    targets = tree_map(lambda x, i=i: x[i : i + chunk_size], batch.targets)
                    if not loop:
                        try:
                            block = per_example(theta, inputs, targets)
                        except RuntimeError as exc:
                            if "vmap" not in str(exc):
                                raise
                            loop = True  # this model cannot be batched: one at a time
                    if loop:
                        block = looped(theta, inputs, targets, min(chunk_size, batch.n - i))
                yield block
            self.add_cost(passes=1 / self.batches.n_batches)
