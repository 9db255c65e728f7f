"""Probes: functions of ``(model, loss_fn, data, ...)`` that measure the landscape through
:class:`landscape.Objective`, never writing into the model.

- :mod:`probes.hessian`: top and bottom eigenvalues (Lanczos with a residual-based stop), trace
  (Hutchinson, Hutch++), spectral density (stochastic Lanczos quadrature), the dense matrix of
  small models; Hessian, GGN or Fisher (:mod:`probes.curvature`).
- :mod:`probes.along`: probes recorded along training (the top eigenvalue, warm-started).
"""

from . import along, blocks, curvature, hessian, spectral

__all__ = ["along", "blocks", "curvature", "hessian", "spectral"]
