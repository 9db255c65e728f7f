r"""How :func:`~probes.curvature.hessian.eigenvalues` makes its bounds hold for the exact matrix.

Products of float16 and bfloat16 models are computed in float32 on a copy
(:mod:`probes.curvature.operators`), and the Lanczos basis is kept in at least float32. Products
in float32 are themselves off by up to about ``eps_fp32 ||H||``, which a residual computed from
them cannot see (a float32 run stated 5e-14 where it was 1.2e-8 off). How the bounds are made
to hold for the exact Hessian is ``certify`` (:data:`CERTIFY`). At ``tol >= 1000 eps``
(1.2e-4 for float32 products; ``certify="auto"``, the default) the bounds allow for products
off by their rounding level ``e = 10 eps max|theta|``: ``min(r + e, (r + 2e)^2 / gap + e)``,
the stop included (``"rounding"``): at most 1% of what ``tol`` allows, it costs no product
and no copy of the model. At tighter ``tol``, or with ``certify="float64"``, unless the
products are already float64 the returned pairs are checked with one block product in float64,
on a float64 copy of the model: each value is the Rayleigh quotient ``y^T H y`` of its Ritz vector
``y``, and the residual ``||H y - value y||`` and the bound ``min(r, r^2 / gap)`` come from the
float64 product, so they bound the distance to an eigenvalue of the exact Hessian rather than
of its rounded products (``certified`` in the result). Measured against a dense float64 Hessian
at the same weights (tests/test_low_precision.py; MLPs, a BatchNorm conv net and a Conv2d net;
the top 3 and 3 from each end; 3 seeds): bfloat16, float16 and float32 models alike within
``4e-7 ||H||``, every error at most 0.7 of its stated bound, every bound below
``1.2e-6 ||H||``. Before, a bfloat16 run was 30% off with ``converged=True``. The widened
bounds of ``"rounding"`` hold against the same references (tests/test_hessian_certify.py); on an
HF ResNet of 0.9M parameters at ``tol=1e-3`` the float64 check had taken more time than the
Lanczos run itself (a float64 copy, its graph and a float64 product). Should the model
not run in float64, the bound instead adds the rounding level ``10 eps max|theta|`` of the
products (measured error of float32 products: below ``1 eps ||H||``), ``certified`` is False
and ``converged`` is judged on the computed products.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["CERTIFY", "ROUNDING", "resolve", "thresholds"]

CERTIFY = ("auto", "float64", "rounding")
"""How :func:`~probes.curvature.hessian.eigenvalues` certifies float32 (and float16, bfloat16)
results: ``"float64"``, one block product on a float64 copy of the model; ``"rounding"``, no
extra product, the residuals widened by the rounding level of the products; ``"auto"``
(:func:`resolve`), ``"rounding"`` when that level is at most 1% of ``tol`` (``tol >= 1000 eps``,
1.2e-4 for float32 products), else ``"float64"``."""
ROUNDING = 10.0
"""The rounding level of float32 (or float64) curvature products, in units of ``eps max|theta|``
(measured: below 1, tests/test_low_precision.py)."""


def resolve(tol: float, dtype: torch.dtype) -> str:
    """What ``certify="auto"`` means at ``tol`` for products in ``dtype``.

    ``"rounding"`` when the widening is at most 1% of ``tol`` (``tol >= 100 * ROUNDING * eps``),
    else ``"float64"``.
    """
    eps = float(torch.finfo(dtype).eps)
    return "rounding" if tol >= 100 * ROUNDING * eps else "float64"


def thresholds(
    values: np.ndarray, tol: float, dtype: torch.dtype, widened: bool = False
) -> np.ndarray:
    """What each value's error bound must meet: ``tol * max(|value|, tau)``.

    ``tau`` is the level below which a value is zero up to the products' rounding
    (``ROUNDING * eps * max|values| / tol``, twice that for ``widened`` bounds, which include
    the rounding level already).
    """
    eps = torch.finfo(dtype).eps if dtype.is_floating_point else np.finfo(np.float64).eps
    scale = float(np.max(np.abs(values))) if len(values) else 0.0
    floor = (2 if widened else 1) * ROUNDING * eps * scale  # zero up to rounding
    tiny = max(floor / tol, np.finfo(np.float64).tiny)
    return tol * np.maximum(np.abs(values), tiny)
