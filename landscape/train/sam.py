"""Sharpness-aware minimisation as a ``torch.optim.Optimizer`` around any base optimizer.

Built by :func:`landscape.train.optim.make_optimizer` for the ``sam`` spec; usable on its own.

References: Foret et al. 2021 (SAM); Kwon et al. 2021 (ASAM).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

__all__ = ["SAM"]


class SAM(torch.optim.Optimizer):
    """Sharpness-aware minimisation (Foret et al. 2021) around a base optimizer; ASAM if adaptive.

    ``step(closure)`` evaluates the closure at w (its loss is returned), moves the parameters in
    place to w + e, evaluates the closure again, restores w exactly (saved values are copied
    back), then lets the base optimizer step with the gradient taken at w + e:

    - SAM: e = rho g / ||g||, the norm over all parameters together (global l2).
    - ASAM (``adaptive=True``, Kwon et al. 2021): e = rho T^2 g / ||T g||, T = |w| + eta
      elementwise, for every parameter, biases included. ASAM's published code
      (SamsungLabs/ASAM) leaves biases out of T (they get T = 1); this one does not.

    A zero gradient gives no perturbation (e = 0). ``param_groups`` and ``state`` are those of
    the base, so ``LambdaLR`` on a SAM schedules the base's lr; ``rho``, ``adaptive`` and
    ``eta`` are entries of each param group. Computation follows the parameters' device and dtype.

    Args:
        base: the base optimizer, built on the parameters (not a SAM); SAM shares its param
            groups and state.
        rho: radius of the perturbation.
        adaptive: ASAM.
        eta: ASAM's offset in T.

    Examples:
        >>> opt = SAM(torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9), rho=0.1)
        >>> loss = opt.step(closure)
        >>> # or by name: make_optimizer(optimizer_spec("sam", base="momentum", rho=0.1), params)
    """

    def __init__(
        self,
        base: torch.optim.Optimizer,
        rho: float = 0.05,
        adaptive: bool = False,
        eta: float = 0.01,
    ) -> None:
        if not isinstance(base, torch.optim.Optimizer) or isinstance(base, SAM):
            raise TypeError(
                "SAM: base must be a built torch optimizer other than SAM (e.g. "
                "torch.optim.SGD(model.parameters(), lr=0.1)), got "
                f"{type(base).__name__}"
            )
        for name, value, low in (("rho", rho, 0.0), ("eta", eta, 0.0)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < low:
                raise ValueError(f"SAM: {name} must be a number >= {low}, got {value!r}")
        if not isinstance(adaptive, bool):
            raise TypeError(f"SAM: adaptive must be True or False, got {adaptive!r}")
        super().__init__(
            base.param_groups, {"rho": float(rho), "adaptive": adaptive, "eta": float(eta)}
        )
        self.base = base
        self.param_groups, self.state = self.base.param_groups, self.base.state
        self.defaults.update(self.base.defaults)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load the base optimizer's state (SAM itself keeps none between steps)."""
        self.base.load_state_dict(state_dict)
        self.param_groups, self.state = self.base.param_groups, self.base.state

    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """One update: the base optimizer steps with the gradient at ``w + e`` (class docstring).

        Args:
            closure: zeroes the gradients, computes the loss, calls backward and returns the
                loss; SAM calls it twice (at the parameters and at the perturbed point).

        Returns:
            The loss at the parameters before the update (the first call's).

        Raises:
            TypeError: no closure.
        """
        if closure is None:
            raise TypeError(
                "SAM.step: closure is required (it zeroes the gradients, computes "
                "the loss, calls backward and returns the loss), got None"
            )
        with torch.enable_grad():
            loss = closure()
        with torch.no_grad():
            groups = [
                (g, [p for p in g["params"] if p.grad is not None]) for g in self.param_groups
            ]
            scaled = [
                (p.abs() + g["eta"]) if g["adaptive"] else None for g, ps in groups for p in ps
            ]
            params = [p for _, ps in groups for p in ps]
            norms = [
                torch.linalg.vector_norm(p.grad if t is None else t * p.grad)
                for p, t in zip(params, scaled, strict=True)
            ]
            saved = [p.detach().clone() for p in params]
            if norms:
                norm = torch.linalg.vector_norm(torch.stack([n.to(norms[0].device) for n in norms]))
                # 1/||g||, or 0 for a zero gradient; no host sync
                inv = torch.where(norm > 0, 1 / norm, torch.zeros_like(norm))
                rhos = [g["rho"] for g, ps in groups for _ in ps]
                for p, t, r in zip(params, scaled, rhos, strict=True):
                    e = p.grad if t is None else t * t * p.grad
                    p.add_(e * (r * inv.to(p.device, p.dtype)))
        with torch.enable_grad():
            closure()
        with torch.no_grad():
            for p, w in zip(params, saved, strict=True):
                p.copy_(w)
        self.base.step()
        return loss
