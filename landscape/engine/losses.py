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

from collections.abc import Callable, Mapping
from typing import Any

import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "LOSSES",
    "Logistic",
    "MissingLossError",
    "SquaredError",
    "describe",
    "get",
    "model_loss",
    "uses_model_loss",
]


class MissingLossError(TypeError):
    """``loss_fn="model"`` on outputs that hold no loss."""


def model_loss(outputs: Any, batch: Any = None) -> Tensor:
    """The model's own loss: ``outputs.loss`` or ``outputs["loss"]`` (``loss_fn="model"``).

    Args:
        outputs: what the model returned (e.g. a ``ModelOutput`` given ``labels``).
        batch: the batch (unused).

    Returns:
        The loss tensor.

    Raises:
        MissingLossError: the outputs have no loss.
    """
    loss = outputs.get("loss") if isinstance(outputs, Mapping) else getattr(outputs, "loss", None)
    if not isinstance(loss, Tensor):
        raise MissingLossError(
            f"loss_fn='model' needs outputs with a 'loss' field, got {type(outputs).__name__}"
        )
    return loss


def uses_model_loss(loss_fn: Any) -> bool:
    """Whether ``loss_fn`` is the model's own loss, also under a wrapper's ``loss_fn``."""
    seen = 0
    while loss_fn is not None and seen < 8:
        if loss_fn is model_loss:
            return True
        loss_fn, seen = getattr(loss_fn, "loss_fn", None), seen + 1
    return False


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
