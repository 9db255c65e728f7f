"""landscape.engine.batchnorm: BatchNorm statistics recomputed at a point.

Exactly, in one pass, with the model left as it was.
"""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from landscape.engine.batchnorm import batchnorm_layers, has_batchnorm, recalibrate
from landscape.engine.objective import Objective

N, D, C = 103, 5, 3  # batches of 25 leave a last batch of 3


def seeded(seed, fn):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return fn()


@pytest.fixture(scope="module")
def blobs():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(N, D, generator=g, dtype=torch.float64) * torch.arange(
        1.0, D + 1
    ) + torch.linspace(-2, 3, D)
    return x, torch.randint(0, C, (N,), generator=g)


def deep_net():
    return seeded(
        0,
        lambda: nn.Sequential(
            nn.Linear(D, 7),
            nn.BatchNorm1d(7),
            nn.ReLU(),
            nn.Linear(7, 6),
            nn.BatchNorm1d(6),
            nn.ReLU(),
            nn.Linear(6, C),
        ).double(),
    )


def state(model):
    return {k: v.clone() for k, v in model.state_dict().items()}, [
        m.training for m in model.modules()
    ]


def assert_untouched(model, before):
    sd, flags = before
    now = model.state_dict()
    assert sd.keys() == now.keys() and all(torch.equal(sd[k], now[k]) for k in sd)
    assert [m.training for m in model.modules()] == flags


def test_first_layer_statistics_are_the_data_mean_and_unbiased_variance(blobs):
    x, y = blobs
    model = seeded(1, lambda: nn.Sequential(nn.BatchNorm1d(D), nn.Linear(D, C)).double())
    model[0].running_mean.fill_(5.0)
    obj = Objective(model, nn.CrossEntropyLoss(), (x, y), batch_size=25)
    stats = recalibrate(obj)
    torch.testing.assert_close(stats["0.running_mean"], x.mean(0), rtol=0, atol=1e-13)
    torch.testing.assert_close(stats["0.running_var"], x.var(0), rtol=1e-13, atol=0)
    assert int(stats["0.num_batches_tracked"]) == 5
    assert stats["0.running_mean"].dtype == torch.float64


@pytest.mark.parametrize("dims", [1, 2])
def test_convolutional_statistics_pool_batch_and_space(dims):
    g = torch.Generator().manual_seed(1)
    shape = (37, 4, 6) if dims == 1 else (37, 4, 3, 5)
    x = torch.randn(shape, generator=g, dtype=torch.float64) * 2 + 1
    y = torch.randint(0, 2, (37,), generator=g)
    norm = nn.BatchNorm1d(4) if dims == 1 else nn.BatchNorm2d(4)
    model = seeded(0, lambda: nn.Sequential(norm, nn.Flatten(), nn.LazyLinear(2)))
    model(x.float())  # materialise the lazy layer
    model = model.double()
    stats = recalibrate(Objective(model, nn.CrossEntropyLoss(), (x, y), batch_size=10))
    per_channel = x.transpose(0, 1).reshape(4, -1)
    torch.testing.assert_close(stats["0.running_mean"], per_channel.mean(1), rtol=0, atol=1e-13)
    torch.testing.assert_close(stats["0.running_var"], per_channel.var(1), rtol=1e-12, atol=0)


def test_deeper_layers_against_a_manual_loop_with_batch_statistics(blobs):
    """Each layer normalises with its batch's statistics (as in training).

    The population statistics are over the whole data, batches of unequal size weighted by their
    size.
    """
    x, y = blobs
    model = deep_net()
    stats = recalibrate(Objective(model, nn.CrossEntropyLoss(), (x, y), batch_size=25))
    first, second = [], []
    with torch.no_grad():
        for i in range(0, N, 25):
            h1 = model[0](x[i : i + 25])
            first.append(h1)
            bn = model[1]
            a = (h1 - h1.mean(0)) / torch.sqrt(h1.var(0, unbiased=False) + bn.eps)
            second.append(model[3](torch.relu(a * bn.weight + bn.bias)))
    h1, h2 = torch.cat(first), torch.cat(second)
    for name, h in (("1", h1), ("4", h2)):
        torch.testing.assert_close(stats[f"{name}.running_mean"], h.mean(0), rtol=0, atol=1e-12)
        torch.testing.assert_close(stats[f"{name}.running_var"], h.var(0), rtol=1e-12, atol=0)


