"""Sign descent as a ``torch.optim.Optimizer``: steepest descent in the linf norm.

Built by :func:`landscape.train.optim.make_optimizer` for the ``sign_descent`` spec; usable on
its own.

References: Gunasekar et al. 2018 (its implicit bias on separable data); Bernstein et al. 2018
(signSGD).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch

from landscape.train.hyper import _CHECKS

__all__ = ["SignDescent"]


class SignDescent(torch.optim.Optimizer):
    """Sign descent: ``p -= lr * sign(p.grad)`` for every parameter with a gradient, exactly.

    Steepest descent with respect to the linf norm (the unnormalised form: every coordinate
    moves by ``lr`` or, where the gradient is exactly zero, not at all). On separable data with
    the logistic loss its direction goes to the l1 max-margin classifier (Gunasekar et al.
    2018), where gradient descent goes to the l2 one (Soudry et al. 2018). No state.

    Examples:
        >>> opt = SignDescent(model.parameters(), lr=0.01)
        >>> loss = opt.step(closure)
    """

    def __init__(self, params: Iterable[Any], lr: float = 0.01) -> None:
        lr = _CHECKS["lr"]("SignDescent", "lr", lr)
        super().__init__(params, {"lr": lr})

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """One step; ``closure`` (if given) recomputes the loss and gradients first."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    p.add_(torch.sign(p.grad), alpha=-group["lr"])
        return loss
