"""Cross-check with PyHessian 0.1 (what most papers used) where it works.

Its top eigenvalue (power iteration) and its Hutchinson trace agree with ours within their own
accuracy.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

from landscape import data, models
from landscape.train.fit import TrainConfig, fit
from probes.curvature import hessian

pyhessian = pytest.importorskip("pyhessian")
# PyHessian calls backward(create_graph=True), which torch warns about: its code, not ours
pytestmark = pytest.mark.filterwarnings("ignore:Using backward\\(\\) with create_graph=True")


@pytest.fixture(scope="module")
def trained():
    split = data.standardize(data.subset(data.digits(seed=0), 300, 50, seed=0))
    model = models.build("mlp", in_features=64, num_classes=10, width=16, depth=1, seed=0)
    fit(
        model,
        "cross_entropy",
        split,
        TrainConfig("adam", lr=1e-2, batch_size=64, max_steps=60, seed=0),
    )
    return model, split.train


def test_top_eigenvalue_agrees_with_pyhessian(trained):
    model, (x, y) = trained
    ours = hessian.eigenvalues(
        model, nn.CrossEntropyLoss(), (x, y), k=1, which="magnitude", tol=1e-8
    )
    torch.manual_seed(0)  # PyHessian draws its start vector from the global generator
    peer = pyhessian.hessian(copy.deepcopy(model), nn.CrossEntropyLoss(), data=(x, y), cuda=False)
    values, _ = peer.eigenvalues(maxIter=300, tol=1e-7, top_n=1)
    assert values[0] == pytest.approx(float(ours.values[0]), rel=1e-4)


def test_trace_agrees_with_pyhessian_within_its_standard_error(trained):
    model, (x, y) = trained
    exact = float(np.trace(hessian.matrix(model, nn.CrossEntropyLoss(), (x, y)).matrix))
    ours = hessian.trace(
        model, nn.CrossEntropyLoss(), (x, y), method="hutchinson", n_products=200, seed=0
    )
    torch.manual_seed(0)
    peer = pyhessian.hessian(copy.deepcopy(model), nn.CrossEntropyLoss(), data=(x, y), cuda=False)
    samples = np.asarray(peer.trace(maxIter=200, tol=0.0))
    peer_se = samples.std(ddof=1) / np.sqrt(len(samples))
    assert abs(samples.mean() - exact) <= 4 * peer_se
    assert abs(ours.value - exact) <= 4 * ours.stderr
