"""Loss and accuracy of an objective over the whole dataset, in one pass.

The part of :class:`~landscape.engine.objective.Objective` (see :mod:`landscape.engine.parts`)
that gives :meth:`~landscape.engine.objective.Objective.evaluate` (the loss and, where the
targets are classes, the accuracy: :func:`landscape.engine.metrics.correct`) and
:meth:`~landscape.engine.objective.Objective.accuracy`; under ``torch.distributed``, the counts
of correct predictions summed over the ranks.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor

from landscape.engine import distributed as _dist
from landscape.engine.metrics import Metrics, combine, correct, no_accuracy
from landscape.engine.parts import _Part

__all__: list[str] = []


class _Evaluation(_Part):
    """The metrics of :class:`~landscape.engine.objective.Objective` (a part of it)."""

    def evaluate(
        self, theta: Tensor | None = None, buffers: Mapping[str, Tensor] | None = None
    ) -> Metrics:
        """Loss and accuracy over the whole dataset in one pass.

        Accuracy is None where the targets are not classes (see
        :func:`landscape.engine.metrics.correct`); ``buffers`` replaces the model's buffers of those
        names (e.g. recalibrated BatchNorm statistics).
        """
        theta = self.check_theta(theta)
        total = torch.zeros((), dtype=self.accumulator_dtype, device=self.layout.device)
        parts = []
        with torch.no_grad(), self.context():
            for batch in self.batches:
                outputs = self.outputs(theta, batch.inputs, buffers)
                total += batch.weight * self.loss_fn(outputs, batch.targets)
                parts.append(correct(outputs, batch.targets, self.tokens))
        self.add_cost(passes=1, loss_evals=1)
        accuracy = combine(parts)
        if self.group is not None:
            known = [p for p in parts if p is not None]
            counts = [
                float(bool(parts) and len(known) == len(parts)),  # every batch has one
                sum(p[0] for p in known),
                sum(p[1] for p in known),
            ]
            total, summed = _dist.all_reduce(
                total,
                torch.tensor(counts, dtype=torch.float64, device=total.device),
                group=self.group,
            )
            have, hits, counted = summed.tolist()
            accuracy = hits / counted if have == _dist.world_size(self.group) and counted else None
        self.require_finite(total, "at the given theta")
        return Metrics(
            loss=float(total) / self.n_terms,
            accuracy=accuracy,
            n_examples=self.n_examples,
        )

    def accuracy(self, theta: Tensor | None = None) -> float:
        """Fraction of correct predictions over the whole dataset (over tokens for sequences).

        Raises:
            ValueError: the targets are not classes (regression), so there is no accuracy.
        """
        accuracy = self.evaluate(theta).accuracy
        if accuracy is None:
            first = self.batches.first()
            with torch.no_grad(), self.context():
                outputs = self.outputs(self.check_theta(theta), first.inputs)
            raise ValueError(
                "accuracy is defined for logits against class-index, one-hot or binary targets; "
                f"got none: {no_accuracy(outputs, first.targets, self.tokens)}"
            )
        return accuracy