def test_one_pass_and_the_model_untouched(blobs):
    x, y = blobs
    model = deep_net()
    model.train()
    model[1].eval()  # mixed flags must come back as they were
    obj = Objective(model, nn.CrossEntropyLoss(), (x, y), batch_size=25, check=False)
    before = state(model)
    calls = []
    handle = model.register_forward_hook(lambda *a: calls.append(1))
    try:
        stats = recalibrate(obj, obj.theta + 0.1)
    finally:
        handle.remove()
    assert len(calls) == 5  # one forward pass over the 5 batches
    assert_untouched(model, before)
    assert all(not m._forward_pre_hooks for m in model.modules())  # hooks removed
    assert set(stats) == {
        f"{i}.{k}" for i in (1, 4) for k in ("running_mean", "running_var", "num_batches_tracked")
    }


def test_statistics_evaluate_like_a_model_that_holds_them(blobs):
    x, y = blobs
    model = deep_net()
    obj = Objective(model, nn.CrossEntropyLoss(), (x, y), batch_size=25)
    theta = obj.theta * 1.1
    stats = recalibrate(obj, theta)
    twin = copy.deepcopy(model)
    with torch.no_grad():
        torch.nn.utils.vector_to_parameters(theta, twin.parameters())
        for k, v in stats.items():
            twin.get_buffer(k).copy_(v)
    twin.eval()
    with torch.no_grad():
        want = nn.functional.cross_entropy(twin(x), y).item()
    assert obj.evaluate(theta, buffers=stats).loss == pytest.approx(want, rel=1e-12)
    assert obj.evaluate(theta).loss != pytest.approx(want, rel=1e-3)  # stale statistics differ


def test_loaders_and_tensors_agree_and_float32(blobs):
    x, y = blobs
    model = deep_net().float()
    xf = x.float()
    a = recalibrate(Objective(model, nn.CrossEntropyLoss(), (xf, y), batch_size=N))
    loader = DataLoader(TensorDataset(xf, y), batch_size=N)
    b = recalibrate(Objective(model, nn.CrossEntropyLoss(), loader))
    for k in a:
        torch.testing.assert_close(a[k], b[k])
    assert a["1.running_var"].dtype == torch.float32


def test_root_module_and_models_without_batchnorm(blobs):
    x, _ = blobs
    bn = nn.BatchNorm1d(D).double()
    stats = recalibrate(Objective(bn, nn.MSELoss(), (x, torch.zeros_like(x))))
    assert set(stats) == {"running_mean", "running_var", "num_batches_tracked"}
    torch.testing.assert_close(stats["running_mean"], x.mean(0))
    mlp = nn.Sequential(nn.Linear(D, 3)).double()
    assert recalibrate(Objective(mlp, nn.CrossEntropyLoss(), blobs)) == {}
    assert not has_batchnorm(mlp) and has_batchnorm(bn) and has_batchnorm(deep_net())
    untracked = nn.Sequential(nn.BatchNorm1d(D, track_running_stats=False))
    assert not has_batchnorm(untracked) and batchnorm_layers(untracked) == {}


def test_dropout_stays_off_in_eval_mode(blobs):
    x, y = blobs
    model = seeded(
        0,
        lambda: nn.Sequential(
            nn.Linear(D, 8), nn.Dropout(0.5), nn.BatchNorm1d(8), nn.Linear(8, C)
        ).double(),
    )
    obj = Objective(model, nn.CrossEntropyLoss(), (x, y))
    a, b = recalibrate(obj), recalibrate(obj)
    assert all(torch.equal(a[k], b[k]) for k in a)
    with torch.no_grad():
        torch.testing.assert_close(a["2.running_var"], model[0](x).var(0))


def test_errors(blobs):
    x, y = blobs
    model = deep_net()
    obj = Objective(model, nn.CrossEntropyLoss(), (x, y))
    with pytest.raises(TypeError, match="expected a landscape.Objective"):
        recalibrate(model, obj.theta)
    with pytest.raises(ValueError, match="shape"):
        recalibrate(obj, obj.theta[:-1])
    with pytest.raises(TypeError, match="dtype"):
        recalibrate(obj, obj.theta.float())
    with pytest.raises(TypeError, match="nn.Module"):
        has_batchnorm("net")
    one = nn.Sequential(nn.BatchNorm1d(D), nn.Linear(D, C)).double()
    with pytest.raises(ValueError, match="at least 2"):
        recalibrate(Objective(one, nn.CrossEntropyLoss(), (x[:1], y[:1]), check=False))
