"""Curvature per layer: the extreme eigenvalues of each diagonal block of the Hessian (or GGN,
Fisher), one block per module that owns parameters.

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
from dataclasses import dataclass
from typing import Any

import numpy as np
from torch import Tensor, nn

from landscape.engine.params import select

from probes.curvature.operators import check_record

__all__ = ["BlockEigenvalues", "layer_blocks"]


def layer_blocks(model: nn.Module) -> dict[str, list[str]]:
    """The trainable parameters of ``model`` grouped by the module that owns them, in order:
    ``{"layers.0": ["layers.0.weight", "layers.0.bias"], ...}``."""
    blocks: dict[str, list[str]] = {}
    for name in select(model):
        owner = name.rsplit(".", 1)[0] if "." in name else ""
        blocks.setdefault(owner, []).append(name)
    return blocks


@dataclass(frozen=True, eq=False)
class BlockEigenvalues:
    """One :class:`~probes.curvature.hessian.Eigenvalues` per block, by block name (the owning module's
    name), with the total cost."""

    blocks: dict[str, Any]
    n_hvp: int
    seconds: float

    def to_record(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """Arrays ``<i>_values``, ``<i>_residuals``, ``<i>_converged`` per block i, and the
        blocks' names and options as attributes."""
        arrays: dict[str, np.ndarray] = {}
        per_block = []
        for i, (name, r) in enumerate(self.blocks.items()):
            a, attrs = r.to_record()
            arrays.update({f"{i}_{key}": value for key, value in a.items()})
            per_block.append({"block": name, **attrs})
        return arrays, {"probe": "hessian.eigenvalues.blocks", "blocks": per_block,
                        "n_hvp": self.n_hvp, "seconds": float(self.seconds)}

    @classmethod
    def from_record(cls, record: Any) -> BlockEigenvalues:
        """The result written by :meth:`to_record`, from a :class:`landscape.store.Record`."""
        from probes.curvature.hessian import Eigenvalues

        arrays, at = check_record(record, "hessian.eigenvalues.blocks",
                                  "BlockEigenvalues.from_record")
        blocks = {}
        for i, attrs in enumerate(at["blocks"]):
            mine = {key.split("_", 1)[1]: value for key, value in arrays.items()
                    if key.split("_", 1)[0] == str(i)}
            blocks[attrs["block"]] = Eigenvalues.from_record(
                (mine, {k: v for k, v in attrs.items() if k != "block"}))
        return cls(blocks, int(at["n_hvp"]), float(at["seconds"]))


def block_eigenvalues(eigenvalues: Callable[..., Any], model: nn.Module,
                      loss_fn: Callable[[Any, Tensor], Tensor], data: Any, *, blocks: str,
                      check: bool, **options: Any) -> BlockEigenvalues:
    """:func:`probes.curvature.hessian.eigenvalues` on each layer's block (``blocks="layer"``)."""
    if blocks != "layer":
        raise ValueError(f"eigenvalues: blocks must be None or 'layer', got {blocks!r}")
    if options.pop("params", None) is not None:
        raise ValueError("eigenvalues: give either params or blocks='layer', not both")
    if options.get("v0") is not None:
        raise ValueError("eigenvalues: v0 (a warm start) is not supported with blocks='layer'")
    start = time.perf_counter()
    results = {}
    for i, (owner, names) in enumerate(layer_blocks(model).items()):
        results[owner or "(root)"] = eigenvalues(model, loss_fn, data, params=names,
                                                  check=check and i == 0, **options)
    return BlockEigenvalues(results, sum(r.n_hvp for r in results.values()),
                            time.perf_counter() - start)
