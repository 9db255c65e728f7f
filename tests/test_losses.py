"""Losses by name against their closed forms."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from landscape.engine import losses


def test_mse_is_half_the_squared_error_summed_over_outputs_averaged_over_examples():
    g = torch.Generator().manual_seed(0)
    out = torch.randn(6, 3, generator=g, dtype=torch.float64)
    labels = torch.tensor([0, 2, 1, 1, 0, 2])
    onehot = torch.eye(3, dtype=torch.float64)[labels]
    want = 0.5 * ((out - onehot) ** 2).sum(1).mean()
    assert torch.allclose(losses.get("mse")(out, labels), want, rtol=1e-15)
    targets = torch.randn(6, 3, generator=g, dtype=torch.float64)
    assert torch.allclose(
        losses.get("mse")(out, targets), 0.5 * ((out - targets) ** 2).sum(1).mean(), rtol=1e-15
    )


def test_logistic_is_log_one_plus_exp_minus_the_signed_margin():
    out = torch.tensor([[2.0], [-1.0], [0.5]], dtype=torch.float64)
    y = torch.tensor([1, 1, 0])
    want = (
        sum(math.log1p(math.exp(-s * f)) for s, f in zip((1, 1, -1), (2.0, -1.0, 0.5), strict=True))
        / 3
    )
    assert losses.get("logistic")(out, y).item() == pytest.approx(want, rel=1e-14)


def test_names_callables_and_errors():
    assert isinstance(losses.get("Cross-Entropy"), nn.CrossEntropyLoss)
    fn = nn.MSELoss()
    assert losses.get(fn) is fn
    assert losses.describe(nn.CrossEntropyLoss()) == "cross_entropy"
    with pytest.raises(ValueError, match="unknown loss 'hinge'; known: cross_entropy, mse"):
        losses.get("hinge")
    with pytest.raises(ValueError, match="class labels need outputs of shape"):
        losses.get("mse")(torch.zeros(4), torch.tensor([0, 1, 0, 1]))
