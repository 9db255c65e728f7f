"""probes.implicit_bias.ground_truth: max margins, alignment, factorisations, diagonal networks."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
import torch
from sklearn.svm import SVC
from torch import nn

from landscape.models import (
    DeepMatrixFactorization,
    DiagonalLinearNetwork,
    Linear,
    SymmetricFactorization,
)
from landscape.store.file import Store
from probes.implicit_bias.ground_truth import (
    Diagonal,
    DirectionAlignment,
    Factorization,
    Interpolator,
    MaxMargin,
    alignment,
    diagonal,
    factorization,
    max_margin,
    min_norm_interpolator,
)

pytestmark = pytest.mark.usefixtures("one_thread")


def blobs(n=60, d=5, seed=0):
    """Two Gaussian blobs at +-mu, separable through the origin (points near it dropped)."""
    rng = np.random.default_rng(seed)
    mu = rng.normal(size=d)
    mu *= 2 / np.linalg.norm(mu)
    y = np.where(rng.random(n) < 0.5, 1.0, -1.0)
    x = y[:, None] * mu + rng.normal(size=(n, d))
    keep = y * (x @ mu) > 0.5
    return x[keep], y[keep]


def unit(w):
    return w / np.linalg.norm(w)


# --------------------------------------------------------------------------- max margin


def test_l2_without_bias_matches_svc_on_symmetrised_data():
    # SVC always fits an intercept; on data closed under (x, y) -> (-x, -y) it is 0 and the
    # max-margin problem is the bias-free one of the original data.
    x, y = blobs()
    mm = max_margin(x, y)
    svc = SVC(kernel="linear", C=1e8, tol=1e-8).fit(np.vstack([x, -x]), np.r_[y, -y])
    w = svc.coef_[0]
    assert abs(svc.intercept_[0]) < 1e-6
    assert unit(w) @ mm.direction > 1 - 1e-6
    assert mm.margin == pytest.approx(1 / np.linalg.norm(w), rel=1e-6)
    assert mm.solver == "nnls-ldp" and mm.norm == "l2" and not mm.bias and mm.intercept == 0.0
    assert np.linalg.norm(mm.direction) == pytest.approx(1.0)
    functional = y * (x @ mm.weights)
    assert functional.min() == pytest.approx(1.0, abs=1e-9)
    np.testing.assert_array_equal(mm.support, np.flatnonzero(functional < 1 + 1e-6))
    assert mm.support.dtype == np.int64


def test_l2_with_bias_matches_svc():
    x, y = blobs(seed=1)
    x = x + np.array([3.0, -1.0, 0.0, 2.0, 0.5])  # an offset that needs the intercept
    mm = max_margin(x, y, bias=True)
    svc = SVC(kernel="linear", C=1e8, tol=1e-8).fit(x, y)
    w = svc.coef_[0]
    assert unit(w) @ mm.direction > 1 - 1e-6
    assert mm.margin == pytest.approx(1 / np.linalg.norm(w), rel=1e-6)
    assert mm.intercept == pytest.approx(svc.intercept_[0], rel=1e-5, abs=1e-6)
    assert set(mm.support.tolist()) == set(svc.support_.tolist())
    assert mm.solver == "slsqp" and mm.bias


def test_hand_checkable_2d():
    # Constraints: 2 w1 + w2 >= 1, 3 w1 + 3 w2 >= 1, 2 w1 + 0.5 w2 >= 1.
    # l1: ||w||_1 >= (2|w1| + |w2|) / 2 >= 1/2 with equality only at w = (1/2, 0): rows 0, 2 tight.
    # l2: the projection onto row 2 alone, (2, 0.5) / 4.25 = (8/17, 2/17), satisfies the others.
    x = np.array([[2.0, 1.0], [3.0, 3.0], [-2.0, -0.5]])
    y = np.array([1, 1, -1])
    l1 = max_margin(x, y, norm="l1")
    np.testing.assert_allclose(l1.weights, [0.5, 0.0], atol=1e-9)
    np.testing.assert_allclose(l1.direction, [1.0, 0.0], atol=1e-9)
    assert l1.margin == pytest.approx(2.0) and l1.support.tolist() == [0, 2]
    assert l1.solver == "highs"
    l2 = max_margin(x, y, norm="l2")
    np.testing.assert_allclose(l2.weights, [8 / 17, 2 / 17], atol=1e-12)
    assert l2.margin == pytest.approx(math.sqrt(17) / 2) and l2.support.tolist() == [2]


def test_l1_is_optimal_among_feasible_points():
    x, y = blobs(n=40, d=6, seed=2)
    l1, l2 = max_margin(x, y, norm="l1"), max_margin(x, y, norm="l2")
    assert (y * (x @ l1.weights)).min() >= 1 - 1e-8
    best = np.abs(l1.weights).sum()
    assert l1.margin == pytest.approx(1 / best)
    rng = np.random.default_rng(0)
    w = rng.normal(size=(2000, 6)) + l1.weights / np.linalg.norm(l1.weights)
    w = w[(y * (w @ x.T)).min(1) > 0]  # separating ones ...
    w /= (y * (w @ x.T)).min(1, keepdims=True)  # ... scaled to be feasible, tight
    assert len(w) > 100
    assert np.abs(w).sum(1).min() >= best - 1e-9
    # Each solution is optimal in its own norm, not in the other one.
    assert np.abs(l2.weights).sum() >= best - 1e-9
    assert np.linalg.norm(l1.weights) >= np.linalg.norm(l2.weights) - 1e-9
    assert l1.direction @ l2.direction < 1 - 1e-3


def test_inputs_any_dtype_and_label_coding():
    x, y = blobs(seed=3)
    want = max_margin(x, y)
    got = max_margin(torch.tensor(x, dtype=torch.float32), torch.tensor((y > 0)[:, None]).long())
    assert got.direction.dtype == np.float64
    assert got.direction @ want.direction > 1 - 1e-6
    images = max_margin(x.reshape(len(x), 5, 1), y)  # (N, ...) is flattened
    np.testing.assert_allclose(images.weights, want.weights)


def test_non_separable_data_refused():
    x = np.array([[1.0, 1.0], [-1.0, -1.0], [1.0, -1.0], [-1.0, 1.0]])
    y = np.array([1, 1, -1, -1])  # XOR
    for norm in ("l2", "l1"):
        for bias in (False, True):
            with pytest.raises(ValueError, match="max_margin: the data are not linearly"):
                max_margin(x, y, norm=norm, bias=bias)
    # Separable with an intercept only.
    x, y = np.array([[1.0], [2.0], [3.0]]), np.array([-1, 1, 1])
    with pytest.raises(ValueError, match="not linearly separable through the origin"):
        max_margin(x, y)
    mm = max_margin(x, y, bias=True)
    assert mm.weights[0] == pytest.approx(2.0) and mm.intercept == pytest.approx(-3.0)


def test_bad_arguments():
    x, y = blobs()
    with pytest.raises(
        ValueError, match="max_margin: norm must be one of 'l2', 'l1', 'linf', got 'l3'"
    ):
        max_margin(x, y, norm="l3")
    with pytest.raises(ValueError, match="max_margin: y must hold binary labels"):
        max_margin(x, np.arange(len(x)) % 3)
    with pytest.raises(ValueError, match="max_margin: bias must be a bool, got 1"):
        max_margin(x, y, bias=1)
    with pytest.raises(ValueError, match=r"max_margin: y must have shape \(\d+,\)"):
        max_margin(x, y[:-1])
    with pytest.raises(ValueError, match="max_margin: x must be finite"):
        max_margin(np.where(x > 2, np.nan, x), y)
    with pytest.raises(ValueError, match="both classes when bias=True"):
        max_margin(x, np.ones(len(x)), bias=True)
    with pytest.raises(ValueError, match="min_norm_interpolator: norm must be one of"):
        min_norm_interpolator(x, y, norm="linf")


# --------------------------------------------------------------------------- alignment


def test_alignment_of_the_solution_is_one_and_scale_invariant():
    x, y = blobs(seed=4)
    for norm in ("l2", "l1"):
        mm = max_margin(x, y, norm=norm)
        a = alignment(7.0 * mm.weights, x, y, norm=norm)
        assert a.cosine == pytest.approx(1.0, abs=1e-12) and a.direction_error < 1e-6
        assert a.margin == pytest.approx(mm.margin, rel=1e-7) and a.max_margin == mm.margin
        assert a.weight_norm == pytest.approx(7.0 * np.linalg.norm(mm.weights))
    w = max_margin(x, y).direction + np.random.default_rng(0).normal(scale=0.3, size=5)
    a, b = alignment(w, x, y), alignment(torch.tensor(3.5 * w, dtype=torch.float32), x, y)
    assert b.cosine == pytest.approx(a.cosine, abs=1e-6) and a.cosine < 1 - 1e-3
    assert b.direction_error == pytest.approx(a.direction_error, abs=1e-6)
    assert a.direction_error == pytest.approx(math.sqrt(2 - 2 * a.cosine))
    assert b.margin == pytest.approx(a.margin, rel=1e-6) and a.margin < a.max_margin
    assert b.weight_norm == pytest.approx(3.5 * a.weight_norm, rel=1e-6)


def test_alignment_of_models():
    x, y = blobs(seed=5)
    mm = max_margin(x, y)
    for model in (nn.Linear(5, 1, bias=False), Linear(5, 1, bias=False)):
        with torch.no_grad():
            next(model.parameters()).copy_(torch.tensor(2.0 * mm.weights))
        a = alignment(model.double(), x, y, reference=mm)
        assert a.cosine == pytest.approx(1.0, abs=1e-12)
    with pytest.raises(ValueError, match=r"exactly one parameter .* got weight \(1, 5\), bias"):
        alignment(nn.Linear(5, 1), x, y)
    with pytest.raises(ValueError, match="must map to a single output"):
        alignment(nn.Linear(5, 2, bias=False), x, y)
    with pytest.raises(ValueError, match="reference must be a bias-free MaxMargin in norm 'l1'"):
        alignment(mm.weights, x, y, norm="l1", reference=mm)
    with pytest.raises(ValueError, match="w must not be zero"):
        alignment(np.zeros(5), x, y)


def test_gradient_descent_goes_to_the_l2_direction():
    # Soudry et al. 2018, small: full-batch GD, logistic loss, bias-free linear model, from 0.
    x, y = blobs(seed=0)
    mm = max_margin(x, y)
    xt, yt = torch.tensor(x), torch.tensor(y)
    lr = 1.0 / (np.linalg.norm(x, 2) ** 2 / (4 * len(x)))  # 1 / smoothness
    w = torch.zeros(5, dtype=torch.float64)
    out = {}
    with torch.no_grad():
        for step in range(1, 10_001):
            w += lr * xt.T @ (yt * torch.sigmoid(-yt * (xt @ w))) / len(x)
            if step in (100, 1_000, 10_000):
                out[step] = alignment(w, x, y, reference=mm)
    err = [out[s].direction_error for s in (100, 1_000, 10_000)]
    assert err[0] > err[1] > err[2]
    assert out[100].margin < out[1_000].margin < out[10_000].margin < mm.margin
    assert out[100].weight_norm < out[1_000].weight_norm < out[10_000].weight_norm


# --------------------------------------------------------------------------- factorisations


def test_factorization_closed_forms():
    f = factorization(torch.eye(4))
    assert f.nuclear_norm == pytest.approx(4.0) and f.effective_rank == pytest.approx(4.0)
    assert f.numerical_rank == 4 and f.spectral_norm == pytest.approx(1.0)
    u, v = np.array([1.0, 2.0, 2.0]), np.array([3.0, 0.0, 4.0, 0.0])
    f = factorization(np.outer(u, v))
    assert f.nuclear_norm == pytest.approx(15.0) and f.effective_rank == pytest.approx(1.0)
    assert f.numerical_rank == 1
    f = factorization(np.zeros((3, 3)))
    assert (f.nuclear_norm, f.numerical_rank) == (0.0, 0) and np.isnan(f.effective_rank)


def test_factorization_against_numpy_and_models():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(6, 3)) @ rng.normal(size=(3, 5))  # rank 3
    f = factorization(a)
    s = np.linalg.svd(a, compute_uv=False)
    np.testing.assert_allclose(f.singular_values, s)
    assert f.nuclear_norm == pytest.approx(np.linalg.norm(a, "nuc"))
    assert f.numerical_rank == np.linalg.matrix_rank(a) == 3
    p = s / s.sum()
    assert f.effective_rank == pytest.approx(np.exp(-np.sum(p * np.log(p + 1e-300))))
    assert factorization(a.astype(np.float32)).numerical_rank == 3  # float32's eps
    assert factorization(a, tol=1e6).numerical_rank == 0

    torch.manual_seed(0)
    deep = DeepMatrixFactorization(5, depth=3, init="gaussian", init_scale=1.0).double()
    w1, w2, w3 = (p.detach().numpy() for p in deep.factors)
    np.testing.assert_allclose(factorization(deep).matrix, w3 @ w2 @ w1)
    sym = SymmetricFactorization(4, init="gaussian", init_scale=1.0, rank=2).double()
    u = sym.U.detach().numpy()
    f = factorization(sym)
    np.testing.assert_allclose(f.matrix, u @ u.T)
    assert f.numerical_rank == 2
    with pytest.raises(TypeError, match="factorization: the model must have a matrix"):
        factorization(nn.Linear(2, 2))


def test_diagonal_effective_weights():
    net = DiagonalLinearNetwork(3).double()
    with torch.no_grad():
        net.u.copy_(torch.tensor([1.0, 2.0, 0.5]))
        net.v.copy_(torch.tensor([0.0, 3.0, 0.5]))
    d = diagonal(net)
    np.testing.assert_allclose(d.beta, [1.0, -5.0, 0.0])  # u^2 - v^2
    assert (d.l1_norm, d.depth) == (6.0, 2) and d.l2_norm == pytest.approx(math.sqrt(26))
    d3 = diagonal((torch.tensor([1.0, 2.0]), np.array([0.5, 1.0])), depth=3)
    np.testing.assert_allclose(d3.beta, [1 - 0.125, 7.0])
    assert d3.depth == 3
    with pytest.raises(TypeError, match="diagonal: expected a model with a beta"):
        diagonal(nn.Linear(2, 1))


def test_min_norm_interpolators():
    rng = np.random.default_rng(0)
    n, d = 20, 40
    x = rng.normal(size=(n, d))
    truth = np.zeros(d)
    truth[[3, 17, 29]] = [1.5, -2.0, 0.7]
    y = x @ truth
    l1 = min_norm_interpolator(torch.tensor(x), torch.tensor(y), norm="l1")
    np.testing.assert_allclose(l1.beta, truth, atol=1e-7)  # basis pursuit recovers
    assert l1.solver == "highs" and l1.residual < 1e-7
    l2 = min_norm_interpolator(x, y)
    np.testing.assert_allclose(l2.beta, np.linalg.pinv(x) @ y)
    assert l2.l2_norm <= l1.l2_norm and l1.l1_norm <= l2.l1_norm
    assert np.sum(np.abs(l2.beta) > 1e-3) > 3  # dense
    with pytest.raises(ValueError, match="min_norm_interpolator: no interpolator"):
        min_norm_interpolator(rng.normal(size=(30, 5)), rng.normal(size=30))
    with pytest.raises(ValueError, match="min_norm_interpolator: no interpolator"):
        min_norm_interpolator(rng.normal(size=(30, 5)), rng.normal(size=30), norm="l1")


# --------------------------------------------------------------------------- records


def _same(a, b):
    assert type(a) is type(b)
    for f in dataclasses.fields(a):
        va, vb = getattr(a, f.name), getattr(b, f.name)
        if isinstance(va, np.ndarray):
            assert va.dtype == vb.dtype and np.array_equal(va, vb), f.name
        else:
            assert va == vb and type(va) is type(vb), f.name


def test_records_round_trip(tmp_path):
    x, y = blobs(seed=6)
    results = {
        "max_margin": max_margin(x, y, norm="l1", bias=True),
        "alignment": alignment(np.ones(5), x, y),
        "factorization": factorization(np.eye(3)),
        "diagonal": diagonal((np.ones(3), np.zeros(3))),
        "min_norm_interpolator": min_norm_interpolator(x[:3], y[:3], norm="l1"),
    }
    with Store(tmp_path / "gt.h5", "w") as store:
        for name, result in results.items():
            arrays, attrs = result.to_record()
            assert attrs["probe"] == f"ground_truth.{name}"
            json.dumps(attrs)
            assert type(result).from_record((arrays, attrs)) is not result
            _same(type(result).from_record((arrays, attrs)), result)
            store.write_record(None, "probes", name, arrays=arrays, attrs=attrs)
    with Store(tmp_path / "gt.h5") as store:
        for name, result in results.items():
            _same(type(result).from_record(store.record(None, "probes", name)), result)
    none_depth = dataclasses.replace(results["diagonal"], depth=None)
    _same(Diagonal.from_record(none_depth.to_record()), none_depth)
    arrays, attrs = results["alignment"].to_record()
    with pytest.raises(ValueError, match="MaxMargin.from_record: the record holds probe"):
        MaxMargin.from_record((arrays, attrs))
    assert {DirectionAlignment, Factorization, Interpolator} <= {type(r) for r in results.values()}
