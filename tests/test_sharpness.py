"""Sharpness and flatness probes (probes.sharpness).

Closed forms, invariance under ReLU rescaling, constraints, m-sharpness, PAC-Bayes noise, model
untouched, records, bad input.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch
from scipy.stats import norm as gaussian
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from landscape.engine.params import ParamLayout
from landscape.store.file import Store
from probes import sharpness
from probes.sharpness import (
    AverageCase,
    Epsilon,
    PacBayes,
    WorstCase,
    average_case,
    epsilon,
    pac_bayes,
    random_subspace,
    worst_case,
)

from . import zoo

pytestmark = pytest.mark.usefixtures("one_thread")

CE = nn.CrossEntropyLoss()
BCE = nn.BCEWithLogitsLoss()


# --------------------------------------------------------------------------- helpers
def logistic(seed: int, label: float, d: int = 5):
    """A bias-free linear logit model and one example (x, t), t in {0, 1}."""
    gen = torch.Generator().manual_seed(seed)
    model = nn.Linear(d, 1, bias=False).double()
    with torch.no_grad():
        model.weight.copy_(torch.randn(1, d, generator=gen, dtype=torch.float64))
    x = torch.randn(1, d, generator=gen, dtype=torch.float64)
    return model, x, torch.full((1, 1), label, dtype=torch.float64)


def softplus(z: float) -> float:
    return math.log1p(math.exp(-abs(z))) + max(z, 0.0)


def relu_net(seed: int = 0, n: int = 40):
    gen = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3)).double()
    x = torch.randn(n, 4, generator=gen, dtype=torch.float64)
    y = torch.randint(0, 3, (n,), generator=gen)
    return model, x, y


def rescaled(model: nn.Sequential, seed: int = 1) -> nn.Sequential:
    """Hidden unit j: weights and bias in times a_j, weights out over a_j (same function)."""
    a = 0.3 + 2.7 * torch.rand(
        8, generator=torch.Generator().manual_seed(seed), dtype=torch.float64
    )
    out = relu_net()[0]
    with torch.no_grad():
        out[0].weight.copy_(model[0].weight * a[:, None])
        out[0].bias.copy_(model[0].bias * a)
        out[2].weight.copy_(model[2].weight / a[None, :])
        out[2].bias.copy_(model[2].bias)
    return out


def flat(model: nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()])


def scaled_norm(delta: np.ndarray, c: np.ndarray, p: str) -> float:
    u = np.divide(delta, c, out=np.zeros_like(delta), where=c != 0)
    return float(np.linalg.norm(u) if p == "l2" else np.abs(u).max())


def one_hot_classifier(n: int, seed: int = 0):
    """N one-hot examples, label 1, a bias-free linear logit with weights w_i > 0.

    The weights have varied magnitudes: example i is right iff w_i + noise_i > 0, so under
    noise of std s_i the accuracy is mean_i Phi(w_i / s_i).
    """
    gen = torch.Generator().manual_seed(seed)
    model = nn.Linear(n, 1, bias=False).double()
    with torch.no_grad():
        model.weight.copy_(0.5 + 2.5 * torch.rand(1, n, generator=gen, dtype=torch.float64))
    return model, torch.eye(n, dtype=torch.float64), torch.ones(n, 1, dtype=torch.float64)


def snapshot(model: nn.Module):
    return (
        {k: v.clone() for k, v in model.state_dict().items()},
        [m.training for m in model.modules()],
    )


def assert_untouched(model: nn.Module, before) -> None:
    state, flags = before
    now = model.state_dict()
    assert now.keys() == state.keys() and all(torch.equal(now[k], state[k]) for k in state)
    assert [m.training for m in model.modules()] == flags


def same(a, b) -> bool:
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return a is not None and b is not None and np.array_equal(a, b)
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a):
        return math.isnan(b)
    return a == b


# --------------------------------------------------------------------------- closed forms
@pytest.mark.parametrize("label", [0.0, 1.0])
@pytest.mark.parametrize("rho", [0.05, 0.4, 2.0])
def test_worst_case_l2_equals_the_logistic_closed_form(label, rho):
    model, x, t = logistic(3, label)
    y = 2 * label - 1
    margin = y * float(model.weight.detach()[0] @ x[0])
    want = softplus(-(margin - rho * float(x.norm()))) - softplus(-margin)
    s = worst_case(model, BCE, (x, t), rho=rho)
    assert s.value == pytest.approx(want, abs=1e-6)
    assert s.clean_loss == pytest.approx(softplus(-margin), abs=1e-12)
    assert s.delta_norm == pytest.approx(rho, rel=1e-6)
    # the maximiser is -rho y x / ||x||
    np.testing.assert_allclose(s.delta, (-rho * y * x[0] / x.norm()).numpy(), atol=1e-6)
    assert s.worst_accuracy in (0.0, 1.0) and s.n_batches == 1 and s.cost.grad_evals == 20


def test_epsilon_equals_the_logistic_closed_form():
    """The loss is monotone in the margin, so the box maximum is a vertex.

    The vertex delta_i = -eps (|w_i| + 1) sign(y x_i).
    """
    model, x, t = logistic(5, 1.0)
    w, eps = model.weight.detach()[0], 0.01
    margin = float(w @ x[0])
    worst = margin - float((eps * (w.abs() + 1) * x[0].abs()).sum())
    clean = softplus(-margin)
    e = epsilon(model, BCE, (x, t), eps=eps)
    assert e.value == pytest.approx(100 * (softplus(-worst) - clean) / (1 + clean), rel=1e-9)
    np.testing.assert_allclose(
        e.delta, (-eps * (w.abs() + 1) * torch.sign(x[0])).numpy(), rtol=1e-12
    )
    assert e.subspace is None and e.n_iter <= e.max_iter == 10


def test_checkpoints_follow_the_published_fractions():
    assert sharpness.checkpoints(20) == (5, 9, 12, 14, 16, 18, 19, 20)
    assert sharpness.checkpoints(1) == (1,)


# --------------------------------------------------------------------------- invariance
def test_adaptive_sharpness_is_invariant_under_relu_rescaling_and_plain_is_not():
    model, x, y = relu_net()
    other = rescaled(model)
    with torch.no_grad():  # the same function
        assert torch.allclose(model(x), other(x), atol=1e-12)
    for norm in ("l2", "linf"):
        rho = 0.2 if norm == "l2" else 0.05
        a = worst_case(model, CE, (x, y), rho=rho, norm=norm, adaptive=True)
        b = worst_case(other, CE, (x, y), rho=rho, norm=norm, adaptive=True)
        assert a.value > 1e-3
        assert b.value == pytest.approx(a.value, rel=1e-6)
        pa = worst_case(model, CE, (x, y), rho=rho, norm=norm)
        pb = worst_case(other, CE, (x, y), rho=rho, norm=norm)
        assert abs(pb.value - pa.value) > 0.1 * pa.value
    a = average_case(model, CE, (x, y), rho=0.1, adaptive=True, n_samples=8, seed=3)
    b = average_case(other, CE, (x, y), rho=0.1, adaptive=True, n_samples=8, seed=3)
    np.testing.assert_allclose(b.samples, a.samples, rtol=1e-10, atol=1e-13)
    assert a.value > 0 and a.stderr > 0
    pa = average_case(model, CE, (x, y), rho=0.1, n_samples=8, seed=3)
    pb = average_case(other, CE, (x, y), rho=0.1, n_samples=8, seed=3)
    assert abs(pb.value - pa.value) > 0.1 * abs(pa.value)
    from probes.curvature import hessian

    la = hessian.eigenvalues(model, CE, (x, y), k=1).values[0]
    lb = hessian.eigenvalues(other, CE, (x, y), k=1).values[0]
    assert abs(lb - la) > 0.1 * abs(la)


# --------------------------------------------------------------------------- constraints
@pytest.mark.parametrize("norm", ["l2", "linf"])
@pytest.mark.parametrize("adaptive", [False, True])
def test_the_worst_point_is_in_the_ball_and_beats_random_points(norm, adaptive):
    model, x, y = relu_net(2)
    rho = 0.3 if norm == "l2" else 0.05
    s = worst_case(model, CE, (x, y), rho=rho, norm=norm, adaptive=adaptive, restarts=1)
    c = np.abs(flat(model).numpy()) if adaptive else np.ones(s.n_params)
    got = scaled_norm(s.delta, c, norm)
    assert got <= rho * (1 + 1e-9) and got == pytest.approx(s.delta_norm, rel=1e-9)
    if norm == "l2":
        assert got > 0.99 * rho  # an ascent ends on the sphere
    # the loss rise there, recomputed independently
    theta = flat(model) + torch.from_numpy(s.delta)
    model_at = relu_net(2)[0]
    torch.nn.utils.vector_to_parameters(theta, model_at.parameters())
    with torch.no_grad():
        assert float(CE(model_at(x), y)) - s.clean_loss == pytest.approx(s.value, abs=1e-12)
    # random points of the same ball (Gaussian noise of scaled norm ~ rho, well inside)
    scale = 0.9 * rho / math.sqrt(s.n_params) if norm == "l2" else rho / 5
    a = average_case(model, CE, (x, y), rho=scale, adaptive=adaptive, n_samples=20)
    assert s.value > a.samples.max()
    # restarts keep the best start, the zero start included
    s0 = worst_case(model, CE, (x, y), rho=rho, norm=norm, adaptive=adaptive)
    assert s.value >= s0.value - 1e-12


def test_only_the_selected_parameters_move():
    model, x, y = relu_net()
    s = worst_case(model, CE, (x, y), rho=0.2, params=["2.weight"], adaptive=True)
    assert s.n_params == 24 and s.delta.shape == (24,) and s.value > 0
    assert scaled_norm(s.delta, np.abs(model[2].weight.detach().numpy().ravel()), "l2") <= 0.2 * (
        1 + 1e-9
    )


@pytest.mark.parametrize("subspace", [None, 7])
def test_keskar_box_is_respected(subspace):
    model, x, y = relu_net(1)
    eps = 5e-3
    e = epsilon(model, CE, (x, y), eps=eps, subspace=subspace, seed=4, max_iter=5)
    w = flat(model)
    if subspace is None:
        box = eps * (w.abs() + 1)
        y_ = torch.from_numpy(e.delta)
    else:
        a = random_subspace(w.numel(), subspace, seed=4)
        box = eps * ((torch.linalg.pinv(a) @ w).abs() + 1)
        y_ = torch.from_numpy(e.y)
        np.testing.assert_allclose(e.delta, (a @ y_).numpy(), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(e.bound, box.numpy(), rtol=1e-10)
    assert bool((y_.abs() <= box * (1 + 1e-12)).all())
    assert e.value > 0 and e.max_loss > e.clean_loss and e.n_iter <= 5 and e.cost.grad_evals >= 1
    assert e.value == pytest.approx(100 * (e.max_loss - e.clean_loss) / (1 + e.clean_loss))


# --------------------------------------------------------------------------- m-sharpness
def test_m_sharpness_is_the_mean_of_per_batch_worst_cases():
    model, x, y = zoo.make("mlp", n=24, seed=1)
    kw = {"rho": 0.1, "adaptive": True, "restarts": 1, "steps": 8}
    s = worst_case(model, CE, (x, y), m=8, seed=5, **kw)
    parts = [
        worst_case(model, CE, (x[i : i + 8], y[i : i + 8]), seed=5 + k, **kw)
        for k, i in enumerate(range(0, 24, 8))
    ]
    np.testing.assert_allclose(s.batch_values, [p.value for p in parts], rtol=1e-10)
    assert s.value == pytest.approx(np.mean([p.value for p in parts]), rel=1e-10)
    assert s.clean_loss == pytest.approx(np.mean([p.clean_loss for p in parts]), rel=1e-10)
    assert s.worst_accuracy == pytest.approx(np.mean([p.worst_accuracy for p in parts]))
    assert s.delta_norm == pytest.approx(max(p.delta_norm for p in parts))
    assert s.n_batches == 3 and list(s.batch_sizes) == [8, 8, 8] and s.delta is None
    assert s.cost.passes == pytest.approx(sum(p.cost.passes for p in parts) / 3)
    # the same batches of 8 from a DataLoader of batches of 5 (they straddle its batches)
    loader = DataLoader(TensorDataset(x, y), batch_size=5, shuffle=False)
    from_loader = worst_case(model, CE, loader, m=8, seed=5, **kw)
    np.testing.assert_allclose(from_loader.batch_values, s.batch_values, rtol=1e-10)
    # m >= N is the plain worst case
    whole = worst_case(model, CE, (x, y), m=100, seed=5, **kw)
    plain = worst_case(model, CE, (x, y), seed=5, **kw)
    assert whole.value == pytest.approx(plain.value, rel=1e-10)


# --------------------------------------------------------------------------- PAC-Bayes
def test_pac_bayes_sigma_grows_with_the_target():
    model, x, t = one_hot_classifier(400)
    sigmas = [
        pac_bayes(model, BCE, (x, t), target=target, n_samples=4).sigma
        for target in (0.05, 0.15, 0.3)
    ]
    assert sigmas[0] < sigmas[1] < sigmas[2]
    plain = [
        pac_bayes(model, BCE, (x, t), target=target, n_samples=4, magnitude_aware=False).sigma
        for target in (0.05, 0.3)
    ]
    assert plain[0] < plain[1]


def test_magnitude_aware_noise_is_a_standard_deviation():
    """Accuracy under std sigma |w_i| is Phi(1 / sigma) for every i.

    A drop of 0.1 at sigma = 1 / Phi^-1(0.9) = 0.780 (0.746 to 0.815 within the 0.01
    tolerance). Noise of *variance* sigma^2 w^2 (the ported code's mistake) would stop near
    0.883.
    """
    model, x, t = one_hot_classifier(2000)
    f = pac_bayes(model, BCE, (x, t))
    assert f.converged and f.clean_accuracy == 1.0
    assert abs(f.clean_accuracy - f.accuracy - 0.1) < 0.01
    assert 0.74 < f.sigma < 0.82 and f.flatness == pytest.approx(1 / f.sigma**2)
    assert 1 - f.accuracy == pytest.approx(1 - gaussian.cdf(1 / f.sigma), abs=0.01)
    assert f.sigmas[0] == 1.0 and len(f.sigmas) == len(f.accuracies) <= 15
    # plain noise of std sigma: accuracy mean_i Phi(w_i / sigma), a different sigma
    w = model.weight.detach().numpy().ravel()
    g = pac_bayes(model, BCE, (x, t), magnitude_aware=False)
    assert g.converged and abs(np.mean(gaussian.cdf(w / g.sigma)) - 0.9) < 0.02
    assert g.sigma > 1.2 * f.sigma


def test_pac_bayes_needs_an_accuracy():
    x = torch.randn(10, 3, dtype=torch.float64)
    model = nn.Linear(3, 2).double()
    with pytest.raises(ValueError, match="pac_bayes: needs data with an accuracy"):
        pac_bayes(model, nn.MSELoss(), (x, torch.randn(10, 2, dtype=torch.float64)))


# --------------------------------------------------------------------------- contracts
def test_model_untouched_and_records_round_trip(tmp_path):
    model, x, y = zoo.make("cnn_bn", n=16, seed=2)
    model.train()  # flags must come back; eval mode is used inside
    before = snapshot(model)
    results = {
        "worst": worst_case(model, CE, (x, y), rho=0.05, adaptive=True, steps=5, restarts=1),
        "worst_m": worst_case(model, CE, (x, y), rho=0.05, norm="linf", steps=3, m=8),
        "average": average_case(model, CE, (x, y), rho=0.01, n_samples=3),
        "eps": epsilon(model, CE, (x, y), max_iter=3, subspace=4),
        "pac": pac_bayes(model, CE, (x, y), depth=3, n_samples=2),
    }
    assert_untouched(model, before)
    path = tmp_path / "sharp.h5"
    with Store(path, "a") as s:
        s.create_run("r", names=["w"], shapes=[(2,)], init=np.zeros(2))
        for name, result in results.items():
            arrays, attrs = result.to_record()
            s.write_record("r", "probes", name, arrays=arrays, attrs=attrs)
    with Store(path) as s:
        records = {name: s.record("r", "probes", name) for name in results}
    kinds = {
        "worst": WorstCase,
        "worst_m": WorstCase,
        "average": AverageCase,
        "eps": Epsilon,
        "pac": PacBayes,
    }
    for name, result in results.items():
        cls = kinds[name]
        for back in (cls.from_record(records[name]), cls.from_record(result.to_record())):
            assert type(back) is cls
            for f in dataclasses.fields(cls):
                assert same(getattr(back, f.name), getattr(result, f.name)), (name, f.name)
    assert records["worst"].attrs["probe"] == "sharpness.worst_case"
    assert results["worst"].clean_accuracy is not None
    with pytest.raises(ValueError, match="not 'sharpness.epsilon'"):
        Epsilon.from_record(records["pac"])
    with pytest.raises(TypeError, match="WorstCase.from_record"):
        WorstCase.from_record(42)


def test_regression_and_float32_models():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(12, 3, generator=gen)
    t = torch.randn(12, 2, generator=gen)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2))  # float32
    s = worst_case(model, nn.MSELoss(), (x, t), rho=0.1, steps=4)
    assert s.worst_accuracy is None and s.clean_accuracy is None and s.value > 0
    assert s.delta.dtype == np.float64 and np.isfinite(s.delta).all()
    a = average_case(model, nn.MSELoss(), (x, t), rho=0.1, n_samples=2)
    assert a.mean_accuracy is None and math.isfinite(a.value)
    e = epsilon(model, nn.MSELoss(), (x, t), max_iter=2)
    assert e.value > 0
    layout = ParamLayout.of(dict(model.named_parameters()))
    assert layout.dtype == torch.float32 and s.n_params == layout.numel


def _model_data():
    model, x, y = relu_net(0, n=6)
    return model, (x, y)


BAD = [
    (
        lambda m, d: worst_case(m, CE, d, rho=-1),
        ValueError,
        "worst_case: rho must be a finite number > 0, got -1",
    ),
    (lambda m, d: worst_case(m, CE, d, rho=float("nan")), ValueError, "rho must be a finite"),
    (
        lambda m, d: worst_case(m, CE, d, rho=0.1, norm="l1"),
        ValueError,
        "worst_case: norm must be one of 'l2', 'linf', got 'l1'",
    ),
    (
        lambda m, d: worst_case(m, CE, d, rho=0.1, adaptive="yes"),
        TypeError,
        "worst_case: adaptive must be True or False",
    ),
    (
        lambda m, d: worst_case(m, CE, d, rho=0.1, steps=0),
        ValueError,
        "worst_case: steps must be an int >= 1, got 0",
    ),
    (lambda m, d: worst_case(m, CE, d, rho=0.1, restarts=-1), ValueError, "restarts"),
    (lambda m, d: worst_case(m, CE, d, rho=0.1, m=0), ValueError, "worst_case: m must be"),
    (lambda m, d: worst_case(m, CE, d, rho=0.1, seed=1.5), ValueError, "seed"),
    (
        lambda m, d: worst_case(m, CE, d, rho=0.1, mode="test"),
        ValueError,
        "worst_case: mode must be one of 'eval', 'train'",
    ),
    (lambda m, d: worst_case(m, CE, d, rho=0.1, batch_size=0), ValueError, "batch_size"),
    (lambda m, d: average_case(m, CE, d, rho=0.0), ValueError, "average_case: rho"),
    (lambda m, d: average_case(m, CE, d, rho=0.1, n_samples=0), ValueError, "n_samples"),
    (lambda m, d: epsilon(m, CE, d, eps=0), ValueError, "epsilon: eps must be"),
    (lambda m, d: epsilon(m, CE, d, max_iter=0), ValueError, "max_iter"),
    (lambda m, d: epsilon(m, CE, d, subspace=0), ValueError, "subspace must be an int >= 1"),
    (lambda m, d: epsilon(m, CE, d, subspace=10_000), ValueError, r"subspace must be an int in"),
    (lambda m, d: pac_bayes(m, CE, d, target=1.5), ValueError, "pac_bayes: target"),
    (lambda m, d: pac_bayes(m, CE, d, target=0), ValueError, "target"),
    (lambda m, d: pac_bayes(m, CE, d, depth=0), ValueError, "depth"),
    (lambda m, d: pac_bayes(m, CE, d, sigma_max=-2), ValueError, "sigma_max"),
    (lambda m, d: pac_bayes(m, CE, d, magnitude_aware=1), TypeError, "magnitude_aware"),
    (lambda m, d: worst_case("model", CE, d, rho=0.1), TypeError, "nn.Module"),
    (lambda m, d: worst_case(m, CE, [1, 2, 3], rho=0.1), TypeError, "expected data"),
]


@pytest.mark.parametrize("call,exc,match", BAD, ids=[b[2][:40] for b in BAD])
def test_bad_input_gets_one_clear_error(call, exc, match):
    model, data = _model_data()
    before = snapshot(model)
    with pytest.raises(exc, match=match):
        call(model, data)
    assert_untouched(model, before)
