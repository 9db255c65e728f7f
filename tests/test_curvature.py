"""The curvature operator: Hessian, GGN and Fisher products, against dense references."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from probes.curvature.operators import operator
from tests.zoo import make


def dense(op):
    eye = torch.eye(op.size, dtype=op.dtype)
    return op.matvec(eye)


@pytest.mark.parametrize("name", ["mlp", "cnn_bn", "residual"])
def test_fisher_equals_ggn_for_cross_entropy(name):
    model, x, y = make(name, n=12)
    loss = nn.CrossEntropyLoss()
    g = dense(operator(model, loss, (x, y), curvature="ggn", batch_size=5))
    f = dense(operator(model, loss, (x, y), curvature="fisher", batch_size=5))
    assert torch.allclose(f, g, rtol=1e-10, atol=1e-12 * g.abs().max())
    assert torch.linalg.eigvalsh((f + f.T) / 2).min() >= -1e-10 * g.abs().max()


def test_ggn_equals_the_hessian_for_a_linear_model_with_squared_loss():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(25, 4, generator=gen, dtype=torch.float64)
    t = torch.randn(25, 3, generator=gen, dtype=torch.float64)
    model = nn.Linear(4, 3).double()
    h = dense(operator(model, nn.MSELoss(), (x, t)))
    g = dense(operator(model, nn.MSELoss(), (x, t), curvature="ggn"))
    assert torch.allclose(h, g, rtol=1e-12, atol=1e-14)


def test_products_blocks_scipy_and_cost_agree():
    model, x, y = make("mlp", n=10)
    op = operator(model, nn.CrossEntropyLoss(), (x, y))
    h = dense(op).numpy()
    assert op.n_products == op.size
    lin = op.scipy()
    v = np.random.default_rng(0).standard_normal((op.size, 3))
    np.testing.assert_allclose(lin @ v, h @ v, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(lin.matvec(v[:, 0]), h @ v[:, 0], rtol=1e-10, atol=1e-12)
    assert op.n_products == op.size + 4
    cost = op.cost()
    assert cost["n_products"] == op.n_products and cost["passes"] >= 1 and cost["seconds"] > 0


def test_bad_curvature_and_fisher_without_cross_entropy():
    model, x, y = make("mlp", n=6)
    with pytest.raises(ValueError, match="curvature must be one of hessian, ggn, fisher"):
        operator(model, nn.CrossEntropyLoss(), (x, y), curvature="gauss")
    with pytest.raises(ValueError, match="needs loss_fn=nn.CrossEntropyLoss"):
        operator(
            model, nn.MSELoss(), (x, torch.randn(6, 3, dtype=torch.float64)), curvature="fisher"
        )
