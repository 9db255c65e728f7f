"""The outlier-count rule (probes.curvature.outliers) on spectra with known outliers."""

from __future__ import annotations

import numpy as np
import pytest

from probes.curvature.outliers import outlier_count, outliers


def spiked_spectrum(n_outliers: int, *, p: int = 300, n: int = 1200, seed: int = 0) -> np.ndarray:
    """Eigenvalues (descending) of a sample covariance with ``n_outliers`` planted spikes.

    ``X`` is p x n with columns N(0, I + sum_k theta_k u_k u_k^T); the eigenvalues of X X^T / n
    follow Marchenko-Pastur on [(1 - sqrt(g))^2, (1 + sqrt(g))^2], g = p / n, and each spike
    theta_k > sqrt(g) gives an outlier near (1 + theta)(1 + g / theta) (Baik, Ben Arous, Peche).
    """
    rng = np.random.default_rng(seed)
    scale = np.ones(p)
    scale[:n_outliers] = np.sqrt(1 + np.linspace(30.0, 60.0, n_outliers))
    q, _ = np.linalg.qr(rng.standard_normal((p, p)))
    x = q @ (scale[:, None] * rng.standard_normal((p, n)))
    return np.linalg.eigvalsh(x @ x.T / n)[::-1]


@pytest.mark.parametrize("c", [1, 3, 10])
def test_planted_outliers_above_a_marchenko_pastur_bulk(c):
    values = spiked_spectrum(c, seed=c)
    edge = (1 + np.sqrt(300 / 1200)) ** 2
    assert values[c] < edge * 1.1 < values[c - 1]  # the construction does what it says
    r = outliers(values, top=20)
    assert r.count == c
    assert r.ratio > 10 and r.runner_up < r.ratio / 5 and not r.tied and r.m == 20
    assert np.all(r.ratios[c:] < 1.1)  # inside the bulk
    assert outlier_count(values, rule="edge", edge=edge) == c
    assert outlier_count(values, top=30) == c


def test_a_bulk_alone_has_no_outliers():
    values = spiked_spectrum(0)
    r = outliers(values, top=20)
    assert r.count == 0 and 1 < r.ratio < 1.3
    assert outlier_count(values, rule="edge", edge=(1 + np.sqrt(0.25)) ** 2) == 0
    assert outlier_count(np.ones(10)) == 0  # all equal: ratios 1


def test_ties_and_degenerate_outliers():
    # a geometric spectrum: every ratio is the largest; the smallest count, flagged
    r = outliers([8.0, 4.0, 2.0, 1.0], min_ratio=1.5)
    assert r.count == 1 and r.tied
    # three equal outliers stay together (their ratios are 1)
    assert outlier_count([5.0, 5.0, 5.0, 1.0, 0.9, 0.8]) == 3
    # the ratio threshold: a 1.2x step is not a gap by default, is one at min_ratio=1.1
    assert outlier_count([1.2, 1.0, 0.99, 0.98]) == 0
    assert outlier_count([1.2, 1.0, 0.99, 0.98], min_ratio=1.1) == 1


def test_negative_and_zero_eigenvalues_end_the_sequence():
    # an indefinite Hessian: 2 outliers, a positive bulk, then negative eigenvalues
    values = [20.0, 18.0, 2.0, 1.9, 1.8, -0.5, -3.0]
    r = outliers(values)
    assert r.count == 2 and len(r.ratios) == 4  # no ratio across the sign change
    # a single positive eigenvalue: no ratio, no count (nothing to compare it with)
    assert outlier_count([5.0, -1.0, -2.0]) == 0
    assert outlier_count([5.0, 0.0, 0.0]) == 0
    # a floor above zero: eigenvalues at rounding level join the bulk
    values = [9.0, 8.0, 7.0, 6.5, 1e-9, 1e-13]
    assert outlier_count(values, floor=1e-6) == 0
    assert outlier_count(values) == 4  # without it, 6.5 / 1e-9 is the gap
    # a bulk exactly at zero: the ratio rule cannot see it; the edge rule can
    assert outlier_count([5.0, 5.0, 5.0, 0.0, 0.0]) == 0
    assert outlier_count([5.0, 5.0, 5.0, 0.0, 0.0], rule="edge", edge=1e-6) == 3


def test_bad_input_is_one_clear_error():
    with pytest.raises(ValueError, match="descending"):
        outliers([1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="rule"):
        outliers([3.0, 1.0], rule="bulk")
    with pytest.raises(ValueError, match="edge"):
        outliers([3.0, 1.0], rule="edge")
    with pytest.raises(ValueError, match="min_ratio"):
        outliers([3.0, 1.0], min_ratio=1.0)
    with pytest.raises(ValueError, match="finite"):
        outliers([np.nan, 1.0])
    with pytest.raises(ValueError, match="at least one"):
        outliers([])
