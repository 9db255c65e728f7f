"""Losses by name, so that a run stored as JSON can say which loss it was trained on.

Every loss returns the *mean over examples* of a batch, as :class:`landscape.Objective`
expects.

- ``"cross_entropy"``: :class:`torch.nn.CrossEntropyLoss` on class labels.
- ``"mse"``: half the squared error summed over outputs, averaged over examples; class labels
  are compared with their one-hot vectors (the convention of Cohen et al. 2021,
  locuslab/edge-of-stability). Float targets are used as they are.
- ``"logistic"``: binary logistic loss ``log(1 + exp(-s f(x)))`` with ``s = 2y - 1`` for a
  single output and labels in {0, 1} (Soudry et al. 2018).

Examples:
    >>> loss_fn = get("mse")
    >>> loss_fn(torch.zeros(4, 3), torch.tensor([0, 1, 2, 0]))   # 0.5 * 1 per example
    tensor(0.5000)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["LOSSES", "Logistic", "SquaredError", "describe", "get"]


class SquaredError(nn.Module):
    """``0.5 * sum_k (f_k(x) - t_k)^2`` averaged over examples; class labels become one-hot."""

    def forward(self, outputs: Tensor, targets: Tensor) -> Tensor:
        """The mean loss of a batch: ``outputs`` (N, K), ``targets`` (N, K) or class labels (N,)."""
        if not targets.is_floating_point():
            if outputs.ndim != 2:
                raise ValueError(
                    f"mse: class labels need outputs of shape (N, classes), got "
                    f"{tuple(outputs.shape)}"
                )
            targets = F.one_hot(targets.long(), outputs.shape[1]).to(outputs.dtype)
        if targets.shape != outputs.shape:
            targets = targets.reshape(outputs.shape)
        return 0.5 * (outputs - targets).pow(2).reshape(len(outputs), -1).sum(1).mean()


class Logistic(nn.Module):
    """Binary logistic loss on one output per example; labels in {0, 1}."""

    def forward(self, outputs: Tensor, targets: Tensor) -> Tensor:
        """The mean loss of a batch: one output per example, ``targets`` in {0, 1}."""
        margin = outputs.reshape(len(outputs)) * (2 * targets.to(outputs.dtype) - 1)
        return F.softplus(-margin).mean()


LOSSES: dict[str, Callable[[], nn.Module]] = {
    "cross_entropy": nn.CrossEntropyLoss,
    "mse": SquaredError,
    "logistic": Logistic,
}
"""Loss name -> class; :func:`get` builds one."""


def get(loss: str | Callable[[Any, Tensor], Tensor]) -> Callable[[Any, Tensor], Tensor]:
    """The loss called ``loss`` (a key of ``LOSSES``), or ``loss`` itself if it is callable.

    Raises:
        ValueError: an unknown name (the message lists the known ones).
    """
    if callable(loss):
        return loss
    key = str(loss).lower().replace("-", "_")
    if key not in LOSSES:
        raise ValueError(f"loss: unknown loss {loss!r}; known: {', '.join(LOSSES)}")
    return LOSSES[key]()


def describe(loss: Any) -> str:
    """The name under which a loss is stored: its ``LOSSES`` key, else its class name."""
    if isinstance(loss, str):
        return str(loss).lower().replace("-", "_")
    for name, cls in LOSSES.items():
        if type(loss) is cls:
            return name
    return getattr(loss, "__qualname__", type(loss).__qualname__)
