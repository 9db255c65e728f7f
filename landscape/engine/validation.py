"""The checks of an objective's inputs: the first batch, a point, a computed value.

The part of :class:`~landscape.engine.objective.Objective` (see :mod:`landscape.engine.parts`)
that refuses what it cannot evaluate, each in one line naming what was expected and what came:
at construction the model and the loss on the first batch (the model runs on its inputs; the
loss is a finite floating-point scalar; the outputs say whether there is an accuracy), then
every point given
(:meth:`~landscape.engine.objective.Objective.check_theta`) and every value computed
(:meth:`~landscape.engine.objective.Objective.require_finite`, the one message for a NaN).
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils._pytree import tree_flatten

from landscape.engine.batches import Batch, Kwargs
from landscape.engine.losses import MissingLossError
from landscape.engine.metrics import correct
from landscape.engine.parts import _Part

__all__: list[str] = []


def _keywords(model: nn.Module) -> str:
    """The named parameters of ``model.forward``, for a message."""
    try:
        params = inspect.signature(model.forward).parameters.values()
    except (TypeError, ValueError):
        return "arguments that the signature does not say"
    named = [p.name for p in params if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    return ", ".join(named[:8]) + (", ..." if len(named) > 8 else "") if named else "no names"


class _Validation(_Part):
    """The checks of :class:`~landscape.engine.objective.Objective` (a part of it)."""

    def _validate(self, batch: Batch) -> None:
        def shape(obj: Any) -> str:
            if isinstance(obj, Mapping):
                return "{" + ", ".join(f"{k!r}: {shape(v)}" for k, v in obj.items()) + "}"
            leaves, _ = tree_flatten(obj)
            return (
                ", ".join(
                    f"{tuple(t.shape)} {str(t.dtype).removeprefix('torch.')}"
                    for t in leaves
                    if isinstance(t, Tensor)
                )
                or type(obj).__name__
            )

        def failed(what: str, exc: Exception) -> ValueError:
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            return ValueError(f"{what}: {reason}")

        errors = (RuntimeError, ValueError, TypeError, IndexError)
        with torch.no_grad(), self.context():
            try:
                outputs = self.outputs(self.theta, batch.inputs)
            except errors as exc:
                what = f"the model failed on the first batch of inputs {shape(batch.inputs)}"
                if isinstance(batch.inputs, Kwargs):
                    what += f" (its forward takes {_keywords(self.model)})"
                raise failed(what, exc) from exc
            try:
                value = self.loss_fn(outputs, batch.targets)
            except MissingLossError:
                raise
            except errors as exc:
                what = (
                    f"loss_fn failed on outputs {shape(outputs)} and targets {shape(batch.targets)}"
                )
                raise failed(what, exc) from exc
        if not isinstance(value, Tensor) or value.ndim != 0:
            got = tuple(value.shape) if isinstance(value, Tensor) else type(value).__name__
            raise ValueError(
                f"loss_fn must return a scalar (the mean loss of the batch), got {got}; use "
                "reduction='mean'"
            )
        if not value.is_floating_point():
            raise TypeError(f"loss_fn must return a floating-point tensor, got {value.dtype}")
        self.require_finite(value, "at the model's parameters")
        self.has_accuracy = correct(outputs, batch.targets, self.tokens) is not None

    @staticmethod
    def require_finite(value: Tensor, where: str, what: str = "the loss") -> None:
        """Raise ``ValueError`` unless every entry of ``value`` is finite (engine interface).

        The one message for a NaN: "<what> is not finite ... <where>; expected ...".

        Args:
            value: the computed tensor.
            where: e.g. ``"at the given theta"``.
            what: what it is, e.g. ``"the gradient"``.
        """
        if value.is_floating_point() and value.numel() > 1 and bool(value.sum().isfinite()):
            return  # a NaN or an inf makes the sum one too: no mask of P entries needed
        if not bool(torch.isfinite(value).all()):
            shown = f" ({float(value)})" if value.numel() == 1 else ""
            raise ValueError(
                f"{what} is not finite{shown} {where}; expected finite values: check the "
                "data for NaN/inf, the learning rate of the run, or the scale of the parameters"
            )

    def check_theta(self, theta: Tensor | None, what: str = "theta") -> Tensor:
        """``theta`` checked against the layout, detached (engine interface).

        A flat vector of the selected parameters' size, dtype and device, else ``ValueError``
        naming ``what``; ``None`` gives the model's
        :attr:`~landscape.engine.objective.Objective.theta`.

        Args:
            theta: a flat (P,) tensor or None.
            what: its name in the message, e.g. ``"center"``.

        Returns:
            The flat vector to evaluate at.
        """
        if theta is None:
            return self.theta
        self.layout.check(theta, what)
        return theta.detach()
