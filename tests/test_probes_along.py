"""The top eigenvalue along training.

Warm-started values equal cold ones at the same step, for fewer products.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from landscape import data, models
from landscape.store.file import Store
from landscape.train.checkpoints import load_params
from landscape.train.fit import TrainConfig, fit
from probes.along import top_eigenvalues
from probes.curvature import hessian


def test_warm_started_lambda_max_equals_a_cold_computation(tmp_path):
    split = data.standardize(data.subset(data.digits(seed=0), 200, 50, seed=0))
    model = models.build("mlp", in_features=64, num_classes=10, width=16, depth=1, seed=0)
    model = model.double()
    x, y = split.train
    train = (x.double(), y)
    cb = top_eigenvalues(train, every=5, k=2, tol=1e-8)
    path = str(tmp_path / "eos.h5")
    r = fit(
        model,
        "cross_entropy",
        (x.double(), y),
        TrainConfig("gd", lr=0.5, max_steps=20, snapshot_every=5),
        store=path,
        run="gd",
        callbacks=[cb],
    )
    series = r.series["lambda_max"]
    assert series["step"].tolist() == [0, 5, 10, 15, 20]
    assert (series["error"] <= 1e-8).all() and (series["error"] <= series["residual"]).all()
    with Store(path) as s:
        stored = s.series("gd", "probes/lambda_max")
    np.testing.assert_array_equal(stored["value"], series["value"])
    fresh = models.build("mlp", in_features=64, num_classes=10, width=16, depth=1).double()
    for i, step in enumerate(series["step"]):
        load_params(fresh, path, "gd", int(step))
        cold = hessian.eigenvalues(fresh, torch.nn.CrossEntropyLoss(), train, k=2, tol=1e-10)
        np.testing.assert_allclose(series["values"][i], cold.values[::-1], rtol=1e-7)
    # warm starts spend fewer products than the cold first call, on average
    assert series["n_hvp"][1:].mean() < series["n_hvp"][0]


def test_top_eigenvalues_validates_like_a_callback():
    with pytest.raises(ValueError, match="every must be an int >= 1"):
        top_eigenvalues((torch.zeros(2, 2), torch.zeros(2)), every=0)


def test_param_norms_records_the_norm_the_weights_and_the_distance_from_the_start():
    from probes.along import param_norms

    split = data.subset(data.digits(seed=0), 100, 20, seed=0)
    model = models.build("mlp", in_features=64, num_classes=10, width=8, depth=1, seed=0)
    theta0 = torch.cat([p.detach().flatten() for p in model.parameters()]).double()
    r = fit(
        model,
        "cross_entropy",
        split,
        TrainConfig("adamw", lr=0.05, weight_decay=1.0, max_steps=10, batch_size=100),
        callbacks=[param_norms(every=5)],
    )
    series = r.series["param_norm"]
    theta = torch.cat([p.detach().flatten() for p in model.parameters()]).double()
    weights = torch.cat([p.detach().flatten() for p in model.parameters() if p.dim() >= 2])
    assert series["step"].tolist() == [0, 5, 10]
    np.testing.assert_allclose(
        series["value"][[0, -1]], [theta0.norm().item(), theta.norm().item()], rtol=1e-6
    )
    np.testing.assert_allclose(series["weights"][-1], weights.double().norm().item(), rtol=1e-6)
    np.testing.assert_allclose(
        series["dist_init"], [0, series["dist_init"][1], (theta - theta0).norm().item()], rtol=1e-6
    )
    with pytest.raises(ValueError, match="every must be an int >= 1"):
        param_norms(every=0)
