"""probes.paths.interpolation against direct evaluations and a closed form.

Straight paths against direct evaluations and a closed form, BatchNorm recalibration, Bezier curves
that lower the barrier between two MNIST-1D solutions, records through the store, untouched models
and clear errors.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from landscape import data, models
from landscape.engine import losses
from landscape.engine.batchnorm import recalibrate
from landscape.engine.objective import Objective
from landscape.store.file import Store
from landscape.surfaces.stored import init_to_final
from landscape.train.fit import TrainConfig, fit
from landscape.train.spec import execute
from probes.paths import interpolation
from probes.paths.interpolation import Curve, Path, bezier, linear

CE = nn.CrossEntropyLoss()


def seeded(seed, fn):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return fn()


def flat(model):
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()])


def state(model):
    return (
        {k: v.clone() for k, v in model.state_dict().items()},
        [m.training for m in model.modules()],
    )


def assert_untouched(model, before):
    sd, flags = before
    now = model.state_dict()
    assert sd.keys() == now.keys() and all(torch.equal(sd[k], now[k]) for k in sd)
    assert [m.training for m in model.modules()] == flags


@pytest.fixture(scope="module")
def digits():
    return data.standardize(data.subset(data.digits(seed=0), 200, 100, seed=0))


def mlp(seed, width=16):
    return models.build("mlp", in_features=64, num_classes=10, width=width, depth=1, seed=seed)


def bn_net(seed, dtype=torch.float64):
    return seeded(
        seed,
        lambda: nn.Sequential(
            nn.BatchNorm1d(64), nn.Linear(64, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 10)
        ).to(dtype),
    )


def perturbed_stats(model, seed):
    """Give a BatchNorm net running statistics of its own (as training would)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm1d):
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.3)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
    return model


# --------------------------------------------------------------------------- straight lines
def test_a_model_and_itself_give_a_flat_path(digits):
    model = mlp(0)
    p = linear(model, model, CE, digits.train, n=7)
    assert p.kind == "linear" and p.alphas.tolist() == np.linspace(0, 1, 7).tolist()
    assert np.ptp(p.loss) == 0 and np.ptp(p.accuracy) == 0
    assert p.barrier == 0 and p.accuracy_barrier == 0
    assert p.test_loss is None and p.test_barrier is None


def test_end_points_are_the_models_evaluated_directly(digits):
    a, b = mlp(0), mlp(1)
    p = linear(a, b, CE, digits.train, n=5, test=digits.test, batch_size=64)
    for i, model in ((0, a), (-1, b)):
        train = Objective(model, CE, digits.train).evaluate()
        test = Objective(model, CE, digits.test).evaluate()
        assert p.loss[i] == pytest.approx(train.loss, rel=1e-6)  # other batches: rounding
        assert p.accuracy[i] == train.accuracy
        assert p.test_loss[i] == pytest.approx(test.loss, rel=1e-6)
        assert p.test_accuracy[i] == test.accuracy
    chord = (1 - p.alphas) * p.loss[0] + p.alphas * p.loss[-1]
    assert p.barrier == max(p.loss - chord) >= 0
    assert p.barrier_alpha == p.alphas[np.argmax(p.loss - chord)]
    assert p.cost.loss_evals >= 10 and p.cost.passes >= 10 and p.cost.seconds > 0
    assert p.buffers == "none" and p.mode == "eval"
    assert p.params == tuple(n for n, _ in a.named_parameters())


def test_flat_vectors_as_ends(digits):
    a, b = mlp(0), mlp(1)
    ref = linear(a, b, CE, digits.train, n=4)
    for ends, kw in (
        ((flat(a), b), {}),
        ((a, flat(b)), {}),
        ((flat(a), flat(b)), {"model": mlp(5)}),
    ):
        p = linear(*ends, CE, digits.train, n=4, **kw)
        np.testing.assert_allclose(p.loss, ref.loss, rtol=1e-6)


