"""The ground-truth additions of issue 8.

The linf max margin, the sparse-regression dataset, the probes ``margin_alignment`` and
``interpolator_distances`` and the ``max_margin`` callback along training, and their sweep entries.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from landscape import data, models
from landscape.store.file import Store
from landscape.sweep.measure import along_callback
from landscape.sweep.spec import loads
from landscape.train.fit import TrainConfig, fit
from probes.along import max_margin_alignment
from probes.implicit_bias.ground_truth import alignment, max_margin, min_norm_interpolator
from probes.implicit_bias.recovery import (
    InterpolatorDistances,
    MarginAlignment,
    interpolator_distances,
    margin_alignment,
)


def _separable(n=30, d=8, seed=0):
    split = data.gaussians(n_train=n, n_test=10, dim=d, seed=seed)
    return split.x_train.double(), split.y_train


def test_linf_max_margin_is_optimal_and_beats_the_other_directions():
    x, y = _separable()
    mm = max_margin(x, y, norm="linf")
    z = (2 * y.numpy() - 1)[:, None] * x.numpy()
    assert (z @ mm.weights).min() == pytest.approx(1.0, abs=1e-7)
    assert mm.margin == pytest.approx(1 / np.abs(mm.weights).max())
    for other in ("l2", "l1"):  # the linf-normalised margin of every other direction is lower
        w = max_margin(x, y, norm=other).weights
        assert (z @ w).min() / np.abs(w).max() <= mm.margin + 1e-9
    a = alignment(mm.weights, x, y, norm="linf", reference=mm)
    assert a.direction_error < 1e-9 and a.margin == pytest.approx(mm.margin)
    with pytest.raises(ValueError, match="not linearly separable"):
        max_margin(torch.tensor([[1.0, 0.0], [-1.0, 0.0]]), torch.tensor([1, 1]), norm="linf")
    with_bias = max_margin(x + 3.0, y, norm="linf", bias=True)
    signs = 2 * y.numpy() - 1
    functional = signs * ((x.numpy() + 3.0) @ with_bias.weights + with_bias.intercept)
    assert functional.min() == pytest.approx(1.0, abs=1e-6)
    assert with_bias.solver == "highs"


def test_sparse_regression_is_seeded_and_interpolated_by_its_sparse_truth():
    s = data.load("sparse_regression", n_train=30, n_test=50, dim=60, sparsity=4, seed=3)
    again = data.load("sparse-regression", n_train=30, n_test=50, dim=60, sparsity=4, seed=3)
    assert torch.equal(s.x_train, again.x_train) and torch.equal(s.y_test, again.y_test)
    beta = torch.tensor(s.info["beta"])
    assert s.x_train.shape == (30, 60) and s.y_train.dtype == torch.float32
    assert s.num_classes == 1 and (beta != 0).sum() == 4 == len(s.info["support"])
    assert beta.norm().item() == pytest.approx(1.0)
    for x, y in (s.train, s.test):
        assert torch.allclose(x @ beta, y, atol=1e-5)
    assert not torch.equal(s.x_train[:5], data.load("sparse_regression", seed=4).x_train[:5])
    noisy = data.sparse_regression(noise=0.5, seed=3)
    assert (
        noisy.x_train @ torch.tensor(noisy.info["beta"], dtype=torch.float32) - noisy.y_train
    ).abs().max() > 0.1
    with pytest.raises(ValueError, match="sparsity must be at most dim=10"):
        data.sparse_regression(dim=10, sparsity=11)


def test_interpolator_distances_of_a_diagonal_network():
    s = data.sparse_regression(n_train=20, dim=40, sparsity=2, seed=0)
    x, y = s.x_train.double(), s.y_train.double()
    net = models.build("diagonal_linear_network", dim=40, init_scale=0.5).double()
    l1 = min_norm_interpolator(x, y, norm="l1")
    with torch.no_grad():  # u^2 - v^2 = beta_l1
        b = torch.tensor(l1.beta)
        net.u.copy_(b.clamp(min=0).sqrt())
        net.v.copy_((-b).clamp(min=0).sqrt())
    r = interpolator_distances(net, None, (x, y))
    assert isinstance(r, InterpolatorDistances) and r.depth == 2
    assert r.distance_l1 < 1e-9 and r.residual < 1e-6
    assert r.distance_l2 == pytest.approx(np.linalg.norm(l1.beta - r.beta_l2))
    assert r.l1_norm == pytest.approx(r.min_l1_norm) and r.min_l2_norm <= r.l2_norm
    arrays, attrs = r.to_record()
    assert InterpolatorDistances.from_record((arrays, attrs)).distance_l2 == r.distance_l2
    with pytest.raises(ValueError, match="beta has 40 entries but x has 10"):
        interpolator_distances(net, None, (x[:, :10], y))


def test_max_margin_callback_records_the_alignment_along_training(tmp_path):
    x, y = _separable()
    model = models.build("linear", in_features=8, num_classes=1, bias=False, seed=0).double()
    path = str(tmp_path / "mm.h5")
    r = fit(
        model,
        "logistic",
        (x, y),
        TrainConfig("gd", lr=1.0, max_steps=200),
        store=path,
        run="gd",
        callbacks=[max_margin_alignment((x, y), every=50)],
    )
    series = r.series["max_margin"]
    assert series["step"].tolist() == [0, 50, 100, 150, 200]
    end = margin_alignment(model, None, (x, y))
    assert isinstance(end, MarginAlignment)
    for key, value in end.row().items():
        assert series[key][-1] == pytest.approx(value, rel=1e-12)
    assert (np.diff(series["weight_norm"][1:]) > 0).all()
    assert series["direction_error_l2"][-1] < series["direction_error_l2"][1]
    with Store(path) as s:
        stored = s.series("gd", "probes/max_margin")
    np.testing.assert_array_equal(stored["cosine_l2"], series["cosine_l2"])
    with pytest.raises(ValueError, match="not linearly separable"):
        max_margin_alignment((x, torch.arange(len(y)) % 2), every=1)
    with pytest.raises(TypeError, match="data must be an"):
        max_margin_alignment(x, every=1)


SPEC = """
name = "t"
[base]
model = {name = "linear", num_classes = 1, bias = false}
data = {name = "gaussians", dim = 5, standardize = false}
optimizer = {name = "sign_descent", lr = 0.01}
train = {max_steps = 5, loss = "logistic"}
[probes]
max_margin = {}
interpolators = {name = "interp"}
[along]
max_margin = {every = 2, n = 50}
lambda_max = {every = 5}
"""


def test_sweep_entries():
    sweep = loads(SPEC)
    assert sweep.probes["max_margin_alignment"] == (
        "implicit_bias.recovery",
        "margin_alignment",
        {},
    )
    assert sweep.probes["interp"] == ("implicit_bias.recovery", "interpolator_distances", {})
    assert sweep.along == {"max_margin": {"every": 2, "n": 50}, "lambda_max": {"every": 5}}
    with pytest.raises(ValueError, match="along.max_margin.k: unknown key"):
        loads(SPEC.replace("every = 2, n = 50", "every = 2, k = 1"))
    with pytest.raises(ValueError, match="probes.max_margin.references: unknown key"):
        loads(SPEC.replace("max_margin = {}", "max_margin = {references = 1}"))
    x, y = _separable(n=60)
    cb = along_callback("max_margin", (x, y), {"every": 2, "n": 50})
    assert cb.name == "max_margin" and cb.every == 2
