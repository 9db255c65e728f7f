"""Probes: functions of ``(model, loss_fn, data, ...)`` that measure the landscape through
:class:`landscape.Objective`, never writing into the model.

- :mod:`probes.hessian`: top and bottom eigenvalues (thick-restart Lanczos with an error-bound
  stop, :mod:`probes.lanczos`), trace (Hutchinson, Hutch++: :mod:`probes.trace`), spectral
  density (stochastic Lanczos quadrature: :mod:`probes.density`), the dense matrix of small
  models (:mod:`probes.dense`); Hessian, GGN or Fisher (:mod:`probes.curvature`), per layer
  (:mod:`probes.blocks`).
- :mod:`probes.along`: probes recorded along training (the top eigenvalue, warm-started).
- :mod:`probes.interpolation`: linear paths and loss barriers, init-to-final paths, trained
  Bezier curves (mode connectivity), permutation alignment (:mod:`probes.alignment`), and the
  instability of forked training (:mod:`probes.instability`).
- :mod:`probes.ground_truth`: the solutions implicit-bias results are measured against (and
  :mod:`probes.recovery`: how close a trained model is to them):
  l2/l1 max-margin directions and a classifier's alignment with them, nuclear norm and effective
  rank of a factorisation, diagonal-network weights and minimum-norm interpolators.
- :mod:`probes.implicit_bias`: all the measures below and the sharpness ones at once
  (:func:`probes.implicit_bias.measures`), named for ranking against the generalisation gap:
  per-layer norms, distance from initialisation, path-norm and Fisher-Rao norm
  (:mod:`probes.norms`); output margins normalised by the spectral complexity
  (:mod:`probes.margins`); singular values, effective and stable rank and the power-law alpha
  of the weights (:mod:`probes.weight_spectra`); the per-example gradient covariance's trace
  and the simple noise scale (:mod:`probes.gradient_noise`).
- :mod:`probes.sharpness`: worst-case (l2/linf, adaptive, m-sharpness:
  :mod:`probes.worst_case`) and average-case sharpness (:mod:`probes.average_case`), Keskar's
  epsilon-sharpness and PAC-Bayes flatness (:mod:`probes.flatness`).
"""

from . import (
    alignment,
    along,
    average_case,
    blocks,
    curvature,
    dense,
    density,
    flatness,
    gradient_noise,
    ground_truth,
    hessian,
    implicit_bias,
    instability,
    interpolation,
    lanczos,
    margins,
    norms,
    recovery,
    sharpness,
    trace,
    weight_spectra,
    worst_case,
)

__all__ = ["alignment", "along", "average_case", "blocks", "curvature", "dense", "density",
           "flatness", "gradient_noise", "ground_truth", "hessian", "implicit_bias",
           "instability", "interpolation", "lanczos", "margins", "norms", "recovery", "sharpness",
           "trace", "weight_spectra", "worst_case"]