def test_a_linear_model_with_squared_error_gives_the_closed_form_quadratic():
    """Outputs are linear in the parameters, so the loss along the line is a convex quadratic.

    L(alpha) = mean 0.5 ||r + alpha d||^2 with r = f_a - y and d = f_b - f_a: a convex quadratic,
    barrier 0.
    """
    g = torch.Generator().manual_seed(0)
    x = torch.randn(60, 4, generator=g, dtype=torch.float64)
    y = torch.randn(60, 2, generator=g, dtype=torch.float64)
    a = seeded(0, lambda: nn.Linear(4, 2).double())
    b = seeded(1, lambda: nn.Linear(4, 2).double())
    p = linear(a, b, losses.get("mse"), (x, y), n=9, batch_size=16)
    with torch.no_grad():
        r, d = a(x) - y, b(x) - a(x)
    c0, c1, c2 = (
        0.5 * r.square().sum(1).mean(),
        (r * d).sum(1).mean(),
        0.5 * d.square().sum(1).mean(),
    )
    want = (c0 + c1 * torch.tensor(p.alphas) + c2 * torch.tensor(p.alphas) ** 2).numpy()
    np.testing.assert_allclose(p.loss, want, rtol=1e-12)
    assert p.accuracy is None and p.accuracy_barrier is None
    assert p.barrier == pytest.approx(0.0, abs=1e-12)


def test_params_subset_interpolates_only_those(digits):
    a, b = mlp(0), mlp(1)
    p = linear(a, b, CE, digits.train, n=3, params=["layers.2.weight"])
    mixed = copy.deepcopy(a)
    with torch.no_grad():
        mixed.layers[2].weight.copy_(b.layers[2].weight)
    assert p.loss[-1] == pytest.approx(Objective(mixed, CE, digits.train).evaluate().loss, rel=1e-6)
    assert p.params == ("layers.2.weight",)


# --------------------------------------------------------------------------- BatchNorm
def test_recalibrated_path_uses_exact_statistics(digits):
    """A first BatchNorm layer on the raw inputs.

    Its exact statistics are the data's mean and unbiased variance, whatever the batches.
    """
    x, y = digits.train
    x = x.double()

    def net(seed):
        return perturbed_stats(
            seeded(
                seed,
                lambda: nn.Sequential(
                    nn.BatchNorm1d(64), nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 10)
                ).double(),
            ),
            seed,
        )

    a, b = net(0), net(1)
    before = state(a), state(b)
    p = linear(a, b, CE, (x, y), n=5, recalibrate=True, batch_size=64)
    assert p.buffers == "recalibrated" and p.cost.passes >= 10  # recalibration + evaluation
    for i, model in ((0, a), (-1, b)):
        twin = copy.deepcopy(model).eval()
        with torch.no_grad():
            twin[0].running_mean.copy_(x.mean(0))
            twin[0].running_var.copy_(x.var(0))
            want = CE(twin(x), y).item()
        assert p.loss[i] == pytest.approx(want, rel=1e-10)
        assert p.loss[i] != pytest.approx(
            Objective(model, CE, (x, y)).evaluate().loss, rel=1e-3
        )  # the model's own statistics differ
    obj = Objective(bn_net(0), CE, (x, y), batch_size=64)  # deeper: as recalibrate computes
    q = linear(obj.model, bn_net(1), CE, (x, y), n=2, recalibrate=True, batch_size=64)
    assert q.loss[0] == pytest.approx(obj.evaluate(buffers=recalibrate(obj)).loss, rel=1e-12)
    assert_untouched(a, before[0])
    assert_untouched(b, before[1])


def test_without_recalibration_buffers_are_interpolated_and_ends_exact(digits):
    x, y = digits.train
    a, b = perturbed_stats(bn_net(0), 1), perturbed_stats(bn_net(1), 2)
    p = linear(a, b, CE, (x.double(), y), n=3)
    assert p.buffers == "interpolated"
    for i, model in ((0, a), (-1, b)):
        assert p.loss[i] == Objective(model, CE, (x.double(), y)).evaluate().loss
    mid = copy.deepcopy(a)
    with torch.no_grad():
        for (_, t), sa, sb in zip(
            mid.state_dict().items(), a.state_dict().values(), b.state_dict().values(), strict=True
        ):
            if t.is_floating_point():
                t.copy_((sa + sb) / 2)
    assert p.loss[1] == pytest.approx(
        Objective(mid, CE, (x.double(), y)).evaluate().loss, rel=1e-12
    )


# --------------------------------------------------------------------------- Bezier curves
@pytest.fixture(scope="module")
def mnist1d_pair():
    split = data.standardize(data.subset(data.mnist1d(), 1000, 500, seed=0))

    def train(seed):
        model = models.build("mlp", in_features=40, num_classes=10, width=64, depth=2, seed=seed)
        fit(
            model,
            "cross_entropy",
            split,
            TrainConfig("sgd", lr=0.1, epochs=60, batch_size=64, seed=seed, history_every=0),
        )
        return model

    return split, train(0), train(1)


