"""probes.implicit_bias.gradient_noise against a Python loop over examples.

The trace of the per-example gradient covariance and B_simple against a Python loop over examples
(one backward each), records and bad input.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from landscape.engine.params import no_bias_norm
from landscape.store.file import Store
from probes.implicit_bias.gradient_noise import GradientNoise, gradient_noise

pytestmark = pytest.mark.usefixtures("one_thread")


def setup(n: int = 23):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 3)).double()
    x, y = torch.randn(n, 4, dtype=torch.float64), torch.randint(0, 3, (n,))
    return model, x, y


def loop(model, loss_fn, x, y, names=None):
    params = [(n, p) for n, p in model.named_parameters() if names is None or n in names]
    grads = []
    for i in range(len(x)):
        g = torch.autograd.grad(loss_fn(model(x[i : i + 1]), y[i : i + 1]), [p for _, p in params])
        grads.append(torch.cat([t.reshape(-1) for t in g]))
    g = torch.stack(grads)  # (N, P), fine for a tiny model
    mean = g.mean(0)
    per = ((g - mean) ** 2).mean(0)
    sizes = [p.numel() for _, p in params]
    return float(per.sum()), float(mean @ mean), [float(t.sum()) for t in per.split(sizes)]


@pytest.mark.parametrize("chunk_size", [1, 5, 256])
def test_trace_and_b_simple_equal_a_loop(chunk_size):
    model, x, y = setup()
    loss = nn.CrossEntropyLoss()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.train()
    gn = gradient_noise(model, loss, (x, y), chunk_size=chunk_size, batch_size=7)
    assert model.training
    trace, grad_sq, per = loop(model, loss, x, y)
    assert gn.trace == pytest.approx(trace, rel=1e-10)
    assert gn.grad_norm_sq == pytest.approx(grad_sq, rel=1e-10)
    assert gn.b_simple == pytest.approx(trace / grad_sq, rel=1e-10)
    assert gn.mean_sq_norm == pytest.approx(trace + grad_sq, rel=1e-10)
    np.testing.assert_allclose(gn.trace_per_param, per, rtol=1e-10)
    assert gn.names == ("0.weight", "0.bias", "2.weight", "2.bias")
    assert gn.n_examples == 23 and gn.n_params == 43 and gn.cost.passes >= 1
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())


def test_parameter_filter_and_mse():
    model, x, _ = setup(9)
    targets = torch.randn(9, 3, dtype=torch.float64)
    loss = nn.MSELoss()
    gn = gradient_noise(model, loss, (x, targets), params=no_bias_norm)
    trace, grad_sq, _ = loop(model, loss, x, targets, names={"0.weight", "2.weight"})
    assert gn.names == ("0.weight", "2.weight")
    assert gn.trace == pytest.approx(trace, rel=1e-10)
    assert gn.grad_norm_sq == pytest.approx(grad_sq, rel=1e-10)


def test_records_round_trip(tmp_path):
    model, x, y = setup(6)
    gn = gradient_noise(model, nn.CrossEntropyLoss(), (x, y))
    with Store(tmp_path / "g.h5", "w") as store:
        arrays, attrs = gn.to_record()
        store.write_record(None, "probes", "gn", arrays=arrays, attrs=attrs)
    with Store(tmp_path / "g.h5") as store:
        back = GradientNoise.from_record(store.record(None, "probes", "gn"))
    for field in gn.__dataclass_fields__:
        a, b = getattr(gn, field), getattr(back, field)
        if isinstance(a, np.ndarray):
            assert a.dtype == b.dtype and np.array_equal(a, b), field
        else:
            assert type(a) is type(b) and a == b, (field, a, b)


def test_bad_input():
    model, x, y = setup(4)
    loss = nn.CrossEntropyLoss()
    with pytest.raises(ValueError, match="gradient_noise: chunk_size must be an int >= 1"):
        gradient_noise(model, loss, (x, y), chunk_size=0)
    with pytest.raises(ValueError, match="loss_fn must return a scalar"):
        gradient_noise(model, nn.CrossEntropyLoss(reduction="none"), (x, y))
    with pytest.raises(ValueError, match="empty"):
        gradient_noise(model, loss, (x[:0], y[:0]))
