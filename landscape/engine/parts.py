"""What the parts of :class:`~landscape.engine.objective.Objective` see of the whole.

:class:`~landscape.engine.objective.Objective` is one class assembled from parts, one concept a
module: its state and functional core (:mod:`~landscape.engine.objective`), the checks of its
inputs (:mod:`~landscape.engine.validation`), its Hessian- and Gauss-Newton-vector products
(:mod:`~landscape.engine.products`), its metrics (:mod:`~landscape.engine.evaluate`) and its
per-example gradients (:mod:`~landscape.engine.per_example`). Each part is a base class of it
and uses the objective's attributes and methods as they are; ``_Part``, their common base,
declares them for the type checker (the objective defines them) and holds nothing at run time.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__: list[str] = []

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from contextlib import AbstractContextManager

    import torch
    from torch import Tensor, nn

    from landscape.engine.batches import Batch, Batches
    from landscape.engine.params import ParamLayout
    from landscape.engine.terms import Tokens


class _Part:
    """The objective as its parts use it: declarations only (the objective defines them)."""

    if TYPE_CHECKING:
        model: nn.Module
        loss_fn: Callable[[Any, Any], Tensor]
        layout: ParamLayout
        batches: Batches
        group: Any
        n_examples: int
        n_terms: int
        tokens: Tokens | None
        has_accuracy: bool
        hvp_strategy: str | None
        _fixed: dict[str, nn.Parameter]
        _graphs: tuple[Tensor, tuple[int, ...], list] | None

        @property
        def theta(self) -> Tensor: ...

        @property
        def accumulator_dtype(self) -> torch.dtype: ...

        def context(self) -> AbstractContextManager[None]: ...

        def outputs(
            self, theta: Tensor, inputs: Any, buffers: Mapping[str, Tensor] | None = None
        ) -> Any: ...

        def _f(self, batch: Batch) -> Callable[[Tensor], Tensor]: ...

        def add_cost(self, **kw: float) -> None: ...

        def check_theta(self, theta: Tensor | None, what: str = "theta") -> Tensor: ...

        @staticmethod
        def require_finite(value: Tensor, where: str, what: str = "the loss") -> None: ...
