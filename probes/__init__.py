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
"""

from . import (
    alignment,
    along,
    blocks,
    curvature,
    dense,
    density,
    hessian,
    instability,
    interpolation,
    lanczos,
    trace,
)

__all__ = ["alignment", "along", "blocks", "curvature", "dense", "density", "hessian",
           "instability", "interpolation", "lanczos", "trace"]
