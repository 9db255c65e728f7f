"""probes.implicit_bias.margins against hand and direct computations.

Margins against a hand computation, the order-statistic quantile, Bartlett et al.'s spectral
complexity against a direct computation, records and bad input.
"""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
from torch import nn

from landscape.store.file import Store
from probes.implicit_bias.margins import Margins, margin_of, margins, spectral_complexity

pytestmark = pytest.mark.usefixtures("one_thread")


class Fixed(nn.Module):
    """Outputs set by hand: f(x) = x W^T with W the identity, so the logits are the inputs."""

    def __init__(self, k: int) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.eye(k, dtype=torch.float64))

    def forward(self, x):
        return x @ self.w.T


class Shift(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.b = nn.Parameter(torch.zeros(3, dtype=torch.float64))

    def forward(self, x):
        return x + self.b


def test_margins_by_hand():
    logits = torch.tensor(
        [
            [3.0, 1.0, 2.0],  # y=0: 3 - 2 = 1
            [0.5, 0.0, -1.0],  # y=1: 0 - 0.5 = -0.5
            [1.0, 4.0, 4.5],  # y=2: 4.5 - 4 = 0.5
            [2.0, 2.0, 0.0],  # y=0: 2 - 2 = 0
            [-1.0, 3.0, 0.0],
        ],  # y=1: 3 - 0 = 3
        dtype=torch.float64,
    )
    y = torch.tensor([0, 1, 2, 0, 1])
    model = Fixed(3)
    m = margins(model, (logits, y), q=0.4)
    np.testing.assert_allclose(m.margins, [1.0, -0.5, 0.5, 0.0, 3.0])
    assert m.minimum == -0.5
    assert m.quantile == 0.0  # k = floor(0.4 * 5) = 2nd smallest
    # R_A of the identity (3x3): ||I||_2 = 1, ||I||_{2,1} = 3: 1 * (3^(2/3))^(3/2) = 3
    assert m.spectral_complexity == pytest.approx(3.0)
    assert m.input_norm == pytest.approx(float(logits.norm()))
    scale = 3.0 * float(logits.norm()) / 5
    np.testing.assert_allclose(m.normalised, m.margins / scale)
    assert m.normalised_minimum == pytest.approx(-0.5 / scale)
    assert m.reference == "zero" and m.layers == ("w",) and m.n_examples == 5
    # one-hot targets and binary single-logit targets
    onehot = nn.functional.one_hot(y, 3).double()
    torch.testing.assert_close(margin_of(logits, onehot), margin_of(logits, y))
    f = torch.tensor([[0.3], [-2.0], [1.5]], dtype=torch.float64)
    torch.testing.assert_close(
        margin_of(f, torch.tensor([1.0, 1.0, 0.0])),
        torch.tensor([0.3, -2.0, -1.5], dtype=torch.float64),
    )
    torch.testing.assert_close(
        margin_of(f, torch.tensor([1, -1, -1])), torch.tensor([0.3, 2.0, -1.5], dtype=torch.float64)
    )


def test_tenth_percentile_and_minimum_on_many_examples():
    torch.manual_seed(0)
    logits = torch.randn(137, 4, dtype=torch.float64)
    y = torch.randint(0, 4, (137,))
    m = margins(Fixed(4), (logits, y), batch_size=20)
    want = np.array(
        [
            float(logits[i, y[i]] - torch.cat([logits[i, : y[i]], logits[i, y[i] + 1 :]]).max())
            for i in range(137)
        ]
    )
    np.testing.assert_allclose(m.margins, want)
    assert m.minimum == want.min()
    assert m.quantile == np.sort(want)[13 - 1]  # floor(0.1 * 137) = 13th smallest
    assert m.q == 0.1 and m.cost.passes > 0


def test_spectral_complexity_with_init_reference():
    torch.manual_seed(1)
    net = nn.Sequential(nn.Linear(5, 4), nn.ReLU(), nn.Linear(4, 3)).double()
    start = copy.deepcopy(net)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.2 * torch.randn_like(p))
    before = {k: v.clone() for k, v in net.state_dict().items()}
    x, y = torch.randn(9, 5, dtype=torch.float64), torch.randint(0, 3, (9,))
    m = margins(net, (x, y), init=start)
    ws, w0s = [net[0].weight, net[2].weight], [start[0].weight, start[2].weight]
    specs = [float(torch.linalg.svdvals(w.detach())[0]) for w in ws]
    l21 = [float((w - w0).detach().norm(dim=1).sum()) for w, w0 in zip(ws, w0s, strict=True)]
    want = np.prod(specs) * sum((a / s) ** (2 / 3) for a, s in zip(l21, specs, strict=True)) ** 1.5
    assert m.spectral_complexity == pytest.approx(want, rel=1e-12)
    assert m.reference == "init"
    np.testing.assert_allclose(m.normalised, m.margins * 9 / (want * float(x.norm())))
    layers = {"a": torch.eye(2, dtype=torch.float64)}
    assert spectral_complexity(layers) == pytest.approx(2.0)  # 1 * ((2/1)^(2/3))^(3/2)
    assert all(torch.equal(v, net.state_dict()[k]) for k, v in before.items())


def test_records_round_trip(tmp_path):
    torch.manual_seed(2)
    x, y = torch.randn(8, 3, dtype=torch.float64), torch.randint(0, 3, (8,))
    m = margins(Fixed(3), (x, y))
    with Store(tmp_path / "m.h5", "w") as store:
        store.write_record(
            None, "probes", "margins", arrays=m.to_record()[0], attrs=m.to_record()[1]
        )
    with Store(tmp_path / "m.h5") as store:
        back = Margins.from_record(store.record(None, "probes", "margins"))
    for field in m.__dataclass_fields__:
        a, b = getattr(m, field), getattr(back, field)
        if isinstance(a, np.ndarray):
            assert a.dtype == b.dtype and np.array_equal(a, b), field
        else:
            assert type(a) is type(b) and a == b, (field, a, b)


def test_bad_input():
    x = torch.randn(4, 3, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"margins: q must be in \[0, 1\], got 1.5"):
        margins(Fixed(3), (x, torch.tensor([0, 1, 2, 0])), q=1.5)
    with pytest.raises(ValueError, match=r"margins: q must be in \(0, 1\]"):
        margins(Fixed(3), (x, torch.tensor([0, 1, 2, 0])), q=0)
    with pytest.raises(ValueError, match=r"margins: class indices must lie in \[0, 3\)"):
        margins(Fixed(3), (x, torch.tensor([0, 1, 5, 0])))
    with pytest.raises(ValueError, match="margins: expected outputs .N, K. with class-index"):
        margins(Fixed(3), (x, torch.randn(4, 2, dtype=torch.float64)))
    with pytest.raises(ValueError, match="margins: expected at least one layer"):
        margins(Shift(), (x, torch.tensor([0, 1, 2, 0])))
    assert not math.isnan(margins(Fixed(3), (x, torch.tensor([0, 1, 2, 0]))).minimum)
