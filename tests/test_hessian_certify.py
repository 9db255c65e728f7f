"""``eigenvalues(certify=...)``: rounding-aware bounds against a dense float64 Hessian.

With ``certify="rounding"`` (the default at ``tol >= 1000 eps``) no float64 copy nor float64
product is made: the residuals of the float32 products are widened by their rounding level, so
the stated bounds must still contain the eigenvalues of the float64 Hessian of the same weights.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from probes.curvature import hessian

from .test_low_precision import case, reference

pytestmark = pytest.mark.usefixtures("one_thread")

CE = nn.CrossEntropyLoss()


@pytest.mark.parametrize("which", ["largest", "both"])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32], ids=str)
@pytest.mark.parametrize("name", ["mlp", "conv"])
def test_rounding_bounds_hold_against_float64(name, dtype, which):
    model, x, y = case(name, dtype, 0)
    truth = reference(model, x, y)
    k = 2
    exact = np.sort(np.concatenate([truth[:k], truth[-k:]]) if which == "both" else truth[-k:])
    for tol in (1e-2, 1e-3):  # "auto" picks "rounding" here
        r = hessian.eigenvalues(model, CE, (x, y), k=k, which=which, tol=tol)
        full = hessian.eigenvalues(model, CE, (x, y), k=k, which=which, tol=tol, certify="float64")
        assert r.certified and r.all_converged, (name, tol, r.errors)
        assert np.all(np.abs(r.values - exact) <= r.errors), (r.values, exact, r.errors)
        scale = np.abs(truth).max()
        assert np.all(np.abs(r.values - exact) <= tol * np.maximum(np.abs(exact), 1e-4 * scale))
        # the float64 check costs one product per pair on top of the same Lanczos run
        assert full.cost.hvp == r.cost.hvp + len(r.values)
        assert np.all(np.abs(full.values - exact) <= full.errors)


def test_auto_keeps_the_float64_check_at_tight_tolerances():
    model, x, y = case("mlp", torch.float32, 1)
    truth = reference(model, x, y)
    r = hessian.eigenvalues(model, CE, (x, y), k=1, tol=1e-6)
    forced = hessian.eigenvalues(model, CE, (x, y), k=1, tol=1e-6, certify="rounding")
    assert r.certified and forced.certified
    assert r.cost.hvp == forced.cost.hvp + 1  # the float64 product
    assert abs(r.values[-1] - truth[-1]) <= r.errors[-1]
    assert abs(forced.values[-1] - truth[-1]) <= forced.errors[-1]
    # below the rounding level of float32 products, the widened bound meets twice that level
    assert forced.all_converged
    floor = hessian.ROUNDING * torch.finfo(torch.float32).eps * abs(truth).max()
    assert forced.errors[-1] <= 2 * floor * (1 + 1e-6)


def test_bad_certify_is_refused():
    model, x, y = case("mlp", torch.float32, 0)
    with pytest.raises(ValueError, match="certify"):
        hessian.eigenvalues(model, CE, (x, y), certify="float16")
