"""Curvature of the empirical risk and what is computed from it.

The Hessian, the generalised Gauss-Newton matrix and the Fisher.

- :mod:`~probes.curvature.hessian`: the entry point: eigenvalues, trace, density, the dense
  matrix, of the Hessian, the GGN or the Fisher, whole or per layer;
- :mod:`~probes.curvature.operators`: the three operators as matrix-free products;
- :mod:`~probes.curvature.lanczos`: thick-restart Lanczos with error bounds;
- :mod:`~probes.curvature.trace`: Hutchinson and Hutch++;
- :mod:`~probes.curvature.density`: stochastic Lanczos quadrature;
- :mod:`~probes.curvature.dense`: the dense matrix of a small model;
- :mod:`~probes.curvature.blocks`: per-layer diagonal blocks;
- :mod:`~probes.curvature.results`: the result types (NumPy only).

Submodules are imported on first use: reading results needs no torch.
"""

from __future__ import annotations

from landscape.engine.lazy import attach

__all__ = [
    "BlockEigenvalues",
    "Density",
    "Eigenvalues",
    "Matrix",
    "Trace",
    "blocks",
    "dense",
    "density",
    "hessian",
    "lanczos",
    "operators",
    "results",
    "trace",
]

__getattr__, __dir__ = attach(
    __name__,
    ["blocks", "dense", "density", "hessian", "lanczos", "operators", "results", "trace"],
    {name: "results" for name in ("BlockEigenvalues", "Density", "Eigenvalues", "Matrix", "Trace")},
)
