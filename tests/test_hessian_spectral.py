"""Trace (Hutchinson, Hutch++) and spectral density (SLQ) against dense float64 references.

The density by stochastic Lanczos quadrature (SLQ); the references are the Hessian of small zoo
models, and explicit matrices with a known spectrum for the estimators' statistics.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from landscape.store.file import Store
from probes.curvature import density as slq
from probes.curvature import trace as hutch

from .test_objective import Reference
from .zoo import make

CE = nn.CrossEntropyLoss()
SEEDS = range(20)


class MatrixOperator:
    """A CurvatureOperator-like wrapper of an explicit symmetric matrix, counting products."""

    def __init__(self, matrix: torch.Tensor) -> None:
        self.matrix = matrix
        self.n_products, self.passes, self.seconds = 0, 0.0, 0.0

    size = property(lambda self: self.matrix.shape[0])
    dtype = property(lambda self: self.matrix.dtype)
    device = property(lambda self: self.matrix.device)

    def matvec(self, v: torch.Tensor) -> torch.Tensor:
        self.n_products += v.shape[0] if v.ndim == 2 else 1
        self.passes += 1
        return v @ self.matrix


def with_spectrum(eigenvalues: np.ndarray, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    p = len(eigenvalues)
    q = torch.linalg.qr(torch.randn(p, p, generator=gen, dtype=torch.float64))[0]
    a = q @ torch.diag(torch.as_tensor(eigenvalues, dtype=torch.float64)) @ q.T
    return (a + a.T) / 2


def outliers(p: int = 300, n_out: int = 10) -> torch.Tensor:
    """PSD: a bulk in [0, 1] and a few large outliers, like a trained network's Hessian."""
    rng = np.random.default_rng(1)
    ev = np.concatenate([rng.uniform(50, 100, n_out), rng.uniform(0, 1, p - n_out)])
    return with_spectrum(ev)


@pytest.fixture(scope="module")
def mlp():
    model, x, y = make("mlp", n=20)
    ref = Reference(model, x, y)
    return model, x, y, ref.hessian(), ref.ggn()


# ----------------------------------------------------------------------------- trace


@pytest.mark.parametrize("method", hutch.METHODS)
def test_trace_within_three_stderr_of_dense_trace(mlp, method):
    model, x, y, hessian, _ = mlp
    truth = float(torch.trace(hessian))
    hits = 0
    for seed in SEEDS:
        tr = hutch.trace(model, CE, (x, y), method=method, n_products=30, seed=seed)
        assert tr.cost.hvp == 30 and tr.method == method and tr.seed == seed
        hits += abs(tr.value - truth) <= 3 * tr.stderr
    assert hits >= 0.9 * len(SEEDS), (method, hits)


def test_hutchpp_with_full_sketch_is_exact(mlp):
    model, x, y, hessian, _ = mlp
    p = hessian.shape[0]
    tr = hutch.trace(model, CE, (x, y), method="hutch++", n_products=3 * p)
    assert tr.sketch == p and tr.cost.hvp == 3 * p
    assert tr.value == pytest.approx(float(torch.trace(hessian)), abs=1e-10)
    assert tr.stderr < 1e-10


def test_ggn_trace(mlp):
    model, x, y, _, ggn = mlp
    tr = hutch.trace(model, CE, (x, y), curvature="ggn", method="hutch++", n_products=60)
    assert tr.curvature == "ggn"
    assert abs(tr.value - float(torch.trace(ggn))) <= 4 * tr.stderr


@pytest.mark.parametrize("method", hutch.METHODS)
def test_trace_statistics_on_known_spectrum(method):
    matrix = outliers()
    truth = float(torch.trace(matrix))
    hits = 0
    for seed in SEEDS:
        tr = hutch.estimate_trace(MatrixOperator(matrix), method=method, n_products=45, seed=seed)
        hits += abs(tr.value - truth) <= 3 * tr.stderr
    assert hits >= 0.9 * len(SEEDS), (method, hits)


def test_hutchpp_beats_hutchinson_with_outliers():
    matrix = outliers()
    truth = float(torch.trace(matrix))
    err = {}
    for method in hutch.METHODS:
        err[method] = (
            np.mean(
                [
                    abs(
                        hutch.estimate_trace(
                            MatrixOperator(matrix), method=method, n_products=60, seed=s
                        ).value
                        - truth
                    )
                    for s in SEEDS
                ]
            )
            / truth
        )
    # measured: Hutchinson 4.2e-2, Hutch++ 1.4e-3 relative (n_products=60, P=300, 10 outliers)
    assert err["hutch++"] < 0.2 * err["hutchinson"], err


