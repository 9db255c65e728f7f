"""Curvature of the empirical risk and what is computed from it.

The Hessian, the generalised Gauss-Newton matrix and the Fisher.

- :mod:`~probes.curvature.hessian`: the entry point: eigenvalues, trace, density, the dense
  matrix, of the Hessian, the GGN or the Fisher, whole or per layer;
- :mod:`~probes.curvature.operators`: the three operators as matrix-free products;
- :mod:`~probes.curvature.certify`: how the eigenvalue bounds are made to hold for the exact
  matrix (float32 products' rounding, the float64 check);
- :mod:`~probes.curvature.lanczos`: thick-restart Lanczos with error bounds;
- :mod:`~probes.curvature.three_term`: Lanczos without a stored basis, for eigenvalues alone;
- :mod:`~probes.curvature.trace`: Hutchinson and Hutch++;
- :mod:`~probes.curvature.density`: stochastic Lanczos quadrature;
- :mod:`~probes.curvature.dense`: the dense matrix of a small model;
- :mod:`~probes.curvature.blocks`: per-layer diagonal blocks;
- :mod:`~probes.curvature.outliers`: how many eigenvalues are outliers, by a written rule;
- :mod:`~probes.curvature.class_means`: the top eigenspace against the class-mean gradients
  (Papyan);
- :mod:`~probes.curvature.preconditioned`: Adam's preconditioned sharpness
  ``lambda_max(P^-1 H)`` (Cohen et al. 2022);
- :mod:`~probes.curvature.results`: the result types (NumPy only).

Submodules are imported on first use: reading results needs no torch.
"""

from __future__ import annotations

from landscape.engine.lazy import attach

__all__ = [
    "BlockEigenvalues",
    "ClassMeanOverlap",
    "Density",
    "Eigenvalues",
    "Matrix",
    "Outliers",
    "PreconditionedSharpness",
    "Trace",
    "blocks",
    "certify",
    "class_mean_overlap",
    "class_means",
    "dense",
    "density",
    "hessian",
    "lanczos",
    "operators",
    "outlier_count",
    "outliers",
    "preconditioned",
    "preconditioned_sharpness",
    "results",
    "three_term",
    "trace",
]

__getattr__, __dir__ = attach(
    __name__,
    [
        "blocks",
        "certify",
        "class_means",
        "dense",
        "density",
        "hessian",
        "lanczos",
        "operators",
        "outliers",
        "preconditioned",
        "results",
        "three_term",
        "trace",
    ],
    {
        **{n: "results" for n in ("BlockEigenvalues", "Density", "Eigenvalues", "Matrix", "Trace")},
        "ClassMeanOverlap": "results",
        "class_mean_overlap": "class_means",
        "Outliers": "outliers",
        "outlier_count": "outliers",
        "PreconditionedSharpness": "results",
        "preconditioned_sharpness": "preconditioned",
    },
)
