"""What a computation spent: passes over the data, evaluations, products, seconds.

:class:`Cost` is what an :class:`~landscape.engine.objective.Objective` counts and what every
probe result reports as its ``cost`` field, with the same counter names everywhere
(``result.cost.hvp``, ``result.cost.passes``, ``result.cost.seconds``, ...). NumPy-free and
torch-free: a result read back from a file carries one too.

Examples:
    >>> spent = Cost(passes=2.0, grad_evals=1) + Cost(hvp=5, seconds=0.5)
    >>> spent.hvp, spent.passes
    (5, 2.0)
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any

__all__ = ["Cost"]


@dataclass(frozen=True)
class Cost:
    """What a computation has spent.

    Attributes:
        passes: passes over the whole data (a pass over one batch of ``B`` counts ``B / N``
            where the objective can tell).
        loss_evals: evaluations of the mean loss at a point, over the whole data.
        grad_evals: evaluations of the gradient of the mean loss at a point.
        hvp: Hessian-vector products (a block of k vectors counts k).
        ggn_vp: generalised Gauss-Newton (or Fisher) vector products.
        seconds: wall time.
    """

    passes: float = 0.0
    loss_evals: int = 0
    grad_evals: int = 0
    hvp: int = 0
    ggn_vp: int = 0
    seconds: float = 0.0

    def __sub__(self, other: Cost) -> Cost:
        return Cost(*(getattr(self, f.name) - getattr(other, f.name) for f in fields(self)))

    def __add__(self, other: Cost) -> Cost:
        return Cost(*(getattr(self, f.name) + getattr(other, f.name) for f in fields(self)))

    def as_dict(self) -> dict[str, float]:
        """The counters by name (JSON-ready)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def with_seconds(self, seconds: float) -> Cost:
        """The same counts with ``seconds`` replaced (e.g. by a probe's whole wall time)."""
        return replace(self, seconds=float(seconds))

    @classmethod
    def of(cls, values: Any) -> Cost:
        """A :class:`Cost` from a mapping of counters (unknown keys ignored, missing ones 0).

        Args:
            values: a ``Cost`` or a mapping such as :meth:`as_dict` gives.

        Returns:
            The :class:`Cost`.
        """
        if isinstance(values, Cost):
            return values
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in dict(values).items() if k in names})