@pytest.mark.parametrize("method", hutch.METHODS)
def test_target_stderr_is_met_and_products_counted(method):
    target = 2.0 if method == "hutch++" else 40.0  # per-probe std: ~10 deflated, ~350 not
    op = MatrixOperator(outliers())
    tr = hutch.estimate_trace(op, method=method, target_stderr=target, seed=3)
    assert tr.converged and tr.stderr <= target and tr.n_probes >= hutch.MIN_PROBES
    assert tr.cost.hvp == op.n_products == tr.n_probes + 2 * tr.sketch
    assert len(tr.samples) == tr.n_probes
    # a cap it cannot meet: stops at the cap and says so
    op = MatrixOperator(outliers())
    tr = hutch.estimate_trace(op, method=method, target_stderr=1e-9, n_products=40)
    assert not tr.converged and tr.cost.hvp == op.n_products == 40


def test_target_stderr_on_model(mlp):
    model, x, y, hessian, _ = mlp
    tr = hutch.trace(model, CE, (x, y), method="hutch++", target_stderr=0.05)
    assert tr.converged and tr.stderr <= 0.05 and tr.cost.hvp == tr.n_probes + 2 * tr.sketch


def test_fixed_budget_counts(mlp):
    model, x, y, _, _ = mlp
    for method in hutch.METHODS:
        tr = hutch.trace(model, CE, (x, y), method=method, n_products=50)
        assert tr.cost.hvp == 50 and tr.cost.passes > 0 and tr.cost.seconds > 0
    tr = hutch.trace(model, CE, (x, y), method="hutch++", n_products=50)
    assert tr.sketch == 16 and tr.n_probes == 18 and len(tr.samples) == 18
    assert hutch.trace(model, CE, (x, y), method="hutchinson").cost.hvp == 100


# ----------------------------------------------------------------------------- density


def test_density_integrates_to_one_and_moments_match(mlp):
    model, x, y, hessian, _ = mlp
    p = hessian.shape[0]
    esd = slq.density(model, CE, (x, y), n_vectors=30, steps=12, seed=1)
    assert esd.grid.shape == esd.density.shape == (1000,)
    assert np.trapezoid(esd.density, esd.grid) == pytest.approx(1.0, abs=1e-12)
    assert esd.nodes.shape == esd.weights.shape == (30, 12)
    np.testing.assert_allclose(esd.weights.sum(1), 1.0, atol=1e-12)
    assert esd.cost.hvp == 30 * 12 and esd.n_params == p
    for k, truth in ((1, float(torch.trace(hessian)) / p), (2, float((hessian**2).sum()) / p)):
        per = esd.moments(k)
        se = per.std(ddof=1) / math.sqrt(len(per))
        assert abs(esd.moment(k) - truth) <= 3 * se, (k, esd.moment(k), truth, se)


def test_density_moments_unbiased_on_known_spectrum():
    matrix = outliers(p=120, n_out=4)
    p = matrix.shape[0]
    esd = slq.estimate_density(MatrixOperator(matrix), n_vectors=200, steps=6)
    for k in (1, 2, 3):
        truth = float(torch.trace(torch.linalg.matrix_power(matrix, k))) / p
        per = esd.moments(k)
        assert abs(per.mean() - truth) <= 3 * per.std(ddof=1) / math.sqrt(len(per)), k


def test_full_lanczos_finds_exact_eigenvalues(mlp):
    model, x, y, hessian, _ = mlp
    p = hessian.shape[0]
    eig = torch.linalg.eigvalsh(hessian).numpy()
    esd = slq.density(model, CE, (x, y), n_vectors=2, steps=p + 50, seed=4)
    assert esd.steps == p
    for nodes, weights in zip(esd.nodes, esd.weights, strict=True):
        found = nodes[weights > 1e-12]
        assert np.abs(found[:, None] - eig[None]).min(1).max() < 1e-8
        # every eigenvalue that carries weight is found (the Hessian has a few repeated ones)
        assert len(found) >= len(np.unique(np.round(eig, 6))) - 10


def test_known_spectrum_full_lanczos_stops_at_invariant_subspace():
    matrix = with_spectrum(np.repeat([1.0, 2.0, 5.0], 10))  # 3 distinct eigenvalues
    esd = slq.estimate_density(MatrixOperator(matrix), n_vectors=3, steps=30)
    assert esd.cost.hvp == 3 * 3
    np.testing.assert_allclose(esd.nodes[:, :3], [[1.0, 2.0, 5.0]] * 3, atol=1e-10)
    assert np.isnan(esd.nodes[:, 3:]).all() and (esd.weights[:, 3:] == 0).all()
    assert esd.moment(1) == pytest.approx(np.mean(esd.weights[:, :3] @ [1, 2, 5]))