def test_bezier_curve_has_a_far_lower_barrier_than_the_line(mnist1d_pair):
    split, a, b = mnist1d_pair
    before = state(a), state(b)
    line = linear(a, b, CE, split.train, n=11)
    curve = bezier(a, b, CE, split.train, n=11, steps=300, lr=3e-3, seed=0, test=split.test)
    assert isinstance(curve, Curve) and curve.kind == "bezier"
    assert line.barrier > 0.5
    assert curve.barrier < 0.25 * line.barrier
    assert curve.loss[0] == line.loss[0] and curve.loss[-1] == line.loss[-1]
    assert curve.bend.shape == (sum(p.numel() for p in a.parameters()),)
    assert curve.train_loss.shape == curve.train_t.shape == (300,)
    assert 0 <= curve.train_t.min() and curve.train_t.max() < 1
    assert curve.train_loss[-50:].mean() < curve.train_loss[:50].mean()
    assert curve.buffers == "none" and curve.cost.passes > 300 * 128 / 1000
    assert_untouched(a, before[0])
    assert_untouched(b, before[1])


def test_bezier_first_step_is_the_gradient_at_phi_t(digits):
    """SGD's first step moves the bend by -lr * dL/dc with dL/dc = 2t(1-t) grad L(phi(t))."""
    x, y = digits.train
    a, b = mlp(0).double(), mlp(1).double()
    lr = 0.5
    c = bezier(a, b, CE, (x.double(), y), steps=1, lr=lr, batch_size=10_000, optimizer="sgd", n=2)
    t = float(c.train_t[0])
    mid = ((flat(a) + flat(b)) / 2).requires_grad_(True)
    phi = (1 - t) ** 2 * flat(a) + 2 * t * (1 - t) * mid + t**2 * flat(b)
    obj = Objective(a, CE, (x.double(), y))
    loss = CE(obj.outputs(phi, x.double()), y)
    (g,) = torch.autograd.grad(loss, mid)
    np.testing.assert_allclose(c.bend, (mid - lr * g).detach().numpy(), rtol=1e-9, atol=1e-12)
    assert c.train_loss[0] == pytest.approx(loss.item(), rel=1e-12)


def test_bezier_on_batchnorm_recalibrates_and_is_reproducible(digits):
    x, y = digits.train
    a = perturbed_stats(bn_net(0, torch.float32), 1)
    b = perturbed_stats(bn_net(1, torch.float32), 2)
    a.train()
    before = state(a), state(b)
    kw = dict(steps=20, lr=1e-2, batch_size=32, n=5, seed=3)
    c1 = bezier(a, b, CE, (x, y), **kw)
    c2 = bezier(a, b, CE, (x, y), **kw)
    assert c1.buffers == "recalibrated"
    np.testing.assert_array_equal(c1.bend, c2.bend)
    np.testing.assert_array_equal(c1.train_loss, c2.train_loss)
    line = linear(a, b, CE, (x, y), n=5, recalibrate=True)
    assert c1.loss[0] == line.loss[0] and c1.loss[-1] == line.loss[-1]
    loader = DataLoader(TensorDataset(x, y), batch_size=32, shuffle=False)
    c3 = bezier(a, b, CE, loader, **kw)
    assert np.isfinite(c3.loss).all() and c3.train_loss.shape == (20,)
    assert_untouched(a, before[0])
    assert_untouched(b, before[1])


# --------------------------------------------------------------------------- the store
def test_records_round_trip_through_the_store(tmp_path, digits):
    a, b = mlp(0), mlp(1)
    p = linear(a, b, CE, digits.train, n=4, test=digits.test)
    c = bezier(a, b, CE, digits.train, n=3, steps=5)
    path = tmp_path / "cmp.h5"
    with Store(path, "a") as s:
        for name, result in (("line", p), ("curve", c)):
            arrays, attrs = result.to_record()
            s.write_record(None, "paths", name, arrays=arrays, attrs=attrs)
    with Store(path) as s:
        line, curve = s.record(None, "paths", "line"), s.record(None, "paths", "curve")
    assert line.attrs["probe"] == "interpolation.linear"
    assert line.attrs["barrier"] == p.barrier
    for before, rec in ((p, line), (c, curve)):
        back = Path.from_record(rec)
        assert type(back) is type(before)
        for f in ("alphas", "loss", "accuracy", "test_loss", "test_accuracy"):
            got, want = getattr(back, f), getattr(before, f)
            assert (got is None and want is None) or np.array_equal(got, want)
        for f in (
            "kind",
            "buffers",
            "mode",
            "params",
            "cost",
            "info",
            "barrier",
            "accuracy_barrier",
            "test_barrier",
        ):
            assert getattr(back, f) == getattr(before, f)
    back = Curve.from_record(curve)
    assert np.array_equal(back.bend, c.bend) and np.array_equal(back.train_loss, c.train_loss)
    assert (back.steps, back.lr, back.optimizer) == (5, c.lr, "adam")
    with pytest.raises(ValueError, match="interpolation.bezier"):
        Curve.from_record(line)
    with pytest.raises(ValueError, match="not 'interpolation.linear'"):
        Path.from_record(({}, {"probe": "hessian.trace"}))
    assert interpolation.INTERPOLATION_KINDS == ("linear", "init_to_final", "bezier")


