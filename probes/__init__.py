"""Probes: functions of ``(model, loss_fn, data, *, ...)`` that measure the landscape.

They measure through :class:`landscape.engine.Objective`, never writing into the model, each
returning a frozen result with its options and its cost.

Four families, one subpackage each:

- :mod:`probes.curvature`: Hessian, GGN and Fisher operators; top and bottom eigenvalues
  (thick-restart Lanczos with an error-bound stop), trace (Hutchinson, Hutch++), spectral
  density (stochastic Lanczos quadrature), dense matrices of small models, per-layer blocks.
  The entry point is :mod:`probes.curvature.hessian` (also ``probes.hessian``).
- :mod:`probes.sharpness`: worst-case (l2/linf, adaptive, m-sharpness) and average-case
  sharpness, Keskar's epsilon-sharpness, PAC-Bayes flatness.
- :mod:`probes.implicit_bias`: norms, margins, weight spectra, gradient noise, the ground-truth
  solutions of implicit-bias results and a model's distance to them; every measure at once
  (:func:`probes.implicit_bias.measures`).
- :mod:`probes.paths`: linear paths and barriers, trained Bezier curves, weight matching,
  the instability of forked training (:mod:`probes.paths.interpolation`, also
  ``probes.interpolation``).

:mod:`probes.along` holds the probes recorded along training. Everything is imported on first
use: the result types (``results`` modules) need NumPy only.
"""

from __future__ import annotations

from landscape.engine.lazy import attach

__all__ = [
    "along",
    "curvature",
    "ground_truth",
    "hessian",
    "implicit_bias",
    "interpolation",
    "paths",
    "sharpness",
]

__getattr__, __dir__ = attach(
    __name__,
    [
        "along",
        "curvature",
        "implicit_bias",
        "paths",
        "sharpness",
        "hessian:probes.curvature.hessian",
        "interpolation:probes.paths.interpolation",
        "ground_truth:probes.implicit_bias.ground_truth",
    ],
)
