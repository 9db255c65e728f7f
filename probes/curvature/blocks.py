"""Curvature per layer: the extreme eigenvalues of each diagonal block of the Hessian.

Or of the GGN, the Fisher; one block per module that owns parameters.

The block of a layer is the curvature with respect to that layer's parameters, the others held
fixed: its top eigenvalue says how sharp the loss is along that layer alone (the layer-wise
view of Sagun et al. 2017 and Papyan 2019).

Examples:
    >>> per_layer = hessian.eigenvalues(model, loss_fn, (X, y), k=2, blocks="layer")
    >>> {name: r.values[-1] for name, r in per_layer.blocks.items()}   # top eigenvalue per layer
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from torch import Tensor, nn

from landscape.engine.cost import Cost
from landscape.engine.params import select
from probes.curvature.results import BlockEigenvalues, Eigenvalues

__all__ = ["BlockEigenvalues", "block_eigenvalues", "layer_blocks"]


def layer_blocks(model: nn.Module) -> dict[str, list[str]]:
    """The trainable parameters of ``model`` grouped by the module that owns them, in order.

    For example ``{"layers.0": ["layers.0.weight", "layers.0.bias"], ...}``.
    """
    blocks: dict[str, list[str]] = {}
    for name in select(model):
        owner = name.rsplit(".", 1)[0] if "." in name else ""
        blocks.setdefault(owner, []).append(name)
    return blocks


def block_eigenvalues(
    eigenvalues: Callable[..., Eigenvalues],
    model: nn.Module,
    loss_fn: Callable[[Any, Tensor], Tensor],
    data: Any,
    *,
    blocks: str,
    check: bool,
    **options: Any,
) -> BlockEigenvalues:
    """An eigenvalue probe on each layer's diagonal block.

    What :func:`probes.curvature.hessian.eigenvalues` does with ``blocks="layer"``.

    Args:
        eigenvalues: the probe run on each block (called with ``params=`` the block's
            parameter names), e.g. :func:`probes.curvature.hessian.eigenvalues`.
        model: as for the probe.
        loss_fn: as for the probe.
        data: as for the probe.
        blocks: ``"layer"`` (one block per module that owns parameters).
        check: the objective's determinism check (on the first block only).
        **options: the probe's other options (not ``params`` nor ``v0``).

    Returns:
        :class:`~probes.curvature.results.BlockEigenvalues`: the result of each block and the
        total cost (products and passes summed, the whole wall time).

    Raises:
        ValueError: ``blocks`` other than ``"layer"``, ``params`` or ``v0`` given.
    """
    if blocks != "layer":
        raise ValueError(f"eigenvalues: blocks must be None or 'layer', got {blocks!r}")
    if options.pop("params", None) is not None:
        raise ValueError("eigenvalues: give either params or blocks='layer', not both")
    if options.get("v0") is not None:
        raise ValueError("eigenvalues: v0 (a warm start) is not supported with blocks='layer'")
    start = time.perf_counter()
    results = {}
    for i, (owner, names) in enumerate(layer_blocks(model).items()):
        results[owner or "(root)"] = eigenvalues(
            model, loss_fn, data, params=names, check=check and i == 0, **options
        )
    total = sum((r.cost for r in results.values()), Cost())
    return BlockEigenvalues(results, total.with_seconds(time.perf_counter() - start))