def test_init_to_final_of_a_stored_run(tmp_path):
    path = tmp_path / "run.h5"
    spec = {
        "model": {"name": "mlp", "width": 16, "depth": 1},
        "data": {"name": "digits", "n_train": 150, "n_test": 60},
        "optimizer": {"name": "sgd", "lr": 0.1},
        "train": {"epochs": 3, "seed": 0},
    }
    execute(spec, path, run="sgd")
    p = init_to_final(path, "sgd", n=5)
    assert p.kind == "init_to_final" and p.info["run"] == "sgd"
    with Store(path) as s:
        final = s.info("sgd").attrs["final_metrics"]
    assert p.loss[-1] == pytest.approx(final["train_loss"], rel=1e-6)
    assert p.test_loss[-1] == pytest.approx(final["test_loss"], rel=1e-6)
    assert p.loss[0] > p.loss[-1]
    arrays, attrs = p.to_record()
    with Store(path, "a") as s:
        s.write_record("sgd", "paths", "init_to_final", arrays=arrays, attrs=attrs)
    with Store(path) as s:
        back = Path.from_record(s.record("sgd", "paths", "init_to_final"))
    assert back.kind == "init_to_final" and np.array_equal(back.loss, p.loss)
    with pytest.raises(TypeError, match=r"\[data\] table"):
        init_to_final(path, "sgd", data=(torch.zeros(2, 64), torch.zeros(2)))


# --------------------------------------------------------------------------- errors
def test_errors(digits):
    a, b = mlp(0), mlp(1)
    x, y = digits.train
    with pytest.raises(ValueError, match="linear: n must be an int >= 2, got 1"):
        linear(a, b, CE, (x, y), n=1)
    with pytest.raises(ValueError, match="model_b must have the architecture.*layers.0.weight"):
        linear(a, mlp(1, width=8), CE, (x, y))
    with pytest.raises(ValueError, match="model_b must have the architecture.*Linear vs MLP"):
        linear(a, models.build("linear", in_features=64, num_classes=10), CE, (x, y))
    with pytest.raises(ValueError, match="empty"):
        linear(a, b, CE, (x[:0], y[:0]))
    with pytest.raises(TypeError, match="model_b must be an nn.Module or a flat"):
        linear(a, b.state_dict(), CE, (x, y))
    with pytest.raises(TypeError, match="both ends are flat vectors"):
        linear(flat(a), flat(b), CE, (x, y))
    with pytest.raises(ValueError, match=r"model_b of shape \(\d+,\)"):
        linear(a, flat(b)[:-1], CE, (x, y))
    with pytest.raises(TypeError, match="model_b of dtype torch.float32"):
        linear(a, copy.deepcopy(b).double(), CE, (x, y))
    with pytest.raises(ValueError, match="recalibrate=True needs mode='eval'"):
        linear(a, b, CE, (x, y), recalibrate=True, mode="train")
    with pytest.raises(TypeError, match="recalibrate must be True or False"):
        linear(a, b, CE, (x, y), recalibrate="yes")
    with pytest.raises(ValueError, match="mode must be one of"):
        linear(a, b, CE, (x, y), mode="test")
    with pytest.raises(ValueError, match="bezier: steps must be an int >= 1"):
        bezier(a, b, CE, (x, y), steps=0)
    with pytest.raises(ValueError, match="bezier: lr must be a finite number > 0"):
        bezier(a, b, CE, (x, y), lr=-1.0)
    with pytest.raises(ValueError, match="bezier: optimizer must be one of"):
        bezier(a, b, CE, (x, y), optimizer="lbfgs")
    with pytest.raises(ValueError, match="bezier: the training loss of the bend is not finite"):
        bezier(a, b, CE, (x, y), steps=5, lr=1e30, optimizer="sgd", n=2)
    with pytest.raises(TypeError, match="expected a landscape.store.Record"):
        Path.from_record([1, 2])