def test_ggn_density_is_nonnegative(mlp):
    model, x, y, _, ggn = mlp
    esd = slq.density(model, CE, (x, y), curvature="ggn", n_vectors=3, steps=30)
    assert esd.cost.ggn_vp > 0 and esd.cost.hvp == 0  # GGN products are counted apart
    scale = float(torch.linalg.eigvalsh(ggn).abs().max())
    assert np.nanmin(esd.nodes) >= -1e-10 * scale
    assert esd.curvature == "ggn"


def test_user_grid_and_width(mlp):
    model, x, y, _, _ = mlp
    grid = np.linspace(-1, 1, 11)
    esd = slq.density(model, CE, (x, y), n_vectors=2, steps=5, grid=grid, width=0.1)
    np.testing.assert_array_equal(esd.grid, grid)
    assert esd.width == 0.1 and esd.density.shape == (11,)


def test_probes_leave_the_model_unchanged():
    model, x, y = make("cnn_bn", n=12)
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    hutch.trace(model, CE, (x, y), n_products=12)
    slq.density(model, CE, (x, y), n_vectors=2, steps=5)
    assert model.training and all(m.training for m in model.modules())
    after = model.state_dict()
    assert before.keys() == after.keys()
    for k, v in before.items():
        assert torch.equal(v, after[k]), k


def test_results_round_trip_through_store(mlp, tmp_path):
    model, x, y, _, _ = mlp
    tr = hutch.trace(model, CE, (x, y), n_products=20, target_stderr=None)
    tr2 = hutch.trace(model, CE, (x, y), method="hutchinson", target_stderr=0.5)
    esd = slq.density(model, CE, (x, y), n_vectors=2, steps=8)
    padded = slq.estimate_density(  # stops early: NaN nodes after the third step
        MatrixOperator(with_spectrum(np.repeat([1.0, 2.0, 5.0], 4))), n_vectors=2, steps=10
    )
    assert np.isnan(padded.nodes).any()
    results = (tr, tr2, esd, padded)
    names = ("trace", "trace2", "density", "padded")
    with Store(tmp_path / "x.h5", "a") as store:
        for name, result in zip(names, results, strict=True):
            arrays, attrs = result.to_record()
            store.write_record(None, "probes", name, arrays=arrays, attrs=attrs)
    with Store(tmp_path / "x.h5", "r") as store:
        back = [
            type(r).from_record(store.record(None, "probes", n))
            for n, r in zip(names, results, strict=True)
        ]
    for original, copy in zip(results, back, strict=True):
        assert type(copy) is type(original)
        for field in original.__dataclass_fields__:
            a, b = getattr(original, field), getattr(copy, field)
            if isinstance(a, np.ndarray):
                np.testing.assert_array_equal(a, b)
                assert a.dtype == b.dtype and a.shape == b.shape
            else:
                assert a == b or (a != a and b != b), field
    with pytest.raises(ValueError, match="hessian.density"):
        hutch.Trace.from_record(esd.to_record())


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"method": "lanczos"}, "method must be one of"),
        ({"n_products": 1, "method": "hutchinson"}, "n_products must be an int >= 2"),
        ({"n_products": 3, "method": "hutch++"}, "n_products must be an int >= 4"),
        ({"n_products": 10.5}, "n_products must be an int"),
        ({"target_stderr": -1.0}, "target_stderr must be a finite number > 0"),
        ({"target_stderr": float("nan")}, "target_stderr"),
        ({"seed": -1}, "seed must be an int"),
        ({"curvature": "bogus"}, "curvature must be one of"),
    ],
)
def test_trace_rejects_bad_arguments(mlp, kwargs, match):
    model, x, y, _, _ = mlp
    with pytest.raises(ValueError, match=match):
        hutch.trace(model, CE, (x, y), **kwargs)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"n_vectors": 0}, "n_vectors must be an int >= 1"),
        ({"steps": 0}, "steps must be an int >= 1"),
        ({"width": 0.0}, "width must be a finite number > 0"),
        ({"n_grid": 1}, "n_grid must be an int >= 2"),
        ({"grid": [1.0, 0.0]}, "grid must be a 1-D, finite, strictly increasing"),
        ({"grid": np.zeros((2, 2))}, "grid must be"),
        ({"seed": "a"}, "seed must be an int"),
        ({"curvature": "bogus"}, "curvature must be one of"),
    ],
)
def test_density_rejects_bad_arguments(mlp, kwargs, match):
    model, x, y, _, _ = mlp
    with pytest.raises(ValueError, match=match):
        slq.density(model, CE, (x, y), **kwargs)


def test_moment_rejects_bad_order(mlp):
    model, x, y, _, _ = mlp
    esd = slq.density(model, CE, (x, y), n_vectors=1, steps=3)
    with pytest.raises(ValueError, match="k must be an int >= 0"):
        esd.moment(-1)
